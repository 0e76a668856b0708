package backup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/audit"
	"github.com/tufota/tufota/signer"
	"github.com/tufota/tufota/storage"
)

// CheckReport is what Check verified.
type CheckReport struct {
	Repository RepoReport   `json:"repository"`
	Audit      audit.Report `json:"audit"`
}

// Check verifies the backup in dir the way restore does, without restoring
// it anywhere: Open (every file against the manifest, whose SHA-256 must be
// manifestSHA when it is not empty), the dumped state loaded into a scratch
// SQLite database in a temporary directory (removed after), then
// VerifyRepository on the backup's own blobs from the trust anchor it
// carries (the TUF chain with go-tuf, every target's bytes, every release
// the dumped state calls published present in the signed metadata), and
// VerifyAudit against the checkpoint verifier key vkey. A backup that
// passes restores; one that fails would be refused by restore, and the
// error says why (tufota.ErrInvalid for an inconsistency).
func Check(ctx context.Context, dir, manifestSHA, vkey string) (CheckReport, error) {
	var rep CheckReport
	b, err := Open(dir, OpenOptions{ManifestSHA256: manifestSHA})
	if err != nil {
		return rep, err
	}
	scratch, err := os.MkdirTemp("", "tufota-backup-check-")
	if err != nil {
		return rep, fmt.Errorf("check backup: %w", err)
	}
	defer os.RemoveAll(scratch)
	db, err := storage.OpenDB(ctx, "sqlite:"+filepath.Join(scratch, "state.db"))
	if err != nil {
		return rep, fmt.Errorf("check backup: scratch database: %w", err)
	}
	defer db.Close()
	if err := b.loadDB(ctx, db); err != nil {
		return rep, fmt.Errorf("check backup: %w", err)
	}
	blobDir := filepath.Join(b.Dir, blobsDir)
	if _, err := os.Stat(blobDir); errors.Is(err, os.ErrNotExist) {
		blobDir = filepath.Join(scratch, "blobs") // no blobs: an empty store, not a new directory in the backup
	}
	blobs, err := storage.NewFile(blobDir)
	if err != nil {
		return rep, fmt.Errorf("check backup: %w", err)
	}
	defer blobs.Close()
	anchor, err := b.ReadFile("root.json")
	if err != nil {
		anchor, err = readBlobBytes(ctx, blobs, signer.MetadataPrefix+"1.root.json")
	}
	if err != nil {
		return rep, tufota.Errorf(tufota.EInvalid, "check backup: no trust anchor (files/root.json or %s1.root.json): %v", signer.MetadataPrefix, err)
	}
	if rep.Repository, err = VerifyRepository(ctx, blobs, anchor, b.Manifest.CreatedAt, db); err != nil {
		return rep, fmt.Errorf("check backup: %w", err)
	}
	if rep.Audit, err = VerifyAudit(ctx, db, vkey); err != nil {
		return rep, fmt.Errorf("check backup: %w", err)
	}
	return rep, nil
}

func readBlobBytes(ctx context.Context, blobs storage.Blobs, key string) ([]byte, error) {
	obj, err := blobs.Open(ctx, key)
	if err != nil {
		return nil, err
	}
	defer obj.Close()
	return io.ReadAll(obj)
}
