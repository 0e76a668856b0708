package signer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/secure-systems-lab/go-securesystemslib/cjson"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/api"
	"github.com/tufota/tufota/storage"
)

// Threshold signing ("signing where the key is"). When the server holds
// fewer targets keys than the targets threshold, Push records the release
// as pending and keeps, in the state database, the unsigned targets
// metadata that would publish it: the current targets plus the new target,
// version+1. Release engineers fetch it (ReleasePayload), sign its
// canonical bytes with their own keys and upload the signatures
// (SignRelease); the server verifies each one against the targets role of
// the trusted root and publishes once the threshold is met.
//
// Several releases may wait at once, each built on the targets version
// that was current when it was built. When one of them (or any other
// release) publishes, the others become stale: their payload is rebuilt on
// the new targets version the next time it is fetched or signed, and the
// signatures collected for the old payload are discarded, with an error
// that says so. Signatures are never carried over to different bytes.

// SignatureUpload is one signature over a pending payload: the TUF key ID
// of the key that made it, the signature in hex, and the SHA-256 of the
// payload that was signed (so that a signature over a payload that has
// since been rebuilt is refused as stale, not as a bad signature).
type SignatureUpload = api.SignatureUpload

// Signer is one signature collected for pending metadata.
type Signer = api.Signer

// SigningStatus says who signed pending metadata and how many signatures
// are still needed.
type SigningStatus = api.SigningStatus

// SigningPayload is what a signer fetches: the canonical JSON bytes to
// sign (the "signed" part of the metadata, exactly what TUF signs and
// verifies) and a summary. The signer must read what it signs from
// Payload itself, not trust the summary.
type SigningPayload struct {
	Role          string   `json:"role"`
	Payload       []byte   `json:"payload"` // canonical JSON, base64 in JSON
	PayloadSHA256 string   `json:"payload_sha256"`
	Release       *Release `json:"release,omitempty"`
	// Delegation is, for a pending delegation, the role it adds or the
	// role as a pending key change makes it.
	Delegation *DelegationRequest `json:"delegation,omitempty"`
	// Resign is, for a delegation key change that needs it, the role's
	// metadata (version+1, same releases) to be re-signed by its new
	// keys; it is uploaded through the same signature API.
	Resign *SigningPayload `json:"resign,omitempty"`
	// Targets is, for a root change that needs it, the current targets
	// metadata (version+1, same files) to be re-signed by the new root's
	// targets keys; it is uploaded through the root signature API.
	Targets *SigningPayload `json:"targets,omitempty"`
	Root    *RootSummary    `json:"root,omitempty"`
	Status  SigningStatus   `json:"status"`
}

// pendingRow is a row of pending_metadata.
type pendingRow struct {
	ID, Role, Name, Version string
	Base, Ver               int64
	Metadata, Extra         []byte
	CreatedAt, UpdatedAt    time.Time
	CreatedBy               string
}

// targets decodes the row's metadata as targets metadata (a release's,
// a delegation change's, a role's re-signing).
func (p pendingRow) targets() (*metadata.Metadata[metadata.TargetsType], error) {
	md, err := new(metadata.Metadata[metadata.TargetsType]).FromBytes(p.Metadata)
	if err != nil {
		return nil, tufota.Errorf(tufota.EInternal, "pending %s: %v", p.ID, err)
	}
	return md, nil
}

type pendingSig struct {
	KeyID, Sig, PayloadSHA256, SignedBy string
	CreatedAt                           time.Time
}

// pendingTargetsExtra is the extra column of a pending release.
type pendingTargetsExtra struct {
	Target Target `json:"target"`
	// SBOM is the release's SBOM target, published in the same targets
	// version as Target.
	SBOM *Target `json:"sbom,omitempty"`
	// VEX is the release's shipped VEX target, published with them.
	VEX *Target `json:"vex,omitempty"`
}

// targets returns the release's new targets: the firmware, then its SBOM,
// then its VEX.
func (x pendingTargetsExtra) targets() []Target {
	ts := []Target{x.Target}
	if x.SBOM != nil {
		ts = append(ts, *x.SBOM)
	}
	if x.VEX != nil {
		ts = append(ts, *x.VEX)
	}
	return ts
}

func pendingTargetsID(name, version string) string { return "targets/" + name + "@" + version }

// errStale marks a pending payload that no longer applies.
func staleError(format string, args ...any) error {
	return tufota.Errorf(tufota.EConflict, "stale payload: "+format, args...)
}

// canSignTargets reports whether signers hold the targets threshold of
// the current root.
func (r *Repository) canSignTargets(ctx context.Context, signers []signature.Signer) (bool, error) {
	_, rootData, err := r.newestRoot(ctx)
	if err != nil {
		return false, err
	}
	root, err := new(metadata.Metadata[metadata.RootType]).FromBytes(rootData)
	if err != nil {
		return false, corrupt("root", err)
	}
	n, need := countRoleSigners(root, RoleTargets, signers)
	return n >= need, nil
}

// pendingTargets builds the unsigned next targets metadata with add on top
// of st's targets; st is modified.
func (r *Repository) pendingTargets(ctx context.Context, st *state, add []Target) (*metadata.Metadata[metadata.TargetsType], error) {
	if err := checkTargets(add); err != nil {
		return nil, err
	}
	if st.bins != nil {
		return nil, tufota.Errorf(tufota.EInternal, "hashed-bin repository: the top-level targets metadata lists no targets")
	}
	md := st.targets
	if err := r.nextTargets(ctx, md, st.next(RoleTargets), add); err != nil {
		return nil, err
	}
	return md, nil
}

// publishSignedLocked publishes targets metadata md that carries
// signatures made elsewhere (plus those of the server's own targets keys
// in s), built on targets version base with add as its new files. The
// caller holds the writer lock. A repository whose targets moved past
// base is a stale payload (tufota.EConflict); md must be exactly the
// current targets plus add.
func (r *Repository) publishSignedLocked(ctx context.Context, st *state, md *metadata.Metadata[metadata.TargetsType], base int64, add []Target, s Signers) (int64, error) {
	if err := checkTargets(add); err != nil {
		return 0, fmt.Errorf("publish: %w", err)
	}
	if st.targets.Signed.Version != base {
		return 0, staleError("targets metadata is at v%d, the payload was built on v%d", st.targets.Signed.Version, base)
	}
	if next := st.next(RoleTargets); md.Signed.Version != next {
		return 0, staleError("the payload is targets v%d, but the next targets version is v%d (an interrupted publish left targets metadata of v%d or later in the store)", md.Signed.Version, next, md.Signed.Version)
	}
	// The signed metadata must change nothing but the new files.
	if err := checkOnlyAdds(RoleTargets, st.targets.Signed.Targets, md, add); err != nil {
		return 0, err
	}
	for _, t := range add {
		if err := r.checkStaged(ctx, t); err != nil {
			return 0, fmt.Errorf("publish: %w", err)
		}
	}
	if err := addServerTargetsSigs(st.root, md, s); err != nil {
		return 0, err
	}
	v := md.Signed.Version
	files, err := r.signChain(st.root, md, true, st, s)
	if err != nil {
		return 0, fmt.Errorf("publish targets v%d: %w", v, err)
	}
	for _, t := range add {
		if err := r.moveStaged(ctx, t); err != nil {
			return 0, fmt.Errorf("publish targets v%d: %w", v, err)
		}
	}
	if err := r.writeChain(ctx, files); err != nil {
		return 0, fmt.Errorf("publish targets v%d: %w", v, err)
	}
	r.log.InfoContext(ctx, "tuf targets published with offline signatures", "targets_version", v, "signatures", len(md.Signatures))
	return v, nil
}

func hasSig(sigs []metadata.Signature, keyID string) bool {
	for _, s := range sigs {
		if s.KeyID == keyID {
			return true
		}
	}
	return false
}

// canonicalSigned returns the canonical JSON of md's signed part: the
// bytes TUF signatures are made over.
func canonicalSigned[T metadata.Roles](md *metadata.Metadata[T]) ([]byte, string, error) {
	payload, err := cjson.EncodeCanonical(md.Signed)
	if err != nil {
		return nil, "", fmt.Errorf("canonical JSON: %w", err)
	}
	sum := sha256.Sum256(payload)
	return payload, hex.EncodeToString(sum[:]), nil
}

// verifyOne checks one uploaded signature over md against key keyID of
// role in root (the same check a TUF client makes, with go-tuf's own code).
// Malformed input is tufota.EInvalid, an unknown key or a key outside the
// role tufota.EForbidden, a signature that does not verify tufota.EInvalid.
func verifyOne[T metadata.Roles](root *metadata.Metadata[metadata.RootType], role string, md *metadata.Metadata[T], up SignatureUpload) error {
	if b, err := hex.DecodeString(up.KeyID); err != nil || len(b) != sha256.Size {
		return tufota.Errorf(tufota.EInvalid, "keyid %q is not 64 hex digits", up.KeyID)
	}
	sig, err := hex.DecodeString(up.Sig)
	if err != nil || len(sig) == 0 || len(sig) > 4096 {
		return tufota.Errorf(tufota.EInvalid, "sig is not a hex signature of 1 to 4096 bytes")
	}
	key, ok := root.Signed.Keys[up.KeyID]
	if !ok {
		return tufota.Errorf(tufota.EForbidden, "key %s is not a key of this repository (root v%d lists no such key)", up.KeyID, root.Signed.Version)
	}
	rr, ok := root.Signed.Roles[role]
	if !ok || !slices.Contains(rr.KeyIDs, up.KeyID) {
		return tufota.Errorf(tufota.EForbidden, "key %s is not a %s key (in root v%d it signs for: %s)", up.KeyID, role, root.Signed.Version, rolesOfKey(root, up.KeyID))
	}
	one := &metadata.Metadata[metadata.RootType]{Signed: metadata.RootType{
		Keys:  map[string]*metadata.Key{up.KeyID: key},
		Roles: map[string]*metadata.Role{role: {KeyIDs: []string{up.KeyID}, Threshold: 1}},
	}}
	probe := &metadata.Metadata[T]{Signed: md.Signed, Signatures: []metadata.Signature{{KeyID: up.KeyID, Signature: sig}}}
	if err := one.VerifyDelegate(role, probe); err != nil {
		return tufota.Errorf(tufota.EInvalid, "signature by key %s does not verify over the %s payload (sha256 %s): %v", up.KeyID, role, up.PayloadSHA256, err)
	}
	return nil
}

func rolesOfKey(root *metadata.Metadata[metadata.RootType], keyID string) string {
	var roles []string
	for name, rr := range root.Signed.Roles {
		if slices.Contains(rr.KeyIDs, keyID) {
			roles = append(roles, name)
		}
	}
	sort.Strings(roles)
	if len(roles) == 0 {
		return "no role"
	}
	return fmt.Sprint(roles)
}

// --- pending rows ---------------------------------------------------------

func loadPending(ctx context.Context, q storage.Querier, id string) (pendingRow, error) {
	var (
		p                pendingRow
		md, extra        string
		created, updated int64
	)
	err := q.QueryRow(ctx, `SELECT id, role, release_name, release_version, base_version, version, metadata, extra, created_at, created_by, updated_at
		FROM pending_metadata WHERE id = ?`, id).Scan(&p.ID, &p.Role, &p.Name, &p.Version, &p.Base, &p.Ver, &md, &extra, &created, &p.CreatedBy, &updated)
	if err != nil {
		if errors.Is(err, tufota.ErrNotFound) {
			return p, tufota.Errorf(tufota.ENotFound, "nothing pending for %s", id)
		}
		return p, fmt.Errorf("load pending %s: %w", id, err)
	}
	p.Metadata, p.Extra = []byte(md), []byte(extra)
	p.CreatedAt, p.UpdatedAt = time.Unix(0, created).UTC(), time.Unix(0, updated).UTC()
	return p, nil
}

func loadSigs(ctx context.Context, q storage.Querier, id string) ([]pendingSig, error) {
	rows, err := q.Query(ctx, `SELECT keyid, sig, payload_sha256, signed_by, created_at FROM pending_signatures WHERE pending_id = ? ORDER BY created_at, keyid`, id)
	if err != nil {
		return nil, fmt.Errorf("load signatures of %s: %w", id, err)
	}
	defer rows.Close()
	var out []pendingSig
	for rows.Next() {
		var s pendingSig
		var at int64
		if err := rows.Scan(&s.KeyID, &s.Sig, &s.PayloadSHA256, &s.SignedBy, &at); err != nil {
			return nil, fmt.Errorf("load signatures of %s: %w", id, err)
		}
		s.CreatedAt = time.Unix(0, at).UTC()
		out = append(out, s)
	}
	return out, rows.Err()
}

func deletePending(ctx context.Context, q storage.Querier, id string) error {
	if _, err := q.Exec(ctx, `DELETE FROM pending_signatures WHERE pending_id = ?`, id); err != nil {
		return fmt.Errorf("delete signatures of %s: %w", id, err)
	}
	if _, err := q.Exec(ctx, `DELETE FROM pending_metadata WHERE id = ?`, id); err != nil {
		return fmt.Errorf("delete pending %s: %w", id, err)
	}
	return nil
}

// --- pending releases -----------------------------------------------------

// createPending records the unsigned targets metadata that publishes ts: a
// release's firmware target, then optionally its SBOM and VEX targets
// (told apart by their paths' file names).
// The row is written with q (the transaction that inserts the release).
func (r *Releases) createPending(ctx context.Context, q storage.Querier, role string, ts []Target, actor string) (SigningStatus, error) {
	if len(ts) == 0 || len(ts) > 3 {
		return SigningStatus{}, tufota.Errorf(tufota.EInternal, "pending release with %d targets", len(ts))
	}
	x := pendingTargetsExtra{Target: ts[0]}
	for i := 1; i < len(ts); i++ {
		if strings.HasSuffix(ts[i].Path, "/"+VEXFileName) {
			x.VEX = &ts[i]
		} else {
			x.SBOM = &ts[i]
		}
	}
	t := ts[0]
	st, err := r.repo.load(ctx)
	if err != nil {
		return SigningStatus{}, err
	}
	delegator, err := st.delegator(role)
	if err != nil {
		return SigningStatus{}, err
	}
	md, base, err := r.repo.pendingPayload(ctx, st, role, x.targets())
	if err != nil {
		return SigningStatus{}, err
	}
	mdJSON, err := md.ToBytes(false)
	if err != nil {
		return SigningStatus{}, fmt.Errorf("encode pending targets: %w", err)
	}
	extra, err := json.Marshal(x)
	if err != nil {
		return SigningStatus{}, err
	}
	name, version, _ := splitTargetRef(t.Path)
	now := r.now().UTC().UnixNano()
	id := pendingTargetsID(name, version)
	if _, err := q.Exec(ctx, `INSERT INTO pending_metadata (id, role, release_name, release_version, base_version, version, metadata, extra, created_at, created_by, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, id, role, name, version, base, md.Signed.Version, string(mdJSON), string(extra), now, actor, now); err != nil {
		return SigningStatus{}, fmt.Errorf("record pending targets: %w", err)
	}
	p, err := loadPending(ctx, q, id)
	if err != nil {
		return SigningStatus{}, err
	}
	return r.targetsStatus(delegator, p, md, nil)
}

// splitTargetRef returns NAME and VERSION of "NAME/VERSION/FILE".
func splitTargetRef(p string) (name, version string, ok bool) {
	var parts [3]string
	n := 0
	start := 0
	for i := 0; i <= len(p) && n < 3; i++ {
		if i == len(p) || p[i] == '/' {
			parts[n] = p[start:i]
			n++
			start = i + 1
		}
	}
	return parts[0], parts[1], n >= 2
}

// targetsStatus summarises a pending release's signatures under the keys
// and threshold of its role (p.Role) in delegator (see state.delegator).
func (r *Releases) targetsStatus(delegator *metadata.Metadata[metadata.RootType], p pendingRow, md *metadata.Metadata[metadata.TargetsType], sigs []pendingSig) (SigningStatus, error) {
	_, sum, err := canonicalSigned(md)
	if err != nil {
		return SigningStatus{}, err
	}
	rr, ok := delegator.Signed.Roles[p.Role]
	if !ok {
		return SigningStatus{}, tufota.Errorf(tufota.EInternal, "pending %s: no role %s", p.ID, p.Role)
	}
	st := SigningStatus{
		Role: p.Role, Version: p.Ver, BaseVersion: p.Base, Threshold: rr.Threshold,
		Signatures: []Signer{}, Keys: slices.Clone(rr.KeyIDs), PayloadSHA256: sum,
		Expires: md.Signed.Expires, CreatedBy: p.CreatedBy, CreatedAt: p.CreatedAt,
	}
	have := map[string]bool{}
	for _, s := range sigs {
		if !slices.Contains(rr.KeyIDs, s.KeyID) || s.PayloadSHA256 != sum {
			continue // revoked since, or over an older payload
		}
		have[s.KeyID] = true
		st.Signatures = append(st.Signatures, Signer{KeyID: s.KeyID, SignedBy: s.SignedBy, SignedAt: s.CreatedAt, Roles: []string{p.Role}})
	}
	for _, k := range r.Signers().Targets {
		if k == nil || p.Role != RoleTargets { // the server holds no delegated key
			continue
		}
		if id, err := KeyID(k); err == nil && slices.Contains(rr.KeyIDs, id) && !have[id] {
			have[id] = true
			st.ServerKeys = append(st.ServerKeys, id)
		}
	}
	st.Needed = max(0, rr.Threshold-len(have))
	return st, nil
}

// releaseStatus returns the signing status of a pending release;
// tufota.ENotFound if it has no pending metadata.
func (r *Releases) releaseStatus(ctx context.Context, name, version string) (SigningStatus, error) {
	p, err := loadPending(ctx, r.db, pendingTargetsID(name, version))
	if err != nil {
		return SigningStatus{}, err
	}
	md, err := p.targets()
	if err != nil {
		return SigningStatus{}, err
	}
	sigs, err := loadSigs(ctx, r.db, p.ID)
	if err != nil {
		return SigningStatus{}, err
	}
	st, err := r.repo.load(ctx)
	if err != nil {
		return SigningStatus{}, err
	}
	delegator, err := st.delegator(p.Role)
	if err != nil {
		return SigningStatus{}, err
	}
	return r.targetsStatus(delegator, p, md, sigs)
}

// pendingRelease loads the pending metadata of NAME@VERSION under the
// writer lock, rebuilding it first if the targets moved on (then rebuilt
// reports how many signatures were discarded, or -1 if none).
func (r *Releases) pendingRelease(ctx context.Context, st *state, name, version string) (p pendingRow, md *metadata.Metadata[metadata.TargetsType], discarded int, err error) {
	ref := name + "@" + version
	if st.bins != nil {
		return p, nil, 0, errBinsOffline("release " + ref)
	}
	p, err = loadPending(ctx, r.db, pendingTargetsID(name, version))
	if errors.Is(err, tufota.ErrNotFound) {
		rel, gerr := r.Get(ctx, name, version)
		if gerr != nil {
			return p, nil, 0, gerr
		}
		if rel.State == StatePublished {
			return p, nil, 0, tufota.Errorf(tufota.EConflict, "release %s is published already (targets v%d); there is nothing to sign", ref, rel.TargetsVersion)
		}
		return p, nil, 0, tufota.Errorf(tufota.ENotFound, "release %s waits for no signatures", ref)
	}
	if err != nil {
		return p, nil, 0, err
	}
	discarded = -1
	// Rebuilt when the role moved on, or when its next version is taken
	// by a file an interrupted publish left in the store.
	if cur := st.roleVersion(p.Role); p.Base != cur || p.Ver != st.next(p.Role) {
		var extra pendingTargetsExtra
		if err := json.Unmarshal(p.Extra, &extra); err != nil {
			return p, nil, 0, tufota.Errorf(tufota.EInternal, "pending %s: %v", p.ID, err)
		}
		if st.published(extra.Target.Path) {
			return p, nil, 0, tufota.Errorf(tufota.EConflict, "release %s is published already (%s v%d); there is nothing to sign", ref, p.Role, cur)
		}
		fresh, err := r.repo.load(ctx) // a private copy: pendingPayload modifies it
		if err != nil {
			return p, nil, 0, err
		}
		nmd, _, err := r.repo.pendingPayload(ctx, fresh, p.Role, extra.targets())
		if err != nil {
			return p, nil, 0, fmt.Errorf("rebuild pending %s metadata of %s (cancel it with tufota release cancel %s and push it again): %w", p.Role, ref, ref, err)
		}
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

// ReleasePayload returns what a release engineer signs to publish the
// pending release NAME@VERSION. If another release published since the
// payload was built, it is rebuilt on the current targets first and the
// signatures collected for the old payload are discarded. A published
// release is tufota.EConflict; an unknown one tufota.ENotFound.
func (r *Releases) ReleasePayload(ctx context.Context, name, version string) (SigningPayload, error) {
	st, unlock, err := r.lockedState(ctx)
	if err != nil {
		return SigningPayload{}, err
	}
	defer unlock()
	p, md, _, err := r.pendingRelease(ctx, st, name, version)
	if err != nil {
		return SigningPayload{}, err
	}
	return r.releasePayload(ctx, st, p, md)
}

func (r *Releases) releasePayload(ctx context.Context, st *state, p pendingRow, md *metadata.Metadata[metadata.TargetsType]) (SigningPayload, error) {
	sp, err := r.payloadOf(ctx, st, p, md)
	if err != nil {
		return SigningPayload{}, err
	}
	rels, err := r.list(ctx, `WHERE name = ? AND version = ?`, p.Name, p.Version)
	if err != nil {
		return SigningPayload{}, err
	}
	var rel *Release
	if len(rels) == 1 {
		rel = &rels[0]
		rel.TargetsVersion = p.Ver
	}
	sp.Release = rel
	return sp, nil
}

// SignRelease adds one signature to the pending release NAME@VERSION and
// publishes it when the targets threshold is met (counting the server's
// own targets keys, if it holds any). It returns the signing status
// (Published true once live).
//
// Errors, each leaving the collected signatures as they were: malformed
// input or a signature that does not verify is tufota.EInvalid; a key that
// is not in the repository, or not a targets key, tufota.EForbidden; a key
// that has signed already tufota.EConflict; a signature over a payload
// that was since rebuilt (another release published first) tufota.EConflict
// naming the stale payload (the payload is rebuilt, earlier signatures are
// discarded, everyone signs again); a published release tufota.EConflict.
// A publish that fails and leaves the release out of signed metadata is
// rolled back as after a crash (see Reconcile): the signatures that met
// the threshold are discarded and the key holders sign again.
// SignRelease is serialised with the repository's other writers.
func (r *Releases) SignRelease(ctx context.Context, name, version string, up SignatureUpload, actor string) (SigningStatus, error) {
	ref := name + "@" + version
	if up.PayloadSHA256 == "" {
		return SigningStatus{}, tufota.Errorf(tufota.EInvalid, "payload_sha256 is required: the SHA-256 of the payload you signed")
	}
	st, unlock, err := r.lockedState(ctx)
	if err != nil {
		return SigningStatus{}, err
	}
	defer unlock()
	p, md, discarded, err := r.pendingRelease(ctx, st, name, version)
	if err != nil {
		return SigningStatus{}, err
	}
	status, sigs, err := r.recordSignature(ctx, st, nil, p, md, discarded, up, actor, ref, "tufota release sign "+ref)
	if err != nil || status.Needed > 0 {
		return status, err
	}

	// Threshold met: publish.
	var extra pendingTargetsExtra
	if err := json.Unmarshal(p.Extra, &extra); err != nil {
		return status, tufota.Errorf(tufota.EInternal, "pending %s: %v", p.ID, err)
	}
	attachSignatures(md, status, sigs)
	var v int64
	if p.Role == RoleTargets {
		v, err = r.repo.publishSignedLocked(ctx, st, md, p.Base, extra.targets(), r.Signers())
	} else {
		v, err = r.repo.publishDelegatedLocked(ctx, st, p.Role, md, p.Base, extra.targets(), r.Signers())
	}
	if err != nil {
		return r.signPublishFailed(context.WithoutCancel(ctx), status, name, version, extra.Target.Path, err)
	}
	if err := r.repo.step("mark " + ref + " published"); err != nil {
		return status, fmt.Errorf("sign %s: published as targets v%d but not recorded (Reconcile fixes this): %w", ref, v, err)
	}
	if err := r.markPublished(context.WithoutCancel(ctx), name, version, p.Role, v, r.now().UTC()); err != nil {
		return status, fmt.Errorf("sign %s: published as targets v%d but not recorded (Reconcile fixes this): %w", ref, v, err)
	}
	status.Published = true
	return status, nil
}

// signPublishFailed settles a pending release whose threshold-meeting
// signature started a publish that returned perr; the caller holds the
// writer lock. Live in signed metadata after all, it is recorded
// published. Otherwise the publish is rolled back as Reconcile does after
// a crash (blobs back to staging, the signatures that met the threshold
// discarded, so that the release asks for them again instead of waiting
// with none needed). When the repository cannot be read, it is left to
// Reconcile.
func (r *Releases) signPublishFailed(ctx context.Context, status SigningStatus, name, version, path string, perr error) (SigningStatus, error) {
	ref := name + "@" + version
	st, err := r.repo.load(ctx)
	if err != nil {
		return status, fmt.Errorf("sign %s: signature recorded, threshold met, but publish failed: %w (and the repository cannot be read: %v)", ref, perr, err)
	}
	rel, err := r.Get(ctx, name, version)
	if err != nil {
		return status, fmt.Errorf("sign %s: signature recorded, threshold met, but publish failed: %w", ref, errors.Join(perr, err))
	}
	if st.published(path) {
		v := st.roleVersion(rel.Role)
		if err := r.markPublished(ctx, name, version, rel.Role, v, r.now().UTC()); err != nil {
			return status, fmt.Errorf("sign %s: publish reported an error but the release is live as %s v%d, and recording it failed (Reconcile fixes this): %w", ref, rel.Role, v, errors.Join(perr, err))
		}
		r.repo.log.WarnContext(ctx, "publish reported an error but the release is live; recorded as published", "release", ref, "role", rel.Role, "version", v, "err", perr)
		status.Published = true
		return status, nil
	}
	if err := r.rollBack(ctx, st, rel); err != nil {
		return status, fmt.Errorf("sign %s: signature recorded, threshold met, but publish failed, and rolling it back failed (Reconcile at the next start retries): %w", ref, errors.Join(perr, err))
	}
	return status, fmt.Errorf("sign %s: threshold met, but publish failed and was rolled back; the signatures that met the threshold were discarded: fetch the payload and sign again (tufota release sign %s): %w", ref, ref, perr)
}

// recordSignature checks one uploaded signature over the pending metadata
// md of row p (ref names it in errors, resign is the command that signs it
// again) and records it. It returns the signing status and every
// signature now recorded; status.Needed 0 means the threshold is met. The
// caller holds the writer lock; discarded is what pendingRelease (or
// pendingDelegation) reported.
//
// delegator (nil: the current one, st.delegator) holds the keys and
// threshold the signature is checked against: a delegation change checks
// the role's re-signing against the role as it will be.
func (r *Releases) recordSignature(ctx context.Context, st *state, delegator *metadata.Metadata[metadata.RootType], p pendingRow, md *metadata.Metadata[metadata.TargetsType], discarded int, up SignatureUpload, actor, ref, resign string) (SigningStatus, []pendingSig, error) {
	_, sum, err := canonicalSigned(md)
	if err != nil {
		return SigningStatus{}, nil, err
	}
	if up.PayloadSHA256 != sum {
		if discarded >= 0 {
			return SigningStatus{}, nil, staleError("other metadata was published after the payload of %s was built; it was rebuilt as %s v%d (sha256 %s) and the %d signature(s) collected for the old payload were discarded: fetch it again and sign (%s)",
				ref, p.Role, p.Ver, sum, discarded, resign)
		}
		return SigningStatus{}, nil, staleError("the signature is over payload sha256 %s but %s now waits for %s v%d (sha256 %s): fetch it again and sign (%s)",
			up.PayloadSHA256, ref, p.Role, p.Ver, sum, resign)
	}
	if delegator == nil {
		if delegator, err = st.delegator(p.Role); err != nil {
			return SigningStatus{}, nil, err
		}
	}
	if rr := delegator.Signed.Roles[p.Role]; p.Role != RoleTargets && (rr == nil || !slices.Contains(rr.KeyIDs, up.KeyID)) {
		var keys []string
		if rr != nil {
			keys = rr.KeyIDs
		}
		return SigningStatus{}, nil, tufota.Errorf(tufota.EForbidden, "sign %s: key %s is not a key of delegated role %s (its keys: %s)",
			ref, up.KeyID, p.Role, strings.Join(keys, ", "))
	}
	if err := verifyOne(delegator, p.Role, md, up); err != nil {
		return SigningStatus{}, nil, fmt.Errorf("sign %s: %w", ref, err)
	}
	sigs, err := loadSigs(ctx, r.db, p.ID)
	if err != nil {
		return SigningStatus{}, nil, err
	}
	for _, s := range sigs {
		if s.KeyID == up.KeyID {
			return SigningStatus{}, nil, tufota.Errorf(tufota.EConflict, "key %s has already signed %s (%s v%d, by %s at %s)", up.KeyID, ref, p.Role, p.Ver, s.SignedBy, s.CreatedAt.Format(time.RFC3339))
		}
	}
	for _, k := range r.Signers().Targets {
		if id, err := KeyID(k); err == nil && id == up.KeyID && p.Role == RoleTargets {
			return SigningStatus{}, nil, tufota.Errorf(tufota.EConflict, "key %s is held by the server, which signs with it itself", up.KeyID)
		}
	}
	now := r.now().UTC()
	action := "delegation.sign"
	if strings.HasPrefix(p.ID, "targets/") {
		action = "release.sign"
	}
	if err := r.insertSig(ctx, p, up, sum, actor, now, action); err != nil {
		if errors.Is(err, tufota.ErrConflict) {
			return SigningStatus{}, nil, tufota.Errorf(tufota.EConflict, "key %s has already signed %s", up.KeyID, ref)
		}
		return SigningStatus{}, nil, fmt.Errorf("sign %s: record signature: %w", ref, err)
	}
	sigs = append(sigs, pendingSig{KeyID: up.KeyID, Sig: up.Sig, PayloadSHA256: sum, SignedBy: actor, CreatedAt: now})
	status, err := r.targetsStatus(delegator, p, md, sigs)
	return status, sigs, err
}

// insertSig records one signature over the payload (sha256 sum) of
// pending row p, in one transaction with its audit entry (action, e.g.
// "release.sign"; WithAudit).
func (r *Releases) insertSig(ctx context.Context, p pendingRow, up SignatureUpload, sum, actor string, now time.Time, action string) error {
	return r.db.Tx(ctx, func(tx *storage.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO pending_signatures (pending_id, keyid, sig, payload_sha256, signed_by, created_at) VALUES (?, ?, ?, ?, ?, ?)`,
			p.ID, up.KeyID, up.Sig, sum, actor, now.UnixNano()); err != nil {
			return err
		}
		return auditIn(ctx, tx, action, map[string]string{"pending": p.ID, "role": p.Role, "version": strconv.FormatInt(p.Ver, 10), "keyid": up.KeyID, "payload_sha256": sum})
	})
}

// attachSignatures replaces md's signatures with the recorded ones that
// status counts.
func attachSignatures(md *metadata.Metadata[metadata.TargetsType], status SigningStatus, sigs []pendingSig) {
	md.ClearSignatures()
	for _, s := range status.Signatures {
		for _, ps := range sigs {
			if ps.KeyID == s.KeyID {
				b, _ := hex.DecodeString(ps.Sig)
				md.Signatures = append(md.Signatures, metadata.Signature{KeyID: ps.KeyID, Signature: b})
			}
		}
	}
}

// rebuildPending replaces the metadata of pending row p with nmd, built on
// version base, and discards the signatures collected for the old
// payload (they are over other bytes). It returns the updated row and how
// many signatures went.
func (r *Releases) rebuildPending(ctx context.Context, p pendingRow, base int64, nmd *metadata.Metadata[metadata.TargetsType], ref string) (pendingRow, int, error) {
	mdJSON, err := nmd.ToBytes(false)
	if err != nil {
		return p, 0, err
	}
	sigs, err := loadSigs(ctx, r.db, p.ID)
	if err != nil {
		return p, 0, err
	}
	now := r.now().UTC()
	err = r.db.Tx(ctx, func(tx *storage.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM pending_signatures WHERE pending_id = ?`, p.ID); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE pending_metadata SET base_version = ?, version = ?, metadata = ?, updated_at = ? WHERE id = ?`,
			base, nmd.Signed.Version, string(mdJSON), now.UnixNano(), p.ID); err != nil {
			return err
		}
		return auditIn(ctx, tx, "pending.rebuild", map[string]string{"pending": p.ID, "role": p.Role, "old_base": strconv.FormatInt(p.Base, 10),
			"version": strconv.FormatInt(nmd.Signed.Version, 10), "signatures_discarded": strconv.Itoa(len(sigs))})
	})
	if err != nil {
		return p, 0, fmt.Errorf("rebuild pending %s metadata of %s: %w", p.Role, ref, err)
	}
	r.repo.log.WarnContext(ctx, "pending metadata rebuilt on new metadata; collected signatures discarded",
		"pending", ref, "role", p.Role, "old_base", p.Base, "new_version", nmd.Signed.Version, "discarded", len(sigs))
	p.Base, p.Ver, p.Metadata, p.UpdatedAt = base, nmd.Signed.Version, mdJSON, now
	return p, len(sigs), nil
}

// addServerTargetsSigs adds the signatures of the server's own targets
// keys (if it holds any of root's targets keys) to md.
func addServerTargetsSigs(root *metadata.Metadata[metadata.RootType], md *metadata.Metadata[metadata.TargetsType], s Signers) error {
	rr := root.Signed.Roles[RoleTargets]
	for _, k := range s.Targets {
		if k == nil {
			continue
		}
		id, err := KeyID(k)
		if err != nil || !slices.Contains(rr.KeyIDs, id) || hasSig(md.Signatures, id) {
			continue
		}
		if _, err := md.Sign(k); err != nil {
			return fmt.Errorf("sign targets v%d with server key %s: %w", md.Signed.Version, id, err)
		}
	}
	return nil
}

// lockedState takes the repository's writer lock and loads its verified
// state; the caller runs unlock when done.
func (r *Releases) lockedState(ctx context.Context) (*state, func(), error) {
	unlock, err := r.repo.lock(ctx)
	if err != nil {
		return nil, nil, err
	}
	st, err := r.repo.load(ctx)
	if err != nil {
		unlock()
		return nil, nil, err
	}
	return st, unlock, nil
}

// payloadOf is the signing payload of pending row p with metadata md: its
// canonical bytes and who has signed so far.
func (r *Releases) payloadOf(ctx context.Context, st *state, p pendingRow, md *metadata.Metadata[metadata.TargetsType]) (SigningPayload, error) {
	payload, sum, err := canonicalSigned(md)
	if err != nil {
		return SigningPayload{}, err
	}
	sigs, err := loadSigs(ctx, r.db, p.ID)
	if err != nil {
		return SigningPayload{}, err
	}
	delegator, err := st.delegator(p.Role)
	if err != nil {
		return SigningPayload{}, err
	}
	status, err := r.targetsStatus(delegator, p, md, sigs)
	if err != nil {
		return SigningPayload{}, err
	}
	return SigningPayload{Role: p.Role, Payload: payload, PayloadSHA256: sum, Status: status}, nil
}
