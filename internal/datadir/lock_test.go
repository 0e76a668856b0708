package datadir

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tufota/tufota"
)

// TestLockDataDir checks the lock itself: held once, refused while held,
// free again once released; a repository on PostgreSQL and S3 (replicas)
// takes no lock.
func TestLockDataDir(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := Write(dir, Config{Version: 1, Storage: "file:blobs", DB: "sqlite:tufota.db"}); err != nil {
		t.Fatal(err)
	}
	started := time.Date(2026, 12, 4, 18, 0, 0, 0, time.UTC)
	unlock, err := Lock(dir, started)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Lock(dir, started); !errors.Is(err, tufota.ErrConflict) || !strings.Contains(err.Error(), "started 2026-12-04T18:00:00Z") {
		t.Fatalf("second lock: %v, want a conflict naming the start time", err)
	}
	unlock()
	unlock2, err := Lock(dir, started)
	if err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	unlock2()

	for _, tc := range []struct {
		storage, db string
		locks       bool
	}{
		{"file:blobs", "sqlite:tufota.db", true},
		{"s3://b/p?endpoint=x", "sqlite:tufota.db", true},
		{"file:blobs", "postgres://u@h/db", true},
		{"s3://b/p?endpoint=x", "postgres://u@h/db", false},
		{"s3://b/p?endpoint=x", "postgresql://u@h/db", false},
	} {
		d := filepath.Join(t.TempDir(), "repo")
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := Write(d, Config{Version: 1, Storage: tc.storage, DB: tc.db}); err != nil {
			t.Fatal(err)
		}
		u1, err := Lock(d, started)
		if err != nil {
			t.Fatal(err)
		}
		_, err = Lock(d, started)
		if locked := err != nil; locked != tc.locks {
			t.Errorf("%s + %s: second lock err = %v, want locked = %v", tc.storage, tc.db, err, tc.locks)
		}
		u1()
	}
}
