package server

import (
	"context"
	"errors"
	"testing"

	"github.com/tufota/tufota/audit"
	"github.com/tufota/tufota/storage"
)

// TestSystemAuditCommitsWithTheChange checks the audit of the server's own
// changes (start-up reconciliation): the entry is the system's, names the
// release and why, and commits only with its transaction.
func TestSystemAuditCommitsWithTheChange(t *testing.T) {
	ts := newTestServer(t)
	ctx := context.Background()
	f := SystemAudit(ts.cfg.Audit, "start-up reconciliation")

	boom := errors.New("the change failed")
	if err := ts.cfg.DB.Tx(ctx, func(tx *storage.Tx) error {
		if err := f(ctx, tx, "release.rollback", map[string]string{"release": "fw@0.9.0"}); err != nil {
			return err
		}
		return boom
	}); !errors.Is(err, boom) {
		t.Fatalf("Tx = %v, want %v", err, boom)
	}
	if err := ts.cfg.DB.Tx(ctx, func(tx *storage.Tx) error {
		return f(ctx, tx, "release.publish", map[string]string{"release": "fw@1.0.0", "version": "3"})
	}); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		action string
		want   int
	}{{"release.rollback", 0}, {"release.publish", 1}} {
		es, err := ts.cfg.Audit.List(ctx, audit.Filter{Action: tc.action})
		if err != nil {
			t.Fatal(err)
		}
		if len(es) != tc.want {
			t.Fatalf("%s: %d entries, want %d: %+v", tc.action, len(es), tc.want, es)
		}
		for _, e := range es {
			if e.Actor != "system" || e.Role != "system" || e.Object != "release/fw@1.0.0" ||
				e.Details["reason"] != "start-up reconciliation" || e.Details["version"] != "3" || e.Outcome != audit.OutcomeOK {
				t.Errorf("%s entry = %+v", tc.action, e)
			}
		}
	}
	if _, err := ts.cfg.Audit.Verify(ctx); err != nil {
		t.Fatalf("the chain after a rolled-back entry: %v", err)
	}
}
