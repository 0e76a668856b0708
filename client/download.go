package client

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Download streams the update's image to dstPath. Bytes go to
// dstPath+".part" as they arrive, through sha256 and sha512 (when signed)
// and a length limit; dstPath appears, by atomic rename, only once the
// length and every hash match the signed values. Memory use does not grow
// with the image.
//
// An interrupted download resumes from the .part file with an HTTP Range
// request, on the next attempt (retried under the client's RetryPolicy) or
// the next call. Errors: ErrLengthMismatch when the server sends more or
// fewer bytes than signed, ErrHashMismatch when the bytes differ (the .part
// file is removed in both cases), ErrServer or ErrUnreachable when the
// transfer fails. Concurrent calls must use different dstPaths.
func (c *Client) Download(ctx context.Context, upd *Update, dstPath string) error {
	if upd == nil {
		return errors.New("download: nil update")
	}
	want256, err := hex.DecodeString(upd.Hashes["sha256"])
	if err != nil || len(want256) != sha256.Size {
		return fmt.Errorf("download %s: %w: no valid sha256 hash", upd.Target, ErrMetadata)
	}
	dir, base := path.Split(upd.Target)
	if dir == "" || base == "" || upd.Length < 0 {
		return fmt.Errorf("download %s: %w: bad target", upd.Target, ErrMetadata)
	}
	u, toServer := c.targetURL(dir + hex.EncodeToString(want256) + "." + base)
	d := &download{
		c:      c,
		upd:    upd,
		url:    u,
		auth:   toServer,
		dst:    dstPath,
		part:   dstPath + ".part",
		marker: dstPath + ".part.target",
	}
	if err := d.run(ctx); err != nil {
		return fmt.Errorf("download %s: %w", upd.Target, err)
	}
	c.log.Info("download verified", "target", upd.Target, "path", dstPath, "length", upd.Length)
	return nil
}

type download struct {
	c      *Client
	upd    *Update
	url    string
	auth   bool // the URL is on the server: send the device token
	dst    string
	part   string
	marker string // names the target the .part file belongs to

	f      *os.File
	off    int64 // bytes in the .part file, all hashed
	h256   hash.Hash
	h512   hash.Hash
	hashed io.Writer
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
		d.c.log.Warn("resumed download failed verification; starting over", "target", d.upd.Target)
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
	if err := os.Rename(d.part, d.dst); err != nil {
		return fmt.Errorf("rename %s: %w", d.part, err)
	}
	_ = os.Remove(d.marker)
	return syncDir(filepath.Dir(d.dst))
}

// transfer fetches the missing bytes (retrying under the client's policy)
// and verifies the result.
func (d *download) transfer(ctx context.Context) error {
	if d.off < d.upd.Length || d.upd.Length == 0 && d.off == 0 {
		if err := d.c.retry(ctx, "download "+d.upd.Target, d.fetch); err != nil {
			return err
		}
	}
	return d.verify()
}

// open opens the .part file and hashes what it already holds, so a
// download resumes where the last one stopped. A .part file of another
// target, or longer than the signed length, is started over.
func (d *download) open() error {
	d.h256 = sha256.New()
	d.h512 = sha512.New()
	d.hashed = io.MultiWriter(d.h256, d.h512)
	sum := d.upd.Hashes["sha256"]
	same := false
	if b, err := os.ReadFile(d.marker); err == nil && string(b) == sum {
		same = true
	}
	f, err := os.OpenFile(d.part, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("open %s: %w", d.part, err)
	}
	d.f = f
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("stat %s: %w", d.part, err)
	}
	if !same || st.Size() > d.upd.Length {
		if err := d.restart(); err != nil {
			return err
		}
		if err := writeFileAtomic(d.marker, []byte(sum)); err != nil {
			return err
		}
		return nil
	}
	n, err := io.Copy(d.hashed, io.LimitReader(f, st.Size()))
	if err != nil {
		return fmt.Errorf("read %s: %w", d.part, err)
	}
	d.off = n
	if d.off > 0 {
		d.c.log.Info("resuming download", "target", d.upd.Target, "offset", d.off)
	}
	return nil
}

// restart empties the .part file.
func (d *download) restart() error {
	if err := d.f.Truncate(0); err != nil {
		return fmt.Errorf("truncate %s: %w", d.part, err)
	}
	if _, err := d.f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("seek %s: %w", d.part, err)
	}
	d.off = 0
	d.h256.Reset()
	d.h512.Reset()
	return nil
}

// discard removes the .part file after a definite mismatch.
func (d *download) discard() {
	if d.f != nil {
		d.f.Close()
		d.f = nil
	}
	_ = os.Remove(d.part)
	_ = os.Remove(d.marker)
}

// errStalled cancels a transfer that has been silent for too long.
var errStalled = errors.New("transfer stalled")

// fetch makes one request for the bytes from d.off on and appends them.
func (d *download) fetch(ctx context.Context) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	watchdog := time.AfterFunc(d.c.timeout, func() { cancel(errStalled) })
	defer watchdog.Stop()

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.url, nil)
	if err != nil {
		return err
	}
	if d.auth {
		d.c.authorize(req)
	} else {
		req.Header.Set("User-Agent", "tufota-client")
	}
	if d.off > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", d.off))
	}
	res, err := d.c.http.Do(req)
	if err != nil {
		return d.transferError(ctx, err)
	}
	defer res.Body.Close()
	switch {
	case res.StatusCode == http.StatusOK:
		if d.off > 0 {
			d.c.log.Info("server ignored the range; starting over", "target", d.upd.Target)
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
	if cl := res.ContentLength; cl >= 0 && d.off+cl > d.upd.Length {
		return fmt.Errorf("%w: server announces %d bytes, signed length is %d", ErrLengthMismatch, d.off+cl, d.upd.Length)
	}
	// Never read past the signed length: one byte more proves a mismatch.
	body := io.LimitReader(&progressReader{r: res.Body, watchdog: watchdog, timeout: d.c.timeout}, d.upd.Length-d.off+1)
	w := &errWriter{w: io.MultiWriter(d.f, d.hashed)}
	n, err := io.Copy(w, body)
	d.off += n
	switch {
	case w.err != nil:
		return fmt.Errorf("write %s: %w", d.part, w.err)
	case err != nil:
		return d.transferError(ctx, err)
	}
	switch {
	case d.off < d.upd.Length:
		return fmt.Errorf("%w: server sent %d of the %d signed bytes", ErrLengthMismatch, d.off, d.upd.Length)
	case d.off > d.upd.Length:
		return fmt.Errorf("%w: server sent more than the %d signed bytes", ErrLengthMismatch, d.upd.Length)
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
		return fmt.Errorf("%w: no data for %v: %w", ErrUnreachable, d.c.timeout, errStalled)
	case cause != nil:
		return fmt.Errorf("transfer: %w", cause)
	}
	return fmt.Errorf("%w: %w", ErrUnreachable, err)
}

// errWriter remembers the error of its writer, so a failed copy can tell a
// disk error from a network one.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(b []byte) (int, error) {
	n, err := e.w.Write(b)
	if err != nil {
		e.err = err
	}
	return n, err
}

// verify compares the .part file's length and hashes with the signed ones.
func (d *download) verify() error {
	if d.off != d.upd.Length {
		return fmt.Errorf("%w: have %d bytes, signed length is %d", ErrLengthMismatch, d.off, d.upd.Length)
	}
	for _, c := range []struct {
		alg string
		h   hash.Hash
	}{{"sha256", d.h256}, {"sha512", d.h512}} {
		alg, h := c.alg, c.h
		want, ok := d.upd.Hashes[alg]
		if !ok {
			continue
		}
		wantb, err := hex.DecodeString(want)
		if err != nil || !bytes.Equal(h.Sum(nil), wantb) {
			return fmt.Errorf("%w: %s differs from the signed value", ErrHashMismatch, alg)
		}
	}
	return nil
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
