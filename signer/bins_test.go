package signer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/client"
	"github.com/tufota/tufota/storage"
)

// binsEnv is a hashed-bin repository on the file blob store with its
// release service on SQLite.
type binsEnv struct {
	t     *testing.T
	keys  testKeys
	blobs *storage.File
	repo  *Repository
	rels  *Releases
	root  []byte
	clock *fixedClock
}

func newBinsEnv(t *testing.T, bits int) *binsEnv {
	t.Helper()
	ctx := context.Background()
	e := &binsEnv{t: t, keys: newTestKeys(t, 1, 1), blobs: newFileBlobs(t), clock: &fixedClock{t: testEpoch}}
	e.repo = NewRepository(e.blobs, WithNow(e.clock.Now))
	var err error
	if e.root, err = e.repo.Init(ctx, e.keys.roleKeys(1, 1), WithHashedBins(bits)); err != nil {
		t.Fatalf("Init(WithHashedBins(%d)): %v", bits, err)
	}
	db, err := storage.OpenDB(ctx, "sqlite:"+filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatalf("OpenDB: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	e.rels = NewReleases(db, e.repo, e.keys.signers(), WithClock(e.clock.Now))
	return e
}

func (e *binsEnv) push(name, version string, data []byte, opts ...PushOption) Release {
	e.t.Helper()
	rel, err := e.rels.Push(context.Background(), PushRequest{Name: name, Version: version, Hardware: []string{"hw-a"}, File: "fw.bin"}, bytes.NewReader(data), 0, "alice", opts...)
	if err != nil {
		e.t.Fatalf("Push(%s@%s): %v", name, version, err)
	}
	if rel.State != StatePublished {
		e.t.Fatalf("Push(%s@%s) = %s, want published", name, version, rel.State)
	}
	return rel
}

// countingServer serves b like serveBlobs and records every path asked.
type countingServer struct {
	*httptest.Server
	mu    sync.Mutex
	paths []string
}

func serveCounting(t *testing.T, b storage.Blobs) *countingServer {
	t.Helper()
	cs := &countingServer{}
	cs.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		cs.mu.Lock()
		cs.paths = append(cs.paths, req.URL.Path)
		cs.mu.Unlock()
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
	t.Cleanup(cs.Close)
	return cs
}

// metadataAsked returns the metadata files asked for (without the prefix)
// and forgets them.
func (cs *countingServer) metadataAsked() []string {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	var out []string
	for _, p := range cs.paths {
		if f, ok := strings.CutPrefix(p, "/"+MetadataPrefix); ok {
			out = append(out, f)
		}
	}
	cs.paths = nil
	return out
}

// binFiles returns the bin roles named in asked (N.bins-XXX.json).
func binFiles(asked []string) []string {
	var out []string
	for _, f := range asked {
		if _, role, ok := parseVersioned(f); ok && strings.HasPrefix(role, BinsPrefix+"-") {
			out = append(out, role)
		}
	}
	return out
}

func binOfPath(t *testing.T, bits int, path string) string {
	t.Helper()
	sr := &metadata.SuccinctRoles{BitLength: bits, NamePrefix: BinsPrefix}
	return sr.GetRolesForTarget(path)[0].Name
}

// TestHashedBinsLayout: Init writes every bin and a targets metadata that
// only delegates; a push lands in the metadata of its bin, nowhere else;
// go-tuf's stock updater, from a fresh local directory, finds and
// downloads each release and fetches exactly one bin per look-up.
func TestHashedBinsLayout(t *testing.T) {
	t.Parallel()
	const bits = 4
	e := newBinsEnv(t, bits)
	ctx := context.Background()
	if got, err := e.repo.HashedBins(ctx); err != nil || got != bits {
		t.Fatalf("HashedBins = %d, %v; want %d", got, err, bits)
	}
	for i := range 1 << bits {
		name := fmt.Sprintf("1.%s-%x.json", BinsPrefix, i)
		if _, err := e.blobs.Stat(ctx, metaKey(name)); err != nil {
			t.Fatalf("Init wrote no %s: %v", name, err)
		}
	}

	images := map[string][]byte{}
	var sbomPath string
	for i := range 6 {
		name, version := fmt.Sprintf("pump%d", i), "1.0.0"
		data := []byte(fmt.Sprintf("firmware of pump %d", i))
		var opts []PushOption
		if i == 0 {
			opts = append(opts, WithSBOM([]byte(`{"bomFormat":"CycloneDX","specVersion":"1.6","components":[]}`)))
		}
		rel := e.push(name, version, data, opts...)
		images[rel.TargetPath] = data
		if rel.SBOM != nil {
			sbomPath = rel.SBOM.Path
		}
		// The release's version is that of its bin.
		bin := binOfPath(t, bits, rel.TargetPath)
		if _, err := e.blobs.Stat(ctx, metaKey(fmt.Sprintf("%d.%s.json", rel.TargetsVersion, bin))); err != nil {
			t.Fatalf("release %s: targets_version %d, but no such version of its bin %s: %v", rel.TargetPath, rel.TargetsVersion, bin, err)
		}
	}

	top, err := e.repo.Targets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(top.Signed.Targets) != 0 {
		t.Fatalf("top-level targets lists %d targets, want none (all in bins)", len(top.Signed.Targets))
	}
	sr := top.Signed.Delegations.SuccinctRoles
	if sr == nil || sr.BitLength != bits || sr.Threshold != 1 || sr.NamePrefix != BinsPrefix || len(top.Signed.Delegations.Roles) != 0 {
		t.Fatalf("delegations = %+v, want a succinct delegation of %d bits only", top.Signed.Delegations, bits)
	}

	srv := serveCounting(t, e.blobs)
	for p, want := range images {
		up := stockUpdater(t, srv.Server, e.root, testEpoch)
		if err := up.Refresh(); err != nil {
			t.Fatalf("stock Refresh: %v", err)
		}
		ti, err := up.GetTargetInfo(p)
		if err != nil {
			t.Fatalf("stock GetTargetInfo(%s): %v", p, err)
		}
		_, got, err := up.DownloadTarget(ti, filepath.Join(t.TempDir(), "fw"), "")
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("stock DownloadTarget(%s) = %q, %v", p, got, err)
		}
		if bins, want := binFiles(srv.metadataAsked()), []string{binOfPath(t, bits, p)}; !slices.Equal(bins, want) {
			t.Fatalf("looking up %s fetched bins %v, want only %v", p, bins, want)
		}
	}
	up := stockUpdater(t, srv.Server, e.root, testEpoch)
	if err := up.Refresh(); err != nil {
		t.Fatal(err)
	}
	if _, err := up.GetTargetInfo(sbomPath); err != nil {
		t.Fatalf("stock GetTargetInfo(SBOM %s): %v", sbomPath, err)
	}
	// A path never published is not found (its bin exists, empty or not).
	if _, err := up.GetTargetInfo("pump9/1.0.0/fw.bin"); err == nil {
		t.Fatal("stock GetTargetInfo of an unpublished path succeeded")
	}

	// The same path again is a conflict, found in its bin.
	_, err = e.rels.Push(ctx, PushRequest{Name: "pump1", Version: "1.0.0+b", Hardware: []string{"hw-a"}, File: "fw.bin"}, bytes.NewReader([]byte("x")), 0, "alice")
	wantCode(t, err, tufota.EConflict)
	if _, err := e.repo.Publish(ctx, e.keys.signers(), Target{Path: "pump1/1.0.0/fw.bin", Staged: stage(t, e.repo, []byte("again"))}); err == nil {
		t.Fatal("Publish of a path published already succeeded")
	} else {
		wantCode(t, err, tufota.EConflict)
	}
}

// TestHashedBinsTufotaClient: tufota's device library (client.Repository)
// finds and downloads a release through its bin.
func TestHashedBinsTufotaClient(t *testing.T) {
	t.Parallel()
	e := newBinsEnv(t, 3)
	data := []byte("infusion pump firmware 2.1.0")
	rel := e.push("pump", "2.1.0", data)
	e.push("monitor", "1.0.0", []byte("monitor firmware"))
	srv := serveCounting(t, e.blobs)
	repo, err := client.OpenRepository(client.RepositoryConfig{
		TrustedRoot: e.root, MetadataURL: srv.URL + "/metadata", TargetsURL: srv.URL + "/targets",
		MetadataDir: t.TempDir(), Now: e.clock.Now, HTTPClient: srv.Client(),
	})
	if err != nil {
		t.Fatalf("OpenRepository: %v", err)
	}
	ctx := context.Background()
	if err := repo.Refresh(ctx); err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	tg, err := repo.Target(ctx, rel.TargetPath)
	if err != nil {
		t.Fatalf("Target(%s): %v", rel.TargetPath, err)
	}
	dst := filepath.Join(t.TempDir(), "fw.bin")
	if err := repo.Download(ctx, tg, dst); err != nil {
		t.Fatalf("Download: %v", err)
	}
	if got, err := os.ReadFile(dst); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("downloaded %q, %v; want %q", got, err, data)
	}
	if bins, want := binFiles(srv.metadataAsked()), []string{binOfPath(t, 3, rel.TargetPath)}; !slices.Equal(bins, want) {
		t.Fatalf("client fetched bins %v, want only %v", bins, want)
	}
	if _, err := repo.Target(ctx, "pump/9.9.9/fw.bin"); err == nil {
		t.Fatal("Target of an unpublished path succeeded")
	}
}

// TestHashedBinsWrongBinRefused: a target signed into a bin it does not
// hash into (by a holder of the bins key, or a server bug) is not found by
// go-tuf's updater, which looks only in the target's own bin, and the
// repository itself reads such a bin as inconsistent.
func TestHashedBinsWrongBinRefused(t *testing.T) {
	t.Parallel()
	const bits = 3
	e := newBinsEnv(t, bits)
	ctx := context.Background()
	data := []byte("firmware the attacker wants installed")
	const path = "pump/6.6.6/fw.bin"
	right := binOfPath(t, bits, path)
	var wrong string
	for i := range 1 << bits {
		if b := fmt.Sprintf("%s-%x", BinsPrefix, i); b != right {
			wrong = b
			break
		}
	}
	// The attack: the target, blob in place, signed into the wrong bin
	// with the real bins key, with a snapshot and timestamp naming it.
	st, err := e.repo.load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	staged := stage(t, e.repo, data)
	md, err := e.repo.loadBin(ctx, st, wrong)
	if err != nil {
		t.Fatal(err)
	}
	tgt := Target{Path: path, Staged: staged}
	if err := e.repo.nextTargets(ctx, md, st.next(wrong), []Target{tgt}); err != nil {
		t.Fatal(err)
	}
	s := e.keys.signers()
	if err := signBin(st.targets, wrong, md, s.Targets); err != nil {
		t.Fatal(err)
	}
	binData, err := md.ToBytes(true)
	if err != nil {
		t.Fatal(err)
	}
	st.snapshot.Signed.Meta[wrong+".json"] = binMeta(md.Signed.Version)
	st.snapshot.Signed.Version = st.next(RoleSnapshot)
	files, err := e.repo.signSnapshotTimestamp(st.root, st.snapshot, st.timestamp, s,
		[]metaFile{{name: fmt.Sprintf("%d.%s.json", md.Signed.Version, wrong), data: binData}})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.repo.moveStaged(ctx, tgt); err != nil {
		t.Fatal(err)
	}
	if err := e.repo.writeChain(ctx, files); err != nil {
		t.Fatal(err)
	}

	srv := serveCounting(t, e.blobs)
	up := stockUpdater(t, srv.Server, e.root, testEpoch)
	if err := up.Refresh(); err != nil {
		t.Fatalf("stock Refresh: %v (the metadata itself is validly signed)", err)
	}
	if ti, err := up.GetTargetInfo(path); err == nil {
		t.Fatalf("stock GetTargetInfo(%s) found %+v in bin %s; it belongs in %s", path, ti, wrong, right)
	}
	asked := binFiles(srv.metadataAsked())
	if !slices.Equal(asked, []string{right}) {
		t.Fatalf("the updater fetched bins %v, want only the target's own %s", asked, right)
	}
	// tufota's device client refuses it the same way.
	repo, err := client.OpenRepository(client.RepositoryConfig{
		TrustedRoot: e.root, MetadataURL: srv.URL + "/metadata", TargetsURL: srv.URL + "/targets",
		MetadataDir: t.TempDir(), Now: e.clock.Now, HTTPClient: srv.Client(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := repo.Refresh(ctx); err != nil {
		t.Fatalf("client Refresh: %v", err)
	}
	if tg, err := repo.Target(ctx, path); err == nil {
		t.Fatalf("client Target(%s) = %+v from the wrong bin", path, tg)
	}

	// The server reads the wrong bin as inconsistent, not as a release.
	st2, err := e.repo.load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.repo.loadBin(ctx, st2, wrong)
	wantCode(t, err, tufota.EInternal)

	// The control: the same target published into its own bin is found,
	// so the refusals above come from the bin, not from the entry.
	if _, err := e.repo.Publish(ctx, s, Target{Path: path, Staged: stage(t, e.repo, data)}); err != nil {
		t.Fatalf("Publish into the right bin: %v", err)
	}
	if got, err := fetchTarget(t, srv.Server, e.root, testEpoch, path); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("stock fetch from the right bin = %q, %v", got, err)
	}
}

// TestHashedBinsRefusals: the combinations the layout does not support are
// refused with a clear error, before anything is written.
func TestHashedBinsRefusals(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	t.Run("init", func(t *testing.T) {
		t.Parallel()
		keys := newTestKeys(t, 1, 2)
		for _, tc := range []struct {
			bits, threshold int
		}{{MaxBinBits + 1, 1}, {-1, 1}, {4, 2}} {
			blobs := newMemBlobs()
			_, err := NewRepository(blobs).Init(ctx, keys.roleKeys(1, tc.threshold), WithHashedBins(tc.bits))
			wantCode(t, err, tufota.EInvalid)
			if infos, _ := blobs.List(ctx, ""); len(infos) != 0 {
				t.Fatalf("bits %d threshold %d: refused Init wrote %d blobs", tc.bits, tc.threshold, len(infos))
			}
		}
	})
	t.Run("delegation", func(t *testing.T) {
		t.Parallel()
		e := newBinsEnv(t, 2)
		_, err := e.rels.AddDelegation(ctx, DelegationRequest{Name: "pumps", Paths: []string{"pump/*/*"}, Keys: []*metadata.Key{tufKeyOf(t, newKey(t, true))}, Threshold: 1}, "admin")
		wantCode(t, err, tufota.EInvalid)
	})
	t.Run("offline-targets-key", func(t *testing.T) {
		t.Parallel()
		e := newBinsEnv(t, 2)
		offline := NewReleases(e.rels.db, e.repo, Signers{Snapshot: e.keys.snapshot, Timestamp: e.keys.timestamp}, WithClock(e.clock.Now))
		_, err := offline.Push(ctx, PushRequest{Name: "pump", Version: "1.0.0", Hardware: []string{"hw-a"}, File: "fw.bin"}, bytes.NewReader([]byte("fw")), 0, "alice")
		wantCode(t, err, tufota.EInvalid)
		if _, err := offline.Get(ctx, "pump", "1.0.0"); !errors.Is(err, tufota.ErrNotFound) {
			t.Fatalf("refused push left a release: %v", err)
		}
		if infos, _ := e.blobs.List(ctx, StagingPrefix); len(infos) != 0 {
			t.Fatalf("refused push left staged blobs: %v", infos)
		}
		_, err = offline.SignRelease(ctx, "pump", "1.0.0", SignatureUpload{KeyID: "00", Sig: "00", PayloadSHA256: "00"}, "bob")
		wantCode(t, err, tufota.EInvalid)
	})
	t.Run("root-change-of-targets-keys", func(t *testing.T) {
		t.Parallel()
		e := newBinsEnv(t, 2)
		nk := newKey(t, true)
		_, err := e.rels.ProposeRoot(ctx, RootChange{AddKeys: []RootKeyAdd{{Role: RoleTargets, Key: tufKeyOf(t, nk)}}}, "admin")
		wantCode(t, err, tufota.EInvalid)
	})
}

// TestHashedBinsRefresh: bins that near their expiry are re-signed by
// Refresh (with a new snapshot and timestamp), and a device whose clock is
// past the old expiry still verifies the release.
func TestHashedBinsRefresh(t *testing.T) {
	t.Parallel()
	e := newBinsEnv(t, 2)
	ctx := context.Background()
	rel := e.push("pump", "1.0.0", []byte("fw 1"))
	s := e.keys.signers()
	if got, err := e.repo.Refresh(ctx, s, time.Hour); err != nil || len(got) != 0 {
		t.Fatalf("Refresh with nothing due = %v, %v", got, err)
	}
	later := testEpoch.Add(DefaultExpiry.Targets - time.Hour)
	e.clock.Set(later)
	got, err := e.repo.Refresh(ctx, s, 2*time.Hour)
	if err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	if !slices.Contains(got, BinsPrefix) || !slices.Contains(got, RoleSnapshot) {
		t.Fatalf("Refresh re-signed %v, want bins and snapshot", got)
	}
	srv := serveCounting(t, e.blobs)
	// Past every metadata's first expiry: only re-signed metadata verifies.
	past := testEpoch.Add(DefaultExpiry.Targets + time.Hour)
	up := stockUpdater(t, srv.Server, e.root, past)
	if err := up.Refresh(); err != nil {
		t.Fatalf("stock Refresh at %v: %v", past, err)
	}
	if _, err := up.GetTargetInfo(rel.TargetPath); err != nil {
		t.Fatalf("stock GetTargetInfo after the bins' refresh: %v", err)
	}
}

// TestHashedBinsPushStorageFailure fails every write of a push into a
// bin in turn (before and after it takes effect): the push either
// publishes (the stock updater finds the release) or leaves nothing of
// the release, and Reconcile, run after each failure, leaves the
// repository verifiable.
func TestHashedBinsPushStorageFailure(t *testing.T) {
	t.Parallel()
	for _, after := range []bool{false, true} {
		t.Run(fmt.Sprintf("after=%v", after), func(t *testing.T) {
			t.Parallel()
			for n := 1; n < 20; n++ {
				if binsPushFailingAt(t, n, after) {
					if n < 5 {
						t.Fatalf("push finished after %d writes; expected staging, a move, a bin, a snapshot and a timestamp", n-1)
					}
					return
				}
			}
			t.Fatal("push never finished")
		})
	}
}

func binsPushFailingAt(t *testing.T, n int, after bool) (done bool) {
	t.Helper()
	ctx := context.Background()
	fb := &failingBlobs{Blobs: newFileBlobs(t)}
	blobs := failingMover{fb}
	keys := newTestKeys(t, 1, 1)
	repo := NewRepository(blobs, WithNow(func() time.Time { return testEpoch }))
	root, err := repo.Init(ctx, keys.roleKeys(1, 1), WithHashedBins(2))
	if err != nil {
		t.Fatalf("Init: %v", err)
	}
	db, err := storage.OpenDB(ctx, "sqlite:"+filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	rels := NewReleases(db, repo, keys.signers(), WithClock(func() time.Time { return testEpoch }))
	img := []byte("pump firmware")
	const path = "pump/1.0.0/fw.bin"
	push := func() (Release, error) {
		return rels.Push(ctx, PushRequest{Name: "pump", Version: "1.0.0", Hardware: []string{"hw-a"}, File: "fw.bin"}, bytes.NewReader(img), 0, "alice")
	}
	fb.arm(n, after)
	rel, perr := push()
	fired, log := fb.disarm()
	if !fired {
		if perr != nil || rel.State != StatePublished {
			t.Fatalf("write %d: push without a failure = %+v, %v", n, rel, perr)
		}
		return true
	}
	where := fmt.Sprintf("failure %s write %d of %v", map[bool]string{false: "before", true: "after"}[after], n, log)
	if _, err := rels.Reconcile(ctx); err != nil {
		t.Fatalf("%s: Reconcile: %v", where, err)
	}
	srv := serveBlobs(t, blobs)
	_, liveErr := fetchTarget(t, srv, root, testEpoch, path)
	if perr == nil {
		if rel.State != StatePublished || liveErr != nil {
			t.Fatalf("%s: push succeeded with %+v, but the stock updater: %v", where, rel, liveErr)
		}
		return false
	}
	if liveErr == nil {
		t.Fatalf("%s: push failed (%v) but the release is in signed metadata", where, perr)
	}
	if _, err := rels.Get(ctx, "pump", "1.0.0"); !errors.Is(err, tufota.ErrNotFound) {
		t.Fatalf("%s: Get after a failed push: %v, want not found", where, err)
	}
	if rel, err := push(); err != nil || rel.State != StatePublished {
		t.Fatalf("%s: push again = %+v, %v", where, rel, err)
	}
	if got, err := fetchTarget(t, srv, root, testEpoch, path); err != nil || !bytes.Equal(got, img) {
		t.Fatalf("%s: after pushing again: %q, %v", where, got, err)
	}
	return false
}
