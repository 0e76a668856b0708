package main

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

	"github.com/spf13/cobra"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/audit"
	"github.com/tufota/tufota/backup"
	"github.com/tufota/tufota/internal/datadir"
	"github.com/tufota/tufota/signer"
	"github.com/tufota/tufota/storage"
)

// backupResult is what backup prints with -o json.
type backupResult struct {
	Backup           string             `json:"backup"`
	ManifestSHA256   string             `json:"manifest_sha256"`
	Tables           []backup.TableInfo `json:"tables"`
	Blobs            int                `json:"blobs"`
	Bytes            int64              `json:"bytes"`
	TimestampVersion int64              `json:"timestamp_version"`
	TargetsVersion   int64              `json:"targets_version"`
	// Check is what restore's own verification found in the backup, run
	// before backup reports success.
	Check backup.CheckReport `json:"check"`
	// NotCovered lists the key URIs whose keys are not in the backup
	// (HSM/KMS keys, key files outside the data directory).
	NotCovered []string `json:"not_covered,omitempty"`
}

func (a *app) backupCommand() *cobra.Command {
	var dir, to, auditKey string
	cmd := &cobra.Command{
		Use:   "backup --dir DIR --to PATH [--audit-key KEY]",
		Short: "Write a consistent, verifiable backup of state, repository, audit log and config",
		Long: `backup copies the repository in DIR into the new directory PATH: every table of
the state database (SQLite or PostgreSQL) dumped in one transaction as JSON
lines, every blob (TUF metadata, targets, staged uploads), tufota.json, the trust
anchor root.json and the encrypted key files as they are (never decrypted), with a
manifest of every file's size and SHA-256. It may run while the server runs: it
never captures a targets version whose blobs are missing. Record the printed
manifest SHA-256 apart from the backup and pass it to restore --manifest-sha256.
Keys in an HSM or KMS are not copied: back them up with the HSM's own tools.

Before it reports success, backup runs restore's own verification on the backup
(every file against the manifest, the dumped state, the TUF chain from the trust
anchor with go-tuf, every target, every published release in the signed metadata,
the audit log and its checkpoints against --audit-key, or the key derived from the
audit key with TUFOTA_KEY_PASSPHRASE). A backup that fails it would not restore: it
is removed and the error says why (the source repository is inconsistent).`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			res, err := a.runBackup(cmd.Context(), dir, to, auditKey)
			if err != nil {
				return err
			}
			return a.print(res, func(w io.Writer) {
				row(w, "Backup:", res.Backup)
				row(w, "Manifest SHA-256:", res.ManifestSHA256)
				n := int64(0)
				for _, t := range res.Tables {
					n += t.Rows
				}
				row(w, "Database:", fmt.Sprintf("%d tables, %d rows", len(res.Tables), n))
				row(w, "Blobs:", fmt.Sprintf("%d (%s)", res.Blobs, humanBytes(res.Bytes)))
				row(w, "Repository:", fmt.Sprintf("timestamp v%d, targets v%d", res.TimestampVersion, res.TargetsVersion))
				row(w, "Verified:", fmt.Sprintf("as restore would: %d targets, %d releases in signed metadata; audit log %d entries, %d checkpoints",
					res.Check.Repository.Targets, res.Check.Repository.Releases, res.Check.Audit.Entries, res.Check.Audit.Checkpoints))
				for _, k := range res.NotCovered {
					row(w, "NOT in the backup:", k)
				}
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&dir, "dir", "", "repository data directory (required)")
	f.StringVar(&to, "to", "", "new directory to write the backup into (required)")
	f.StringVar(&auditKey, "audit-key", "", "audit checkpoint verifier key (printed by init) for the check of the backup; default: derived from the audit key")
	_ = cmd.MarkFlagRequired("dir")
	_ = cmd.MarkFlagRequired("to")
	return cmd
}

func (a *app) runBackup(ctx context.Context, dir, to, auditKey string) (backupResult, error) {
	var res backupResult
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
		pass, err := a.passphrase(false)
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
	blobs, err := a.openBlobs(ctx, dir, cfg.Storage, false)
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
	m, sum, err := backup.Create(ctx, to, backup.Source{DB: db, Blobs: blobs, Files: files})
	if err != nil {
		return res, err
	}
	// Restore's own check, so that a backup reported good restores.
	check, err := backup.Check(ctx, to, sum, vkey)
	if err != nil {
		if created {
			_ = os.RemoveAll(to)
		} else {
			removeContents(to)
		}
		return res, fmt.Errorf("backup: the backup would not restore, so it was removed: %w", err)
	}
	res = backupResult{Backup: to, ManifestSHA256: sum, Tables: m.Tables, TimestampVersion: m.TimestampVersion,
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
func repoFiles(dir string, cfg datadir.Config) (files []backup.File, notCovered []string) {
	files = append(files, backup.File{Name: datadir.ConfigName, Path: filepath.Join(dir, datadir.ConfigName)})
	if _, err := os.Stat(filepath.Join(dir, "root.json")); err == nil {
		files = append(files, backup.File{Name: "root.json", Path: filepath.Join(dir, "root.json")})
	}
	uris := append(append([]string{}, cfg.Keys.Root...), cfg.Keys.Targets...)
	uris = append(uris, cfg.Keys.Snapshot, cfg.Keys.Timestamp, cfg.Keys.Audit)
	seen := map[string]bool{}
	for _, uri := range uris {
		if uri == "" || seen[uri] {
			continue
		}
		seen[uri] = true
		p, isFile := cutScheme(datadir.Resolve(dir, uri), "file:")
		if !isFile {
			notCovered = append(notCovered, uri+" (not a key file: back it up with the HSM/KMS tools)")
			continue
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
			notCovered = append(notCovered, uri+" (outside the data directory)")
			continue
		}
		files = append(files, backup.File{Name: filepath.ToSlash(rel), Path: p})
	}
	return files, notCovered
}

// restoreResult is what restore prints with -o json.
type restoreResult struct {
	Dir            string            `json:"dir"`
	Storage        string            `json:"storage"`
	DB             string            `json:"db"`
	ManifestSHA256 string            `json:"manifest_sha256"`
	Repository     backup.RepoReport `json:"repository"`
	Audit          audit.Report      `json:"audit"`
	NotCovered     []string          `json:"not_covered,omitempty"`
}

type restoreOptions struct {
	from, dir, storage, db, manifestSHA, auditKey string
}

func (a *app) restoreCommand() *cobra.Command {
	var o restoreOptions
	cmd := &cobra.Command{
		Use:   "restore --from PATH --dir NEWDIR [--storage URL] [--db URL]",
		Short: "Restore a backup into a fresh repository and verify it",
		Long: `restore first verifies the whole backup against its manifest (a changed, missing or
extra byte is refused, naming the file, before anything is written), then restores it
into the new or empty directory NEWDIR, with its state in --db and its blobs in
--storage (default: SQLite and files in NEWDIR; both must be empty), and then
verifies the result: the audit log (every entry, the Merkle tree, every signed
checkpoint), the TUF metadata chain from the trust anchor with go-tuf's updater,
and every target's length and hashes. The audit checkpoint key is --audit-key (as
printed by init), or derived from the audit key with TUFOTA_KEY_PASSPHRASE.`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			res, err := a.runRestore(cmd.Context(), o)
			if err != nil {
				return err
			}
			return a.print(res, func(w io.Writer) {
				row(w, "Restored into:", res.Dir)
				row(w, "Storage:", res.Storage)
				row(w, "Database:", res.DB)
				row(w, "TUF repository:", fmt.Sprintf("OK: root v%d, timestamp v%d, targets v%d; %d targets and %d releases verified",
					res.Repository.RootVersion, res.Repository.TimestampVersion, res.Repository.TargetsVersion, res.Repository.Targets, res.Repository.Releases))
				row(w, "Audit log:", fmt.Sprintf("OK: %d entries, %d checkpoints", res.Audit.Entries, res.Audit.Checkpoints))
				for _, k := range res.NotCovered {
					row(w, "Not restored:", k)
				}
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.from, "from", "", "backup directory (required)")
	f.StringVar(&o.dir, "dir", "", "new or empty data directory to restore into (required)")
	f.StringVar(&o.storage, "storage", "file:blobs", "blob store to restore into: file:DIR (relative to --dir) or s3://BUCKET/PREFIX?endpoint=... (must be empty)")
	f.StringVar(&o.db, "db", "sqlite:tufota.db", "state database to restore into: sqlite:PATH (relative to --dir) or postgres://... (must be empty)")
	f.StringVar(&o.manifestSHA, "manifest-sha256", "", "refuse the backup unless manifest.json has this SHA-256 (printed by backup)")
	f.StringVar(&o.auditKey, "audit-key", "", "audit checkpoint verifier key (printed by init); default: derived from the audit key")
	_ = cmd.MarkFlagRequired("from")
	_ = cmd.MarkFlagRequired("dir")
	return cmd
}

func (a *app) runRestore(ctx context.Context, o restoreOptions) (res restoreResult, err error) {
	// 1. Verify the whole backup; nothing is written before this succeeds.
	b, err := backup.Open(o.from, backup.OpenOptions{ManifestSHA256: o.manifestSHA})
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
	dir, err := filepath.Abs(o.dir)
	if err != nil {
		return res, err
	}
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		return res, tufota.Errorf(tufota.EConflict, "restore: %s is not empty; restore needs a new or empty directory", dir)
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return res, fmt.Errorf("restore: %w", err)
	}
	var pass []byte
	if o.auditKey == "" {
		if pass, err = a.passphrase(false); err != nil {
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
				removeContents(dir)
			}
		}
	}()
	cfg.Storage, cfg.DB = o.storage, o.db
	// 2. Fresh stores.
	blobs, err := a.openBlobs(ctx, dir, cfg.Storage, true)
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
	if err := backup.CheckEmpty(ctx, db, blobs); err != nil {
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
	if res.Repository, err = backup.VerifyRepository(ctx, blobs, anchor, b.Manifest.CreatedAt, db); err != nil {
		return res, fmt.Errorf("restore: %w", err)
	}
	vkey := o.auditKey
	if vkey == "" {
		if vkey, err = auditVerifierKey(ctx, dir, cfg, pass); err != nil {
			return res, fmt.Errorf("restore: %w", err)
		}
	}
	if res.Audit, err = backup.VerifyAudit(ctx, db, vkey); err != nil {
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
