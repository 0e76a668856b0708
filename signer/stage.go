package signer

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/storage"
)

// Staged is an uploaded file waiting to be published: its blob key under
// "staging/", its length and its hex SHA-256 and SHA-512.
type Staged struct {
	Key    string `json:"key"`
	Length int64  `json:"length"`
	SHA256 string `json:"sha256"`
	SHA512 string `json:"sha512"`
}

// Stage streams src into a new blob "staging/<random>" while hashing it
// with SHA-256 and SHA-512; it never holds the whole file in memory. An
// empty src is tufota.EInvalid ("empty file"); more than maxBytes bytes is
// tufota.ETooLarge (maxBytes <= 0 means no limit). On any error nothing is
// left in the store. Stage takes no lock: concurrent uploads are fine.
func (r *Repository) Stage(ctx context.Context, src io.Reader, maxBytes int64) (Staged, error) {
	var first [1]byte
	if n, err := io.ReadFull(src, first[:]); n == 0 {
		if err == nil || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return Staged{}, tufota.Errorf(tufota.EInvalid, "stage upload: empty file")
		}
		return Staged{}, fmt.Errorf("stage upload: read: %w", err)
	}
	key, err := randomKey(StagingPrefix)
	if err != nil {
		return Staged{}, fmt.Errorf("stage upload: %w", err)
	}
	h256, h512 := sha256.New(), sha512.New()
	lr := &limitedReader{r: io.MultiReader(bytes.NewReader(first[:]), src), max: maxBytes}
	written, err := r.blobs.Put(ctx, key, io.TeeReader(lr, io.MultiWriter(h256, h512)))
	switch {
	case lr.over:
		err = tufota.Errorf(tufota.ETooLarge, "stage upload: file is larger than the limit of %d bytes", maxBytes)
	case err != nil:
		err = fmt.Errorf("stage upload: %w", err)
	case written != lr.n:
		err = tufota.Errorf(tufota.EInternal, "stage upload: store wrote %d bytes, read %d", written, lr.n)
	}
	if err != nil {
		// Put is atomic, so a failed Put leaves nothing; delete anyway in
		// case the failure came after the blob was committed. Use a fresh
		// context: ctx may be the reason for the failure.
		if derr := r.blobs.Delete(context.WithoutCancel(ctx), key); derr != nil {
			r.log.WarnContext(ctx, "stage upload: cleanup failed", "key", key, "err", derr)
		}
		return Staged{}, err
	}
	return Staged{
		Key:    key,
		Length: written,
		SHA256: hex.EncodeToString(h256.Sum(nil)),
		SHA512: hex.EncodeToString(h512.Sum(nil)),
	}, nil
}

// Discard deletes a staged upload that will not be published. Discarding a
// missing upload is not an error; a key outside "staging/" is
// tufota.EInvalid (Discard never deletes published targets).
func (r *Repository) Discard(ctx context.Context, s Staged) error {
	if err := validStagedKey(s.Key); err != nil {
		return fmt.Errorf("discard: %w", err)
	}
	if err := r.blobs.Delete(ctx, s.Key); err != nil {
		return fmt.Errorf("discard %s: %w", s.Key, err)
	}
	return nil
}

func validStagedKey(key string) error {
	if !strings.HasPrefix(key, StagingPrefix) || strings.Count(key, "/") != 1 {
		return tufota.Errorf(tufota.EInvalid, "staged key %q is not under %s", key, StagingPrefix)
	}
	return storage.ValidKey(key)
}

func randomKey(prefix string) (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("random key: %w", err)
	}
	return prefix + hex.EncodeToString(b[:]), nil
}

// limitedReader counts bytes and fails once more than max have been read
// (max <= 0: no limit).
type limitedReader struct {
	r    io.Reader
	max  int64
	n    int64
	over bool
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.over {
		return 0, tufota.ErrTooLarge
	}
	if l.max > 0 {
		// Allow one byte past the limit so that a file of exactly max
		// bytes is accepted and a longer one detected.
		if rem := l.max + 1 - l.n; int64(len(p)) > rem {
			p = p[:rem]
		}
	}
	n, err := l.r.Read(p)
	l.n += int64(n)
	if l.max > 0 && l.n > l.max {
		l.over = true
		l.n -= int64(n)
		return 0, tufota.Errorf(tufota.ETooLarge, "file is larger than %d bytes", l.max)
	}
	return n, err
}
