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
// and its staged uploads (firmware and SBOM) go. Nothing of it was ever in
// published metadata, so devices see no change. An unknown release is
// tufota.ENotFound, a published one tufota.EConflict (published releases
// are withdrawn by publishing a newer one). CancelRelease is serialised
// with the repository's other writers; the row and the payload go in one
// transaction, the staged blobs after it (a blob left by a crash there is
// unreferenced staging garbage).
func (r *Releases) CancelRelease(ctx context.Context, name, version string) (Release, error) {
	ref := name + "@" + version
	unlock, err := r.repo.lock(ctx)
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
	id := pendingTargetsID(name, version)
	p, err := loadPending(ctx, r.db, id)
	if err != nil {
		if errors.Is(err, tufota.ErrNotFound) {
			return Release{}, tufota.Errorf(tufota.EConflict, "cancel %s: the release is being published, not waiting for signatures", ref)
		}
		return Release{}, err
	}
	var extra pendingTargetsExtra
	if err := json.Unmarshal(p.Extra, &extra); err != nil {
		return Release{}, fmt.Errorf("cancel %s: pending payload: %w", ref, err)
	}
	err = r.db.Tx(ctx, func(tx *storage.Tx) error {
		if err := deletePending(ctx, tx, id); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `DELETE FROM releases WHERE name = ? AND version = ? AND state = ?`, name, version, StatePending)
		return err
	})
	if err != nil {
		return Release{}, fmt.Errorf("cancel %s: %w", ref, err)
	}
	var errs []error
	for _, t := range extra.targets() {
		if err := r.repo.Discard(context.WithoutCancel(ctx), t.Staged); err != nil && !errors.Is(err, tufota.ErrNotFound) {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return rel, fmt.Errorf("cancel %s: cancelled, but a staged upload remains: %w", ref, err)
	}
	return rel, nil
}
