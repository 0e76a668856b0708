// Package datadir is a tufota data directory on disk: its config file
// (DIR/tufota.json: where state lives and the key URIs of each role, no
// secret), atomic file writes, and the lock a server holds on a directory
// with an embedded backend (SQLite, the file store), so that two servers
// never publish from one.
package datadir

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/tufota/tufota"
)

// Config is DIR/tufota.json: where a repository keeps its state, and the
// key URIs of each role. It holds no secret.
type Config struct {
	Version int `json:"version"`
	// AuditOrigin names the audit log in its signed checkpoints.
	AuditOrigin string   `json:"audit_origin"`
	Storage     string   `json:"storage"`
	DB          string   `json:"db"`
	Keys        RoleURIs `json:"keys"`
	// HashedBins is the bit length of the hashed-bin layout (2^HashedBins
	// bin roles, 'init --hashed-bins'), 0 for a flat targets metadata.
	// The server checks it against the signed targets metadata at start.
	HashedBins int `json:"hashed_bins,omitempty"`
}

type RoleURIs struct {
	Root      []string `json:"root"`
	Targets   []string `json:"targets"`
	Snapshot  string   `json:"snapshot"`
	Timestamp string   `json:"timestamp"`
	// Audit signs the audit log's checkpoints (Ed25519).
	Audit string `json:"audit"`
}

const ConfigName = "tufota.json"

func Load(dir string) (Config, error) {
	b, err := os.ReadFile(filepath.Join(dir, ConfigName))
	if errors.Is(err, os.ErrNotExist) {
		return Config{}, tufota.Errorf(tufota.ENotFound, "%s is not a tufota repository (no %s): run 'tufota init --dir %s' first", dir, ConfigName, dir)
	}
	if err != nil {
		return Config{}, fmt.Errorf("read repository config: %w", err)
	}
	var c Config
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return Config{}, tufota.Errorf(tufota.EInvalid, "%s: %v", filepath.Join(dir, ConfigName), err)
	}
	if c.Version != 1 {
		return Config{}, tufota.Errorf(tufota.EInvalid, "%s: unsupported config version %d", filepath.Join(dir, ConfigName), c.Version)
	}
	return c, nil
}

func Write(dir string, c Config) error {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	return WriteFileAtomic(filepath.Join(dir, ConfigName), append(b, '\n'), 0o600)
}

// Resolve makes a relative file:PATH or sqlite:PATH URI absolute under dir.
func Resolve(dir, uri string) string {
	for _, scheme := range []string{"file:", "sqlite:"} {
		if p, ok := strings.CutPrefix(uri, scheme); ok && !filepath.IsAbs(p) {
			return scheme + filepath.Join(dir, p)
		}
	}
	return uri
}

// WriteFileAtomic writes a file by temp file, fsync and rename.
func WriteFileAtomic(path string, data []byte, mode os.FileMode) error {
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

// RemoveContents removes everything inside dir, not dir itself: what a
// failed init, backup or restore into an existing empty directory leaves.
func RemoveContents(dir string) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		_ = os.RemoveAll(filepath.Join(dir, e.Name()))
	}
}
