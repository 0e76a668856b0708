package signer

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/storage"
)

// Delegated targets roles. A product line (say, infusion pumps) gets its
// own targets role: the top-level targets metadata delegates the target
// paths of the line ("pump/*/*") to the line's keys with a threshold, and
// every release whose paths fall under the delegation is signed into that
// role's metadata (N.pump.json) by the line's key holders, never by the
// top-level targets keys. The server holds no delegated key: a pushed
// release of the line waits, like a release under an offline targets
// role, until the line's threshold of signatures has been uploaded
// (SignRelease), then the server publishes N.pump.json, a snapshot that
// names it and a timestamp.
//
// Delegations are terminating and searched in order, exactly as a TUF
// client searches them, so the role the server publishes a path into is
// the role every client consults for it. A path covered by a delegation is
// refused in the top-level targets metadata. A delegated role lists
// nothing until its first release, and the snapshot names its metadata
// from then on.

// Limits on a delegation.
const (
	maxDelegationPaths = 16
	maxDelegationKeys  = 16
)

var delegationName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// DelegationRequest adds a delegated targets role. It is also the JSON
// body of the server's delegation API.
type DelegationRequest struct {
	Name      string          `json:"name"`
	Paths     []string        `json:"paths"`
	Keys      []*metadata.Key `json:"keys"`
	Threshold int             `json:"threshold"`
}

// Delegation describes a delegated targets role as the current metadata
// has it.
type Delegation struct {
	Name      string   `json:"name"`
	Paths     []string `json:"paths"`
	KeyIDs    []string `json:"keyids"`
	Threshold int      `json:"threshold"`
	// TargetsVersion is the top-level targets version that delegates it.
	TargetsVersion int64 `json:"targets_version"`
	// Version is the version of the role's own metadata, 0 before its
	// first release is published.
	Version int64      `json:"version"`
	Expires *time.Time `json:"expires,omitempty"`
	Targets int        `json:"targets"`
	// Signing is set while the delegation waits for offline targets
	// signatures (the targets role's threshold is above what the server
	// holds); TargetsVersion is then the version being signed.
	Signing *SigningStatus `json:"signing,omitempty"`
	// Resign is set while a key change waits for the role's new keys to
	// re-sign its published metadata (UpdateDelegation).
	Resign *SigningStatus `json:"resign,omitempty"`
	// Pending names the change waiting for signatures, if any: "add",
	// "key change", "removal" or "renewal" (Delegations).
	Pending string `json:"pending,omitempty"`
}

func pendingDelegationID(name string) string { return "delegation/" + name }

// withDelegation appends req to md's delegations, terminating, and returns
// the new role; md's version and expiry are the caller's.
func withDelegation(md *metadata.Metadata[metadata.TargetsType], req DelegationRequest) metadata.DelegatedRole {
	if md.Signed.Delegations == nil {
		md.Signed.Delegations = &metadata.Delegations{Keys: map[string]*metadata.Key{}}
	}
	role := metadata.DelegatedRole{Name: req.Name, Threshold: req.Threshold, Terminating: true, Paths: slices.Clone(req.Paths)}
	for _, k := range req.Keys {
		id, _ := k.ID() // checked by Validate
		md.Signed.Delegations.Keys[id] = k
		role.KeyIDs = append(role.KeyIDs, id)
	}
	md.Signed.Delegations.Roles = append(md.Signed.Delegations.Roles, role)
	return role
}

// Validate checks every field and names the first problem.
func (d DelegationRequest) Validate() error {
	if !delegationName.MatchString(d.Name) {
		return tufota.Errorf(tufota.EInvalid, "delegation name %q: want 1 to 63 lower-case letters, digits and '-', starting with a letter or digit", d.Name)
	}
	switch d.Name {
	case RoleRoot, RoleTargets, RoleSnapshot, RoleTimestamp:
		return tufota.Errorf(tufota.EInvalid, "delegation name %q is a top-level TUF role", d.Name)
	}
	if len(d.Paths) == 0 {
		return tufota.Errorf(tufota.EInvalid, "delegation %s names no paths (e.g. --paths '%s/*/*')", d.Name, d.Name)
	}
	if len(d.Paths) > maxDelegationPaths {
		return tufota.Errorf(tufota.EInvalid, "delegation %s names %d paths; at most %d", d.Name, len(d.Paths), maxDelegationPaths)
	}
	for i, p := range d.Paths {
		if err := ValidateDelegationPath(p); err != nil {
			return fmt.Errorf("delegation %s: %w", d.Name, err)
		}
		if slices.Contains(d.Paths[:i], p) {
			return tufota.Errorf(tufota.EInvalid, "delegation %s: path %q is given twice", d.Name, p)
		}
	}
	if len(d.Keys) == 0 {
		return tufota.Errorf(tufota.EInvalid, "delegation %s has no keys", d.Name)
	}
	if len(d.Keys) > maxDelegationKeys {
		return tufota.Errorf(tufota.EInvalid, "delegation %s has %d keys; at most %d", d.Name, len(d.Keys), maxDelegationKeys)
	}
	seen := map[string]bool{}
	for i, k := range d.Keys {
		id, err := checkPublicKey(k)
		if err != nil {
			return tufota.Errorf(tufota.EInvalid, "delegation %s: key %d: %v", d.Name, i+1, err)
		}
		if seen[id] {
			return tufota.Errorf(tufota.EInvalid, "delegation %s: key %s is given twice", d.Name, id)
		}
		seen[id] = true
	}
	if d.Threshold < 1 || d.Threshold > len(d.Keys) {
		return tufota.Errorf(tufota.EInvalid, "delegation %s: threshold %d must be between 1 and its %d keys", d.Name, d.Threshold, len(d.Keys))
	}
	return nil
}

// checkPublicKey checks that k is a public key go-tuf can verify with and
// returns its key ID.
func checkPublicKey(k *metadata.Key) (string, error) {
	if k == nil {
		return "", fmt.Errorf("no key")
	}
	if _, err := k.ToPublicKey(); err != nil {
		return "", fmt.Errorf("not a usable public key: %v", err)
	}
	return k.ID()
}

// ValidateDelegationPath checks a delegation's path pattern. tufota target
// paths are NAME/VERSION/FILE and TUF matches a pattern segment by segment,
// so a pattern has three '/'-separated segments, each a name (as in
// ValidateTargetPath) in which '*' and '?' are wildcards within the
// segment: "pump/*/*", "pump-*/2.*/*", "pump/*/fw.bin". Errors are
// tufota.EInvalid and say what to write instead.
func ValidateDelegationPath(p string) error {
	if p == "" {
		return tufota.Errorf(tufota.EInvalid, "delegation path is empty")
	}
	if len(p) > maxTargetPathLen {
		return tufota.Errorf(tufota.EInvalid, "delegation path is longer than %d bytes", maxTargetPathLen)
	}
	segs := strings.Split(p, "/")
	if len(segs) != 3 {
		hint := ""
		trimmed := strings.TrimSuffix(p, "/")
		if n := len(strings.Split(trimmed, "/")); n < 3 && !strings.HasPrefix(p, "/") {
			hint = fmt.Sprintf(" (did you mean %q?)", trimmed+strings.Repeat("/*", 3-n))
		}
		return tufota.Errorf(tufota.EInvalid, "delegation path %q has %d segment(s): tufota target paths are NAME/VERSION/FILE and TUF matches patterns segment by segment, so a pattern needs three, e.g. \"pump/*/*\"%s", p, len(segs), hint)
	}
	for _, seg := range segs {
		if seg == "" {
			return tufota.Errorf(tufota.EInvalid, "delegation path %q has an empty segment", p)
		}
		lit := strings.NewReplacer("*", "x", "?", "x", "+", "_").Replace(seg)
		if err := tufota.ValidateName("delegation path segment", lit); err != nil {
			return tufota.Errorf(tufota.EInvalid, "delegation path %q: segment %q: only letters, digits, '.', '_', '-', '+' and the wildcards '*' and '?' are allowed, starting with a letter, digit or wildcard", p, seg)
		}
	}
	return nil
}

// coveringRole returns the delegated role a TUF client consults first for
// path under d (delegations are searched in order; tufota's are all
// terminating), or nil.
func coveringRole(d *metadata.Delegations, path string) *metadata.DelegatedRole {
	if d == nil {
		return nil
	}
	for i := range d.Roles {
		if ok, err := d.Roles[i].IsDelegatedPath(path); err == nil && ok {
			return &d.Roles[i]
		}
	}
	return nil
}

// delegatedRole returns the delegation named name in st's targets, or nil.
func (st *state) delegatedRole(name string) *metadata.DelegatedRole {
	return roleIn(st.targets, name)
}

// roleVersion returns the current version of role's metadata: the
// top-level targets, or a delegated role (0 before its first release).
func (st *state) roleVersion(role string) int64 {
	if role == RoleTargets {
		return st.targets.Signed.Version
	}
	if md := st.delegated[role]; md != nil {
		return md.Signed.Version
	}
	return 0
}

// published reports whether path is a target of the top-level targets or
// of a delegated role.
func (st *state) published(path string) bool {
	if _, ok := st.targets.Signed.Targets[path]; ok {
		return true
	}
	for _, md := range st.delegated {
		if _, ok := md.Signed.Targets[path]; ok {
			return true
		}
	}
	return false
}

// delegator returns metadata whose VerifyDelegate(role, ...) checks role's
// signatures: the root for the top-level targets, and for a delegated role
// a root-shaped copy of its delegation (keys, key IDs and threshold from
// the current targets), so that both go through go-tuf's own check.
func (st *state) delegator(role string) (*metadata.Metadata[metadata.RootType], error) {
	if role == RoleTargets {
		return st.root, nil
	}
	return delegatorOf(st.targets, role)
}

// roleFor returns the role that signs the given target paths: "targets",
// or the delegated role that covers the first of them, which must then
// cover all of them (a release and its SBOM are signed together).
func (st *state) roleFor(paths []string) (string, error) {
	if len(paths) == 0 {
		return RoleTargets, nil
	}
	first := coveringRole(st.targets.Signed.Delegations, paths[0])
	for _, p := range paths[1:] {
		dr := coveringRole(st.targets.Signed.Delegations, p)
		switch {
		case first == nil && dr != nil:
			return "", tufota.Errorf(tufota.EInvalid, "target %s falls under delegated role %s but %s does not; a release and its SBOM must be signed by one role (widen the role's paths to NAME/VERSION/*)", p, dr.Name, paths[0])
		case first != nil && (dr == nil || dr.Name != first.Name):
			return "", tufota.Errorf(tufota.EInvalid, "target %s is not covered by delegated role %s (paths %s) like %s; a release and its SBOM must be signed by one role (widen the role's paths to NAME/VERSION/*)", p, first.Name, strings.Join(first.Paths, ", "), paths[0])
		}
	}
	if first == nil {
		return RoleTargets, nil
	}
	return first.Name, nil
}

// pendingPayload builds the unsigned next metadata of role with add on top
// of st (the top-level targets, or the delegated role's metadata, v1 when
// it has none yet) and returns it with the version it replaces. st may be
// modified.
func (r *Repository) pendingPayload(ctx context.Context, st *state, role string, add []Target) (*metadata.Metadata[metadata.TargetsType], int64, error) {
	if role == RoleTargets && st.bins != nil {
		return r.pendingBinPayload(ctx, st, add)
	}
	if role == RoleTargets {
		base := st.targets.Signed.Version
		md, err := r.pendingTargets(ctx, st, add)
		return md, base, err
	}
	if err := checkTargets(add); err != nil {
		return nil, 0, err
	}
	dr := st.delegatedRole(role)
	if dr == nil {
		return nil, 0, tufota.Errorf(tufota.EConflict, "targets v%d delegates to no role %s", st.targets.Signed.Version, role)
	}
	for _, t := range add {
		if got := coveringRole(st.targets.Signed.Delegations, t.Path); got == nil || got.Name != role {
			return nil, 0, tufota.Errorf(tufota.EInvalid, "target %s is not covered by delegated role %s (paths %s)", t.Path, role, strings.Join(dr.Paths, ", "))
		}
		if st.published(t.Path) {
			return nil, 0, tufota.Errorf(tufota.EConflict, "target %s is published already", t.Path)
		}
	}
	md, base := st.delegated[role], int64(0)
	if md != nil {
		base = md.Signed.Version
	} else {
		md = metadata.Targets(r.expires(r.expiry.Targets))
		md.Signed.Version = 0
	}
	if err := r.nextTargets(ctx, md, st.next(role), add); err != nil {
		return nil, 0, err
	}
	return md, base, nil
}

// checkOnlyAdds refuses signed metadata md of role that changes anything
// of the current targets cur but adding add's paths.
func checkOnlyAdds(role string, cur map[string]*metadata.TargetFiles, md *metadata.Metadata[metadata.TargetsType], add []Target) error {
	want := map[string]bool{}
	for _, t := range add {
		want[t.Path] = true
		if _, ok := md.Signed.Targets[t.Path]; !ok {
			return tufota.Errorf(tufota.EInternal, "pending %s v%d lacks %s", role, md.Signed.Version, t.Path)
		}
	}
	if len(md.Signed.Targets) != len(cur)+len(add) {
		return tufota.Errorf(tufota.EInternal, "pending %s v%d changes more than its new files", role, md.Signed.Version)
	}
	for p, tf := range cur {
		got, ok := md.Signed.Targets[p]
		if !ok || want[p] || !got.Equal(*tf) {
			return tufota.Errorf(tufota.EInternal, "pending %s v%d changes published target %s", role, md.Signed.Version, p)
		}
	}
	return nil
}

// publishDelegatedLocked publishes the metadata md of delegated role,
// signed by the role's key holders, built on the role's version base with
// add as its new files: N.ROLE.json, then a snapshot naming it and a
// timestamp (signed with the server's online keys in s). The caller holds
// the writer lock. The role moving past base is a stale payload
// (tufota.EConflict).
func (r *Repository) publishDelegatedLocked(ctx context.Context, st *state, role string, md *metadata.Metadata[metadata.TargetsType], base int64, add []Target, s Signers) (int64, error) {
	if err := checkTargets(add); err != nil {
		return 0, fmt.Errorf("publish: %w", err)
	}
	dr := st.delegatedRole(role)
	if dr == nil {
		return 0, tufota.Errorf(tufota.EConflict, "publish: targets v%d delegates to no role %s", st.targets.Signed.Version, role)
	}
	if cur := st.roleVersion(role); cur != base {
		return 0, staleError("%s metadata is at v%d, the payload was built on v%d", role, cur, base)
	}
	if next := st.next(role); md.Signed.Version != next {
		return 0, staleError("the payload is %s v%d, but the next %s version is v%d (an interrupted publish left %s metadata of v%d or later in the store)", role, md.Signed.Version, role, next, role, md.Signed.Version)
	}
	if md.Signed.Delegations != nil {
		return 0, tufota.Errorf(tufota.EInternal, "pending %s v%d delegates further", role, md.Signed.Version)
	}
	var cur map[string]*metadata.TargetFiles
	if prev := st.delegated[role]; prev != nil {
		cur = prev.Signed.Targets
	}
	if err := checkOnlyAdds(role, cur, md, add); err != nil {
		return 0, err
	}
	for _, t := range add {
		if got := coveringRole(st.targets.Signed.Delegations, t.Path); got == nil || got.Name != role {
			return 0, tufota.Errorf(tufota.EInternal, "pending %s v%d lists %s, which the role does not cover", role, md.Signed.Version, t.Path)
		}
		if err := r.checkStaged(ctx, t); err != nil {
			return 0, fmt.Errorf("publish: %w", err)
		}
	}
	return r.writeRoleLocked(ctx, st, role, md, add, s)
}

// writeRoleLocked verifies md, the signed metadata of delegated role,
// against the delegation, moves add's staged blobs into place and writes
// N.ROLE.json, a snapshot that names it and a timestamp. The caller holds
// the writer lock and checked what md changes.
func (r *Repository) writeRoleLocked(ctx context.Context, st *state, role string, md *metadata.Metadata[metadata.TargetsType], add []Target, s Signers) (int64, error) {
	v := md.Signed.Version
	if err := st.targets.VerifyDelegate(role, md); err != nil {
		return 0, tufota.Errorf(tufota.EInvalid, "%s v%d does not verify with the signatures collected: %v", role, v, err)
	}
	data, err := md.ToBytes(true)
	if err != nil {
		return 0, fmt.Errorf("encode %s v%d: %w", role, v, err)
	}
	snapshot := st.snapshot
	snapshot.Signed.Version = st.next(RoleSnapshot)
	snapshot.Signed.Expires = r.expires(r.expiry.Snapshot)
	snapshot.Signed.Meta[role+".json"] = metaFileFor(v, data)
	files, err := r.signSnapshotTimestamp(st.root, snapshot, st.timestamp, s, []metaFile{{name: fmt.Sprintf("%d.%s.json", v, role), data: data}})
	if err != nil {
		return 0, fmt.Errorf("publish %s v%d: %w", role, v, err)
	}
	for _, t := range add {
		if err := r.moveStaged(ctx, t); err != nil {
			return 0, fmt.Errorf("publish %s v%d: %w", role, v, err)
		}
	}
	if err := r.writeChain(ctx, files); err != nil {
		return 0, fmt.Errorf("publish %s v%d: %w", role, v, err)
	}
	r.log.InfoContext(ctx, "delegated targets published", "role", role, "version", v, "signatures", len(md.Signatures))
	return v, nil
}

// AddDelegation delegates req.Paths to a new targets role req.Name with
// req.Keys and req.Threshold: the top-level targets metadata gets version
// v+1 with the delegation appended (after the existing ones, terminating),
// signed by the server's targets keys, and a new snapshot and timestamp.
// Releases pushed afterwards whose paths the role covers wait for the
// role's signatures. When the server holds fewer targets keys than the
// targets threshold, the change waits instead (Delegation.Signing set)
// for the targets key holders (DelegationPayload, SignDelegation), like a
// release. A bad request is tufota.EInvalid; an existing or pending name
// tufota.EConflict.
func (r *Releases) AddDelegation(ctx context.Context, req DelegationRequest, actor string) (Delegation, error) {
	if err := req.Validate(); err != nil {
		return Delegation{}, err
	}
	st, unlock, err := r.lockedState(ctx)
	if err != nil {
		return Delegation{}, fmt.Errorf("add delegation %s: %w", req.Name, err)
	}
	defer unlock()
	if st.bins != nil {
		return Delegation{}, tufota.Errorf(tufota.EInvalid, "add delegation %s: this repository uses hashed bins (a succinct delegation of every path); TUF allows no other delegation beside it, so product-line delegations are not supported with hashed bins", req.Name)
	}
	if st.delegatedRole(req.Name) != nil {
		return Delegation{}, tufota.Errorf(tufota.EConflict, "delegation %s exists already (targets v%d)", req.Name, st.targets.Signed.Version)
	}
	if err := r.noPendingChange(ctx, req.Name, "add"); err != nil {
		return Delegation{}, err
	}
	s := r.Signers()
	base := st.targets.Signed.Version
	md := renewed(st.targets, st.next(RoleTargets), r.repo.expires(r.repo.expiry.Targets))
	role := withDelegation(md, req)
	if n, need := countRoleSigners(st.root, RoleTargets, s.Targets); n < need {
		return r.createPendingDelegation(ctx, st, base, md, req, role, actor)
	}
	files, err := r.repo.signChain(st.root, md, false, st, s)
	if err != nil {
		return Delegation{}, fmt.Errorf("add delegation %s: %w", req.Name, err)
	}
	if err := r.repo.writeChain(ctx, files); err != nil {
		return Delegation{}, fmt.Errorf("add delegation %s: %w", req.Name, err)
	}
	r.repo.log.InfoContext(ctx, "tuf delegation added", "role", req.Name, "paths", req.Paths, "threshold", req.Threshold, "keys", role.KeyIDs, "targets_version", md.Signed.Version)
	if err := r.auditAlone(ctx, "delegation.add", map[string]string{"role": req.Name, "targets_version": strconv.FormatInt(md.Signed.Version, 10)}); err != nil {
		return Delegation{}, fmt.Errorf("add delegation %s: published as targets v%d, but its audit entry failed: %w", req.Name, md.Signed.Version, err)
	}
	return delegationOf(st, md, role.Name), nil
}

// createPendingDelegation records md, the unsigned targets metadata that
// adds req, for the targets key holders to sign.
func (r *Releases) createPendingDelegation(ctx context.Context, st *state, base int64, md *metadata.Metadata[metadata.TargetsType], req DelegationRequest, role metadata.DelegatedRole, actor string) (Delegation, error) {
	mdJSON, err := md.ToBytes(false)
	if err != nil {
		return Delegation{}, fmt.Errorf("encode pending targets: %w", err)
	}
	extra, err := json.Marshal(req)
	if err != nil {
		return Delegation{}, err
	}
	id, now := pendingDelegationID(req.Name), r.now().UTC().UnixNano()
	if err := r.insertPending(ctx, id, RoleTargets, base, md.Signed.Version, string(mdJSON), string(extra), actor, now,
		"delegation.add", map[string]string{"role": req.Name, "state": "pending", "targets_version": strconv.FormatInt(md.Signed.Version, 10)}); err != nil {
		if errors.Is(err, tufota.ErrConflict) {
			return Delegation{}, tufota.Errorf(tufota.EConflict, "delegation %s waits for targets signatures already", req.Name)
		}
		return Delegation{}, fmt.Errorf("record pending delegation %s: %w", req.Name, err)
	}
	p, err := loadPending(ctx, r.db, id)
	if err != nil {
		return Delegation{}, err
	}
	status, err := r.targetsStatus(st.root, p, md, nil)
	if err != nil {
		return Delegation{}, err
	}
	r.repo.log.InfoContext(ctx, "tuf delegation waits for targets signatures", "role", req.Name, "targets_version", md.Signed.Version, "needed", status.Needed)
	d := delegationOf(st, md, role.Name)
	d.Signing = &status
	return d, nil
}

// RenewDelegation proposes the next version of delegated role name's
// metadata with the same targets and a new expiry date (expiry policy:
// that of targets), for the role's key holders to sign (DelegationPayload,
// SignDelegation): how an offline product line keeps its metadata valid
// between releases. A role with no metadata yet (no release) or an
// unknown role is tufota.EConflict or tufota.ENotFound; a renewal or other
// change already pending, tufota.EConflict.
func (r *Releases) RenewDelegation(ctx context.Context, name, actor string) (Delegation, error) {
	st, dr, unlock, err := r.lockedRole(ctx, name, "renew")
	if err != nil {
		return Delegation{}, err
	}
	defer unlock()
	cur := st.delegated[name]
	if cur == nil {
		return Delegation{}, tufota.Errorf(tufota.EConflict, "renew delegation %s: the role has no metadata yet; its first release creates it", name)
	}
	if err := r.noPendingChange(ctx, name, "renew"); err != nil {
		return Delegation{}, err
	}
	base := cur.Signed.Version
	md := renewed(cur, st.next(name), r.repo.expires(r.repo.expiry.Targets))
	mdJSON, err := md.ToBytes(false)
	if err != nil {
		return Delegation{}, err
	}
	extra, err := json.Marshal(DelegationRequest{Name: name})
	if err != nil {
		return Delegation{}, err
	}
	id, now := pendingDelegationID(name), r.now().UTC().UnixNano()
	if err := r.insertPending(ctx, id, name, base, md.Signed.Version, string(mdJSON), string(extra), actor, now,
		"delegation.renew", map[string]string{"role": name, "state": "pending", "version": strconv.FormatInt(md.Signed.Version, 10)}); err != nil {
		return Delegation{}, fmt.Errorf("record renewal of %s: %w", name, err)
	}
	p, err := loadPending(ctx, r.db, id)
	if err != nil {
		return Delegation{}, err
	}
	delegator, err := st.delegator(name)
	if err != nil {
		return Delegation{}, err
	}
	status, err := r.targetsStatus(delegator, p, md, nil)
	if err != nil {
		return Delegation{}, err
	}
	d := delegationOf(st, st.targets, dr.Name)
	d.Signing = &status
	return d, nil
}

// renewed returns a copy of cur, unsigned, at version (state.next when
// building) with expiry exp and the same contents: the base of every
// change to targets metadata (top-level or delegated) that tufota builds.
func renewed(cur *metadata.Metadata[metadata.TargetsType], version int64, exp time.Time) *metadata.Metadata[metadata.TargetsType] {
	b, _ := cur.ToBytes(false)
	md, _ := new(metadata.Metadata[metadata.TargetsType]).FromBytes(b)
	md.ClearSignatures()
	md.Signed.Version = version
	md.Signed.Expires = exp
	return md
}

// pendingDelegation loads the pending targets change that adds delegation
// name, under the writer lock, rebuilding it on the current targets first
// if they moved on (discarded is then how many signatures went, else -1).
func (r *Releases) pendingDelegation(ctx context.Context, st *state, name string) (p pendingRow, md *metadata.Metadata[metadata.TargetsType], discarded int, err error) {
	ref := "delegation " + name
	p, err = loadPending(ctx, r.db, pendingDelegationID(name))
	if errors.Is(err, tufota.ErrNotFound) {
		if st.delegatedRole(name) != nil {
			return p, nil, 0, tufota.Errorf(tufota.EConflict, "delegation %s is published already (targets v%d); there is nothing to sign", name, st.targets.Signed.Version)
		}
		return p, nil, 0, tufota.Errorf(tufota.ENotFound, "no delegation %s waits for signatures", name)
	}
	if err != nil {
		return p, nil, 0, err
	}
	var x pendingDelegationExtra
	if err := json.Unmarshal(p.Extra, &x); err != nil {
		return p, nil, 0, tufota.Errorf(tufota.EInternal, "pending %s: %v", p.ID, err)
	}
	discarded = -1
	if p.Role != RoleTargets { // a renewal of the role's own metadata
		if cur := st.roleVersion(p.Role); p.Base != cur || p.Ver != st.next(p.Role) {
			prev := st.delegated[p.Role]
			if prev == nil {
				return p, nil, 0, tufota.Errorf(tufota.EInternal, "pending renewal of %s: the role has no metadata", name)
			}
			if p, discarded, err = r.rebuildPending(ctx, p, cur, renewed(prev, st.next(p.Role), r.repo.expires(r.repo.expiry.Targets)), ref); err != nil {
				return p, nil, 0, err
			}
		}
	} else if cur := st.targets.Signed.Version; p.Base != cur || p.Ver != st.next(RoleTargets) {
		if !x.Update && !x.Remove && st.delegatedRole(name) != nil {
			return p, nil, 0, tufota.Errorf(tufota.EConflict, "delegation %s is published already (targets v%d); there is nothing to sign", name, cur)
		}
		if x.Remove && st.delegatedRole(name) == nil {
			return p, nil, 0, tufota.Errorf(tufota.EConflict, "delegation %s is removed already (targets v%d); there is nothing to sign", name, cur)
		}
		nmd := renewed(st.targets, st.next(RoleTargets), r.repo.expires(r.repo.expiry.Targets))
		x.apply(nmd)
		if p, discarded, err = r.rebuildPending(ctx, p, cur, nmd, ref); err != nil {
			return p, nil, 0, err
		}
	}
	md, err = p.targets()
	if err != nil {
		return p, nil, 0, err
	}
	return p, md, discarded, nil
}

// DelegationPayload returns what a targets key holder signs to add the
// pending delegation name: the next top-level targets metadata, which
// differs from the current one only by the delegation. If other targets
// metadata published since it was built, it is rebuilt first and the
// signatures collected for the old payload are discarded. A published
// delegation is tufota.EConflict, an unknown one tufota.ENotFound.
func (r *Releases) DelegationPayload(ctx context.Context, name string) (SigningPayload, error) {
	st, unlock, err := r.lockedState(ctx)
	if err != nil {
		return SigningPayload{}, err
	}
	defer unlock()
	p, md, _, err := r.pendingDelegation(ctx, st, name)
	if err != nil {
		return SigningPayload{}, err
	}
	sp, err := r.payloadOf(ctx, st, p, md)
	if err != nil {
		return SigningPayload{}, err
	}
	var x pendingDelegationExtra
	if err := json.Unmarshal(p.Extra, &x); err != nil {
		return SigningPayload{}, tufota.Errorf(tufota.EInternal, "pending %s: %v", p.ID, err)
	}
	sp.Delegation = &x.DelegationRequest
	if x.Update {
		rp, rmd, _, ok, err := r.pendingRoleResign(ctx, st, name)
		if err != nil || !ok {
			return sp, err
		}
		deleg, err := delegatorOf(md, name)
		if err != nil {
			return SigningPayload{}, err
		}
		payload, sum, err := canonicalSigned(rmd)
		if err != nil {
			return SigningPayload{}, err
		}
		rs, _, err := r.statusOf(ctx, deleg, rp, rmd)
		if err != nil {
			return SigningPayload{}, err
		}
		sp.Resign = &SigningPayload{Role: name, Payload: payload, PayloadSHA256: sum, Status: rs}
	}
	return sp, nil
}

// SignDelegation adds one targets signature to the pending delegation
// name and publishes the new top-level targets (with the server's own
// targets signatures, snapshot and timestamp) when the threshold is met.
// Errors are those of SignRelease.
func (r *Releases) SignDelegation(ctx context.Context, name string, up SignatureUpload, actor string) (SigningStatus, error) {
	ref := "delegation " + name
	if up.PayloadSHA256 == "" {
		return SigningStatus{}, tufota.Errorf(tufota.EInvalid, "payload_sha256 is required: the SHA-256 of the payload you signed")
	}
	st, unlock, err := r.lockedState(ctx)
	if err != nil {
		return SigningStatus{}, err
	}
	defer unlock()
	p, md, discarded, err := r.pendingDelegation(ctx, st, name)
	if err != nil {
		return SigningStatus{}, err
	}
	var x pendingDelegationExtra
	if err := json.Unmarshal(p.Extra, &x); err != nil {
		return SigningStatus{}, tufota.Errorf(tufota.EInternal, "pending %s: %v", p.ID, err)
	}
	if x.Update {
		return r.signUpdate(ctx, st, name, p, md, discarded, x, up, actor)
	}
	status, sigs, err := r.recordSignature(ctx, st, nil, p, md, discarded, up, actor, ref, "tufota delegation sign "+name)
	if err != nil || status.Needed > 0 {
		return status, err
	}
	attachSignatures(md, status, sigs)
	var v int64
	if p.Role == RoleTargets {
		v, err = r.repo.publishDelegationLocked(ctx, st, md, p.Base, x, r.Signers())
	} else {
		v, err = r.repo.publishRenewalLocked(ctx, st, p.Role, md, p.Base, r.Signers())
	}
	if err != nil {
		return status, fmt.Errorf("sign %s: signature recorded, threshold met, but publish failed: %w", ref, err)
	}
	err = r.db.Tx(context.WithoutCancel(ctx), func(tx *storage.Tx) error {
		if err := deletePending(ctx, tx, p.ID); err != nil {
			return err
		}
		return auditIn(ctx, tx, "delegation.publish", map[string]string{"delegation": name, "role": p.Role, "version": strconv.FormatInt(v, 10)})
	})
	if err != nil {
		return status, fmt.Errorf("sign %s: published as %s v%d, but its pending row remains: %w", ref, p.Role, v, err)
	}
	status.Published = true
	return status, nil
}

// CancelDelegation withdraws a pending delegation and the signatures
// collected for it; nothing was published. A published delegation is
// tufota.EConflict, an unknown one tufota.ENotFound.
func (r *Releases) CancelDelegation(ctx context.Context, name string) error {
	st, unlock, err := r.lockedState(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	if _, _, _, err := r.pendingDelegation(ctx, st, name); err != nil {
		return fmt.Errorf("cancel delegation %s: %w", name, err)
	}
	err = r.db.Tx(ctx, func(tx *storage.Tx) error {
		if err := deletePending(ctx, tx, pendingDelegationID(name)); err != nil {
			return err
		}
		if err := deletePending(ctx, tx, pendingRoleResignID(name)); err != nil {
			return err
		}
		return auditIn(ctx, tx, "delegation.cancel", map[string]string{"role": name})
	})
	if err != nil {
		return fmt.Errorf("cancel delegation %s: %w", name, err)
	}
	return nil
}

// publishDelegationLocked publishes top-level targets metadata md that
// carries targets signatures made elsewhere and adds (or removes)
// delegation x to the targets version base, and nothing else (plus the
// server's own targets signatures, snapshot and timestamp). The caller
// holds the writer lock.
func (r *Repository) publishDelegationLocked(ctx context.Context, st *state, md *metadata.Metadata[metadata.TargetsType], base int64, x pendingDelegationExtra, s Signers) (int64, error) {
	req := x.DelegationRequest
	if x.Remove && st.delegated[req.Name] != nil {
		return 0, tufota.Errorf(tufota.EConflict, "delegation %s has published releases now; it cannot be removed", req.Name)
	}
	if err := checkTopChange(st, md, base, x); err != nil {
		return 0, err
	}
	if err := addServerTargetsSigs(st.root, md, s); err != nil {
		return 0, err
	}
	files, err := r.signChain(st.root, md, true, st, s)
	if err != nil {
		return 0, fmt.Errorf("publish targets v%d: %w", md.Signed.Version, err)
	}
	if err := r.writeChain(ctx, files); err != nil {
		return 0, fmt.Errorf("publish targets v%d: %w", md.Signed.Version, err)
	}
	r.log.InfoContext(ctx, "tuf delegation published with offline signatures", "role", req.Name, "targets_version", md.Signed.Version, "signatures", len(md.Signatures))
	return md.Signed.Version, nil
}

// checkTopChange checks that md, signed elsewhere, is exactly the current
// top-level targets (version base) with change x made, at version base+1:
// a moved repository is a stale payload (tufota.EConflict), anything else
// tufota.EInternal.
func checkTopChange(st *state, md *metadata.Metadata[metadata.TargetsType], base int64, x pendingDelegationExtra) error {
	if st.targets.Signed.Version != base {
		return staleError("targets metadata is at v%d, the payload was built on v%d", st.targets.Signed.Version, base)
	}
	if next := st.next(RoleTargets); md.Signed.Version != next {
		return staleError("the payload is targets v%d, but the next targets version is v%d", md.Signed.Version, next)
	}
	want := renewed(st.targets, md.Signed.Version, md.Signed.Expires)
	x.apply(want)
	if same, err := sameSigned(want, md); err != nil || !same {
		return errors.Join(err, tufota.Errorf(tufota.EInternal, "pending targets v%d changes more than delegation %s", md.Signed.Version, x.Name))
	}
	return nil
}

// publishRenewalLocked publishes md, the renewal of delegated role's
// metadata signed by its key holders: the role's current metadata at
// version base+1 with a new expiry and nothing else changed.
func (r *Repository) publishRenewalLocked(ctx context.Context, st *state, role string, md *metadata.Metadata[metadata.TargetsType], base int64, s Signers) (int64, error) {
	cur := st.delegated[role]
	if cur == nil || cur.Signed.Version != base {
		return 0, staleError("%s metadata is at v%d, the renewal was built on v%d", role, st.roleVersion(role), base)
	}
	if next := st.next(role); md.Signed.Version != next {
		return 0, staleError("the renewal is %s v%d, but the next %s version is v%d", role, md.Signed.Version, role, next)
	}
	want := renewed(cur, md.Signed.Version, md.Signed.Expires)
	if same, err := sameSigned(want, md); err != nil || !same {
		return 0, errors.Join(err, tufota.Errorf(tufota.EInternal, "pending renewal of %s v%d changes more than its version and expiry", role, md.Signed.Version))
	}
	return r.writeRoleLocked(ctx, st, role, md, nil, s)
}

// sameSigned reports whether a and b sign the same canonical bytes.
func sameSigned(a, b *metadata.Metadata[metadata.TargetsType]) (bool, error) {
	x, _, err := canonicalSigned(a)
	if err != nil {
		return false, err
	}
	y, _, err := canonicalSigned(b)
	if err != nil {
		return false, err
	}
	return bytes.Equal(x, y), nil
}

// Delegations returns the delegated targets roles of the current
// metadata, in the order clients search them.
func (r *Releases) Delegations(ctx context.Context) ([]Delegation, error) {
	st, err := r.repo.load(ctx)
	if err != nil {
		return nil, fmt.Errorf("list delegations: %w", err)
	}
	out := []Delegation{}
	if st.targets.Signed.Delegations != nil {
		for _, dr := range st.targets.Signed.Delegations.Roles {
			out = append(out, delegationOf(st, st.targets, dr.Name))
		}
	}
	return r.withPending(ctx, st, out)
}

// withPending marks the delegations in out that have a change waiting for
// signatures and appends the pending additions, with their signing status
// as recorded (a stale payload is rebuilt when it is next fetched).
func (r *Releases) withPending(ctx context.Context, st *state, out []Delegation) ([]Delegation, error) {
	rows, err := r.db.Query(ctx, `SELECT id FROM pending_metadata WHERE id LIKE 'delegation/%' ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("list pending delegations: %w", err)
	}
	ids, err := scanIDs(rows)
	if err != nil {
		return nil, fmt.Errorf("list pending delegations: %w", err)
	}
	for _, id := range ids {
		p, err := loadPending(ctx, r.db, id)
		if errors.Is(err, tufota.ErrNotFound) {
			continue // published or cancelled meanwhile
		}
		if err != nil {
			return nil, err
		}
		var x pendingDelegationExtra
		if err := json.Unmarshal(p.Extra, &x); err != nil {
			return nil, tufota.Errorf(tufota.EInternal, "pending %s: %v", p.ID, err)
		}
		md, err := p.targets()
		if err != nil {
			return nil, err
		}
		delegator := st.root
		kind := "add"
		switch {
		case p.Role != RoleTargets:
			kind = "renewal"
			if delegator, err = st.delegator(p.Role); err != nil {
				continue // the role is gone: nothing to show
			}
		case x.Update:
			kind = "key change"
		case x.Remove:
			kind = "removal"
		}
		status, _, err := r.statusOf(ctx, delegator, p, md)
		if err != nil {
			return nil, err
		}
		i := slices.IndexFunc(out, func(d Delegation) bool { return d.Name == strings.TrimPrefix(id, "delegation/") })
		if i < 0 {
			d := Delegation{Name: x.Name, Paths: x.Paths, Threshold: x.Threshold, TargetsVersion: p.Ver}
			for _, k := range x.Keys {
				if kid, err := k.ID(); err == nil {
					d.KeyIDs = append(d.KeyIDs, kid)
				}
			}
			out = append(out, d)
			i = len(out) - 1
		}
		out[i].Pending, out[i].Signing = kind, &status
	}
	return out, nil
}

// delegationOf describes role name as targets (the current top-level
// metadata, or one being signed) delegates it, with the role's published
// metadata in st.
func delegationOf(st *state, targets *metadata.Metadata[metadata.TargetsType], name string) Delegation {
	dr := roleIn(targets, name)
	d := Delegation{
		Name: dr.Name, Paths: slices.Clone(dr.Paths), KeyIDs: slices.Clone(dr.KeyIDs), Threshold: dr.Threshold,
		TargetsVersion: targets.Signed.Version,
	}
	if md := st.delegated[dr.Name]; md != nil {
		exp := md.Signed.Expires.UTC()
		d.Version, d.Expires, d.Targets = md.Signed.Version, &exp, len(md.Signed.Targets)
	}
	return d
}

// scanIDs reads one string column from rows and closes them, so that the
// caller can query again (SQLite has one connection).
func scanIDs(rows *sql.Rows) ([]string, error) {
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}
