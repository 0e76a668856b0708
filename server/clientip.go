package server

import (
	"net"
	"net/netip"

	"github.com/labstack/echo/v4"
)

// clientIP returns echo's IP extractor for the server: the address of the
// direct peer, unless that peer is in one of trusted (a reverse proxy or
// load balancer the operator named with --trusted-proxy), in which case the
// nearest address in X-Forwarded-For that is not a trusted proxy. X-Real-IP
// is never read, and with no trusted proxy neither header is: a client
// cannot choose the source that the audit log records and that repeated
// authentication failures are counted against.
//
// Loopback, link-local and private addresses are trusted only when listed:
// echo trusts them by default, which would let any client on the same
// network (or a test on loopback) set its own source.
func clientIP(trusted []netip.Prefix) echo.IPExtractor {
	if len(trusted) == 0 {
		return echo.ExtractIPDirect()
	}
	opts := []echo.TrustOption{echo.TrustLoopback(false), echo.TrustLinkLocal(false), echo.TrustPrivateNet(false)}
	for _, p := range trusted {
		p = p.Masked()
		opts = append(opts, echo.TrustIPRange(&net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}))
	}
	return echo.ExtractIPFromXFFHeader(opts...)
}
