package signer

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/storage"
)

// Blob key prefixes of the repository layout.
const (
	MetadataPrefix = "metadata/"
	TargetsPrefix  = "targets/"
	StagingPrefix  = "staging/"
)

// maxMetadataSize bounds how much of one metadata file the repository reads.
const maxMetadataSize = 64 << 20

// TUF role names.
const (
	RoleRoot      = metadata.ROOT
	RoleTargets   = metadata.TARGETS
	RoleSnapshot  = metadata.SNAPSHOT
	RoleTimestamp = metadata.TIMESTAMP
)

// Expiry is how long each role's metadata stays valid after it is signed.
type Expiry struct {
	Root, Targets, Snapshot, Timestamp time.Duration
}

// DefaultExpiry is the expiry policy used unless WithExpiry says otherwise:
// root one year, targets 90 days, snapshot 7 days, timestamp 1 day. It is
// read-only.
var DefaultExpiry = Expiry{
	Root:      365 * 24 * time.Hour,
	Targets:   90 * 24 * time.Hour,
	Snapshot:  7 * 24 * time.Hour,
	Timestamp: 24 * time.Hour,
}

// RoleKeys are the keys of the four top-level roles, given to Init. Root and
// Targets may have several keys and a threshold (0 means 1).
type RoleKeys struct {
	Root             []signature.SignerVerifier
	RootThreshold    int
	Targets          []signature.SignerVerifier
	TargetsThreshold int
	Snapshot         signature.SignerVerifier
	Timestamp        signature.SignerVerifier
}

// Signers are the keys used to sign new metadata after Init. Targets must
// hold at least the targets threshold of the role's keys; Snapshot and
// Timestamp must be the roles' keys.
type Signers struct {
	Targets   []signature.Signer
	Snapshot  signature.Signer
	Timestamp signature.Signer
}

// Locker serialises writers of one repository across processes (a
// PostgreSQL advisory lock when several server replicas share a bucket).
// Lock blocks until the lock is held or ctx ends and returns the function
// that releases it.
type Locker interface {
	Lock(ctx context.Context) (unlock func(), err error)
}

// RepoOption configures NewRepository.
type RepoOption func(*Repository)

// WithStepHook calls hook before each durable step of a write: moving a
// blob ("move KEY", to a target key or, rolling back, to a staging key;
// on a store without storage.Mover also "delete SRC" between the copy and
// the removal of the source), writing a metadata file ("write
// N.targets.json", "write timestamp.json"), and recording a release in the
// state database ("record NAME@VERSION", "mark NAME@VERSION published").
// A non-nil error fails that step, as a storage error would. Crash tests
// use it to kill the process at every step; production code sets none.
func WithStepHook(hook func(step string) error) RepoOption {
	return func(r *Repository) { r.hook = hook }
}

// WithNow sets the clock used for expiry dates (tests inject a fixed time).
func WithNow(now func() time.Time) RepoOption {
	return func(r *Repository) { r.now = now }
}

// WithExpiry sets the expiry policy; zero fields keep DefaultExpiry's value.
func WithExpiry(e Expiry) RepoOption {
	return func(r *Repository) {
		if e.Root > 0 {
			r.expiry.Root = e.Root
		}
		if e.Targets > 0 {
			r.expiry.Targets = e.Targets
		}
		if e.Snapshot > 0 {
			r.expiry.Snapshot = e.Snapshot
		}
		if e.Timestamp > 0 {
			r.expiry.Timestamp = e.Timestamp
		}
	}
}

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) RepoOption {
	return func(r *Repository) { r.log = l }
}

// WithLocker adds a cross-process lock taken around every write, in
// addition to the in-process one.
func WithLocker(l Locker) RepoOption {
	return func(r *Repository) { r.locker = l }
}

// Repository writes and reads a TUF repository kept in a storage.Blobs.
// Writes (Init, Publish, Refresh) are serialised by an in-process lock and,
// if configured, by a Locker; reads take no lock and rely on the layout
// (timestamp.json written last). A Repository is safe for concurrent use.
type Repository struct {
	blobs  storage.Blobs
	now    func() time.Time
	expiry Expiry
	log    *slog.Logger
	locker Locker
	sem    chan struct{} // in-process writer lock, usable with a context
	writes watchers      // told of every metadata file written
	hook   func(step string) error
	// staging holds the staged keys of the uploads in progress in this
	// process, which SweepStaging never removes.
	staging liveKeys
	// binExp caches the expiry of hashed-bin metadata files read.
	binExp binExpiries
}

// step runs the step hook (WithStepHook), if any, before a durable step.
func (r *Repository) step(name string) error {
	if r.hook == nil {
		return nil
	}
	if err := r.hook(name); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// NewRepository returns a repository over blobs. It does no I/O.
func NewRepository(blobs storage.Blobs, opts ...RepoOption) *Repository {
	r := &Repository{
		blobs:  blobs,
		now:    time.Now,
		expiry: DefaultExpiry,
		log:    slog.New(slog.DiscardHandler),
		sem:    make(chan struct{}, 1),
	}
	for _, o := range opts {
		o(r)
	}
	return r
}

// lock takes the writer lock(s).
func (r *Repository) lock(ctx context.Context) (func(), error) {
	select {
	case r.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("wait for repository lock: %w", ctx.Err())
	}
	release := func() { <-r.sem }
	if r.locker != nil {
		unlock, err := r.locker.Lock(ctx)
		if err != nil {
			release()
			return nil, fmt.Errorf("repository lock: %w", err)
		}
		return func() { unlock(); release() }, nil
	}
	return release, nil
}

// expires returns now + d, in UTC, truncated to whole seconds as TUF
// metadata conventionally shows it.
func (r *Repository) expires(d time.Duration) time.Time {
	return r.now().UTC().Add(d).Truncate(time.Second)
}

func metaKey(file string) string { return MetadataPrefix + file }

// Init creates a new repository with consistent snapshots: 1.root.json
// naming the keys and thresholds, an empty 1.targets.json, 1.snapshot.json
// and finally timestamp.json, each signed by its role's keys (root and
// targets by all of the given keys). It returns the root metadata, the
// trust anchor to bake into devices.
//
// With WithHashedBins(k), targets v1 delegates every path to 2^k bin
// roles (TAP 15 succinct delegation, see bins.go), each written as an
// empty 1.bins-XXX.json before the snapshot that names them; the layout
// needs a targets threshold of 1 (tufota.EInvalid otherwise).
//
// A repository whose timestamp.json or any N.root.json other than
// 1.root.json exists is tufota.EConflict; leftovers of an Init that failed
// before timestamp.json are overwritten. Bad keys or thresholds are
// tufota.EInvalid.
func (r *Repository) Init(ctx context.Context, keys RoleKeys, opts ...InitOption) (rootJSON []byte, err error) {
	var o initOptions
	for _, opt := range opts {
		opt(&o)
	}
	if o.binBits < 0 || o.binBits > MaxBinBits {
		return nil, tufota.Errorf(tufota.EInvalid, "init repository: hashed bins: bit length %d must be between 1 and %d (0: no bins)", o.binBits, MaxBinBits)
	}
	if o.binBits > 0 && keys.TargetsThreshold > 1 {
		return nil, tufota.Errorf(tufota.EInvalid, "init repository: hashed bins need a targets threshold of 1, not %d: the server signs the bins with its online targets key (threshold signing with offline targets keys is not supported with hashed bins)", keys.TargetsThreshold)
	}
	unlock, err := r.lock(ctx)
	if err != nil {
		return nil, fmt.Errorf("init repository: %w", err)
	}
	defer unlock()
	r.binExp.reset()

	if err := r.checkEmpty(ctx); err != nil {
		return nil, fmt.Errorf("init repository: %w", err)
	}
	root, err := r.newRoot(keys)
	if err != nil {
		return nil, fmt.Errorf("init repository: %w", err)
	}
	rootSigners := make([]signature.Signer, len(keys.Root))
	for i, k := range keys.Root {
		rootSigners[i] = k
	}
	if err := signRole(root, RoleRoot, root, rootSigners); err != nil {
		return nil, fmt.Errorf("init repository: sign root: %w", err)
	}
	rootJSON, err = root.ToBytes(true)
	if err != nil {
		return nil, fmt.Errorf("init repository: encode root: %w", err)
	}

	targets := metadata.Targets(r.expires(r.expiry.Targets))
	targetSigners := make([]signature.Signer, len(keys.Targets))
	for i, k := range keys.Targets {
		targetSigners[i] = k
	}
	s := Signers{Targets: targetSigners, Snapshot: keys.Snapshot, Timestamp: keys.Timestamp}
	var files []metaFile
	if o.binBits > 0 {
		files, err = r.initBins(root, o.binBits, s)
	} else {
		files, err = r.signChain(root, targets, false, nil, s)
	}
	if err != nil {
		return nil, fmt.Errorf("init repository: %w", err)
	}
	// Leftovers of an Init that failed before timestamp.json were never
	// part of a repository: they are overwritten, not kept.
	files = append([]metaFile{{name: "1.root.json", data: rootJSON}}, files...)
	for _, f := range files {
		if err := r.step("write " + f.name); err != nil {
			return nil, fmt.Errorf("init repository: %w", err)
		}
		if err := r.put(ctx, f.name, f.data); err != nil {
			return nil, fmt.Errorf("init repository: %w", err)
		}
	}
	r.log.InfoContext(ctx, "tuf repository initialised",
		"root_keys", len(keys.Root), "root_threshold", root.Signed.Roles[RoleRoot].Threshold,
		"targets_keys", len(keys.Targets), "targets_threshold", root.Signed.Roles[RoleTargets].Threshold,
		"hashed_bin_bits", o.binBits)
	return rootJSON, nil
}

// checkEmpty refuses to initialise over an existing repository.
func (r *Repository) checkEmpty(ctx context.Context) error {
	if _, err := r.blobs.Stat(ctx, metaKey("timestamp.json")); err == nil {
		return tufota.Errorf(tufota.EConflict, "a TUF repository exists already (metadata/timestamp.json); refusing to overwrite it")
	} else if !errors.Is(err, tufota.ErrNotFound) {
		return fmt.Errorf("stat timestamp.json: %w", err)
	}
	infos, err := r.blobs.List(ctx, MetadataPrefix)
	if err != nil {
		return fmt.Errorf("list metadata: %w", err)
	}
	for _, in := range infos {
		if v, ok := rootVersionOf(in.Key); ok && v > 1 {
			return tufota.Errorf(tufota.EConflict, "a TUF repository exists already (%s); refusing to overwrite it", in.Key)
		}
	}
	return nil
}

// newRoot builds version 1 root metadata from keys.
func (r *Repository) newRoot(keys RoleKeys) (*metadata.Metadata[metadata.RootType], error) {
	root := metadata.Root(r.expires(r.expiry.Root))
	root.Signed.ConsistentSnapshot = true
	add := func(role string, svs []signature.SignerVerifier, threshold int) error {
		if len(svs) == 0 {
			return tufota.Errorf(tufota.EInvalid, "role %s has no keys", role)
		}
		if threshold == 0 {
			threshold = 1
		}
		if threshold < 0 || threshold > len(svs) {
			return tufota.Errorf(tufota.EInvalid, "role %s: threshold %d must be between 1 and its %d keys", role, threshold, len(svs))
		}
		seen := map[string]bool{}
		for i, sv := range svs {
			if sv == nil {
				return tufota.Errorf(tufota.EInvalid, "role %s: key %d is nil", role, i+1)
			}
			k, err := tufKey(sv)
			if err != nil {
				return fmt.Errorf("role %s key %d: %w", role, i+1, err)
			}
			id, err := k.ID()
			if err != nil {
				return fmt.Errorf("role %s key %d: %w", role, i+1, err)
			}
			if seen[id] {
				return tufota.Errorf(tufota.EInvalid, "role %s: key %s is listed twice", role, id)
			}
			seen[id] = true
			if err := root.Signed.AddKey(k, role); err != nil {
				return fmt.Errorf("role %s: add key %s: %w", role, id, err)
			}
		}
		root.Signed.Roles[role].Threshold = threshold
		return nil
	}
	if err := add(RoleRoot, keys.Root, keys.RootThreshold); err != nil {
		return nil, err
	}
	if err := add(RoleTargets, keys.Targets, keys.TargetsThreshold); err != nil {
		return nil, err
	}
	if keys.Snapshot == nil {
		return nil, tufota.Errorf(tufota.EInvalid, "role snapshot has no key")
	}
	if err := add(RoleSnapshot, []signature.SignerVerifier{keys.Snapshot}, 1); err != nil {
		return nil, err
	}
	if keys.Timestamp == nil {
		return nil, tufota.Errorf(tufota.EInvalid, "role timestamp has no key")
	}
	if err := add(RoleTimestamp, []signature.SignerVerifier{keys.Timestamp}, 1); err != nil {
		return nil, err
	}
	return root, nil
}

// metaFile is one metadata file ready to be written.
type metaFile struct {
	name string // e.g. "3.targets.json"
	data []byte
}

// signChain signs the metadata chain below root: targets (if not nil) gets
// its version from the caller and is signed with s.Targets, or, if
// presigned, keeps the signatures it carries (which must meet the role's
// threshold); the snapshot (version st.next) and timestamp are built on
// st's (st is nil at Init, and modified). It returns the files to write in
// order, timestamp.json last.
func (r *Repository) signChain(
	root *metadata.Metadata[metadata.RootType],
	targets *metadata.Metadata[metadata.TargetsType],
	presigned bool,
	st *state,
	s Signers,
) ([]metaFile, error) {
	var files []metaFile

	var snapshot *metadata.Metadata[metadata.SnapshotType]
	var prevTimestamp *metadata.Metadata[metadata.TimestampType]
	if st == nil {
		snapshot = metadata.Snapshot(r.expires(r.expiry.Snapshot))
	} else {
		snapshot, prevTimestamp = st.snapshot, st.timestamp
		snapshot.Signed.Version = st.next(RoleSnapshot)
		snapshot.Signed.Expires = r.expires(r.expiry.Snapshot)
	}
	if targets != nil {
		if presigned {
			if err := root.VerifyDelegate(RoleTargets, targets); err != nil {
				return nil, tufota.Errorf(tufota.EInvalid, "targets v%d does not verify with the signatures collected: %v", targets.Signed.Version, err)
			}
		} else if err := signRole(root, RoleTargets, targets, s.Targets); err != nil {
			return nil, fmt.Errorf("sign targets v%d: %w", targets.Signed.Version, err)
		}
		data, err := targets.ToBytes(true)
		if err != nil {
			return nil, fmt.Errorf("encode targets v%d: %w", targets.Signed.Version, err)
		}
		files = append(files, metaFile{name: fmt.Sprintf("%d.targets.json", targets.Signed.Version), data: data})
		snapshot.Signed.Meta["targets.json"] = metaFileFor(targets.Signed.Version, data)
	}
	return r.signSnapshotTimestamp(root, snapshot, prevTimestamp, s, files)
}

// signSnapshotTimestamp signs snapshot (whose version, expiry and entries
// the caller set) and timestamp v+1 on prevTimestamp (nil at Init). It
// returns files, then the snapshot, then timestamp.json: the order to
// write them in.
func (r *Repository) signSnapshotTimestamp(
	root *metadata.Metadata[metadata.RootType],
	snapshot *metadata.Metadata[metadata.SnapshotType],
	prevTimestamp *metadata.Metadata[metadata.TimestampType],
	s Signers,
	files []metaFile,
) ([]metaFile, error) {
	if err := signRole(root, RoleSnapshot, snapshot, []signature.Signer{s.Snapshot}); err != nil {
		return nil, fmt.Errorf("sign snapshot v%d: %w", snapshot.Signed.Version, err)
	}
	snapData, err := snapshot.ToBytes(true)
	if err != nil {
		return nil, fmt.Errorf("encode snapshot v%d: %w", snapshot.Signed.Version, err)
	}
	files = append(files, metaFile{name: fmt.Sprintf("%d.snapshot.json", snapshot.Signed.Version), data: snapData})

	var timestamp *metadata.Metadata[metadata.TimestampType]
	if prevTimestamp == nil {
		timestamp = metadata.Timestamp(r.expires(r.expiry.Timestamp))
	} else {
		timestamp = prevTimestamp
		timestamp.Signed.Version++
		timestamp.Signed.Expires = r.expires(r.expiry.Timestamp)
	}
	timestamp.Signed.Meta["snapshot.json"] = metaFileFor(snapshot.Signed.Version, snapData)
	if err := signRole(root, RoleTimestamp, timestamp, []signature.Signer{s.Timestamp}); err != nil {
		return nil, fmt.Errorf("sign timestamp v%d: %w", timestamp.Signed.Version, err)
	}
	tsData, err := timestamp.ToBytes(true)
	if err != nil {
		return nil, fmt.Errorf("encode timestamp v%d: %w", timestamp.Signed.Version, err)
	}
	files = append(files, metaFile{name: "timestamp.json", data: tsData})
	return files, nil
}

// metaFileFor describes a metadata file in snapshot or timestamp metadata,
// with its length and SHA-256 so that clients check the exact bytes.
func metaFileFor(version int64, data []byte) *metadata.MetaFiles {
	sum := sha256.Sum256(data)
	return &metadata.MetaFiles{
		Version: version,
		Length:  int64(len(data)),
		Hashes:  metadata.Hashes{"sha256": sum[:]},
	}
}

// writeChain writes files in order; the caller put timestamp.json last.
// A versioned file (N.ROLE.json) is never re-written: devices, mirrors and
// CDNs may hold it, served immutable, even when a crash left it out of the
// signed chain. One that exists with the same bytes is left as it is;
// with other bytes the write is refused (tufota.EInternal), before
// anything of files is written. Versions come from state.next, which
// skips every file in the store, so a refusal means a bug or a writer
// that does not hold the lock.
func (r *Repository) writeChain(ctx context.Context, files []metaFile) error {
	exists := make([]bool, len(files))
	for i, f := range files {
		if !versionedFile(f.name) {
			continue
		}
		same, found, err := r.sameFile(ctx, f)
		if err != nil {
			return err
		}
		if found && !same {
			return tufota.Errorf(tufota.EInternal, "write %s: a different %s exists already; versioned metadata is never re-written", f.name, f.name)
		}
		exists[i] = found
	}
	for i, f := range files {
		if exists[i] {
			r.log.InfoContext(ctx, "tuf metadata file exists already with the same bytes; kept", "file", f.name)
			continue
		}
		if err := r.step("write " + f.name); err != nil {
			return err
		}
		if err := r.put(ctx, f.name, f.data); err != nil {
			return err
		}
	}
	return nil
}

// sameFile reports whether metadata file f exists and whether it holds
// f's bytes.
func (r *Repository) sameFile(ctx context.Context, f metaFile) (same, found bool, err error) {
	data, err := r.read(ctx, f.name)
	if errors.Is(err, tufota.ErrNotFound) {
		return false, false, nil
	}
	if err != nil {
		return false, false, fmt.Errorf("write %s: %w", f.name, err)
	}
	return bytes.Equal(data, f.data), true, nil
}

// versionedFile reports whether a metadata file name is N.ROLE.json.
func versionedFile(name string) bool {
	_, _, ok := parseVersioned(name)
	return ok
}

// parseVersioned splits a metadata file name "N.ROLE.json" (N a positive
// decimal without leading zeros) into N and ROLE.
func parseVersioned(name string) (version int64, role string, ok bool) {
	num, rest, ok := strings.Cut(name, ".")
	if !ok || num == "" || num[0] == '0' {
		return 0, "", false
	}
	role, ok = strings.CutSuffix(rest, ".json")
	if !ok || role == "" {
		return 0, "", false
	}
	v, err := strconv.ParseInt(num, 10, 64)
	if err != nil || v < 1 {
		return 0, "", false
	}
	return v, role, true
}

func (r *Repository) put(ctx context.Context, file string, data []byte) error {
	if _, err := r.blobs.Put(ctx, metaKey(file), strings.NewReader(string(data))); err != nil {
		return fmt.Errorf("write %s: %w", file, err)
	}
	r.writes.notify(file, data)
	return nil
}

// signRole clears md's signatures and signs it with signers, which must be
// distinct keys of role in root, at least the role's threshold of them.
// It then verifies the result as a client would.
func signRole[T metadata.Roles](root *metadata.Metadata[metadata.RootType], role string, md *metadata.Metadata[T], signers []signature.Signer) error {
	rr, ok := root.Signed.Roles[role]
	if !ok {
		return tufota.Errorf(tufota.EInternal, "root has no role %s", role)
	}
	md.ClearSignatures()
	seen := map[string]bool{}
	for _, s := range signers {
		if s == nil {
			continue
		}
		id, err := KeyID(s)
		if err != nil {
			return err
		}
		if !slices.Contains(rr.KeyIDs, id) {
			return tufota.Errorf(tufota.EForbidden, "key %s is not a %s key of this repository", id, role)
		}
		if seen[id] {
			continue
		}
		seen[id] = true
		if _, err := md.Sign(s); err != nil {
			return fmt.Errorf("sign with key %s: %w", id, err)
		}
	}
	if len(seen) < rr.Threshold {
		return tufota.Errorf(tufota.EInvalid, "%s metadata needs signatures from %d of its keys, got %d", role, rr.Threshold, len(seen))
	}
	if err := root.VerifyDelegate(role, md); err != nil {
		return tufota.Errorf(tufota.EInternal, "%s metadata does not verify after signing: %w", role, err)
	}
	return nil
}

// state is the current, verified top-level metadata of the repository.
type state struct {
	root      *metadata.Metadata[metadata.RootType]
	timestamp *metadata.Metadata[metadata.TimestampType]
	snapshot  *metadata.Metadata[metadata.SnapshotType]
	targets   *metadata.Metadata[metadata.TargetsType]
	// delegated holds the published metadata of each delegated targets
	// role the snapshot names (a role with no release yet has none).
	delegated map[string]*metadata.Metadata[metadata.TargetsType]
	// stored is the highest N of the N.ROLE.json files in the store, per
	// role: above the signed chain when a crash left files outside it.
	stored map[string]int64
	// bins is the succinct delegation of a hashed-bin repository, or nil.
	// Its bins' metadata is read into delegated on demand (loadBin).
	bins *metadata.SuccinctRoles
}

// next returns the version of role's next metadata ("snapshot", "targets"
// or a delegated role): one above both its current version and every
// N.ROLE.json in the store, so that a file a crash left outside the signed
// chain (which a mirror may have cached as immutable) is never written
// again with other bytes.
func (st *state) next(role string) int64 {
	cur := st.roleVersion(role)
	if role == RoleSnapshot {
		cur = st.snapshot.Signed.Version
	}
	return max(cur, st.stored[role]) + 1
}

// load reads the current repository: the newest root, timestamp.json, the
// snapshot it names and the targets the snapshot names, checking versions,
// hashes and signatures as a client would (not expiry). A repository
// without timestamp.json is tufota.ENotFound; inconsistent metadata is
// tufota.EInternal.
func (r *Repository) load(ctx context.Context) (*state, error) {
	infos, err := r.blobs.List(ctx, MetadataPrefix)
	if err != nil {
		return nil, fmt.Errorf("list metadata: %w", err)
	}
	_, rootData, err := r.newestRootIn(ctx, infos)
	if err != nil {
		return nil, err
	}
	st := &state{stored: map[string]int64{}}
	for _, in := range infos {
		if v, role, ok := parseVersioned(strings.TrimPrefix(in.Key, MetadataPrefix)); ok && v > st.stored[role] {
			st.stored[role] = v
		}
	}
	if st.root, err = new(metadata.Metadata[metadata.RootType]).FromBytes(rootData); err != nil {
		return nil, corrupt("root", err)
	}
	if err := st.root.VerifyDelegate(RoleRoot, st.root); err != nil {
		return nil, corrupt("root", err)
	}

	tsData, err := r.read(ctx, "timestamp.json")
	if err != nil {
		return nil, err
	}
	if st.timestamp, err = new(metadata.Metadata[metadata.TimestampType]).FromBytes(tsData); err != nil {
		return nil, corrupt("timestamp.json", err)
	}
	if err := st.root.VerifyDelegate(RoleTimestamp, st.timestamp); err != nil {
		return nil, corrupt("timestamp.json", err)
	}
	snapMeta, ok := st.timestamp.Signed.Meta["snapshot.json"]
	if !ok {
		return nil, corrupt("timestamp.json", errors.New("no snapshot.json entry"))
	}

	snapName := fmt.Sprintf("%d.snapshot.json", snapMeta.Version)
	snapData, err := r.read(ctx, snapName)
	if err != nil {
		return nil, notFoundIsCorrupt(snapName, err)
	}
	if err := snapMeta.VerifyLengthHashes(snapData); err != nil {
		return nil, corrupt(snapName, err)
	}
	if st.snapshot, err = new(metadata.Metadata[metadata.SnapshotType]).FromBytes(snapData); err != nil {
		return nil, corrupt(snapName, err)
	}
	if err := st.root.VerifyDelegate(RoleSnapshot, st.snapshot); err != nil {
		return nil, corrupt(snapName, err)
	}
	if st.snapshot.Signed.Version != snapMeta.Version {
		return nil, corrupt(snapName, fmt.Errorf("version %d, timestamp names %d", st.snapshot.Signed.Version, snapMeta.Version))
	}
	targetsMeta, ok := st.snapshot.Signed.Meta["targets.json"]
	if !ok {
		return nil, corrupt(snapName, errors.New("no targets.json entry"))
	}

	targetsName := fmt.Sprintf("%d.targets.json", targetsMeta.Version)
	targetsData, err := r.read(ctx, targetsName)
	if err != nil {
		return nil, notFoundIsCorrupt(targetsName, err)
	}
	if err := targetsMeta.VerifyLengthHashes(targetsData); err != nil {
		return nil, corrupt(targetsName, err)
	}
	if st.targets, err = new(metadata.Metadata[metadata.TargetsType]).FromBytes(targetsData); err != nil {
		return nil, corrupt(targetsName, err)
	}
	if err := st.root.VerifyDelegate(RoleTargets, st.targets); err != nil {
		return nil, corrupt(targetsName, err)
	}
	if st.targets.Signed.Version != targetsMeta.Version {
		return nil, corrupt(targetsName, fmt.Errorf("version %d, snapshot names %d", st.targets.Signed.Version, targetsMeta.Version))
	}
	if err := r.loadDelegated(ctx, st); err != nil {
		return nil, err
	}
	if st.bins = succinct(st.targets); st.bins != nil && len(st.targets.Signed.Targets) > 0 {
		return nil, corrupt(targetsName, errors.New("a hashed-bin targets metadata lists targets itself"))
	}
	return st, nil
}

// loadDelegated reads and verifies the metadata of every delegated role
// of st's targets that st's snapshot names.
func (r *Repository) loadDelegated(ctx context.Context, st *state) error {
	st.delegated = map[string]*metadata.Metadata[metadata.TargetsType]{}
	if st.targets.Signed.Delegations == nil {
		return nil
	}
	for _, role := range st.targets.Signed.Delegations.Roles {
		m, ok := st.snapshot.Signed.Meta[role.Name+".json"]
		if !ok {
			continue // no release signed by the role yet
		}
		name := fmt.Sprintf("%d.%s.json", m.Version, role.Name)
		data, err := r.read(ctx, name)
		if err != nil {
			return notFoundIsCorrupt(name, err)
		}
		if err := m.VerifyLengthHashes(data); err != nil {
			return corrupt(name, err)
		}
		md, err := new(metadata.Metadata[metadata.TargetsType]).FromBytes(data)
		if err != nil {
			return corrupt(name, err)
		}
		if err := st.targets.VerifyDelegate(role.Name, md); err != nil {
			return corrupt(name, err)
		}
		if md.Signed.Version != m.Version {
			return corrupt(name, fmt.Errorf("version %d, snapshot names %d", md.Signed.Version, m.Version))
		}
		st.delegated[role.Name] = md
	}
	return nil
}

func corrupt(file string, err error) error {
	return tufota.Errorf(tufota.EInternal, "TUF repository is inconsistent: %s: %w", file, err)
}

func notFoundIsCorrupt(file string, err error) error {
	if errors.Is(err, tufota.ErrNotFound) {
		return corrupt(file, err)
	}
	return err
}

// read returns the bytes of metadata file name; a missing file is
// tufota.ENotFound.
func (r *Repository) read(ctx context.Context, name string) ([]byte, error) {
	obj, err := r.blobs.Open(ctx, metaKey(name))
	if err != nil {
		if errors.Is(err, tufota.ErrNotFound) {
			return nil, tufota.Errorf(tufota.ENotFound, "TUF metadata %s not found: %w", name, err)
		}
		return nil, fmt.Errorf("open %s: %w", name, err)
	}
	defer obj.Close()
	data, err := io.ReadAll(io.LimitReader(obj, maxMetadataSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	if len(data) > maxMetadataSize {
		return nil, tufota.Errorf(tufota.EInternal, "TUF metadata %s is larger than %d bytes", name, maxMetadataSize)
	}
	return data, nil
}

// rootVersionOf parses "metadata/N.root.json".
func rootVersionOf(key string) (int64, bool) {
	name, ok := strings.CutPrefix(key, MetadataPrefix)
	if !ok {
		return 0, false
	}
	num, ok := strings.CutSuffix(name, ".root.json")
	if !ok || num == "" || num[0] == '0' {
		return 0, false
	}
	v, err := strconv.ParseInt(num, 10, 64)
	if err != nil || v < 1 {
		return 0, false
	}
	return v, true
}

// newestRoot returns the version and bytes of the highest N.root.json.
func (r *Repository) newestRoot(ctx context.Context) (int64, []byte, error) {
	infos, err := r.blobs.List(ctx, MetadataPrefix)
	if err != nil {
		return 0, nil, fmt.Errorf("list metadata: %w", err)
	}
	return r.newestRootIn(ctx, infos)
}

// newestRootIn is newestRoot over a listing of the metadata prefix.
func (r *Repository) newestRootIn(ctx context.Context, infos []storage.Info) (int64, []byte, error) {
	var newest int64
	for _, in := range infos {
		if v, ok := rootVersionOf(in.Key); ok && v > newest {
			newest = v
		}
	}
	if newest == 0 {
		return 0, nil, tufota.Errorf(tufota.ENotFound, "no TUF repository: metadata/1.root.json not found (run init)")
	}
	data, err := r.read(ctx, fmt.Sprintf("%d.root.json", newest))
	if err != nil {
		return 0, nil, err
	}
	return newest, data, nil
}

// Root returns the newest root metadata (N.root.json with the highest N),
// or tufota.ENotFound if there is none.
func (r *Repository) Root(ctx context.Context) ([]byte, error) {
	_, data, err := r.newestRoot(ctx)
	if err != nil {
		return nil, fmt.Errorf("read root: %w", err)
	}
	return data, nil
}

// Targets returns the current, verified top-level targets metadata (the
// version the current snapshot names). tufota.ENotFound if there is no
// repository.
func (r *Repository) Targets(ctx context.Context) (*metadata.Metadata[metadata.TargetsType], error) {
	st, err := r.load(ctx)
	if err != nil {
		return nil, fmt.Errorf("read targets: %w", err)
	}
	return st.targets, nil
}

// Expiries returns when the current metadata of each top-level role
// ("root", "targets", "snapshot", "timestamp") and of each delegated role
// with published metadata expires.
func (r *Repository) Expiries(ctx context.Context) (map[string]time.Time, error) {
	st, err := r.load(ctx)
	if err != nil {
		return nil, fmt.Errorf("read expiries: %w", err)
	}
	exp := map[string]time.Time{
		RoleRoot:      st.root.Signed.Expires,
		RoleTargets:   st.targets.Signed.Expires,
		RoleSnapshot:  st.snapshot.Signed.Expires,
		RoleTimestamp: st.timestamp.Signed.Expires,
	}
	for role, md := range st.delegated {
		exp[role] = md.Signed.Expires
	}
	return exp, nil
}
