package signer

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/storage"
)

// newRepo returns an initialised repository on an in-memory store with a
// 1-of-1 targets role.
func newRepo(t *testing.T, opts ...RepoOption) (*Repository, *memBlobs, testKeys, []byte) {
	t.Helper()
	blobs := newMemBlobs()
	keys := newTestKeys(t, 1, 1)
	repo := NewRepository(blobs, append([]RepoOption{WithNow(func() time.Time { return testEpoch })}, opts...)...)
	root, err := repo.Init(context.Background(), keys.roleKeys(1, 1))
	if err != nil {
		t.Fatalf("Init: %v", err)
	}
	return repo, blobs, keys, root
}

// metadataBlobs returns the metadata and targets blobs (not staging).
func metadataBlobs(t *testing.T, b storage.Blobs) map[string][]byte {
	t.Helper()
	all := snapshotBlobs(t, b)
	maps.DeleteFunc(all, func(k string, _ []byte) bool { return strings.HasPrefix(k, StagingPrefix) })
	return all
}

func TestPublishPathTricks(t *testing.T) {
	t.Parallel()
	repo, blobs, keys, _ := newRepo(t)
	st := stage(t, repo, []byte("payload"))
	before := metadataBlobs(t, blobs)
	paths := []string{
		"",
		"/abs/1.0.0/fw.bin",
		"pump/1.0.0/fw.bin/",
		"pump/../etc/passwd",
		"..",
		"../fw.bin",
		"pump/..",
		"pump//fw.bin",
		"pump/./fw.bin",
		".",
		"pump/1.0.0/.hidden",
		"pump\\1.0.0\\fw.bin",
		"pump/1.0.0/fw\x00.bin",
		"pump/1.0.0/fw bin",
		"pump/1.0.0/fw%2e.bin",
		"pump/1.0.0/fw?.bin",
		"pump/1.0.0/fw#x",
		"pump/1.0.0/fw\n.bin",
		"-pump/1.0.0/fw.bin",
		"pump/1.0.0/fw..bin",
		"pümp/1.0.0/fw.bin",
		"+/1/fw",
		strings.Repeat("a/", 8) + "fw.bin",
		strings.Repeat("x", 65) + "/fw.bin",
	}
	for _, p := range paths {
		t.Run(fmt.Sprintf("%q", p), func(t *testing.T) {
			_, err := repo.Publish(context.Background(), keys.signers(), Target{Path: p, Staged: st})
			wantCode(t, err, tufota.EInvalid)
		})
	}
	if after := metadataBlobs(t, blobs); !maps.EqualFunc(before, after, bytes.Equal) {
		t.Fatal("a refused path changed the repository")
	}
	// The staged upload is still there for a correct retry.
	if _, err := repo.Publish(context.Background(), keys.signers(), Target{Path: "pump/1.0.0+build.1/fw.bin", Staged: st}); err != nil {
		t.Fatalf("Publish with a good path: %v", err)
	}
}

func TestPublishBadTargets(t *testing.T) {
	t.Parallel()
	repo, blobs, keys, _ := newRepo(t)
	good := stage(t, repo, []byte("payload"))
	mod := func(f func(*Target)) Target {
		tg := Target{Path: "pump/1.0.0/fw.bin", Staged: good}
		f(&tg)
		return tg
	}
	tests := []struct {
		name string
		add  []Target
		code tufota.Code
	}{
		{"nothing", nil, tufota.EInvalid},
		{"same path twice", []Target{mod(func(*Target) {}), mod(func(*Target) {})}, tufota.EInvalid},
		{"same upload for two paths", []Target{mod(func(*Target) {}), mod(func(t *Target) { t.Path = "pump/1.0.0/other.bin" })}, tufota.EInvalid},
		{"staged key outside staging", []Target{mod(func(t *Target) { t.Staged.Key = "metadata/timestamp.json" })}, tufota.EInvalid},
		{"staged key with dots", []Target{mod(func(t *Target) { t.Staged.Key = "staging/../metadata/1.root.json" })}, tufota.EInvalid},
		{"zero length", []Target{mod(func(t *Target) { t.Staged.Length = 0 })}, tufota.EInvalid},
		{"bad sha256", []Target{mod(func(t *Target) { t.Staged.SHA256 = "abc" })}, tufota.EInvalid},
		{"upper-case sha256", []Target{mod(func(t *Target) { t.Staged.SHA256 = strings.ToUpper(good.SHA256) })}, tufota.EInvalid},
		{"custom not an object", []Target{mod(func(t *Target) { t.Custom = []byte(`[1]`) })}, tufota.EInvalid},
		{"custom not JSON", []Target{mod(func(t *Target) { t.Custom = []byte(`{`) })}, tufota.EInvalid},
		{"custom with a float", []Target{mod(func(t *Target) { t.Custom = []byte(`{"x":1.5}`) })}, tufota.EInvalid},
		{"length mismatch", []Target{mod(func(t *Target) { t.Staged.Length++ })}, tufota.EInvalid},
		{"staged upload missing", []Target{mod(func(t *Target) { t.Staged.Key = "staging/0123" })}, tufota.ENotFound},
	}
	before := metadataBlobs(t, blobs)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := repo.Publish(context.Background(), keys.signers(), tt.add...)
			wantCode(t, err, tt.code)
		})
	}
	if after := metadataBlobs(t, blobs); !maps.EqualFunc(before, after, bytes.Equal) {
		t.Fatal("a refused publish changed the repository")
	}
}

func TestPublishDuplicatePath(t *testing.T) {
	t.Parallel()
	repo, blobs, keys, _ := newRepo(t)
	ctx := context.Background()
	p := "pump/1.0.0/fw.bin"
	if _, err := repo.Publish(ctx, keys.signers(), Target{Path: p, Staged: stage(t, repo, []byte("one"))}); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	before := metadataBlobs(t, blobs)
	again := stage(t, repo, []byte("two"))
	_, err := repo.Publish(ctx, keys.signers(), Target{Path: "pump/2.0.0/fw.bin", Staged: again}, Target{Path: p, Staged: stage(t, repo, []byte("three"))})
	wantCode(t, err, tufota.EConflict)
	if !errors.Is(err, tufota.ErrConflict) {
		t.Fatalf("errors.Is(err, ErrConflict) = false for %v", err)
	}
	if after := metadataBlobs(t, blobs); !maps.EqualFunc(before, after, bytes.Equal) {
		t.Fatal("a conflicting publish changed the repository")
	}
}

func TestPublishThreshold(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	blobs := newMemBlobs()
	keys := newTestKeys(t, 1, 3)
	repo := NewRepository(blobs)
	root, err := repo.Init(ctx, keys.roleKeys(1, 2))
	if err != nil {
		t.Fatalf("Init: %v", err)
	}
	st := stage(t, repo, []byte("two-person firmware"))
	tgt := Target{Path: "pump/1.0.0/fw.bin", Staged: st}
	stranger := newKey(t, true)
	base := keys.signers()
	tests := []struct {
		name string
		s    Signers
		code tufota.Code
	}{
		{"no targets signers", Signers{Snapshot: base.Snapshot, Timestamp: base.Timestamp}, tufota.EInvalid},
		{"one of two", Signers{Targets: base.Targets[:1], Snapshot: base.Snapshot, Timestamp: base.Timestamp}, tufota.EInvalid},
		{"same key twice", Signers{Targets: []signature.Signer{base.Targets[0], base.Targets[0]}, Snapshot: base.Snapshot, Timestamp: base.Timestamp}, tufota.EInvalid},
		{"stranger targets key", Signers{Targets: []signature.Signer{base.Targets[0], stranger}, Snapshot: base.Snapshot, Timestamp: base.Timestamp}, tufota.EForbidden},
		{"timestamp key as snapshot", Signers{Targets: base.Targets, Snapshot: base.Timestamp, Timestamp: base.Timestamp}, tufota.EForbidden},
		{"no timestamp key", Signers{Targets: base.Targets, Snapshot: base.Snapshot}, tufota.EInvalid},
	}
	before := snapshotBlobs(t, blobs)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := repo.Publish(ctx, tt.s, tgt)
			wantCode(t, err, tt.code)
		})
	}
	if after := snapshotBlobs(t, blobs); !maps.EqualFunc(before, after, bytes.Equal) {
		t.Fatal("an under-signed publish changed the store")
	}
	// Two of three keys meet the threshold.
	two := Signers{Targets: []signature.Signer{base.Targets[0], base.Targets[2]}, Snapshot: base.Snapshot, Timestamp: base.Timestamp}
	if _, err := repo.Publish(ctx, two, tgt); err != nil {
		t.Fatalf("Publish with 2 of 3: %v", err)
	}
	tm, err := repo.Targets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(tm.Signatures); n != 2 {
		t.Fatalf("targets has %d signatures, want 2", n)
	}
	if _, err := fetchTarget(t, serveBlobs(t, blobs), root, time.Now(), tgt.Path); err != nil {
		t.Fatalf("stock updater: %v", err)
	}
}

func TestPublishExpiryPerRole(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clock := &fixedClock{t: testEpoch}
	exp := Expiry{Root: 1000 * time.Hour, Targets: 100 * time.Hour, Snapshot: 10 * time.Hour, Timestamp: time.Hour}
	blobs := newMemBlobs()
	repo := NewRepository(blobs, WithNow(clock.Now), WithExpiry(exp))
	keys := newTestKeys(t, 1, 1)
	if _, err := repo.Init(ctx, keys.roleKeys(1, 1)); err != nil {
		t.Fatal(err)
	}
	later := testEpoch.Add(5 * time.Hour)
	clock.Set(later)
	if _, err := repo.Publish(ctx, keys.signers(), Target{Path: "a/1.0.0/f", Staged: stage(t, repo, []byte("x"))}); err != nil {
		t.Fatal(err)
	}
	got, err := repo.Expiries(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]time.Time{
		RoleRoot:      testEpoch.Add(exp.Root), // root is not re-signed by Publish
		RoleTargets:   later.Add(exp.Targets),
		RoleSnapshot:  later.Add(exp.Snapshot),
		RoleTimestamp: later.Add(exp.Timestamp),
	}
	if !maps.EqualFunc(got, want, time.Time.Equal) {
		t.Fatalf("Expiries = %v, want %v", got, want)
	}
}

func TestRefresh(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clock := &fixedClock{t: testEpoch}
	exp := Expiry{Root: 1000 * time.Hour, Targets: 100 * time.Hour, Snapshot: 10 * time.Hour, Timestamp: time.Hour}
	blobs := newMemBlobs()
	repo := NewRepository(blobs, WithNow(clock.Now), WithExpiry(exp))
	keys := newTestKeys(t, 1, 1)
	root, err := repo.Init(ctx, keys.roleKeys(1, 1))
	if err != nil {
		t.Fatal(err)
	}
	img := []byte("fw")
	if _, err := repo.Publish(ctx, keys.signers(), Target{Path: "a/1.0.0/f", Staged: stage(t, repo, img)}); err != nil {
		t.Fatal(err)
	}
	online := Signers{Snapshot: keys.snapshot, Timestamp: keys.timestamp}
	srv := serveBlobs(t, blobs)
	margin := 15 * time.Minute

	versions := func() (ts, snap, targets int64) {
		t.Helper()
		st, err := repo.load(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return st.timestamp.Signed.Version, st.snapshot.Signed.Version, st.targets.Signed.Version
	}

	steps := []struct {
		name    string
		at      time.Duration // clock offset from testEpoch
		signers Signers
		want    []string
		ts, sn  int64 // versions after the step
		targets int64
	}{
		{"fresh: nothing to do", 0, online, nil, 2, 2, 2},
		{"timestamp outside margin", 40 * time.Minute, online, nil, 2, 2, 2},
		{"timestamp within margin", 50 * time.Minute, online, []string{RoleTimestamp}, 3, 2, 2},
		{"timestamp again after an hour", 110 * time.Minute, online, []string{RoleTimestamp}, 4, 2, 2},
		{"snapshot within margin", 9*time.Hour + 50*time.Minute, online, []string{RoleSnapshot, RoleTimestamp}, 5, 3, 2},
		{"targets due but no targets key", 99*time.Hour + 50*time.Minute, online, []string{RoleSnapshot, RoleTimestamp}, 6, 4, 2},
		{"targets due, only a stranger key online", 99*time.Hour + 50*time.Minute + 30*time.Second,
			Signers{Targets: []signature.Signer{newKey(t, true)}, Snapshot: keys.snapshot, Timestamp: keys.timestamp}, nil, 6, 4, 2},
		{"targets due with targets key", 99*time.Hour + 51*time.Minute, keys.signers(), []string{RoleTargets, RoleSnapshot, RoleTimestamp}, 7, 5, 3},
		{"all fresh again", 99*time.Hour + 52*time.Minute, keys.signers(), nil, 7, 5, 3},
	}
	for _, s := range steps {
		now := testEpoch.Add(s.at)
		clock.Set(now)
		got, err := repo.Refresh(ctx, s.signers, margin)
		if err != nil {
			t.Fatalf("%s: Refresh: %v", s.name, err)
		}
		if !slices.Equal(got, s.want) {
			t.Fatalf("%s: Refresh = %v, want %v", s.name, got, s.want)
		}
		ts, sn, tg := versions()
		if ts != s.ts || sn != s.sn || tg != s.targets {
			t.Fatalf("%s: versions timestamp/snapshot/targets = %d/%d/%d, want %d/%d/%d", s.name, ts, sn, tg, s.ts, s.sn, s.targets)
		}
		// Every re-signed role expires one policy period from now.
		exps, err := repo.Expiries(ctx)
		if err != nil {
			t.Fatal(err)
		}
		period := map[string]time.Duration{RoleTargets: exp.Targets, RoleSnapshot: exp.Snapshot, RoleTimestamp: exp.Timestamp}
		for _, role := range got {
			if want := now.Add(period[role]); !exps[role].Equal(want) {
				t.Fatalf("%s: %s expires %v, want %v", s.name, role, exps[role], want)
			}
		}
		data, err := fetchTarget(t, srv, root, now, "a/1.0.0/f")
		if err != nil {
			t.Fatalf("%s: stock updater: %v", s.name, err)
		}
		if !bytes.Equal(data, img) {
			t.Fatalf("%s: bytes differ", s.name)
		}
	}

	// Without Refresh, a client past the timestamp expiry refuses the
	// repository: the check above is meaningful.
	if _, err := fetchTarget(t, srv, root, clock.Now().Add(2*time.Hour), "a/1.0.0/f"); err == nil {
		t.Fatal("stock updater accepted an expired timestamp")
	}

	// A wrong timestamp key refuses and writes nothing.
	clock.Set(clock.Now().Add(time.Hour))
	before := snapshotBlobs(t, blobs)
	_, err = repo.Refresh(ctx, Signers{Snapshot: keys.snapshot, Timestamp: keys.snapshot}, margin)
	wantCode(t, err, tufota.EForbidden)
	if after := snapshotBlobs(t, blobs); !maps.EqualFunc(before, after, bytes.Equal) {
		t.Fatal("a refused Refresh changed the store")
	}
}

func TestStage(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	repo, blobs, _, _ := newRepo(t)
	data := bytes.Repeat([]byte{0xab, 0x00, 0x17}, 100_000)
	s, err := repo.Stage(ctx, bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatalf("Stage of exactly maxBytes: %v", err)
	}
	s256 := sha256.Sum256(data)
	if s.Length != int64(len(data)) || s.SHA256 != hex.EncodeToString(s256[:]) || s.SHA512 != "" {
		t.Fatalf("Staged = %+v, wrong length or hashes (SHA-512 is not computed: TUF signs SHA-256)", s)
	}
	if !strings.HasPrefix(s.Key, StagingPrefix) {
		t.Fatalf("staged key %q not under %s", s.Key, StagingPrefix)
	}
	if got := readBlob(t, blobs, s.Key); !bytes.Equal(got, data) {
		t.Fatal("staged bytes differ")
	}
	if err := repo.Discard(ctx, s); err != nil {
		t.Fatalf("Discard: %v", err)
	}
	if _, err := blobs.Stat(ctx, s.Key); !errors.Is(err, tufota.ErrNotFound) {
		t.Fatalf("Stat after Discard: %v, want not found", err)
	}
	if err := repo.Discard(ctx, s); err != nil {
		t.Fatalf("second Discard: %v", err)
	}
	// Discard never deletes outside staging/.
	for _, key := range []string{"metadata/timestamp.json", "staging/../metadata/1.root.json", "staging/a/b", ""} {
		wantCode(t, repo.Discard(ctx, Staged{Key: key}), tufota.EInvalid)
	}
	if _, err := blobs.Stat(ctx, "metadata/timestamp.json"); err != nil {
		t.Fatalf("timestamp.json after refused Discard: %v", err)
	}

	readErr := errors.New("connection reset")
	failing := io.MultiReader(bytes.NewReader([]byte("partial")), iotestErrReader{readErr})
	tests := []struct {
		name string
		src  io.Reader
		max  int64
		code tufota.Code
		is   error
	}{
		{"empty", bytes.NewReader(nil), 10, tufota.EInvalid, nil},
		{"one byte over", bytes.NewReader(make([]byte, 11)), 10, tufota.ETooLarge, tufota.ErrTooLarge},
		{"far over", bytes.NewReader(make([]byte, 1<<20)), 1000, tufota.ETooLarge, tufota.ErrTooLarge},
		{"read error", failing, 0, tufota.EInternal, readErr},
		{"read error at start", iotestErrReader{readErr}, 0, tufota.EInternal, readErr},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := repo.Stage(ctx, tt.src, tt.max)
			wantCode(t, err, tt.code)
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Fatalf("err = %v, want errors.Is %v", err, tt.is)
			}
		})
	}
	if left, _ := blobs.List(ctx, StagingPrefix); len(left) != 0 {
		t.Fatalf("failed Stage calls left %v", left)
	}
}

// TestStagePipelineBoundaries stages files around the pipeline's buffer
// sizes, read from sources that return short reads, and checks bytes,
// length and SHA-256 of each, and the size limit at a buffer boundary.
func TestStagePipelineBoundaries(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	repo, blobs, _, _ := newRepo(t)
	sizes := []int{1, stageChunk - 1, stageChunk, stageChunk + 1, stageChunk * stageDepth, stageChunk*stageDepth + 1, 3*stageChunk*stageDepth + 12345}
	for _, size := range sizes {
		for _, short := range []bool{false, true} {
			t.Run(fmt.Sprintf("%d/short=%v", size, short), func(t *testing.T) {
				data := make([]byte, size)
				for i := range data {
					data[i] = byte(i*7 + i>>9)
				}
				var src io.Reader = bytes.NewReader(data)
				if short {
					src = iotest.HalfReader(src)
					src = io.LimitReader(src, int64(size)) // no WriterTo shortcut
				}
				s, err := repo.Stage(ctx, src, int64(size))
				if err != nil {
					t.Fatalf("Stage: %v", err)
				}
				sum := sha256.Sum256(data)
				if s.Length != int64(size) || s.SHA256 != hex.EncodeToString(sum[:]) {
					t.Fatalf("Staged = %+v, want length %d sha256 %x", s, size, sum)
				}
				if got := readBlob(t, blobs, s.Key); !bytes.Equal(got, data) {
					t.Fatal("staged bytes differ")
				}
				if size > 1 {
					_, err := repo.Stage(ctx, bytes.NewReader(data), int64(size-1))
					wantCode(t, err, tufota.ETooLarge)
				}
			})
		}
	}
}

type iotestErrReader struct{ err error }

func (r iotestErrReader) Read([]byte) (int, error) { return 0, r.err }

// TestStageFileStore checks that a failed Stage on the file store leaves no
// blob and no temporary file.
func TestStageFileStore(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	blobs := newFileBlobs(t)
	repo := NewRepository(blobs)
	_, err := repo.Stage(ctx, bytes.NewReader(make([]byte, 5000)), 4096)
	wantCode(t, err, tufota.ETooLarge)
	if left, _ := blobs.List(ctx, ""); len(left) != 0 {
		t.Fatalf("failed Stage left %v", left)
	}
	s, err := repo.Stage(ctx, bytes.NewReader(make([]byte, 4096)), 4096)
	if err != nil {
		t.Fatalf("Stage: %v", err)
	}
	if s.Length != 4096 {
		t.Fatalf("length = %d", s.Length)
	}
}

// TestConcurrentPublish publishes from many goroutines; every publish gets
// its own targets version and the final metadata holds every target.
func TestConcurrentPublish(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	repo, blobs, keys, root := newRepo(t)
	const n = 8
	var wg sync.WaitGroup
	versions := make([]int64, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := repo.Stage(ctx, strings.NewReader(fmt.Sprintf("image %d", i)), 0)
			if err != nil {
				errs[i] = err
				return
			}
			versions[i], errs[i] = repo.Publish(ctx, keys.signers(), Target{Path: fmt.Sprintf("p%d/1.0.0/fw.bin", i), Staged: s})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
	slices.Sort(versions)
	for i, v := range versions {
		if v != int64(i+2) {
			t.Fatalf("versions = %v, want 2..%d", versions, n+1)
		}
	}
	srv := serveBlobs(t, blobs)
	for i := range n {
		got, err := fetchTarget(t, srv, root, testEpoch, fmt.Sprintf("p%d/1.0.0/fw.bin", i))
		if err != nil || string(got) != fmt.Sprintf("image %d", i) {
			t.Fatalf("target %d: %q, %v", i, got, err)
		}
	}
}

type countingLocker struct {
	mu    sync.Mutex
	held  bool
	locks int
	err   error
}

func (l *countingLocker) Lock(ctx context.Context) (func(), error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return nil, l.err
	}
	if l.held {
		return nil, errors.New("lock taken twice")
	}
	l.held = true
	l.locks++
	return func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.held = false
	}, nil
}

func TestLocker(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l := &countingLocker{}
	repo, _, keys, _ := newRepo(t, WithLocker(l)) // Init takes the lock once
	if _, err := repo.Publish(ctx, keys.signers(), Target{Path: "a/1.0.0/f", Staged: stage(t, repo, []byte("x"))}); err != nil {
		t.Fatal(err)
	}
	if _, err := repo.Refresh(ctx, keys.signers(), time.Hour); err != nil {
		t.Fatal(err)
	}
	if l.locks != 3 || l.held {
		t.Fatalf("locks = %d, held = %v; want 3 locks, released", l.locks, l.held)
	}
	lockErr := tufota.Errorf(tufota.EUnavailable, "database down")
	l.err = lockErr
	_, err := repo.Publish(ctx, keys.signers(), Target{Path: "b/1.0.0/f", Staged: stage(t, repo, []byte("y"))})
	wantCode(t, err, tufota.EUnavailable)
	// The in-process lock was released after the Locker failed.
	l.err = nil
	if _, err := repo.Refresh(ctx, keys.signers(), 0); err != nil {
		t.Fatalf("Refresh after a lock failure: %v", err)
	}
}

func TestLockHonoursContext(t *testing.T) {
	t.Parallel()
	repo, _, keys, _ := newRepo(t)
	unlock, err := repo.lock(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = repo.Refresh(ctx, keys.signers(), time.Hour)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Refresh while locked with a canceled context: %v, want context.Canceled", err)
	}
}

// TestTamperedMetadataRefused checks that the writer verifies what it reads
// and does not sign on top of tampered metadata.
func TestTamperedMetadataRefused(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tests := []struct {
		name   string
		key    string
		tamper func([]byte) []byte
	}{
		{"targets bytes changed", "metadata/1.targets.json", func(b []byte) []byte {
			return bytes.Replace(b, []byte(`"version": 1`), []byte(`"version": 1 `), 1)
		}},
		{"timestamp signature broken", "metadata/timestamp.json", func(b []byte) []byte {
			md, err := new(metadata.Metadata[metadata.TimestampType]).FromBytes(b)
			if err != nil {
				t.Fatal(err)
			}
			md.Signed.Version = 9
			out, _ := md.ToBytes(true)
			return out
		}},
		{"snapshot missing", "metadata/1.snapshot.json", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			repo, blobs, keys, _ := newRepo(t)
			if tt.tamper == nil {
				blobs.Delete(ctx, tt.key)
			} else if _, err := blobs.Put(ctx, tt.key, bytes.NewReader(tt.tamper(readBlob(t, blobs, tt.key)))); err != nil {
				t.Fatal(err)
			}
			_, err := repo.Publish(ctx, keys.signers(), Target{Path: "a/1.0.0/f", Staged: stage(t, repo, []byte("x"))})
			wantCode(t, err, tufota.EInternal)
			if !strings.Contains(err.Error(), "inconsistent") {
				t.Fatalf("err = %v, want it to say the repository is inconsistent", err)
			}
		})
	}
}

// FuzzValidateTargetPath checks that every accepted target path maps to a
// valid storage key below targets/ with no way out of it, and to a URL path
// that needs no escaping.
func FuzzValidateTargetPath(f *testing.F) {
	for _, s := range []string{"pump/1.0.0/fw.bin", "a", "a/b", "../x", "/a", "a//b", "a/./b", "pump/1.0.0+b.1/fw", "a\\b", "a/b/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		if err := ValidateTargetPath(p); err != nil {
			if code := tufota.ErrorCode(err); code != tufota.EInvalid {
				t.Fatalf("ValidateTargetPath(%q) code %s: %v", p, code, err)
			}
			return
		}
		key := TargetBlobKey(p, strings.Repeat("a", 64))
		if err := storage.ValidKey(key); err != nil {
			t.Fatalf("accepted %q maps to invalid key %q: %v", p, key, err)
		}
		if !strings.HasPrefix(key, TargetsPrefix) || strings.Contains(key, "..") {
			t.Fatalf("accepted %q maps to key %q", p, key)
		}
		for _, c := range p {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("._-+/", c)) {
				t.Fatalf("accepted %q contains %q", p, c)
			}
		}
	})
}
