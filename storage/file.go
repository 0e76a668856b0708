package storage

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tufota/tufota"
)

// tempPrefix starts the base name of every temporary file a Put writes. List
// ignores such files and Put refuses keys whose last segment starts with it.
const tempPrefix = ".tufota-tmp-"

// copyChunk is the buffer size of Put's copy loop; the context is checked
// between chunks.
const copyChunk = 256 << 10

// File is the embedded blob store: one directory on the local file system,
// with each key stored as the file of the same relative path. All access goes
// through an os.Root, so no key and no symbolic link can reach outside the
// directory.
//
// Put is atomic: the bytes go to a temporary file in the destination's
// directory, which is synced, renamed over the key and followed by a sync of
// the directory. Concurrent readers see the old blob or the new one, never a
// part. A temporary file left by a crash is invisible to List and Stat.
//
// Errors: a missing key is tufota.ErrNotFound; a key that ValidKey refuses, or
// that resolves outside the directory, is tufota.ErrInvalid; a key that
// collides with a directory (or a directory with a blob) is
// tufota.ErrConflict; other I/O failures are tufota.ErrUnavailable.
//
// A File is safe for concurrent use by multiple goroutines.
type File struct {
	dir  string
	root *os.Root
	// temps names the temporary files of the Puts in progress, which
	// SweepIncomplete never removes.
	mu    sync.Mutex
	temps map[string]bool
}

var (
	_ Blobs   = (*File)(nil)
	_ Mover   = (*File)(nil)
	_ Sweeper = (*File)(nil)
)

// NewFile opens (creating it if needed) the directory dir as a blob store.
// The caller must Close the store to release the directory handle.
func NewFile(dir string) (*File, error) {
	if dir == "" {
		return nil, tufota.Errorf(tufota.EInvalid, "file blob store: directory is empty")
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("file blob store: %w", err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("file blob store: %w", err)
	}
	return &File{dir: dir, root: root, temps: make(map[string]bool)}, nil
}

// Dir returns the directory the store was opened on.
func (f *File) Dir() string { return f.dir }

// Close releases the directory handle. Calls after Close fail.
func (f *File) Close() error { return f.root.Close() }

// Put stores r under key atomically and returns the number of bytes written.
// If ctx is cancelled or r fails, nothing becomes visible and the temporary
// file is removed.
func (f *File) Put(ctx context.Context, key string, r io.Reader) (int64, error) {
	if err := checkFileKey(key); err != nil {
		return 0, fmt.Errorf("put %q: %w", key, err)
	}
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("put %q: %w", key, err)
	}
	dir := path.Dir(key)
	if dir != "." {
		if err := f.mkdirAll(dir); err != nil {
			return 0, fileErr("put", key, err)
		}
	}
	tmp, tf, err := f.createTemp(dir)
	if err != nil {
		return 0, fileErr("put", key, err)
	}
	defer f.untrack(tmp) // after the rename or the removal below
	n, err := f.writeTemp(ctx, tf, r)
	if err == nil {
		err = f.root.Rename(tmp, key)
		if err != nil {
			err = fileErr("put", key, err)
		}
	}
	if err != nil {
		_ = f.root.Remove(tmp)
		return 0, err
	}
	if err := f.syncDir(dir); err != nil {
		return n, fileErr("put", key, err)
	}
	return n, nil
}

// mkdirAll creates the parent directories of a key. A blob in the way is a
// conflict, not a missing blob.
func (f *File) mkdirAll(dir string) error {
	err := f.root.MkdirAll(dir, 0o755)
	if isNotDir(err) || errors.Is(err, fs.ErrExist) {
		return tufota.Errorf(tufota.EConflict, "a blob is in the way of directory %q", dir)
	}
	return err
}

// createTemp creates a new temporary file in dir (a cleaned relative path or
// ".") and returns its name relative to the root.
func (f *File) createTemp(dir string) (string, *os.File, error) {
	for range 10 {
		var b [12]byte
		_, _ = rand.Read(b[:])
		name := path.Join(dir, tempPrefix+hex.EncodeToString(b[:]))
		// Tracked before the file exists, so that SweepIncomplete never
		// sees it untracked while this Put runs.
		f.track(name)
		tf, err := f.root.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if err != nil {
			f.untrack(name)
		}
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		return name, tf, err
	}
	return "", nil, errors.New("cannot create a unique temporary file")
}

func (f *File) track(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.temps[name] = true
}

func (f *File) untrack(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.temps, name)
}

func (f *File) tracked(name string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.temps[name]
}

// SweepIncomplete removes the temporary files that Puts killed before
// they finished left in the folder prefix ("" for the whole store) and
// below it, last modified before before; never those of a Put in progress
// in this process. A missing folder holds nothing to sweep.
func (f *File) SweepIncomplete(ctx context.Context, prefix string, before time.Time) (int, error) {
	start := "."
	if prefix != "" {
		start = strings.TrimSuffix(prefix, "/")
		if !strings.HasSuffix(prefix, "/") || ValidKey(start) != nil {
			return 0, tufota.Errorf(tufota.EInvalid, "sweep %q: want \"\" or a folder ending in \"/\"", prefix)
		}
	}
	removed := 0
	err := fs.WalkDir(f.root.FS(), start, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == start && isNotFound(err) {
				return fs.SkipAll
			}
			if isNotFound(err) { // removed while we walked
				return nil
			}
			return err
		}
		if cerr := ctx.Err(); cerr != nil {
			return cerr
		}
		if d.IsDir() || !d.Type().IsRegular() || !strings.HasPrefix(d.Name(), tempPrefix) || f.tracked(p) {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			if isNotFound(err) {
				return nil
			}
			return err
		}
		if !fi.ModTime().Before(before) {
			return nil
		}
		if err := f.root.Remove(p); err != nil && !isNotFound(err) {
			return err
		}
		removed++
		return nil
	})
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return removed, fmt.Errorf("sweep %q: %w", prefix, cerr)
		}
		if isNotDir(err) {
			return removed, nil // the folder is a blob
		}
		return removed, fileErr("sweep", prefix, err)
	}
	return removed, nil
}

// writeTemp copies r into tf in chunks, checking ctx between them, then syncs
// and closes tf. tf is closed whatever happens.
func (f *File) writeTemp(ctx context.Context, tf *os.File, r io.Reader) (int64, error) {
	buf := make([]byte, copyChunk)
	var n int64
	for {
		if err := ctx.Err(); err != nil {
			_ = tf.Close()
			return n, fmt.Errorf("put: %w", err)
		}
		nr, rerr := r.Read(buf)
		if nr > 0 {
			nw, werr := tf.Write(buf[:nr])
			n += int64(nw)
			if werr != nil {
				_ = tf.Close()
				return n, fileWriteErr("write", werr)
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			_ = tf.Close()
			return n, fmt.Errorf("put: read source: %w", rerr)
		}
	}
	if err := ctx.Err(); err != nil {
		_ = tf.Close()
		return n, fmt.Errorf("put: %w", err)
	}
	if err := tf.Sync(); err != nil {
		_ = tf.Close()
		return n, fileWriteErr("sync", err)
	}
	if err := tf.Close(); err != nil {
		return n, fileWriteErr("close", err)
	}
	return n, nil
}

// syncDir fsyncs the directory dir (relative to the root) so that a rename in
// it is durable.
func (f *File) syncDir(dir string) error {
	d, err := f.root.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	// Some file systems refuse to sync a directory; the rename stands.
	if errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ENOTSUP) {
		return nil
	}
	return err
}

// fileObject is an open blob backed by an *os.File.
type fileObject struct {
	*os.File
	info Info
}

func (o *fileObject) Info() Info { return o.info }

// OSFile returns the open file, for callers that can hand it to the kernel
// (sendfile): the HTTP server streams targets that way.
func (o *fileObject) OSFile() *os.File { return o.File }

// Open opens the blob for reading. The returned Object is an *os.File
// underneath, so it seeks cheaply; it must be closed. A blob replaced by a
// later Put stays readable through an Object opened before.
func (f *File) Open(ctx context.Context, key string) (Object, error) {
	if err := checkFileKey(key); err != nil {
		return nil, fmt.Errorf("open %q: %w", key, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("open %q: %w", key, err)
	}
	fh, err := f.root.Open(key)
	if err != nil {
		return nil, fileErr("open", key, err)
	}
	fi, err := fh.Stat()
	if err != nil {
		_ = fh.Close()
		return nil, fileErr("open", key, err)
	}
	if !fi.Mode().IsRegular() {
		_ = fh.Close()
		return nil, tufota.Errorf(tufota.ENotFound, "open %q: no such blob", key)
	}
	return &fileObject{File: fh, info: Info{Key: key, Size: fi.Size(), ModTime: fi.ModTime()}}, nil
}

// Stat describes the blob.
func (f *File) Stat(ctx context.Context, key string) (Info, error) {
	if err := checkFileKey(key); err != nil {
		return Info{}, fmt.Errorf("stat %q: %w", key, err)
	}
	if err := ctx.Err(); err != nil {
		return Info{}, fmt.Errorf("stat %q: %w", key, err)
	}
	fi, err := f.root.Stat(key)
	if err != nil {
		return Info{}, fileErr("stat", key, err)
	}
	if !fi.Mode().IsRegular() {
		return Info{}, tufota.Errorf(tufota.ENotFound, "stat %q: no such blob", key)
	}
	return Info{Key: key, Size: fi.Size(), ModTime: fi.ModTime()}, nil
}

// Delete removes the blob. Deleting a missing blob, or a key that names a
// directory of other blobs, is not an error and changes nothing. Empty
// directories are left in place.
func (f *File) Delete(ctx context.Context, key string) error {
	if err := checkFileKey(key); err != nil {
		return fmt.Errorf("delete %q: %w", key, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("delete %q: %w", key, err)
	}
	fi, err := f.root.Lstat(key)
	if err != nil {
		if isNotFound(err) {
			return nil
		}
		return fileErr("delete", key, err)
	}
	if fi.IsDir() {
		return nil
	}
	if err := f.root.Remove(key); err != nil && !isNotFound(err) {
		return fileErr("delete", key, err)
	}
	if err := f.syncDir(path.Dir(key)); err != nil && !isNotFound(err) {
		return fileErr("delete", key, err)
	}
	return nil
}

// List returns the blobs whose keys start with prefix, sorted by key.
// prefix need not be a valid key ("", "metadata/", "targets/fw-" all work),
// but it must not contain "." or ".." segments, backslashes or NUL.
// Temporary files of in-flight or crashed Puts and symbolic links are not
// listed.
func (f *File) List(ctx context.Context, prefix string) ([]Info, error) {
	start := "."
	if i := strings.LastIndexByte(prefix, '/'); i >= 0 {
		start = prefix[:i]
		if err := ValidKey(start); err != nil {
			return nil, fmt.Errorf("list %q: %w", prefix, err)
		}
	}
	if strings.ContainsAny(prefix, "\\\x00") {
		return nil, tufota.Errorf(tufota.EInvalid, "list %q: prefix contains a backslash or NUL", prefix)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("list %q: %w", prefix, err)
	}
	var out []Info
	err := fs.WalkDir(f.root.FS(), start, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == start && isNotFound(err) {
				return fs.SkipAll
			}
			return err
		}
		if cerr := ctx.Err(); cerr != nil {
			return cerr
		}
		if d.IsDir() {
			// Prune directories that cannot hold a match.
			if p != start && !strings.HasPrefix(p+"/", prefix) && !strings.HasPrefix(prefix, p+"/") {
				return fs.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() || strings.HasPrefix(d.Name(), tempPrefix) || !strings.HasPrefix(p, prefix) {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			if isNotFound(err) { // deleted while we walked
				return nil
			}
			return err
		}
		out = append(out, Info{Key: p, Size: fi.Size(), ModTime: fi.ModTime()})
		return nil
	})
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return nil, fmt.Errorf("list %q: %w", prefix, cerr)
		}
		if isNotDir(err) {
			return nil, nil // the prefix's directory part is a blob
		}
		return nil, fileErr("list", prefix, err)
	}
	slices.SortFunc(out, func(a, b Info) int { return strings.Compare(a.Key, b.Key) })
	return out, nil
}

// Move renames the blob from to the key to, replacing any blob there, and
// syncs both directories. It is atomic like Put. Moving a missing blob is
// tufota.ErrNotFound.
func (f *File) Move(ctx context.Context, from, to string) error {
	if err := checkFileKey(from); err != nil {
		return fmt.Errorf("move %q: %w", from, err)
	}
	if err := checkFileKey(to); err != nil {
		return fmt.Errorf("move to %q: %w", to, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("move %q: %w", from, err)
	}
	fi, err := f.root.Lstat(from)
	if err != nil {
		return fileErr("move", from, err)
	}
	if !fi.Mode().IsRegular() {
		return tufota.Errorf(tufota.ENotFound, "move %q: no such blob", from)
	}
	if from == to {
		return nil
	}
	dir := path.Dir(to)
	if dir != "." {
		if err := f.mkdirAll(dir); err != nil {
			return fileErr("move to", to, err)
		}
	}
	if err := f.root.Rename(from, to); err != nil {
		return fileErr("move "+from+" to", to, err)
	}
	if err := f.syncDir(dir); err != nil {
		return fileErr("move to", to, err)
	}
	if fromDir := path.Dir(from); fromDir != dir {
		if err := f.syncDir(fromDir); err != nil {
			return fileErr("move", from, err)
		}
	}
	return nil
}

// checkFileKey is ValidKey plus the File store's own rule: a key's last
// segment must not look like a temporary file.
func checkFileKey(key string) error {
	if err := ValidKey(key); err != nil {
		return err
	}
	if strings.HasPrefix(path.Base(key), tempPrefix) {
		return tufota.Errorf(tufota.EInvalid, "storage key %q uses the reserved prefix %q", key, tempPrefix)
	}
	return nil
}

func isNotFound(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || isNotDir(err)
}

func isNotDir(err error) bool { return errors.Is(err, syscall.ENOTDIR) }

// fileErr translates a file system error at the store's boundary.
func fileErr(op, key string, err error) error {
	var te *tufota.Error
	switch {
	case errors.As(err, &te):
		return fmt.Errorf("%s %q: %w", op, key, err)
	case isNotFound(err):
		return tufota.Errorf(tufota.ENotFound, "%s %q: no such blob", op, key)
	case errors.Is(err, syscall.EISDIR), errors.Is(err, fs.ErrExist), errors.Is(err, syscall.ENOTEMPTY):
		return tufota.Errorf(tufota.EConflict, "%s %q: key collides with a directory or a blob: %w", op, key, err)
	case isEscape(err):
		return tufota.Errorf(tufota.EInvalid, "%s %q: key resolves outside the storage directory: %w", op, key, err)
	case IsNoSpace(err):
		return tufota.Errorf(tufota.ENoSpace, "storage full: blob store: %s %q: %w", op, key, err)
	case errors.Is(err, fs.ErrPermission):
		return tufota.Errorf(tufota.EUnavailable, "storage unavailable: %s %q: %w", op, key, err)
	default:
		return tufota.Errorf(tufota.EUnavailable, "storage unavailable: %s %q: %w", op, key, err)
	}
}

// isEscape reports whether err is os.Root refusing a path or link that leaves
// the root. The standard library does not export that error, so match its
// text, and treat symlink loops the same way.
func isEscape(err error) bool {
	return strings.Contains(err.Error(), "escapes from parent") || errors.Is(err, syscall.ELOOP)
}
