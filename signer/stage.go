package signer

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"strings"
	"sync"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/storage"
)

// Staged is an uploaded file waiting to be published: its blob key under
// "staging/", its length and its hex SHA-256, the one hash signed into the
// TUF targets metadata.
//
// SHA512 is empty for uploads staged by this version: TUF signs only
// SHA-256 (see docs/architecture.md), and hashing SHA-512 as well cost a
// push more CPU than writing the file to disk. Rows staged by earlier
// versions keep theirs.
type Staged struct {
	Key    string `json:"key"`
	Length int64  `json:"length"`
	SHA256 string `json:"sha256"`
	SHA512 string `json:"sha512,omitempty"`
}

// Stage streams src into a new blob "staging/<random>" while hashing it
// with SHA-256; it never holds the whole file in memory. Reading, hashing
// and writing run as a pipeline of three goroutines over stageDepth
// buffers of stageChunk bytes: while the store writes one buffer, the next
// is hashed and a third is read.
//
// An empty src is tufota.EInvalid ("empty file"); more than maxBytes bytes
// is tufota.ETooLarge (maxBytes <= 0 means no limit). On any error nothing
// is left in the store. Stage takes no lock: concurrent uploads are fine.
// While Stage runs its key is live: SweepStaging leaves it alone.
func (r *Repository) Stage(ctx context.Context, src io.Reader, maxBytes int64) (Staged, error) {
	s, done, err := r.stageLive(ctx, src, maxBytes)
	done()
	return s, err
}

// stageLive is Stage with the key kept live until the caller calls done
// (also after an error): a push keeps it live until its release is
// published, pending or removed.
func (r *Repository) stageLive(ctx context.Context, src io.Reader, maxBytes int64) (_ Staged, done func(), _ error) {
	done = func() {}
	var first [1]byte
	if n, err := io.ReadFull(src, first[:]); n == 0 {
		if err == nil || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return Staged{}, done, tufota.Errorf(tufota.EInvalid, "stage upload: empty file")
		}
		return Staged{}, done, fmt.Errorf("stage upload: read: %w", err)
	}
	key, err := randomKey(StagingPrefix)
	if err != nil {
		return Staged{}, done, fmt.Errorf("stage upload: %w", err)
	}
	done = r.staging.add(key)
	lr := &limitedReader{r: src, max: maxBytes, n: 1}
	h256 := sha256.New()
	p := newHashPipe(first[:], lr, h256)
	written, err := r.blobs.Put(ctx, key, p)
	p.stop()
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
		return Staged{}, done, err
	}
	return Staged{Key: key, Length: written, SHA256: hex.EncodeToString(h256.Sum(nil))}, done, nil
}

// The staging pipeline's buffers: stageDepth of stageChunk bytes, the
// memory one upload holds whatever the file's size.
const (
	stageChunk = 256 << 10
	stageDepth = 8
)

// hashPipe is the io.Reader that Stage gives the blob store: a reader
// goroutine fills buffers from the source, a hasher goroutine hashes them
// in order, and Read hands them to the store, then returns each buffer to
// the reader. The source's error (or io.EOF) comes after the bytes read
// before it, as from the source itself. stop must be called once the store
// is done; it waits for both goroutines, so the source is never read after
// stop returns.
type hashPipe struct {
	free, filled, hashed chan []byte
	quit                 chan struct{}
	wg                   sync.WaitGroup
	rerr                 error // the source's error; read after hashed is closed
	cur, curBuf          []byte
	stopOnce             sync.Once
}

func newHashPipe(head []byte, src io.Reader, h hash.Hash) *hashPipe {
	p := &hashPipe{
		free:   make(chan []byte, stageDepth),
		filled: make(chan []byte, stageDepth),
		hashed: make(chan []byte, stageDepth),
		quit:   make(chan struct{}),
	}
	for range stageDepth {
		p.free <- make([]byte, stageChunk)
	}
	p.wg.Add(2)
	go p.read(head, src)
	go p.hash(h)
	return p
}

// read fills free buffers from src (the first starting with head) and
// passes them to the hasher, until src ends or fails or the pipe stops.
func (p *hashPipe) read(head []byte, src io.Reader) {
	defer p.wg.Done()
	defer close(p.filled)
	for {
		var buf []byte
		select {
		case buf = <-p.free:
		case <-p.quit:
			return
		}
		n := copy(buf, head)
		head = nil
		var err error
		for n < len(buf) && err == nil {
			var m int
			m, err = src.Read(buf[n:])
			n += m
			select {
			case <-p.quit:
				return
			default:
			}
		}
		if n > 0 {
			select {
			case p.filled <- buf[:n]:
			case <-p.quit:
				return
			}
		}
		if err != nil {
			if err != io.EOF {
				p.rerr = err
			}
			return
		}
	}
}

// hash hashes each filled buffer and passes it on to Read.
func (p *hashPipe) hash(h hash.Hash) {
	defer p.wg.Done()
	defer close(p.hashed)
	for buf := range p.filled {
		h.Write(buf)
		select {
		case p.hashed <- buf:
		case <-p.quit:
			return
		}
	}
}

// Read implements io.Reader for the blob store.
func (p *hashPipe) Read(b []byte) (int, error) {
	for len(p.cur) == 0 {
		if p.curBuf != nil {
			p.free <- p.curBuf[:cap(p.curBuf)] // never blocks: at most stageDepth buffers exist
			p.curBuf = nil
		}
		buf, ok := <-p.hashed
		if !ok {
			if p.rerr != nil {
				return 0, p.rerr
			}
			return 0, io.EOF
		}
		p.cur, p.curBuf = buf, buf
	}
	n := copy(b, p.cur)
	p.cur = p.cur[n:]
	return n, nil
}

// stop ends both goroutines and waits for them.
func (p *hashPipe) stop() {
	p.stopOnce.Do(func() { close(p.quit) })
	p.wg.Wait()
}

// liveKeys is a set of blob keys in use in this process, each counted
// once per add. It is safe for concurrent use; the zero value is empty.
type liveKeys struct {
	mu   sync.Mutex
	keys map[string]int
}

// add marks key live until the returned function is called (once).
func (l *liveKeys) add(key string) func() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.keys == nil {
		l.keys = make(map[string]int)
	}
	l.keys[key]++
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			if l.keys[key]--; l.keys[key] <= 0 {
				delete(l.keys, key)
			}
		})
	}
}

// has reports whether key is live.
func (l *liveKeys) has(key string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.keys[key] > 0
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
// (max <= 0: no limit). n starts at the bytes already read before it.
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
