package server

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tufota/tufota/access"
)

// TestSecurityAlerts checks that repeated auth failures, a device's
// verification failure and offline roles near expiry reach the webhook,
// HMAC-signed, and that a receiver can verify the signature.
func TestSecurityAlerts(t *testing.T) {
	ts := newTestServer(t)
	secret := []byte("0123456789abcdef-alert-secret")
	var mu sync.Mutex
	var got []Alert
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.Header.Get(alertSignatureHeader) != SignAlert(secret, r.Header.Get(alertTimestampHeader), body) {
			t.Errorf("alert with a bad signature: %s", body)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		var a Alert
		if err := json.Unmarshal(body, &a); err != nil {
			t.Errorf("alert body: %v", err)
		}
		mu.Lock()
		got = append(got, a)
		mu.Unlock()
	}))
	defer hook.Close()
	alerts, err := NewAlerter(hook.URL, secret, hook.Client(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ts.cfg.Alerts = alerts
	if _, err := NewAlerter(hook.URL, nil, nil, nil); err == nil {
		t.Fatal("an alerter without a secret was accepted")
	}

	for i := 0; i < authFailureAlertThreshold+2; i++ {
		req := httptest.NewRequest(http.MethodGet, ts.http.URL+"/api/v1/releases", nil)
		req.RequestURI = ""
		ts.do(t, req, "tft_0123456789abcdef_"+strings.Repeat("C", 43))
	}
	req := jsonRequest(http.MethodPost, ts.http.URL+"/api/v1/device/status", `{"device_id":"dev-1","target":"fw/1.0.0/fw.bin","version":"1.0.0","state":"failed","error_code":"hash_mismatch"}`)
	req.RequestURI = ""
	ts.do(t, req, ts.tokens[access.RoleDevice])
	line := ts.publishedDelegation(t, 1) // a delegated role with metadata: offline too
	ts.cfg.OfflineExpiryWarning = 100 * 365 * 24 * time.Hour
	ts.RefreshOnce(context.Background())
	ts.RefreshOnce(context.Background()) // deduplicated
	alerts.Wait()

	mu.Lock()
	defer mu.Unlock()
	var kinds []string
	for _, a := range got {
		kinds = append(kinds, a.Kind+":"+a.Details["role"])
	}
	sort.Strings(kinds)
	want := []string{AlertAuthFailures + ":", AlertDeviceVerification + ":", AlertOfflineRoleExpiring + ":" + line, AlertOfflineRoleExpiring + ":root", AlertOfflineRoleExpiring + ":targets"}
	if strings.Join(kinds, " ") != strings.Join(want, " ") {
		t.Fatalf("alerts = %v, want %v", kinds, want)
	}
}
