package server

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tufota/tufota/access"
)

// TestStatusWarnsBeforeOfflineRolesExpire: seventy days after init, the
// targets metadata (90-day expiry) is inside the 30-day warning period,
// root (one year) is not, and the online roles (7 and 1 days) have expired
// because no refresher ran. GET /api/v1/status says so in words, /metrics
// as gauges.
func TestStatusWarnsBeforeOfflineRolesExpire(t *testing.T) {
	ts := newTestServer(t)
	later := time.Now().Add(70 * 24 * time.Hour)
	ts.now = func() time.Time { return later }

	resp, body := ts.do(t, mustRequest(t, http.MethodGet, ts.http.URL+"/api/v1/status"), ts.tokens[access.RoleAuditor])
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /api/v1/status: %d %s", resp.StatusCode, body)
	}
	var st Status
	if err := json.Unmarshal(body, &st); err != nil {
		t.Fatal(err)
	}
	warned := map[string]bool{}
	for _, r := range st.Roles {
		warned[r.Role] = r.Warning != ""
	}
	want := map[string]bool{"root": false, "targets": true, "snapshot": true, "timestamp": true}
	for role, w := range want {
		if warned[role] != w {
			t.Errorf("%s warning = %v, want %v (status %+v)", role, warned[role], w, st.Roles)
		}
	}
	if len(st.Warnings) != 3 || !strings.Contains(strings.Join(st.Warnings, "\n"), "targets metadata expires in 19d") {
		t.Errorf("warnings = %q, want 3 with the targets one saying it expires in 19d", st.Warnings)
	}

	resp, body = ts.do(t, mustRequest(t, http.MethodGet, ts.http.URL+"/metrics"), ts.tokens[access.RoleAuditor])
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %d %s", resp.StatusCode, body)
	}
	for _, line := range []string{
		`tufota_tuf_metadata_expiry_warning{role="root"} 0`,
		`tufota_tuf_metadata_expiry_warning{role="targets"} 1`,
		`tufota_tuf_metadata_expires_timestamp_seconds{role="targets"}`,
		`tufota_leader 1`,
	} {
		if !strings.Contains(string(body), line) {
			t.Errorf("/metrics lacks %q:\n%s", line, body)
		}
	}

	// Devices and enrollment tokens see neither.
	for _, path := range []string{"/api/v1/status", "/metrics"} {
		for _, role := range []access.Role{access.RoleDevice, access.RoleEnroll} {
			if resp, _ := ts.do(t, mustRequest(t, http.MethodGet, ts.http.URL+path), ts.tokens[role]); resp.StatusCode != http.StatusForbidden {
				t.Errorf("GET %s as %s: %d, want 403", path, role, resp.StatusCode)
			}
		}
	}
}

func mustRequest(t *testing.T, method, url string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}
