package audit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/storage"
	"golang.org/x/mod/sumdb/tlog"
)

func TestAppendVerify(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l, _ := newTestLog(t)

	rep, err := l.Verify(ctx)
	if err != nil || !rep.OK || rep.Size != 0 {
		t.Fatalf("Verify(empty) = %+v, %v; want OK, size 0", rep, err)
	}
	entries := appendN(t, l, 0, 40)
	for i, e := range entries {
		if e.Seq != int64(i) {
			t.Fatalf("entry %d: Seq = %d", i, e.Seq)
		}
		leaf, err := LeafHash(e)
		if err != nil || e.Hash != hashHex(leaf) {
			t.Fatalf("entry %d: Hash = %s, want %s (%v)", i, e.Hash, hashHex(leaf), err)
		}
		if e.Time.Location() != time.UTC {
			t.Fatalf("entry %d: Time %v is not UTC", i, e.Time)
		}
	}
	msg := mustCheckpoint(t, l)
	c, err := OpenCheckpoint(msg, l.Verifier())
	if err != nil || c.Size != 40 || c.Origin != testOrigin {
		t.Fatalf("checkpoint = %+v, %v; want size 40", c, err)
	}
	// The root equals tlog's over the stored hashes.
	want, err := tlog.TreeHash(40, hashReader{ctx, l.db})
	if err != nil || c.Hash != want {
		t.Fatalf("checkpoint root = %v, tlog.TreeHash = %v (%v)", c.Hash, want, err)
	}
	// Unchanged log: the same checkpoint comes back, nothing re-signed.
	if again := mustCheckpoint(t, l); string(again) != string(msg) {
		t.Fatalf("second Checkpoint without appends differs:\n%s\n%s", again, msg)
	}
	appendN(t, l, 40, 25)
	mustCheckpoint(t, l)
	appendN(t, l, 65, 3) // not yet checkpointed

	rep, err = l.Verify(ctx)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if !rep.OK || rep.Size != 68 || rep.Entries != 68 || rep.Checkpoints != 2 || rep.Head.Size != 65 || rep.BrokenSeq != -1 {
		t.Fatalf("Verify report = %+v; want OK, 68 entries, 2 checkpoints, head 65", rep)
	}
}

func TestAppendRejects(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l, _ := newTestLog(t)
	tests := []struct {
		name string
		e    Entry
		code tufota.Code
	}{
		{"no actor", Entry{Action: "x", Outcome: OutcomeOK}, tufota.EInvalid},
		{"no action", Entry{Actor: "a", Outcome: OutcomeOK}, tufota.EInvalid},
		{"bad outcome", Entry{Actor: "a", Action: "x", Outcome: "maybe"}, tufota.EInvalid},
		{"empty details key", Entry{Actor: "a", Action: "x", Outcome: OutcomeOK, Details: map[string]string{"": "v"}}, tufota.EInvalid},
		{"NUL", Entry{Actor: "a\x00", Action: "x", Outcome: OutcomeOK}, tufota.EInvalid},
		{"too large", Entry{Actor: "a", Action: "x", Outcome: OutcomeOK, Details: map[string]string{"k": strings.Repeat("x", MaxEntrySize)}}, tufota.ETooLarge},
	}
	for _, tt := range tests {
		if _, err := l.Append(ctx, tt.e); tufota.ErrorCode(err) != tt.code {
			t.Errorf("%s: Append error = %v, want code %q", tt.name, err, tt.code)
		}
	}
	if got, err := l.List(ctx, Filter{}); err != nil || len(got) != 0 {
		t.Fatalf("after rejected appends, List = %d entries, %v; want none", len(got), err)
	}
}

func TestNewRejects(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := openTestDB(t, sqliteURL(t))
	s := testSigner(t, 1)
	other := testSigner(t, 2)
	if _, err := New(ctx, db, s, WithVerifierKey(other.VerifierKey())); !errors.Is(err, tufota.ErrInvalid) {
		t.Errorf("New with a foreign verifier key: error = %v, want EInvalid", err)
	}
	if _, err := New(ctx, db, s, WithRetention(365*24*time.Hour)); !errors.Is(err, tufota.ErrInvalid) {
		t.Errorf("New with one-year retention: error = %v, want EInvalid", err)
	}
	l, err := New(ctx, db, s)
	if err != nil || l.Retention() != DefaultRetention || l.VerifierKey() != s.VerifierKey() || l.Origin() != testOrigin {
		t.Fatalf("New = %v; retention %v, key %q", err, l.Retention(), l.VerifierKey())
	}
}

func TestList(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l, _ := newTestLog(t)
	all := appendN(t, l, 0, 20)

	between := func(from, to int) []int64 {
		var s []int64
		for i := from; i < to; i++ {
			s = append(s, int64(i))
		}
		return s
	}
	tests := []struct {
		name string
		f    Filter
		want []int64
	}{
		{"all", Filter{}, between(0, 20)},
		{"actor", Filter{Actor: "bob"}, []int64{1, 5, 9, 13, 17}},
		{"action and object", Filter{Action: "token.create", Object: "rollout/r-0"}, []int64{0, 15}},
		{"since inclusive, until exclusive", Filter{Since: all[3].Time, Until: all[6].Time}, []int64{3, 4, 5}},
		{"limit", Filter{Limit: 2}, []int64{0, 1}},
		{"newest first", Filter{Reverse: true, Limit: 3}, []int64{19, 18, 17}},
		{"no match", Filter{Actor: "mallory"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := l.List(ctx, tt.f)
			if err != nil {
				t.Fatal(err)
			}
			var seqs []int64
			for _, e := range got {
				seqs = append(seqs, e.Seq)
				if want := all[e.Seq]; fmt.Sprint(e) != fmt.Sprint(want) {
					t.Errorf("List entry %d = %+v, want %+v as appended", e.Seq, e, want)
				}
			}
			if fmt.Sprint(seqs) != fmt.Sprint(tt.want) {
				t.Fatalf("List(%+v) seqs = %v, want %v", tt.f, seqs, tt.want)
			}
		})
	}
	if _, err := l.List(ctx, Filter{Limit: -1}); !errors.Is(err, tufota.ErrInvalid) {
		t.Fatalf("List(Limit -1) error = %v, want EInvalid", err)
	}
}

// TestInclusionProof proves one entry is in a signed checkpoint, and that
// an altered copy of it is not.
func TestInclusionProof(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l, _ := newTestLog(t)
	entries := appendN(t, l, 0, 37)
	cp := mustCheckpoint(t, l)
	for _, seq := range []int64{0, 17, 36} {
		proof, err := l.ProveInclusion(ctx, seq, 37)
		if err != nil {
			t.Fatalf("ProveInclusion(%d): %v", seq, err)
		}
		if err := VerifyInclusion(entries[seq], proof, cp, l.Verifier()); err != nil {
			t.Fatalf("VerifyInclusion(%d): %v", seq, err)
		}
	}
	proof, _ := l.ProveInclusion(ctx, 17, 37)
	altered := entries[17]
	altered.Actor = "mallory"
	altered.Hash = ""
	if err := VerifyInclusion(altered, proof, cp, l.Verifier()); !errors.Is(err, tufota.ErrInvalid) {
		t.Fatalf("VerifyInclusion(altered entry) error = %v, want EInvalid", err)
	}
	moved := entries[17]
	moved.Seq = 18
	moved.Hash = ""
	if err := VerifyInclusion(moved, proof, cp, l.Verifier()); !errors.Is(err, tufota.ErrInvalid) {
		t.Fatalf("VerifyInclusion(entry under another seq) error = %v, want EInvalid", err)
	}
	if err := VerifyInclusion(entries[17], proof, forgeSignature(cp), l.Verifier()); !errors.Is(err, tufota.ErrInvalid) {
		t.Fatalf("VerifyInclusion(forged checkpoint) error = %v, want EInvalid", err)
	}
	if _, err := l.ProveInclusion(ctx, 37, 37); !errors.Is(err, tufota.ErrInvalid) {
		t.Fatalf("ProveInclusion(37 in 37) error = %v, want EInvalid", err)
	}
	// Consistency proof between two sizes, checked with tlog.
	appendN(t, l, 37, 10)
	cp2 := mustCheckpoint(t, l)
	c1, _ := OpenCheckpoint(cp, l.Verifier())
	c2, _ := OpenCheckpoint(cp2, l.Verifier())
	tp, err := l.ProveConsistency(ctx, 37, 47)
	if err != nil {
		t.Fatal(err)
	}
	if err := tlog.CheckTree(tp, c2.Size, c2.Hash, c1.Size, c1.Hash); err != nil {
		t.Fatalf("CheckTree(37 → 47): %v", err)
	}
}

// TestConcurrentAppends appends from many goroutines through two Log
// values on two database handles (as two server replicas would) and checks
// the result is one valid tree with no gap or duplicate.
func TestConcurrentAppends(t *testing.T) {
	t.Parallel()
	url := sqliteURL(t)
	testConcurrentAppends(t, openTestDB(t, url), openTestDB(t, url))
}

func testConcurrentAppends(t *testing.T, db1, db2 *storage.DB) {
	t.Helper()
	ctx := context.Background()
	var retries retryCounter
	logger := slog.New(&retries)
	l1 := newLogOn(t, db1, WithLogger(logger))
	l2 := newLogOn(t, db2, WithLogger(logger))
	defer func() { t.Logf("appends that lost a race and retried: %d", retries.n.Load()) }()
	const goroutines, each = 12, 15
	var wg sync.WaitGroup
	errs := make(chan error, goroutines*each+goroutines)
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l := l1
			if g%2 == 1 {
				l = l2
			}
			for i := range each {
				if _, err := l.Append(ctx, sampleEntry(g*each+i)); err != nil {
					errs <- err
					return
				}
				if i == each/2 {
					if _, err := l.Checkpoint(ctx); err != nil {
						errs <- err
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent append/checkpoint: %v", err)
	}
	mustCheckpoint(t, l2)
	rep, err := l1.Verify(ctx)
	if err != nil || !rep.OK || rep.Size != goroutines*each {
		t.Fatalf("Verify = %+v, %v; want OK with %d entries", rep, err, goroutines*each)
	}
	all, err := l1.List(ctx, Filter{})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for i, e := range all {
		if e.Seq != int64(i) {
			t.Fatalf("entry %d has seq %d", i, e.Seq)
		}
		k := e.Details["n"] + e.Actor + e.Source
		if e.Details["n"] != "" && seen[k] {
			t.Fatalf("entry %d duplicated", i)
		}
		seen[k] = true
	}
}

func TestRunCheckpoints(t *testing.T) {
	t.Parallel()
	l, db := newTestLog(t)
	appendN(t, l, 0, 3)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.RunCheckpoints(ctx, time.Millisecond) }()
	// Wait until the loop has stored a checkpoint (polling the database,
	// not sleeping as an assertion).
	for {
		var n int64
		if err := db.QueryRow(context.Background(), "SELECT COUNT(*) FROM audit_checkpoints WHERE size = 3").Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 1 {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("RunCheckpoints returned early: %v", err)
		case <-time.After(time.Millisecond):
		}
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("RunCheckpoints = %v, want context.Canceled", err)
	}
	if err := l.RunCheckpoints(context.Background(), 0); !errors.Is(err, tufota.ErrInvalid) {
		t.Fatalf("RunCheckpoints(0) = %v, want EInvalid", err)
	}
}

// retryCounter is a slog.Handler counting the append retry records.
type retryCounter struct{ n atomic.Int64 }

func (c *retryCounter) Enabled(context.Context, slog.Level) bool { return true }
func (c *retryCounter) Handle(_ context.Context, r slog.Record) error {
	if strings.Contains(r.Message, "retrying") {
		c.n.Add(1)
	}
	return nil
}
func (c *retryCounter) WithAttrs([]slog.Attr) slog.Handler { return c }
func (c *retryCounter) WithGroup(string) slog.Handler      { return c }
