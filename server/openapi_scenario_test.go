package server

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/tufota/tufota/access"
	"github.com/tufota/tufota/signer"
)

// TestOpenAPIValidatesTraffic runs an operator's day against a real server
// on loopback, with every request and response validated against the
// OpenAPI document by the client's transport: push a release, list and
// show it, create a cohort, register and enroll devices, create a rollout
// with an approval gate, start, pause and resume it, let the devices poll
// and report, approve the next wave, read its status and history, manage
// tokens, read, verify, export and checkpoint the audit log, read the fleet
// report, status, metrics, delegations and root, read TUF metadata and
// targets (also conditionally, 304, and by range, 206), and provoke
// documented errors (401, 403, 404, 409, 400).
func TestOpenAPIValidatesTraffic(t *testing.T) {
	ts := newTestServer(t)
	v := ts.checkTraffic(t)
	u := ts.http.URL
	tok := func(r access.Role) string { return "Bearer " + ts.tokens[r] }
	// call sends a request and checks its status; the transport validates it.
	call := func(method, path, body, auth string, want int) []byte {
		t.Helper()
		resp, b := ts.do(t, openAPIRequest(t, method, u+path, body, auth), "")
		if resp.StatusCode != want {
			t.Fatalf("%s %s: status = %d, want %d (%s)", method, path, resp.StatusCode, want, b)
		}
		return b
	}
	// refuse sends a request that breaks the document and checks the error.
	refuse := func(method, path, body, auth string, want int) {
		t.Helper()
		resp, b := ts.do(t, breaksOpenAPI(openAPIRequest(t, method, u+path, body, auth)), "")
		if resp.StatusCode != want {
			t.Fatalf("%s %s: status = %d, want %d (%s)", method, path, resp.StatusCode, want, b)
		}
	}
	admin, op, aud := tok(access.RoleAdmin), tok(access.RoleOperator), tok(access.RoleAuditor)

	// Health and the document itself.
	call("GET", "/healthz", "", "", 200)
	call("GET", "/readyz", "", "", 200)
	call("GET", "/api/v1/openapi.json", "", aud, 200)
	call("GET", "/api/v1/whoami", "", tok(access.RoleDevice), 200)

	// A release: push (multipart), list, show.
	body, ct := pushBody(t, signer.PushRequest{Name: "pump", Version: "1.2.0", Hardware: []string{"pump-a"}, File: "fw.bin", Notes: "fixes the alarm"}, []byte("firmware pump 1.2.0"))
	req, _ := http.NewRequest("POST", u+"/api/v1/releases", body)
	req.Header.Set("Content-Type", ct)
	if resp, b := ts.do(t, req, ts.tokens[access.RoleReleaseEngineer]); resp.StatusCode != http.StatusCreated {
		t.Fatalf("push: status = %d (%s)", resp.StatusCode, b)
	}
	call("GET", "/api/v1/releases", "", aud, 200)
	call("GET", "/api/v1/releases/pump/1.2.0", "", op, 200)

	// Devices: register one, enroll one with an enrollment token.
	var reg DeviceTokenResponse
	openAPIDecode(t, call("POST", "/api/v1/devices", `{"id":"pump-7","hardware":"pump-a","version":"1.0.0","attrs":{"site":"north"},"tags":["icu"]}`, op, 201), &reg)
	var et EnrollTokenResponse
	openAPIDecode(t, call("POST", "/api/v1/enroll-tokens", `{"hardware":"pump-a","tags":["icu"],"expires":"1h"}`, op, 201), &et)
	var enr DeviceTokenResponse
	openAPIDecode(t, call("POST", "/api/v1/device/enroll", `{"device_id":"pump-8","version":"1.0.0"}`, "Bearer "+et.EnrollToken, 201), &enr)
	call("GET", "/api/v1/devices", "", aud, 200)
	call("GET", "/api/v1/devices/pump-7", "", aud, 200)

	// A cohort and a rollout in two waves with an approval gate after the first.
	call("POST", "/api/v1/cohorts", `{"name":"icu","selector":"tag:icu"}`, op, 201)
	call("GET", "/api/v1/cohorts", "", aud, 200)
	call("GET", "/api/v1/cohorts/icu", "", aud, 200)
	var ro struct {
		ID string `json:"id"`
	}
	openAPIDecode(t, call("POST", "/api/v1/rollouts", `{"release":"pump@1.2.0","cohort":"icu","waves":"1,100%","soak":"0s","min_reports":1,"approval_required_after_wave":1}`, op, 201), &ro)
	call("GET", "/api/v1/rollouts", "", aud, 200)
	for _, action := range []string{"start", "pause", "resume"} {
		call("POST", "/api/v1/rollouts/"+ro.ID+"/"+action, `{"reason":"openapi scenario"}`, op, 200)
	}

	// The devices poll; the one in wave 1 downloads and installs.
	devices := map[string]string{"pump-7": "Bearer " + reg.Token, "pump-8": "Bearer " + enr.Token}
	offered := ""
	var upd UpdateResponse
	for id, auth := range devices {
		resp, b := ts.do(t, openAPIRequest(t, "GET", u+"/api/v1/device/update?device_id="+id+"&hardware=pump-a&version=1.0.0", "", auth), "")
		switch resp.StatusCode {
		case http.StatusOK:
			offered = id
			openAPIDecode(t, b, &upd)
		case http.StatusNoContent:
		default:
			t.Fatalf("%s poll: status = %d (%s)", id, resp.StatusCode, b)
		}
	}
	if offered == "" {
		t.Fatal("no device was offered the release in wave 1")
	}
	auth := devices[offered]
	call("GET", "/tuf/timestamp.json", "", auth, 200)
	call("HEAD", "/tuf/timestamp.json", "", auth, 200)
	call("GET", "/tuf/1.root.json", "", auth, 200)
	call("GET", ts.targetURL(t, upd.Target), "", auth, 200)
	// Conditional and range reads, as a polling or resuming device makes them.
	resp, _ := ts.do(t, openAPIRequest(t, "GET", u+"/tuf/timestamp.json", "", auth), "")
	cond := openAPIRequest(t, "GET", u+"/tuf/timestamp.json", "", auth)
	cond.Header.Set("If-None-Match", resp.Header.Get("ETag"))
	if resp, b := ts.do(t, cond, ""); resp.StatusCode != http.StatusNotModified {
		t.Fatalf("conditional metadata read: status = %d (%s), want 304", resp.StatusCode, b)
	}
	rng := openAPIRequest(t, "GET", u+ts.targetURL(t, upd.Target), "", auth)
	rng.Header.Set("Range", "bytes=4-")
	if resp, b := ts.do(t, rng, ""); resp.StatusCode != http.StatusPartialContent {
		t.Fatalf("range read: status = %d (%s), want 206", resp.StatusCode, b)
	}
	call("HEAD", ts.targetURL(t, upd.Target), "", auth, 200)
	for _, state := range []string{"downloading", "installing", "installed"} {
		call("POST", "/api/v1/device/status", `{"device_id":"`+offered+`","target":"`+upd.Target+`","version":"1.2.0","state":"`+state+`","rollout_id":"`+upd.RolloutID+`"}`, auth, 204)
	}
	if err := ts.cfg.Rollouts.Tick(context.Background()); err != nil {
		t.Fatal(err)
	}
	if b := call("GET", "/api/v1/rollouts/"+ro.ID, "", aud, 200); !strings.Contains(string(b), `"state":"waiting-approval"`) {
		t.Fatalf("rollout after wave 1: %s, want waiting-approval", b)
	}
	// Four eyes: the creator may not approve; an admin does.
	call("POST", "/api/v1/rollouts/"+ro.ID+"/approve", `{"reason":"wave 1 healthy"}`, op, 403)
	call("POST", "/api/v1/rollouts/"+ro.ID+"/approve", `{"reason":"wave 1 healthy"}`, admin, 200)
	call("GET", "/api/v1/rollouts/"+ro.ID+"/history", "", aud, 200)

	// Users and tokens: create, list, revoke, disable.
	call("POST", "/api/v1/users", `{"name":"ci","roles":["release-engineer"]}`, admin, 201)
	call("GET", "/api/v1/users", "", aud, 200)
	var ct2 CreateTokenResponse
	openAPIDecode(t, call("POST", "/api/v1/tokens", `{"name":"ci","role":"release-engineer","user":"ci","expires":"24h"}`, admin, 201), &ct2)
	call("POST", "/api/v1/tokens", `{"name":"ci2","role":"admin","user":"ci"}`, admin, 403) // more than its owner's roles
	call("GET", "/api/v1/tokens", "", aud, 200)
	call("DELETE", "/api/v1/tokens/"+ct2.Detail.ID, "", admin, 200)
	call("POST", "/api/v1/users/ci/disable", "", admin, 200)
	call("POST", "/api/v1/users/ci/disable", "", admin, 409)
	call("POST", "/api/v1/users/nobody/disable", "", admin, 404)
	refuse("POST", "/api/v1/users", `{"name":"x","roles":["wizard"]}`, admin, 400)

	// The audit log.
	call("GET", "/api/v1/audit?action=release.push&since=24h&limit=10", "", aud, 200)
	call("GET", "/api/v1/audit/verify", "", aud, 200)
	call("POST", "/api/v1/audit/checkpoint", "", admin, 200)
	call("GET", "/api/v1/audit/export", "", aud, 200)
	call("GET", "/api/v1/audit/export?format=csv", "", aud, 200)

	// Reports, status, signing state.
	call("GET", "/api/v1/fleet/report", "", aud, 200)
	call("GET", "/api/v1/status", "", aud, 200)
	call("GET", "/metrics", "", aud, 200)
	call("GET", "/api/v1/delegations", "", aud, 200)
	call("POST", "/api/v1/delegations", `{"name":"line-b","paths":["line-b/*/*"],"keys":[`+lineKeyJSON(t)+`],"threshold":1}`, admin, 201)
	call("GET", "/api/v1/root", "", aud, 200)

	// Documented errors.
	refuse("GET", "/api/v1/releases", "", "", 401) // no credentials
	call("GET", "/api/v1/releases", "", "Bearer tft_0000000000000000_"+strings.Repeat("A", 43), 401)
	call("POST", "/api/v1/cohorts", `{"name":"ward","selector":"tag:ward"}`, aud, 403)
	call("GET", "/api/v1/device/update?device_id=dev-1", "", auth, 403) // a device asks for another
	call("GET", "/api/v1/releases/pump/9.9.9", "", aud, 404)
	call("GET", "/api/v1/cohorts/nope", "", aud, 404)
	call("GET", "/tuf/99.root.json", "", auth, 404)
	call("HEAD", "/tuf/99.root.json", "", auth, 404)
	call("GET", "/api/v1/root/pending", "", admin, 404)
	call("POST", "/api/v1/cohorts", `{"name":"icu","selector":"tag:icu"}`, op, 409)
	call("POST", "/api/v1/rollouts/"+ro.ID+"/start", "", op, 409)
	call("POST", "/api/v1/cohorts", `{"name":"bad","selector":"no such selector"}`, op, 400)
	call("POST", "/api/v1/tokens", `{"name":"x","role":"admin","expires":"forever"}`, admin, 400)
	refuse("POST", "/api/v1/cohorts", `{"name":"ward","selector":"tag:ward","owner":"x"}`, op, 400)
	refuse("POST", "/api/v1/tokens", `{"name":"x","role":"wizard"}`, admin, 400)
	refuse("GET", "/api/v1/audit?limit=0", "", aud, 400)
	refuse("GET", "/api/v1/audit/export?format=xml", "", aud, 400)
	refuse("POST", "/api/v1/rollouts/"+ro.ID+"/explode", "", op, 404)
	refuse("POST", "/api/v1/device/status", `{"target":"`+upd.Target+`","version":"1.2.0","state":"exploded"}`, auth, 400)

	for _, st := range []struct {
		method, path string
		status       int
	}{
		{"GET", "/api/v1/releases", 401},
		{"POST", "/api/v1/cohorts", 403},
		{"GET", "/api/v1/releases/{name}/{version}", 404},
		{"POST", "/api/v1/cohorts", 409},
		{"POST", "/api/v1/cohorts", 400},
		{"POST", "/api/v1/rollouts/{id}/{action}", 200},
		{"GET", "/api/v1/device/update", 200},
		{"POST", "/api/v1/device/status", 204},
		{"GET", "/tuf/{file}", 304},
		{"GET", "/tuf/targets/{path}", 206},
	} {
		got := v.statuses(st.method, st.path)
		found := false
		for _, s := range got {
			found = found || s == st.status
		}
		if !found {
			t.Errorf("%s %s: status %d not validated (got %v)", st.method, st.path, st.status, got)
		}
	}
}
