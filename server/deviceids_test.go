package server

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/tufota/tufota/access"
)

// enrollAs enrolls id with an enrollment token and returns the status and
// the device token (on success).
func (ts *testServer) enrollAs(t *testing.T, id string) (int, string) {
	t.Helper()
	req := jsonRequest(http.MethodPost, ts.http.URL+"/api/v1/device/enroll", `{"device_id":"`+id+`","version":"1.0.0"}`)
	req.RequestURI = ""
	resp, body := ts.do(t, req, ts.tokens[access.RoleEnroll])
	var res DeviceTokenResponse
	if resp.StatusCode == http.StatusCreated {
		if err := json.Unmarshal(body, &res); err != nil {
			t.Fatal(err)
		}
	}
	return resp.StatusCode, res.Token
}

// TestDeviceIDsIgnoreCase enrolls dev-case then its case variants: an
// enrollment token (or an operator) cannot claim DEV-CASE beside dev-case.
func TestDeviceIDsIgnoreCase(t *testing.T) {
	ts := newTestServer(t)
	if code, _ := ts.enrollAs(t, "dev-case"); code != http.StatusCreated {
		t.Fatalf("enroll dev-case: %d", code)
	}
	for _, id := range []string{"DEV-CASE", "Dev-Case"} {
		if code, _ := ts.enrollAs(t, id); code != http.StatusConflict {
			t.Errorf("enroll %s beside dev-case: status = %d, want 409", id, code)
		}
	}
	req := jsonRequest(http.MethodPost, ts.http.URL+"/api/v1/devices", `{"id":"DEV-case","hardware":"pump-a"}`)
	req.RequestURI = ""
	if resp, body := ts.do(t, req, ts.tokens[access.RoleOperator]); resp.StatusCode != http.StatusConflict {
		t.Errorf("register DEV-case beside dev-case: status = %d (%s), want 409", resp.StatusCode, body)
	}
	// Re-registering the same ID still updates it.
	req = jsonRequest(http.MethodPost, ts.http.URL+"/api/v1/devices", `{"id":"dev-case","hardware":"pump-a"}`)
	req.RequestURI = ""
	if resp, body := ts.do(t, req, ts.tokens[access.RoleOperator]); resp.StatusCode != http.StatusCreated {
		t.Errorf("re-register dev-case: status = %d (%s), want 201", resp.StatusCode, body)
	}
}
