package server

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/tufota/tufota/access"
)

// TestUIRolesComeFromRoutes: the dashboard's pages and actions admit the
// roles of their API routes, and an action on several routes only the
// roles all of them admit.
func TestUIRolesComeFromRoutes(t *testing.T) {
	roles := routeRoles((&Server{}).Routes())
	tests := []struct {
		action string
		want   []access.Role
	}{
		{"rollout.action", operator},
		{"rollout.status", people},
		{"audit.list", adminRO},
		{"audit.verify", adminRO},
		{"release.list", people},
		{"tuf.target.read", readers},
		{"health.check", nil}, // public: the dashboard admits nobody by it
		{"no.such.action", nil},
		// token.create is admin-only on /api/v1/tokens and operator on
		// /api/v1/enroll-tokens: only admin is on both.
		{"token.create", admin},
	}
	for _, tt := range tests {
		if got := roles(tt.action); !slices.Equal(got, tt.want) {
			t.Errorf("roles(%q) = %v, want %v", tt.action, got, tt.want)
		}
	}
}

// TestUIMountedWithCSP: the server serves the dashboard, with its
// headers, and a page behind a session sends a browser to sign in.
func TestUIMountedWithCSP(t *testing.T) {
	ts := newTestServer(t)
	req, _ := http.NewRequest(http.MethodGet, ts.http.URL+"/ui/login", nil)
	resp, body := ts.do(t, req, "")
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `name="token"`) {
		t.Fatalf("GET /ui/login: status %d", resp.StatusCode)
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
		t.Errorf("Content-Security-Policy = %q", csp)
	}
}
