package server

import (
	"context"
	"net/http"
	"testing"

	"github.com/tufota/tufota/access"
	"github.com/tufota/tufota/audit"
)

// TestTokenChangesCommitWithTheirAudit: creating and revoking a token
// commit in the transaction of their audit entry. When the entry cannot be
// written, no token is created, none is revoked (the token still works),
// and the admin is not told otherwise; when it can, the entry is there.
func TestTokenChangesCommitWithTheirAudit(t *testing.T) {
	ts := newTestServer(t)
	ctx := context.Background()
	admin := ts.tokens[access.RoleAdmin]
	victim := ts.tokens[access.RoleAuditor]
	p, err := ts.cfg.Tokens.Authenticate(ctx, victim)
	if err != nil {
		t.Fatal(err)
	}
	count := func() int {
		t.Helper()
		var n int
		if err := ts.cfg.DB.QueryRow(ctx, `SELECT COUNT(*) FROM tokens`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	req := func(method, path, body string) *http.Request {
		r := jsonRequest(method, ts.http.URL+path, body)
		r.RequestURI = ""
		return r
	}
	breakAudit := func(broken bool) {
		t.Helper()
		q := `ALTER TABLE audit_hashes RENAME TO audit_hashes_gone`
		if !broken {
			q = `ALTER TABLE audit_hashes_gone RENAME TO audit_hashes`
		}
		if _, err := ts.cfg.DB.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}

	before := count()
	breakAudit(true)
	resp, _ := ts.do(t, req(http.MethodPost, "/api/v1/tokens", `{"name":"ci","role":"release-engineer","user":"test-release-engineer"}`), admin)
	if resp.StatusCode < 500 || count() != before {
		t.Fatalf("token create with a broken audit log = %d, %d tokens (had %d); want 5xx and none created", resp.StatusCode, count(), before)
	}
	resp, _ = ts.do(t, req(http.MethodDelete, "/api/v1/tokens/"+p.TokenID, ""), admin)
	breakAudit(false)
	if resp.StatusCode < 500 {
		t.Fatalf("token revoke with a broken audit log = %d, want 5xx", resp.StatusCode)
	}
	if _, err := ts.cfg.Tokens.Authenticate(ctx, victim); err != nil {
		t.Fatalf("a revocation whose audit entry failed took effect: %v", err)
	}

	resp, _ = ts.do(t, req(http.MethodDelete, "/api/v1/tokens/"+p.TokenID, ""), admin)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("token revoke = %d, want 200", resp.StatusCode)
	}
	if _, err := ts.cfg.Tokens.Authenticate(ctx, victim); err == nil {
		t.Fatal("the revoked token still works")
	}
	entries, err := ts.cfg.Audit.List(ctx, audit.Filter{Action: "token.revoke", Object: "token/" + p.TokenID})
	if err != nil {
		t.Fatal(err)
	}
	ok := 0
	for _, e := range entries {
		if e.Outcome == audit.OutcomeOK {
			ok++
		}
	}
	if ok != 1 {
		t.Fatalf("token.revoke entries = %+v; want exactly one successful one", entries)
	}
}
