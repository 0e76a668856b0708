package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/term"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/storage"
)

// repoConfig is DIR/tufota.json: where a repository keeps its state, and the
// key URIs of each role. It holds no secret.
type repoConfig struct {
	Version int `json:"version"`
	// AuditOrigin names the audit log in its signed checkpoints.
	AuditOrigin string   `json:"audit_origin"`
	Storage     string   `json:"storage"`
	DB          string   `json:"db"`
	Keys        roleURIs `json:"keys"`
	// HashedBins is the bit length of the hashed-bin layout (2^HashedBins
	// bin roles, 'init --hashed-bins'), 0 for a flat targets metadata.
	// The server checks it against the signed targets metadata at start.
	HashedBins int `json:"hashed_bins,omitempty"`
}

type roleURIs struct {
	Root      []string `json:"root"`
	Targets   []string `json:"targets"`
	Snapshot  string   `json:"snapshot"`
	Timestamp string   `json:"timestamp"`
	// Audit signs the audit log's checkpoints (Ed25519).
	Audit string `json:"audit"`
}

const configName = "tufota.json"

func loadConfig(dir string) (repoConfig, error) {
	b, err := os.ReadFile(filepath.Join(dir, configName))
	if errors.Is(err, os.ErrNotExist) {
		return repoConfig{}, tufota.Errorf(tufota.ENotFound, "%s is not a tufota repository (no %s): run 'tufota init --dir %s' first", dir, configName, dir)
	}
	if err != nil {
		return repoConfig{}, fmt.Errorf("read repository config: %w", err)
	}
	var c repoConfig
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return repoConfig{}, tufota.Errorf(tufota.EInvalid, "%s: %v", filepath.Join(dir, configName), err)
	}
	if c.Version != 1 {
		return repoConfig{}, tufota.Errorf(tufota.EInvalid, "%s: unsupported config version %d", filepath.Join(dir, configName), c.Version)
	}
	return c, nil
}

func writeConfig(dir string, c repoConfig) error {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, configName), append(b, '\n'), 0o600)
}

// openBlobs opens the repository's blob store: a directory under dir by
// default, or S3 with credentials from AWS_ACCESS_KEY_ID and
// AWS_SECRET_ACCESS_KEY (or AWS_SHARED_CREDENTIALS_FILE). create makes a
// missing bucket.
func (a *app) openBlobs(ctx context.Context, dir, url string, create bool) (storage.Blobs, error) {
	var opts []storage.BlobsOption
	if a.env["AWS_ACCESS_KEY_ID"] != "" {
		opts = append(opts, storage.WithS3Credentials(a.env["AWS_ACCESS_KEY_ID"], a.env["AWS_SECRET_ACCESS_KEY"]))
	} else if f := a.env["AWS_SHARED_CREDENTIALS_FILE"]; f != "" {
		opts = append(opts, storage.WithS3CredentialsFile(f, a.env["AWS_PROFILE"]))
	}
	if create {
		opts = append(opts, storage.WithCreateBucket())
	}
	b, err := storage.OpenBlobs(ctx, url, dir, opts...)
	if err != nil {
		return nil, fmt.Errorf("open blob store: %w", err)
	}
	return b, nil
}

// resolve makes a relative file:PATH or sqlite:PATH URI absolute under dir.
func resolve(dir, uri string) string {
	for _, scheme := range []string{"file:", "sqlite:"} {
		if p, ok := strings.CutPrefix(uri, scheme); ok && !filepath.IsAbs(p) {
			return scheme + filepath.Join(dir, p)
		}
	}
	return uri
}

// writeFileAtomic writes a file by temp file, fsync and rename.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Chmod(mode); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// passphrase returns the key passphrase from TUFOTA_KEY_PASSPHRASE, or asks
// on the terminal (twice when confirm is set). It never falls back to a
// default.
func (a *app) passphrase(confirm bool) ([]byte, error) {
	if p := a.env["TUFOTA_KEY_PASSPHRASE"]; p != "" {
		return []byte(p), nil
	}
	f, ok := a.stdin.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return nil, tufota.Errorf(tufota.EInvalid, "no key passphrase: set TUFOTA_KEY_PASSPHRASE or run on a terminal to be asked")
	}
	fmt.Fprint(a.stderr, "Key passphrase: ")
	p, err := term.ReadPassword(int(f.Fd()))
	fmt.Fprintln(a.stderr)
	if err != nil {
		return nil, fmt.Errorf("read passphrase: %w", err)
	}
	if len(p) == 0 {
		return nil, tufota.Errorf(tufota.EInvalid, "empty key passphrase")
	}
	if confirm {
		fmt.Fprint(a.stderr, "Repeat passphrase: ")
		q, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(a.stderr)
		if err != nil {
			return nil, fmt.Errorf("read passphrase: %w", err)
		}
		if !bytes.Equal(p, q) {
			return nil, tufota.Errorf(tufota.EInvalid, "passphrases differ")
		}
	}
	return p, nil
}
