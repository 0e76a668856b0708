package ui

import (
	"bufio"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/tufota/tufota/access"
)

// readEvent reads one server-sent event (its name and data).
func readEvent(t *testing.T, r *bufio.Reader) (name, data string, ok bool) {
	t.Helper()
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return name, data, false
		}
		line = strings.TrimRight(line, "\n")
		switch {
		case line == "" && name != "":
			return name, data, true
		case strings.HasPrefix(line, "event: "):
			name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			data = strings.TrimPrefix(line, "data: ")
		}
	}
}

func TestLiveStream(t *testing.T) {
	tests := []struct {
		name string
		end  func(h *harness)
		want string // the last event before the stream ends; "" for none
	}{
		{"server shuts down", func(h *harness) { h.ui.Shutdown() }, ""},
		{"token revoked", func(h *harness) {
			h.tokens.mu.Lock()
			h.tokens.revoked["id-auditor"] = true
			h.tokens.mu.Unlock()
		}, "signedout"},
		{"signed out", func(h *harness) {
			h.ui.sessions.mu.Lock()
			clear(h.ui.sessions.m)
			h.ui.sessions.mu.Unlock()
		}, "signedout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			srv := httptest.NewServer(h.e)
			defer srv.Close()
			sc, _ := h.signIn(access.RoleAuditor)

			// Without a session the stream is not served.
			resp, err := http.Get(srv.URL + "/ui/rollouts/r-1/live")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.Request.URL.Path != "/ui/login" {
				t.Fatalf("stream without a session ended at %s, want the sign-in page", resp.Request.URL.Path)
			}

			req, _ := http.NewRequest(http.MethodGet, srv.URL+"/ui/rollouts/r-1/live", nil)
			req.AddCookie(sc)
			resp, err = http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
				t.Fatalf("Content-Type = %q", ct)
			}
			r := bufio.NewReader(resp.Body)
			name, data, ok := readEvent(t, r)
			if !ok || name != "status" {
				t.Fatalf("first event = %q %q", name, data)
			}
			var ch chart
			if err := json.Unmarshal([]byte(data), &ch); err != nil || ch.State != "waiting-approval" || len(ch.Rows) != 2 {
				t.Fatalf("status event = %s (%v)", data, err)
			}
			tt.end(h)
			last := ""
			for {
				name, _, ok := readEvent(t, r)
				if !ok {
					break
				}
				last = name
			}
			if last != tt.want {
				t.Errorf("last event = %q, want %q", last, tt.want)
			}
		})
	}
}
