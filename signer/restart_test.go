package signer

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/internal/testenv"
	"github.com/tufota/tufota/storage"
)

// envCrashChild carries the JSON crashSpec of a publish crash child.
const envCrashChild = "TUFOTA_PUBLISH_CRASH_CHILD"

// crashStores names where a crash scenario keeps its blobs and state.
type crashStores struct {
	BlobsURL    string `json:"blobs_url"` // file:DIR or s3://…
	DBURL       string `json:"db_url"`    // sqlite:PATH or postgres://…
	S3AccessKey string `json:"s3_access_key,omitempty"`
	S3SecretKey string `json:"s3_secret_key,omitempty"`
}

// crashSpec is what the child process does: one push, or one signature
// upload that meets the threshold, with the server's keys, SIGKILLing
// itself before durable step CrashAt (0: never).
type crashSpec struct {
	Stores  crashStores     `json:"stores"`
	Keys    crashKeyDER     `json:"keys"`
	Op      string          `json:"op"` // "push", "sign" or "reconcile"
	Name    string          `json:"name"`
	Version string          `json:"version"`
	Image   []byte          `json:"image,omitempty"`
	SBOM    []byte          `json:"sbom,omitempty"`
	Upload  SignatureUpload `json:"upload"`
	CrashAt int             `json:"crash_at"`
}

// crashKeyDER are the server's keys as PKCS#8 DER in hex; Targets is empty
// when the server holds no targets key.
type crashKeyDER struct {
	Targets, Snapshot, Timestamp string
}

// crashKey is a key with its private part in PKCS#8 DER hex, so that the
// child process can load it.
type crashKey struct {
	sv  signature.SignerVerifier
	der string
}

func newCrashKey(t *testing.T, useECDSA bool) crashKey {
	t.Helper()
	var priv crypto.PrivateKey
	if useECDSA {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		priv = k
	} else {
		_, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		priv = k
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return crashKey{sv: loadCrashKey(t, hex.EncodeToString(der)), der: hex.EncodeToString(der)}
}

func loadCrashKey(t *testing.T, derHex string) signature.SignerVerifier {
	t.Helper()
	if derHex == "" {
		return nil
	}
	der, err := hex.DecodeString(derHex)
	if err != nil {
		t.Fatal(err)
	}
	priv, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		t.Fatal(err)
	}
	var sv signature.SignerVerifier
	switch k := priv.(type) {
	case *ecdsa.PrivateKey:
		sv, err = signature.LoadECDSASignerVerifier(k, crypto.SHA256)
	case ed25519.PrivateKey:
		sv, err = signature.LoadED25519SignerVerifier(k)
	default:
		t.Fatalf("key type %T", priv)
	}
	if err != nil {
		t.Fatal(err)
	}
	return sv
}

func (k crashKeyDER) signers(t *testing.T) Signers {
	t.Helper()
	s := Signers{Snapshot: loadCrashKey(t, k.Snapshot), Timestamp: loadCrashKey(t, k.Timestamp)}
	if k.Targets != "" {
		s.Targets = []signature.Signer{loadCrashKey(t, k.Targets)}
	}
	return s
}

// crashServer is one run of the server's signing side over stores: what a
// process opens at start.
type crashServer struct {
	blobs storage.Blobs
	db    *storage.DB
	repo  *Repository
	rels  *Releases
}

func openCrashServer(t *testing.T, st crashStores, s Signers, opts ...RepoOption) *crashServer {
	t.Helper()
	ctx := context.Background()
	var bopts []storage.BlobsOption
	if st.S3AccessKey != "" {
		bopts = append(bopts, storage.WithS3Credentials(st.S3AccessKey, st.S3SecretKey), storage.WithCreateBucket())
	}
	blobs, err := storage.OpenBlobs(ctx, st.BlobsURL, "", bopts...)
	if err != nil {
		t.Fatalf("OpenBlobs: %v", err)
	}
	db, err := storage.OpenDB(ctx, st.DBURL)
	if err != nil {
		t.Fatalf("OpenDB: %v", err)
	}
	cs := &crashServer{blobs: blobs, db: db}
	// As the server does: the database lock serialises writers across
	// processes (a PostgreSQL advisory lock, released when a process dies).
	opts = append([]RepoOption{WithNow(func() time.Time { return testEpoch }), WithLocker(db.Locker("tuf-repository"))}, opts...)
	cs.repo = NewRepository(blobs, opts...)
	cs.rels = NewReleases(db, cs.repo, s, WithClock(func() time.Time { return testEpoch }))
	return cs
}

// close ends the process's hold on the stores (a clean shutdown).
func (cs *crashServer) close() {
	_ = cs.db.Close()
	if c, ok := cs.blobs.(io.Closer); ok {
		_ = c.Close()
	}
}

// TestPublishCrashChild is not a test: TestCrashAtEveryPublishStep
// re-executes the test binary to run one push or signature upload as the
// server would, SIGKILLed before one of its durable steps.
func TestPublishCrashChild(t *testing.T) {
	raw := os.Getenv(envCrashChild)
	if raw == "" {
		return // not a child process
	}
	var spec crashSpec
	if err := json.Unmarshal([]byte(raw), &spec); err != nil {
		t.Fatal(err)
	}
	steps := 0
	hook := func(step string) error {
		steps++
		fmt.Printf("step %d: %s\n", steps, step)
		if steps == spec.CrashAt {
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {} // the signal is on its way
		}
		return nil
	}
	cs := openCrashServer(t, spec.Stores, spec.Keys.signers(t), WithStepHook(hook))
	defer cs.close()
	ctx := context.Background()
	switch spec.Op {
	case "push":
		req := PushRequest{Name: spec.Name, Version: spec.Version, Hardware: []string{"hw-a"}, File: "fw.bin"}
		var opts []PushOption
		if spec.SBOM != nil {
			opts = append(opts, WithSBOM(spec.SBOM))
		}
		if _, err := cs.rels.Push(ctx, req, bytes.NewReader(spec.Image), 0, "alice", opts...); err != nil {
			t.Fatalf("Push: %v", err)
		}
	case "sign":
		st, err := cs.rels.SignRelease(ctx, spec.Name, spec.Version, spec.Upload, "bob")
		if err != nil || !st.Published {
			t.Fatalf("SignRelease = %+v, %v; want published", st, err)
		}
	case "reconcile":
		if _, err := cs.rels.Reconcile(ctx); err != nil {
			t.Fatalf("Reconcile: %v", err)
		}
	default:
		t.Fatalf("op %q", spec.Op)
	}
	fmt.Printf("steps=%d\n", steps)
}

// crashScenario is a repository and the publish that the child runs.
type crashScenario struct {
	name string
	// online: the server holds the targets key (threshold 1); otherwise
	// the key is offline and every top-level release waits for it.
	online bool
	// delegated: pump/* is delegated to a product-line role whose key
	// signs the crashed release.
	delegated bool
	// sbom: the crashed release carries an SBOM (two blobs to move).
	sbom bool
	// bins: the repository uses 2^bins hashed bins (WithHashedBins).
	bins int
}

// crashRepo is the keys of one scenario.
type crashRepo struct {
	sc                            crashScenario
	root, targets, snap, ts, line crashKey
	rootJSON                      []byte
	image, other, prior, sbom     []byte
	serverKeys                    crashKeyDER
}

func newCrashRepo(t *testing.T, sc crashScenario) *crashRepo {
	t.Helper()
	cr := &crashRepo{sc: sc,
		// ECDSA signatures differ on every signing: a metadata file
		// written twice under one name would differ.
		root: newCrashKey(t, false), targets: newCrashKey(t, true), snap: newCrashKey(t, true),
		ts: newCrashKey(t, false), line: newCrashKey(t, true),
		sbom:  []byte(`{"bomFormat":"CycloneDX","specVersion":"1.6","components":[]}`),
		image: []byte("pump firmware 1.0.0"), other: []byte("monitor firmware 2.0.0, another release"), prior: []byte("monitor firmware 0.9.0"),
	}
	cr.serverKeys = crashKeyDER{Snapshot: cr.snap.der, Timestamp: cr.ts.der}
	if sc.online {
		cr.serverKeys.Targets = cr.targets.der
	}
	return cr
}

// release pushes NAME@VERSION (with sbom, if given) and, when it waits
// for signatures, signs it with the offline key of its role; it must end
// up published.
func (cr *crashRepo) release(t *testing.T, cs *crashServer, name, version string, data, sbom []byte) Release {
	t.Helper()
	ctx := context.Background()
	var opts []PushOption
	if sbom != nil {
		opts = append(opts, WithSBOM(sbom))
	}
	rel, err := cs.rels.Push(ctx, PushRequest{Name: name, Version: version, Hardware: []string{"hw-a"}, File: "fw.bin"}, bytes.NewReader(data), 0, "alice", opts...)
	if err != nil {
		t.Fatalf("Push(%s@%s): %v", name, version, err)
	}
	if rel.State == StatePublished {
		return rel
	}
	if _, err := cs.rels.SignRelease(ctx, name, version, cr.upload(t, cs, name, version, rel.Role), "bob"); err != nil {
		t.Fatalf("SignRelease(%s@%s): %v", name, version, err)
	}
	if rel, err = cs.rels.Get(ctx, name, version); err != nil || rel.State != StatePublished {
		t.Fatalf("release %s@%s after signing = %+v, %v; want published", name, version, rel, err)
	}
	return rel
}

// upload is the offline key holder's signature over the pending payload.
func (cr *crashRepo) upload(t *testing.T, cs *crashServer, name, version, role string) SignatureUpload {
	t.Helper()
	p, err := cs.rels.ReleasePayload(context.Background(), name, version)
	if err != nil {
		t.Fatalf("ReleasePayload(%s@%s): %v", name, version, err)
	}
	k := cr.targets.sv
	if role != RoleTargets {
		k = cr.line.sv
	}
	return signUpload(t, k, p)
}

// setup builds the repository in st as it was before the crash and
// returns what the child does: a published monitor@0.9.0, the pump
// delegation if any, and pump@1.0.0 about to be pushed (online top-level)
// or pending with the signature that publishes it in hand.
func (cr *crashRepo) setup(t *testing.T, st crashStores) crashSpec {
	t.Helper()
	ctx := context.Background()
	cs := openCrashServer(t, st, cr.serverKeys.signers(t))
	defer cs.close()
	var err error
	keys := RoleKeys{Root: []signature.SignerVerifier{cr.root.sv}, Targets: []signature.SignerVerifier{cr.targets.sv}, Snapshot: cr.snap.sv, Timestamp: cr.ts.sv}
	if cr.rootJSON, err = cs.repo.Init(ctx, keys, WithHashedBins(cr.sc.bins)); err != nil {
		t.Fatalf("Init: %v", err)
	}
	cr.release(t, cs, "monitor", "0.9.0", cr.prior, nil)
	if cr.sc.delegated {
		if _, err := cs.rels.AddDelegation(ctx, DelegationRequest{Name: "pump", Paths: []string{"pump/*/*"}, Keys: []*metadata.Key{tufKeyOf(t, cr.line.sv)}, Threshold: 1}, "admin"); err != nil {
			t.Fatalf("AddDelegation: %v", err)
		}
	}
	spec := crashSpec{Stores: st, Keys: cr.serverKeys, Name: "pump", Version: "1.0.0", SBOM: cr.crashedSBOM()}
	if cr.sc.online && !cr.sc.delegated {
		spec.Op, spec.Image = "push", cr.image
		return spec
	}
	var opts []PushOption
	if spec.SBOM != nil {
		opts = append(opts, WithSBOM(spec.SBOM))
	}
	rel, err := cs.rels.Push(ctx, PushRequest{Name: "pump", Version: "1.0.0", Hardware: []string{"hw-a"}, File: "fw.bin"}, bytes.NewReader(cr.image), 0, "alice", opts...)
	if err != nil || rel.State != StatePending {
		t.Fatalf("Push(pump@1.0.0) = %+v, %v; want pending", rel, err)
	}
	spec.Op, spec.Upload = "sign", cr.upload(t, cs, "pump", "1.0.0", rel.Role)
	return spec
}

// crashedSBOM is the SBOM of the crashed release, or nil.
func (cr *crashRepo) crashedSBOM() []byte {
	if cr.sc.sbom {
		return cr.sbom
	}
	return nil
}

// runCrashChild runs spec in a child process and returns its output.
func runCrashChild(t *testing.T, spec crashSpec) (string, error) {
	t.Helper()
	b, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestPublishCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), envCrashChild+"="+string(b))
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// versionedMetadata returns every metadata file but timestamp.json: the
// files served as immutable, which must never change once written.
func versionedMetadata(t *testing.T, b storage.Blobs) map[string][]byte {
	t.Helper()
	infos, err := b.List(context.Background(), MetadataPrefix)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	out := map[string][]byte{}
	for _, in := range infos {
		if in.Key != MetadataPrefix+"timestamp.json" {
			out[in.Key] = readBlob(t, b, in.Key)
		}
	}
	return out
}

// TestCrashAtEveryPublishStep kills a server process (the re-executed
// test binary, SIGKILL) before each durable step of a publish in turn: a
// push with online targets keys, a threshold-meeting signature of an
// offline top-level targets key, and of a delegated role's key. After a
// restart (new Repository and Releases on the same stores, start-up
// Reconcile, itself killed before each of its own steps until it
// completes, then found to have nothing left to do) the stock go-tuf
// updater verifies the repository, the release
// is either published in signed metadata or pending and cancellable (the
// cancel removes its blobs), a metadata file the crash left is never
// re-written with other bytes by the next publishes, and the same
// name@version can be pushed and published again.
func TestCrashAtEveryPublishStep(t *testing.T) {
	if testing.Short() {
		t.Skip("SKIPPING publish crash test: -short (it runs a subprocess per step)")
	}
	t.Parallel()
	fileStores := func(t *testing.T) crashStores {
		dir := t.TempDir()
		return crashStores{BlobsURL: "file:" + filepath.Join(dir, "blobs"), DBURL: "sqlite:" + filepath.Join(dir, "state.db")}
	}
	runCrashScenarios(t, fileStores)
}

// TestCrashAtEveryPublishStepMinIOPostgres is TestCrashAtEveryPublishStep
// with the blobs in MinIO (a move is a server-side copy, then a delete)
// and the state in PostgreSQL (writers serialised by an advisory lock,
// which the killed process's connection releases).
func TestCrashAtEveryPublishStepMinIOPostgres(t *testing.T) {
	endpoint, access, secret := testenv.MinIO(t)
	testenv.Postgres(t) // skips or fails early when PostgreSQL is missing
	t.Parallel()
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	bucket := "tufota-crash-" + hex.EncodeToString(b)
	ctx := context.Background()
	s3, err := storage.NewS3(ctx, storage.S3Config{Endpoint: endpoint, Bucket: bucket, AccessKey: access, SecretKey: secret, CreateBucket: true})
	if err != nil {
		t.Fatalf("NewS3: %v", err)
	}
	t.Cleanup(func() {
		c := s3.Client()
		for oi := range c.ListObjects(ctx, bucket, minio.ListObjectsOptions{Recursive: true}) {
			if oi.Err == nil {
				_ = c.RemoveObject(ctx, bucket, oi.Key, minio.RemoveObjectOptions{})
			}
		}
		if err := c.RemoveBucket(ctx, bucket); err != nil {
			t.Errorf("remove bucket %s: %v", bucket, err)
		}
	})
	runCrashScenarios(t, func(t *testing.T) crashStores {
		p := make([]byte, 6)
		_, _ = rand.Read(p)
		return crashStores{
			BlobsURL:    "s3://" + bucket + "/crash-" + hex.EncodeToString(p) + "?endpoint=" + endpoint + "&secure=false",
			DBURL:       testenv.Postgres(t),
			S3AccessKey: access, S3SecretKey: secret,
		}
	})
}

// runCrashScenarios runs every crash scenario over stores made by fresh.
func runCrashScenarios(t *testing.T, fresh func(t *testing.T) crashStores) {
	for _, sc := range []crashScenario{
		{name: "top-level-online-push", online: true},
		{name: "top-level-online-push-with-sbom", online: true, sbom: true},
		{name: "top-level-offline-sign"},
		{name: "top-level-offline-sign-with-sbom", sbom: true},
		{name: "delegated-role-sign", online: true, delegated: true},
		// pump/1.0.0/fw.bin and its SBOM hash into different bins of 4.
		{name: "hashed-bins-online-push-with-sbom", online: true, sbom: true, bins: 2},
	} {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			cr := newCrashRepo(t, sc)
			// A run without a crash counts and names the steps.
			spec := cr.setup(t, fresh(t))
			out, err := runCrashChild(t, spec)
			if err != nil {
				t.Fatalf("child without a crash: %v\n%s", err, out)
			}
			i := strings.LastIndex(out, "steps=")
			if i < 0 {
				t.Fatalf("child printed no step count\n%s", out)
			}
			total, err := strconv.Atoi(strings.Fields(out[i+len("steps="):])[0])
			if err != nil || total < 4 {
				t.Fatalf("child made %d steps (%v), want at least blob, metadata and row steps\n%s", total, err, out)
			}
			var names []string
			for _, line := range strings.Split(out, "\n") {
				if _, name, ok := strings.Cut(line, ": "); ok && strings.HasPrefix(line, "step ") {
					names = append(names, name)
				}
			}
			if len(names) != total {
				t.Fatalf("child named %d steps, counted %d\n%s", len(names), total, out)
			}
			t.Logf("%d steps: %s", total, strings.Join(names, "; "))
			for n := 1; n <= total; n++ {
				crashAndRestart(t, cr, fresh(t), n, names[n-1])
			}
		})
	}
}

// crashAndRestart kills the child before step n (called name), restarts and checks.
func crashAndRestart(t *testing.T, cr *crashRepo, stores crashStores, n int, name string) {
	t.Helper()
	ctx := context.Background()
	where := fmt.Sprintf("crash before step %d (%s)", n, name)
	spec := cr.setup(t, stores)
	spec.CrashAt = n
	out, err := runCrashChild(t, spec)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("%s: child ended with %v, want SIGKILL\n%s", where, err, out)
	}

	// Restart: what the server does at start (Reconcile, itself killed
	// before its first, second, ... step until it completes), then what
	// users do.
	orphans := func() map[string][]byte {
		cs := openCrashServer(t, stores, cr.serverKeys.signers(t))
		defer cs.close()
		return versionedMetadata(t, cs.blobs)
	}()
	reconciled := false
	for k := 1; k <= 10 && !reconciled; k++ {
		out, err := runCrashChild(t, crashSpec{Stores: stores, Keys: cr.serverKeys, Op: "reconcile", CrashAt: k})
		switch {
		case err == nil:
			reconciled = true
		case !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL:
			t.Fatalf("%s: reconcile child (killed before its step %d): %v\n%s", where, k, err, out)
		}
	}
	if !reconciled {
		t.Fatalf("%s: Reconcile never completed", where)
	}
	cs := openCrashServer(t, stores, cr.serverKeys.signers(t))
	defer cs.close()
	if n, err := cs.rels.Reconcile(ctx); err != nil || n != 0 {
		t.Fatalf("%s: Reconcile after Reconcile = %d, %v; want nothing left to do", where, n, err)
	}
	srv := serveBlobs(t, cs.blobs)
	if got, err := fetchTarget(t, srv, cr.rootJSON, testEpoch, "monitor/0.9.0/fw.bin"); err != nil || !bytes.Equal(got, cr.prior) {
		t.Fatalf("%s: stock updater after restart: %q, %v", where, got, err)
	}
	const path, sbomPath = "pump/1.0.0/fw.bin", "pump/1.0.0/sbom.cdx.json"
	_, liveErr := fetchTarget(t, srv, cr.rootJSON, testEpoch, path)
	rel, err := cs.rels.Get(ctx, "pump", "1.0.0")
	switch {
	case errors.Is(err, tufota.ErrNotFound):
		// The crash came before the push recorded anything.
		if liveErr == nil {
			t.Fatalf("%s: %s is in signed metadata without a release row", where, path)
		}
	case err != nil:
		t.Fatalf("%s: Get: %v", where, err)
	case rel.State == StatePublished:
		if liveErr != nil {
			t.Fatalf("%s: release recorded published (targets v%d) but the stock updater cannot fetch it: %v", where, rel.TargetsVersion, liveErr)
		}
	case rel.State == StatePending:
		if liveErr == nil {
			t.Fatalf("%s: release is pending but already in signed metadata", where)
		}
		// Not stuck: a release that waits for offline signatures needs
		// one again (the signature that started the publish went with it).
		if spec.Op == "sign" && (rel.Signing == nil || rel.Signing.Needed != 1) {
			t.Fatalf("%s: pending release after restart has signing status %+v, want one signature needed", where, rel.Signing)
		}
		if _, err := cs.rels.CancelRelease(ctx, "pump", "1.0.0"); err != nil {
			t.Fatalf("%s: a pending release after restart must be cancellable: %v", where, err)
		}
		if _, err := cs.rels.Get(ctx, "pump", "1.0.0"); !errors.Is(err, tufota.ErrNotFound) {
			t.Fatalf("%s: Get after cancel: %v, want not found", where, err)
		}
		infos, err := cs.blobs.List(ctx, StagingPrefix)
		if err != nil {
			t.Fatal(err)
		}
		if len(infos) != 0 {
			t.Fatalf("%s: staged blobs after cancel: %v", where, infos)
		}
		for p, data := range map[string][]byte{path: cr.image, sbomPath: cr.crashedSBOM()} {
			if data == nil {
				continue
			}
			if _, err := cs.blobs.Stat(ctx, TargetBlobKey(p, sha256Hex(data))); !errors.Is(err, tufota.ErrNotFound) {
				t.Fatalf("%s: the cancelled release's blob for %s remains (%v)", where, p, err)
			}
		}
	default:
		t.Fatalf("%s: release state %q", where, rel.State)
	}

	// The next publishes: another release, then the same name@version
	// again if it is not published.
	cr.release(t, cs, "monitor", "2.0.0", cr.other, nil)
	if rel.State != StatePublished {
		cr.release(t, cs, "pump", "1.0.0", cr.image, cr.crashedSBOM())
	}
	for key, want := range orphans {
		got, err := cs.blobs.Stat(ctx, key)
		if err != nil || !bytes.Equal(readBlob(t, cs.blobs, key), want) {
			t.Fatalf("%s: %s, present after the crash, was re-written with other bytes (or removed: %+v, %v)", where, key, got, err)
		}
	}
	want := map[string][]byte{path: cr.image, "monitor/2.0.0/fw.bin": cr.other, "monitor/0.9.0/fw.bin": cr.prior}
	if cr.sc.sbom {
		want[sbomPath] = cr.sbom
	}
	for p, want := range want {
		if got, err := fetchTarget(t, srv, cr.rootJSON, testEpoch, p); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s: stock updater at the end: %s: %q, %v", where, p, got, err)
		}
	}
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// TestPublishSkipsOrphanedVersions leaves versioned metadata files outside
// the signed chain, as an interrupted publish does, and publishes: the new
// versions skip them, the orphans keep their bytes, and go-tuf's stock
// updater verifies the result.
func TestPublishSkipsOrphanedVersions(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name                      string
		orphans                   []string // metadata files left by a crash (Init wrote v1 of each)
		wantTargets, wantSnapshot int64
	}{
		{name: "none", wantTargets: 2, wantSnapshot: 2},
		{name: "targets", orphans: []string{"2.targets.json"}, wantTargets: 3, wantSnapshot: 2},
		{name: "targets and snapshot", orphans: []string{"2.targets.json", "2.snapshot.json"}, wantTargets: 3, wantSnapshot: 3},
		{name: "gap", orphans: []string{"5.targets.json", "3.snapshot.json"}, wantTargets: 6, wantSnapshot: 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			repo, blobs, keys, root := newRepo(t)
			for _, name := range tc.orphans {
				if _, err := blobs.Put(ctx, MetadataPrefix+name, strings.NewReader(`{"orphan":"`+name+`"}`)); err != nil {
					t.Fatal(err)
				}
			}
			img := []byte("firmware")
			v, err := repo.Publish(ctx, keys.signers(), Target{Path: "pump/1.0.0/fw.bin", Staged: stage(t, repo, img)})
			if err != nil || v != tc.wantTargets {
				t.Fatalf("Publish = v%d, %v; want targets v%d", v, err, tc.wantTargets)
			}
			st, err := repo.load(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if got := st.snapshot.Signed.Version; got != tc.wantSnapshot {
				t.Fatalf("snapshot v%d, want v%d", got, tc.wantSnapshot)
			}
			for _, name := range tc.orphans {
				if got := readBlob(t, blobs, MetadataPrefix+name); string(got) != `{"orphan":"`+name+`"}` {
					t.Fatalf("orphan %s was re-written: %.80s", name, got)
				}
			}
			if got, err := fetchTarget(t, serveBlobs(t, blobs), root, testEpoch, "pump/1.0.0/fw.bin"); err != nil || !bytes.Equal(got, img) {
				t.Fatalf("stock updater: %q, %v", got, err)
			}
		})
	}
}

// TestWriteChainNeverRewritesVersionedMetadata: a versioned file that
// exists with other bytes stops the write before anything is written; one
// with the same bytes is kept.
func TestWriteChainNeverRewritesVersionedMetadata(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, tc := range []struct {
		name     string
		existing string // bytes of 7.targets.json already in the store
		wantCode tufota.Code
	}{
		{name: "same bytes", existing: "new targets"},
		{name: "other bytes", existing: "orphan targets", wantCode: tufota.EInternal},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			repo, blobs, _, _ := newRepo(t)
			if _, err := blobs.Put(ctx, MetadataPrefix+"7.targets.json", strings.NewReader(tc.existing)); err != nil {
				t.Fatal(err)
			}
			before := readBlob(t, blobs, MetadataPrefix+"timestamp.json")
			err := repo.writeChain(ctx, []metaFile{
				{name: "7.targets.json", data: []byte("new targets")},
				{name: "7.snapshot.json", data: []byte("new snapshot")},
				{name: "timestamp.json", data: []byte("new timestamp")},
			})
			if tc.wantCode != "" {
				wantCode(t, err, tc.wantCode)
				if got := readBlob(t, blobs, MetadataPrefix+"timestamp.json"); !bytes.Equal(got, before) {
					t.Fatal("timestamp.json written although the chain was refused")
				}
				if _, err := blobs.Stat(ctx, MetadataPrefix+"7.snapshot.json"); !errors.Is(err, tufota.ErrNotFound) {
					t.Fatalf("7.snapshot.json written although the chain was refused (%v)", err)
				}
			} else if err != nil {
				t.Fatalf("writeChain: %v", err)
			}
			if got := readBlob(t, blobs, MetadataPrefix+"7.targets.json"); string(got) != tc.existing {
				t.Fatalf("7.targets.json = %q, want %q kept", got, tc.existing)
			}
		})
	}
}

// TestPushStorageFailureLeavesNothingOrPublished fails every write of an
// online push in turn, before or after it takes effect, on a store with
// Move (file) and without (memory), the process staying up: the push
// either succeeds with the release published in signed metadata (also when
// the failure hit after the final timestamp write), or fails and leaves
// nothing of the release (row, payload, staged or target blob), so that it
// can be pushed again at once.
func TestPushStorageFailureLeavesNothingOrPublished(t *testing.T) {
	t.Parallel()
	stores := map[string]func(t *testing.T) (storage.Blobs, *failingBlobs){
		"file-move": func(t *testing.T) (storage.Blobs, *failingBlobs) {
			fb := &failingBlobs{Blobs: newFileBlobs(t)}
			return failingMover{fb}, fb
		},
		"memory-copy": func(t *testing.T) (storage.Blobs, *failingBlobs) {
			fb := &failingBlobs{Blobs: newMemBlobs()}
			return fb, fb
		},
	}
	for storeName, newStore := range stores {
		for _, after := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/after=%v", storeName, after), func(t *testing.T) {
				t.Parallel()
				for n := 1; n < 20; n++ {
					if done := pushFailingAt(t, newStore, n, after); done {
						if n < 5 {
							t.Fatalf("push finished after %d writes; expected staging, a move and three metadata files", n-1)
						}
						return
					}
				}
				t.Fatal("push never finished")
			})
		}
	}
}

// pushFailingAt pushes with the nth write failing and checks the outcome;
// done reports that the push made fewer than n writes.
func pushFailingAt(t *testing.T, newStore func(t *testing.T) (storage.Blobs, *failingBlobs), n int, after bool) (done bool) {
	t.Helper()
	ctx := context.Background()
	blobs, fb := newStore(t)
	keys := newTestKeys(t, 1, 1)
	repo := NewRepository(blobs, WithNow(func() time.Time { return testEpoch }))
	root, err := repo.Init(ctx, keys.roleKeys(1, 1))
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
	for _, prefix := range []string{StagingPrefix, TargetsPrefix} {
		infos, err := blobs.List(ctx, prefix)
		if err != nil {
			t.Fatal(err)
		}
		if len(infos) != 0 {
			t.Fatalf("%s: blobs left after a failed push: %v", where, infos)
		}
	}
	if rel, err := push(); err != nil || rel.State != StatePublished {
		t.Fatalf("%s: push again = %+v, %v", where, rel, err)
	}
	if got, err := fetchTarget(t, srv, root, testEpoch, path); err != nil || !bytes.Equal(got, img) {
		t.Fatalf("%s: after pushing again: %q, %v", where, got, err)
	}
	return false
}

// TestSignPublishFailureRollsBackOrPublishes fails every write of the
// publish that a threshold-meeting signature starts (an offline top-level
// targets key, a delegated role's key), before or after it takes effect,
// the process staying up: the release is then published in signed
// metadata, or pending again asking for the signature (its blobs staged,
// none at a target key), and signing again publishes it.
func TestSignPublishFailureRollsBackOrPublishes(t *testing.T) {
	t.Parallel()
	for _, delegated := range []bool{false, true} {
		for _, after := range []bool{false, true} {
			t.Run(fmt.Sprintf("delegated=%v/after=%v", delegated, after), func(t *testing.T) {
				t.Parallel()
				for n := 1; n < 20; n++ {
					if done := signFailingAt(t, delegated, n, after); done {
						if n < 5 {
							t.Fatalf("publish finished after %d writes; expected a move and three metadata files", n-1)
						}
						return
					}
				}
				t.Fatal("publish never finished")
			})
		}
	}
}

func signFailingAt(t *testing.T, delegated bool, n int, after bool) (done bool) {
	t.Helper()
	ctx := context.Background()
	fb := &failingBlobs{Blobs: newMemBlobs()}
	keys := newTestKeys(t, 1, 1)
	line := newKey(t, true)
	repo := NewRepository(fb, WithNow(func() time.Time { return testEpoch }))
	root, err := repo.Init(ctx, keys.roleKeys(1, 1))
	if err != nil {
		t.Fatalf("Init: %v", err)
	}
	db, err := storage.OpenDB(ctx, "sqlite:"+filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	s, signer := keys.signers(), keys.targets[0]
	if delegated {
		signer = line
	} else {
		s.Targets = nil // the targets key is offline
	}
	rels := NewReleases(db, repo, s, WithClock(func() time.Time { return testEpoch }))
	if delegated {
		if _, err := rels.AddDelegation(ctx, DelegationRequest{Name: "pump", Paths: []string{"pump/*/*"}, Keys: []*metadata.Key{tufKeyOf(t, line)}, Threshold: 1}, "admin"); err != nil {
			t.Fatalf("AddDelegation: %v", err)
		}
	}
	img := []byte("pump firmware")
	const path = "pump/1.0.0/fw.bin"
	rel, err := rels.Push(ctx, PushRequest{Name: "pump", Version: "1.0.0", Hardware: []string{"hw-a"}, File: "fw.bin"}, bytes.NewReader(img), 0, "alice")
	if err != nil || rel.State != StatePending {
		t.Fatalf("Push = %+v, %v; want pending", rel, err)
	}
	sign := func() (SigningStatus, error) {
		p, err := rels.ReleasePayload(ctx, "pump", "1.0.0")
		if err != nil {
			t.Fatalf("ReleasePayload: %v", err)
		}
		return rels.SignRelease(ctx, "pump", "1.0.0", signUpload(t, signer, p), "bob")
	}

	fb.arm(n, after)
	st, serr := sign()
	fired, log := fb.disarm()
	if !fired {
		if serr != nil || !st.Published {
			t.Fatalf("write %d: signing without a failure = %+v, %v", n, st, serr)
		}
		return true
	}
	where := fmt.Sprintf("failure %s write %d of %v", map[bool]string{false: "before", true: "after"}[after], n, log)
	srv := serveBlobs(t, fb)
	_, liveErr := fetchTarget(t, srv, root, testEpoch, path)
	if serr == nil {
		if !st.Published || liveErr != nil {
			t.Fatalf("%s: signing succeeded with %+v, but the stock updater: %v", where, st, liveErr)
		}
		return false
	}
	if liveErr == nil {
		t.Fatalf("%s: signing failed (%v) but the release is in signed metadata", where, serr)
	}
	got, err := rels.Get(ctx, "pump", "1.0.0")
	if err != nil || got.State != StatePending || got.Signing == nil || got.Signing.Needed != 1 {
		t.Fatalf("%s: release after a failed publish = %+v (signing %+v), %v; want pending, one signature needed", where, got, got.Signing, err)
	}
	if _, err := fb.Stat(ctx, TargetBlobKey(path, got.SHA256)); !errors.Is(err, tufota.ErrNotFound) {
		t.Fatalf("%s: target blob of the rolled-back release: %v, want not found", where, err)
	}
	if st, err := sign(); err != nil || !st.Published {
		t.Fatalf("%s: signing again = %+v, %v", where, st, err)
	}
	if got, err := fetchTarget(t, srv, root, testEpoch, path); err != nil || !bytes.Equal(got, img) {
		t.Fatalf("%s: after signing again: %q, %v", where, got, err)
	}
	return false
}
