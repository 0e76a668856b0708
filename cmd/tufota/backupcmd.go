package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/tufota/tufota/backup"
	"github.com/tufota/tufota/internal/report"
)

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
			res, err := backup.BackupDir(cmd.Context(), dir, to, auditKey, a.openBlobs, a.passphraseOnce())
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
				row(w, "Blobs:", fmt.Sprintf("%d (%s)", res.Blobs, report.Bytes(res.Bytes)))
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

func (a *app) restoreCommand() *cobra.Command {
	var o backup.RestoreOptions
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
			res, err := backup.RestoreDir(cmd.Context(), o, a.openBlobs, a.passphraseOnce())
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
	f.StringVar(&o.From, "from", "", "backup directory (required)")
	f.StringVar(&o.Dir, "dir", "", "new or empty data directory to restore into (required)")
	f.StringVar(&o.Storage, "storage", "file:blobs", "blob store to restore into: file:DIR (relative to --dir) or s3://BUCKET/PREFIX?endpoint=... (must be empty)")
	f.StringVar(&o.DB, "db", "sqlite:tufota.db", "state database to restore into: sqlite:PATH (relative to --dir) or postgres://... (must be empty)")
	f.StringVar(&o.ManifestSHA256, "manifest-sha256", "", "refuse the backup unless manifest.json has this SHA-256 (printed by backup)")
	f.StringVar(&o.AuditKey, "audit-key", "", "audit checkpoint verifier key (printed by init); default: derived from the audit key")
	_ = cmd.MarkFlagRequired("from")
	_ = cmd.MarkFlagRequired("dir")
	return cmd
}
