package signer

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/tufota/tufota"
)

// Hashed bins (TAP 15 succinct delegations) for large catalogues. With
// WithHashedBins(k), the top-level targets metadata lists no target: it
// delegates every path, through one succinct_roles entry, to 2^k bin roles
// "bins-000" … named by the first k bits of the SHA-256 of the target path
// (go-tuf's SuccinctRoles.GetRolesForTarget). A target is published into
// N.bins-XXX.json of its bin; the snapshot names every bin (version only:
// versioned files are never re-written, see writeChain), so a device's
// refresh fetches timestamp, snapshot, the small targets metadata and the
// one bin that holds the target it looks up.
//
// The bins are signed by the top-level targets keys the server holds
// (the delegation's keyids are the targets role's, threshold 1), so the
// layout needs a targets threshold of 1 and an online targets key. Init
// refuses a higher threshold; Push refuses a release when the server holds
// no targets key, SignRelease and ReleasePayload refuse to collect offline
// signatures, AddDelegation refuses product-line delegations (TUF allows
// either roles or succinct_roles in one delegations object), and a root
// change of the targets keys or threshold is refused: the delegation names
// those keys.

// Limits and names of the hashed-bin layout.
const (
	// BinsPrefix is the name prefix of the bin roles ("bins-0a3").
	BinsPrefix = "bins"
	// MaxBinBits bounds the bit length: Init writes every one of the
	// 2^bits bins.
	MaxBinBits = 14
)

// InitOption configures one Init.
type InitOption func(*initOptions)

type initOptions struct {
	binBits int
}

// WithHashedBins makes Init create the hashed-bin layout with 2^bits bins
// (1 ≤ bits ≤ MaxBinBits); 0 keeps the flat layout. See the package notes
// above Init for what the layout needs and refuses.
func WithHashedBins(bits int) InitOption {
	return func(o *initOptions) { o.binBits = bits }
}

// binExpiries caches the expiry of each bin metadata file read, by file
// name (N.bins-XXX.json never changes once written), so that Refresh reads
// each version of a bin once per process.
type binExpiries struct {
	mu sync.Mutex
	m  map[string]time.Time
}

func (c *binExpiries) get(file string) (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.m[file]
	return t, ok
}

func (c *binExpiries) put(file string, t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]time.Time{}
	}
	c.m[file] = t
}

func (c *binExpiries) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.m = nil
}

// HashedBins returns the bit length of the repository's hashed-bin layout
// (the current targets metadata's succinct delegation), or 0 for a flat
// repository. tufota.ENotFound if there is no repository.
func (r *Repository) HashedBins(ctx context.Context) (int, error) {
	st, err := r.load(ctx)
	if err != nil {
		return 0, fmt.Errorf("read layout: %w", err)
	}
	if st.bins == nil {
		return 0, nil
	}
	return st.bins.BitLength, nil
}

// binDelegations returns the succinct delegation of 2^bits bins to the
// targets keys of root, threshold 1.
func binDelegations(root *metadata.Metadata[metadata.RootType], bits int) (*metadata.Delegations, error) {
	rr := root.Signed.Roles[RoleTargets]
	if rr == nil || rr.Threshold != 1 {
		return nil, tufota.Errorf(tufota.EInvalid, "hashed bins need a targets threshold of 1: the server signs the bins with its online targets key (threshold signing with offline targets keys is not supported with hashed bins)")
	}
	d := &metadata.Delegations{
		Keys: map[string]*metadata.Key{},
		SuccinctRoles: &metadata.SuccinctRoles{
			KeyIDs:     slices.Clone(rr.KeyIDs),
			Threshold:  1,
			BitLength:  bits,
			NamePrefix: BinsPrefix,
		},
	}
	for _, id := range rr.KeyIDs {
		k, ok := root.Signed.Keys[id]
		if !ok {
			return nil, tufota.Errorf(tufota.EInternal, "root lists targets key %s without the key", id)
		}
		d.Keys[id] = k
	}
	return d, nil
}

// initBins builds the files of a new hashed-bin repository below root:
// every bin (v1, empty), targets v1 with the succinct delegation, the
// snapshot naming them all, and timestamp.json last.
func (r *Repository) initBins(root *metadata.Metadata[metadata.RootType], bits int, s Signers) ([]metaFile, error) {
	targets := metadata.Targets(r.expires(r.expiry.Targets))
	d, err := binDelegations(root, bits)
	if err != nil {
		return nil, err
	}
	targets.Signed.Delegations = d
	if err := signRole(root, RoleTargets, targets, s.Targets); err != nil {
		return nil, fmt.Errorf("sign targets v1: %w", err)
	}
	targetsData, err := targets.ToBytes(true)
	if err != nil {
		return nil, fmt.Errorf("encode targets v1: %w", err)
	}
	snapshot := metadata.Snapshot(r.expires(r.expiry.Snapshot))
	snapshot.Signed.Meta["targets.json"] = metaFileFor(1, targetsData)
	var files []metaFile
	for _, name := range d.SuccinctRoles.GetRoles() {
		bin := metadata.Targets(r.expires(r.expiry.Targets))
		if err := signBin(targets, name, bin, s.Targets); err != nil {
			return nil, err
		}
		data, err := bin.ToBytes(true)
		if err != nil {
			return nil, fmt.Errorf("encode %s v1: %w", name, err)
		}
		files = append(files, metaFile{name: "1." + name + ".json", data: data})
		snapshot.Signed.Meta[name+".json"] = binMeta(1)
	}
	files = append(files, metaFile{name: "1.targets.json", data: targetsData})
	return r.signSnapshotTimestamp(root, snapshot, nil, s, files)
}

// binMeta is a bin's snapshot entry: its version only. Length and hashes
// are optional in TUF snapshot metadata; a bin's N.ROLE.json is never
// written twice with other bytes (writeChain), and leaving them out keeps
// the snapshot, which every refresh downloads, at about 30 bytes a bin.
func binMeta(version int64) *metadata.MetaFiles {
	return &metadata.MetaFiles{Version: version}
}

// signBin clears md's signatures and signs it as bin role name of the
// succinct delegation in targets with those of signers that are its keys,
// then verifies it with go-tuf as a client would.
func signBin(targets *metadata.Metadata[metadata.TargetsType], name string, md *metadata.Metadata[metadata.TargetsType], signers []signature.Signer) error {
	sr := succinct(targets)
	if sr == nil || !sr.IsDelegatedRole(name) {
		return tufota.Errorf(tufota.EInternal, "targets v%d delegates no bin %s", targets.Signed.Version, name)
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
		if seen[id] || !slices.Contains(sr.KeyIDs, id) {
			continue
		}
		seen[id] = true
		if _, err := md.Sign(s); err != nil {
			return fmt.Errorf("sign %s with key %s: %w", name, id, err)
		}
	}
	if len(seen) < sr.Threshold {
		return tufota.Errorf(tufota.EInvalid, "%s metadata needs signatures from %d of the online targets keys, got %d: hashed bins are signed by the server's targets key", name, sr.Threshold, len(seen))
	}
	if err := targets.VerifyDelegate(name, md); err != nil {
		return tufota.Errorf(tufota.EInternal, "%s metadata does not verify after signing: %w", name, err)
	}
	return nil
}

// succinct returns the succinct delegation of targets metadata, or nil.
func succinct(targets *metadata.Metadata[metadata.TargetsType]) *metadata.SuccinctRoles {
	if targets == nil || targets.Signed.Delegations == nil {
		return nil
	}
	return targets.Signed.Delegations.SuccinctRoles
}

// binOf returns the bin role that holds path. st must have bins.
func (st *state) binOf(path string) string {
	return st.bins.GetRolesForTarget(path)[0].Name
}

// loadBin reads and verifies bin role name's current metadata (the
// version the snapshot names) into st.delegated, once per state. Every
// target it lists must hash into it: a client would never find one that
// does not (it looks only in the target's own bin).
func (r *Repository) loadBin(ctx context.Context, st *state, name string) (*metadata.Metadata[metadata.TargetsType], error) {
	if md := st.delegated[name]; md != nil {
		return md, nil
	}
	if st.bins == nil || !st.bins.IsDelegatedRole(name) {
		return nil, tufota.Errorf(tufota.EInternal, "targets v%d delegates no bin %s", st.targets.Signed.Version, name)
	}
	m, ok := st.snapshot.Signed.Meta[name+".json"]
	if !ok {
		return nil, corrupt(fmt.Sprintf("%d.snapshot.json", st.snapshot.Signed.Version), fmt.Errorf("no %s.json entry", name))
	}
	file := fmt.Sprintf("%d.%s.json", m.Version, name)
	data, err := r.read(ctx, file)
	if err != nil {
		return nil, notFoundIsCorrupt(file, err)
	}
	if err := m.VerifyLengthHashes(data); err != nil {
		return nil, corrupt(file, err)
	}
	md, err := new(metadata.Metadata[metadata.TargetsType]).FromBytes(data)
	if err != nil {
		return nil, corrupt(file, err)
	}
	if err := st.targets.VerifyDelegate(name, md); err != nil {
		return nil, corrupt(file, err)
	}
	if md.Signed.Version != m.Version {
		return nil, corrupt(file, fmt.Errorf("version %d, snapshot names %d", md.Signed.Version, m.Version))
	}
	if md.Signed.Delegations != nil {
		return nil, corrupt(file, fmt.Errorf("bin %s delegates further", name))
	}
	for p := range md.Signed.Targets {
		if got := st.binOf(p); got != name {
			return nil, corrupt(file, fmt.Errorf("target %s belongs in bin %s", p, got))
		}
	}
	st.delegated[name] = md
	r.binExp.put(file, md.Signed.Expires)
	return md, nil
}

// isPublished reports whether path is in the signed metadata of st,
// reading its bin first in a hashed-bin repository.
func (r *Repository) isPublished(ctx context.Context, st *state, path string) (bool, error) {
	if st.bins != nil {
		if _, err := r.loadBin(ctx, st, st.binOf(path)); err != nil {
			return false, err
		}
	}
	return st.published(path), nil
}

// releaseVersion returns the version of the metadata that lists a
// release's target path, signed by role: in a hashed-bin repository the
// version of the path's bin (isPublished read it), else of role.
func (st *state) releaseVersion(role, path string) int64 {
	if st.bins != nil && role == RoleTargets {
		return st.roleVersion(st.binOf(path))
	}
	return st.roleVersion(role)
}

// nextBins adds add to the next version of each bin they hash into. It
// returns the bins changed, in the order of add, with their new metadata
// (unsigned) in st.delegated. A path already published is
// tufota.EConflict and a missing staged upload tufota.ENotFound.
func (r *Repository) nextBins(ctx context.Context, st *state, add []Target) ([]string, error) {
	var order []string
	group := map[string][]Target{}
	for _, t := range add {
		name := st.binOf(t.Path)
		if _, err := r.loadBin(ctx, st, name); err != nil {
			return nil, err
		}
		if _, ok := group[name]; !ok {
			order = append(order, name)
		}
		group[name] = append(group[name], t)
	}
	for _, name := range order {
		if err := r.nextTargets(ctx, st.delegated[name], st.next(name), group[name]); err != nil {
			return nil, err
		}
	}
	return order, nil
}

// publishBinsLocked is publishLocked for a hashed-bin repository: each
// target goes into the next version of its bin, signed with the online
// targets keys in s, then a snapshot naming the new bins and a timestamp.
// It returns the new version of the first target's bin.
func (r *Repository) publishBinsLocked(ctx context.Context, st *state, s Signers, add []Target) (int64, error) {
	bins, err := r.nextBins(ctx, st, add)
	if err != nil {
		return 0, fmt.Errorf("publish: %w", err)
	}
	var files []metaFile
	for _, name := range bins {
		md := st.delegated[name]
		if err := signBin(st.targets, name, md, s.Targets); err != nil {
			return 0, fmt.Errorf("publish: %w", err)
		}
		data, err := md.ToBytes(true)
		if err != nil {
			return 0, fmt.Errorf("encode %s v%d: %w", name, md.Signed.Version, err)
		}
		files = append(files, metaFile{name: fmt.Sprintf("%d.%s.json", md.Signed.Version, name), data: data})
		st.snapshot.Signed.Meta[name+".json"] = binMeta(md.Signed.Version)
	}
	v := st.delegated[bins[0]].Signed.Version
	st.snapshot.Signed.Version = st.next(RoleSnapshot)
	st.snapshot.Signed.Expires = r.expires(r.expiry.Snapshot)
	files, err = r.signSnapshotTimestamp(st.root, st.snapshot, st.timestamp, s, files)
	if err != nil {
		return 0, fmt.Errorf("publish %s v%d: %w", bins[0], v, err)
	}
	for _, t := range add {
		if err := r.moveStaged(ctx, t); err != nil {
			return 0, fmt.Errorf("publish %s v%d: %w", bins[0], v, err)
		}
	}
	if err := r.writeChain(ctx, files); err != nil {
		return 0, fmt.Errorf("publish %s v%d: %w", bins[0], v, err)
	}
	paths := make([]string, len(add))
	for i, t := range add {
		paths[i] = t.Path
	}
	r.log.InfoContext(ctx, "tuf targets published into hashed bins", "bins", bins, "version", v, "paths", paths)
	return v, nil
}

// pendingBinPayload is pendingPayload for a release of a hashed-bin
// repository: the next metadata of the firmware's bin with those of add
// that hash into it, and the version it replaces. The row it is recorded
// in names the staged uploads for crash recovery; the publish signs its
// own metadata with the online key.
func (r *Repository) pendingBinPayload(ctx context.Context, st *state, add []Target) (*metadata.Metadata[metadata.TargetsType], int64, error) {
	if err := checkTargets(add); err != nil {
		return nil, 0, err
	}
	name := st.binOf(add[0].Path)
	md, err := r.loadBin(ctx, st, name)
	if err != nil {
		return nil, 0, err
	}
	base := md.Signed.Version
	var same []Target
	for _, t := range add {
		if st.binOf(t.Path) == name {
			same = append(same, t)
		} else if ok, err := r.isPublished(ctx, st, t.Path); err != nil {
			return nil, 0, err
		} else if ok {
			return nil, 0, tufota.Errorf(tufota.EConflict, "target %s is published already", t.Path)
		}
	}
	if err := r.nextTargets(ctx, md, st.next(name), same); err != nil {
		return nil, 0, err
	}
	return md, base, nil
}

// refreshBins re-signs, with the online targets keys, every bin whose
// metadata expires by limit, and names the new versions in st's snapshot
// (the caller signs it). It returns the bin files to write, or none. Each
// version of a bin is read once per process (binExpiries).
func (r *Repository) refreshBins(ctx context.Context, st *state, s Signers, limit time.Time) ([]metaFile, error) {
	var files []metaFile
	for _, name := range st.bins.GetRoles() {
		m, ok := st.snapshot.Signed.Meta[name+".json"]
		if !ok {
			return nil, corrupt(fmt.Sprintf("%d.snapshot.json", st.snapshot.Signed.Version), fmt.Errorf("no %s.json entry", name))
		}
		exp, ok := r.binExp.get(fmt.Sprintf("%d.%s.json", m.Version, name))
		if !ok {
			md, err := r.loadBin(ctx, st, name)
			if err != nil {
				return nil, err
			}
			exp = md.Signed.Expires
		}
		if exp.After(limit) {
			continue
		}
		md, err := r.loadBin(ctx, st, name)
		if err != nil {
			return nil, err
		}
		md.Signed.Version = st.next(name)
		md.Signed.Expires = r.expires(r.expiry.Targets)
		if err := signBin(st.targets, name, md, s.Targets); err != nil {
			return nil, err
		}
		data, err := md.ToBytes(true)
		if err != nil {
			return nil, fmt.Errorf("encode %s v%d: %w", name, md.Signed.Version, err)
		}
		files = append(files, metaFile{name: fmt.Sprintf("%d.%s.json", md.Signed.Version, name), data: data})
		st.snapshot.Signed.Meta[name+".json"] = binMeta(md.Signed.Version)
	}
	return files, nil
}

// errBinsOffline is the refusal of offline signing in a hashed-bin
// repository.
func errBinsOffline(what string) error {
	return tufota.Errorf(tufota.EInvalid, "%s: this repository uses hashed bins, which the server signs with its online targets key; offline (threshold) signing is not supported with hashed bins", what)
}
