package client

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/tufota/tufota/delta"
)

// DeltaConfig lets the client download an update as a binary delta from
// the installed image instead of the full image.
type DeltaConfig struct {
	// Base returns the installed (running, confirmed) image: a file the
	// client reads by random access, with the length and SHA-256 recorded
	// when it was installed. ABInstaller.DeltaBase is one.
	Base func(ctx context.Context) (DeltaBase, error)
	// Memory is the memory bound of applying a delta, in bytes (see
	// delta.Limits); zero means delta.DefaultMemory.
	Memory int64
}

// DeltaBase is the image a delta applies to.
type DeltaBase struct {
	Path   string
	Length int64
	SHA256 string // lowercase hex
}

// ErrDelta is the class of every delta failure; the client falls back to
// the full image after each. ErrorCode gives the finer code:
// "delta_base_mismatch" (the delta was made from another image than the
// installed one), "delta_corrupt" (the delta's bytes fail its own signed
// hashes or do not parse), "delta_result_mismatch" (the delta produces
// another image than the signed full target), "delta_memory_bound" (the
// device's memory bound is too small) or "delta_download" (the delta could
// not be fetched).
var ErrDelta = errors.New("delta refused")

// Delta error codes, as status reports carry them.
const (
	CodeDeltaBase     = "delta_base_mismatch"
	CodeDeltaCorrupt  = "delta_corrupt"
	CodeDeltaResult   = "delta_result_mismatch"
	CodeDeltaMemory   = "delta_memory_bound"
	CodeDeltaDownload = "delta_download"
)

type deltaError struct {
	code string
	err  error
}

func (e *deltaError) Error() string   { return "delta: " + e.err.Error() }
func (e *deltaError) Unwrap() []error { return []error{ErrDelta, e.err} }

// deltaCode returns the code of a delta failure in err's chain, or "".
func deltaCode(err error) string {
	var de *deltaError
	if errors.As(err, &de) {
		return de.code
	}
	return ""
}

func deltaErr(code string, format string, args ...any) error {
	return &deltaError{code: code, err: fmt.Errorf(format, args...)}
}

// errNoDelta: there is no delta for the installed image; not a failure.
var errNoDelta = errors.New("no delta for the installed image")

// DeltaStats describes the last update download.
type DeltaStats struct {
	// Target is the update's full target.
	Target string
	// Delta is the delta target used, or "" when the full image was
	// downloaded.
	Delta string
	// DeltaLength is the signed length of the delta (0 without one).
	DeltaLength int64
	// Fallback is why a delta was not used, or nil.
	Fallback error
	// Bytes is what the download transferred: the delta's length, or the
	// full image's (after a refused delta, the full image's only).
	Bytes int64
}

// Path is "delta" or "full": how the last download got the image; "" if
// there was none.
func (s DeltaStats) Path() string {
	switch {
	case s.Target == "":
		return ""
	case s.Delta != "":
		return DownloadDelta
	}
	return DownloadFull
}

// Download paths as status reports carry them (Report.Download).
const (
	DownloadDelta = "delta"
	DownloadFull  = "full"
)

// LastDownload returns what the last Download did.
func (c *Client) LastDownload() DeltaStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastDownload
}

func (c *Client) setLastDownload(s DeltaStats) {
	c.mu.Lock()
	c.lastDownload = s
	c.mu.Unlock()
}

// downloadWithDelta is Download when a DeltaConfig is set: it tries the
// delta from the installed image to upd and, on any failure but the
// context's, reports the failure with its delta code (as a "downloading"
// status report, not a failed update) and downloads the full image.
func (c *Client) downloadWithDelta(ctx context.Context, upd *Update, dstPath string) error {
	d, err := c.downloadDelta(ctx, upd, dstPath)
	if err == nil {
		c.setLastDownload(DeltaStats{Target: upd.Target, Delta: d.Path, DeltaLength: d.Length, Bytes: d.Length})
		return nil
	}
	if ctx.Err() != nil {
		return err
	}
	if !errors.Is(err, errNoDelta) {
		r := NewReport(upd, StateDownloading, err)
		c.log.Warn("delta refused; downloading the full image", "target", upd.Target, "code", r.ErrorCode, "err", err)
		if rerr := c.Report(ctx, r); rerr != nil {
			c.log.Warn("delta fallback report not delivered yet", "err", rerr)
		}
	} else {
		err = nil
	}
	if ferr := c.repo.Download(ctx, &Target{Path: upd.Target, Length: upd.Length, Hashes: upd.Hashes}, dstPath); ferr != nil {
		return ferr
	}
	c.setLastDownload(DeltaStats{Target: upd.Target, Fallback: err, Bytes: upd.Length})
	return nil
}

// downloadDelta downloads the delta from the installed image to upd and
// applies it into dstPath, which appears (by rename) only once its length
// and every signed hash of the full target match. It returns the delta
// target it used.
func (c *Client) downloadDelta(ctx context.Context, upd *Update, dstPath string) (*Target, error) {
	full := &Target{Path: upd.Target, Length: upd.Length, Hashes: upd.Hashes}
	sums, err := signedSums(full)
	if err != nil {
		return nil, err
	}
	if ok, err := verifiedFile(dstPath, full.Length, sums); err != nil {
		return nil, err
	} else if ok {
		return nil, errNoDelta // already there: the full path says so
	}
	base, err := c.cfg.Delta.Base(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errNoDelta, err)
	}
	cur := c.CurrentVersion()
	if cur == "" {
		return nil, errNoDelta
	}
	dt, err := c.repo.Target(ctx, delta.TargetPath(upd.Custom.Name, upd.Version, cur))
	if errors.Is(err, ErrNotSigned) {
		return nil, errNoDelta
	}
	if err != nil {
		return nil, deltaErr(CodeDeltaDownload, "look up delta: %w", err)
	}
	dc, err := delta.UnmarshalCustom(dt.Custom)
	if err != nil {
		return nil, deltaErr(CodeDeltaCorrupt, "delta target %s: %w", dt.Path, err)
	}
	// What the delta's signed metadata says must be what the device has
	// and what the signed full target is.
	if dc.Base.Length != base.Length || dc.Base.Hashes["sha256"] != base.SHA256 {
		return nil, deltaErr(CodeDeltaBase, "delta %s applies to %s (%d bytes, sha256 %s), the installed image is %d bytes, sha256 %s",
			dt.Path, dc.Base.Path, dc.Base.Length, dc.Base.Hashes["sha256"], base.Length, base.SHA256)
	}
	if dc.Result.Path != full.Path || dc.Result.Length != full.Length || dc.Result.Hashes["sha256"] != full.Hashes["sha256"] {
		return nil, deltaErr(CodeDeltaResult, "delta %s produces %s (%d bytes), not the signed %s (%d bytes)", dt.Path, dc.Result.Path, dc.Result.Length, full.Path, full.Length)
	}
	if c.cfg.Delta.Memory != 0 && c.cfg.Delta.Memory < delta.MinMemory {
		return nil, deltaErr(CodeDeltaMemory, "memory bound of %d bytes is below the %d a delta needs", c.cfg.Delta.Memory, delta.MinMemory)
	}
	wantNew, err := hex.DecodeString(full.Hashes["sha256"])
	if err != nil {
		return nil, fmt.Errorf("%w: malformed sha256", ErrMetadata)
	}
	wantOld, _ := hex.DecodeString(base.SHA256)

	// The delta is a target like any other: resumable, and verified
	// against its own signed length and hashes before it is read.
	dir := filepath.Join(c.cfg.StateDir, metadataDir, downloadsDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	patchPath := filepath.Join(dir, "delta-"+dt.Hashes["sha256"])
	if err := c.repo.Download(ctx, dt, patchPath); err != nil {
		if errors.Is(err, ErrHashMismatch) || errors.Is(err, ErrLengthMismatch) {
			return nil, deltaErr(CodeDeltaCorrupt, "%w", err)
		}
		return nil, deltaErr(CodeDeltaDownload, "%w", err)
	}
	defer os.Remove(patchPath)

	if err := c.applyDelta(ctx, base, patchPath, dstPath, full, sums, wantOld, wantNew); err != nil {
		return nil, err
	}
	c.log.Info("update applied from a delta", "target", full.Path, "delta", dt.Path, "delta_length", dt.Length, "length", full.Length)
	return dt, nil
}

func (c *Client) applyDelta(ctx context.Context, base DeltaBase, patchPath, dstPath string, full *Target, sums []signedSum, wantOld, wantNew []byte) error {
	old, err := os.Open(base.Path)
	if err != nil {
		return deltaErr(CodeDeltaBase, "open installed image: %w", err)
	}
	defer old.Close()
	patch, err := os.Open(patchPath)
	if err != nil {
		return err
	}
	defer patch.Close()
	tmp, err := os.CreateTemp(filepath.Dir(dstPath), "."+filepath.Base(dstPath)+".delta*")
	if err != nil {
		return fmt.Errorf("apply delta: %w", err)
	}
	defer os.Remove(tmp.Name())
	for i := range sums {
		sums[i].h.Reset()
	}
	w := io.MultiWriter(append([]io.Writer{tmp}, hashWriters(sums)...)...)
	err = delta.Apply(ctx, old, patch, w,
		delta.Expect{OldSize: base.Length, OldSHA256: wantOld, NewSize: full.Length, NewSHA256: wantNew},
		delta.Limits{Memory: c.cfg.Delta.Memory})
	if err != nil {
		tmp.Close()
		switch {
		case errors.Is(err, delta.ErrBaseMismatch):
			return deltaErr(CodeDeltaBase, "%w", err)
		case errors.Is(err, delta.ErrResultMismatch):
			return deltaErr(CodeDeltaResult, "%w", err)
		case errors.Is(err, delta.ErrMemoryBound):
			return deltaErr(CodeDeltaMemory, "%w", err)
		case errors.Is(err, delta.ErrCorrupt):
			return deltaErr(CodeDeltaCorrupt, "%w", err)
		}
		return err
	}
	// Apply checked the length and SHA-256; every other signed hash of
	// the full target is checked here, before the file appears.
	if err := sumsMatch(sums); err != nil {
		tmp.Close()
		return deltaErr(CodeDeltaResult, "%w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), dstPath); err != nil {
		return err
	}
	return syncDir(filepath.Dir(dstPath))
}

// DeltaBase returns the image the device runs, as DeltaConfig.Base wants
// it: the primary slot's image and record. While a trial slot is
// unconfirmed there is no base (the error says so), and the client
// downloads full images.
func (ab *ABInstaller) DeltaBase(context.Context) (DeltaBase, error) {
	ab.mu.Lock()
	defer ab.mu.Unlock()
	st, ok, err := ab.readState()
	if err != nil {
		return DeltaBase{}, err
	}
	if !ok {
		return DeltaBase{}, errors.New("nothing installed")
	}
	if st.Trial != "" {
		return DeltaBase{}, errors.New("a trial slot is not confirmed yet")
	}
	var rec SlotRecord
	b, err := os.ReadFile(ab.recordPath(st.Primary))
	if err != nil {
		return DeltaBase{}, fmt.Errorf("slot %s record: %w", st.Primary, err)
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		return DeltaBase{}, fmt.Errorf("slot %s record: %w", st.Primary, err)
	}
	return DeltaBase{Path: ab.imagePath(st.Primary), Length: rec.Length, SHA256: rec.SHA256}, nil
}
