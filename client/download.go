package client

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Download streams the update's image to dstPath, verified: see
// Repository.Download, which it is. The partial file of an interrupted
// download lives in StateDir/metadata/downloads, not beside dstPath.
//
// Errors: ErrLengthMismatch when the server sends more or fewer bytes than
// signed, ErrHashMismatch when the bytes differ (the partial file is
// removed in both cases), ErrServer or ErrUnreachable when the transfer
// fails. Concurrent calls must use different dstPaths. With Config.Delta
// set, a signed delta from the installed image is tried first (delta.go);
// any failure of it falls back to the full image.
func (c *Client) Download(ctx context.Context, upd *Update, dstPath string) error {
	if upd == nil {
		return errors.New("download: nil update")
	}
	// Earlier versions kept the partial file, and a marker naming its
	// target, beside the destination: remove them, they are not resumed.
	_ = os.Remove(dstPath + ".part")
	_ = os.Remove(dstPath + ".part.target")
	if c.cfg.Delta != nil {
		return c.downloadWithDelta(ctx, upd, dstPath)
	}
	if err := c.repo.Download(ctx, &Target{Path: upd.Target, Length: upd.Length, Hashes: upd.Hashes}, dstPath); err != nil {
		return err
	}
	c.setLastDownload(DeltaStats{Target: upd.Target, Bytes: upd.Length})
	return nil
}

// hashAlgs are the algorithms a download can verify, strongest last.
var hashAlgs = []struct {
	name string
	new  func() hash.Hash
	size int
}{{"sha256", sha256.New, sha256.Size}, {"sha512", sha512.New, sha512.Size}}

// signedSum is one signed hash a download checks.
type signedSum struct {
	alg  string
	want []byte
	h    hash.Hash
}

// signedSums returns the hashes of t the client can check: every signed
// sha256 and sha512 (other algorithms are ignored). It fails with
// ErrMetadata when there is none, or one is malformed.
func signedSums(t *Target) ([]signedSum, error) {
	var sums []signedSum
	for _, a := range hashAlgs {
		v, ok := t.Hashes[a.name]
		if !ok {
			continue
		}
		want, err := hex.DecodeString(v)
		if err != nil || len(want) != a.size {
			return nil, fmt.Errorf("%w: malformed %s hash", ErrMetadata, a.name)
		}
		sums = append(sums, signedSum{alg: a.name, want: want, h: a.new()})
	}
	if len(sums) == 0 {
		return nil, fmt.Errorf("%w: no sha256 or sha512 hash is signed", ErrMetadata)
	}
	return sums, nil
}

// Download streams target t to dstPath. t is what the bytes are checked
// against, so it should come from Target (a hand-made Target is only as
// trustworthy as its source). Bytes go to a partial file in
// MetadataDir/downloads as they arrive, through the signed hashes
// (whichever of sha256 and sha512 are signed; with both, each hashes in its
// own goroutine beside the write) and a length limit, and are fsynced in
// the background as they accumulate; dstPath appears, by atomic rename,
// only once the length and every hash match the signed values. Memory use
// does not grow with the target (at most about 1 MiB of buffers).
//
// When dstPath already holds the verified target, Download returns nil
// without a request. An interrupted download resumes from its partial
// file with an HTTP Range request, on the next attempt (retried under the
// RetryPolicy) or the next call. Errors: ErrLengthMismatch when the server
// sends more or fewer bytes than signed, ErrHashMismatch when the bytes
// differ (the partial file is removed in both cases), ErrMetadata when t
// signs no usable hash, ErrServer or ErrUnreachable when the transfer
// fails. Concurrent calls must use different dstPaths.
func (r *Repository) Download(ctx context.Context, t *Target, dstPath string) error {
	if t == nil {
		return errors.New("download: nil target")
	}
	if err := r.download(ctx, t, dstPath); err != nil {
		return fmt.Errorf("download %s: %w", t.Path, err)
	}
	return nil
}

func (r *Repository) download(ctx context.Context, t *Target, dstPath string) error {
	if t.Length < 0 {
		return fmt.Errorf("%w: negative length", ErrMetadata)
	}
	sums, err := signedSums(t)
	if err != nil {
		return err
	}
	if ok, err := verifiedFile(dstPath, t.Length, sums); err != nil {
		return err
	} else if ok {
		r.t.log.Info("target already downloaded and verified", "target", t.Path, "path", dstPath)
		return nil
	}
	// The partial file is named by the strongest signed hash: the same
	// content resumes, whatever the destination.
	last := sums[len(sums)-1]
	name := last.alg + "-" + hex.EncodeToString(last.want) + ".part"
	if err := r.claim(ctx, name); err != nil {
		return err
	}
	defer r.release(name)
	u, err := r.targetURL(t, hex.EncodeToString(sums[0].want))
	if err != nil {
		return err
	}
	var auth func(*http.Request)
	if r.authTarget {
		auth = r.auth
	}
	d := &download{
		t:      &r.t,
		target: t,
		url:    u,
		auth:   auth,
		dst:    dstPath,
		part:   filepath.Join(r.cfg.MetadataDir, downloadsDir, name),
		sums:   sums,
	}
	if err := d.run(ctx); err != nil {
		return err
	}
	r.t.log.Info("download verified", "target", t.Path, "path", dstPath, "length", t.Length)
	return nil
}

// claim makes the caller the only writer of partial file name, waiting
// while another download of the same target holds it.
func (r *Repository) claim(ctx context.Context, name string) error {
	for {
		r.partsMu.Lock()
		busy, ok := r.parts[name]
		if !ok {
			r.parts[name] = make(chan struct{})
			r.partsMu.Unlock()
			return nil
		}
		r.partsMu.Unlock()
		select {
		case <-busy:
		case <-ctx.Done():
			return fmt.Errorf("wait for another download of the same target: %w", ctx.Err())
		}
	}
}

func (r *Repository) release(name string) {
	r.partsMu.Lock()
	defer r.partsMu.Unlock()
	close(r.parts[name])
	delete(r.parts, name)
}

// verifiedFile reports whether name holds exactly the signed bytes.
func verifiedFile(name string, length int64, sums []signedSum) (bool, error) {
	f, err := os.Open(name)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("open %s: %w", name, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() || st.Size() != length {
		return false, nil
	}
	for i := range sums {
		sums[i].h.Reset()
	}
	defer func() {
		for i := range sums {
			sums[i].h.Reset()
		}
	}()
	if _, werr, rerr := teeCopy(f, hashWriters(sums)); werr != nil || rerr != nil {
		return false, nil
	}
	return sumsMatch(sums) == nil, nil
}

// writeAndHash copies src to f and through the signed hashes: with one
// algorithm signed in series, in the caller's goroutine; with two through
// teeCopy, each hash in its own goroutine beside the write, so a device
// with a free core hashes SHA-512 in parallel. (On the shared two-core
// test machine neither arrangement won consistently: docs/architecture.md.)
func writeAndHash(src io.Reader, f io.Writer, sums []signedSum) (n int64, writeErr, readErr error) {
	sinks := append([]io.Writer{f}, hashWriters(sums)...)
	if len(sums) == 1 {
		w := &errWriter{w: io.MultiWriter(sinks...)}
		n, err := io.Copy(w, src)
		if w.err != nil {
			return n, w.err, nil
		}
		return n, nil, err
	}
	return teeCopy(src, sinks)
}

func hashWriters(sums []signedSum) []io.Writer {
	ws := make([]io.Writer, len(sums))
	for i := range sums {
		ws[i] = sums[i].h
	}
	return ws
}

// sumsMatch compares each hash with its signed value.
func sumsMatch(sums []signedSum) error {
	for _, s := range sums {
		if !bytes.Equal(s.h.Sum(nil), s.want) {
			return fmt.Errorf("%w: %s differs from the signed value", ErrHashMismatch, s.alg)
		}
	}
	return nil
}

type download struct {
	t      *transport
	target *Target
	url    string
	auth   func(*http.Request) // adds credentials; nil sends none
	dst    string
	part   string
	sums   []signedSum

	f   *os.File
	off int64 // bytes in the partial file, all hashed
}

func (d *download) run(ctx context.Context) error {
	if err := d.open(); err != nil {
		return err
	}
	defer func() {
		if d.f != nil {
			d.f.Close()
		}
	}()
	resumed := d.off > 0
	err := d.transfer(ctx)
	if errors.Is(err, ErrHashMismatch) && resumed {
		// The bytes kept from an earlier attempt may be what is wrong (a
		// power cut can leave garbage at the end of an unsynced file):
		// start over once before blaming the server.
		d.t.log.Warn("resumed download failed verification; starting over", "target", d.target.Path)
		if err = d.restart(); err == nil {
			err = d.transfer(ctx)
		}
	}
	if err != nil {
		if errors.Is(err, ErrLengthMismatch) || errors.Is(err, ErrHashMismatch) {
			d.discard()
		}
		return err
	}
	if err := d.f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", d.part, err)
	}
	if err := d.f.Close(); err != nil {
		d.f = nil
		return fmt.Errorf("close %s: %w", d.part, err)
	}
	d.f = nil
	if err := moveFile(d.part, d.dst); err != nil {
		return err
	}
	return syncDir(filepath.Dir(d.dst))
}

// moveFile renames src to dst; across file systems it copies into a
// synced temporary file beside dst and renames that, then removes src.
func moveFile(src, dst string) error {
	err := os.Rename(src, dst)
	var le *os.LinkError
	if err == nil || !errors.As(err, &le) || !errors.Is(le.Err, syscall.EXDEV) {
		if err != nil {
			return fmt.Errorf("rename %s: %w", src, err)
		}
		return nil
	}
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("move %s: %w", src, err)
	}
	defer in.Close()
	tmp, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".tmp*")
	if err != nil {
		return fmt.Errorf("move %s: %w", src, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := io.Copy(tmp, in); err != nil {
		tmp.Close()
		return fmt.Errorf("move %s: %w", src, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("move %s: %w", src, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("move %s: %w", src, err)
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return fmt.Errorf("move %s: %w", src, err)
	}
	_ = os.Remove(src)
	return nil
}

// transfer fetches the missing bytes (retrying under the policy) and
// verifies the result.
func (d *download) transfer(ctx context.Context) error {
	if d.off < d.target.Length || d.target.Length == 0 && d.off == 0 {
		if err := d.t.retry(ctx, "download "+d.target.Path, d.fetch); err != nil {
			return err
		}
	}
	return d.verify()
}

// open opens the partial file and hashes what it already holds, so a
// download resumes where the last one stopped. A partial file longer than
// the signed length is started over.
func (d *download) open() error {
	f, err := os.OpenFile(d.part, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("open %s: %w", d.part, err)
	}
	d.f = f
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("stat %s: %w", d.part, err)
	}
	if st.Size() > d.target.Length {
		return d.restart()
	}
	n, werr, rerr := teeCopy(io.LimitReader(f, st.Size()), hashWriters(d.sums))
	if err := errors.Join(werr, rerr); err != nil {
		return fmt.Errorf("read %s: %w", d.part, err)
	}
	if _, err := f.Seek(n, io.SeekStart); err != nil {
		return fmt.Errorf("seek %s: %w", d.part, err)
	}
	d.off = n
	if d.off > 0 {
		d.t.log.Info("resuming download", "target", d.target.Path, "offset", d.off)
	}
	return nil
}

// restart empties the partial file.
func (d *download) restart() error {
	if err := d.f.Truncate(0); err != nil {
		return fmt.Errorf("truncate %s: %w", d.part, err)
	}
	if _, err := d.f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("seek %s: %w", d.part, err)
	}
	d.off = 0
	for i := range d.sums {
		d.sums[i].h.Reset()
	}
	return nil
}

// discard removes the partial file after a definite mismatch.
func (d *download) discard() {
	if d.f != nil {
		d.f.Close()
		d.f = nil
	}
	_ = os.Remove(d.part)
}

// errStalled cancels a transfer that has been silent for too long.
var errStalled = errors.New("transfer stalled")

// fetch makes one request for the bytes from d.off on and appends them.
func (d *download) fetch(ctx context.Context) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	watchdog := time.AfterFunc(d.t.timeout, func() { cancel(errStalled) })
	defer watchdog.Stop()

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.url, nil)
	if err != nil {
		return err
	}
	if d.auth != nil {
		d.auth(req)
	} else {
		req.Header.Set("User-Agent", userAgent)
	}
	if d.off > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", d.off))
	}
	res, err := d.t.http.Do(req)
	if err != nil {
		return d.transferError(ctx, err)
	}
	defer res.Body.Close()
	switch {
	case res.StatusCode == http.StatusOK:
		if d.off > 0 {
			d.t.log.Info("server ignored the range; starting over", "target", d.target.Path)
			if err := d.restart(); err != nil {
				return err
			}
		}
	case res.StatusCode == http.StatusPartialContent && d.off > 0:
		start, ok := contentRangeStart(res.Header.Get("Content-Range"))
		if !ok || start != d.off {
			drain(res.Body)
			return &ServerError{Op: "download", Status: res.StatusCode, Message: fmt.Sprintf("Content-Range %q does not start at %d", res.Header.Get("Content-Range"), d.off)}
		}
	default:
		return serverError("download", res)
	}
	if cl := res.ContentLength; cl >= 0 && d.off+cl > d.target.Length {
		return fmt.Errorf("%w: server announces %d bytes, signed length is %d", ErrLengthMismatch, d.off+cl, d.target.Length)
	}
	// Never read past the signed length: one byte more proves a mismatch.
	body := io.LimitReader(&progressReader{r: res.Body, watchdog: watchdog, timeout: d.t.timeout}, d.target.Length-d.off+1)
	fw := &syncingFile{f: d.f}
	n, werr, rerr := writeAndHash(body, fw, d.sums)
	d.off += n
	if err := fw.wait(); err != nil && werr == nil {
		werr = err
	}
	switch {
	case werr != nil:
		return fmt.Errorf("write %s: %w", d.part, werr)
	case rerr != nil:
		return d.transferError(ctx, rerr)
	}
	switch {
	case d.off < d.target.Length:
		return fmt.Errorf("%w: server sent %d of the %d signed bytes", ErrLengthMismatch, d.off, d.target.Length)
	case d.off > d.target.Length:
		return fmt.Errorf("%w: server sent more than the %d signed bytes", ErrLengthMismatch, d.target.Length)
	}
	return nil
}

// transferError classifies a failed exchange: the caller's context ending
// is returned as is (not retryable); a stall or any other failure is
// ErrUnreachable (retryable).
func (d *download) transferError(ctx context.Context, err error) error {
	cause := context.Cause(ctx)
	switch {
	case errors.Is(cause, errStalled):
		return fmt.Errorf("%w: no data for %v: %w", ErrUnreachable, d.t.timeout, errStalled)
	case cause != nil:
		return fmt.Errorf("transfer: %w", cause)
	}
	return fmt.Errorf("%w: %w", ErrUnreachable, err)
}

// syncEvery is how many bytes a download writes between two background
// fsyncs of its partial file.
const syncEvery = 8 << 20

// syncingFile writes to f and, every syncEvery bytes, starts an fsync of f
// in the background (one at a time), so the disk writes the image while
// the network delivers it and the final fsync before the rename has little
// left to do. On the test machine this took a verified 64 MiB download
// from about 0.6 to about 0.85 of curl -o (which does not fsync at all).
// An error of a background fsync is kept and returned by wait: the kernel
// reports a failed writeback to one fsync only.
type syncingFile struct {
	f       *os.File
	pending int64
	running atomic.Bool
	wg      sync.WaitGroup
	mu      sync.Mutex
	err     error
}

func (s *syncingFile) Write(p []byte) (int, error) {
	n, err := s.f.Write(p)
	s.pending += int64(n)
	if s.pending >= syncEvery && s.running.CompareAndSwap(false, true) {
		s.pending = 0
		s.wg.Go(func() {
			defer s.running.Store(false)
			if err := s.f.Sync(); err != nil {
				s.mu.Lock()
				s.err = cmp.Or(s.err, err)
				s.mu.Unlock()
			}
		})
	}
	return n, err
}

// wait waits for a background fsync and returns the first one's error.
func (s *syncingFile) wait() error {
	s.wg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return fmt.Errorf("sync: %w", s.err)
	}
	return nil
}

// verify compares the partial file's length and hashes with the signed
// ones.
func (d *download) verify() error {
	if d.off != d.target.Length {
		return fmt.Errorf("%w: have %d bytes, signed length is %d", ErrLengthMismatch, d.off, d.target.Length)
	}
	return sumsMatch(d.sums)
}

// progressReader pushes the stall watchdog back on every read that
// returns data.
type progressReader struct {
	r        io.Reader
	watchdog *time.Timer
	timeout  time.Duration
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if n > 0 {
		p.watchdog.Reset(p.timeout)
	}
	return n, err
}

// contentRangeStart parses "bytes START-END/TOTAL" and returns START.
func contentRangeStart(v string) (int64, bool) {
	rest, ok := strings.CutPrefix(v, "bytes ")
	if !ok {
		return 0, false
	}
	startS, _, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, false
	}
	start, err := strconv.ParseInt(startS, 10, 64)
	return start, err == nil && start >= 0
}

// syncDir fsyncs a directory so a rename in it survives power loss.
func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	return nil
}

// writeFileAtomic writes data to name through a synced temporary file in the
// same directory and a rename, then syncs the directory: after a crash the
// file holds either the old or the new content.
func writeFileAtomic(name string, data []byte) error {
	return writeFileAtomicSteps(name, data, nil)
}

// writeFileAtomicSteps is writeFileAtomic with a hook called between its
// steps (for crash tests).
func writeFileAtomicSteps(name string, data []byte, step func(string)) error {
	if step == nil {
		step = func(string) {}
	}
	dir := filepath.Dir(name)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(name)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", name, err)
	}
	step("temp written")
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	step("temp synced")
	if err := os.Rename(tmp.Name(), name); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	step("renamed")
	return syncDir(dir)
}
