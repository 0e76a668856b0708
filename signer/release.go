package signer

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/api"
	"github.com/tufota/tufota/storage"
)

// PushRequest describes a firmware release to push. It is also the JSON
// "release" part of the server's upload API.
type PushRequest = api.PushRequest

// MaxNotes bounds release notes.
const MaxNotes = api.MaxNotes

// Release is a firmware image signed into the TUF targets metadata.
type Release struct {
	Name       string `json:"name"`
	Version    string `json:"version"`
	TargetPath string `json:"target_path"`
	Length     int64  `json:"length"`
	SHA256     string `json:"sha256"`
	// SHA512 is recorded only for releases pushed before tufota stopped
	// hashing what TUF does not sign (see Staged); empty otherwise.
	SHA512             string   `json:"sha512,omitempty"`
	Hardware           []string `json:"hardware"`
	Notes              string   `json:"notes,omitempty"`
	AllowDowngradeFrom []string `json:"allow_downgrade_from,omitempty"`
	State              string   `json:"state"` // pending or published
	// Role is the TUF role that signs the release: "targets", or the
	// delegated role of its product line.
	Role string `json:"role"`
	// TargetsVersion is the version of Role's metadata that published it.
	TargetsVersion int64      `json:"targets_version"`
	CreatedAt      time.Time  `json:"created_at"`
	CreatedBy      string     `json:"created_by"`
	PublishedAt    *time.Time `json:"published_at,omitempty"`
	// SBOM is the release's software bill of materials, a companion
	// target signed in the same targets version, if it has one.
	SBOM *SBOM `json:"sbom,omitempty"`
	// VEX is the CycloneDX VEX document the release ships with, a
	// companion target signed in the same targets version, if it has one.
	VEX *VEX `json:"vex,omitempty"`
	// Signing is set while the release waits for offline targets
	// signatures: who signed and how many are still needed.
	Signing *SigningStatus `json:"signing,omitempty"`
}

// Release states.
const (
	StatePending   = "pending"
	StatePublished = "published"
)

// Releases records releases in the state database and publishes them into
// the TUF repository. When the server holds fewer targets keys than the
// targets threshold, a pushed release waits for offline signatures
// (SignRelease); root metadata changes are gathered the same way
// (ProposeRoot, SignRoot). It is safe for concurrent use.
type Releases struct {
	db   *storage.DB
	repo *Repository
	now  func() time.Time
	open KeyOpener

	mu      sync.Mutex
	signers Signers
}

// KeyOpener opens a key URI on the server (the server's passphrase, the
// server's HSM): used for the new online keys of a root rotation.
type KeyOpener func(ctx context.Context, uri string) (signature.SignerVerifier, error)

// ReleasesOption configures NewReleases.
type ReleasesOption func(*Releases)

// WithKeyOpener lets a root rotation introduce new snapshot and timestamp
// keys by URI; without it such a rotation is tufota.EInvalid.
func WithKeyOpener(open KeyOpener) ReleasesOption {
	return func(r *Releases) { r.open = open }
}

// WithClock sets the clock of the release service (tests).
func WithClock(now func() time.Time) ReleasesOption {
	return func(r *Releases) { r.now = now }
}

// NewReleases returns the release service over db and repo, signing with s.
func NewReleases(db *storage.DB, repo *Repository, s Signers, opts ...ReleasesOption) *Releases {
	r := &Releases{db: db, repo: repo, signers: s, now: time.Now}
	for _, o := range opts {
		o(r)
	}
	return r
}

// Signers returns the keys the server signs with now: those given to
// NewReleases, with the online keys of a published root rotation in place
// of the old ones. The background refresher must use these.
func (r *Releases) Signers() Signers {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.signers
	s.Targets = slices.Clone(s.Targets)
	return s
}

// PushOption configures one Push.
type PushOption func(*pushOptions)

type pushOptions struct {
	sbom []byte
	vex  []byte
}

// WithSBOM attaches an SBOM document (CycloneDX or SPDX JSON, checked with
// ValidateSBOM) to the release: it is published as the companion target
// NAME/VERSION/sbom.cdx.json or sbom.spdx.json in the same targets version
// as the firmware (or waits in the same pending payload).
func WithSBOM(data []byte) PushOption {
	return func(o *pushOptions) { o.sbom = data }
}

// WithVEX attaches a CycloneDX VEX document (checked with ValidateVEX) to
// the release: it is published as the companion target
// NAME/VERSION/vex.cdx.json in the same targets version as the firmware.
func WithVEX(data []byte) PushOption {
	return func(o *pushOptions) { o.vex = data }
}

// Push validates req, streams body into the blob store while hashing it (at
// most maxBytes), records the release and publishes new targets, snapshot
// and timestamp metadata. With WithSBOM, the SBOM is validated before
// anything is staged and published with the firmware in the same targets
// version. On any failure nothing of the release remains: not the row, not
// the blobs, not a metadata version.
func (r *Releases) Push(ctx context.Context, req PushRequest, body io.Reader, maxBytes int64, actor string, opts ...PushOption) (Release, error) {
	var o pushOptions
	for _, opt := range opts {
		opt(&o)
	}
	if err := req.Validate(); err != nil {
		return Release{}, err
	}
	ref := req.Name + "@" + req.Version
	var sbom *SBOM
	if o.sbom != nil {
		format, err := ValidateSBOM(o.sbom)
		if err != nil {
			return Release{}, fmt.Errorf("push %s: %w", ref, err)
		}
		sbom = &SBOM{Path: tufota.TargetPath(req.Name, req.Version, SBOMFileName(format)), Format: format}
		if req.File == SBOMFileName(format) {
			return Release{}, tufota.Errorf(tufota.EInvalid, "push %s: file name %s is the name of the release's SBOM target; rename the firmware file", ref, req.File)
		}
	}
	var vex *VEX
	if o.vex != nil {
		if err := ValidateVEX(o.vex); err != nil {
			return Release{}, fmt.Errorf("push %s: %w", ref, err)
		}
		vex = &VEX{Path: tufota.TargetPath(req.Name, req.Version, VEXFileName)}
		if req.File == VEXFileName {
			return Release{}, tufota.Errorf(tufota.EInvalid, "push %s: file name %s is the name of the release's VEX target; rename the firmware file", ref, req.File)
		}
	}
	if _, err := r.Get(ctx, req.Name, req.Version); err == nil {
		return Release{}, tufota.Errorf(tufota.EConflict, "release %s already exists", ref)
	} else if !errors.Is(err, tufota.ErrNotFound) {
		return Release{}, err
	}
	if err := r.checkEqualVersion(ctx, req.Name, req.Version); err != nil {
		return Release{}, err
	}
	// Which role signs it: the top-level targets, or the delegated role
	// of its product line (which then must cover its SBOM too).
	paths := []string{tufota.TargetPath(req.Name, req.Version, req.File)}
	if sbom != nil {
		paths = append(paths, sbom.Path)
	}
	if vex != nil {
		paths = append(paths, vex.Path)
	}
	role, err := r.roleFor(ctx, paths)
	if err != nil {
		return Release{}, fmt.Errorf("push %s: %w", ref, err)
	}
	// The staged keys stay live (SweepStaging leaves them) until the
	// push is over: published, pending (its row names them) or discarded.
	// Deferred first, so it runs after the discards below.
	staged, unhold, err := r.repo.stageLive(ctx, body, maxBytes)
	defer unhold()
	if err != nil {
		return Release{}, fmt.Errorf("push %s: %w", ref, err)
	}
	published := false
	defer func() {
		if !published {
			_ = r.repo.Discard(context.WithoutCancel(ctx), staged)
		}
	}()
	var sbomTarget *Target
	if sbom != nil {
		st, unholdSBOM, err := r.repo.stageLive(ctx, bytes.NewReader(o.sbom), MaxSBOMBytes)
		defer unholdSBOM()
		if err != nil {
			return Release{}, fmt.Errorf("push %s: SBOM: %w", ref, err)
		}
		defer func() {
			if !published {
				_ = r.repo.Discard(context.WithoutCancel(ctx), st)
			}
		}()
		sbom.SHA256, sbom.Length = st.SHA256, st.Length
		sc, err := json.Marshal(map[string]SBOMOf{CustomSBOMOfKey: {
			Name: req.Name, Version: req.Version, Format: sbom.Format, Firmware: tufota.TargetPath(req.Name, req.Version, req.File),
		}})
		if err != nil {
			return Release{}, err
		}
		sbomTarget = &Target{Path: sbom.Path, Staged: st, Custom: sc}
	}
	var vexTarget *Target
	if vex != nil {
		st, unholdVEX, err := r.repo.stageLive(ctx, bytes.NewReader(o.vex), MaxVEXBytes)
		defer unholdVEX()
		if err != nil {
			return Release{}, fmt.Errorf("push %s: VEX: %w", ref, err)
		}
		defer func() {
			if !published {
				_ = r.repo.Discard(context.WithoutCancel(ctx), st)
			}
		}()
		vex.SHA256, vex.Length = st.SHA256, st.Length
		vc, err := vexCustom(req.Name, req.Version, tufota.TargetPath(req.Name, req.Version, req.File))
		if err != nil {
			return Release{}, err
		}
		vexTarget = &Target{Path: vex.Path, Staged: st, Custom: vc}
	}
	custom, err := firmwareCustom(tufota.TargetCustom{
		Name: req.Name, Version: req.Version, Hardware: req.Hardware, Notes: req.Notes, AllowDowngradeFrom: req.AllowDowngradeFrom,
	}, sbom, vex)
	if err != nil {
		return Release{}, err
	}
	hw, _ := json.Marshal(req.Hardware)
	now := r.now().UTC()
	rel := Release{
		Name: req.Name, Version: req.Version, TargetPath: tufota.TargetPath(req.Name, req.Version, req.File),
		Length: staged.Length, SHA256: staged.SHA256, SHA512: staged.SHA512, Hardware: req.Hardware,
		Notes: req.Notes, AllowDowngradeFrom: req.AllowDowngradeFrom, SBOM: sbom, VEX: vex, State: StatePending, Role: role,
		CreatedAt: now, CreatedBy: actor,
	}
	targets := []Target{{Path: rel.TargetPath, Staged: staged, Custom: custom}}
	if sbomTarget != nil {
		targets = append(targets, *sbomTarget)
	}
	if vexTarget != nil {
		targets = append(targets, *vexTarget)
	}

	// The writer lock is held from the row's insert until it is final
	// (published, or removed), so that a pending release that Reconcile
	// or CancelRelease finds under the lock is never one being published:
	// its publisher died.
	unlock, err := r.repo.lock(ctx)
	if err != nil {
		return Release{}, fmt.Errorf("push %s: %w", ref, err)
	}
	defer unlock()
	// Again under the lock, which every push takes before its row: of two
	// equal versions pushed at once, the second sees the first here.
	if err := r.checkEqualVersion(ctx, req.Name, req.Version); err != nil {
		return Release{}, err
	}
	signers := r.Signers()
	online, err := r.repo.canSignTargets(ctx, signers.Targets)
	if err != nil {
		return Release{}, fmt.Errorf("push %s: %w", ref, err)
	}
	if !online {
		if bits, err := r.repo.HashedBins(ctx); err != nil {
			return Release{}, fmt.Errorf("push %s: %w", ref, err)
		} else if bits > 0 {
			return Release{}, tufota.Errorf(tufota.EInvalid, "push %s: this repository uses hashed bins, which the server signs with its online targets key, and the server holds none (start it with the targets key)", ref)
		}
	}
	if err := r.repo.step("record " + ref); err != nil {
		return Release{}, fmt.Errorf("push %s: %w", ref, err)
	}
	// The row and its pending payload (which names the staged uploads)
	// commit together: a crash anywhere after leaves a release that can be
	// rolled back and cancelled with its blobs.
	var (
		status SigningStatus
		exists bool
	)
	err = r.db.Tx(ctx, func(tx *storage.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO releases (name, version, target_path, length, sha256, sha512, hardware, notes, custom, state, role, created_at, created_by)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			rel.Name, rel.Version, rel.TargetPath, rel.Length, rel.SHA256, rel.SHA512, string(hw), rel.Notes, string(custom), StatePending, role, now.UnixNano(), actor); err != nil {
			exists = errors.Is(err, tufota.ErrConflict)
			return err
		}
		var err error
		if status, err = r.createPending(ctx, tx, role, targets, actor); err != nil {
			return err
		}
		return auditIn(ctx, tx, "release.push", map[string]string{"state": string(StatePending), "role": role, "target": rel.TargetPath,
			"sha256": rel.SHA256, "length": strconv.FormatInt(rel.Length, 10)})
	})
	if exists {
		return Release{}, tufota.Errorf(tufota.EConflict, "release %s already exists", ref)
	}
	if err != nil {
		return Release{}, fmt.Errorf("push %s: record: %w", ref, err)
	}
	if !online || role != RoleTargets {
		// Too few targets keys on the server, or a delegated role (whose
		// keys the server never holds): the release waits for its key
		// holders to sign the metadata where their keys are
		// (SignRelease).
		published = true // keep the staged upload for the signed publish
		rel.Signing = &status
		return rel, nil
	}
	v, err := r.repo.publishLocked(ctx, signers, targets)
	if err != nil {
		return r.publishFailed(context.WithoutCancel(ctx), rel, targets, err, &published)
	}
	published = true
	if err := r.repo.step("mark " + ref + " published"); err != nil {
		return Release{}, fmt.Errorf("push %s: published as targets v%d but not recorded (Reconcile fixes this): %w", ref, v, err)
	}
	pub := r.now().UTC()
	if err := r.markPublished(context.WithoutCancel(ctx), rel.Name, rel.Version, rel.Role, v, pub); err != nil {
		return Release{}, fmt.Errorf("push %s: published as targets v%d but not recorded (Reconcile fixes this): %w", ref, v, err)
	}
	rel.State, rel.TargetsVersion, rel.PublishedAt = StatePublished, v, &pub
	return rel, nil
}

// publishFailed settles an online push whose publish returned perr; the
// caller holds the writer lock. A failed publish may still have made the
// release visible (the timestamp write landed, its reply was lost): then
// the release is recorded published and returned. When it is certainly
// not visible, nothing of it remains: not the row, not the payload, not a
// blob at a target key (the deferred discard removes the staged ones).
// When the repository cannot be read to tell, the release stays pending:
// CancelRelease, or Reconcile at the next start, settles it. *published
// tells Push's deferred discard to keep the staged blobs.
func (r *Releases) publishFailed(ctx context.Context, rel Release, targets []Target, perr error, published *bool) (Release, error) {
	ref := rel.Name + "@" + rel.Version
	st, err := r.repo.load(ctx)
	if err != nil {
		*published = true
		return Release{}, fmt.Errorf("push %s: %w; the repository cannot be read to tell whether the release is live (%v): it stays pending until it is cancelled or the server restarts", ref, perr, err)
	}
	live, err := r.repo.isPublished(ctx, st, rel.TargetPath)
	if err != nil {
		*published = true
		return Release{}, fmt.Errorf("push %s: %w; the repository cannot be read to tell whether the release is live (%v): it stays pending until it is cancelled or the server restarts", ref, perr, err)
	}
	if live {
		*published = true
		v, pub := st.releaseVersion(rel.Role, rel.TargetPath), r.now().UTC()
		if err := r.markPublished(ctx, rel.Name, rel.Version, rel.Role, v, pub); err != nil {
			return Release{}, fmt.Errorf("push %s: publish reported an error but the release is live as targets v%d, and recording it failed (Reconcile fixes this): %w", ref, v, errors.Join(perr, err))
		}
		r.repo.log.WarnContext(ctx, "publish reported an error but the release is live; recorded as published", "release", ref, "targets_version", v, "err", perr)
		rel.State, rel.TargetsVersion, rel.PublishedAt = StatePublished, v, &pub
		return rel, nil
	}
	errs := []error{perr}
	if err := r.deleteRow(ctx, rel); err != nil {
		errs = append(errs, err)
	}
	for _, t := range targets {
		// Not in signed metadata (checked above, under the lock).
		if err := r.repo.blobs.Delete(ctx, TargetBlobKey(t.Path, t.Staged.SHA256)); err != nil && !errors.Is(err, tufota.ErrNotFound) {
			errs = append(errs, fmt.Errorf("remove %s: %w", TargetBlobKey(t.Path, t.Staged.SHA256), err))
		}
	}
	return Release{}, fmt.Errorf("push %s: %w", ref, errors.Join(errs...))
}

// roleFor returns the role that signs a release with the given target
// paths (see state.roleFor).
func (r *Releases) roleFor(ctx context.Context, paths []string) (string, error) {
	st, err := r.repo.load(ctx)
	if err != nil {
		return "", err
	}
	return st.roleFor(paths)
}

// firmwareCustom returns the custom metadata of a firmware target: tc
// under tufota.CustomKey and, if the release has one, its SBOM under
// CustomSBOMKey and its VEX under CustomVEXKey.
func firmwareCustom(tc tufota.TargetCustom, sbom *SBOM, vex *VEX) (json.RawMessage, error) {
	if sbom == nil && vex == nil {
		return tufota.MarshalCustom(tc)
	}
	c := map[string]any{tufota.CustomKey: tc}
	if sbom != nil {
		c[CustomSBOMKey] = sbom
	}
	if vex != nil {
		c[CustomVEXKey] = vex
	}
	b, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("marshal target custom: %w", err)
	}
	return b, nil
}

// sbomOfCustom returns the SBOM a firmware target's custom metadata
// names, or nil.
func sbomOfCustom(custom []byte) *SBOM {
	var c map[string]json.RawMessage
	if json.Unmarshal(custom, &c) != nil || c[CustomSBOMKey] == nil {
		return nil
	}
	var s SBOM
	if json.Unmarshal(c[CustomSBOMKey], &s) != nil || s.Path == "" {
		return nil
	}
	return &s
}

// deleteRow removes the pending row of a release that will not be
// published, with its pending payload.
func (r *Releases) deleteRow(ctx context.Context, rel Release) error {
	err := r.db.Tx(context.WithoutCancel(ctx), func(tx *storage.Tx) error {
		if err := deletePending(ctx, tx, pendingTargetsID(rel.Name, rel.Version)); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM releases WHERE name = ? AND version = ? AND state = ?`, rel.Name, rel.Version, StatePending); err != nil {
			return err
		}
		return auditIn(ctx, tx, "release.discard", map[string]string{"release": rel.Name + "@" + rel.Version, "role": rel.Role, "reason": "publish failed"})
	})
	if err != nil {
		return fmt.Errorf("remove unpublished release row: %w", err)
	}
	return nil
}

// markPublished records NAME@VERSION as published in version v of its
// role's metadata and drops its pending payload, in one transaction with
// the "release.publish" audit entry (WithAudit).
func (r *Releases) markPublished(ctx context.Context, name, version, role string, v int64, at time.Time) error {
	return r.db.Tx(ctx, func(tx *storage.Tx) error {
		if _, err := tx.Exec(ctx, `UPDATE releases SET state = ?, targets_version = ?, published_at = ? WHERE name = ? AND version = ? AND state = ?`,
			StatePublished, v, at.UnixNano(), name, version, StatePending); err != nil {
			return err
		}
		if err := deletePending(ctx, tx, pendingTargetsID(name, version)); err != nil {
			return err
		}
		return auditIn(ctx, tx, "release.publish", map[string]string{"release": name + "@" + version, "role": role, "version": strconv.FormatInt(v, 10)})
	})
}

// Reconcile repairs what a crash (or a lost storage reply) left of
// publishes; the server runs it at start. Under the writer lock, which
// every publisher holds from the release row's insert until the row is
// final, each pending release is either:
//
//   - finished: its target is in the signed metadata (the timestamp that
//     names it was written), so it is recorded published in the version of
//     its role that lists it; or
//   - rolled back: it is not, so whatever the interrupted publish did is
//     undone: its blobs go back to their staging keys (they may already
//     have been moved to their target keys) and it stays pending, with its
//     payload, so that it can be cancelled (CancelRelease) or, when it
//     waits for offline signatures, signed again. Metadata files the
//     publish wrote outside the signed chain are left as they are (mirrors
//     may hold them as immutable); later publishes take versions above
//     them (state.next), and a pending payload built on one of their
//     versions is rebuilt before it is signed again.
//
// It returns how many releases it recorded published; each roll-back is
// logged. A release it cannot repair does not stop it: the errors are
// joined. Reconcile is serialised with the repository's other writers.
func (r *Releases) Reconcile(ctx context.Context) (int, error) {
	st, unlock, err := r.lockedState(ctx)
	if err != nil {
		return 0, fmt.Errorf("reconcile releases: %w", err)
	}
	defer unlock()
	rels, err := r.list(ctx, `WHERE state = ?`, StatePending)
	if err != nil {
		return 0, fmt.Errorf("reconcile releases: %w", err)
	}
	n := 0
	var errs []error
	for _, rel := range rels {
		ref := rel.Name + "@" + rel.Version
		live, err := r.repo.isPublished(ctx, st, rel.TargetPath)
		if err != nil {
			errs = append(errs, fmt.Errorf("reconcile %s: %w", ref, err))
			continue
		}
		if !live {
			if err := r.rollBack(ctx, st, rel); err != nil {
				errs = append(errs, fmt.Errorf("reconcile %s: roll back: %w", ref, err))
			}
			continue
		}
		v := st.releaseVersion(rel.Role, rel.TargetPath)
		if err := r.markPublished(ctx, rel.Name, rel.Version, rel.Role, v, r.now().UTC()); err != nil {
			errs = append(errs, fmt.Errorf("reconcile %s: record published: %w", ref, err))
			continue
		}
		r.repo.log.WarnContext(ctx, "release published before a crash recorded as published", "release", ref, "role", rel.Role, "version", v)
		n++
	}
	return n, errors.Join(errs...)
}

// rollBack undoes what an interrupted publish of the pending release rel
// did to its blobs: each one moved to its target key goes back to its
// staging key. The caller holds the writer lock and checked that rel is
// not in the signed metadata st.
func (r *Releases) rollBack(ctx context.Context, st *state, rel Release) error {
	ref := rel.Name + "@" + rel.Version
	p, err := loadPending(ctx, r.db, pendingTargetsID(rel.Name, rel.Version))
	if errors.Is(err, tufota.ErrNotFound) {
		// Recorded by a server without pending payloads for online
		// pushes: its staged keys are unknown. CancelRelease removes it.
		r.repo.log.WarnContext(ctx, "pending release without a payload: its publish was interrupted; cancel it and push it again", "release", ref)
		return nil
	}
	if err != nil {
		return err
	}
	var extra pendingTargetsExtra
	if err := json.Unmarshal(p.Extra, &extra); err != nil {
		return tufota.Errorf(tufota.EInternal, "pending %s: %v", p.ID, err)
	}
	moved := 0
	for _, t := range extra.targets() {
		live, err := r.repo.isPublished(ctx, st, t.Path)
		if err != nil {
			return err
		}
		if live {
			return tufota.Errorf(tufota.EInternal, "target %s of pending release %s is in signed metadata but its firmware is not", t.Path, ref)
		}
		ok, err := r.repo.unmoveStaged(ctx, t)
		if err != nil {
			return err
		}
		if ok {
			moved++
		}
	}
	// Signatures that met the threshold started the publish that is now
	// undone; kept, they would leave a release that says it needs no
	// signature and never publishes. The key holders sign again.
	discarded, err := r.discardThresholdSigs(ctx, st, p)
	if err != nil {
		return err
	}
	if moved > 0 || discarded > 0 || p.Ver != st.next(p.Role) {
		r.repo.log.WarnContext(ctx, "interrupted publish rolled back: the release is pending again (cancel it, or sign it again if it waits for signatures)",
			"release", ref, "role", p.Role, "blobs_restored", moved, "signatures_discarded", discarded, "next_version", st.next(p.Role))
	}
	return nil
}

// discardThresholdSigs deletes the signatures collected for pending row p
// when they meet its role's threshold, and returns how many went.
func (r *Releases) discardThresholdSigs(ctx context.Context, st *state, p pendingRow) (int, error) {
	sigs, err := loadSigs(ctx, r.db, p.ID)
	if err != nil || len(sigs) == 0 {
		return 0, err
	}
	md, err := p.targets()
	if err != nil {
		return 0, err
	}
	delegator, err := st.delegator(p.Role)
	if err != nil {
		return 0, err
	}
	status, err := r.targetsStatus(delegator, p, md, sigs)
	if err != nil || status.Needed > 0 {
		return 0, err
	}
	err = r.db.Tx(ctx, func(tx *storage.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM pending_signatures WHERE pending_id = ?`, p.ID); err != nil {
			return err
		}
		return auditIn(ctx, tx, "release.rollback", map[string]string{"pending": p.ID, "role": p.Role, "signatures_discarded": strconv.Itoa(len(sigs))})
	})
	if err != nil {
		return 0, fmt.Errorf("discard signatures of %s: %w", p.ID, err)
	}
	return len(sigs), nil
}

// Get returns one release; tufota.ErrNotFound if there is none.
func (r *Releases) Get(ctx context.Context, name, version string) (Release, error) {
	rels, err := r.list(ctx, `WHERE name = ? AND version = ?`, name, version)
	if err != nil {
		return Release{}, err
	}
	if len(rels) == 0 {
		return Release{}, tufota.Errorf(tufota.ENotFound, "no release %s@%s", name, version)
	}
	rel := rels[0]
	if rel.State == StatePending {
		st, err := r.releaseStatus(ctx, name, version)
		if err != nil && !errors.Is(err, tufota.ErrNotFound) {
			return Release{}, err
		}
		if err == nil {
			rel.Signing = &st
		}
	}
	return rel, nil
}

// List returns every release, newest first.
func (r *Releases) List(ctx context.Context) ([]Release, error) {
	return r.list(ctx, "")
}

// Latest returns the highest published release for hardware whose version
// is above the given one, or nil if there is none.
func (r *Releases) Latest(ctx context.Context, hardware, above string) (*Release, error) {
	cur, err := tufota.ParseVersion(above)
	if err != nil {
		return nil, err
	}
	rels, err := r.list(ctx, `WHERE state = ?`, StatePublished)
	if err != nil {
		return nil, err
	}
	var best *Release
	var bestV tufota.Version
	for i := range rels {
		rel := &rels[i]
		if !(tufota.TargetCustom{Hardware: rel.Hardware}).SupportsHardware(hardware) {
			continue
		}
		v, err := tufota.ParseVersion(rel.Version)
		if err != nil || v.Compare(cur) <= 0 {
			continue
		}
		if best == nil || v.Compare(bestV) > 0 {
			best, bestV = rel, v
		}
	}
	return best, nil
}

func (r *Releases) list(ctx context.Context, where string, args ...any) ([]Release, error) {
	rows, err := r.db.Query(ctx, `SELECT name, version, target_path, length, sha256, sha512, hardware, notes, custom, state, role,
		targets_version, created_at, created_by, published_at FROM releases `+where+` ORDER BY created_at DESC, name, version`, args...)
	if err != nil {
		return nil, fmt.Errorf("list releases: %w", err)
	}
	defer rows.Close()
	var out []Release
	for rows.Next() {
		var (
			rel        Release
			hw, custom string
			created    int64
			published  sql.NullInt64
		)
		if err := rows.Scan(&rel.Name, &rel.Version, &rel.TargetPath, &rel.Length, &rel.SHA256, &rel.SHA512, &hw, &rel.Notes,
			&custom, &rel.State, &rel.Role, &rel.TargetsVersion, &created, &rel.CreatedBy, &published); err != nil {
			return nil, fmt.Errorf("list releases: %w", err)
		}
		if err := json.Unmarshal([]byte(hw), &rel.Hardware); err != nil {
			return nil, fmt.Errorf("release %s@%s: hardware column: %w", rel.Name, rel.Version, err)
		}
		if tc, err := tufota.UnmarshalCustom([]byte(custom)); err == nil {
			rel.AllowDowngradeFrom = tc.AllowDowngradeFrom
		}
		rel.SBOM = sbomOfCustom([]byte(custom))
		rel.VEX = vexOfCustom([]byte(custom))
		rel.CreatedAt = time.Unix(0, created).UTC()
		if published.Valid {
			t := time.Unix(0, published.Int64).UTC()
			rel.PublishedAt = &t
		}
		out = append(out, rel)
	}
	return out, rows.Err()
}
