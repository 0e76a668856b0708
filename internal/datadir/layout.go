package datadir

import (
	"context"
	"fmt"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/signer"
)

// RootThreshold is role's signature threshold in the repository's newest
// root metadata.
func RootThreshold(ctx context.Context, repo *signer.Repository, role string) (int, error) {
	b, err := repo.Root(ctx)
	if err != nil {
		return 0, fmt.Errorf("read root metadata: %w", err)
	}
	root, err := new(metadata.Metadata[metadata.RootType]).FromBytes(b)
	if err != nil {
		return 0, fmt.Errorf("read root metadata: %w", err)
	}
	r, ok := root.Signed.Roles[role]
	if !ok {
		return 0, fmt.Errorf("root metadata has no %s role", role)
	}
	return r.Threshold, nil
}

// CheckLayout refuses to serve a repository whose layout differs from
// the one DIR/tufota.json records ('init --hashed-bins'), and a hashed-bin
// repository without an online targets key, which signs the bins.
func CheckLayout(ctx context.Context, repo *signer.Repository, cfg Config, s signer.Signers) error {
	bits, err := repo.HashedBins(ctx)
	if err != nil {
		return fmt.Errorf("repository layout: %w", err)
	}
	if bits != cfg.HashedBins {
		return tufota.Errorf(tufota.EInvalid, "repository layout: %s records hashed_bins %d, but the signed targets metadata has %d (0: no hashed bins)", ConfigName, cfg.HashedBins, bits)
	}
	if bits > 0 && len(s.Targets) == 0 {
		return tufota.Errorf(tufota.EInvalid, "repository layout: hashed bins are signed by the server's online targets key, and %s names none the server can use", ConfigName)
	}
	return nil
}
