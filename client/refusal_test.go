package client_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/tufota/tufota/client"
)

// TestCheckRefusalIsReported: when Check refuses an offer because the TUF
// metadata does not verify (a rolled-back or expired timestamp) or the
// target breaks the policy, a "failed" report with the refusal's code is
// queued and delivered; when the status endpoint is down it stays queued
// and the next Check delivers it. Network failures are not reported.
func TestCheckRefusalIsReported(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		// attack runs after a first good Check and returns the clock of
		// the second.
		attack   func(t *testing.T, s *server, c *client.Client) time.Time
		wantErr  error
		wantCode string // "" for no report
	}{
		{"rolled-back timestamp", func(t *testing.T, s *server, c *client.Client) time.Time {
			old := s.repo.File("timestamp.json")
			s.release(release("1.3.0"), 1000)
			if _, err := c.Check(t.Context()); err != nil { // the device sees the newer one
				t.Fatal(err)
			}
			s.repo.SetFile("timestamp.json", old)
			return time.Now()
		}, client.ErrMetadata, "metadata_rollback"},
		{"expired timestamp (freeze)", func(t *testing.T, s *server, c *client.Client) time.Time {
			return time.Now().Add(48 * time.Hour) // the fixture expires in 24 h
		}, client.ErrMetadata, "metadata_expired"},
		{"tampered timestamp", func(t *testing.T, s *server, c *client.Client) time.Time {
			var m map[string]any
			if err := json.Unmarshal(s.repo.File("timestamp.json"), &m); err != nil {
				t.Fatal(err)
			}
			m["signed"].(map[string]any)["version"] = 99 // not re-signed
			b, _ := json.Marshal(m)
			s.repo.SetFile("timestamp.json", b)
			return time.Now()
		}, client.ErrMetadata, "metadata_signature"},
		{"oversized timestamp", func(t *testing.T, s *server, c *client.Client) time.Time {
			s.repo.SetFile("timestamp.json", append(s.repo.File("timestamp.json"), bytes.Repeat([]byte(" "), 1<<20)...))
			return time.Now()
		}, client.ErrMetadata, "metadata_oversized"},
		{"offer not signed", func(t *testing.T, s *server, c *client.Client) time.Time {
			s.setOffer(map[string]string{"target": "pumpfw/9.9.9/fw.bin", "name": "pumpfw", "version": "9.9.9", "rollout_id": "r-1"})
			return time.Now()
		}, client.ErrNotSigned, "not_signed"},
		{"metadata server down", func(t *testing.T, s *server, c *client.Client) time.Time {
			s.failPath("/tuf/timestamp.json", http.StatusServiceUnavailable)
			return time.Now()
		}, client.ErrServer, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newServer(t)
			target, _ := s.release(release("1.2.0"), 1000)
			s.offerTarget(target)
			var now time.Time
			c := s.client(t, func(cfg *client.Config) {
				cfg.Now = func() time.Time {
					if now.IsZero() {
						return time.Now()
					}
					return now
				}
			})
			if _, err := c.Check(t.Context()); err != nil {
				t.Fatalf("first Check: %v", err)
			}
			s.failPath("/api/v1/device/status", http.StatusServiceUnavailable)
			now = tt.attack(t, s, c)
			if _, err := c.Check(t.Context()); !errors.Is(err, tt.wantErr) {
				t.Fatalf("Check under attack = %v, want %v", err, tt.wantErr)
			}
			n, err := c.Pending()
			if err != nil {
				t.Fatal(err)
			}
			if tt.wantCode == "" {
				if n != 0 {
					t.Fatalf("%d reports queued for a network failure, want none", n)
				}
				return
			}
			if n != 1 {
				t.Fatalf("%d reports queued while the status endpoint is down, want 1", n)
			}
			s.failPath("/api/v1/device/status", 0)
			_, _ = c.Check(t.Context()) // delivers the queue first (and refuses again)
			s.mu.Lock()
			defer s.mu.Unlock()
			if len(s.reports) < 1 {
				t.Fatal("no report delivered")
			}
			got := s.reports[0]
			want := map[string]string{"device_id": testDevice, "target": target, "version": "1.2.0", "state": "failed", "error_code": tt.wantCode, "rollout_id": "r-1"}
			if tt.wantCode == "not_signed" {
				want["target"], want["version"] = "pumpfw/9.9.9/fw.bin", "9.9.9"
			}
			delete(got, "message")
			if !equalMaps(got, want) {
				t.Fatalf("report = %v, want %v", got, want)
			}
		})
	}
}
