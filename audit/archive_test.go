package audit

import (
	"context"
	"errors"
	"io"
	"path/filepath"
	"testing"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/storage"
)

// TestArchive archives every checkpoint once, oldest first, and only the new
// ones on the next call; archived notes are the signed checkpoints.
func TestArchive(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l, _ := newTestLog(t)
	arch, err := storage.NewFile(filepath.Join(t.TempDir(), "archive"))
	if err != nil {
		t.Fatal(err)
	}
	wo := writeOnce{arch}
	var sizes []int64
	for i := range 3 {
		appendN(t, l, i*2, 2)
		note, err := l.Checkpoint(ctx)
		if err != nil {
			t.Fatal(err)
		}
		c, err := OpenCheckpoint(note, l.Verifier())
		if err != nil {
			t.Fatal(err)
		}
		sizes = append(sizes, c.Size)
		n, err := Archive(ctx, l, wo)
		if err != nil || n != 1 {
			t.Fatalf("Archive after checkpoint %d = %d, %v; want 1 new", i, n, err)
		}
	}
	if n, err := Archive(ctx, l, wo); err != nil || n != 0 {
		t.Fatalf("Archive with nothing new = %d, %v", n, err)
	}
	for _, size := range sizes {
		obj, err := arch.Open(ctx, ArchiveCheckpointKey(size))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(obj)
		obj.Close()
		c, err := OpenCheckpoint(b, l.Verifier())
		if err != nil || c.Size != size {
			t.Fatalf("archived checkpoint %d: %+v, %v", size, c, err)
		}
	}
}

// writeOnce refuses overwrites, like storage.LockedS3.
type writeOnce struct{ storage.Blobs }

func (w writeOnce) Put(ctx context.Context, key string, r io.Reader) (int64, error) {
	if _, err := w.Stat(ctx, key); err == nil {
		return 0, tufota.Errorf(tufota.EConflict, "%s exists", key)
	} else if !errors.Is(err, tufota.ErrNotFound) {
		return 0, err
	}
	return w.Blobs.Put(ctx, key, r)
}
