package storage_test

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/storage"
	"github.com/tufota/tufota/storage/storagetest"
)

func newFile(t *testing.T) (*storage.File, string) {
	t.Helper()
	dir := t.TempDir()
	f, err := storage.NewFile(dir)
	if err != nil {
		t.Fatalf("NewFile: %v", err)
	}
	t.Cleanup(func() { _ = f.Close() })
	return f, dir
}

func TestFileRoundTrip(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f, dir := newFile(t)
	n, err := f.Put(ctx, "metadata/1.root.json", strings.NewReader("hello"))
	if err != nil || n != 5 {
		t.Fatalf("Put = %d, %v; want 5, nil", n, err)
	}
	got, err := os.ReadFile(filepath.Join(dir, "metadata", "1.root.json"))
	if err != nil || string(got) != "hello" {
		t.Fatalf("file on disk = %q, %v", got, err)
	}
	o, err := f.Open(ctx, "metadata/1.root.json")
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer o.Close()
	b, err := io.ReadAll(o)
	if err != nil || string(b) != "hello" || o.Info().Size != 5 {
		t.Fatalf("read %q, %v, size %d", b, err, o.Info().Size)
	}
	entries, err := os.ReadDir(filepath.Join(dir, "metadata"))
	if err != nil || len(entries) != 1 {
		t.Fatalf("metadata dir holds %d entries (%v), want 1 (no temp files left)", len(entries), err)
	}
}

// TestFileSymlinkEscape checks that a symbolic link planted inside the store
// cannot be used to read or write outside it.
func TestFileSymlinkEscape(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f, dir := newFile(t)
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("s"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Open(ctx, "link/secret"); !errors.Is(err, tufota.ErrInvalid) {
		t.Fatalf("Open through an escaping symlink: err = %v, want ErrInvalid", err)
	}
	if _, err := f.Put(ctx, "link/new", strings.NewReader("x")); !errors.Is(err, tufota.ErrInvalid) {
		t.Fatalf("Put through an escaping symlink: err = %v, want ErrInvalid", err)
	}
	if _, err := os.Stat(filepath.Join(outside, "new")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Put wrote outside the store: stat err = %v", err)
	}
	infos, err := f.List(ctx, "")
	if err != nil || len(infos) != 0 {
		t.Fatalf("List = %v, %v; want nothing (symlinks are not listed)", infos, err)
	}
}

func TestFileKeyCollisions(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f, _ := newFile(t)
	if _, err := f.Put(ctx, "a/b", strings.NewReader("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Put(ctx, "a", strings.NewReader("x")); !errors.Is(err, tufota.ErrConflict) {
		t.Fatalf("Put over a directory: err = %v, want ErrConflict", err)
	}
	if _, err := f.Put(ctx, "a/b/c", strings.NewReader("x")); !errors.Is(err, tufota.ErrConflict) {
		t.Fatalf("Put under a blob: err = %v, want ErrConflict", err)
	}
	if _, err := f.Stat(ctx, "a"); !errors.Is(err, tufota.ErrNotFound) {
		t.Fatalf("Stat of a directory: err = %v, want ErrNotFound", err)
	}
	if _, err := f.Put(ctx, "x/.tufota-tmp-1", strings.NewReader("x")); !errors.Is(err, tufota.ErrInvalid) {
		t.Fatalf("Put of a reserved name: err = %v, want ErrInvalid", err)
	}
}

func TestFileConformance(t *testing.T) {
	t.Parallel()
	storagetest.RunBlobs(t, func(t *testing.T) storage.Blobs {
		f, _ := newFile(t)
		return f
	})
}

// TestFileCrashLeftovers checks that a temporary file left by a crashed Put
// is invisible.
func TestFileCrashLeftovers(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f, dir := newFile(t)
	if err := os.MkdirAll(filepath.Join(dir, "metadata"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "metadata", ".tufota-tmp-deadbeef"), []byte("half"), 0o644); err != nil {
		t.Fatal(err)
	}
	infos, err := f.List(ctx, "")
	if err != nil || len(infos) != 0 {
		t.Fatalf("List = %+v, %v; want no blobs", infos, err)
	}
}

// TestFileSweepIncomplete: temporary files that killed Puts left are
// removed under the swept folder once older than the bound; younger ones,
// other folders' and blobs stay.
func TestFileSweepIncomplete(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f, dir := newFile(t)
	if _, err := f.Put(ctx, "staging/blob", strings.NewReader("kept")); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-2 * time.Hour)
	write := func(rel string, mtime time.Time) string {
		t.Helper()
		p := filepath.Join(dir, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			t.Fatal(err)
		}
		return p
	}
	gone := []string{write("staging/.tufota-tmp-aa", old), write("staging/sub/.tufota-tmp-bb", old)}
	kept := []string{write("staging/.tufota-tmp-young", time.Now()), write("metadata/.tufota-tmp-cc", old), filepath.Join(dir, "staging", "blob")}
	n, err := f.SweepIncomplete(ctx, "staging/", time.Now().Add(-time.Hour))
	if err != nil || n != len(gone) {
		t.Fatalf("SweepIncomplete = %d, %v; want %d, nil", n, err, len(gone))
	}
	for _, p := range gone {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s after the sweep: %v, want it removed", p, err)
		}
	}
	for _, p := range kept {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s after the sweep: %v, want it kept", p, err)
		}
	}
}
