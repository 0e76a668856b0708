package ui

import (
	"net/url"
	"testing"
	"time"
)

// FuzzParseAuditQuery: the audit page's query string is untrusted; the
// parser never panics and a filter it accepts is bounded.
func FuzzParseAuditQuery(f *testing.F) {
	for _, s := range []string{"", "since=24h&limit=5", "until=2026-01-01T00:00:00Z&actor=a", "limit=-1", "since=%00"} {
		f.Add(s)
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		_, flt, err := parseAuditQuery(q, now)
		if err == nil && (flt.Limit < 1 || flt.Limit > 1000 || len(flt.Actor) > 256) {
			t.Fatalf("accepted an unbounded filter %+v", flt)
		}
		if _, err := parseDeviceQuery(q); err == nil && len(q.Get("version")) > 128 {
			t.Fatalf("accepted a version of %d bytes", len(q.Get("version")))
		}
	})
}

// FuzzParseID: session cookie values are untrusted; only a canonical
// 256-bit base64url value is an ID, and it round-trips.
func FuzzParseID(f *testing.F) {
	f.Add(randomToken())
	f.Add("")
	f.Add("AAAA")
	f.Fuzz(func(t *testing.T, v string) {
		id, ok := parseID(v)
		if !ok {
			return
		}
		if len(v) != 43 {
			t.Fatalf("accepted %d characters", len(v))
		}
		_ = id
	})
}
