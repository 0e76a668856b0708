package server

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tufota/tufota/audit"
)

// alertSink is a webhook that collects alerts.
type alertSink struct {
	mu  sync.Mutex
	got []Alert
}

func newAlertSink(t *testing.T) (*alertSink, *Alerter) {
	t.Helper()
	sink := &alertSink{}
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var a Alert
		body, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(body, &a); err != nil {
			t.Errorf("alert body: %v", err)
		}
		sink.mu.Lock()
		sink.got = append(sink.got, a)
		sink.mu.Unlock()
	}))
	t.Cleanup(hook.Close)
	alerts, err := NewAlerter(hook.URL, []byte("0123456789abcdef-alert-secret"), hook.Client(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return sink, alerts
}

func (s *alertSink) sources(kind string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, a := range s.got {
		if a.Kind == kind {
			out = append(out, a.Details["source"])
		}
	}
	return out
}

// TestForwardedHeadersDoNotChooseTheSource sends failing logins with a new
// X-Forwarded-For and X-Real-IP each time. Without a trusted proxy the
// audit source is the peer address and the repeated-failure alert fires
// for it; with the peer's network named as a trusted proxy the header's
// client is recorded instead.
func TestForwardedHeadersDoNotChooseTheSource(t *testing.T) {
	ts := newTestServer(t)
	ctx := context.Background()
	badToken := "tft_0123456789abcdef_" + strings.Repeat("C", 43)
	fail := func(t *testing.T, base string, i int) {
		t.Helper()
		req := httptest.NewRequest(http.MethodGet, base+"/api/v1/releases", nil)
		req.RequestURI = ""
		req.Header.Set("X-Forwarded-For", fmt.Sprintf("203.0.113.%d", i))
		req.Header.Set("X-Real-IP", fmt.Sprintf("198.51.100.%d", i))
		if resp, _ := ts.do(t, req, badToken); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("status = %d, want 401", resp.StatusCode)
		}
	}
	sourcesSince := func(t *testing.T, since int64) []string {
		t.Helper()
		entries, err := ts.cfg.Audit.List(ctx, audit.Filter{Action: "auth.failure"})
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, e := range entries {
			if e.Seq >= since {
				out = append(out, e.Source)
			}
		}
		return out
	}
	head := func(t *testing.T) int64 {
		t.Helper()
		entries, err := ts.cfg.Audit.List(ctx, audit.Filter{Reverse: true, Limit: 1})
		if err != nil {
			t.Fatalf("audit head: %v", err)
		}
		if len(entries) == 0 {
			return 0
		}
		return entries[0].Seq + 1
	}

	t.Run("no trusted proxy", func(t *testing.T) {
		sink, alerts := newAlertSink(t)
		ts.cfg.Alerts = alerts
		defer func() { ts.cfg.Alerts = nil }()
		since := head(t)
		for i := 1; i <= authFailureAlertThreshold+1; i++ {
			fail(t, ts.http.URL, i)
		}
		alerts.Wait()
		got := sourcesSince(t, since)
		if len(got) != authFailureAlertThreshold+1 {
			t.Fatalf("%d auth.failure entries, want %d", len(got), authFailureAlertThreshold+1)
		}
		for _, s := range got {
			if s != "127.0.0.1" {
				t.Errorf("audit source = %q, want the peer 127.0.0.1 (headers must not choose it)", s)
			}
		}
		if srcs := sink.sources(AlertAuthFailures); len(srcs) != 1 || srcs[0] != "127.0.0.1" {
			t.Errorf("repeated-failure alerts for %v, want one for 127.0.0.1", srcs)
		}
	})

	t.Run("trusted proxy", func(t *testing.T) {
		cfg := ts.cfg
		cfg.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
		proxied, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		hs := httptest.NewServer(proxied.Handler())
		defer hs.Close()
		since := head(t)
		fail(t, hs.URL, 7)
		if got := sourcesSince(t, since); len(got) != 1 || got[0] != "203.0.113.7" {
			t.Errorf("audit sources = %q, want [203.0.113.7] from X-Forwarded-For of a trusted proxy", got)
		}
	})
}

// TestAuthFailureMemoryIsBounded fails logins from many more sources than
// the alerter remembers: it keeps at most maxFailureSources, still alerts
// on a source that fails repeatedly, alerts once on the flood, and counts
// IPv6 sources per /64.
func TestAuthFailureMemoryIsBounded(t *testing.T) {
	sink, alerts := newAlertSink(t)
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	alerts.now = func() time.Time { return now }
	for i := range maxFailureSources + 5000 {
		alerts.AuthFailure(fmt.Sprintf("10.%d.%d.%d", i>>16&0xff, i>>8&0xff, i&0xff), "unknown token")
	}
	if n := alerts.failures.len(); n != maxFailureSources {
		t.Errorf("remembered sources = %d, want the bound %d", n, maxFailureSources)
	}
	for i := range authFailureAlertThreshold {
		alerts.AuthFailure(fmt.Sprintf("2001:db8:1:2:%x::1", i+1), "unknown token")
	}
	alerts.Wait()
	want := map[string]bool{"*": true, "2001:db8:1:2::/64": true}
	srcs := sink.sources(AlertAuthFailures)
	for _, s := range srcs {
		if !want[s] {
			t.Errorf("unexpected repeated-failure alert for %q", s)
		}
		delete(want, s)
	}
	if len(want) != 0 || len(srcs) != 2 {
		t.Errorf("alerts for %v, want one flood alert (*) and one for 2001:db8:1:2::/64", srcs)
	}
}
