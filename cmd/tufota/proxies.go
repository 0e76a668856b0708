package main

import (
	"net/netip"

	"github.com/tufota/tufota"
)

// parseTrustedProxies parses --trusted-proxy values: CIDR prefixes, or
// single addresses (a /32 or /128).
func parseTrustedProxies(vals []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, v := range vals {
		p, err := netip.ParsePrefix(v)
		if err != nil {
			a, aerr := netip.ParseAddr(v)
			if aerr != nil {
				return nil, tufota.Errorf(tufota.EInvalid, "--trusted-proxy %q: want a CIDR prefix such as 10.0.0.0/8 or an address", v)
			}
			p = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
		}
		out = append(out, p.Masked())
	}
	return out, nil
}
