package server

import (
	"context"
	"net/http"
	"testing"

	"github.com/tufota/tufota/access"
)

// TestCheckpointCommitsWithItsAudit: a checkpoint an admin asks for is
// stored in the transaction of its audit entry. When the entry cannot be
// written (the log's tree is readable, so the checkpoint itself could be
// signed), no checkpoint is stored and the admin gets an error.
func TestCheckpointCommitsWithItsAudit(t *testing.T) {
	ts := newTestServer(t)
	ctx := context.Background()
	admin := ts.tokens[access.RoleAdmin]
	count := func() int {
		t.Helper()
		var n int
		if err := ts.cfg.DB.QueryRow(ctx, `SELECT COUNT(*) FROM audit_checkpoints`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	checkpoint := func() int {
		t.Helper()
		r := jsonRequest(http.MethodPost, ts.http.URL+"/api/v1/audit/checkpoint", "")
		r.RequestURI = ""
		resp, _ := ts.do(t, r, admin)
		return resp.StatusCode
	}
	ts.push(t, "fixture", "1.0.0") // something to checkpoint
	before := count()
	if _, err := ts.cfg.DB.Exec(ctx, `CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_entries BEGIN SELECT RAISE(ABORT, 'refused'); END`); err != nil {
		t.Fatal(err)
	}
	if code := checkpoint(); code < 400 || count() != before {
		t.Fatalf("checkpoint with a refusing audit log = %d, %d checkpoints (had %d); want an error and none stored", code, count(), before)
	}
	if _, err := ts.cfg.DB.Exec(ctx, `DROP TRIGGER refuse_audit`); err != nil {
		t.Fatal(err)
	}
	if code := checkpoint(); code != http.StatusOK || count() != before+1 {
		t.Fatalf("checkpoint = %d, %d checkpoints (had %d); want 200 and one stored", code, count(), before)
	}
	if n := ts.okEntries(t, "audit.checkpoint", "audit/checkpoint"); n != 1 {
		t.Fatalf("audit.checkpoint entries = %d, want 1", n)
	}
}
