// Package backup makes and restores consistent, verifiable copies of a
// tufota deployment: every table of the state database (SQLite or
// PostgreSQL, dumped in a portable JSON-lines format inside one read
// transaction), every blob of the repository (TUF metadata, firmware
// targets, staged uploads), and the repository's files (tufota.json, the
// trust anchor, encrypted key files copied byte for byte, never decrypted).
// The audit log lives in the database and comes with it.
//
// A backup is a directory:
//
//	manifest.json                 format, time, source, tables, every file's size and SHA-256
//	files/<name>                  repository files (tufota.json, root.json, keys/*.key)
//	db/<table>.jsonl              one header line {"table","columns"}, then one JSON array per row
//	blobs/<key>                   every blob, under its store key
//
// Open verifies a backup before anything is restored: every listed file
// must have the listed size and hash, and nothing unlisted may be present.
// The manifest itself is protected by its SHA-256, which Create returns and
// `tufota backup` prints: record it apart from the backup and pin it on
// restore (OpenOptions.ManifestSHA256), or sign it with your own tooling.
//
// Consistency with a running server: Create first dumps the database in one
// transaction (REPEATABLE READ on PostgreSQL, the write lock on SQLite),
// then reads timestamp.json, then lists and copies the blobs. tufota
// publishes by writing target blobs, then N.targets.json and
// N.snapshot.json, and timestamp.json last, and never rewrites a versioned
// or content-addressed blob. So everything the copied timestamp.json
// reaches (snapshot, targets, every target blob) was written before it and
// is found by the listing that follows; and every release the database
// snapshot calls published was published before the dump began, so the
// copied timestamp (read later) covers it. Blobs published after the
// timestamp was read are copied too when the listing sees them; they are
// harmless extras nothing refers to. The backup's timestamp.json is the
// one read first, never a newer one.
package backup

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/signer"
	"github.com/tufota/tufota/storage"
)

// Format identifies the backup layout in the manifest.
const Format = "tufota-backup/1"

// Names inside a backup directory.
const (
	ManifestName = "manifest.json"
	filesDir     = "files"
	dbDir        = "db"
	blobsDir     = "blobs"
)

// Manifest describes a backup. It is written last, so a backup without a
// manifest is an interrupted one.
type Manifest struct {
	Format    string    `json:"format"`
	CreatedAt time.Time `json:"created_at"`
	// Dialect is the source database's dialect ("sqlite" or "postgres").
	Dialect string `json:"dialect"`
	// SchemaVersion is the newest migration applied to the source database.
	SchemaVersion int64 `json:"schema_version"`
	// TimestampVersion and TargetsVersion are those of the copied
	// timestamp.json and of the targets metadata it reaches (0 when the
	// store has no repository).
	TimestampVersion int64       `json:"timestamp_version"`
	TargetsVersion   int64       `json:"targets_version"`
	Tables           []TableInfo `json:"tables"`
	Files            []FileInfo  `json:"files"`
}

// TableInfo is one dumped table.
type TableInfo struct {
	Name    string   `json:"name"`
	Columns []string `json:"columns"`
	Rows    int64    `json:"rows"`
}

// FileInfo is one file of the backup, by slash path relative to the
// backup directory.
type FileInfo struct {
	Path   string `json:"path"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// File is a repository file to include: Name is its slash path relative to
// the repository directory (restored to the same place), Path where it is
// read from now.
type File struct {
	Name string
	Path string
}

// Source is what Create copies.
type Source struct {
	DB    *storage.DB
	Blobs storage.Blobs
	Files []File
	// Now stamps the manifest (default time.Now).
	Now func() time.Time
}

// Create writes a backup of src into the new directory dst (it must not
// exist, or be empty) and returns the manifest and the hex SHA-256 of
// manifest.json. On error, what was written to dst is removed. Errors:
// tufota.ErrConflict when dst is not empty, tufota.ErrInvalid for a bad
// file name, storage errors as they come, and tufota.ErrInvalid when a
// target blob's bytes do not match the SHA-256 in its name (the source is
// corrupt).
func Create(ctx context.Context, dst string, src Source) (m Manifest, manifestSHA string, err error) {
	if src.DB == nil || src.Blobs == nil {
		return Manifest{}, "", tufota.Errorf(tufota.EInvalid, "backup: a database and a blob store are required")
	}
	now := src.Now
	if now == nil {
		now = time.Now
	}
	if err := checkEmptyDir(dst); err != nil {
		return Manifest{}, "", fmt.Errorf("backup: %w", err)
	}
	if err := os.MkdirAll(dst, 0o700); err != nil {
		return Manifest{}, "", fmt.Errorf("backup: %w", err)
	}
	defer func() {
		if err != nil {
			removeContents(dst)
		}
	}()
	w := &writer{dir: dst}
	m = Manifest{Format: Format, CreatedAt: now().UTC(), Dialect: src.DB.Dialect()}

	// 1. The state, in one transaction.
	if m.Tables, m.SchemaVersion, err = dumpDB(ctx, src.DB, w); err != nil {
		return Manifest{}, "", fmt.Errorf("backup: %w", err)
	}
	// 2. timestamp.json, read once, before listing the blobs.
	ts, tsErr := readAll(ctx, src.Blobs, signer.MetadataPrefix+"timestamp.json")
	if tsErr != nil && !errors.Is(tsErr, tufota.ErrNotFound) {
		return Manifest{}, "", fmt.Errorf("backup: read timestamp: %w", tsErr)
	}
	// 3. Every blob, listed after the timestamp was read.
	infos, err := src.Blobs.List(ctx, "")
	if err != nil {
		return Manifest{}, "", fmt.Errorf("backup: list blobs: %w", err)
	}
	have := map[string]bool{}
	for _, info := range infos {
		if info.Key == signer.MetadataPrefix+"timestamp.json" {
			continue
		}
		if err := w.copyBlob(ctx, src.Blobs, info.Key); err != nil {
			return Manifest{}, "", fmt.Errorf("backup: %w", err)
		}
		have[info.Key] = true
	}
	if ts != nil {
		if err := w.writeBytes(blobsDir+"/"+signer.MetadataPrefix+"timestamp.json", ts); err != nil {
			return Manifest{}, "", fmt.Errorf("backup: %w", err)
		}
		if m.TimestampVersion, m.TargetsVersion, err = checkClosure(ts, have, w); err != nil {
			return Manifest{}, "", fmt.Errorf("backup: %w", err)
		}
	}
	// 4. Repository files, as they are.
	for _, f := range src.Files {
		if err := storage.ValidKey(f.Name); err != nil {
			return Manifest{}, "", fmt.Errorf("backup: file %q: %w", f.Name, err)
		}
		if err := w.copyFile(filesDir+"/"+f.Name, f.Path); err != nil {
			return Manifest{}, "", fmt.Errorf("backup: %w", err)
		}
	}
	// 5. The manifest, last.
	m.Files = w.files
	slices.SortFunc(m.Files, func(a, b FileInfo) int { return strings.Compare(a.Path, b.Path) })
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return Manifest{}, "", fmt.Errorf("backup: %w", err)
	}
	b = append(b, '\n')
	if err := writeFileSync(filepath.Join(dst, ManifestName), b); err != nil {
		return Manifest{}, "", fmt.Errorf("backup: write manifest: %w", err)
	}
	if err := syncDir(dst); err != nil {
		return Manifest{}, "", fmt.Errorf("backup: %w", err)
	}
	sum := sha256.Sum256(b)
	return m, hex.EncodeToString(sum[:]), nil
}

// checkClosure checks that the blobs copied include everything the
// timestamp reaches: its snapshot, the targets metadata the snapshot
// lists, and every target of the top-level targets. It returns the
// timestamp and targets versions.
func checkClosure(ts []byte, have map[string]bool, w *writer) (tsVersion, targetsVersion int64, err error) {
	t, err := metadata.Timestamp().FromBytes(ts)
	if err != nil {
		return 0, 0, fmt.Errorf("parse timestamp.json: %w", err)
	}
	snapMeta, ok := t.Signed.Meta["snapshot.json"]
	if !ok {
		return 0, 0, tufota.Errorf(tufota.EInvalid, "timestamp.json names no snapshot")
	}
	snapKey := fmt.Sprintf("%s%d.snapshot.json", signer.MetadataPrefix, snapMeta.Version)
	snapBytes, err := w.read(blobsDir + "/" + snapKey)
	if err != nil || !have[snapKey] {
		return 0, 0, tufota.Errorf(tufota.EInvalid, "timestamp v%d names %s, which the store does not hold", t.Signed.Version, snapKey)
	}
	snap, err := metadata.Snapshot().FromBytes(snapBytes)
	if err != nil {
		return 0, 0, fmt.Errorf("parse %s: %w", snapKey, err)
	}
	for name, mf := range snap.Signed.Meta {
		key := fmt.Sprintf("%s%d.%s", signer.MetadataPrefix, mf.Version, name)
		if !have[key] {
			return 0, 0, tufota.Errorf(tufota.EInvalid, "snapshot v%d names %s, which the store does not hold", snap.Signed.Version, key)
		}
		if name != "targets.json" {
			continue
		}
		targetsVersion = mf.Version
		tb, err := w.read(blobsDir + "/" + key)
		if err != nil {
			return 0, 0, err
		}
		tg, err := metadata.Targets().FromBytes(tb)
		if err != nil {
			return 0, 0, fmt.Errorf("parse %s: %w", key, err)
		}
		for p, tf := range tg.Signed.Targets {
			bk := signer.TargetBlobKey(p, tf.Hashes["sha256"].String())
			if !have[bk] {
				return 0, 0, tufota.Errorf(tufota.EInvalid, "targets v%d names %s, which the store does not hold", tg.Signed.Version, bk)
			}
		}
	}
	return t.Signed.Version, targetsVersion, nil
}

// writer writes files into a backup directory and records them.
type writer struct {
	dir   string
	files []FileInfo
}

func (w *writer) create(name string) (*os.File, error) {
	p := filepath.Join(w.dir, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return nil, err
	}
	return os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
}

// hashingFile is a file being written and hashed.
type hashingFile struct {
	name string
	f    *os.File
	h    hash.Hash
	n    int64
}

func (w *writer) open(name string) (*hashingFile, error) {
	f, err := w.create(name)
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", name, err)
	}
	return &hashingFile{name: name, f: f, h: sha256.New()}, nil
}

func (h *hashingFile) Write(p []byte) (int, error) {
	n, err := h.f.Write(p)
	h.h.Write(p[:n])
	h.n += int64(n)
	return n, err
}

// close syncs and closes the file and records it.
func (w *writer) close(h *hashingFile) error {
	if err := h.f.Sync(); err != nil {
		_ = h.f.Close()
		return fmt.Errorf("write %s: %w", h.name, err)
	}
	if err := h.f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", h.name, err)
	}
	w.files = append(w.files, FileInfo{Path: h.name, Size: h.n, SHA256: hex.EncodeToString(h.h.Sum(nil))})
	return nil
}

func (w *writer) writeBytes(name string, b []byte) error {
	h, err := w.open(name)
	if err != nil {
		return err
	}
	if _, err := h.Write(b); err != nil {
		_ = h.f.Close()
		return fmt.Errorf("write %s: %w", name, err)
	}
	return w.close(h)
}

func (w *writer) read(name string) ([]byte, error) {
	return os.ReadFile(filepath.Join(w.dir, filepath.FromSlash(name)))
}

func (w *writer) copyFile(name, src string) error {
	f, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("read %s: %w", src, err)
	}
	defer f.Close()
	h, err := w.open(name)
	if err != nil {
		return err
	}
	if _, err := io.Copy(h, f); err != nil {
		_ = h.f.Close()
		return fmt.Errorf("copy %s: %w", src, err)
	}
	return w.close(h)
}

// copyBlob streams one blob into blobs/<key>. A target blob's bytes are
// checked against the SHA-256 in its name.
func (w *writer) copyBlob(ctx context.Context, blobs storage.Blobs, key string) error {
	obj, err := blobs.Open(ctx, key)
	if err != nil {
		return fmt.Errorf("read blob %s: %w", key, err)
	}
	defer obj.Close()
	h, err := w.open(blobsDir + "/" + key)
	if err != nil {
		return err
	}
	if _, err := io.Copy(h, obj); err != nil {
		_ = h.f.Close()
		return fmt.Errorf("copy blob %s: %w", key, err)
	}
	if want, ok := targetBlobHash(key); ok {
		if got := hex.EncodeToString(h.h.Sum(nil)); got != want {
			_ = h.f.Close()
			return tufota.Errorf(tufota.EInvalid, "blob %s: content hashes to %s, not the SHA-256 in its name: the blob store is corrupt", key, got)
		}
	}
	return w.close(h)
}

// targetBlobHash returns the SHA-256 that a consistent-snapshot target
// blob key "targets/<dir>/<sha256>.<base>" names.
func targetBlobHash(key string) (string, bool) {
	if !strings.HasPrefix(key, signer.TargetsPrefix) {
		return "", false
	}
	base := path.Base(key)
	sum, _, ok := strings.Cut(base, ".")
	if !ok || len(sum) != 64 {
		return "", false
	}
	if _, err := hex.DecodeString(sum); err != nil {
		return "", false
	}
	return sum, true
}

func readAll(ctx context.Context, blobs storage.Blobs, key string) ([]byte, error) {
	obj, err := blobs.Open(ctx, key)
	if err != nil {
		return nil, err
	}
	defer obj.Close()
	return io.ReadAll(obj)
}

// checkEmptyDir succeeds when dir does not exist or is an empty directory.
func checkEmptyDir(dir string) error {
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return err
	case len(entries) > 0:
		return tufota.Errorf(tufota.EConflict, "%s is not empty; refusing to write into it", dir)
	}
	return nil
}

func removeContents(dir string) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		_ = os.RemoveAll(filepath.Join(dir, e.Name()))
	}
}

func writeFileSync(p string, b []byte) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}
