package client_test

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"path"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// tufRepo is a generic TUF repository built with go-tuf's metadata
// package, laid out as the specification describes rather than as tufota's
// server does: with or without consistent snapshots, targets hashed with
// the algorithms the test chooses, top-level paths without a directory,
// delegated roles. It serves metadata under /metadata/ and targets under
// /targets/ from an httptest server on loopback, and counts requests.
type tufRepo struct {
	t          testing.TB
	consistent bool
	algs       []string // hash algorithms of new targets

	Root      *metadata.Metadata[metadata.RootType]
	Targets   *metadata.Metadata[metadata.TargetsType]
	Snapshot  *metadata.Metadata[metadata.SnapshotType]
	Timestamp *metadata.Metadata[metadata.TimestampType]
	Delegated map[string]*metadata.Metadata[metadata.TargetsType]
	keys      map[string][]signature.Signer // signing keys per role

	srv       *httptest.Server
	mu        sync.Mutex
	files     map[string][]byte // served path (below /) to bytes
	disk      map[string]string // served path to a file on disk
	requests  map[string]int
	published bool
}

// repoEpoch is the tests' "now": every metadata file expires a day after
// it, so a test that used the wall clock instead would see the same
// result (and one that injects a later clock sees expiry).
var repoEpoch = time.Date(2031, 3, 1, 12, 0, 0, 0, time.UTC)

func clockAt(t time.Time) func() time.Time { return func() time.Time { return t } }

// newTUFRepo makes root v1 (one key per top-level role, threshold 1) and
// serves it.
func newTUFRepo(t testing.TB, consistent bool, algs ...string) *tufRepo {
	t.Helper()
	if len(algs) == 0 {
		algs = []string{"sha256"}
	}
	exp := repoEpoch.Add(24 * time.Hour)
	r := &tufRepo{
		t: t, consistent: consistent, algs: algs,
		Root: metadata.Root(exp), Targets: metadata.Targets(exp),
		Snapshot: metadata.Snapshot(exp), Timestamp: metadata.Timestamp(exp),
		Delegated: map[string]*metadata.Metadata[metadata.TargetsType]{},
		keys:      map[string][]signature.Signer{},
		files:     map[string][]byte{}, requests: map[string]int{}, disk: map[string]string{},
	}
	r.Root.Signed.ConsistentSnapshot = consistent
	for _, role := range []string{metadata.ROOT, metadata.TARGETS, metadata.SNAPSHOT, metadata.TIMESTAMP} {
		pub, s := newKey(t)
		if err := r.Root.Signed.AddKey(pub, role); err != nil {
			t.Fatal(err)
		}
		r.keys[role] = []signature.Signer{s}
	}
	r.publishRoot()
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func newKey(t testing.TB) (*metadata.Key, signature.Signer) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := metadata.KeyFromPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	s, err := signature.LoadSigner(priv, crypto.Hash(0))
	if err != nil {
		t.Fatal(err)
	}
	return k, s
}

func (r *tufRepo) serve(w http.ResponseWriter, req *http.Request) {
	name := strings.TrimPrefix(req.URL.Path, "/")
	r.mu.Lock()
	r.requests[name]++
	b, ok := r.files[name]
	onDisk, ok2 := r.disk[name]
	r.mu.Unlock()
	if ok2 {
		http.ServeFile(w, req, onDisk)
		return
	}
	if !ok {
		http.NotFound(w, req)
		return
	}
	http.ServeContent(w, req, path.Base(name), time.Time{}, strings.NewReader(string(b)))
}

func (r *tufRepo) metadataURL() string { return r.srv.URL + "/metadata" }
func (r *tufRepo) targetsURL() string  { return r.srv.URL + "/targets" }

// trustedRoot returns 1.root.json.
func (r *tufRepo) trustedRoot() []byte { return r.file("metadata/1.root.json") }

func (r *tufRepo) file(name string) []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.files[name]
}

func (r *tufRepo) setFile(name string, b []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if b == nil {
		delete(r.files, name)
		return
	}
	r.files[name] = b
}

// requestsFor returns how many requests asked for name, and how many for
// files under metadata/ in all.
func (r *tufRepo) requestsFor(name string) (n, metadataRequests int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, v := range r.requests {
		if strings.HasPrefix(k, "metadata/") {
			metadataRequests += v
		}
	}
	return r.requests[name], metadataRequests
}

// addTarget lists data as targetPath in role (top-level or delegated),
// hashed with the repository's algorithms, and serves it where a client
// must fetch it: at targets/PATH, or with consistent snapshots at
// targets/DIR/HASH.NAME for every hash. It returns the served names.
func (r *tufRepo) addTarget(role, targetPath string, data []byte) []string {
	r.t.Helper()
	tf, err := metadata.TargetFile().FromBytes(targetPath, data, r.algs...)
	if err != nil {
		r.t.Fatal(err)
	}
	r.role(role).Signed.Targets[targetPath] = tf
	var names []string
	if !r.consistent {
		names = append(names, "targets/"+targetPath)
	} else {
		dir, base := path.Split(targetPath)
		for _, h := range tf.Hashes {
			names = append(names, "targets/"+dir+hex.EncodeToString(h)+"."+base)
		}
	}
	for _, n := range names {
		r.setFile(n, data)
	}
	return names
}

func (r *tufRepo) role(name string) *metadata.Metadata[metadata.TargetsType] {
	r.t.Helper()
	if name == metadata.TARGETS {
		return r.Targets
	}
	d, ok := r.Delegated[name]
	if !ok {
		r.t.Fatalf("no delegated role %q", name)
	}
	return d
}

// delegate appends a delegation from parent to a new role with its own
// key, for paths.
func (r *tufRepo) delegate(parent, name string, paths []string, terminating bool) {
	r.t.Helper()
	p := r.role(parent)
	if p.Signed.Delegations == nil {
		p.Signed.Delegations = &metadata.Delegations{Keys: map[string]*metadata.Key{}}
	}
	p.Signed.Delegations.Roles = append(p.Signed.Delegations.Roles, metadata.DelegatedRole{
		Name: name, Threshold: 1, Paths: paths, Terminating: terminating, KeyIDs: []string{},
	})
	pub, s := newKey(r.t)
	if err := p.Signed.AddKey(pub, name); err != nil {
		r.t.Fatal(err)
	}
	r.keys[name] = []signature.Signer{s}
	r.Delegated[name] = metadata.Targets(repoEpoch.Add(24 * time.Hour))
}

// metaName is where a role's metadata of version v is served.
func (r *tufRepo) metaName(role string, v int64) string {
	if r.consistent {
		return fmt.Sprintf("metadata/%d.%s.json", v, role)
	}
	return "metadata/" + role + ".json"
}

// publish signs and serves a new state: delegated roles, targets,
// snapshot, timestamp; after the first call it bumps targets, snapshot and
// timestamp versions (delegated roles: the caller bumps them).
func (r *tufRepo) publish() {
	r.t.Helper()
	if r.published {
		r.Targets.Signed.Version++
		r.Snapshot.Signed.Version++
		r.Timestamp.Signed.Version++
	}
	r.published = true
	for _, name := range slices.Sorted(maps.Keys(r.Delegated)) {
		d := r.Delegated[name]
		r.setFile(r.metaName(name, d.Signed.Version), r.sign(name, d))
		r.Snapshot.Signed.Meta[name+".json"] = metadata.MetaFile(d.Signed.Version)
	}
	r.setFile(r.metaName(metadata.TARGETS, r.Targets.Signed.Version), r.sign(metadata.TARGETS, r.Targets))
	r.Snapshot.Signed.Meta["targets.json"] = metadata.MetaFile(r.Targets.Signed.Version)
	r.publishTimestamp(true)
}

// publishTimestamp signs the snapshot (when withSnapshot) and a timestamp
// naming its version, and serves them.
func (r *tufRepo) publishTimestamp(withSnapshot bool) {
	r.t.Helper()
	if withSnapshot {
		r.setFile(r.metaName(metadata.SNAPSHOT, r.Snapshot.Signed.Version), r.sign(metadata.SNAPSHOT, r.Snapshot))
	}
	r.Timestamp.Signed.Meta["snapshot.json"] = metadata.MetaFile(r.Snapshot.Signed.Version)
	r.setFile("metadata/timestamp.json", r.sign(metadata.TIMESTAMP, r.Timestamp))
}

// publishRoot signs the root with the root keys plus extra and serves it
// as N.root.json (always versioned, as the specification wants).
func (r *tufRepo) publishRoot(extra ...signature.Signer) {
	r.t.Helper()
	signers := append(slices.Clone(r.keys[metadata.ROOT]), extra...)
	r.setFile(fmt.Sprintf("metadata/%d.root.json", r.Root.Signed.Version), signWith(r.t, r.Root, signers))
}

type signable interface {
	ClearSignatures()
	Sign(signature.Signer) (*metadata.Signature, error)
	ToBytes(pretty bool) ([]byte, error)
}

func (r *tufRepo) sign(role string, m signable) []byte {
	r.t.Helper()
	return signWith(r.t, m, r.keys[role])
}

func signWith(t testing.TB, m signable, signers []signature.Signer) []byte {
	t.Helper()
	m.ClearSignatures()
	for _, s := range signers {
		if _, err := m.Sign(s); err != nil {
			t.Fatal(err)
		}
	}
	b, err := m.ToBytes(true)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// rotateKey replaces role's key in a new root version, signed by the old
// and (for the root role) the new root keys, and serves it.
func (r *tufRepo) rotateKey(role string) {
	r.t.Helper()
	old := r.Root.Signed.Roles[role].KeyIDs[0]
	if err := r.Root.Signed.RevokeKey(old, role); err != nil {
		r.t.Fatal(err)
	}
	pub, s := newKey(r.t)
	if err := r.Root.Signed.AddKey(pub, role); err != nil {
		r.t.Fatal(err)
	}
	r.Root.Signed.Version++
	oldSigners := r.keys[role]
	r.keys[role] = []signature.Signer{s}
	if role == metadata.ROOT {
		r.publishRoot(oldSigners...)
		return
	}
	r.publishRoot()
}
