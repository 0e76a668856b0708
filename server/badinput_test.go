package server

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tufota/tufota/access"
	"github.com/tufota/tufota/signer"
)

func errorOf(t *testing.T, body []byte) (string, string) {
	t.Helper()
	var e ErrorBody
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("error body %q is not JSON: %v", body, err)
	}
	return string(e.Error.Code), e.Error.Message
}

func TestDeviceCannotActForAnotherDevice(t *testing.T) {
	ts := newTestServer(t)
	req := httptest.NewRequest(http.MethodGet, ts.http.URL+"/api/v1/device/update?device_id=dev-2&hardware=pump-a&version=1.0.0", nil)
	req.RequestURI = ""
	resp, body := ts.do(t, req, ts.tokens[access.RoleDevice])
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("device dev-1 reading dev-2's assignment: status = %d, want 403 (%s)", resp.StatusCode, body)
	}
	if _, msg := errorOf(t, body); !strings.Contains(msg, "dev-1 may not act for device dev-2") {
		t.Fatalf("message = %q", msg)
	}
	req = httptest.NewRequest(http.MethodPost, ts.http.URL+"/api/v1/device/status", strings.NewReader(`{"device_id":"dev-2","target":"a/1.0.0/b","version":"1.0.0","state":"failed"}`))
	req.RequestURI = ""
	if resp, body := ts.do(t, req, ts.tokens[access.RoleDevice]); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("device dev-1 reporting for dev-2: status = %d, want 403 (%s)", resp.StatusCode, body)
	}
}

func TestPushBadInputOverAPI(t *testing.T) {
	ts := newTestServer(t)
	ctx := context.Background()
	before, err := ts.cfg.Repo.Targets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("x", 2<<20)
	tests := []struct {
		name    string
		release any
		file    string
		status  int
		want    string
	}{
		{"dot-dot file", signer.PushRequest{Name: "fw", Version: "1.0.0", Hardware: []string{"a"}, File: "../../etc/passwd"}, "x", 400, `file name "../../etc/passwd" must start with a letter or digit`},
		{"slash in file", signer.PushRequest{Name: "fw", Version: "1.0.0", Hardware: []string{"a"}, File: "a/b.bin"}, "x", 400, `file name "a/b.bin" contains "/"`},
		{"dot-dot name", signer.PushRequest{Name: "a..b", Version: "1.0.0", Hardware: []string{"a"}, File: "f.bin"}, "x", 400, `must not contain ".."`},
		{"backslash", signer.PushRequest{Name: `a\b`, Version: "1.0.0", Hardware: []string{"a"}, File: "f.bin"}, "x", 400, `contains "\\"`},
		{"non-semver", signer.PushRequest{Name: "fw", Version: "1.2", Hardware: []string{"a"}, File: "f.bin"}, "x", 400, "not a semantic version"},
		{"no hardware", signer.PushRequest{Name: "fw", Version: "1.0.0", File: "f.bin"}, "x", 400, "names no compatible hardware"},
		{"empty file", signer.PushRequest{Name: "fw", Version: "1.0.0", Hardware: []string{"a"}, File: "f.bin"}, "", 400, "empty"},
		{"unknown field", map[string]any{"name": "fw", "version": "1.0.0", "hardware": []string{"a"}, "file": "f.bin", "colour": "red"}, "x", 400, `unknown field "colour"`},
		{"oversized", signer.PushRequest{Name: "fw", Version: "1.0.0", Hardware: []string{"a"}, File: "f.bin"}, big, 413, "larger than"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			body, ct := pushBody(t, tc.release, []byte(tc.file))
			req := httptest.NewRequest(http.MethodPost, ts.http.URL+"/api/v1/releases", body)
			req.RequestURI = ""
			req.Header.Set("Content-Type", ct)
			resp, out := ts.do(t, req, ts.tokens[access.RoleReleaseEngineer])
			wantError(t, resp, out, tc.status, tc.want)
		})
	}
	ts.assertNothingPushed(t, before.Signed.Version)
}

func TestAuthenticationFailures(t *testing.T) {
	ts := newTestServer(t)
	ctx := context.Background()
	now := time.Now()
	clock := func() time.Time { return now }
	// Tokens issued and checked by the server's own store.
	expiring, _, err := access.NewTokens(ts.cfg.DB, clock).Create(ctx, nil, access.NewToken{Name: "short", Role: access.RoleAuditor, TTL: time.Nanosecond}, "test")
	if err != nil {
		t.Fatal(err)
	}
	revoked, tok, err := ts.cfg.Tokens.Create(ctx, nil, access.NewToken{Name: "gone", Role: access.RoleAuditor}, "test")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ts.cfg.Tokens.Revoke(ctx, tok.ID); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, header, want string
	}{
		{"missing", "", "missing Authorization header"},
		{"basic scheme", "Basic YWxpY2U6c2VjcmV0", "malformed Authorization header"},
		{"bearer without token", "Bearer ", "malformed Authorization header"},
		{"garbage token", "Bearer hello", "malformed token"},
		{"unknown token", "Bearer tft_0123456789abcdef_" + strings.Repeat("A", 43), "unknown token"},
		{"expired", "Bearer " + expiring, "expired at"},
		{"revoked", "Bearer " + revoked, "was revoked"},
		{"tampered secret", "Bearer " + ts.tokens[access.RoleAdmin][:len(ts.tokens[access.RoleAdmin])-2] + "AA", "unknown token"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, ts.http.URL+"/api/v1/releases", nil)
			req.RequestURI = ""
			if tc.header != "" {
				req.Header.Set("Authorization", tc.header)
			}
			resp, body := ts.do(t, req, "")
			if resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("status = %d, want 401 (%s)", resp.StatusCode, body)
			}
			if code, msg := errorOf(t, body); code != "unauthorized" || !strings.Contains(msg, tc.want) {
				t.Fatalf("error = %s %q, want unauthorized containing %q", code, msg, tc.want)
			}
		})
	}
}

func TestJSONBodyLimitsAndUnknownFields(t *testing.T) {
	ts := newTestServer(t)
	tests := []struct {
		name, body string
		status     int
		want       string
	}{
		{"unknown field", `{"name":"x","role":"auditor","admin":true}`, 400, `unknown field "admin"`},
		{"trailing data", `{"name":"x","role":"auditor"} {}`, 400, "trailing data"},
		{"not JSON", `name=x`, 400, "invalid JSON body"},
		{"empty", ``, 400, "empty JSON body"},
		{"oversized", `{"name":"` + strings.Repeat("x", 70<<10) + `","role":"auditor"}`, 413, "larger than"},
		{"bad role", `{"name":"x","role":"root"}`, 400, `unknown role "root"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodPost, ts.http.URL+"/api/v1/tokens", strings.NewReader(tc.body))
			req.RequestURI = ""
			req.Header.Set("Content-Type", "application/json")
			resp, body := ts.do(t, req, ts.tokens[access.RoleAdmin])
			if resp.StatusCode != tc.status {
				t.Fatalf("status = %d, want %d (%s)", resp.StatusCode, tc.status, body)
			}
			if _, msg := errorOf(t, body); !strings.Contains(msg, tc.want) {
				t.Fatalf("message = %q, want %q", msg, tc.want)
			}
		})
	}
	toks, _ := ts.cfg.Tokens.List(context.Background())
	if len(toks) != len(access.Roles) {
		t.Fatalf("bad requests created tokens: %d tokens, want %d", len(toks), len(access.Roles))
	}
}

func TestMetadataPathTricks(t *testing.T) {
	ts := newTestServer(t)
	for _, p := range []string{"/tuf/..%2fstate.db", "/tuf/targets/../../state.db", "/tuf/targets/%2e%2e/%2e%2e/state.db", "/tuf/2.root.json", "/tuf/targets/a//b", "/tuf/root.key"} {
		req, err := http.NewRequest(http.MethodGet, ts.http.URL+p, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, body := ts.do(t, req, ts.tokens[access.RoleAuditor])
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: status = %d, want 404 (%s)", p, resp.StatusCode, body)
		}
	}
}

// wantError checks an API answer's status and that its error message
// contains want.
func wantError(t *testing.T, resp *http.Response, out []byte, status int, want string) {
	t.Helper()
	if resp.StatusCode != status {
		t.Fatalf("status = %d, want %d (%s)", resp.StatusCode, status, out)
	}
	if _, msg := errorOf(t, out); !strings.Contains(msg, want) {
		t.Fatalf("message = %q, want it to contain %q", msg, want)
	}
}

// assertNothingPushed checks that refused pushes left the targets at
// version v with no target, no release row and no staged blob.
func (ts *testServer) assertNothingPushed(t *testing.T, v int64) {
	t.Helper()
	ctx := context.Background()
	after, err := ts.cfg.Repo.Targets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if after.Signed.Version != v || len(after.Signed.Targets) != 0 {
		t.Fatalf("bad pushes changed targets: v%d → v%d, %d targets", v, after.Signed.Version, len(after.Signed.Targets))
	}
	if rels, _ := ts.cfg.Releases.List(ctx); len(rels) != 0 {
		t.Fatalf("bad pushes left %d release rows", len(rels))
	}
	if staged, _ := ts.cfg.Blobs.List(ctx, "staging/"); len(staged) != 0 {
		t.Fatalf("bad pushes left %d staged blobs", len(staged))
	}
}
