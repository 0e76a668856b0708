package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/tufota/tufota/access"
	"github.com/tufota/tufota/audit"
	"github.com/tufota/tufota/rollout"
)

// apiCall sends body (JSON, or none) to path with token and fails the test
// unless the status is want; it decodes the answer into out (when not nil).
func (ts *testServer) apiCall(t *testing.T, method, path, body, token string, want int, out any) []byte {
	t.Helper()
	req, err := http.NewRequest(method, ts.http.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, b := ts.do(t, req, token)
	if resp.StatusCode != want {
		t.Fatalf("%s %s: status = %d, want %d (%s)", method, path, resp.StatusCode, want, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %v (%s)", method, path, err, b)
		}
	}
	return b
}

// tokenFor creates a token named name for user via the API and returns its
// secret.
func (ts *testServer) tokenFor(t *testing.T, user, name, role string) string {
	t.Helper()
	var res CreateTokenResponse
	ts.apiCall(t, http.MethodPost, "/api/v1/tokens", fmt.Sprintf(`{"name":%q,"role":%q,"user":%q}`, name, role, user), ts.tokens[access.RoleAdmin], http.StatusCreated, &res)
	if res.Detail.Owner != user || res.Detail.OwnerID == "" {
		t.Fatalf("token %s: owner %q (%q), want %s", name, res.Detail.Owner, res.Detail.OwnerID, user)
	}
	return res.Token
}

// TestTwoPersonRuleComparesUsers (issue #13, defect 10): one person with
// two tokens of different names may not approve the rollout they created
// with the other, and the refusal is audited; another user may.
func TestTwoPersonRuleComparesUsers(t *testing.T) {
	ts := newTestServer(t)
	admin := ts.tokens[access.RoleAdmin]
	ts.apiCall(t, http.MethodPost, "/api/v1/users", `{"name":"alice","roles":["operator"]}`, admin, http.StatusCreated, nil)
	ts.apiCall(t, http.MethodPost, "/api/v1/users", `{"name":"bob","roles":["operator"]}`, admin, http.StatusCreated, nil)
	laptop := ts.tokenFor(t, "alice", "alice-laptop", "operator")
	ci := ts.tokenFor(t, "alice", "alice-ci", "operator")
	bob := ts.tokenFor(t, "bob", "bob-laptop", "operator")

	ts.push(t, "fixture", "1.0.0")
	var reg DeviceTokenResponse
	ts.apiCall(t, http.MethodPost, "/api/v1/devices", `{"id":"pump-2","hardware":"pump-a","version":"0.0.1"}`, admin, http.StatusCreated, &reg)
	devices := map[string]string{"dev-1": ts.tokens[access.RoleDevice], "pump-2": reg.Token}
	var ro rollout.Rollout
	ts.apiCall(t, http.MethodPost, "/api/v1/rollouts", `{"release":"fixture@1.0.0","cohort":"hardware=pump-a","waves":"1,100%","soak":"0s","min_reports":1,"approval_required_after_wave":1}`, laptop, http.StatusCreated, &ro)
	if ro.CreatedBy != "alice" {
		t.Fatalf("rollout created by %q, want the user alice", ro.CreatedBy)
	}
	ts.apiCall(t, http.MethodPost, "/api/v1/rollouts/"+ro.ID+"/start", "", laptop, http.StatusOK, nil)
	// The device in wave 1 installs the release.
	offered := 0
	for id, tok := range devices {
		req, err := http.NewRequest(http.MethodGet, ts.http.URL+"/api/v1/device/update?device_id="+id+"&hardware=pump-a&version=0.0.1", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, b := ts.do(t, req, tok)
		if resp.StatusCode == http.StatusNoContent {
			continue
		}
		var upd UpdateResponse
		if resp.StatusCode != http.StatusOK || json.Unmarshal(b, &upd) != nil {
			t.Fatalf("%s poll: status %d (%s)", id, resp.StatusCode, b)
		}
		offered++
		ts.apiCall(t, http.MethodPost, "/api/v1/device/status", fmt.Sprintf(`{"device_id":%q,"target":%q,"version":"1.0.0","state":"installed","rollout_id":%q}`, id, upd.Target, upd.RolloutID), tok, http.StatusNoContent, nil)
	}
	if offered != 1 {
		t.Fatalf("%d devices offered the release in wave 1, want 1", offered)
	}
	for range 3 {
		if err := ts.cfg.Rollouts.Tick(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if b := ts.apiCall(t, http.MethodGet, "/api/v1/rollouts/"+ro.ID, "", admin, http.StatusOK, nil); !strings.Contains(string(b), `"state":"waiting-approval"`) {
		t.Fatalf("rollout after wave 1: %s, want waiting-approval", b)
	}

	b := ts.apiCall(t, http.MethodPost, "/api/v1/rollouts/"+ro.ID+"/approve", `{"reason":"my other token"}`, ci, http.StatusForbidden, nil)
	if !strings.Contains(string(b), "alice created it") {
		t.Errorf("refusal: %s, want it to name the person", b)
	}
	entries, err := ts.cfg.Audit.List(context.Background(), audit.Filter{Action: "rollout.action", Object: "rollout/" + ro.ID})
	if err != nil {
		t.Fatal(err)
	}
	var denied int
	for _, e := range entries {
		if e.Outcome == audit.OutcomeDenied && e.Actor == "alice-ci" && e.Details["user"] == "alice" && e.Details["action"] == "approve" {
			denied++
		}
	}
	if denied != 1 {
		t.Fatalf("denied approvals by alice-ci audited: %d, want 1 (entries %+v)", denied, entries)
	}
	ts.apiCall(t, http.MethodPost, "/api/v1/rollouts/"+ro.ID+"/approve", `{"reason":"checked wave 1"}`, bob, http.StatusOK, nil)
	if n := ts.okEntries(t, "rollout.action", "rollout/"+ro.ID); n != 2 { // start, approve
		t.Fatalf("successful rollout actions audited: %d, want 2 (start, bob's approval)", n)
	}
}

// TestDisableUserOverAPI: an admin disables a user; every token of theirs
// fails at once on this server, the change is audited with the count, and
// an auditor may list users but not disable one.
func TestDisableUserOverAPI(t *testing.T) {
	ts := newTestServer(t)
	admin, aud := ts.tokens[access.RoleAdmin], ts.tokens[access.RoleAuditor]
	var alice access.User
	ts.apiCall(t, http.MethodPost, "/api/v1/users", `{"name":"alice","roles":["operator","auditor"]}`, admin, http.StatusCreated, &alice)
	op := ts.tokenFor(t, "alice", "alice-op", "operator")
	ro := ts.tokenFor(t, "alice", "alice-ro", "auditor")
	ts.apiCall(t, http.MethodPost, "/api/v1/tokens", `{"name":"alice-admin","role":"admin","user":"alice"}`, admin, http.StatusForbidden, nil)
	var who access.Principal
	ts.apiCall(t, http.MethodGet, "/api/v1/whoami", "", op, http.StatusOK, &who)
	if who.User != "alice" || who.UserID != alice.ID {
		t.Fatalf("whoami = %+v, want user alice", who)
	}
	var us []access.User
	ts.apiCall(t, http.MethodGet, "/api/v1/users", "", aud, http.StatusOK, &us)
	ts.apiCall(t, http.MethodPost, "/api/v1/users/alice/disable", "", aud, http.StatusForbidden, nil)
	ts.apiCall(t, http.MethodGet, "/api/v1/whoami", "", op, http.StatusOK, nil) // still valid

	var res DisableUserResponse
	ts.apiCall(t, http.MethodPost, "/api/v1/users/"+alice.ID+"/disable", "", admin, http.StatusOK, &res)
	if res.RevokedTokens != 2 || !res.User.Disabled {
		t.Fatalf("disable = %+v", res)
	}
	for _, tok := range []string{op, ro} {
		ts.apiCall(t, http.MethodGet, "/api/v1/whoami", "", tok, http.StatusUnauthorized, nil)
	}
	if n := ts.okEntries(t, "user.disable", "user/"+alice.ID); n != 1 {
		t.Fatalf("user.disable audited %d times, want 1", n)
	}
	var toks []access.Token
	ts.apiCall(t, http.MethodGet, "/api/v1/tokens", "", aud, http.StatusOK, &toks)
	for _, tok := range toks {
		if tok.Owner == "alice" && tok.RevokedAt == nil {
			t.Errorf("token %s of alice still live", tok.Name)
		}
		if tok.Role != access.RoleDevice && tok.Owner == "" {
			t.Errorf("token %s has no owner", tok.Name)
		}
	}
}
