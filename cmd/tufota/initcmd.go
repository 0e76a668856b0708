package main

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/spf13/cobra"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/access"
	"github.com/tufota/tufota/audit"
	"github.com/tufota/tufota/signer"
	"github.com/tufota/tufota/storage"
)

type initOptions struct {
	dir          string
	storage      string
	db           string
	keyAlg       string
	adminExpires time.Duration
}

// initResult is what init prints with -o json.
type initResult struct {
	AdminToken string            `json:"admin_token"`
	Root       string            `json:"root"`
	Dir        string            `json:"dir"`
	KeyIDs     map[string]string `json:"key_ids"`
	// AuditKey is the note verifier key of the audit log's checkpoints:
	// give it to compliance reviewers (tufota audit verify --key).
	AuditKey string `json:"audit_verifier_key"`
}

func (a *app) initCommand() *cobra.Command {
	var o initOptions
	cmd := &cobra.Command{
		Use:   "init --dir DIR",
		Short: "Create a new repository: state database, blob store, keys and root metadata",
		Long: `init creates a repository in DIR: the state database, the blob store, one
encrypted key per TUF role (passphrase from TUFOTA_KEY_PASSPHRASE, or asked), the
first root metadata (DIR/root.json is the trust anchor to bake into devices) and
the first admin API token, which is printed once and never stored.`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			res, err := a.initRepo(cmd.Context(), o)
			if err != nil {
				return err
			}
			return a.print(res, func(w io.Writer) {
				fmt.Fprintf(w, "Initialised repository in %s\n", res.Dir)
				fmt.Fprintf(w, "Trust anchor for devices: %s\n", res.Root)
				fmt.Fprintf(w, "Audit checkpoint key (for reviewers' 'tufota audit verify --key'): %s\n", res.AuditKey)
				fmt.Fprintf(w, "Admin token (shown once, store it now):\n%s\n", res.AdminToken)
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.dir, "dir", "", "data directory to create (required)")
	f.StringVar(&o.storage, "storage", "file:blobs", "blob store: file:DIR (relative to --dir) or s3://BUCKET/PREFIX?endpoint=HOST:PORT&region=R&secure=true|false&sse=s3|kms:KEY")
	f.StringVar(&o.db, "db", "sqlite:tufota.db", "state database: sqlite:PATH (relative to --dir) or postgres://...")
	f.StringVar(&o.keyAlg, "key-type", "ecdsa-p256", "algorithm of generated keys: ecdsa-p256 or ed25519")
	f.DurationVar(&o.adminExpires, "admin-token-expires", 90*24*time.Hour, "lifetime of the first admin token")
	_ = cmd.MarkFlagRequired("dir")
	return cmd
}

func (a *app) initRepo(ctx context.Context, o initOptions) (res initResult, err error) {
	if o.dir == "" {
		return res, tufota.Errorf(tufota.EInvalid, "init: --dir is required")
	}
	dir, err := filepath.Abs(o.dir)
	if err != nil {
		return res, err
	}
	if _, err := os.Stat(filepath.Join(dir, configName)); err == nil {
		return res, tufota.Errorf(tufota.EConflict, "%s already holds a tufota repository; refusing to overwrite it", dir)
	}
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		return res, tufota.Errorf(tufota.EConflict, "%s is not empty; init needs a new or empty directory", dir)
	}
	pass, err := a.passphrase(true)
	if err != nil {
		return res, err
	}
	created := false
	if _, statErr := os.Stat(dir); errors.Is(statErr, os.ErrNotExist) {
		created = true
	}
	if err := os.MkdirAll(filepath.Join(dir, "keys"), 0o700); err != nil {
		return res, fmt.Errorf("init: %w", err)
	}
	defer func() {
		if err != nil { // leave nothing half-made behind
			if created {
				_ = os.RemoveAll(dir)
			} else {
				removeContents(dir)
			}
		}
	}()
	cfg := repoConfig{
		Version: 1,
		Storage: o.storage,
		DB:      o.db,
		Keys: roleURIs{
			Root:      []string{"file:keys/root.key"},
			Targets:   []string{"file:keys/targets.key"},
			Snapshot:  "file:keys/snapshot.key",
			Timestamp: "file:keys/timestamp.key",
			Audit:     "file:keys/audit.key",
		},
	}
	gen := func(uri string) (signature.SignerVerifier, error) {
		p, _ := cutScheme(resolve(dir, uri), "file:")
		return signer.GenerateFileKey(p, o.keyAlg, pass)
	}
	var keys signer.RoleKeys
	res.KeyIDs = map[string]string{}
	for role, uri := range map[string]string{"root": cfg.Keys.Root[0], "targets": cfg.Keys.Targets[0], "snapshot": cfg.Keys.Snapshot, "timestamp": cfg.Keys.Timestamp} {
		sv, err := gen(uri)
		if err != nil {
			return res, fmt.Errorf("init: generate %s key: %w", role, err)
		}
		if res.KeyIDs[role], err = signer.KeyID(sv); err != nil {
			return res, err
		}
		switch role {
		case "root":
			keys.Root, keys.RootThreshold = []signature.SignerVerifier{sv}, 1
		case "targets":
			keys.Targets, keys.TargetsThreshold = []signature.SignerVerifier{sv}, 1
		case "snapshot":
			keys.Snapshot = sv
		case "timestamp":
			keys.Timestamp = sv
		}
	}
	auditPath, _ := cutScheme(resolve(dir, cfg.Keys.Audit), "file:")
	auditKey, err := signer.GenerateFileKey(auditPath, "ed25519", pass)
	if err != nil {
		return res, fmt.Errorf("init: generate audit key: %w", err)
	}
	if res.KeyIDs["audit"], err = signer.KeyID(auditKey); err != nil {
		return res, err
	}
	cfg.AuditOrigin = "tufota/audit/" + res.KeyIDs["audit"][:16]
	if cfg.Storage == "" {
		cfg.Storage = "file:blobs"
	}
	if cfg.DB == "" {
		cfg.DB = "sqlite:tufota.db"
	}
	blobs, err := a.openBlobs(ctx, dir, cfg.Storage, true)
	if err != nil {
		return res, fmt.Errorf("init: %w", err)
	}
	if c, ok := blobs.(io.Closer); ok {
		defer c.Close()
	}
	db, err := storage.OpenDB(ctx, resolve(dir, cfg.DB))
	if err != nil {
		return res, fmt.Errorf("init: %w", err)
	}
	defer db.Close()
	repo := signer.NewRepository(blobs)
	root, err := repo.Init(ctx, keys)
	if err != nil {
		return res, fmt.Errorf("init: %w", err)
	}
	res.Root = filepath.Join(dir, "root.json")
	if err := writeFileAtomic(res.Root, root, 0o644); err != nil {
		return res, fmt.Errorf("init: write trust anchor: %w", err)
	}
	secret, tok, err := access.NewTokens(db, nil).Create(ctx, nil, access.NewToken{Name: "admin", Role: access.RoleAdmin, TTL: o.adminExpires}, "tufota-init")
	if err != nil {
		return res, fmt.Errorf("init: %w", err)
	}
	auditSigner, ok := auditKey.(crypto.Signer)
	if !ok {
		return res, fmt.Errorf("init: audit key cannot sign checkpoints")
	}
	alog, err := openAudit(ctx, db, cfg.AuditOrigin, auditSigner, a.logger())
	if err != nil {
		return res, fmt.Errorf("init: %w", err)
	}
	for _, e := range []audit.Entry{
		{Actor: "tufota-init", Role: "system", Action: "repository.init", Object: "metadata/1.root.json", Outcome: audit.OutcomeOK,
			Details: map[string]string{"root_key": res.KeyIDs["root"], "targets_key": res.KeyIDs["targets"], "snapshot_key": res.KeyIDs["snapshot"], "timestamp_key": res.KeyIDs["timestamp"]}},
		{Actor: "tufota-init", Role: "system", Action: "token.create", Object: "token/" + tok.ID, Outcome: audit.OutcomeOK,
			Details: map[string]string{"name": tok.Name, "role": string(tok.Role)}},
	} {
		if _, err := alog.Append(ctx, e); err != nil {
			return res, fmt.Errorf("init: audit: %w", err)
		}
	}
	res.AuditKey = alog.VerifierKey()
	if _, err := alog.Checkpoint(ctx); err != nil {
		return res, fmt.Errorf("init: audit checkpoint: %w", err)
	}
	if err := writeConfig(dir, cfg); err != nil {
		return res, fmt.Errorf("init: %w", err)
	}
	res.AdminToken, res.Dir = secret, dir
	return res, nil
}

func removeContents(dir string) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		_ = os.RemoveAll(filepath.Join(dir, e.Name()))
	}
}

func cutScheme(uri, scheme string) (string, bool) {
	if len(uri) >= len(scheme) && uri[:len(scheme)] == scheme {
		return uri[len(scheme):], true
	}
	return uri, false
}
