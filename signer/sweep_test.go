package signer

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/tufota/tufota/internal/testenv"
	"github.com/tufota/tufota/storage"
)

// blockingReader yields first, then signals reached and blocks until
// release is closed, then yields rest.
type blockingReader struct {
	first, rest []byte
	reached     chan struct{}
	release     chan struct{}
	once        sync.Once
}

func (g *blockingReader) Read(p []byte) (int, error) {
	if len(g.first) > 0 {
		n := copy(p, g.first)
		g.first = g.first[n:]
		return n, nil
	}
	g.once.Do(func() {
		close(g.reached)
		<-g.release
	})
	if len(g.rest) == 0 {
		return 0, io.EOF
	}
	n := copy(p, g.rest)
	g.rest = g.rest[n:]
	return n, nil
}

// stagingFiles lists every file under dir/staging, temporary ones
// included, by base name.
func stagingFiles(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(dir, "staging"))
	if err != nil {
		t.Fatalf("read staging: %v", err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// TestSweepStagingRemovesCrashedUploads is the regression test of issue 13
// item 4: what crashed uploads left under staging/ (a staged blob nothing
// names, a temporary file of a Put that never finished) is removed, on the
// real file store, while an upload in progress, a pending release's staged
// blob and leftovers younger than the bound stay.
func TestSweepStagingRemovesCrashedUploads(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newThresholdEnv(t) // 2-of-2 targets offline: every push waits for signatures
	fb := newFileBlobs(t)
	// Move the repository onto the file store (the env starts on memory).
	for k, v := range snapshotBlobs(t, e.blobs) {
		if _, err := fb.Put(ctx, k, bytes.NewReader(v)); err != nil {
			t.Fatal(err)
		}
	}
	e.blobs = fb
	e.open()
	dir := fb.Dir()

	_, pending := e.push("pump", "1.0.0")
	if pending.State != StatePending {
		t.Fatalf("release state %q, want pending", pending.State)
	}
	pendingKeys, err := e.rels.pendingStagedKeys(ctx)
	if err != nil || len(pendingKeys) != 1 {
		t.Fatalf("pendingStagedKeys = %v, %v; want one key", pendingKeys, err)
	}
	// A staged upload whose server died before it recorded the release,
	// and the temporary file of a Put killed mid-write.
	orphan, err := randomKey(StagingPrefix)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fb.Put(ctx, orphan, strings.NewReader("half a firmware image")); err != nil {
		t.Fatal(err)
	}
	crashedTemp := filepath.Join(dir, "staging", ".tufota-tmp-0123456789abcdef01234567")
	if err := os.WriteFile(crashedTemp, make([]byte, 4096), 0o600); err != nil {
		t.Fatal(err)
	}
	// An upload in progress: blocked after its first buffers.
	data := make([]byte, 3*stageChunk)
	_, _ = rand.Read(data)
	g := &blockingReader{first: data[:2*stageChunk], rest: data[2*stageChunk:], reached: make(chan struct{}), release: make(chan struct{})}
	pushed := make(chan error, 1)
	go func() {
		_, err := e.rels.Push(ctx, PushRequest{Name: "pump", Version: "2.0.0", Hardware: []string{"hw-a"}, File: "fw.bin"}, g, 0, "bob")
		pushed <- err
	}()
	<-g.reached
	var liveTemp string
	for deadline := time.Now().Add(10 * time.Second); liveTemp == ""; time.Sleep(5 * time.Millisecond) {
		for _, n := range stagingFiles(t, dir) {
			if strings.HasPrefix(n, ".tufota-tmp-") && filepath.Join(dir, "staging", n) != crashedTemp {
				liveTemp = n
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("the live upload's temporary file never appeared")
		}
	}
	// Everything looks an hour old, the live upload included: only its
	// being live protects it.
	old := time.Now().Add(-time.Hour)
	for _, n := range stagingFiles(t, dir) {
		if err := os.Chtimes(filepath.Join(dir, "staging", n), old, old); err != nil {
			t.Fatal(err)
		}
	}
	before := stagingFiles(t, dir)

	// A bound further back than every file: nothing is old enough.
	if n, err := e.rels.SweepStaging(ctx, old.Add(-time.Minute)); err != nil || n != 0 {
		t.Fatalf("SweepStaging(before all) = %d, %v; want 0", n, err)
	}
	if got := stagingFiles(t, dir); !slices.Equal(got, before) {
		t.Fatalf("staging after a sweep with an older bound = %v, want %v", got, before)
	}

	n, err := e.rels.SweepStaging(ctx, time.Now())
	if err != nil {
		t.Fatalf("SweepStaging: %v", err)
	}
	if n != 2 {
		t.Errorf("SweepStaging removed %d, want 2 (the orphaned blob and the crashed temporary file)", n)
	}
	got := stagingFiles(t, dir)
	var pendingKey string
	for k := range pendingKeys {
		pendingKey = k
	}
	want := []string{liveTemp, strings.TrimPrefix(pendingKey, StagingPrefix)}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("staging after the sweep = %v, want %v (live upload's temporary file, pending release's blob)", got, want)
	}

	// The live upload finishes as if nothing happened, and the pending
	// release still has its bytes.
	close(g.release)
	if err := <-pushed; err != nil {
		t.Fatalf("the upload in progress during the sweep failed: %v", err)
	}
	if b := readBlob(t, fb, pendingKey); len(b) != 3000 {
		t.Fatalf("pending release's staged blob has %d bytes, want 3000", len(b))
	}
	// Both pending releases keep their blobs through another sweep.
	if n, err := e.rels.SweepStaging(ctx, time.Now().Add(time.Hour)); err != nil || n != 0 {
		t.Fatalf("SweepStaging with two pending releases = %d, %v; want 0", n, err)
	}
	if left, _ := fb.List(ctx, StagingPrefix); len(left) != 2 {
		t.Fatalf("staging holds %v, want the two pending releases' blobs", left)
	}
	var _ storage.Sweeper = fb
}

// TestSweepStagingBackends runs the sweep over both blob stores, the real
// file store and S3 on MinIO (integration): a staged blob that nothing
// names is removed, one held by an upload in progress is kept until the
// upload lets it go, and a pending release's is kept.
func TestSweepStagingBackends(t *testing.T) {
	t.Parallel()
	backends := []struct {
		name string
		new  func(t *testing.T) storage.Blobs
	}{
		{"file", func(t *testing.T) storage.Blobs { return newFileBlobs(t) }},
		{"s3", newMinIOBlobs},
	}
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			blobs := b.new(t)
			e := newThresholdEnv(t)
			for k, v := range snapshotBlobs(t, e.blobs) {
				if _, err := blobs.Put(ctx, k, bytes.NewReader(v)); err != nil {
					t.Fatal(err)
				}
			}
			e.blobs = blobs
			e.open()
			_, _ = e.push("pump", "1.0.0") // pending: its staged blob waits for signatures
			keep, err := e.rels.pendingStagedKeys(ctx)
			if err != nil || len(keep) != 1 {
				t.Fatalf("pendingStagedKeys = %v, %v; want one key", keep, err)
			}
			orphan, err := randomKey(StagingPrefix)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := blobs.Put(ctx, orphan, strings.NewReader("left by a crash")); err != nil {
				t.Fatal(err)
			}
			live, done, err := e.rels.repo.stageLive(ctx, strings.NewReader("an upload whose push is still running"), 0)
			if err != nil {
				t.Fatalf("stageLive: %v", err)
			}
			later := time.Now().Add(time.Minute) // every blob is older than this
			if n, err := e.rels.SweepStaging(ctx, later); err != nil || n != 1 {
				t.Fatalf("SweepStaging = %d, %v; want 1 (the orphan)", n, err)
			}
			exists := func(key string) bool {
				t.Helper()
				_, err := blobs.Stat(ctx, key)
				return err == nil
			}
			for k := range keep {
				if !exists(k) {
					t.Fatalf("the pending release's staged blob %s was removed", k)
				}
			}
			if exists(orphan) || !exists(live.Key) {
				t.Fatalf("after the sweep: orphan there %v (want false), live upload there %v (want true)", exists(orphan), exists(live.Key))
			}
			done() // the push gave up without removing its blob (a crash)
			if n, err := e.rels.SweepStaging(ctx, later); err != nil || n != 1 {
				t.Fatalf("SweepStaging after the upload ended = %d, %v; want 1", n, err)
			}
			if exists(live.Key) {
				t.Fatal("a staged blob no upload holds any more survived the sweep")
			}
			if left, _ := blobs.List(ctx, StagingPrefix); len(left) != 1 {
				t.Fatalf("staging holds %v, want only the pending release's blob", left)
			}
		})
	}
}

// newMinIOBlobs is an S3 store in a new bucket on the test MinIO, removed
// with its objects when the test ends.
func newMinIOBlobs(t *testing.T) storage.Blobs {
	t.Helper()
	endpoint, access, secret := testenv.MinIO(t)
	var b [6]byte
	_, _ = rand.Read(b[:])
	cfg := storage.S3Config{Endpoint: endpoint, Bucket: "tufota-sweep-" + hex.EncodeToString(b[:]), AccessKey: access, SecretKey: secret, CreateBucket: true}
	ctx := context.Background()
	s, err := storage.NewS3(ctx, cfg)
	if err != nil {
		t.Fatalf("NewS3: %v", err)
	}
	t.Cleanup(func() {
		c := s.Client()
		for oi := range c.ListObjects(ctx, cfg.Bucket, minio.ListObjectsOptions{Recursive: true}) {
			if oi.Err == nil {
				_ = c.RemoveObject(ctx, cfg.Bucket, oi.Key, minio.RemoveObjectOptions{})
			}
		}
		if err := c.RemoveBucket(ctx, cfg.Bucket); err != nil {
			t.Errorf("remove bucket %s: %v", cfg.Bucket, err)
		}
	})
	return s
}
