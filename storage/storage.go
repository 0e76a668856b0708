// Package storage keeps tufota's bytes and state: a blob store for TUF
// metadata and firmware (File, the embedded default, and S3) and a SQL state
// store (SQLite, the embedded default, and PostgreSQL) with embedded
// migrations. Each contract has one conformance suite in storagetest.
//
// Backend errors are translated at this boundary: a missing object or row is
// tufota.ErrNotFound, a duplicate key is tufota.ErrConflict, an unreachable
// backend is tufota.ErrUnavailable.
package storage

import (
	"context"
	"io"
	"strings"
	"time"

	"github.com/tufota/tufota"
)

// Info describes one stored blob.
type Info struct {
	Key     string
	Size    int64
	ModTime time.Time
}

// Object is an open blob: readable, seekable (for HTTP Range requests) and
// closable. It must be closed.
type Object interface {
	io.ReadSeekCloser
	Info() Info
}

// Blobs is a flat key/value store of byte streams. Keys are slash-separated
// relative paths checked by ValidKey. Implementations are safe for
// concurrent use.
type Blobs interface {
	// Put stores r under key atomically: a concurrent reader sees the old
	// blob or the complete new one, never a part. It returns the number of
	// bytes written.
	Put(ctx context.Context, key string, r io.Reader) (int64, error)
	// Open opens the blob for reading; tufota.ErrNotFound if it is missing.
	Open(ctx context.Context, key string) (Object, error)
	// Stat describes the blob; tufota.ErrNotFound if it is missing.
	Stat(ctx context.Context, key string) (Info, error)
	// Delete removes the blob; deleting a missing blob is not an error.
	Delete(ctx context.Context, key string) error
	// List returns the blobs whose keys start with prefix, sorted by key.
	List(ctx context.Context, prefix string) ([]Info, error)
}

// Mover is an optional upgrade of Blobs: it moves a blob to a new key
// without copying its bytes through the caller (a rename on disk, a
// server-side copy on S3). Like Put, the destination appears atomically.
type Mover interface {
	Move(ctx context.Context, from, to string) error
}

// Sweeper is an optional upgrade of Blobs: SweepIncomplete removes what
// Puts that never finished (a crash, a kill) left under prefix, "" or a
// folder ending in "/": the File store's temporary files, S3's incomplete
// multipart uploads. Such leftovers are invisible to List and Stat. It never
// removes the leftovers of a Put still running in this process, nor any
// started (S3) or last written (File) at or after before, which keeps a Put
// running in another process safe as long as before is further back than
// that Put's longest pause. It returns how many it removed.
type Sweeper interface {
	SweepIncomplete(ctx context.Context, prefix string, before time.Time) (int, error)
}

// ValidKey checks that key is a clean relative slash path: not empty, no
// leading or trailing slash, no empty, "." or ".." segment, no backslash or
// NUL, at most 1024 bytes.
func ValidKey(key string) error {
	if key == "" {
		return tufota.Errorf(tufota.EInvalid, "storage key is empty")
	}
	if len(key) > 1024 {
		return tufota.Errorf(tufota.EInvalid, "storage key is longer than 1024 bytes")
	}
	if strings.ContainsAny(key, "\\\x00") {
		return tufota.Errorf(tufota.EInvalid, "storage key %q contains a backslash or NUL", key)
	}
	for _, seg := range strings.Split(key, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return tufota.Errorf(tufota.EInvalid, "storage key %q has an empty, '.' or '..' segment", key)
		}
	}
	return nil
}
