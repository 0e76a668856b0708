package server

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/tufota/tufota/access"
	"github.com/tufota/tufota/audit"
)

// TestSecurityEventsAreAudited checks that failures, denials and changes
// land in the audit log with actor, role, action, object and outcome.
func TestSecurityEventsAreAudited(t *testing.T) {
	ts := newTestServer(t)
	ctx := context.Background()
	send := func(method, path, body, token string) int {
		req := httptest.NewRequest(method, ts.http.URL+path, strings.NewReader(body))
		req.RequestURI = ""
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, _ := ts.do(t, req, token)
		return resp.StatusCode
	}
	send(http.MethodGet, "/api/v1/releases", "", "tft_0123456789abcdef_"+strings.Repeat("B", 43))
	send(http.MethodPost, "/api/v1/tokens", `{"name":"mallory","role":"admin"}`, ts.tokens[access.RoleOperator])
	send(http.MethodPost, "/api/v1/tokens", `{"name":"alice","role":"release-engineer","user":"test-release-engineer"}`, ts.tokens[access.RoleAdmin])
	send(http.MethodPost, "/api/v1/tokens", `{"name":"bob","role":"superuser"}`, ts.tokens[access.RoleAdmin])
	send(http.MethodPost, "/api/v1/device/status", `{"device_id":"dev-1","target":"fw/1.0.0/fw.bin","version":"1.0.0","state":"installed"}`, ts.tokens[access.RoleDevice])

	entries, err := ts.cfg.Audit.List(ctx, audit.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	want := []struct{ actor, role, action, outcome, object string }{
		{"anonymous", "", "auth.failure", audit.OutcomeDenied, "release.list"},
		{"test-operator", "operator", "token.create", audit.OutcomeDenied, "/api/v1/tokens"},
		{"test-admin", "admin", "token.create", audit.OutcomeOK, "token/"},
		{"test-admin", "admin", "token.create", audit.OutcomeFailed, "/api/v1/tokens"},
		{"test-device", "device", "device.report", audit.OutcomeOK, "device/dev-1"},
	}
	if len(entries) != len(want) {
		for _, e := range entries {
			t.Logf("%+v", e)
		}
		t.Fatalf("%d audit entries, want %d", len(entries), len(want))
	}
	for i, w := range want {
		e := entries[i]
		if e.Actor != w.actor || e.Role != w.role || e.Action != w.action || e.Outcome != w.outcome || !strings.HasPrefix(e.Object, w.object) {
			t.Errorf("entry %d = %s/%s %s %s %s, want %s/%s %s %s %s*", i, e.Actor, e.Role, e.Action, e.Outcome, e.Object, w.actor, w.role, w.action, w.outcome, w.object)
		}
		if e.Source == "" {
			t.Errorf("entry %d has no source address", i)
		}
	}
	if !strings.Contains(entries[0].Details["reason"], "unknown token") {
		t.Errorf("auth failure reason = %q", entries[0].Details["reason"])
	}
	if !strings.Contains(entries[3].Details["error"], `unknown role "superuser"`) {
		t.Errorf("failed create error = %q", entries[3].Details["error"])
	}
	if entries[4].Details["state"] != "installed" {
		t.Errorf("device report details = %v", entries[4].Details)
	}
	rep, err := ts.cfg.Audit.Verify(ctx)
	if err != nil || !rep.OK {
		t.Fatalf("Verify = %+v, %v", rep, err)
	}
}
