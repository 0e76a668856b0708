package signer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/storage"
)

var errInjected = errors.New("injected storage failure")

// failingBlobs wraps a store and fails its nth write (Put or Move), either
// before the write happens (a crash or error before commit) or after it
// (the write committed, then the process died or the reply was lost).
type failingBlobs struct {
	storage.Blobs
	mu     sync.Mutex
	n      int  // fail the nth write; 0 = disarmed
	after  bool // fail after performing the write
	writes int
	fired  bool
	log    []string
}

// disarm stops injecting and returns whether a failure fired and the
// writes seen.
func (f *failingBlobs) disarm() (bool, []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n = 0
	return f.fired, f.log
}

func (f *failingBlobs) arm(n int, after bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n, f.after, f.writes, f.fired, f.log = n, after, 0, false, nil
}

// step counts a write and reports whether it must fail.
func (f *failingBlobs) step(op, key string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.n == 0 {
		return false
	}
	f.writes++
	f.log = append(f.log, op+" "+key)
	if f.writes == f.n {
		f.fired = true
		return true
	}
	return false
}

func (f *failingBlobs) Put(ctx context.Context, key string, r io.Reader) (int64, error) {
	fail := f.step("put", key)
	if fail && !f.after {
		return 0, errInjected
	}
	n, err := f.Blobs.Put(ctx, key, r)
	if fail && err == nil {
		return 0, errInjected
	}
	return n, err
}

// failingMover is failingBlobs over a store with the Mover upgrade.
type failingMover struct{ *failingBlobs }

func (f failingMover) Move(ctx context.Context, from, to string) error {
	fail := f.step("move", to)
	if fail && !f.after {
		return errInjected
	}
	err := f.Blobs.(storage.Mover).Move(ctx, from, to)
	if fail && err == nil {
		return errInjected
	}
	return err
}

// TestPublishCrashSafety fails every write of a Publish in turn, before and
// after it takes effect, on a store with Move (file) and without (memory).
// After each failure the stock go-tuf updater must verify the repository
// and see either the old one (new target absent) or the new one (new
// target downloadable), never a mix; a retry with the same staged upload
// must then publish the target.
func TestPublishCrashSafety(t *testing.T) {
	t.Parallel()
	stores := map[string]func(t *testing.T) storage.Blobs{
		"file-move":   func(t *testing.T) storage.Blobs { return failingMover{&failingBlobs{Blobs: newFileBlobs(t)}} },
		"memory-copy": func(t *testing.T) storage.Blobs { return &failingBlobs{Blobs: newMemBlobs()} },
	}
	for storeName, newStore := range stores {
		for _, after := range []bool{false, true} {
			mode := map[bool]string{false: "before", true: "after"}[after]
			t.Run(storeName+"/"+mode, func(t *testing.T) {
				t.Parallel()
				for n := 1; ; n++ {
					if done := crashAt(t, newStore(t), n, after); done {
						if n < 4 {
							t.Fatalf("publish finished after %d writes; expected at least targets, snapshot, timestamp and a blob", n-1)
						}
						return
					}
				}
			})
		}
	}
}

// crashAt runs one crash scenario and reports whether the nth write was
// never reached (the publish completed with fewer writes).
func crashAt(t *testing.T, store storage.Blobs, n int, after bool) (done bool) {
	t.Helper()
	ctx := context.Background()
	var fb *failingBlobs
	switch s := store.(type) {
	case *failingBlobs:
		fb = s
	case failingMover:
		fb = s.failingBlobs
	}
	keys := newTestKeys(t, 1, 1)
	repo := NewRepository(store, WithNow(func() time.Time { return testEpoch }))
	root, err := repo.Init(ctx, keys.roleKeys(1, 1))
	if err != nil {
		t.Fatalf("Init: %v", err)
	}
	oldImg, newImg := []byte("old firmware"), []byte("new firmware, longer")
	const oldPath, newPath = "pump/1.0.0/fw.bin", "pump/2.0.0/fw.bin"
	if _, err := repo.Publish(ctx, keys.signers(), Target{Path: oldPath, Staged: stage(t, repo, oldImg)}); err != nil {
		t.Fatalf("Publish old: %v", err)
	}
	staged := stage(t, repo, newImg)

	fb.arm(n, after)
	_, perr := repo.Publish(ctx, keys.signers(), Target{Path: newPath, Staged: staged})
	fired, log := fb.disarm()
	if !fired {
		if perr != nil {
			t.Fatalf("write %d: Publish failed without an injected failure: %v", n, perr)
		}
		return true
	}
	if !errors.Is(perr, errInjected) {
		t.Fatalf("write %d (%v): Publish err = %v, want the injected failure", n, log, perr)
	}
	where := fmt.Sprintf("failure %s write %d of %v", map[bool]string{false: "before", true: "after"}[after], n, log)

	srv := serveBlobs(t, store)
	// The old target always verifies and downloads.
	if got, err := fetchTarget(t, srv, root, testEpoch, oldPath); err != nil || !bytes.Equal(got, oldImg) {
		t.Fatalf("%s: old target: %q, %v", where, got, err)
	}
	// The new target is either absent (old repository) or complete.
	lastWasTimestamp := strings.HasSuffix(log[len(log)-1], "metadata/timestamp.json")
	got, err := fetchTarget(t, srv, root, testEpoch, newPath)
	switch {
	case err == nil:
		if !bytes.Equal(got, newImg) {
			t.Fatalf("%s: new target bytes differ", where)
		}
		if !(after && lastWasTimestamp) {
			t.Fatalf("%s: new target visible although timestamp.json was not written", where)
		}
	case strings.Contains(err.Error(), "not found"):
		if after && lastWasTimestamp {
			t.Fatalf("%s: new target missing although timestamp.json was committed", where)
		}
	default:
		t.Fatalf("%s: stock updater: %v", where, err)
	}

	// A retry with the same staged upload publishes it (or finds it
	// published already when the failure hit after the final write).
	if _, err := repo.Publish(ctx, keys.signers(), Target{Path: newPath, Staged: staged}); err != nil && tufota.ErrorCode(err) != tufota.EConflict {
		t.Fatalf("%s: retry: %v", where, err)
	}
	if got, err := fetchTarget(t, srv, root, testEpoch, newPath); err != nil || !bytes.Equal(got, newImg) {
		t.Fatalf("%s: new target after retry: %q, %v", where, got, err)
	}
	if got, err := fetchTarget(t, srv, root, testEpoch, oldPath); err != nil || !bytes.Equal(got, oldImg) {
		t.Fatalf("%s: old target after retry: %q, %v", where, got, err)
	}
	return false
}

// TestInitCrashSafety fails every write of Init in turn: the store is
// then not a repository (clients and the writer see no timestamp.json) or
// a complete one, and Init can be run again after a failure.
func TestInitCrashSafety(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for n := 1; ; n++ {
		fb := &failingBlobs{Blobs: newMemBlobs()}
		repo := NewRepository(fb, WithNow(func() time.Time { return testEpoch }))
		keys := newTestKeys(t, 1, 1)
		fb.arm(n, false)
		_, err := repo.Init(ctx, keys.roleKeys(1, 1))
		fired, log := fb.disarm()
		if !fired {
			if err != nil {
				t.Fatalf("Init without failure: %v", err)
			}
			if n != 5 {
				t.Fatalf("Init made %d writes, want 4", n-1)
			}
			return
		}
		if !errors.Is(err, errInjected) {
			t.Fatalf("write %d of %v: Init err = %v, want the injected failure", n, log, err)
		}
		if _, err := repo.Targets(ctx); tufota.ErrorCode(err) != tufota.ENotFound {
			t.Fatalf("write %d of %v: Targets after a failed Init: %v, want not_found", n, log, err)
		}
		root, err := repo.Init(ctx, keys.roleKeys(1, 1))
		if err != nil {
			t.Fatalf("write %d of %v: Init again: %v", n, log, err)
		}
		up := stockUpdater(t, serveBlobs(t, fb), root, testEpoch)
		if err := up.Refresh(); err != nil {
			t.Fatalf("write %d of %v: stock updater after the second Init: %v", n, log, err)
		}
	}
}
