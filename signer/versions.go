package signer

import (
	"context"
	"fmt"

	"github.com/tufota/tufota"
)

// checkEqualVersion refuses a release whose version has the same semver
// precedence as an existing release of the same name: versions that differ
// only in build metadata ("1.1.0" and "1.1.0+b") are equal, so a device
// could not tell which one is newer, and a rollout of one would count the
// other as already installed. A row of exactly this version is not
// compared (Push checks it both before staging and after recording the
// release, so that of two equal versions pushed at once at most one stays).
// Errors: EConflict naming the existing release.
func (r *Releases) checkEqualVersion(ctx context.Context, name, version string) error {
	v, err := tufota.ParseVersion(version)
	if err != nil {
		return err
	}
	rows, err := r.db.Query(ctx, `SELECT version FROM releases WHERE name = ?`, name)
	if err != nil {
		return fmt.Errorf("check versions of %s: %w", name, err)
	}
	defer rows.Close()
	for rows.Next() {
		var have string
		if err := rows.Scan(&have); err != nil {
			return fmt.Errorf("check versions of %s: %w", name, err)
		}
		w, err := tufota.ParseVersion(have)
		if err != nil {
			continue // an old row with a version this build would refuse: not equal to a valid one
		}
		if have != version && v.Compare(w) == 0 {
			return tufota.Errorf(tufota.EConflict, "release %s@%s already exists as %s@%s: semantic versions that differ only in build metadata are equal; use a new version", name, version, name, have)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("check versions of %s: %w", name, err)
	}
	return nil
}
