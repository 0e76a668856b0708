package server

import (
	"net/http"
	"strings"
	"testing"

	"github.com/tufota/tufota/access"
)

// TestTokenLifetimeLimits checks that the API refuses token lifetimes above
// the role's stated maximum (400, naming it) and accepts the maximum.
func TestTokenLifetimeLimits(t *testing.T) {
	ts := newTestServer(t)
	for _, tc := range []struct {
		name, path, body string
		want             int
	}{
		{"enroll 100 years", "/api/v1/enroll-tokens", `{"hardware":"pump-a","expires":"876000h"}`, http.StatusBadRequest},
		{"enroll 31 days", "/api/v1/enroll-tokens", `{"hardware":"pump-a","expires":"744h"}`, http.StatusBadRequest},
		{"enroll 30 days", "/api/v1/enroll-tokens", `{"hardware":"pump-a","expires":"720h"}`, http.StatusCreated},
		{"admin 91 days", "/api/v1/tokens", `{"name":"a91","role":"admin","expires":"2184h"}`, http.StatusBadRequest},
		{"auditor 10 years", "/api/v1/tokens", `{"name":"au","role":"auditor","user":"test-auditor","expires":"87600h"}`, http.StatusBadRequest},
		{"auditor 365 days", "/api/v1/tokens", `{"name":"au365","role":"auditor","user":"test-auditor","expires":"8760h"}`, http.StatusCreated},
		{"device 6 years", "/api/v1/devices", `{"id":"long-1","hardware":"pump-a","token_expires":"52560h"}`, http.StatusBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := jsonRequest(http.MethodPost, ts.http.URL+tc.path, tc.body)
			req.RequestURI = ""
			resp, body := ts.do(t, req, ts.tokens[access.RoleAdmin])
			if resp.StatusCode != tc.want {
				t.Fatalf("status = %d, want %d (%s)", resp.StatusCode, tc.want, body)
			}
			if tc.want == http.StatusBadRequest && !strings.Contains(string(body), "maximum") {
				t.Errorf("body %s does not state the maximum", body)
			}
		})
	}
}
