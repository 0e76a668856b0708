package signer

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata/config"
	"github.com/theupdateframework/go-tuf/v2/metadata/fetcher"
	"github.com/theupdateframework/go-tuf/v2/metadata/updater"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/storage"
)

// memBlobs is an in-memory storage.Blobs without the Mover upgrade, so
// Publish's copy+delete path is exercised.
type memBlobs struct {
	mu sync.Mutex
	m  map[string][]byte
	t  map[string]time.Time
}

var _ storage.Blobs = (*memBlobs)(nil)

func newMemBlobs() *memBlobs {
	return &memBlobs{m: map[string][]byte{}, t: map[string]time.Time{}}
}

type memObject struct {
	*bytes.Reader
	info storage.Info
}

func (o *memObject) Close() error       { return nil }
func (o *memObject) Info() storage.Info { return o.info }

func (b *memBlobs) Put(ctx context.Context, key string, r io.Reader) (int64, error) {
	if err := storage.ValidKey(key); err != nil {
		return 0, err
	}
	data, err := io.ReadAll(r)
	if err != nil {
		return 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.m[key] = data
	b.t[key] = time.Unix(0, 0)
	return int64(len(data)), nil
}

func (b *memBlobs) Open(_ context.Context, key string) (storage.Object, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	data, ok := b.m[key]
	if !ok {
		return nil, tufota.Errorf(tufota.ENotFound, "blob %s not found", key)
	}
	return &memObject{Reader: bytes.NewReader(data), info: storage.Info{Key: key, Size: int64(len(data)), ModTime: b.t[key]}}, nil
}

func (b *memBlobs) Stat(_ context.Context, key string) (storage.Info, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	data, ok := b.m[key]
	if !ok {
		return storage.Info{}, tufota.Errorf(tufota.ENotFound, "blob %s not found", key)
	}
	return storage.Info{Key: key, Size: int64(len(data)), ModTime: b.t[key]}, nil
}

func (b *memBlobs) Delete(_ context.Context, key string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.m, key)
	delete(b.t, key)
	return nil
}

func (b *memBlobs) List(_ context.Context, prefix string) ([]storage.Info, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []storage.Info
	for k, v := range b.m {
		if strings.HasPrefix(k, prefix) {
			out = append(out, storage.Info{Key: k, Size: int64(len(v)), ModTime: b.t[k]})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

// snapshotBlobs returns a copy of every blob in b.
func snapshotBlobs(t *testing.T, b storage.Blobs) map[string][]byte {
	t.Helper()
	ctx := context.Background()
	infos, err := b.List(ctx, "")
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	out := map[string][]byte{}
	for _, in := range infos {
		out[in.Key] = readBlob(t, b, in.Key)
	}
	return out
}

func readBlob(t *testing.T, b storage.Blobs, key string) []byte {
	t.Helper()
	obj, err := b.Open(context.Background(), key)
	if err != nil {
		t.Fatalf("Open(%s): %v", key, err)
	}
	defer obj.Close()
	data, err := io.ReadAll(obj)
	if err != nil {
		t.Fatalf("read %s: %v", key, err)
	}
	return data
}

// testKeys are in-memory keys for every role: ECDSA P-256 and Ed25519 mixed,
// so both kinds are signed with and verified by go-tuf.
type testKeys struct {
	root      []signature.SignerVerifier
	targets   []signature.SignerVerifier
	snapshot  signature.SignerVerifier
	timestamp signature.SignerVerifier
}

func newTestKeys(t *testing.T, nRoot, nTargets int) testKeys {
	t.Helper()
	var k testKeys
	for i := 0; i < nRoot; i++ {
		k.root = append(k.root, newKey(t, i%2 == 0))
	}
	for i := 0; i < nTargets; i++ {
		k.targets = append(k.targets, newKey(t, i%2 == 1))
	}
	k.snapshot = newKey(t, true)
	k.timestamp = newKey(t, false)
	return k
}

func newKey(t *testing.T, ecdsaKey bool) signature.SignerVerifier {
	t.Helper()
	if ecdsaKey {
		sv, _, err := signature.NewDefaultECDSASignerVerifier()
		if err != nil {
			t.Fatalf("ECDSA key: %v", err)
		}
		return sv
	}
	sv, _, err := signature.NewDefaultED25519SignerVerifier()
	if err != nil {
		t.Fatalf("Ed25519 key: %v", err)
	}
	return sv
}

func (k testKeys) roleKeys(rootThreshold, targetsThreshold int) RoleKeys {
	return RoleKeys{
		Root: k.root, RootThreshold: rootThreshold,
		Targets: k.targets, TargetsThreshold: targetsThreshold,
		Snapshot: k.snapshot, Timestamp: k.timestamp,
	}
}

func (k testKeys) signers() Signers {
	s := Signers{Snapshot: k.snapshot, Timestamp: k.timestamp}
	for _, t := range k.targets {
		s.Targets = append(s.Targets, t)
	}
	return s
}

// fixedClock is a settable clock for WithNow.
type fixedClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fixedClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fixedClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

var testEpoch = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// serveBlobs serves b the way tufota's server does: /metadata/<file> from
// "metadata/<file>" and /targets/<path> from "targets/<path>".
func serveBlobs(t *testing.T, b storage.Blobs) *httptest.Server {
	t.Helper()
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		key := strings.TrimPrefix(req.URL.Path, "/")
		if !strings.HasPrefix(key, MetadataPrefix) && !strings.HasPrefix(key, TargetsPrefix) {
			http.NotFound(w, req)
			return
		}
		obj, err := b.Open(req.Context(), key)
		if err != nil {
			http.NotFound(w, req)
			return
		}
		defer obj.Close()
		http.ServeContent(w, req, "", time.Time{}, obj)
	}))
	t.Cleanup(ts.Close)
	return ts
}

// stockUpdater returns go-tuf's own updater trusting root, fetching from ts
// with one try per file, and with reference time now.
func stockUpdater(t *testing.T, ts *httptest.Server, root []byte, now time.Time) *updater.Updater {
	t.Helper()
	cfg, err := config.New(ts.URL+"/metadata", root)
	if err != nil {
		t.Fatalf("config.New: %v", err)
	}
	cfg.RemoteTargetsURL = ts.URL + "/targets"
	dir := t.TempDir()
	cfg.LocalMetadataDir = filepath.Join(dir, "metadata")
	cfg.LocalTargetsDir = filepath.Join(dir, "targets")
	f := fetcher.NewDefaultFetcher()
	f.SetHTTPClient(ts.Client())
	cfg.Fetcher = f
	up, err := updater.New(cfg)
	if err != nil {
		t.Fatalf("updater.New: %v", err)
	}
	up.UnsafeSetRefTime(now)
	return up
}

// fetchTarget runs a full stock-updater refresh and download of path and
// returns the verified bytes.
func fetchTarget(t *testing.T, ts *httptest.Server, root []byte, now time.Time, path string) ([]byte, error) {
	t.Helper()
	up := stockUpdater(t, ts, root, now)
	if err := up.Refresh(); err != nil {
		return nil, err
	}
	ti, err := up.GetTargetInfo(path)
	if err != nil {
		return nil, err
	}
	dst := filepath.Join(t.TempDir(), "download")
	_, data, err := up.DownloadTarget(ti, dst, "")
	if err != nil {
		return nil, err
	}
	onDisk, err := os.ReadFile(dst)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(onDisk, data) {
		return nil, errors.New("bytes on disk differ from bytes returned")
	}
	return data, nil
}

// stage stages data and fails the test on error.
func stage(t *testing.T, r *Repository, data []byte) Staged {
	t.Helper()
	s, err := r.Stage(context.Background(), bytes.NewReader(data), 0)
	if err != nil {
		t.Fatalf("Stage: %v", err)
	}
	return s
}

func newFileBlobs(t *testing.T) *storage.File {
	t.Helper()
	f, err := storage.NewFile(t.TempDir())
	if err != nil {
		t.Fatalf("storage.NewFile: %v", err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func wantCode(t *testing.T, err error, code tufota.Code) {
	t.Helper()
	if err == nil {
		t.Fatalf("err = nil, want code %s", code)
	}
	if got := tufota.ErrorCode(err); got != code {
		t.Fatalf("err = %v (code %s), want code %s", err, got, code)
	}
}
