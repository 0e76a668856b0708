package datadir

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/access"
	"github.com/tufota/tufota/audit"
	"github.com/tufota/tufota/signer"
	"github.com/tufota/tufota/storage"
)

// InitOptions says how Init makes a repository.
type InitOptions struct {
	Dir          string
	Storage      string
	DB           string
	KeyAlg       string
	AdminExpires time.Duration

	// Key URIs per role; a role given none gets a generated file key.
	RootKeys         []string
	RootThreshold    int
	TargetsKeys      []string
	TargetsThreshold int
	SnapshotKey      string
	TimestampKey     string
	// hashedBins is the bit length of the hashed-bin layout, 0 for none.
	HashedBins int
}

// InitResult is what Init made: what `tufota init` prints.
type InitResult struct {
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

// Init creates a repository in o.Dir: the state database, the blob store
// (opened with open), the role keys (generated file keys, encrypted with
// passphrase, for roles given no key URI), the first root metadata and
// DIR/root.json, the first admin token and the audit log's first entries
// and checkpoint. It refuses a directory that is not new or empty, and
// leaves nothing behind when it fails.
func Init(ctx context.Context, o InitOptions, open Opener, passphrase func() ([]byte, error), log *slog.Logger) (res InitResult, err error) {
	if o.Dir == "" {
		return res, tufota.Errorf(tufota.EInvalid, "init: --dir is required")
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return res, err
	}
	if _, err := os.Stat(filepath.Join(dir, ConfigName)); err == nil {
		return res, tufota.Errorf(tufota.EConflict, "%s already holds a tufota repository; refusing to overwrite it", dir)
	}
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		return res, tufota.Errorf(tufota.EConflict, "%s is not empty; init needs a new or empty directory", dir)
	}
	if o.HashedBins < 0 || o.HashedBins > signer.MaxBinBits {
		return res, tufota.Errorf(tufota.EInvalid, "init: --hashed-bins %d: want a bit length between 1 and %d (0: no hashed bins)", o.HashedBins, signer.MaxBinBits)
	}
	if o.HashedBins > 0 && o.TargetsThreshold > 1 {
		return res, tufota.Errorf(tufota.EInvalid, "init: --hashed-bins needs --targets-threshold 1: the server signs the bins with its online targets key (threshold signing with offline targets keys is not supported with hashed bins)")
	}
	plans, err := planRoleKeys(o)
	if err != nil {
		return res, err
	}
	pass, err := passphrase()
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
				RemoveContents(dir)
			}
		}
	}()
	cfg := Config{
		Version:    1,
		Storage:    o.Storage,
		DB:         o.DB,
		Keys:       RoleURIs{Audit: "file:keys/audit.key"},
		HashedBins: o.HashedBins,
	}
	res.HashedBins = o.HashedBins
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
				path, _ := strings.CutPrefix(Resolve(dir, uri), "file:")
				sv, err = signer.GenerateFileKey(path, o.KeyAlg, pass)
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
	auditPath, _ := strings.CutPrefix(Resolve(dir, cfg.Keys.Audit), "file:")
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
	blobs, err := open(ctx, dir, cfg.Storage, true)
	if err != nil {
		return res, fmt.Errorf("init: %w", err)
	}
	if c, ok := blobs.(io.Closer); ok {
		defer c.Close()
	}
	db, err := storage.OpenDB(ctx, Resolve(dir, cfg.DB))
	if err != nil {
		return res, fmt.Errorf("init: %w", err)
	}
	defer db.Close()
	repo := signer.NewRepository(blobs)
	root, err := repo.Init(ctx, keys, signer.WithHashedBins(o.HashedBins))
	if err != nil {
		return res, fmt.Errorf("init: %w", err)
	}
	res.Root = filepath.Join(dir, "root.json")
	if err := WriteFileAtomic(res.Root, root, 0o644); err != nil {
		return res, fmt.Errorf("init: write trust anchor: %w", err)
	}
	secret, tok, err := access.NewTokens(db, nil).Create(ctx, nil, access.NewToken{Name: "admin", Role: access.RoleAdmin, TTL: o.AdminExpires}, "tufota-init")
	if err != nil {
		return res, fmt.Errorf("init: %w", err)
	}
	auditSigner, ok := auditKey.(crypto.Signer)
	if !ok {
		return res, fmt.Errorf("init: audit key cannot sign checkpoints")
	}
	alog, err := OpenAudit(ctx, db, cfg.AuditOrigin, auditSigner, log)
	if err != nil {
		return res, fmt.Errorf("init: %w", err)
	}
	for _, e := range []audit.Entry{
		{Actor: "tufota-init", Role: "system", Action: "repository.init", Object: "metadata/1.root.json", Outcome: audit.OutcomeOK,
			Details: map[string]string{
				"root_key": strings.Join(res.KeyIDs["root"], ","), "root_threshold": fmt.Sprint(res.Thresholds["root"]),
				"targets_key": strings.Join(res.KeyIDs["targets"], ","), "targets_threshold": fmt.Sprint(res.Thresholds["targets"]),
				"snapshot_key": strings.Join(res.KeyIDs["snapshot"], ","), "timestamp_key": strings.Join(res.KeyIDs["timestamp"], ","),
				"key_uris": strings.Join(keyURIsForAudit(cfg.Keys), " "), "hashed_bins": fmt.Sprint(o.HashedBins)}},
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
	if err := Write(dir, cfg); err != nil {
		return res, fmt.Errorf("init: %w", err)
	}
	res.AdminToken, res.Dir = secret, dir
	return res, nil
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
func planRoleKeys(o InitOptions) ([]rolePlan, error) {
	specs := []struct {
		role      string
		uris      []string
		threshold int
		multi     bool
	}{
		{"root", o.RootKeys, o.RootThreshold, true},
		{"targets", o.TargetsKeys, o.TargetsThreshold, true},
		{"snapshot", nonEmpty(o.SnapshotKey), 0, false},
		{"timestamp", nonEmpty(o.TimestampKey), 0, false},
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
				path, _ := strings.CutPrefix(uri, "file:")
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
func keyURIsForAudit(k RoleURIs) []string {
	var out []string
	for _, u := range k.Root {
		out = append(out, "root="+u)
	}
	for _, u := range k.Targets {
		out = append(out, "targets="+u)
	}
	return append(out, "snapshot="+k.Snapshot, "timestamp="+k.Timestamp)
}

// openAudit returns the audit log in db, checkpointed with key.
// OpenAudit opens the audit log in db, signing checkpoints as origin with key.
func OpenAudit(ctx context.Context, db *storage.DB, origin string, key crypto.Signer, log *slog.Logger, opts ...audit.Option) (*audit.Log, error) {
	ns, err := audit.NewNoteSigner(origin, key)
	if err != nil {
		return nil, fmt.Errorf("audit signer: %w", err)
	}
	return audit.New(ctx, db, ns, append([]audit.Option{audit.WithLogger(log)}, opts...)...)
}
