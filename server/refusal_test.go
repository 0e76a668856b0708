package server

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/tufota/tufota/access"
	"github.com/tufota/tufota/client"
)

// TestDeviceMetadataRefusalAlerts drives the real device client against the
// real server through a man in the middle who rolls the timestamp back or
// freezes it (the device's clock is past its expiry): the client refuses,
// its report reaches the server, is recorded in the report history, and
// the device-verification alert fires with the refusal's code.
func TestDeviceMetadataRefusalAlerts(t *testing.T) {
	ts := newTestServer(t)
	var mu sync.Mutex
	var got []Alert
	secret := []byte("0123456789abcdef-alert-secret")
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
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
	deviceToken := ts.tokens[access.RoleDevice]
	get := func(path string) []byte {
		t.Helper()
		req := httptest.NewRequest(http.MethodGet, ts.http.URL+path, nil)
		req.RequestURI = ""
		res, body := ts.do(t, req, deviceToken)
		if res.StatusCode != http.StatusOK {
			t.Fatalf("GET %s = %d", path, res.StatusCode)
		}
		return body
	}
	root := get("/tuf/1.root.json")
	oldTimestamp := get("/tuf/timestamp.json")

	// The man in the middle: a proxy that can swap timestamp.json.
	var evil []byte
	target, _ := url.Parse(ts.http.URL)
	proxy := httputil.NewSingleHostReverseProxy(target)
	mitm := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		b := evil
		mu.Unlock()
		if b != nil && r.URL.Path == "/tuf/timestamp.json" {
			_, _ = w.Write(b)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	defer mitm.Close()

	for _, tt := range []struct {
		name string
		now  time.Time // the device's clock
		// attack runs after a first Check (nil: the first Check is the
		// attacked one).
		attack   func()
		wantCode string
	}{
		{"rolled-back timestamp", time.Now(), func() { mu.Lock(); evil = oldTimestamp; mu.Unlock() }, "metadata_rollback"},
		{"frozen (expired) timestamp", time.Now().Add(20 * 365 * 24 * time.Hour), nil, "metadata_expired"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			mu.Lock()
			evil, got = nil, nil
			mu.Unlock()
			ts.assignOnce(t)
			c, err := client.New(client.Config{
				ServerURL: mitm.URL, TrustedRoot: root, StateDir: t.TempDir(),
				DeviceID: ts.deviceID, Token: deviceToken, HardwareID: "pump-a", CurrentVersion: "0.0.1",
				Now: func() time.Time { return tt.now }, Retry: client.RetryPolicy{Attempts: 1},
			})
			if err != nil {
				t.Fatal(err)
			}
			if tt.attack != nil {
				if upd, err := c.Check(t.Context()); err != nil || upd == nil {
					t.Fatalf("Check before the attack = %+v, %v; want the assigned release", upd, err)
				}
				tt.attack()
			}
			if _, err := c.Check(t.Context()); !errors.Is(err, client.ErrMetadata) {
				t.Fatalf("Check under attack = %v, want ErrMetadata", err)
			}
			if n, err := c.Pending(); err != nil || n != 0 {
				t.Fatalf("pending reports = %d, %v; want all delivered", n, err)
			}
			var state, code, reported string
			if err := ts.cfg.DB.QueryRow(context.Background(), `SELECT state, error_code, target FROM status_reports
				WHERE device_id = ? ORDER BY time DESC LIMIT 1`, ts.deviceID).Scan(&state, &code, &reported); err != nil {
				t.Fatalf("report history: %v", err)
			}
			if state != "failed" || code != tt.wantCode || reported == "" {
				t.Fatalf("last report = %s %s on %q, want failed %s on the assigned target", state, code, reported, tt.wantCode)
			}
			alerts.Wait()
			mu.Lock()
			defer mu.Unlock()
			if len(got) != 1 || got[0].Kind != AlertDeviceVerification || got[0].Details["error_code"] != tt.wantCode || got[0].Details["device"] != ts.deviceID {
				t.Fatalf("alerts = %+v, want one %s with code %s", got, AlertDeviceVerification, tt.wantCode)
			}
		})
	}
}
