// Package repofixtures builds TUF repositories for tests: a small in-memory
// repository writer with deterministic keys that lays files out exactly as
// tufota's server serves them (consistent snapshots, targets stored as
// "<dir>/<sha256>.<base>"), and the checked-in fixture repositories, good and
// malicious, that the device client is tested against.
//
// It is test support, not production signing code: keys are derived from a
// seed string so fixtures are reproducible, and nothing here protects them.
// The production repository writer lives in package signer.
package repofixtures

import (
	"crypto"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/tufota/tufota"
)

// Top-level role names.
var topRoles = []string{metadata.ROOT, metadata.TARGETS, metadata.SNAPSHOT, metadata.TIMESTAMP}

// Key is a deterministic Ed25519 key of a repository.
type Key struct {
	Private ed25519.PrivateKey
	Public  *metadata.Key
	ID      string
}

// NewKey derives an Ed25519 key from seed. The same seed always gives the
// same key.
func NewKey(seed string) (*Key, error) {
	s := sha256.Sum256([]byte("tufota-fixture-key:" + seed))
	priv := ed25519.NewKeyFromSeed(s[:])
	pub, err := metadata.KeyFromPublicKey(priv.Public())
	if err != nil {
		return nil, fmt.Errorf("fixture key %q: %w", seed, err)
	}
	id, err := pub.ID()
	if err != nil {
		return nil, fmt.Errorf("fixture key %q id: %w", seed, err)
	}
	return &Key{Private: priv, Public: pub, ID: id}, nil
}

// Signer returns the key as a sigstore signer, as Metadata.Sign wants it.
func (k *Key) Signer() (signature.Signer, error) {
	s, err := signature.LoadSigner(k.Private, crypto.Hash(0))
	if err != nil {
		return nil, fmt.Errorf("load fixture signer: %w", err)
	}
	return s, nil
}

// Repo is an in-memory TUF repository with consistent snapshots. Its
// exported fields may be changed freely between calls (that is how the
// malicious fixtures are made); Publish and the Sign methods write the
// served files into Files.
//
// A Repo is not safe for concurrent mutation, but Handler may serve it while
// another goroutine calls its methods: Files is guarded by a mutex.
type Repo struct {
	Root      *metadata.Metadata[metadata.RootType]
	Targets   *metadata.Metadata[metadata.TargetsType]
	Snapshot  *metadata.Metadata[metadata.SnapshotType]
	Timestamp *metadata.Metadata[metadata.TimestampType]
	// Delegated holds delegated targets roles by name.
	Delegated map[string]*metadata.Metadata[metadata.TargetsType]

	// Keys are the signing keys per role name (top-level and delegated);
	// Sign uses every key listed here, whether or not root trusts it.
	Keys map[string][]*Key

	seed      string
	mu        sync.Mutex
	files     map[string][]byte
	published bool
}

// New returns a repository whose root (version 1) trusts one fresh key per
// top-level role, threshold 1, every role expiring at expires. The root is
// signed and stored as "1.root.json"; nothing else is published yet.
func New(seed string, expires time.Time) (*Repo, error) {
	r := &Repo{
		Root:      metadata.Root(expires),
		Targets:   metadata.Targets(expires),
		Snapshot:  metadata.Snapshot(expires),
		Timestamp: metadata.Timestamp(expires),
		Delegated: map[string]*metadata.Metadata[metadata.TargetsType]{},
		Keys:      map[string][]*Key{},
		seed:      seed,
		files:     map[string][]byte{},
	}
	r.Root.Signed.ConsistentSnapshot = true
	for _, role := range topRoles {
		k, err := r.NewKey(role + "-1")
		if err != nil {
			return nil, err
		}
		if err := r.Root.Signed.AddKey(k.Public, role); err != nil {
			return nil, fmt.Errorf("add %s key: %w", role, err)
		}
		r.Keys[role] = []*Key{k}
	}
	if err := r.PublishRoot(); err != nil {
		return nil, err
	}
	return r, nil
}

// NewKey derives a key from the repository's seed and name.
func (r *Repo) NewKey(name string) (*Key, error) { return NewKey(r.seed + "/" + name) }

// TrustedRoot returns 1.root.json: the trust anchor a device ships with.
func (r *Repo) TrustedRoot() []byte { return r.File("1.root.json") }

// File returns a served file by its path under /tuf/, or nil.
func (r *Repo) File(name string) []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.files[name]
}

// SetFile replaces (or with nil data, removes) a served file: the tool for
// simulating a malicious mirror.
func (r *Repo) SetFile(name string, data []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if data == nil {
		delete(r.files, name)
		return
	}
	r.files[name] = data
}

// Files returns a copy of every served file by path under /tuf/.
func (r *Repo) Files() map[string][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.files)
}

// FileNames returns the served paths, sorted.
func (r *Repo) FileNames() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Sorted(maps.Keys(r.files))
}

// TargetFilePath returns where a target's bytes are served under /tuf/:
// "targets/<dir>/<sha256>.<base>".
func TargetFilePath(targetPath string, sha256hex string) string {
	dir, base := path.Split(targetPath)
	return "targets/" + dir + sha256hex + "." + base
}

// AddTarget stores data as target targetPath in role (metadata.TARGETS or
// a delegated role) with sha256 and sha512 hashes and the given custom
// metadata, and serves its bytes. It does not publish.
func (r *Repo) AddTarget(role, targetPath string, data []byte, custom json.RawMessage) (*metadata.TargetFiles, error) {
	tf, err := metadata.TargetFile().FromBytes(targetPath, data, "sha256", "sha512")
	if err != nil {
		return nil, fmt.Errorf("target %s: %w", targetPath, err)
	}
	if custom != nil {
		c := custom
		tf.Custom = &c
	}
	t := r.Targets
	if role != metadata.TARGETS {
		var ok bool
		if t, ok = r.Delegated[role]; !ok {
			return nil, fmt.Errorf("target %s: no delegated role %q", targetPath, role)
		}
	}
	t.Signed.Targets[targetPath] = tf
	r.SetFile(TargetFilePath(targetPath, hex.EncodeToString(tf.Hashes["sha256"])), data)
	return tf, nil
}

// AddRelease adds a firmware target NAME/VERSION/FILE to the top-level
// targets role with tufota custom metadata, as the server's release push
// does. It returns the target path. It does not publish.
func (r *Repo) AddRelease(c tufota.TargetCustom, file string, data []byte) (string, error) {
	custom, err := tufota.MarshalCustom(c)
	if err != nil {
		return "", err
	}
	p := tufota.TargetPath(c.Name, c.Version, file)
	if _, err := r.AddTarget(metadata.TARGETS, p, data, custom); err != nil {
		return "", err
	}
	return p, nil
}

// Publish signs and serves a new consistent state: every delegated role and
// targets, then snapshot, then timestamp. After the first Publish each call
// increments the versions of targets, snapshot and timestamp (delegated
// roles are bumped by the caller when changed).
func (r *Repo) Publish() error {
	if r.published {
		r.Targets.Signed.Version++
		r.Snapshot.Signed.Version++
		r.Timestamp.Signed.Version++
	}
	r.published = true
	for _, name := range slices.Sorted(maps.Keys(r.Delegated)) {
		d := r.Delegated[name]
		if err := r.SignTargets(name, d); err != nil {
			return err
		}
		r.Snapshot.Signed.Meta[name+".json"] = metadata.MetaFile(d.Signed.Version)
	}
	if err := r.SignTargets(metadata.TARGETS, r.Targets); err != nil {
		return err
	}
	r.Snapshot.Signed.Meta["targets.json"] = metadata.MetaFile(r.Targets.Signed.Version)
	if err := r.SignSnapshot(); err != nil {
		return err
	}
	return r.SignTimestamp()
}

// SignTargets signs t with role's keys and serves it as N.ROLE.json.
func (r *Repo) SignTargets(role string, t *metadata.Metadata[metadata.TargetsType]) error {
	b, err := signBytes(r.Keys[role], t)
	if err != nil {
		return fmt.Errorf("sign %s: %w", role, err)
	}
	r.SetFile(fmt.Sprintf("%d.%s.json", t.Signed.Version, role), b)
	return nil
}

// SignSnapshot signs the snapshot and serves it as N.snapshot.json.
func (r *Repo) SignSnapshot() error {
	b, err := signBytes(r.Keys[metadata.SNAPSHOT], r.Snapshot)
	if err != nil {
		return fmt.Errorf("sign snapshot: %w", err)
	}
	r.SetFile(fmt.Sprintf("%d.snapshot.json", r.Snapshot.Signed.Version), b)
	return nil
}

// SignTimestamp points the timestamp at the current snapshot version, signs
// it and serves it as timestamp.json.
func (r *Repo) SignTimestamp() error {
	r.Timestamp.Signed.Meta["snapshot.json"] = metadata.MetaFile(r.Snapshot.Signed.Version)
	b, err := signBytes(r.Keys[metadata.TIMESTAMP], r.Timestamp)
	if err != nil {
		return fmt.Errorf("sign timestamp: %w", err)
	}
	r.SetFile("timestamp.json", b)
	return nil
}

// PublishRoot signs the root with the root keys (plus any extra keys, as a
// rotation needs the old and the new threshold) and serves it as
// N.root.json.
func (r *Repo) PublishRoot(extra ...*Key) error {
	b, err := signBytes(append(slices.Clone(r.Keys[metadata.ROOT]), extra...), r.Root)
	if err != nil {
		return fmt.Errorf("sign root: %w", err)
	}
	r.SetFile(fmt.Sprintf("%d.root.json", r.Root.Signed.Version), b)
	return nil
}

type signable interface {
	ClearSignatures()
	Sign(signature.Signer) (*metadata.Signature, error)
	ToBytes(pretty bool) ([]byte, error)
}

func signBytes(keys []*Key, m signable) ([]byte, error) {
	m.ClearSignatures()
	for _, k := range keys {
		s, err := k.Signer()
		if err != nil {
			return nil, err
		}
		if _, err := m.Sign(s); err != nil {
			return nil, err
		}
	}
	return m.ToBytes(true)
}

// Handler serves the repository's files under prefix (for example "/tuf/"):
// GET prefix+name answers the file or 404.
func (r *Repo) Handler(prefix string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		name, ok := strings.CutPrefix(req.URL.Path, prefix)
		if !ok || req.Method != http.MethodGet && req.Method != http.MethodHead {
			http.NotFound(w, req)
			return
		}
		data := r.File(name)
		if data == nil {
			http.NotFound(w, req)
			return
		}
		http.ServeContent(w, req, path.Base(name), time.Time{}, strings.NewReader(string(data)))
	})
}

// Hashes returns the hex sha256 and sha512 of data.
func Hashes(data []byte) (sha256hex, sha512hex string) {
	a := sha256.Sum256(data)
	b := sha512.Sum512(data)
	return hex.EncodeToString(a[:]), hex.EncodeToString(b[:])
}
