package signer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/storage"
)

// CancelRelease withdraws a pending release that has not been published:
// its unsigned targets payload, the signatures collected for it, its row
// and its blobs (firmware and SBOM, staged, or at their target keys if an
// interrupted publish moved them there) go. Nothing of it is in signed
// metadata, so devices see no change. An unknown release is
// tufota.ENotFound, a published one tufota.EConflict (published releases
// are withdrawn by publishing a newer one). CancelRelease is serialised
// with the repository's other writers, and publishers hold the lock until
// a release's row is final, so a pending release it finds is never being
// published: one whose publish was interrupted is cancelled like any
// other. The row and the payload go in one transaction, the blobs after
// it (a blob left by a crash there is unreferenced garbage).
func (r *Releases) CancelRelease(ctx context.Context, name, version string) (Release, error) {
	ref := name + "@" + version
	st, unlock, err := r.lockedState(ctx)
	if err != nil {
		return Release{}, err
	}
	defer unlock()
	rel, err := r.Get(ctx, name, version)
	if err != nil {
		return Release{}, err
	}
	if rel.State != StatePending {
		return Release{}, tufota.Errorf(tufota.EConflict, "cancel %s: the release is %s; only a pending release can be cancelled", ref, rel.State)
	}
	live, err := r.repo.isPublished(ctx, st, rel.TargetPath)
	if err != nil {
		return Release{}, fmt.Errorf("cancel %s: %w", ref, err)
	}
	if live {
		return Release{}, tufota.Errorf(tufota.EConflict, "cancel %s: the release is in signed metadata (a crash came before it was recorded; restarting the server records it as published)", ref)
	}
	id := pendingTargetsID(name, version)
	var targets []Target
	p, err := loadPending(ctx, r.db, id)
	switch {
	case errors.Is(err, tufota.ErrNotFound):
		// Recorded by a server that kept no payload for online pushes:
		// the staged key is unknown, the target key is not.
		targets = []Target{{Path: rel.TargetPath, Staged: Staged{SHA256: rel.SHA256, Length: rel.Length}}}
		if rel.SBOM != nil {
			targets = append(targets, Target{Path: rel.SBOM.Path, Staged: Staged{SHA256: rel.SBOM.SHA256, Length: rel.SBOM.Length}})
		}
		if rel.VEX != nil {
			targets = append(targets, Target{Path: rel.VEX.Path, Staged: Staged{SHA256: rel.VEX.SHA256, Length: rel.VEX.Length}})
		}
	case err != nil:
		return Release{}, err
	default:
		var extra pendingTargetsExtra
		if err := json.Unmarshal(p.Extra, &extra); err != nil {
			return Release{}, fmt.Errorf("cancel %s: pending payload: %w", ref, err)
		}
		targets = extra.targets()
	}
	err = r.db.Tx(ctx, func(tx *storage.Tx) error {
		if err := deletePending(ctx, tx, id); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM releases WHERE name = ? AND version = ? AND state = ?`, name, version, StatePending); err != nil {
			return err
		}
		return auditIn(ctx, tx, "release.cancel", map[string]string{"release": ref, "role": rel.Role})
	})
	if err != nil {
		return Release{}, fmt.Errorf("cancel %s: %w", ref, err)
	}
	var errs []error
	for _, t := range targets {
		if t.Staged.Key != "" {
			if err := r.repo.Discard(context.WithoutCancel(ctx), t.Staged); err != nil && !errors.Is(err, tufota.ErrNotFound) {
				errs = append(errs, err)
			}
		}
		// No signed metadata names the target (checked above, under the
		// lock): its target key holds nothing a client may fetch.
		if err := r.repo.blobs.Delete(context.WithoutCancel(ctx), TargetBlobKey(t.Path, t.Staged.SHA256)); err != nil && !errors.Is(err, tufota.ErrNotFound) {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return rel, fmt.Errorf("cancel %s: cancelled, but a blob remains: %w", ref, err)
	}
	return rel, nil
}
