package main

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/tufota/tufota"
)

func TestParseTrustedProxies(t *testing.T) {
	t.Parallel()
	got, err := parseTrustedProxies([]string{"10.1.2.3/8", "192.0.2.7", "2001:db8::/32", "::ffff:192.0.2.8"})
	if err != nil {
		t.Fatal(err)
	}
	var s []string
	for _, p := range got {
		s = append(s, p.String())
	}
	if want := []string{"10.0.0.0/8", "192.0.2.7/32", "2001:db8::/32", "192.0.2.8/32"}; !slices.Equal(s, want) {
		t.Errorf("parseTrustedProxies = %v, want %v", s, want)
	}
	for _, bad := range []string{"", "10.0.0.0/33", "proxy.example", "10.0.0.0/8,10.1.0.0/16"} {
		if _, err := parseTrustedProxies([]string{bad}); err == nil {
			t.Errorf("parseTrustedProxies(%q) succeeded", bad)
		}
	}
}

// TestServerRefusesBadTrustedProxy checks that tufota server validates
// --trusted-proxy before it opens anything.
func TestServerRefusesBadTrustedProxy(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	err := run(context.Background(), []string{"server", "--dir", t.TempDir(), "--addr", "127.0.0.1:0", "--insecure-http", "--trusted-proxy", "proxy.example"},
		map[string]string{}, strings.NewReader(""), &out, &out)
	if !errors.Is(err, tufota.ErrInvalid) || !strings.Contains(err.Error(), "--trusted-proxy") {
		t.Fatalf("server --trusted-proxy proxy.example: %v, want an invalid-flag error", err)
	}
}
