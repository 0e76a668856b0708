package backup

// Backing up and restoring a tufota data directory as a whole: what
// `tufota backup` and `tufota restore` do, on top of Create, Check, Open
// and the verifiers.

import (
	"bytes"
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/audit"
	"github.com/tufota/tufota/internal/datadir"
	"github.com/tufota/tufota/signer"
	"github.com/tufota/tufota/storage"
)

// DirResult is what BackupDir did: what `tufota backup` prints.
type DirResult struct {
	Backup           string      `json:"backup"`
	ManifestSHA256   string      `json:"manifest_sha256"`
	Tables           []TableInfo `json:"tables"`
	Blobs            int         `json:"blobs"`
	Bytes            int64       `json:"bytes"`
	TimestampVersion int64       `json:"timestamp_version"`
	TargetsVersion   int64       `json:"targets_version"`
	// Check is what restore's own verification found in the backup, run
	// before backup reports success.
	Check CheckReport `json:"check"`
	// NotCovered lists the key URIs whose keys are not in the backup
	// (HSM/KMS keys, key files outside the data directory).
	NotCovered []string `json:"not_covered,omitempty"`
}

// Stores opens a data directory's blob store (create: make a missing
// bucket); the CLI passes one with the S3 credentials of its environment.
type Stores func(ctx context.Context, dir, url string, create bool) (storage.Blobs, error)

// BackupDir backs up the repository in data directory dir into the new
// directory to: state, blobs, config and key files (Create), then runs
// restore's own verification on the backup (Check) with the audit
// verifier key auditKey, or one derived from the audit key with
// passphrase; a backup that fails it is removed.
func BackupDir(ctx context.Context, dir, to, auditKey string, open Stores, passphrase func() ([]byte, error)) (DirResult, error) {
	var res DirResult
	dir, err := filepath.Abs(dir)
	if err != nil {
		return res, err
	}
	cfg, err := datadir.Load(dir)
	if err != nil {
		return res, err
	}
	vkey := auditKey
	if vkey == "" {
		pass, err := passphrase()
		if err != nil {
			return res, fmt.Errorf("backup: to verify the audit log in the backup, pass --audit-key or give the key passphrase: %w", err)
		}
		if vkey, err = auditVerifierKey(ctx, dir, cfg, pass); err != nil {
			return res, fmt.Errorf("backup: %w", err)
		}
	}
	_, statErr := os.Stat(to)
	created := errors.Is(statErr, os.ErrNotExist)
	files, notCovered := repoFiles(dir, cfg)
	blobs, err := open(ctx, dir, cfg.Storage, false)
	if err != nil {
		return res, err
	}
	if c, ok := blobs.(io.Closer); ok {
		defer c.Close()
	}
	db, err := storage.OpenDB(ctx, datadir.Resolve(dir, cfg.DB))
	if err != nil {
		return res, err
	}
	defer db.Close()
	m, sum, err := Create(ctx, to, Source{DB: db, Blobs: blobs, Files: files})
	if err != nil {
		return res, err
	}
	// Restore's own check, so that a backup reported good restores.
	check, err := Check(ctx, to, sum, vkey)
	if err != nil {
		if created {
			_ = os.RemoveAll(to)
		} else {
			datadir.RemoveContents(to)
		}
		return res, fmt.Errorf("backup: the backup would not restore, so it was removed: %w", err)
	}
	res = DirResult{Backup: to, ManifestSHA256: sum, Tables: m.Tables, TimestampVersion: m.TimestampVersion,
		TargetsVersion: m.TargetsVersion, Check: check, NotCovered: notCovered}
	for _, f := range m.Files {
		if strings.HasPrefix(f.Path, "blobs/") {
			res.Blobs++
			res.Bytes += f.Size
		}
	}
	return res, nil
}

// repoFiles lists the files of the repository directory that a backup
// carries: tufota.json, the trust anchor and every key file inside dir. It
// also returns the key URIs it cannot carry.
func repoFiles(dir string, cfg datadir.Config) (files []File, notCovered []string) {
	files = append(files, File{Name: datadir.ConfigName, Path: filepath.Join(dir, datadir.ConfigName)})
	if _, err := os.Stat(filepath.Join(dir, "root.json")); err == nil {
		files = append(files, File{Name: "root.json", Path: filepath.Join(dir, "root.json")})
	}
	uris := append(append([]string{}, cfg.Keys.Root...), cfg.Keys.Targets...)
	uris = append(uris, cfg.Keys.Snapshot, cfg.Keys.Timestamp, cfg.Keys.Audit)
	seen := map[string]bool{}
	for _, uri := range uris {
		if uri == "" || seen[uri] {
			continue
		}
		seen[uri] = true
		p, isFile := strings.CutPrefix(datadir.Resolve(dir, uri), "file:")
		if !isFile {
			notCovered = append(notCovered, uri+" (not a key file: back it up with the HSM/KMS tools)")
			continue
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
			notCovered = append(notCovered, uri+" (outside the data directory)")
			continue
		}
		files = append(files, File{Name: filepath.ToSlash(rel), Path: p})
	}
	return files, notCovered
}

// RestoreResult is what RestoreDir did: what `tufota restore` prints.
type RestoreResult struct {
	Dir            string       `json:"dir"`
	Storage        string       `json:"storage"`
	DB             string       `json:"db"`
	ManifestSHA256 string       `json:"manifest_sha256"`
	Repository     RepoReport   `json:"repository"`
	Audit          audit.Report `json:"audit"`
	NotCovered     []string     `json:"not_covered,omitempty"`
}

// RestoreOptions says what RestoreDir restores, and where.
type RestoreOptions struct {
	From, Dir, Storage, DB string
	// ManifestSHA256, when set, is the manifest's SHA-256 the backup must
	// have; AuditKey the audit checkpoint verifier key (else derived from
	// the restored audit key with the passphrase).
	ManifestSHA256, AuditKey string
}

// RestoreDir verifies the backup o.From, restores it into the new or
// empty directory o.Dir with fresh stores o.Storage and o.DB, and
// verifies the result (TUF chain, targets, releases, audit log).
func RestoreDir(ctx context.Context, o RestoreOptions, open Stores, passphrase func() ([]byte, error)) (res RestoreResult, err error) {
	// 1. Verify the whole backup; nothing is written before this succeeds.
	b, err := Open(o.From, OpenOptions{ManifestSHA256: o.ManifestSHA256})
	if err != nil {
		return res, fmt.Errorf("restore: %w", err)
	}
	cfgBytes, err := b.ReadFile(datadir.ConfigName)
	if err != nil {
		return res, fmt.Errorf("restore: %w", err)
	}
	var cfg datadir.Config
	dec := json.NewDecoder(bytes.NewReader(cfgBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cfg); err != nil {
		return res, tufota.Errorf(tufota.EInvalid, "restore: the backup's %s: %v", datadir.ConfigName, err)
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return res, err
	}
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		return res, tufota.Errorf(tufota.EConflict, "restore: %s is not empty; restore needs a new or empty directory", dir)
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return res, fmt.Errorf("restore: %w", err)
	}
	var pass []byte
	if o.AuditKey == "" {
		if pass, err = passphrase(); err != nil {
			return res, fmt.Errorf("restore: to verify the audit log, pass --audit-key or give the key passphrase: %w", err)
		}
	}
	_, statErr := os.Stat(dir)
	created := errors.Is(statErr, os.ErrNotExist)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return res, fmt.Errorf("restore: %w", err)
	}
	defer func() {
		if err != nil { // leave no half-restored directory behind
			if created {
				_ = os.RemoveAll(dir)
			} else {
				datadir.RemoveContents(dir)
			}
		}
	}()
	cfg.Storage, cfg.DB = o.Storage, o.DB
	// 2. Fresh stores.
	blobs, err := open(ctx, dir, cfg.Storage, true)
	if err != nil {
		return res, fmt.Errorf("restore: %w", err)
	}
	if c, ok := blobs.(io.Closer); ok {
		defer c.Close()
	}
	db, err := storage.OpenDB(ctx, datadir.Resolve(dir, cfg.DB))
	if err != nil {
		return res, fmt.Errorf("restore: %w", err)
	}
	defer db.Close()
	if err := CheckEmpty(ctx, db, blobs); err != nil {
		return res, fmt.Errorf("restore: %w", err)
	}
	// 3. Files, config, state.
	if err := b.RestoreFiles(dir); err != nil {
		return res, err
	}
	if err := datadir.Write(dir, cfg); err != nil {
		return res, fmt.Errorf("restore: %w", err)
	}
	if err := b.RestoreState(ctx, db, blobs); err != nil {
		return res, err
	}
	// 4. Verify what was restored.
	anchor, err := os.ReadFile(filepath.Join(dir, "root.json"))
	if errors.Is(err, os.ErrNotExist) {
		anchor, err = readBlob(ctx, blobs, signer.MetadataPrefix+"1.root.json")
	}
	if err != nil {
		return res, fmt.Errorf("restore: read the trust anchor: %w", err)
	}
	if res.Repository, err = VerifyRepository(ctx, blobs, anchor, b.Manifest.CreatedAt, db); err != nil {
		return res, fmt.Errorf("restore: %w", err)
	}
	vkey := o.AuditKey
	if vkey == "" {
		if vkey, err = auditVerifierKey(ctx, dir, cfg, pass); err != nil {
			return res, fmt.Errorf("restore: %w", err)
		}
	}
	if res.Audit, err = VerifyAudit(ctx, db, vkey); err != nil {
		return res, fmt.Errorf("restore: %w", err)
	}
	_, res.NotCovered = repoFiles(dir, cfg)
	res.Dir, res.Storage, res.DB, res.ManifestSHA256 = dir, cfg.Storage, storageDBName(cfg.DB), b.ManifestSHA256
	return res, nil
}

// auditVerifierKey derives the audit checkpoint verifier key from the
// restored audit key.
func auditVerifierKey(ctx context.Context, dir string, cfg datadir.Config, pass []byte) (string, error) {
	k, err := signer.Open(ctx, datadir.Resolve(dir, cfg.Keys.Audit), signer.WithPassphrase(func() ([]byte, error) { return pass, nil }))
	if err != nil {
		return "", fmt.Errorf("open audit key: %w", err)
	}
	cs, ok := k.(crypto.Signer)
	if !ok {
		return "", fmt.Errorf("audit key %s is not a crypto.Signer", cfg.Keys.Audit)
	}
	ns, err := audit.NewNoteSigner(cfg.AuditOrigin, cs)
	if err != nil {
		return "", err
	}
	return ns.VerifierKey(), nil
}

func readBlob(ctx context.Context, blobs storage.Blobs, key string) ([]byte, error) {
	obj, err := blobs.Open(ctx, key)
	if err != nil {
		return nil, err
	}
	defer obj.Close()
	return io.ReadAll(obj)
}

// storageDBName hides a database URL's password.
func storageDBName(u string) string {
	if i, j := strings.Index(u, "://"), strings.LastIndexByte(u, '@'); i >= 0 && j > i {
		if k := strings.IndexByte(u[i+3:j], ':'); k >= 0 {
			return u[:i+3+k] + ":xxxxx" + u[j:]
		}
	}
	return u
}
