package server

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/tufota/tufota/access"
)

// TestDeviceTokenForUnregisteredID checks that no device token is issued
// for an ID that no device has, and that a token issued for one before
// (as the server used to) does not carry over to a device enrolled later
// under that ID: enrolling revokes it, and only the new token works.
func TestDeviceTokenForUnregisteredID(t *testing.T) {
	ts := newTestServer(t)
	req := jsonRequest(http.MethodPost, ts.http.URL+"/api/v1/tokens", `{"name":"ghost","role":"device","device_id":"ghost-1"}`)
	req.RequestURI = ""
	if resp, body := ts.do(t, req, ts.tokens[access.RoleAdmin]); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("device token for an unregistered ID: status = %d (%s), want 400", resp.StatusCode, body)
	}

	early, _, err := ts.cfg.Tokens.Create(context.Background(), nil, access.NewToken{Name: "early", Role: access.RoleDevice, DeviceID: "ghost-2"}, "before the fix")
	if err != nil {
		t.Fatal(err)
	}
	code, enrolled := ts.enrollAs(t, "ghost-2")
	if code != http.StatusCreated {
		t.Fatalf("enroll ghost-2: %d", code)
	}
	check := func(token string) int {
		req := httptest.NewRequest(http.MethodGet, ts.http.URL+"/api/v1/device/update?device_id=ghost-2&hardware=pump-a&version=1.0.0", nil)
		req.RequestURI = ""
		resp, _ := ts.do(t, req, token)
		return resp.StatusCode
	}
	if got := check(early); got != http.StatusUnauthorized {
		t.Errorf("the token issued before ghost-2 existed: status = %d, want 401", got)
	}
	if got := check(enrolled); got/100 != 2 {
		t.Errorf("ghost-2's own token: status = %d, want 2xx", got)
	}
}
