package main

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/spf13/cobra"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/access"
	"github.com/tufota/tufota/audit"
	"github.com/tufota/tufota/internal/datadir"
	"github.com/tufota/tufota/signer"
	"github.com/tufota/tufota/storage"
)

type initOptions struct {
	dir          string
	storage      string
	db           string
	keyAlg       string
	adminExpires time.Duration

	// Key URIs per role; a role given none gets a generated file key.
	rootKeys         []string
	rootThreshold    int
	targetsKeys      []string
	targetsThreshold int
	snapshotKey      string
	timestampKey     string
	// hashedBins is the bit length of the hashed-bin layout, 0 for none.
	hashedBins int
}

// initResult is what init prints with -o json.
type initResult struct {
	AdminToken string `json:"admin_token"`
	Root       string `json:"root"`
	Dir        string `json:"dir"`
	// KeyIDs are the TUF key IDs of each role (root, targets, snapshot,
	// timestamp) and of the audit key, in the order given.
	KeyIDs map[string][]string `json:"key_ids"`
	// Thresholds of the root and targets roles.
	Thresholds map[string]int `json:"thresholds"`
	// HashedBins is the bit length of the hashed-bin layout (2^N bins),
	// absent without one.
	HashedBins int `json:"hashed_bins,omitempty"`
	// AuditKey is the note verifier key of the audit log's checkpoints:
	// give it to compliance reviewers (tufota audit verify --key).
	AuditKey string `json:"audit_verifier_key"`
}

func (a *app) initCommand() *cobra.Command {
	var o initOptions
	cmd := &cobra.Command{
		Use:   "init --dir DIR",
		Short: "Create a new repository: state database, blob store, keys and root metadata",
		Long: `init creates a repository in DIR: the state database, the blob store, the
keys of the TUF roles, the first root metadata (DIR/root.json is the trust anchor
to bake into devices) and the first admin API token, which is printed once and
never stored.

Each role's keys are given as key URIs (file:PATH, pkcs11:..., awskms://...,
gcpkms://..., azurekms://..., hashivault://...; see docs/key-ceremony.md): root
and targets may have several keys and a threshold. A role given no key gets a
new encrypted key file in DIR/keys (passphrase from TUFOTA_KEY_PASSPHRASE, or
asked), as does the audit log's checkpoint key. PKCS#11 URIs must read their PIN
from a file (pin-source=file:/abs/path); pin-value= is refused, so that no PIN is
ever written to DIR/tufota.json.`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			res, err := a.initRepo(cmd.Context(), o)
			if err != nil {
				return err
			}
			return a.print(res, func(w io.Writer) {
				fmt.Fprintf(w, "Initialised repository in %s\n", res.Dir)
				fmt.Fprintf(w, "Trust anchor for devices: %s\n", res.Root)
				for _, role := range []string{"root", "targets", "snapshot", "timestamp"} {
					fmt.Fprintf(w, "%s keys (threshold %d): %s\n", role, max(res.Thresholds[role], 1), strings.Join(res.KeyIDs[role], ", "))
				}
				if res.HashedBins > 0 {
					fmt.Fprintf(w, "Hashed bins: %d bin roles (%s-*), signed by the targets key\n", 1<<res.HashedBins, signer.BinsPrefix)
				}
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
	f.StringArrayVar(&o.rootKeys, "root-key", nil, "key URI of a root key (repeat for several; default: a new file key)")
	f.IntVar(&o.rootThreshold, "root-threshold", 0, "signatures needed on root metadata (required with several --root-key)")
	f.StringArrayVar(&o.targetsKeys, "targets-key", nil, "key URI of a targets (release signing) key (repeat for several; default: a new file key)")
	f.IntVar(&o.targetsThreshold, "targets-threshold", 0, "signatures needed on targets metadata (required with several --targets-key)")
	f.StringVar(&o.snapshotKey, "snapshot-key", "", "key URI of the snapshot key, used by the server (default: a new file key)")
	f.StringVar(&o.timestampKey, "timestamp-key", "", "key URI of the timestamp key, used by the server (default: a new file key)")
	f.IntVar(&o.hashedBins, "hashed-bins", 0, fmt.Sprintf("for large catalogues: delegate every target to 2^BITS hashed-bin roles (TAP 15; 1 to %d, e.g. 10 for 100,000 targets), signed by the server's online targets key; needs a targets threshold of 1 and allows no product-line delegations (0: one flat targets metadata)", signer.MaxBinBits))
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
	if _, err := os.Stat(filepath.Join(dir, datadir.ConfigName)); err == nil {
		return res, tufota.Errorf(tufota.EConflict, "%s already holds a tufota repository; refusing to overwrite it", dir)
	}
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		return res, tufota.Errorf(tufota.EConflict, "%s is not empty; init needs a new or empty directory", dir)
	}
	if o.hashedBins < 0 || o.hashedBins > signer.MaxBinBits {
		return res, tufota.Errorf(tufota.EInvalid, "init: --hashed-bins %d: want a bit length between 1 and %d (0: no hashed bins)", o.hashedBins, signer.MaxBinBits)
	}
	if o.hashedBins > 0 && o.targetsThreshold > 1 {
		return res, tufota.Errorf(tufota.EInvalid, "init: --hashed-bins needs --targets-threshold 1: the server signs the bins with its online targets key (threshold signing with offline targets keys is not supported with hashed bins)")
	}
	plans, err := planRoleKeys(o)
	if err != nil {
		return res, err
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
				datadir.RemoveContents(dir)
			}
		}
	}()
	cfg := datadir.Config{
		Version:    1,
		Storage:    o.storage,
		DB:         o.db,
		Keys:       datadir.RoleURIs{Audit: "file:keys/audit.key"},
		HashedBins: o.hashedBins,
	}
	res.HashedBins = o.hashedBins
	kr := signer.NewKeyring(signer.WithPassphrase(func() ([]byte, error) { return pass, nil }))
	defer kr.Close()
	var keys signer.RoleKeys
	res.KeyIDs, res.Thresholds = map[string][]string{}, map[string]int{}
	owner := map[string]string{} // key ID -> role, to refuse a root key reused elsewhere
	for _, p := range plans {
		var svs []signature.SignerVerifier
		seen := map[string]string{}
		for _, uri := range p.uris {
			var sv signature.SignerVerifier
			if p.generated {
				path, _ := cutScheme(datadir.Resolve(dir, uri), "file:")
				sv, err = signer.GenerateFileKey(path, o.keyAlg, pass)
			} else {
				sv, err = kr.Open(ctx, uri)
			}
			if err != nil {
				return res, fmt.Errorf("init: %s key %s: %w", p.role, signer.RedactKeyURI(uri), err)
			}
			id, err := signer.KeyID(sv)
			if err != nil {
				return res, fmt.Errorf("init: %s key %s: %w", p.role, signer.RedactKeyURI(uri), err)
			}
			if other, dup := seen[id]; dup {
				return res, tufota.Errorf(tufota.EInvalid, "init: %s keys %s and %s are the same key (%s); each key counts once towards a threshold", p.role, other, uri, id)
			}
			seen[id] = uri
			if r, ok := owner[id]; ok && (r == "root" || p.role == "root") {
				return res, tufota.Errorf(tufota.EInvalid, "init: key %s (%s) is both a %s and a %s key; root keys must not serve another role", uri, id, r, p.role)
			}
			owner[id] = p.role
			svs = append(svs, sv)
			res.KeyIDs[p.role] = append(res.KeyIDs[p.role], id)
		}
		switch p.role {
		case "root":
			cfg.Keys.Root, keys.Root, keys.RootThreshold = p.uris, svs, p.threshold
		case "targets":
			cfg.Keys.Targets, keys.Targets, keys.TargetsThreshold = p.uris, svs, p.threshold
		case "snapshot":
			cfg.Keys.Snapshot, keys.Snapshot = p.uris[0], svs[0]
		case "timestamp":
			cfg.Keys.Timestamp, keys.Timestamp = p.uris[0], svs[0]
		}
		res.Thresholds[p.role] = p.threshold
	}
	auditPath, _ := cutScheme(datadir.Resolve(dir, cfg.Keys.Audit), "file:")
	auditKey, err := signer.GenerateFileKey(auditPath, "ed25519", pass)
	if err != nil {
		return res, fmt.Errorf("init: generate audit key: %w", err)
	}
	auditID, err := signer.KeyID(auditKey)
	if err != nil {
		return res, err
	}
	res.KeyIDs["audit"] = []string{auditID}
	cfg.AuditOrigin = "tufota/audit/" + auditID[:16]
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
	db, err := storage.OpenDB(ctx, datadir.Resolve(dir, cfg.DB))
	if err != nil {
		return res, fmt.Errorf("init: %w", err)
	}
	defer db.Close()
	repo := signer.NewRepository(blobs)
	root, err := repo.Init(ctx, keys, signer.WithHashedBins(o.hashedBins))
	if err != nil {
		return res, fmt.Errorf("init: %w", err)
	}
	res.Root = filepath.Join(dir, "root.json")
	if err := datadir.WriteFileAtomic(res.Root, root, 0o644); err != nil {
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
			Details: map[string]string{
				"root_key": strings.Join(res.KeyIDs["root"], ","), "root_threshold": fmt.Sprint(res.Thresholds["root"]),
				"targets_key": strings.Join(res.KeyIDs["targets"], ","), "targets_threshold": fmt.Sprint(res.Thresholds["targets"]),
				"snapshot_key": strings.Join(res.KeyIDs["snapshot"], ","), "timestamp_key": strings.Join(res.KeyIDs["timestamp"], ","),
				"key_uris": strings.Join(keyURIsForAudit(cfg.Keys), " "), "hashed_bins": fmt.Sprint(o.hashedBins)}},
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
	if err := datadir.Write(dir, cfg); err != nil {
		return res, fmt.Errorf("init: %w", err)
	}
	res.AdminToken, res.Dir = secret, dir
	return res, nil
}

func cutScheme(uri, scheme string) (string, bool) {
	if len(uri) >= len(scheme) && uri[:len(scheme)] == scheme {
		return uri[len(scheme):], true
	}
	return uri, false
}

// rolePlan is what init does for one role's keys.
type rolePlan struct {
	role      string
	uris      []string // as stored in tufota.json
	threshold int
	generated bool // new file keys under DIR/keys
}

// planRoleKeys validates the per-role key flags before anything is created:
// URIs parse and are fit to be stored (no inline PIN, absolute pin-source
// and file paths), no URI is given twice for a role, and each threshold is
// between 1 and the number of keys (required when there are several).
func planRoleKeys(o initOptions) ([]rolePlan, error) {
	specs := []struct {
		role      string
		uris      []string
		threshold int
		multi     bool
	}{
		{"root", o.rootKeys, o.rootThreshold, true},
		{"targets", o.targetsKeys, o.targetsThreshold, true},
		{"snapshot", nonEmpty(o.snapshotKey), 0, false},
		{"timestamp", nonEmpty(o.timestampKey), 0, false},
	}
	var plans []rolePlan
	for _, s := range specs {
		p := rolePlan{role: s.role, threshold: s.threshold}
		if len(s.uris) == 0 {
			if s.threshold > 1 {
				return nil, tufota.Errorf(tufota.EInvalid, "init: --%s-threshold %d needs at least %d --%s-key URIs (a role given no key gets one new file key)", s.role, s.threshold, s.threshold, s.role)
			}
			p.uris, p.generated, p.threshold = []string{"file:keys/" + s.role + ".key"}, true, 1
			plans = append(plans, p)
			continue
		}
		seen := map[string]bool{}
		for _, raw := range s.uris {
			uri, err := signer.ConfigKeyURI(raw)
			if err != nil {
				return nil, fmt.Errorf("init: --%s-key: %w", s.role, err)
			}
			if scheme, _ := signer.KeyURIScheme(uri); scheme == "file" {
				// A relative path names a file in the working directory
				// now, but the server resolves it under DIR: store it
				// absolute.
				path, _ := cutScheme(uri, "file:")
				abs, err := filepath.Abs(path)
				if err != nil {
					return nil, fmt.Errorf("init: --%s-key %s: %w", s.role, raw, err)
				}
				uri = "file:" + abs
			}
			if seen[uri] {
				return nil, tufota.Errorf(tufota.EInvalid, "init: --%s-key %s is given twice", s.role, signer.RedactKeyURI(raw))
			}
			seen[uri] = true
			p.uris = append(p.uris, uri)
		}
		if p.threshold == 0 {
			if len(p.uris) > 1 {
				return nil, tufota.Errorf(tufota.EInvalid, "init: %d --%s-key URIs need --%s-threshold (1 to %d)", len(p.uris), s.role, s.role, len(p.uris))
			}
			p.threshold = 1
		}
		if p.threshold < 1 || p.threshold > len(p.uris) {
			return nil, tufota.Errorf(tufota.EInvalid, "init: --%s-threshold %d must be between 1 and the number of %s keys (%d)", s.role, p.threshold, s.role, len(p.uris))
		}
		plans = append(plans, p)
	}
	return plans, nil
}

func nonEmpty(s string) []string {
	if s == "" {
		return nil
	}
	return []string{s}
}

// keyURIsForAudit lists role=URI pairs for the audit record of init.
func keyURIsForAudit(k datadir.RoleURIs) []string {
	var out []string
	for _, u := range k.Root {
		out = append(out, "root="+u)
	}
	for _, u := range k.Targets {
		out = append(out, "targets="+u)
	}
	return append(out, "snapshot="+k.Snapshot, "timestamp="+k.Timestamp)
}
