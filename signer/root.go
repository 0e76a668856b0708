package signer

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/api"
	"github.com/tufota/tufota/storage"
)

// Root rotation and key lifecycle. A root change (new keys, revoked keys,
// thresholds, root expiry) is proposed as root version N+1 and kept
// pending in the state database. Root key holders fetch its canonical
// bytes (RootPayload), sign them offline and upload the signatures
// (SignRoot). Following the TUF specification (5.3.4), N+1 is published
// only when it carries the threshold of the root role of version N (the
// old keys) and the threshold of its own root role (the new keys); a
// client that trusts any older root then walks the chain N, N+1, ...
//
// Changing the online roles (snapshot, timestamp) names new key URIs the
// server opens itself (WithKeyOpener); when N+1 is published, snapshot
// and timestamp are re-signed with the new keys and the server signs with
// them from then on (Signers). If the change revokes targets keys so that
// the current targets metadata would no longer verify, the server re-signs
// it when it holds the new targets threshold; otherwise the change is
// refused up front.

const pendingRootID = "root"

// RootKeyAdd adds a public key to a role. URI is required for the online
// roles (snapshot, timestamp): the server opens it to sign with the key.
type RootKeyAdd struct {
	Role string        `json:"role"`
	Key  *metadata.Key `json:"key"`
	URI  string        `json:"uri,omitempty"`
}

// RootKeyRevoke removes a key from a role.
type RootKeyRevoke = api.RootKeyRevoke

// RootChange is a proposed root metadata change.
type RootChange struct {
	AddKeys    []RootKeyAdd    `json:"add_keys,omitempty"`
	RevokeKeys []RootKeyRevoke `json:"revoke_keys,omitempty"`
	Thresholds map[string]int  `json:"thresholds,omitempty"`
	// Expires is how long the new root stays valid ("8760h"); empty keeps
	// the repository's root expiry policy.
	Expires string `json:"expires,omitempty"`
}

// RootRole is one role's keys and threshold in a root.
type RootRole = api.RootRole

// RootSummary describes root metadata, and for a pending root what
// changes from the current one.
type RootSummary = api.RootSummary

// RootInfo is the current root and the pending change, if any.
type RootInfo struct {
	Current RootSummary     `json:"current"`
	Pending *SigningPayload `json:"pending,omitempty"`
}

type pendingRootExtra struct {
	// OnlineURIs maps keyid to the URI of a new snapshot/timestamp key.
	OnlineURIs map[string]string `json:"online_uris,omitempty"`
	// ResignTargets: the current targets metadata would not verify under
	// the new root (a revoked signer, a higher threshold) and the server
	// cannot re-sign it, so the ceremony also gathers targets signatures
	// over pendingResignID, published together with the root.
	ResignTargets bool `json:"resign_targets,omitempty"`
}

// pendingResignID is the targets metadata re-signed along with a root.
const pendingResignID = "targets/resign"

var topRoles = []string{RoleRoot, RoleTargets, RoleSnapshot, RoleTimestamp}

func summarize(root *metadata.Metadata[metadata.RootType]) RootSummary {
	s := RootSummary{Version: root.Signed.Version, Expires: root.Signed.Expires}
	for _, name := range topRoles {
		rr := root.Signed.Roles[name]
		if rr == nil {
			continue
		}
		keys := slices.Clone(rr.KeyIDs)
		sort.Strings(keys)
		s.Roles = append(s.Roles, RootRole{Role: name, Threshold: rr.Threshold, Keys: keys})
	}
	return s
}

// diffRoots lists what changes from old to new, one line per change.
func diffRoots(old, new *metadata.Metadata[metadata.RootType]) []string {
	var out []string
	for _, name := range topRoles {
		o, n := old.Signed.Roles[name], new.Signed.Roles[name]
		for _, k := range n.KeyIDs {
			if !slices.Contains(o.KeyIDs, k) {
				out = append(out, fmt.Sprintf("%s: add key %s", name, k))
			}
		}
		for _, k := range o.KeyIDs {
			if !slices.Contains(n.KeyIDs, k) {
				out = append(out, fmt.Sprintf("%s: revoke key %s", name, k))
			}
		}
		if o.Threshold != n.Threshold {
			out = append(out, fmt.Sprintf("%s: threshold %d -> %d", name, o.Threshold, n.Threshold))
		}
	}
	if !old.Signed.Expires.Equal(new.Signed.Expires) {
		out = append(out, fmt.Sprintf("root expires %s", new.Signed.Expires.Format(time.RFC3339)))
	}
	return out
}

// ProposeRoot records root version N+1 = the current root with ch
// applied, unsigned, and returns its signing status. Errors: a malformed
// or empty change, a threshold outside 1..keys, an online role the server
// could not sign, or a change that would orphan the current targets
// metadata is tufota.EInvalid; a root change already pending is
// tufota.EConflict (cancel it with CancelRoot).
func (r *Releases) ProposeRoot(ctx context.Context, ch RootChange, actor string) (SigningPayload, error) {
	st, unlock, err := r.lockedState(ctx)
	if err != nil {
		return SigningPayload{}, err
	}
	defer unlock()
	if p, err := loadPending(ctx, r.db, pendingRootID); err == nil {
		return SigningPayload{}, tufota.Errorf(tufota.EConflict, "root v%d is pending already (proposed by %s); sign it (tufota root sign) or cancel it (tufota root cancel)", p.Ver, p.CreatedBy)
	} else if !errors.Is(err, tufota.ErrNotFound) {
		return SigningPayload{}, err
	}
	rootData, err := st.root.ToBytes(false)
	if err != nil {
		return SigningPayload{}, err
	}
	nr, err := new(metadata.Metadata[metadata.RootType]).FromBytes(rootData)
	if err != nil {
		return SigningPayload{}, err
	}
	nr.ClearSignatures()
	nr.Signed.Version++
	exp := r.repo.expiry.Root
	if ch.Expires != "" {
		d, err := time.ParseDuration(ch.Expires)
		if err != nil || d < time.Hour || d > 10*365*24*time.Hour {
			return SigningPayload{}, tufota.Errorf(tufota.EInvalid, "root expiry %q: want a duration between 1h and 87600h", ch.Expires)
		}
		exp = d
	}
	nr.Signed.Expires = r.repo.expires(exp)

	signers := r.Signers()
	extra := pendingRootExtra{OnlineURIs: map[string]string{}}
	online := map[string]signature.Signer{RoleSnapshot: signers.Snapshot, RoleTimestamp: signers.Timestamp}
	for _, a := range ch.AddKeys {
		if !slices.Contains(topRoles, a.Role) {
			return SigningPayload{}, tufota.Errorf(tufota.EInvalid, "add key: unknown role %q (want root, targets, snapshot or timestamp)", a.Role)
		}
		if a.Key == nil {
			return SigningPayload{}, tufota.Errorf(tufota.EInvalid, "add key to %s: no key", a.Role)
		}
		if _, err := a.Key.ToPublicKey(); err != nil {
			return SigningPayload{}, tufota.Errorf(tufota.EInvalid, "add key to %s: %v", a.Role, err)
		}
		id, err := a.Key.ID()
		if err != nil {
			return SigningPayload{}, tufota.Errorf(tufota.EInvalid, "add key to %s: %v", a.Role, err)
		}
		if slices.Contains(nr.Signed.Roles[a.Role].KeyIDs, id) {
			return SigningPayload{}, tufota.Errorf(tufota.EInvalid, "add key: %s is a %s key already", id, a.Role)
		}
		if a.Role == RoleSnapshot || a.Role == RoleTimestamp {
			if a.URI == "" {
				return SigningPayload{}, tufota.Errorf(tufota.EInvalid, "add key to %s: an online role needs the key's URI, which the server opens to sign", a.Role)
			}
			if r.open == nil {
				return SigningPayload{}, tufota.Errorf(tufota.EInvalid, "add key to %s: this server cannot open new online keys", a.Role)
			}
			sv, err := r.open(ctx, a.URI)
			if err != nil {
				return SigningPayload{}, fmt.Errorf("add key to %s: open %s on the server: %w", a.Role, a.URI, err)
			}
			if kid, err := KeyID(sv); err != nil || kid != id {
				return SigningPayload{}, tufota.Errorf(tufota.EInvalid, "add key to %s: %s on the server is key %s, not %s", a.Role, a.URI, kid, id)
			}
			extra.OnlineURIs[id] = a.URI
			online[a.Role] = sv
		} else if a.URI != "" {
			return SigningPayload{}, tufota.Errorf(tufota.EInvalid, "add key to %s: only online roles take a URI; the server never holds an offline key", a.Role)
		}
		if err := nr.Signed.AddKey(a.Key, a.Role); err != nil {
			return SigningPayload{}, tufota.Errorf(tufota.EInvalid, "add key to %s: %v", a.Role, err)
		}
	}
	for _, rv := range ch.RevokeKeys {
		if !slices.Contains(topRoles, rv.Role) {
			return SigningPayload{}, tufota.Errorf(tufota.EInvalid, "revoke key: unknown role %q", rv.Role)
		}
		if err := nr.Signed.RevokeKey(rv.KeyID, rv.Role); err != nil {
			return SigningPayload{}, tufota.Errorf(tufota.EInvalid, "revoke key %s from %s: it is not a %s key", rv.KeyID, rv.Role, rv.Role)
		}
	}
	for role, n := range ch.Thresholds {
		rr, ok := nr.Signed.Roles[role]
		if !ok {
			return SigningPayload{}, tufota.Errorf(tufota.EInvalid, "threshold: unknown role %q", role)
		}
		rr.Threshold = n
	}
	for _, name := range topRoles {
		rr := nr.Signed.Roles[name]
		if rr.Threshold < 1 || rr.Threshold > len(rr.KeyIDs) {
			return SigningPayload{}, tufota.Errorf(tufota.EInvalid, "role %s: threshold %d must be between 1 and its %d key(s)", name, rr.Threshold, len(rr.KeyIDs))
		}
	}
	for _, role := range []string{RoleSnapshot, RoleTimestamp} {
		if n, need := countRoleSigners(nr, role, []signature.Signer{online[role]}); n < need {
			return SigningPayload{}, tufota.Errorf(tufota.EInvalid, "role %s: the server must hold %d of its keys to sign it online; add the new key with its URI", role, need)
		}
	}
	if len(diffRoots(st.root, nr)) == 0 {
		return SigningPayload{}, tufota.Errorf(tufota.EInvalid, "the root change changes nothing")
	}
	if st.bins != nil {
		o, n := st.root.Signed.Roles[RoleTargets], nr.Signed.Roles[RoleTargets]
		if o.Threshold != n.Threshold || !slices.Equal(slices.Sorted(slices.Values(o.KeyIDs)), slices.Sorted(slices.Values(n.KeyIDs))) {
			return SigningPayload{}, tufota.Errorf(tufota.EInvalid, "this repository uses hashed bins, whose delegation names the targets keys: changing the targets keys or threshold in a root change is not supported with hashed bins")
		}
	}
	var resign []byte
	if err := nr.VerifyDelegate(RoleTargets, st.targets); err != nil {
		if n, need := countRoleSigners(nr, RoleTargets, roleSigners(nr, RoleTargets, signers.Targets)); n < need {
			// Targets keys must re-sign the current targets along with
			// the root: same files, version+1.
			md := st.targets
			md.ClearSignatures()
			md.Signed.Version = st.next(RoleTargets)
			md.Signed.Expires = r.repo.expires(r.repo.expiry.Targets)
			if resign, err = md.ToBytes(false); err != nil {
				return SigningPayload{}, err
			}
			extra.ResignTargets = true
		}
	}
	mdJSON, err := nr.ToBytes(false)
	if err != nil {
		return SigningPayload{}, err
	}
	extraJSON, err := json.Marshal(extra)
	if err != nil {
		return SigningPayload{}, err
	}
	now := r.now().UTC().UnixNano()
	err = r.db.Tx(ctx, func(tx *storage.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO pending_metadata (id, role, base_version, version, metadata, extra, created_at, created_by, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`, pendingRootID, RoleRoot, st.root.Signed.Version, nr.Signed.Version, string(mdJSON), string(extraJSON), now, actor, now); err != nil {
			return err
		}
		details := map[string]string{"root_version": strconv.FormatInt(nr.Signed.Version, 10)}
		if resign == nil {
			return auditIn(ctx, tx, "root.update", details)
		}
		if err := deletePending(ctx, tx, pendingResignID); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO pending_metadata (id, role, base_version, version, metadata, extra, created_at, created_by, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`, pendingResignID, RoleTargets, st.targets.Signed.Version-1, st.targets.Signed.Version, string(resign), "{}", now, actor, now); err != nil {
			return err
		}
		details["targets_resign_version"] = strconv.FormatInt(st.targets.Signed.Version, 10)
		return auditIn(ctx, tx, "root.update", details)
	})
	if err != nil {
		if errors.Is(err, tufota.ErrConflict) {
			return SigningPayload{}, tufota.Errorf(tufota.EConflict, "a root change is pending already")
		}
		return SigningPayload{}, fmt.Errorf("record pending root: %w", err)
	}
	p, err := loadPending(ctx, r.db, pendingRootID)
	if err != nil {
		return SigningPayload{}, err
	}
	return r.rootPayload(ctx, st, p, nr, nil)
}

// pendingRoot loads the pending root; one built on a root that is no
// longer current is dropped (tufota.EConflict).
func (r *Releases) pendingRoot(ctx context.Context, st *state) (pendingRow, *metadata.Metadata[metadata.RootType], error) {
	p, err := loadPending(ctx, r.db, pendingRootID)
	if errors.Is(err, tufota.ErrNotFound) {
		return p, nil, tufota.Errorf(tufota.ENotFound, "no root change is pending (propose one with tufota root update)")
	}
	if err != nil {
		return p, nil, err
	}
	stale := ""
	if p.Base != st.root.Signed.Version {
		stale = fmt.Sprintf("the pending root v%d was built on root v%d but the repository is at root v%d", p.Ver, p.Base, st.root.Signed.Version)
	} else if rs, err := loadPending(ctx, r.db, pendingResignID); err == nil && rs.Base != st.targets.Signed.Version {
		stale = fmt.Sprintf("targets v%d was published after the root change was proposed, so the targets re-signing it carries is out of date", st.targets.Signed.Version)
	}
	if stale != "" {
		if err := r.CancelRoot(ctx); err != nil {
			return p, nil, err
		}
		return p, nil, staleError("%s; the change was dropped with its signatures: propose it again", stale)
	}
	nr, err := new(metadata.Metadata[metadata.RootType]).FromBytes(p.Metadata)
	if err != nil {
		return p, nil, tufota.Errorf(tufota.EInternal, "pending root: %v", err)
	}
	return p, nr, nil
}

func (r *Releases) rootPayload(ctx context.Context, st *state, p pendingRow, nr *metadata.Metadata[metadata.RootType], sigs []pendingSig) (SigningPayload, error) {
	payload, sum, err := canonicalSigned(nr)
	if err != nil {
		return SigningPayload{}, err
	}
	sum0 := summarize(nr)
	sum0.OldRoles = summarize(st.root).Roles
	sum0.Changes = diffRoots(st.root, nr)
	out := SigningPayload{Role: RoleRoot, Payload: payload, PayloadSHA256: sum, Root: &sum0, Status: rootStatus(st.root, nr, p, sigs, sum)}
	rp, md, rsigs, err := r.pendingResign(ctx)
	if err != nil || rp == nil {
		return out, err
	}
	tp, tsum, err := canonicalSigned(md)
	if err != nil {
		return SigningPayload{}, err
	}
	tst, err := r.targetsStatus(nr, *rp, md, rsigs)
	if err != nil {
		return SigningPayload{}, err
	}
	out.Status.TargetsNeeded = tst.Needed
	out.Targets = &SigningPayload{Role: RoleTargets, Payload: tp, PayloadSHA256: tsum, Status: tst}
	sum0.Changes = append(sum0.Changes, fmt.Sprintf("targets v%d re-signed under the new root (same files)", md.Signed.Version))
	return out, nil
}

func rootStatus(old, nr *metadata.Metadata[metadata.RootType], p pendingRow, sigs []pendingSig, sum string) SigningStatus {
	o, n := old.Signed.Roles[RoleRoot], nr.Signed.Roles[RoleRoot]
	st := SigningStatus{
		Role: RoleRoot, Version: p.Ver, BaseVersion: p.Base, Threshold: n.Threshold, OldThreshold: o.Threshold,
		Signatures: []Signer{}, PayloadSHA256: sum, Expires: nr.Signed.Expires, CreatedBy: p.CreatedBy, CreatedAt: p.CreatedAt,
	}
	keys := slices.Clone(o.KeyIDs)
	for _, k := range n.KeyIDs {
		if !slices.Contains(keys, k) {
			keys = append(keys, k)
		}
	}
	st.Keys = keys
	var inOld, inNew int
	for _, s := range sigs {
		if s.PayloadSHA256 != sum {
			continue
		}
		sg := Signer{KeyID: s.KeyID, SignedBy: s.SignedBy, SignedAt: s.CreatedAt}
		if slices.Contains(o.KeyIDs, s.KeyID) {
			sg.Roles = append(sg.Roles, "old root")
			inOld++
		}
		if slices.Contains(n.KeyIDs, s.KeyID) {
			sg.Roles = append(sg.Roles, "new root")
			inNew++
		}
		st.Signatures = append(st.Signatures, sg)
	}
	st.Needed, st.OldNeeded = max(0, n.Threshold-inNew), max(0, o.Threshold-inOld)
	return st
}

// RootInfo returns the current root and the pending change, if any.
func (r *Releases) RootInfo(ctx context.Context) (RootInfo, error) {
	st, unlock, err := r.lockedState(ctx)
	if err != nil {
		return RootInfo{}, err
	}
	defer unlock()
	info := RootInfo{Current: summarize(st.root)}
	p, nr, err := r.pendingRoot(ctx, st)
	switch {
	case errors.Is(err, tufota.ErrNotFound) || tufota.ErrorCode(err) == tufota.EConflict:
		return info, nil
	case err != nil:
		return info, err
	}
	sigs, err := loadSigs(ctx, r.db, p.ID)
	if err != nil {
		return info, err
	}
	pl, err := r.rootPayload(ctx, st, p, nr, sigs)
	if err != nil {
		return info, err
	}
	info.Pending = &pl
	return info, nil
}

// RootPayload returns the pending root's canonical bytes and summary;
// tufota.ENotFound if nothing is pending, tufota.EConflict if it went stale.
func (r *Releases) RootPayload(ctx context.Context) (SigningPayload, error) {
	st, unlock, err := r.lockedState(ctx)
	if err != nil {
		return SigningPayload{}, err
	}
	defer unlock()
	p, nr, err := r.pendingRoot(ctx, st)
	if err != nil {
		return SigningPayload{}, err
	}
	sigs, err := loadSigs(ctx, r.db, p.ID)
	if err != nil {
		return SigningPayload{}, err
	}
	return r.rootPayload(ctx, st, p, nr, sigs)
}

// CancelRoot drops the pending root change and its signatures;
// tufota.ENotFound if there is none.
func (r *Releases) CancelRoot(ctx context.Context) error {
	if _, err := loadPending(ctx, r.db, pendingRootID); err != nil {
		return err
	}
	return r.db.Tx(ctx, func(tx *storage.Tx) error {
		if err := deletePending(ctx, tx, pendingResignID); err != nil {
			return err
		}
		if err := deletePending(ctx, tx, pendingRootID); err != nil {
			return err
		}
		return auditIn(ctx, tx, "root.cancel", nil)
	})
}

// pendingResign loads the targets re-signing of a pending root, or nil.
func (r *Releases) pendingResign(ctx context.Context) (*pendingRow, *metadata.Metadata[metadata.TargetsType], []pendingSig, error) {
	p, err := loadPending(ctx, r.db, pendingResignID)
	if errors.Is(err, tufota.ErrNotFound) {
		return nil, nil, nil, nil
	}
	if err != nil {
		return nil, nil, nil, err
	}
	md, err := p.targets()
	if err != nil {
		return nil, nil, nil, err
	}
	sigs, err := loadSigs(ctx, r.db, p.ID)
	if err != nil {
		return nil, nil, nil, err
	}
	return &p, md, sigs, nil
}

// SignRoot adds one signature to the pending root N+1. A key of the old
// root role or of the new root role may sign (a key in both counts for
// both). When both thresholds are met, N+1.root.json is published and
// snapshot and timestamp re-signed (with the new online keys if they
// changed). Errors are those of SignRelease, for the root role.
func (r *Releases) SignRoot(ctx context.Context, up SignatureUpload, actor string) (SigningStatus, error) {
	if up.PayloadSHA256 == "" {
		return SigningStatus{}, tufota.Errorf(tufota.EInvalid, "payload_sha256 is required: the SHA-256 of the payload you signed")
	}
	st, unlock, err := r.lockedState(ctx)
	if err != nil {
		return SigningStatus{}, err
	}
	defer unlock()
	p, nr, err := r.pendingRoot(ctx, st)
	if err != nil {
		return SigningStatus{}, err
	}
	_, sum, err := canonicalSigned(nr)
	if err != nil {
		return SigningStatus{}, err
	}
	rp, rmd, rsigs, err := r.pendingResign(ctx)
	if err != nil {
		return SigningStatus{}, err
	}
	if rp != nil {
		if _, tsum, err := canonicalSigned(rmd); err != nil {
			return SigningStatus{}, err
		} else if up.PayloadSHA256 == tsum {
			return r.signResign(ctx, st, p, nr, *rp, rmd, rsigs, up, actor)
		}
	}
	if up.PayloadSHA256 != sum {
		return SigningStatus{}, staleError("the signature is over payload sha256 %s but the pending root v%d is sha256 %s: fetch it again and sign", up.PayloadSHA256, p.Ver, sum)
	}
	// Verify against whichever root lists the key as a root key.
	verifyWith := st.root
	if !slices.Contains(st.root.Signed.Roles[RoleRoot].KeyIDs, up.KeyID) {
		verifyWith = nr
	}
	if err := verifyOne(verifyWith, RoleRoot, nr, up); err != nil {
		if tufota.ErrorCode(err) == tufota.EForbidden {
			if _, ok := st.root.Signed.Keys[up.KeyID]; ok {
				err = tufota.Errorf(tufota.EForbidden, "key %s is not a root key of root v%d or v%d (in v%d it signs for: %s)", up.KeyID, st.root.Signed.Version, nr.Signed.Version, st.root.Signed.Version, rolesOfKey(st.root, up.KeyID))
			}
		}
		return SigningStatus{}, fmt.Errorf("sign root v%d: %w", nr.Signed.Version, err)
	}
	sigs, err := loadSigs(ctx, r.db, p.ID)
	if err != nil {
		return SigningStatus{}, err
	}
	for _, s := range sigs {
		if s.KeyID == up.KeyID {
			return SigningStatus{}, tufota.Errorf(tufota.EConflict, "key %s has already signed root v%d (by %s at %s)", up.KeyID, p.Ver, s.SignedBy, s.CreatedAt.Format(time.RFC3339))
		}
	}
	now := r.now().UTC()
	if err := r.insertSig(ctx, p, up, sum, actor, now, "root.sign"); err != nil {
		if errors.Is(err, tufota.ErrConflict) {
			return SigningStatus{}, tufota.Errorf(tufota.EConflict, "key %s has already signed root v%d", up.KeyID, p.Ver)
		}
		return SigningStatus{}, fmt.Errorf("sign root: record signature: %w", err)
	}
	sigs = append(sigs, pendingSig{KeyID: up.KeyID, Sig: up.Sig, PayloadSHA256: sum, SignedBy: actor, CreatedAt: now})
	return r.maybePublishRoot(ctx, st, p, nr, sigs, sum)
}

// signResign records a targets signature over the targets re-signing a
// pending root carries (verified against the new root's targets role).
func (r *Releases) signResign(ctx context.Context, st *state, p pendingRow, nr *metadata.Metadata[metadata.RootType], rp pendingRow, rmd *metadata.Metadata[metadata.TargetsType], rsigs []pendingSig, up SignatureUpload, actor string) (SigningStatus, error) {
	if err := verifyOne(nr, RoleTargets, rmd, up); err != nil {
		return SigningStatus{}, fmt.Errorf("sign targets v%d for root v%d: %w", rmd.Signed.Version, nr.Signed.Version, err)
	}
	for _, s := range rsigs {
		if s.KeyID == up.KeyID {
			return SigningStatus{}, tufota.Errorf(tufota.EConflict, "key %s has already signed targets v%d for root v%d", up.KeyID, rmd.Signed.Version, nr.Signed.Version)
		}
	}
	if err := r.insertSig(ctx, rp, up, up.PayloadSHA256, actor, r.now().UTC(), "root.sign"); err != nil {
		if errors.Is(err, tufota.ErrConflict) {
			return SigningStatus{}, tufota.Errorf(tufota.EConflict, "key %s has already signed targets v%d", up.KeyID, rmd.Signed.Version)
		}
		return SigningStatus{}, err
	}
	sigs, err := loadSigs(ctx, r.db, p.ID)
	if err != nil {
		return SigningStatus{}, err
	}
	_, sum, err := canonicalSigned(nr)
	if err != nil {
		return SigningStatus{}, err
	}
	return r.maybePublishRoot(ctx, st, p, nr, sigs, sum)
}

// maybePublishRoot publishes the pending root when both root thresholds,
// and the targets threshold of a carried re-signing, are met.
func (r *Releases) maybePublishRoot(ctx context.Context, st *state, p pendingRow, nr *metadata.Metadata[metadata.RootType], sigs []pendingSig, sum string) (SigningStatus, error) {
	status := rootStatus(st.root, nr, p, sigs, sum)
	rp, rmd, rsigs, err := r.pendingResign(ctx)
	if err != nil {
		return status, err
	}
	var resign *metadata.Metadata[metadata.TargetsType]
	if rp != nil {
		tst, err := r.targetsStatus(nr, *rp, rmd, rsigs)
		if err != nil {
			return status, err
		}
		status.TargetsNeeded = tst.Needed
		if tst.Needed > 0 {
			return status, nil
		}
		resign = rmd
		for _, sg := range tst.Signatures {
			for _, ps := range rsigs {
				if ps.KeyID == sg.KeyID {
					b, _ := hex.DecodeString(ps.Sig)
					resign.Signatures = append(resign.Signatures, metadata.Signature{KeyID: ps.KeyID, Signature: b})
				}
			}
		}
		for _, k := range roleSigners(nr, RoleTargets, r.Signers().Targets) {
			if id, err := KeyID(k); err == nil && !hasSig(resign.Signatures, id) {
				if _, err := resign.Sign(k); err != nil {
					return status, err
				}
			}
		}
	}
	if status.Needed > 0 || status.OldNeeded > 0 {
		return status, nil
	}
	for _, s := range sigs {
		b, _ := hex.DecodeString(s.Sig)
		nr.Signatures = append(nr.Signatures, metadata.Signature{KeyID: s.KeyID, Signature: b})
	}
	if err := r.publishRootLocked(ctx, st, p, nr, resign); err != nil {
		return status, fmt.Errorf("sign root v%d: signature recorded, thresholds met, but publish failed: %w", nr.Signed.Version, err)
	}
	status.Published = true
	return status, nil
}

// publishRootLocked writes N+1.root.json and re-signs the chain below it.
func (r *Releases) publishRootLocked(ctx context.Context, st *state, p pendingRow, nr *metadata.Metadata[metadata.RootType], resign *metadata.Metadata[metadata.TargetsType]) error {
	v := nr.Signed.Version
	if err := st.root.VerifyDelegate(RoleRoot, nr); err != nil {
		return tufota.Errorf(tufota.EInvalid, "root v%d lacks the old root's threshold: %v", v, err)
	}
	if err := nr.VerifyDelegate(RoleRoot, nr); err != nil {
		return tufota.Errorf(tufota.EInvalid, "root v%d lacks its own root threshold: %v", v, err)
	}
	var extra pendingRootExtra
	if err := json.Unmarshal(p.Extra, &extra); err != nil {
		return tufota.Errorf(tufota.EInternal, "pending root: %v", err)
	}
	s := r.Signers()
	opened := map[string]signature.SignerVerifier{}
	for id, uri := range extra.OnlineURIs {
		if r.open == nil {
			return tufota.Errorf(tufota.EInvalid, "this server cannot open new online keys")
		}
		sv, err := r.open(ctx, uri)
		if err != nil {
			return fmt.Errorf("open online key %s: %w", uri, err)
		}
		opened[id] = sv
	}
	for _, role := range []string{RoleSnapshot, RoleTimestamp} {
		rr := nr.Signed.Roles[role]
		cur := s.Snapshot
		if role == RoleTimestamp {
			cur = s.Timestamp
		}
		if n, _ := countRoleSigners(nr, role, []signature.Signer{cur}); n == 1 {
			continue
		}
		for _, id := range rr.KeyIDs {
			if sv, ok := opened[id]; ok {
				if role == RoleSnapshot {
					s.Snapshot = sv
				} else {
					s.Timestamp = sv
				}
				break
			}
		}
	}
	s.Targets = roleSigners(nr, RoleTargets, s.Targets)
	var targets *metadata.Metadata[metadata.TargetsType]
	presigned := resign != nil
	if presigned {
		targets = resign
	} else if err := nr.VerifyDelegate(RoleTargets, st.targets); err != nil {
		targets = st.targets // re-sign with the server's targets keys
		targets.Signed.Version = st.next(RoleTargets)
		targets.Signed.Expires = r.repo.expires(r.repo.expiry.Targets)
	}
	files, err := r.repo.signChain(nr, targets, presigned, st, s)
	if err != nil {
		return err
	}
	rootJSON, err := nr.ToBytes(true)
	if err != nil {
		return err
	}
	// The new root first: a client fetches N+1.root.json before timestamp.
	if err := r.repo.put(ctx, fmt.Sprintf("%d.root.json", v), rootJSON); err != nil {
		return err
	}
	if err := r.repo.writeChain(ctx, files); err != nil {
		return err
	}
	r.mu.Lock()
	r.signers.Snapshot, r.signers.Timestamp = s.Snapshot, s.Timestamp
	r.signers.Targets = roleSigners(nr, RoleTargets, r.signers.Targets)
	r.mu.Unlock()
	now := r.now().UTC().UnixNano()
	err = r.db.Tx(context.WithoutCancel(ctx), func(tx *storage.Tx) error {
		for id, uri := range extra.OnlineURIs {
			role := RoleSnapshot
			if slices.Contains(nr.Signed.Roles[RoleTimestamp].KeyIDs, id) {
				role = RoleTimestamp
			}
			if _, err := tx.Exec(ctx, `DELETE FROM online_keys WHERE role = ? AND keyid = ?`, role, id); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `INSERT INTO online_keys (role, keyid, uri, created_at) VALUES (?, ?, ?, ?)`, role, id, uri, now); err != nil {
				return err
			}
		}
		if err := deletePending(ctx, tx, pendingResignID); err != nil {
			return err
		}
		if err := deletePending(ctx, tx, pendingRootID); err != nil {
			return err
		}
		return auditIn(ctx, tx, "root.publish", map[string]string{"root_version": strconv.FormatInt(v, 10)})
	})
	if err != nil {
		return fmt.Errorf("root v%d published but not recorded: %w", v, err)
	}
	r.repo.log.InfoContext(ctx, "tuf root published", "root_version", v, "signatures", len(nr.Signatures))
	return nil
}

// RestoreOnlineKeys makes the server sign with the online keys a published
// root rotation introduced, after a restart: for snapshot and timestamp,
// when the configured key is not a key of the role in the current root,
// it opens the URI recorded for one that is. Call it once at startup.
func (r *Releases) RestoreOnlineKeys(ctx context.Context) error {
	_, rootData, err := r.repo.newestRoot(ctx)
	if err != nil {
		return err
	}
	root, err := new(metadata.Metadata[metadata.RootType]).FromBytes(rootData)
	if err != nil {
		return corrupt("root", err)
	}
	s := r.Signers()
	r.mu.Lock()
	r.signers.Targets = roleSigners(root, RoleTargets, r.signers.Targets)
	r.mu.Unlock()
	for _, role := range []string{RoleSnapshot, RoleTimestamp} {
		cur := s.Snapshot
		if role == RoleTimestamp {
			cur = s.Timestamp
		}
		if n, _ := countRoleSigners(root, role, []signature.Signer{cur}); n == 1 {
			continue
		}
		var uri string
		for _, id := range root.Signed.Roles[role].KeyIDs {
			err := r.db.QueryRow(ctx, `SELECT uri FROM online_keys WHERE role = ? AND keyid = ?`, role, id).Scan(&uri)
			if err == nil {
				break
			}
			if !errors.Is(err, tufota.ErrNotFound) {
				return fmt.Errorf("online keys: %w", err)
			}
		}
		if uri == "" || r.open == nil {
			return tufota.Errorf(tufota.EInvalid, "the configured %s key is not a %s key of root v%d and no rotated key is on record", role, role, root.Signed.Version)
		}
		sv, err := r.open(ctx, uri)
		if err != nil {
			return fmt.Errorf("open %s key %s: %w", role, uri, err)
		}
		r.mu.Lock()
		if role == RoleSnapshot {
			r.signers.Snapshot = sv
		} else {
			r.signers.Timestamp = sv
		}
		r.mu.Unlock()
	}
	return nil
}

// roleSigners keeps the signers that are keys of role in root (a revoked
// key the server still holds is no longer used).
func roleSigners(root *metadata.Metadata[metadata.RootType], role string, signers []signature.Signer) []signature.Signer {
	var out []signature.Signer
	for _, k := range signers {
		if id, err := KeyID(k); err == nil && slices.Contains(root.Signed.Roles[role].KeyIDs, id) {
			out = append(out, k)
		}
	}
	return out
}
