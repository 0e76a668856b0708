package backup

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/signer"
	"github.com/tufota/tufota/storage"
)

// Backup is a backup directory whose every file has been verified against
// its manifest by Open.
type Backup struct {
	Dir      string
	Manifest Manifest
	// ManifestSHA256 is the hex SHA-256 of manifest.json as read.
	ManifestSHA256 string
}

// OpenOptions adjust Open.
type OpenOptions struct {
	// ManifestSHA256, when set, pins the manifest: Open refuses a backup
	// whose manifest.json has another hash.
	ManifestSHA256 string
}

// Open reads the backup in dir and verifies it completely before returning:
// the manifest parses and has the known format (and the pinned hash, if
// any); every listed file exists with the listed size and SHA-256; no file
// is present that the manifest does not list. It writes nothing. A
// mismatch is tufota.ErrInvalid naming the file and what differs.
func Open(dir string, opts OpenOptions) (*Backup, error) {
	mb, err := os.ReadFile(filepath.Join(dir, ManifestName))
	if err != nil {
		return nil, tufota.Errorf(tufota.EInvalid, "backup %s: no readable %s (an interrupted or foreign backup?): %v", dir, ManifestName, err)
	}
	sum := sha256.Sum256(mb)
	msha := hex.EncodeToString(sum[:])
	if opts.ManifestSHA256 != "" && !strings.EqualFold(opts.ManifestSHA256, msha) {
		return nil, tufota.Errorf(tufota.EInvalid, "backup %s: %s has SHA-256 %s, not the pinned %s", dir, ManifestName, msha, opts.ManifestSHA256)
	}
	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(mb))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return nil, tufota.Errorf(tufota.EInvalid, "backup %s: %s: %v", dir, ManifestName, err)
	}
	if m.Format != Format {
		return nil, tufota.Errorf(tufota.EInvalid, "backup %s: format %q, want %q", dir, m.Format, Format)
	}
	listed := map[string]FileInfo{}
	for _, f := range m.Files {
		if err := storage.ValidKey(f.Path); err != nil {
			return nil, tufota.Errorf(tufota.EInvalid, "backup %s: manifest lists a bad path %q", dir, f.Path)
		}
		if _, dup := listed[f.Path]; dup {
			return nil, tufota.Errorf(tufota.EInvalid, "backup %s: manifest lists %s twice", dir, f.Path)
		}
		listed[f.Path] = f
	}
	for _, t := range m.Tables {
		if _, ok := listed[dbDir+"/"+t.Name+".jsonl"]; !ok {
			return nil, tufota.Errorf(tufota.EInvalid, "backup %s: table %s has no listed dump file", dir, t.Name)
		}
	}
	// Nothing unlisted.
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		switch {
		case d.IsDir():
			return nil
		case rel == ManifestName:
			return nil
		case !d.Type().IsRegular():
			return tufota.Errorf(tufota.EInvalid, "backup %s: %s is not a regular file", dir, rel)
		}
		if _, ok := listed[rel]; !ok {
			return tufota.Errorf(tufota.EInvalid, "backup %s: %s is not listed in the manifest", dir, rel)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	// Every listed file, byte for byte.
	for _, f := range m.Files {
		if err := verifyFile(dir, f); err != nil {
			return nil, err
		}
	}
	return &Backup{Dir: dir, Manifest: m, ManifestSHA256: msha}, nil
}

func verifyFile(dir string, f FileInfo) error {
	fh, err := os.Open(filepath.Join(dir, filepath.FromSlash(f.Path)))
	if err != nil {
		return tufota.Errorf(tufota.EInvalid, "backup %s: file %s: %v", dir, f.Path, err)
	}
	defer fh.Close()
	h := sha256.New()
	n, err := io.Copy(h, fh)
	if err != nil {
		return tufota.Errorf(tufota.EInvalid, "backup %s: file %s: %v", dir, f.Path, err)
	}
	if n != f.Size {
		return tufota.Errorf(tufota.EInvalid, "backup %s: file %s has %d bytes, the manifest says %d", dir, f.Path, n, f.Size)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != f.SHA256 {
		return tufota.Errorf(tufota.EInvalid, "backup %s: file %s has SHA-256 %s, the manifest says %s", dir, f.Path, got, f.SHA256)
	}
	return nil
}

// FileNames returns the names of the repository files in the backup (as
// given to Create in Source.Files).
func (b *Backup) FileNames() []string {
	var out []string
	for _, f := range b.Manifest.Files {
		if name, ok := strings.CutPrefix(f.Path, filesDir+"/"); ok {
			out = append(out, name)
		}
	}
	return out
}

// ReadFile returns one repository file of the backup by name.
func (b *Backup) ReadFile(name string) ([]byte, error) {
	return b.readVerified(filesDir + "/" + name)
}

// readVerified reads a listed file and checks it again (the backup could
// change between Open and now).
func (b *Backup) readVerified(rel string) ([]byte, error) {
	i := slices.IndexFunc(b.Manifest.Files, func(f FileInfo) bool { return f.Path == rel })
	if i < 0 {
		return nil, tufota.Errorf(tufota.ENotFound, "backup %s: no file %s", b.Dir, rel)
	}
	data, err := os.ReadFile(filepath.Join(b.Dir, filepath.FromSlash(rel)))
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(data)
	if hex.EncodeToString(sum[:]) != b.Manifest.Files[i].SHA256 {
		return nil, tufota.Errorf(tufota.EInvalid, "backup %s: file %s changed after it was verified", b.Dir, rel)
	}
	return data, nil
}

// RestoreFiles writes the repository files into dir (which must exist),
// each at its name, refusing to overwrite anything. Key files are written
// with mode 0600.
func (b *Backup) RestoreFiles(dir string) error {
	for _, name := range b.FileNames() {
		data, err := b.ReadFile(name)
		if err != nil {
			return fmt.Errorf("restore: %w", err)
		}
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			return fmt.Errorf("restore: %w", err)
		}
		if err := writeFileSync(p, data); err != nil {
			return fmt.Errorf("restore %s: %w", name, err)
		}
	}
	return nil
}

// CheckEmpty fails with tufota.ErrConflict when the database has a row in
// any table (other than the migration bookkeeping) or the blob store holds
// any blob: restore only writes into fresh stores.
func CheckEmpty(ctx context.Context, db *storage.DB, blobs storage.Blobs) error {
	names, err := listTables(ctx, db, db.Dialect())
	if err != nil {
		return err
	}
	for _, name := range names {
		if name == schemaTable {
			continue
		}
		var n int64
		if err := db.QueryRow(ctx, "SELECT COUNT(*) FROM "+quoteIdent(name)).Scan(&n); err != nil {
			return fmt.Errorf("check table %s: %w", name, err)
		}
		if n > 0 {
			return tufota.Errorf(tufota.EConflict, "the target database is not empty (table %s has %d rows); restore needs a fresh database", name, n)
		}
	}
	infos, err := blobs.List(ctx, "")
	if err != nil {
		return fmt.Errorf("check blob store: %w", err)
	}
	if len(infos) > 0 {
		return tufota.Errorf(tufota.EConflict, "the target blob store is not empty (it holds %s and %d more); restore needs a fresh store", infos[0].Key, len(infos)-1)
	}
	return nil
}

// RestoreState loads the dumped tables into db (in one transaction) and
// copies the blobs into blobs: metadata last and timestamp.json very last,
// so that a server started on the stores during the restore sees no
// repository or a complete one. Both stores must be empty (CheckEmpty). It
// refuses a backup whose schema is newer than db's.
func (b *Backup) RestoreState(ctx context.Context, db *storage.DB, blobs storage.Blobs) error {
	if err := CheckEmpty(ctx, db, blobs); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	if err := b.loadDB(ctx, db); err != nil {
		return err
	}
	return b.restoreBlobs(ctx, blobs)
}

// loadDB loads the dumped tables into the empty database db in one
// transaction. It refuses a backup whose schema is newer than db's.
func (b *Backup) loadDB(ctx context.Context, db *storage.DB) error {
	var schema int64
	if err := db.QueryRow(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&schema); err != nil {
		return fmt.Errorf("restore: read schema version: %w", err)
	}
	if b.Manifest.SchemaVersion > schema {
		return tufota.Errorf(tufota.EConflict, "restore: the backup's schema version %d is newer than this tufota build's %d: restore with a newer tufota", b.Manifest.SchemaVersion, schema)
	}
	err := db.Tx(ctx, func(tx *storage.Tx) error {
		for _, t := range b.Manifest.Tables {
			if t.Name == schemaTable {
				continue
			}
			f, err := os.Open(filepath.Join(b.Dir, dbDir, t.Name+".jsonl"))
			if err != nil {
				return err
			}
			_, err = loadTable(ctx, tx, f, t)
			f.Close()
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("restore database: %w", err)
	}
	return nil
}

// restoreBlobs copies the backup's blobs into the empty store blobs.
func (b *Backup) restoreBlobs(ctx context.Context, blobs storage.Blobs) error {
	// Blobs: targets and everything else first, then metadata in an order
	// that keeps the repository valid (timestamp.json last).
	var blobFiles []FileInfo
	for _, f := range b.Manifest.Files {
		if strings.HasPrefix(f.Path, blobsDir+"/") {
			blobFiles = append(blobFiles, f)
		}
	}
	rank := func(key string) int {
		switch {
		case key == signer.MetadataPrefix+"timestamp.json":
			return 3
		case strings.HasPrefix(key, signer.MetadataPrefix) && strings.HasSuffix(key, ".snapshot.json"):
			return 2
		case strings.HasPrefix(key, signer.MetadataPrefix):
			return 1
		}
		return 0
	}
	slices.SortStableFunc(blobFiles, func(x, y FileInfo) int {
		return rank(strings.TrimPrefix(x.Path, blobsDir+"/")) - rank(strings.TrimPrefix(y.Path, blobsDir+"/"))
	})
	for _, f := range blobFiles {
		if err := b.restoreBlob(ctx, blobs, f); err != nil {
			return fmt.Errorf("restore: %w", err)
		}
	}
	return nil
}

// restoreBlob streams one blob into the store while hashing it, and fails
// if the bytes changed since Open verified them.
func (b *Backup) restoreBlob(ctx context.Context, blobs storage.Blobs, f FileInfo) error {
	key := strings.TrimPrefix(f.Path, blobsDir+"/")
	fh, err := os.Open(filepath.Join(b.Dir, filepath.FromSlash(f.Path)))
	if err != nil {
		return err
	}
	defer fh.Close()
	h := sha256.New()
	if _, err := blobs.Put(ctx, key, io.TeeReader(fh, h)); err != nil {
		return fmt.Errorf("put blob %s: %w", key, err)
	}
	if hex.EncodeToString(h.Sum(nil)) != f.SHA256 {
		_ = blobs.Delete(ctx, key)
		return tufota.Errorf(tufota.EInvalid, "backup file %s changed after it was verified", f.Path)
	}
	return nil
}
