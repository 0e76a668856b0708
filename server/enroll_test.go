package server

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/tufota/tufota/access"
	"github.com/tufota/tufota/audit"
)

// countEnrolled returns the devices whose ID starts with prefix, the live
// device tokens bound to them, and the successful audit entries of action
// on them.
func (ts *testServer) countEnrolled(t *testing.T, prefix, action string) (devices, tokens, audited int) {
	t.Helper()
	ctx := context.Background()
	if err := ts.cfg.DB.QueryRow(ctx, `SELECT COUNT(*) FROM devices WHERE id LIKE ?`, prefix+"%").Scan(&devices); err != nil {
		t.Fatal(err)
	}
	if err := ts.cfg.DB.QueryRow(ctx, `SELECT COUNT(*) FROM tokens WHERE role = 'device' AND revoked_at IS NULL AND device_id LIKE ?`, prefix+"%").Scan(&tokens); err != nil {
		t.Fatal(err)
	}
	entries, err := ts.cfg.Audit.List(ctx, audit.Filter{Action: action})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Outcome == audit.OutcomeOK && strings.HasPrefix(e.Object, "device/"+prefix) {
			audited++
		}
	}
	return devices, tokens, audited
}

// TestEnrollCommitsWithItsAudit: concurrent enrollments (sharing commits)
// each leave one device, one live token that works and one audit entry
// with the route's details; a refused one leaves none of them and its
// failure audited; when the audit entry cannot be written, neither the
// device nor its token is stored.
func TestEnrollCommitsWithItsAudit(t *testing.T) {
	ts := newTestServer(t)
	const n = 40
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		toks = map[string]string{}
	)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprintf("enr-%02d", i)
			code, tok := ts.enrollAs(t, id)
			if code != http.StatusCreated {
				t.Errorf("enroll %s: status = %d, want 201", id, code)
				return
			}
			mu.Lock()
			toks[id] = tok
			mu.Unlock()
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	if d, k, a := ts.countEnrolled(t, "enr-", "device.enroll"); d != n || k != n || a != n {
		t.Fatalf("after %d enrollments: %d devices, %d live tokens, %d audit entries; want %d of each", n, d, k, a, n)
	}
	entries, err := ts.cfg.Audit.List(context.Background(), audit.Filter{Action: "device.enroll", Object: "device/enr-07"})
	if err != nil || len(entries) != 1 {
		t.Fatalf("audit entries of enr-07 = %d, %v; want 1", len(entries), err)
	}
	if e := entries[0]; e.Details["hardware"] != "pump-a" || e.Details["enrolled_with"] == "" || e.Role != string(access.RoleEnroll) {
		t.Errorf("audit entry of enr-07 = %+v; want hardware pump-a, enrolled_with the token, role enroll", e)
	}
	req := httptest.NewRequest(http.MethodGet, ts.http.URL+"/api/v1/device/update?device_id=enr-07&hardware=pump-a&version=1.0.0", nil)
	req.RequestURI = ""
	if resp, body := ts.do(t, req, toks["enr-07"]); resp.StatusCode/100 != 2 {
		t.Errorf("enr-07's token: status = %d (%s), want 2xx", resp.StatusCode, body)
	}

	// Enrolling a registered device again is refused and changes nothing.
	if code, _ := ts.enrollAs(t, "enr-07"); code != http.StatusConflict {
		t.Fatalf("enroll enr-07 again: status = %d, want 409", code)
	}
	if d, k, a := ts.countEnrolled(t, "enr-", "device.enroll"); d != n || k != n || a != n {
		t.Fatalf("after a refused enrollment: %d devices, %d live tokens, %d audit entries; want %d of each", d, k, a, n)
	}
	failed, err := ts.cfg.Audit.List(context.Background(), audit.Filter{Action: "device.enroll", Object: "device/enr-07", Reverse: true, Limit: 1})
	if err != nil || len(failed) != 1 || failed[0].Outcome != audit.OutcomeFailed {
		t.Fatalf("last audit entry of enr-07 = %+v, %v; want the refusal, failed", failed, err)
	}

	// A broken audit log: the enrollment is not stored and the device is
	// not handed a token.
	if _, err := ts.cfg.DB.Exec(context.Background(), `ALTER TABLE audit_hashes RENAME TO audit_hashes_gone`); err != nil {
		t.Fatal(err)
	}
	code, tok := ts.enrollAs(t, "enr-unaudited")
	if _, err := ts.cfg.DB.Exec(context.Background(), `ALTER TABLE audit_hashes_gone RENAME TO audit_hashes`); err != nil {
		t.Fatal(err)
	}
	if code < 500 || tok != "" {
		t.Fatalf("enroll with a broken audit log: status = %d, token %q; want 5xx and none", code, tok)
	}
	if d, k, _ := ts.countEnrolled(t, "enr-unaudited", "device.enroll"); d != 0 || k != 0 {
		t.Fatalf("an enrollment whose audit entry failed left %d devices and %d tokens", d, k)
	}
}

// TestRegisterCommitsWithItsAudit: an operator's registration stores the
// device, its token and the device.register entry together; registering
// the device again keeps its first token working (only a new device has
// earlier tokens revoked) and answers with the stored device.
func TestRegisterCommitsWithItsAudit(t *testing.T) {
	ts := newTestServer(t)
	register := func(body string) (int, string) {
		t.Helper()
		req := jsonRequest(http.MethodPost, ts.http.URL+"/api/v1/devices", body)
		req.RequestURI = ""
		resp, b := ts.do(t, req, ts.tokens[access.RoleOperator])
		return resp.StatusCode, string(b)
	}
	if code, body := register(`{"id":"reg-1","hardware":"pump-a","version":"1.0.0"}`); code != http.StatusCreated {
		t.Fatalf("register reg-1: %d %s", code, body)
	}
	code, body := register(`{"id":"reg-1","hardware":"pump-b","version":"1.1.0"}`)
	if code != http.StatusCreated || !strings.Contains(body, `"pump-b"`) {
		t.Fatalf("register reg-1 again: %d %s; want 201 with hardware pump-b", code, body)
	}
	if d, k, a := ts.countEnrolled(t, "reg-", "device.register"); d != 1 || k != 2 || a != 2 {
		t.Fatalf("%d devices, %d live tokens, %d audit entries; want 1, 2, 2", d, k, a)
	}
	if code, _ := register(`{"id":"reg 2","hardware":"pump-a"}`); code != http.StatusBadRequest {
		t.Fatalf("register a bad ID: %d, want 400", code)
	}
	if d, _, _ := ts.countEnrolled(t, "reg ", "device.register"); d != 0 {
		t.Fatalf("a refused registration stored %d devices", d)
	}
}

// TestEnrollRevokesCachedEarlierToken: a device token issued for an ID
// before any device had it, and already used (so verified from the token
// cache), stops working the moment the device enrolls.
func TestEnrollRevokesCachedEarlierToken(t *testing.T) {
	ts := newTestServer(t)
	early, _, err := ts.cfg.Tokens.Create(context.Background(), nil, access.NewToken{Name: "early", Role: access.RoleDevice, DeviceID: "ghost-3"}, "before the fix")
	if err != nil {
		t.Fatal(err)
	}
	check := func(token string) int {
		req := httptest.NewRequest(http.MethodGet, ts.http.URL+"/api/v1/device/update?device_id=ghost-3&hardware=pump-a&version=1.0.0", nil)
		req.RequestURI = ""
		resp, _ := ts.do(t, req, token)
		return resp.StatusCode
	}
	if got := check(early); got == http.StatusUnauthorized {
		t.Fatalf("the early token before enrollment: status = %d; want it authenticated (and cached)", got)
	}
	code, enrolled := ts.enrollAs(t, "ghost-3")
	if code != http.StatusCreated {
		t.Fatalf("enroll ghost-3: %d", code)
	}
	if got := check(early); got != http.StatusUnauthorized {
		t.Errorf("the cached token issued before ghost-3 existed: status = %d, want 401", got)
	}
	if got := check(enrolled); got/100 != 2 {
		t.Errorf("ghost-3's own token: status = %d, want 2xx", got)
	}
	entries, err := ts.cfg.Audit.List(context.Background(), audit.Filter{Action: "device.enroll", Object: "device/ghost-3"})
	if err != nil || len(entries) != 1 || entries[0].Details["revoked_prior_tokens"] != "1" {
		t.Fatalf("audit entries of ghost-3 = %+v, %v; want one with revoked_prior_tokens 1", entries, err)
	}
}
