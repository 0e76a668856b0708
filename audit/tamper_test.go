package audit

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/storage"
	"golang.org/x/mod/sumdb/tlog"
)

// These tests play an attacker with write access to the database: they
// edit the audit tables with raw SQL (the package itself has no UPDATE or
// DELETE) and check that Verify and Checkpoint catch it and name the
// entry.

func exec(t *testing.T, db *storage.DB, q string, args ...any) {
	t.Helper()
	if _, err := db.Exec(context.Background(), q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// rewriteConsistently recomputes every leaf and tree hash from the
// entries as they now are, as a careful attacker would after editing them.
func rewriteConsistently(t *testing.T, db *storage.DB) {
	t.Helper()
	ctx := context.Background()
	rows, err := readEntries(ctx, db, "SELECT "+entryColumns+" FROM audit_entries ORDER BY seq")
	if err != nil {
		t.Fatal(err)
	}
	exec(t, db, "DELETE FROM audit_hashes")
	b, _ := newBuilder(0, nil)
	for _, r := range rows {
		e, err := r.entry()
		if err != nil {
			t.Fatal(err)
		}
		leaf, err := LeafHash(e)
		if err != nil {
			t.Fatal(err)
		}
		exec(t, db, "UPDATE audit_entries SET leaf = ? WHERE seq = ?", hashHex(leaf), r.seq)
		for i, h := range b.add(leaf) {
			exec(t, db, "INSERT INTO audit_hashes (idx, hash) VALUES (?, ?)", tlog.StoredHashIndex(0, r.seq)+int64(i), hashHex(h))
		}
	}
}

func TestTamperDB(t *testing.T) {
	t.Parallel()
	testTamperDB(t, func(t *testing.T) *storage.DB { return openTestDB(t, sqliteURL(t)) })
}

func testTamperDB(t *testing.T, newDB func(t *testing.T) *storage.DB) {
	tests := []struct {
		name string
		// tamper edits the database of a log with 30 entries and a
		// checkpoint at size 20.
		tamper func(t *testing.T, db *storage.DB)
		// seq is the entry Verify must name (-1: none in particular);
		// lastSeq the end of the blamed range.
		seq, lastSeq int64
		reason       string
	}{
		{
			name: "edit one field",
			tamper: func(t *testing.T, db *storage.DB) {
				exec(t, db, "UPDATE audit_entries SET actor = 'mallory' WHERE seq = 7")
			},
			seq: 7, lastSeq: 7, reason: "altered",
		},
		{
			name: "edit a field after the last checkpoint",
			tamper: func(t *testing.T, db *storage.DB) {
				exec(t, db, "UPDATE audit_entries SET outcome = 'ok' WHERE seq = 24")
			},
			seq: 24, lastSeq: 24, reason: "altered",
		},
		{
			name: "edit the time",
			tamper: func(t *testing.T, db *storage.DB) {
				exec(t, db, "UPDATE audit_entries SET time = time + 1 WHERE seq = 3")
			},
			seq: 3, lastSeq: 3, reason: "altered",
		},
		{
			name: "edit a field and its leaf hash",
			tamper: func(t *testing.T, db *storage.DB) {
				exec(t, db, "UPDATE audit_entries SET details = '{}' WHERE seq = 12")
				rows, _ := readEntries(context.Background(), db, "SELECT "+entryColumns+" FROM audit_entries WHERE seq = 12")
				e, _ := rows[0].entry()
				leaf, _ := LeafHash(e)
				exec(t, db, "UPDATE audit_entries SET leaf = ? WHERE seq = 12", hashHex(leaf))
			},
			seq: 12, lastSeq: 12, reason: "stored tree hash",
		},
		{
			name:   "delete an entry",
			tamper: func(t *testing.T, db *storage.DB) { exec(t, db, "DELETE FROM audit_entries WHERE seq = 9") },
			seq:    9, lastSeq: 9, reason: "missing",
		},
		{
			name: "reorder two entries",
			tamper: func(t *testing.T, db *storage.DB) {
				exec(t, db, "UPDATE audit_entries SET seq = -1 WHERE seq = 4")
				exec(t, db, "UPDATE audit_entries SET seq = 4 WHERE seq = 11")
				exec(t, db, "UPDATE audit_entries SET seq = 11 WHERE seq = -1")
			},
			seq: 4, lastSeq: 4, reason: "altered",
		},
		{
			name: "truncate the tail after a checkpoint",
			tamper: func(t *testing.T, db *storage.DB) {
				exec(t, db, "DELETE FROM audit_entries WHERE seq >= 15")
				exec(t, db, "DELETE FROM audit_hashes WHERE idx >= ?", tlog.StoredHashCount(15))
			},
			seq: 15, lastSeq: 19, reason: "checkpoint covers",
		},
		{
			name: "truncate the tail after the last checkpoint",
			tamper: func(t *testing.T, db *storage.DB) {
				exec(t, db, "DELETE FROM audit_entries WHERE seq >= 25")
			},
			seq: 25, lastSeq: 25, reason: "tree hashes are stored",
		},
		{
			name: "forge the checkpoint signature",
			tamper: func(t *testing.T, db *storage.DB) {
				var msg string
				if err := db.QueryRow(context.Background(), "SELECT note FROM audit_checkpoints WHERE size = 20").Scan(&msg); err != nil {
					t.Fatal(err)
				}
				exec(t, db, "UPDATE audit_checkpoints SET note = ? WHERE size = 20", string(forgeSignature([]byte(msg))))
			},
			seq: -1, lastSeq: -1, reason: "signature",
		},
		{
			name: "rewrite an entry and every hash consistently",
			tamper: func(t *testing.T, db *storage.DB) {
				exec(t, db, "UPDATE audit_entries SET actor = 'mallory' WHERE seq = 13")
				rewriteConsistently(t, db)
			},
			seq: 0, lastSeq: 19, reason: "signed checkpoint of size 20",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			db := newDB(t)
			l := newLogOn(t, db)
			appendN(t, l, 0, 20)
			mustCheckpoint(t, l)
			appendN(t, l, 20, 10)
			if rep, err := l.Verify(ctx); err != nil || !rep.OK {
				t.Fatalf("untouched log: Verify = %+v, %v", rep, err)
			}

			tt.tamper(t, db)

			rep, err := l.Verify(ctx)
			var ve *VerifyError
			if !errors.As(err, &ve) {
				t.Fatalf("Verify after tampering = %+v, %v; want a *VerifyError", rep, err)
			}
			if ve.Seq != tt.seq || ve.LastSeq != tt.lastSeq || !strings.Contains(ve.Reason, tt.reason) {
				t.Fatalf("Verify error = seq %d..%d %q; want seq %d..%d mentioning %q", ve.Seq, ve.LastSeq, ve.Reason, tt.seq, tt.lastSeq, tt.reason)
			}
			if rep.OK || rep.BrokenSeq != tt.seq || rep.Problem != ve.Reason {
				t.Fatalf("report = %+v; want not OK, broken seq %d", rep, tt.seq)
			}
			if !errors.Is(err, tufota.ErrInvalid) {
				t.Fatalf("Verify error %v does not match tufota.ErrInvalid", err)
			}

			// Checkpoint refuses to sign over the tampered log (except
			// for edits it cannot see: nothing may be signed then either
			// if the edit is before the last checkpoint, which the next
			// Verify reports; checked above).
			var before int64
			if err := db.QueryRow(ctx, "SELECT COUNT(*) FROM audit_checkpoints").Scan(&before); err != nil {
				t.Fatal(err)
			}
			_, cerr := l.Checkpoint(ctx)
			var after int64
			if err := db.QueryRow(ctx, "SELECT COUNT(*) FROM audit_checkpoints").Scan(&after); err != nil {
				t.Fatal(err)
			}
			if tt.seq >= 20 || tt.seq == -1 || tt.lastSeq >= 19 {
				// Tampering after the last checkpoint, with the last
				// checkpoint itself, or consistently before it.
				if !errors.As(cerr, &ve) || after != before {
					t.Fatalf("Checkpoint after tampering = %v (checkpoints %d → %d); want a *VerifyError and nothing stored", cerr, before, after)
				}
			}
		})
	}
}

// TestCheckpointCatchesTamperingSinceLast: Checkpoint only rescans the
// entries since the last checkpoint, but an edit to an older entry that
// also fixes the stored leaf and tree hashes is caught by the old root.
func TestCheckpointCatchesTamperingSinceLast(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l, db := newTestLog(t)
	appendN(t, l, 0, 20)
	mustCheckpoint(t, l)
	appendN(t, l, 20, 5)
	exec(t, db, "UPDATE audit_entries SET object = 'rollout/forged' WHERE seq = 2")
	rewriteConsistently(t, db)
	_, err := l.Checkpoint(ctx)
	var ve *VerifyError
	if !errors.As(err, &ve) || !strings.Contains(ve.Reason, "no longer match the signed checkpoint of size 20") {
		t.Fatalf("Checkpoint = %v; want a *VerifyError about the checkpoint of size 20", err)
	}
}
