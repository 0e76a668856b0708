package server

import (
	"net/http"
	"slices"
	"testing"

	"github.com/tufota/tufota/access"
)

// TestAuditorIsReadOnly checks that the auditor role, which is read-only,
// is admitted by no route that changes state, and that an auditor cannot
// sign an audit checkpoint (a signature the server makes with its own key).
func TestAuditorIsReadOnly(t *testing.T) {
	ts := newTestServer(t)
	for _, r := range ts.Routes() {
		if r.Method != http.MethodGet && r.Method != http.MethodHead && slices.Contains(r.Roles, access.RoleAuditor) {
			t.Errorf("%s %s admits the auditor role, which is read-only", r.Method, r.Path)
		}
	}
	for _, tc := range []struct {
		role access.Role
		want int
	}{
		{access.RoleAuditor, http.StatusForbidden},
		{access.RoleAdmin, http.StatusOK},
	} {
		req := jsonRequest(http.MethodPost, ts.http.URL+"/api/v1/audit/checkpoint", "")
		req.RequestURI = ""
		if resp, body := ts.do(t, req, ts.tokens[tc.role]); resp.StatusCode != tc.want {
			t.Errorf("%s: POST /api/v1/audit/checkpoint status = %d, want %d (%s)", tc.role, resp.StatusCode, tc.want, body)
		}
	}
}
