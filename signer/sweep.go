package signer

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/tufota/tufota/storage"
)

// DefaultStagingMaxAge is how old a staging leftover must be before
// SweepStaging's callers in tufota remove it: longer than any upload
// pauses (an upload in progress in the sweeping process is never removed,
// whatever its age; the bound protects uploads of other replicas sharing
// the blob store).
const DefaultStagingMaxAge = time.Hour

// SweepStaging removes what uploads that never finished (a crash, a kill)
// left under staging/, last modified before before:
//
//   - staged blobs that neither an upload in progress in this process
//     (Stage, Push) holds nor a pending release names, and
//   - the blob store's leftovers of unfinished Puts there (the File store's
//     temporary files, S3's incomplete multipart uploads; storage.Sweeper).
//
// It returns how many it removed, and is safe to call while uploads run:
// it lists the staged blobs first, then skips those held by this process,
// then reads the pending releases, so an upload that ends in between
// either still holds its key or has recorded its pending row. Uploads in
// other processes are protected by before alone.
func (r *Releases) SweepStaging(ctx context.Context, before time.Time) (int, error) {
	listed, err := r.repo.blobs.List(ctx, StagingPrefix)
	if err != nil {
		return 0, fmt.Errorf("sweep staging: %w", err)
	}
	var stale []storage.Info
	for _, b := range listed {
		if validStagedKey(b.Key) != nil || !b.ModTime.Before(before) || r.repo.staging.has(b.Key) {
			continue
		}
		stale = append(stale, b)
	}
	removed := 0
	if len(stale) > 0 {
		keep, err := r.pendingStagedKeys(ctx)
		if err != nil {
			return 0, fmt.Errorf("sweep staging: %w", err)
		}
		for _, b := range stale {
			if keep[b.Key] {
				continue
			}
			if err := r.repo.blobs.Delete(ctx, b.Key); err != nil {
				return removed, fmt.Errorf("sweep staging: %w", err)
			}
			removed++
			r.repo.log.InfoContext(ctx, "removed an abandoned staged upload", "key", b.Key, "bytes", b.Size, "modified", b.ModTime)
		}
	}
	if sw, ok := r.repo.blobs.(storage.Sweeper); ok {
		n, err := sw.SweepIncomplete(ctx, StagingPrefix, before)
		removed += n
		if err != nil {
			return removed, fmt.Errorf("sweep staging: %w", err)
		}
		if n > 0 {
			r.repo.log.InfoContext(ctx, "removed unfinished staging writes", "count", n)
		}
	}
	return removed, nil
}

// pendingStagedKeys returns the staged keys that pending releases name:
// their blobs wait there for the releases' signatures.
func (r *Releases) pendingStagedKeys(ctx context.Context) (map[string]bool, error) {
	rows, err := r.db.Query(ctx, `SELECT extra FROM pending_metadata`)
	if err != nil {
		return nil, fmt.Errorf("read pending releases: %w", err)
	}
	defer rows.Close()
	keep := make(map[string]bool)
	for rows.Next() {
		var extra string
		if err := rows.Scan(&extra); err != nil {
			return nil, fmt.Errorf("read pending releases: %w", err)
		}
		// Other pending changes (root, delegations) carry other extras,
		// which name no staged key.
		var x pendingTargetsExtra
		if json.Unmarshal([]byte(extra), &x) != nil {
			continue
		}
		for _, t := range x.targets() {
			if t.Staged.Key != "" {
				keep[t.Staged.Key] = true
			}
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read pending releases: %w", err)
	}
	return keep, nil
}
