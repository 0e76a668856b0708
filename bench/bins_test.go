package bench

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/config"
	"github.com/theupdateframework/go-tuf/v2/metadata/fetcher"
	"github.com/theupdateframework/go-tuf/v2/metadata/updater"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/client"
	"github.com/tufota/tufota/signer"
	"github.com/tufota/tufota/storage"
)

// P6 (issue 12): the bytes a device downloads for one metadata refresh
// from an empty cache and one target look-up, in a repository of 100,000
// firmware targets, with one flat targets.json against the hashed-bin
// layout (signer.WithHashedBins, TAP 15). Goal: bins < 1 % of flat.
//
//	go test -run '^$' -bench P6 -benchtime 1x ./bench/
//
// The repository is built by signer (Init, then Publish of all targets in
// batches), on an in-memory blob store: 100,000 fsynced file writes of the
// target blobs would take the setup minutes and change no metadata byte.
// It is served over HTTP on 127.0.0.1 and every byte the server writes to
// its connections (status lines, headers, bodies) is counted; the client
// is go-tuf's stock updater with a fresh local directory per refresh,
// and tufota's client (client.Repository) as a second figure. The
// firmware download itself is the same in both layouts and not counted.
// The sizes of the metadata files asked are logged.

const p6Targets = 100_000

// p6Lookup is the target a device looks up.
const p6Lookup = "product-0517/1.42.0/firmware.bin"

type p6Repo struct {
	root    []byte
	bits    int
	blobs   *memStore
	repo    *signer.Repository
	signers signer.Signers
	pushed  int // releases published by incrementalRefresh
	srv     *httptest.Server
	sent    *atomic.Int64 // bytes written to the server's connections
	mu      sync.Mutex
	log     []string // metadata files asked since the last reset
}

var (
	p6Mu    sync.Mutex
	p6Repos = map[int]*p6Repo{}
)

// p6Repository builds (once per layout) a repository of p6Targets targets
// with 2^bits hashed bins, or flat for bits 0.
func p6Repository(b *testing.B, bits int) *p6Repo {
	b.Helper()
	p6Mu.Lock()
	defer p6Mu.Unlock()
	if r := p6Repos[bits]; r != nil {
		return r
	}
	ctx := context.Background()
	blobs := newMemStore()
	repo := signer.NewRepository(blobs)
	key := func() signature.SignerVerifier {
		sv, _, err := signature.NewDefaultED25519SignerVerifier()
		if err != nil {
			b.Fatal(err)
		}
		return sv
	}
	keys := signer.RoleKeys{Root: []signature.SignerVerifier{key()}, Targets: []signature.SignerVerifier{key()}, Snapshot: key(), Timestamp: key()}
	start := time.Now()
	root, err := repo.Init(ctx, keys, signer.WithHashedBins(bits))
	if err != nil {
		b.Fatalf("Init: %v", err)
	}
	s := signer.Signers{Targets: []signature.Signer{keys.Targets[0]}, Snapshot: keys.Snapshot, Timestamp: keys.Timestamp}
	const batch = 25_000
	for from := 0; from < p6Targets; from += batch {
		add := make([]signer.Target, 0, batch)
		for i := from; i < from+batch && i < p6Targets; i++ {
			name, version := fmt.Sprintf("product-%04d", i/100), fmt.Sprintf("1.%d.0", i%100)
			data := []byte("firmware image " + name + " " + version)
			sum := sha256.Sum256(data)
			staged := signer.Staged{Key: fmt.Sprintf("%sbench%06d", signer.StagingPrefix, i), Length: int64(len(data)), SHA256: hex.EncodeToString(sum[:])}
			if _, err := blobs.Put(ctx, staged.Key, bytes.NewReader(data)); err != nil {
				b.Fatal(err)
			}
			custom, err := tufota.MarshalCustom(tufota.TargetCustom{Name: name, Version: version, Hardware: []string{"pump-rev-a", "pump-rev-b"}})
			if err != nil {
				b.Fatal(err)
			}
			add = append(add, signer.Target{Path: tufota.TargetPath(name, version, "firmware.bin"), Staged: staged, Custom: custom})
		}
		if _, err := repo.Publish(ctx, s, add...); err != nil {
			b.Fatalf("Publish %d targets: %v", len(add), err)
		}
	}
	b.Logf("built %d targets with %s in %v", p6Targets, layoutName(bits), time.Since(start).Round(time.Millisecond))

	r := &p6Repo{root: root, bits: bits, blobs: blobs, repo: repo, signers: s, sent: new(atomic.Int64)}
	r.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		key := strings.TrimPrefix(req.URL.Path, "/")
		if f, ok := strings.CutPrefix(key, signer.MetadataPrefix); ok {
			r.mu.Lock()
			r.log = append(r.log, f)
			r.mu.Unlock()
		}
		obj, err := blobs.Open(req.Context(), key)
		if err != nil {
			http.NotFound(w, req)
			return
		}
		defer obj.Close()
		data, err := io.ReadAll(obj)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		http.ServeContent(w, req, "", time.Time{}, bytes.NewReader(data))
	}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	r.srv.Listener = countingListener{Listener: ln, n: r.sent}
	r.srv.Start()
	p6Repos[bits] = r
	return r
}

func layoutName(bits int) string {
	if bits == 0 {
		return "a flat targets.json"
	}
	return fmt.Sprintf("%d hashed bins", 1<<bits)
}

// asked returns the metadata files asked since the last call.
func (r *p6Repo) asked() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.log
	r.log = nil
	return out
}

// stockRefresh is one device refresh from an empty cache and one look-up
// with go-tuf's updater; it returns the bytes the server sent.
func (r *p6Repo) stockRefresh(b *testing.B) int64 {
	b.Helper()
	before := r.sent.Load()
	up := r.newUpdater(b, b.TempDir())
	if err := up.Refresh(); err != nil {
		b.Fatalf("stock Refresh: %v", err)
	}
	if _, err := up.GetTargetInfo(p6Lookup); err != nil {
		b.Fatalf("stock GetTargetInfo(%s): %v", p6Lookup, err)
	}
	return r.sent.Load() - before
}

// newUpdater returns go-tuf's updater on local metadata directory dir.
func (r *p6Repo) newUpdater(b *testing.B, dir string) *updater.Updater {
	b.Helper()
	cfg, err := config.New(r.srv.URL+"/metadata", r.root)
	if err != nil {
		b.Fatal(err)
	}
	cfg.LocalMetadataDir, cfg.LocalTargetsDir = filepath.Join(dir, "m"), filepath.Join(dir, "t")
	cfg.RemoteTargetsURL = r.srv.URL + "/targets"
	cfg.TargetsMaxLength = 256 << 20
	f := fetcher.NewDefaultFetcher()
	f.SetHTTPClient(&http.Client{Transport: &http.Transport{}, Timeout: time.Minute})
	cfg.Fetcher = f
	up, err := updater.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	return up
}

// incrementalRefresh is a device that refreshed and looked p6Lookup up
// before one new release was published into the metadata that holds
// p6Lookup (its bin, or the flat targets.json): the bytes of its next
// refresh and look-up, with its cached metadata.
func (r *p6Repo) incrementalRefresh(b *testing.B) int64 {
	b.Helper()
	dir := b.TempDir()
	up := r.newUpdater(b, dir)
	if err := up.Refresh(); err != nil {
		b.Fatal(err)
	}
	if _, err := up.GetTargetInfo(p6Lookup); err != nil {
		b.Fatal(err)
	}
	var p string
	sr := &metadata.SuccinctRoles{BitLength: r.bits, NamePrefix: signer.BinsPrefix}
	for {
		r.pushed++
		p = fmt.Sprintf("product-0517/2.%d.0/firmware.bin", r.pushed)
		if r.bits == 0 || sr.GetRolesForTarget(p)[0].Name == sr.GetRolesForTarget(p6Lookup)[0].Name {
			break
		}
	}
	ctx := context.Background()
	data := []byte("a new release " + p)
	sum := sha256.Sum256(data)
	staged := signer.Staged{Key: fmt.Sprintf("%snew%06d", signer.StagingPrefix, r.pushed), Length: int64(len(data)), SHA256: hex.EncodeToString(sum[:])}
	if _, err := r.blobs.Put(ctx, staged.Key, bytes.NewReader(data)); err != nil {
		b.Fatal(err)
	}
	if _, err := r.repo.Publish(ctx, r.signers, signer.Target{Path: p, Staged: staged}); err != nil {
		b.Fatalf("Publish %s: %v", p, err)
	}
	r.asked()
	before := r.sent.Load()
	up = r.newUpdater(b, dir)
	if err := up.Refresh(); err != nil {
		b.Fatalf("stock Refresh with a cache: %v", err)
	}
	if _, err := up.GetTargetInfo(p6Lookup); err != nil {
		b.Fatal(err)
	}
	return r.sent.Load() - before
}

// clientRefresh is the same with tufota's device client.
func (r *p6Repo) clientRefresh(b *testing.B) (int64, error) {
	b.Helper()
	repo, err := client.OpenRepository(client.RepositoryConfig{
		TrustedRoot: r.root, MetadataURL: r.srv.URL + "/metadata", TargetsURL: r.srv.URL + "/targets",
		MetadataDir: b.TempDir(), HTTPClient: &http.Client{Transport: &http.Transport{}, Timeout: time.Minute},
	})
	if err != nil {
		return 0, err
	}
	before := r.sent.Load()
	ctx := context.Background()
	if err := repo.Refresh(ctx); err != nil {
		return r.sent.Load() - before, fmt.Errorf("refresh: %w", err)
	}
	if _, err := repo.Target(ctx, p6Lookup); err != nil {
		return r.sent.Load() - before, fmt.Errorf("target %s: %w", p6Lookup, err)
	}
	return r.sent.Load() - before, nil
}

// BenchmarkP6HashedBins reports the bytes of one device refresh and
// look-up (refresh-B/op) for the flat layout and for 2^8, 2^10 and 2^12
// bins, and for the bins their share of the flat figure (pct-of-flat, the
// goal is < 1); client-B/op is the same refresh by tufota's client, and
// after-push-B/op the next refresh of a device with cached metadata after
// one new release into the metadata that holds its target.
func BenchmarkP6HashedBins(b *testing.B) {
	var flat int64
	for _, bits := range []int{0, 8, 10, 12} {
		name := "flat"
		if bits > 0 {
			name = fmt.Sprintf("bins=%d", 1<<bits)
		}
		b.Run(name, func(b *testing.B) {
			r := p6Repository(b, bits)
			if bits > 0 && flat == 0 {
				flat = p6Repository(b, 0).stockRefresh(b)
			}
			r.asked()
			var n int64
			b.ResetTimer()
			for range b.N {
				n = r.stockRefresh(b)
			}
			b.StopTimer()
			files := r.asked()
			sort.Strings(files)
			for i, f := range files {
				if info, err := r.blobs.Stat(context.Background(), signer.MetadataPrefix+f); err == nil {
					files[i] = fmt.Sprintf("%s (%d B)", f, info.Size)
				}
			}
			b.Logf("%s: go-tuf updater, empty cache, refresh + look-up of %s: %d bytes; files asked over %d runs: %v",
				layoutName(bits), p6Lookup, n, b.N, files)
			b.ReportMetric(float64(n), "refresh-B/op")
			if bits == 0 {
				flat = n
			} else {
				b.ReportMetric(100*float64(n)/float64(flat), "pct-of-flat")
			}
			cn, err := r.clientRefresh(b)
			if err != nil {
				b.Fatalf("%s: tufota client: %v (after %d bytes)", layoutName(bits), err, cn)
			}
			b.Logf("%s: tufota client, empty cache, refresh + look-up: %d bytes", layoutName(bits), cn)
			b.ReportMetric(float64(cn), "client-B/op")
			inc := r.incrementalRefresh(b)
			b.Logf("%s: go-tuf updater with a cache, after one release into the metadata that holds %s: %d bytes; files asked: %v",
				layoutName(bits), p6Lookup, inc, r.asked())
			b.ReportMetric(float64(inc), "after-push-B/op")
		})
	}
}

// countingListener counts the bytes written to each accepted connection.
type countingListener struct {
	net.Listener
	n *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return countingConn{Conn: c, n: l.n}, nil
}

type countingConn struct {
	net.Conn
	n *atomic.Int64
}

// Write counts p before writing it: a client may have read the bytes,
// and the benchmark read the counter, before a Write that returned has
// counted them.
func (c countingConn) Write(p []byte) (int, error) {
	c.n.Add(int64(len(p)))
	n, err := c.Conn.Write(p)
	c.n.Add(int64(n - len(p)))
	return n, err
}

// memStore is an in-memory storage.Blobs for the P6 repositories.
type memStore struct {
	mu sync.RWMutex
	m  map[string][]byte
}

var _ storage.Blobs = (*memStore)(nil)

func newMemStore() *memStore { return &memStore{m: map[string][]byte{}} }

type memObject struct {
	*bytes.Reader
	info storage.Info
}

func (o memObject) Close() error       { return nil }
func (o memObject) Info() storage.Info { return o.info }

func (s *memStore) Put(ctx context.Context, key string, r io.Reader) (int64, error) {
	if err := storage.ValidKey(key); err != nil {
		return 0, err
	}
	data, err := io.ReadAll(r)
	if err != nil {
		return 0, fmt.Errorf("put %s: %w", key, err)
	}
	s.mu.Lock()
	s.m[key] = data
	s.mu.Unlock()
	return int64(len(data)), nil
}

func (s *memStore) Open(_ context.Context, key string) (storage.Object, error) {
	s.mu.RLock()
	data, ok := s.m[key]
	s.mu.RUnlock()
	if !ok {
		return nil, tufota.Errorf(tufota.ENotFound, "blob %s not found", key)
	}
	return memObject{Reader: bytes.NewReader(data), info: storage.Info{Key: key, Size: int64(len(data))}}, nil
}

func (s *memStore) Stat(_ context.Context, key string) (storage.Info, error) {
	s.mu.RLock()
	data, ok := s.m[key]
	s.mu.RUnlock()
	if !ok {
		return storage.Info{}, tufota.Errorf(tufota.ENotFound, "blob %s not found", key)
	}
	return storage.Info{Key: key, Size: int64(len(data))}, nil
}

func (s *memStore) Delete(_ context.Context, key string) error {
	s.mu.Lock()
	delete(s.m, key)
	s.mu.Unlock()
	return nil
}

func (s *memStore) List(_ context.Context, prefix string) ([]storage.Info, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []storage.Info
	for k, v := range s.m {
		if strings.HasPrefix(k, prefix) {
			out = append(out, storage.Info{Key: k, Size: int64(len(v))})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}
