package signer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/storage"
)

// The key lifecycle of a product line. UpdateDelegation changes a
// published delegation's keys and threshold: the top-level targets
// metadata gets the new role definition (signed by the targets keys).
// When the role's published metadata would no longer verify under the new
// definition (a signing key revoked, the threshold raised), the same change
// carries a re-signing of that metadata (version+1, same releases) by the
// role's new keys, and both publish together, so devices never see a
// product line without valid metadata. A change that needs no offline
// signature (targets online, no re-signing) publishes at once.

// DelegationChange changes a published delegation's keys and threshold.
// It is also the JSON body of the server's delegation update API.
type DelegationChange struct {
	AddKeys    []*metadata.Key `json:"add_keys,omitempty"`
	RevokeKeys []string        `json:"revoke_keys,omitempty"`
	Threshold  int             `json:"threshold,omitempty"` // 0: unchanged
}

// pendingDelegationExtra is the extra column of a pending delegation add,
// key change or removal: the role as it will be (its name, for a removal).
type pendingDelegationExtra struct {
	DelegationRequest
	Update  bool     `json:"update,omitempty"`
	Remove  bool     `json:"remove,omitempty"`
	Revoked []string `json:"revoked,omitempty"`
}

// apply makes the change in top-level targets metadata md.
func (x pendingDelegationExtra) apply(md *metadata.Metadata[metadata.TargetsType]) {
	switch {
	case x.Remove:
		removeDelegation(md, x.Name)
	case x.Update:
		replaceDelegation(md, x.DelegationRequest)
	default:
		withDelegation(md, x.DelegationRequest)
	}
}

// removeDelegation takes role name, and the keys only it used, out of md.
func removeDelegation(md *metadata.Metadata[metadata.TargetsType], name string) {
	d := md.Signed.Delegations
	if d == nil {
		return
	}
	d.Roles = slices.DeleteFunc(d.Roles, func(r metadata.DelegatedRole) bool { return r.Name == name })
	dropUnusedKeys(d)
	if len(d.Roles) == 0 {
		md.Signed.Delegations = nil
	}
}

// RemoveDelegation removes delegation name, one made by mistake: a role
// with no published release and none pending (a role with releases stays,
// or devices could no longer find them). The paths it covered go back to
// the top-level targets role. Like an add, it publishes at once when the
// server holds the targets threshold and otherwise waits for the targets
// key holders (Delegation.Signing; DelegationPayload, SignDelegation).
func (r *Releases) RemoveDelegation(ctx context.Context, name, actor string) (Delegation, error) {
	st, dr, unlock, err := r.lockedRole(ctx, name, "remove")
	if err != nil {
		return Delegation{}, err
	}
	defer unlock()
	if md := st.delegated[name]; md != nil {
		return Delegation{}, tufota.Errorf(tufota.EConflict, "remove delegation %s: the role has published releases (%s v%d, %d file(s)); devices could no longer find them, so it stays", name, name, md.Signed.Version, len(md.Signed.Targets))
	}
	var pending []string
	rows, err := r.list(ctx, `WHERE role = ? AND state = ?`, name, StatePending)
	if err != nil {
		return Delegation{}, err
	}
	for _, rel := range rows {
		pending = append(pending, rel.Name+"@"+rel.Version)
	}
	if len(pending) > 0 {
		return Delegation{}, tufota.Errorf(tufota.EConflict, "remove delegation %s: releases wait for its signatures (%s); cancel them first (tufota release cancel)", name, strings.Join(pending, ", "))
	}
	if err := r.noPendingChange(ctx, name, "remove"); err != nil {
		return Delegation{}, err
	}
	d := delegationOf(st, st.targets, dr.Name)
	x := pendingDelegationExtra{DelegationRequest: DelegationRequest{Name: name}, Remove: true}
	base := st.targets.Signed.Version
	md := renewed(st.targets, st.next(RoleTargets), r.repo.expires(r.repo.expiry.Targets))
	x.apply(md)
	d.TargetsVersion = md.Signed.Version
	s := r.Signers()
	if n, need := countRoleSigners(st.root, RoleTargets, s.Targets); n >= need {
		files, err := r.repo.signChain(st.root, md, false, st, s)
		if err != nil {
			return Delegation{}, fmt.Errorf("remove delegation %s: %w", name, err)
		}
		if err := r.repo.writeChain(ctx, files); err != nil {
			return Delegation{}, fmt.Errorf("remove delegation %s: %w", name, err)
		}
		r.repo.log.InfoContext(ctx, "tuf delegation removed", "role", name, "targets_version", md.Signed.Version)
		if err := r.auditAlone(ctx, "delegation.remove", map[string]string{"role": name, "targets_version": strconv.FormatInt(md.Signed.Version, 10)}); err != nil {
			return Delegation{}, fmt.Errorf("remove delegation %s: published as targets v%d, but its audit entry failed: %w", name, md.Signed.Version, err)
		}
		return d, nil
	}
	extra, err := json.Marshal(x)
	if err != nil {
		return Delegation{}, err
	}
	mdJSON, err := md.ToBytes(false)
	if err != nil {
		return Delegation{}, err
	}
	id, now := pendingDelegationID(name), r.now().UTC().UnixNano()
	if err := r.insertPending(ctx, id, RoleTargets, base, md.Signed.Version, string(mdJSON), string(extra), actor, now,
		"delegation.remove", map[string]string{"role": name, "state": "pending", "targets_version": strconv.FormatInt(md.Signed.Version, 10)}); err != nil {
		return Delegation{}, fmt.Errorf("remove delegation %s: record the pending change: %w", name, err)
	}
	status, _, err := r.statusOf(ctx, st.root, pendingRow{ID: id, Role: RoleTargets, Ver: md.Signed.Version, Base: base, CreatedBy: actor}, md)
	if err != nil {
		return Delegation{}, err
	}
	d.Pending, d.Signing = "removal", &status
	return d, nil
}

func pendingRoleResignID(name string) string { return "delegation-role/" + name }

// delegatorOf is state.delegator for the delegations of targets metadata
// md (the current one or one being signed).
func delegatorOf(md *metadata.Metadata[metadata.TargetsType], role string) (*metadata.Metadata[metadata.RootType], error) {
	dr := roleIn(md, role)
	if dr == nil {
		return nil, tufota.Errorf(tufota.EConflict, "targets v%d delegates to no role %s", md.Signed.Version, role)
	}
	keys := map[string]*metadata.Key{}
	for _, id := range dr.KeyIDs {
		if k, ok := md.Signed.Delegations.Keys[id]; ok {
			keys[id] = k
		}
	}
	return &metadata.Metadata[metadata.RootType]{Signed: metadata.RootType{
		Version: md.Signed.Version,
		Keys:    keys,
		Roles:   map[string]*metadata.Role{role: {KeyIDs: slices.Clone(dr.KeyIDs), Threshold: dr.Threshold}},
	}}, nil
}

// replaceDelegation gives role req.Name in md req's keys and threshold (in
// place, so the search order stays) and drops keys no role uses any more.
func replaceDelegation(md *metadata.Metadata[metadata.TargetsType], req DelegationRequest) {
	d := md.Signed.Delegations
	for i := range d.Roles {
		if d.Roles[i].Name != req.Name {
			continue
		}
		d.Roles[i].KeyIDs, d.Roles[i].Threshold = nil, req.Threshold
		for _, k := range req.Keys {
			id, _ := k.ID() // checked by Validate
			d.Keys[id] = k
			d.Roles[i].KeyIDs = append(d.Roles[i].KeyIDs, id)
		}
	}
	dropUnusedKeys(d)
}

// changedRole applies ch to the current definition of role name in st.
func changedRole(st *state, name string, ch DelegationChange) (DelegationRequest, error) {
	dr := st.delegatedRole(name)
	if dr == nil {
		return DelegationRequest{}, tufota.Errorf(tufota.ENotFound, "update delegation %s: targets v%d delegates to no role %s", name, st.targets.Signed.Version, name)
	}
	if len(ch.AddKeys) == 0 && len(ch.RevokeKeys) == 0 && (ch.Threshold == 0 || ch.Threshold == dr.Threshold) {
		return DelegationRequest{}, tufota.Errorf(tufota.EInvalid, "update delegation %s: the change changes nothing", name)
	}
	req := DelegationRequest{Name: name, Paths: slices.Clone(dr.Paths), Threshold: dr.Threshold}
	if ch.Threshold != 0 {
		req.Threshold = ch.Threshold
	}
	for _, id := range ch.RevokeKeys {
		if !slices.Contains(dr.KeyIDs, id) {
			return DelegationRequest{}, tufota.Errorf(tufota.EInvalid, "update delegation %s: key %s is not a key of the role (its keys: %s)", name, id, strings.Join(dr.KeyIDs, ", "))
		}
	}
	for _, id := range dr.KeyIDs {
		if !slices.Contains(ch.RevokeKeys, id) {
			req.Keys = append(req.Keys, st.targets.Signed.Delegations.Keys[id])
		}
	}
	for i, k := range ch.AddKeys {
		id, err := checkPublicKey(k)
		if err != nil {
			return DelegationRequest{}, tufota.Errorf(tufota.EInvalid, "update delegation %s: added key %d: %v", name, i+1, err)
		}
		if slices.Contains(dr.KeyIDs, id) && !slices.Contains(ch.RevokeKeys, id) {
			return DelegationRequest{}, tufota.Errorf(tufota.EInvalid, "update delegation %s: key %s is a key of the role already", name, id)
		}
		req.Keys = append(req.Keys, k)
	}
	if err := req.Validate(); err != nil {
		return DelegationRequest{}, fmt.Errorf("update delegation %s: %w", name, err)
	}
	return req, nil
}

// UpdateDelegation adds and revokes keys of the published delegation name
// and changes its threshold. The change publishes at once when the server
// holds the targets threshold and the role's published metadata still
// verifies under the new keys; otherwise it waits (Delegation.Signing: the
// targets change; Delegation.Resign: the role's re-signing by its new
// keys) for DelegationPayload and SignDelegation, and publishes when both
// thresholds are met. Errors: an unknown role tufota.ENotFound, a bad
// change tufota.EInvalid, another change pending tufota.EConflict.
func (r *Releases) UpdateDelegation(ctx context.Context, name string, ch DelegationChange, actor string) (Delegation, error) {
	st, unlock, err := r.lockedState(ctx)
	if err != nil {
		return Delegation{}, fmt.Errorf("update delegation %s: %w", name, err)
	}
	defer unlock()
	req, err := changedRole(st, name, ch)
	if err != nil {
		return Delegation{}, err
	}
	if err := r.noPendingChange(ctx, name, "update"); err != nil {
		return Delegation{}, err
	}
	base := st.targets.Signed.Version
	md := renewed(st.targets, st.next(RoleTargets), r.repo.expires(r.repo.expiry.Targets))
	replaceDelegation(md, req)
	var resign *metadata.Metadata[metadata.TargetsType]
	if cur := st.delegated[name]; cur != nil && md.VerifyDelegate(name, cur) != nil {
		resign = renewed(cur, st.next(name), r.repo.expires(r.repo.expiry.Targets))
	}
	s := r.Signers()
	if n, need := countRoleSigners(st.root, RoleTargets, s.Targets); n >= need && resign == nil {
		files, err := r.repo.signChain(st.root, md, false, st, s)
		if err != nil {
			return Delegation{}, fmt.Errorf("update delegation %s: %w", name, err)
		}
		if err := r.repo.writeChain(ctx, files); err != nil {
			return Delegation{}, fmt.Errorf("update delegation %s: %w", name, err)
		}
		r.repo.log.InfoContext(ctx, "tuf delegation updated", "role", name, "keys", len(req.Keys), "threshold", req.Threshold, "targets_version", md.Signed.Version)
		if err := r.auditAlone(ctx, "delegation.update", map[string]string{"role": name, "targets_version": strconv.FormatInt(md.Signed.Version, 10)}); err != nil {
			return Delegation{}, fmt.Errorf("update delegation %s: published as targets v%d, but its audit entry failed: %w", name, md.Signed.Version, err)
		}
		return delegationOf(st, md, name), nil
	}

	// Pending: the targets change, and the role's re-signing if needed.
	extra, err := json.Marshal(pendingDelegationExtra{DelegationRequest: req, Update: true, Revoked: ch.RevokeKeys})
	if err != nil {
		return Delegation{}, err
	}
	mdJSON, err := md.ToBytes(false)
	if err != nil {
		return Delegation{}, err
	}
	now := r.now().UTC().UnixNano()
	err = r.db.Tx(ctx, func(tx *storage.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO pending_metadata (id, role, base_version, version, metadata, extra, created_at, created_by, updated_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`, pendingDelegationID(name), RoleTargets, base, md.Signed.Version, string(mdJSON), string(extra), now, actor, now); err != nil {
			return err
		}
		details := map[string]string{"role": name, "state": "pending", "targets_version": strconv.FormatInt(md.Signed.Version, 10)}
		if resign == nil {
			return auditIn(ctx, tx, "delegation.update", details)
		}
		rJSON, err := resign.ToBytes(false)
		if err != nil {
			return err
		}
		if _, err = tx.Exec(ctx, `INSERT INTO pending_metadata (id, role, base_version, version, metadata, extra, created_at, created_by, updated_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`, pendingRoleResignID(name), name, resign.Signed.Version-1, resign.Signed.Version, string(rJSON), "{}", now, actor, now); err != nil {
			return err
		}
		details["role_version"] = strconv.FormatInt(resign.Signed.Version, 10)
		return auditIn(ctx, tx, "delegation.update", details)
	})
	if err != nil {
		if errors.Is(err, tufota.ErrConflict) {
			return Delegation{}, tufota.Errorf(tufota.EConflict, "update delegation %s: a change waits for signatures already", name)
		}
		return Delegation{}, fmt.Errorf("update delegation %s: record the pending change: %w", name, err)
	}
	d := delegationOf(st, md, name)
	top, err := loadPending(ctx, r.db, pendingDelegationID(name))
	if err != nil {
		return Delegation{}, err
	}
	ts, err := r.targetsStatus(st.root, top, md, nil)
	if err != nil {
		return Delegation{}, err
	}
	d.Signing = &ts
	if resign != nil {
		rp, err := loadPending(ctx, r.db, pendingRoleResignID(name))
		if err != nil {
			return Delegation{}, err
		}
		deleg, err := delegatorOf(md, name)
		if err != nil {
			return Delegation{}, err
		}
		rs, err := r.targetsStatus(deleg, rp, resign, nil)
		if err != nil {
			return Delegation{}, err
		}
		d.Resign = &rs
	}
	r.repo.log.InfoContext(ctx, "tuf delegation change waits for signatures", "role", name, "targets_version", md.Signed.Version, "resign", resign != nil)
	return d, nil
}

// roleIn returns the delegated role name of targets metadata md, or nil.
func roleIn(md *metadata.Metadata[metadata.TargetsType], name string) *metadata.DelegatedRole {
	if md.Signed.Delegations == nil {
		return nil
	}
	for i := range md.Signed.Delegations.Roles {
		if md.Signed.Delegations.Roles[i].Name == name {
			return &md.Signed.Delegations.Roles[i]
		}
	}
	return nil
}

// pendingRoleResign loads the re-signing of role name that a pending change
// carries, if any (ok false), rebuilding it when the role's metadata moved
// on (then discarded says how many signatures went, else -1).
func (r *Releases) pendingRoleResign(ctx context.Context, st *state, name string) (p pendingRow, md *metadata.Metadata[metadata.TargetsType], discarded int, ok bool, err error) {
	p, err = loadPending(ctx, r.db, pendingRoleResignID(name))
	if errors.Is(err, tufota.ErrNotFound) {
		return p, nil, -1, false, nil
	}
	if err != nil {
		return p, nil, 0, false, err
	}
	discarded = -1
	if cur := st.delegated[name]; cur != nil && (cur.Signed.Version != p.Base || p.Ver != st.next(name)) {
		if p, discarded, err = r.rebuildPending(ctx, p, cur.Signed.Version, renewed(cur, st.next(name), r.repo.expires(r.repo.expiry.Targets)), "re-signing of "+name); err != nil {
			return p, nil, 0, false, err
		}
	}
	md, err = p.targets()
	if err != nil {
		return p, nil, 0, false, err
	}
	return p, md, discarded, true, nil
}

// signUpdate records one signature for the pending change of delegation
// name (top, md: the targets change, x its extra): over the role's
// re-signing if the payload hash says so, else over the targets change.
// It publishes both when both thresholds are met.
func (r *Releases) signUpdate(ctx context.Context, st *state, name string, top pendingRow, md *metadata.Metadata[metadata.TargetsType], discarded int, x pendingDelegationExtra, up SignatureUpload, actor string) (SigningStatus, error) {
	ref := "delegation " + name
	rp, rmd, rdisc, hasResign, err := r.pendingRoleResign(ctx, st, name)
	if err != nil {
		return SigningStatus{}, err
	}
	var deleg *metadata.Metadata[metadata.RootType]
	if hasResign {
		if deleg, err = delegatorOf(md, name); err != nil {
			return SigningStatus{}, err
		}
	}
	var topStatus, roleStatus SigningStatus
	var topSigs, roleSigs []pendingSig
	forRole := false
	if hasResign {
		_, rsum, err := canonicalSigned(rmd)
		if err != nil {
			return SigningStatus{}, err
		}
		forRole = up.PayloadSHA256 == rsum
	}
	if forRole {
		if roleStatus, roleSigs, err = r.recordSignature(ctx, st, deleg, rp, rmd, rdisc, up, actor, "re-signing of role "+name, "tufota delegation sign "+name); err != nil {
			return roleStatus, err
		}
		if topStatus, topSigs, err = r.statusOf(ctx, st.root, top, md); err != nil {
			return roleStatus, err
		}
	} else {
		if topStatus, topSigs, err = r.recordSignature(ctx, st, nil, top, md, discarded, up, actor, ref, "tufota delegation sign "+name); err != nil {
			return topStatus, err
		}
		if hasResign {
			if roleStatus, roleSigs, err = r.statusOf(ctx, deleg, rp, rmd); err != nil {
				return topStatus, err
			}
		}
	}
	signed := topStatus
	if forRole {
		signed = roleStatus
	}
	if topStatus.Needed > 0 || (hasResign && roleStatus.Needed > 0) {
		return signed, nil
	}
	attachSignatures(md, topStatus, topSigs)
	if hasResign {
		attachSignatures(rmd, roleStatus, roleSigs)
	}
	v, err := r.repo.publishUpdateLocked(ctx, st, top.Base, md, rp.Base, rmd, x.DelegationRequest, r.Signers())
	if err != nil {
		return signed, fmt.Errorf("sign %s: signature recorded, thresholds met, but publish failed: %w", ref, err)
	}
	err = r.db.Tx(context.WithoutCancel(ctx), func(tx *storage.Tx) error {
		if err := deletePending(ctx, tx, pendingDelegationID(name)); err != nil {
			return err
		}
		if err := deletePending(ctx, tx, pendingRoleResignID(name)); err != nil {
			return err
		}
		return auditIn(ctx, tx, "delegation.publish", map[string]string{"delegation": name, "role": RoleTargets, "version": strconv.FormatInt(v, 10)})
	})
	if err != nil {
		return signed, fmt.Errorf("sign %s: published as targets v%d, but its pending rows remain: %w", ref, v, err)
	}
	signed.Published = true
	return signed, nil
}

// statusOf is the signing status of pending row p under delegator, and
// the signatures recorded for it.
func (r *Releases) statusOf(ctx context.Context, delegator *metadata.Metadata[metadata.RootType], p pendingRow, md *metadata.Metadata[metadata.TargetsType]) (SigningStatus, []pendingSig, error) {
	sigs, err := loadSigs(ctx, r.db, p.ID)
	if err != nil {
		return SigningStatus{}, nil, err
	}
	st, err := r.targetsStatus(delegator, p, md, sigs)
	return st, sigs, err
}

// publishUpdateLocked publishes a delegation change: top-level targets md
// (targets signatures made elsewhere plus the server's own), exactly the
// targets at version base with req as role req.Name's new definition;
// and, if the change carries one, resign, the role's metadata at version
// roleBase+1 re-signed by its new keys. It writes N.ROLE.json, then
// targets, snapshot and timestamp. The caller holds the writer lock.
func (r *Repository) publishUpdateLocked(ctx context.Context, st *state, base int64, md *metadata.Metadata[metadata.TargetsType], roleBase int64, resign *metadata.Metadata[metadata.TargetsType], req DelegationRequest, s Signers) (int64, error) {
	if err := checkTopChange(st, md, base, pendingDelegationExtra{DelegationRequest: req, Update: true}); err != nil {
		return 0, err
	}
	if err := addServerTargetsSigs(st.root, md, s); err != nil {
		return 0, err
	}
	cur := st.delegated[req.Name]
	var roleFiles []metaFile
	switch {
	case resign != nil:
		if cur == nil || cur.Signed.Version != roleBase {
			return 0, staleError("%s metadata is at v%d, the re-signing was built on v%d", req.Name, st.roleVersion(req.Name), roleBase)
		}
		if next := st.next(req.Name); resign.Signed.Version != next {
			return 0, staleError("the re-signing is %s v%d, but the next %s version is v%d", req.Name, resign.Signed.Version, req.Name, next)
		}
		if same, err := sameSigned(renewed(cur, resign.Signed.Version, resign.Signed.Expires), resign); err != nil || !same {
			return 0, errors.Join(err, tufota.Errorf(tufota.EInternal, "pending re-signing of %s changes more than its version and expiry", req.Name))
		}
		if err := md.VerifyDelegate(req.Name, resign); err != nil {
			return 0, tufota.Errorf(tufota.EInvalid, "%s v%d does not verify under the new keys with the signatures collected: %v", req.Name, resign.Signed.Version, err)
		}
		data, err := resign.ToBytes(true)
		if err != nil {
			return 0, err
		}
		roleFiles = []metaFile{{name: fmt.Sprintf("%d.%s.json", resign.Signed.Version, req.Name), data: data}}
		st.snapshot.Signed.Meta[req.Name+".json"] = metaFileFor(resign.Signed.Version, data)
	case cur != nil:
		if err := md.VerifyDelegate(req.Name, cur); err != nil {
			return 0, tufota.Errorf(tufota.EConflict, "%s v%d does not verify under the changed delegation (a release published since the change was proposed?): cancel the change and propose it again", req.Name, cur.Signed.Version)
		}
	}
	files, err := r.signChain(st.root, md, true, st, s)
	if err != nil {
		return 0, fmt.Errorf("publish targets v%d: %w", md.Signed.Version, err)
	}
	if err := r.writeChain(ctx, append(roleFiles, files...)); err != nil {
		return 0, fmt.Errorf("publish targets v%d: %w", md.Signed.Version, err)
	}
	r.log.InfoContext(ctx, "tuf delegation change published", "role", req.Name, "targets_version", md.Signed.Version, "resigned", resign != nil)
	return md.Signed.Version, nil
}

// noPendingChange refuses (tufota.EConflict) a change of delegation name
// (verb: add, update, remove, renew) while another waits for signatures.
func (r *Releases) noPendingChange(ctx context.Context, name, verb string) error {
	p, err := loadPending(ctx, r.db, pendingDelegationID(name))
	if errors.Is(err, tufota.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	return tufota.Errorf(tufota.EConflict, "%s delegation %s: a change waits for signatures already (since %s, by %s): sign it (tufota delegation sign %s) or cancel it (tufota delegation cancel %s)",
		verb, name, p.CreatedAt.Format(time.RFC3339), p.CreatedBy, name, name)
}

// dropUnusedKeys removes from d the keys no role lists.
func dropUnusedKeys(d *metadata.Delegations) {
	for id := range d.Keys {
		if !slices.ContainsFunc(d.Roles, func(r metadata.DelegatedRole) bool { return slices.Contains(r.KeyIDs, id) }) {
			delete(d.Keys, id)
		}
	}
}

// lockedRole takes the writer lock, loads the state and finds delegated
// role name (tufota.ENotFound if targets delegates to no such role); verb
// names the operation in errors. The caller runs unlock when done.
func (r *Releases) lockedRole(ctx context.Context, name, verb string) (*state, *metadata.DelegatedRole, func(), error) {
	st, unlock, err := r.lockedState(ctx)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%s delegation %s: %w", verb, name, err)
	}
	dr := st.delegatedRole(name)
	if dr == nil {
		unlock()
		return nil, nil, nil, tufota.Errorf(tufota.ENotFound, "%s delegation %s: targets v%d delegates to no role %s", verb, name, st.targets.Signed.Version, name)
	}
	return st, dr, unlock, nil
}
