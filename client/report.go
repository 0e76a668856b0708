package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// State is a device's update state as reported to the server.
type State string

// Report states, in the order an update goes through them.
const (
	StateDownloading State = "downloading"
	StateDownloaded  State = "downloaded"
	StateInstalling  State = "installing"
	StateInstalled   State = "installed"
	StateFailed      State = "failed"
	StateRolledBack  State = "rolled-back"
	// StateDeferred: the device says "not now" (see Client.Defer); not an
	// outcome, and the rollout's device timeout does not run while the
	// deferral lasts (up to the rollout's max deferral).
	StateDeferred State = "deferred"
)

// Valid reports whether s is one of the protocol's states.
func (s State) Valid() bool {
	switch s {
	case StateDownloading, StateDownloaded, StateInstalling, StateInstalled, StateFailed, StateRolledBack, StateDeferred:
		return true
	}
	return false
}

// Report is one status report. The device ID comes from the client.
type Report struct {
	Target    string `json:"target"`
	Version   string `json:"version"`
	State     State  `json:"state"`
	ErrorCode string `json:"error_code,omitempty"`
	Message   string `json:"message,omitempty"`
	RolloutID string `json:"rollout_id,omitempty"`
	// DeferUntil is set for StateDeferred only: until when the device asks
	// to be left alone.
	DeferUntil *time.Time `json:"defer_until,omitempty"`
	// Download ("delta" or "full") and Bytes say, for StateDownloaded and
	// StateInstalled, how the image came and the bytes transferred. Report
	// fills them from LastDownload when they are empty and the last
	// download was of r's target, so rollouts can count delta and full
	// bytes per wave (the server may not see the bytes: a CDN serves them).
	Download string `json:"download,omitempty"`
	Bytes    int64  `json:"bytes,omitempty"`
}

// Defer tells the server that the device will not install upd now, why
// (reason, e.g. "therapy in progress"; required) and until when. The
// server counts the device as deferred, neither failed nor silent, until
// then, but never past the rollout's max deferral. The device asks again
// (Check) after until and installs or defers again. The report is queued
// and delivered like Report's.
func (c *Client) Defer(ctx context.Context, upd *Update, reason string, until time.Time) error {
	if strings.TrimSpace(reason) == "" {
		return errors.New("defer: a reason is required")
	}
	if until.IsZero() {
		return errors.New("defer: an until time is required")
	}
	r := NewReport(upd, StateDeferred, nil)
	r.Message = truncate(reason, 1024)
	u := until.UTC()
	r.DeferUntil = &u
	return c.Report(ctx, r)
}

// NewReport returns a report of state for upd; a non-nil err fills
// ErrorCode (see ErrorCode) and Message.
func NewReport(upd *Update, state State, err error) Report {
	r := Report{State: state}
	if upd != nil {
		r.Target, r.Version, r.RolloutID = upd.Target, upd.Version, upd.RolloutID
	}
	if err != nil {
		r.ErrorCode = ErrorCode(err)
		r.Message = truncate(err.Error(), 1024)
	}
	return r
}

// ErrorCode returns the stable code of err's class for a status report:
// "not_signed", "wrong_hardware", "not_newer", "length_mismatch",
// "hash_mismatch", "server", "unreachable", "canceled", or "internal" for
// anything else. TUF metadata that failed verification (ErrMetadata) has
// a finer code: "metadata_rollback" (a version older than one already
// trusted), "metadata_expired" (expired under the client's clock: a freeze
// attack, or a repository that was not refreshed), "metadata_signature"
// (signatures below the threshold), "metadata_oversized" (a file over its
// length limit or the length the referring role signs), or "metadata".
func ErrorCode(err error) string {
	if code := deltaCode(err); code != "" {
		return code
	}
	if errors.Is(err, ErrMetadata) {
		return metadataCode(err)
	}
	for _, c := range []struct {
		err  error
		code string
	}{
		{ErrNotSigned, "not_signed"},
		{ErrWrongHardware, "wrong_hardware"},
		{ErrNotNewer, "not_newer"},
		{ErrLengthMismatch, "length_mismatch"},
		{ErrHashMismatch, "hash_mismatch"},
		{ErrMetadata, "metadata"},
		{ErrServer, "server"},
		{ErrUnreachable, "unreachable"},
		{context.Canceled, "canceled"},
		{context.DeadlineExceeded, "canceled"},
	} {
		if errors.Is(err, c.err) {
			return c.code
		}
	}
	return "internal"
}

// metadataCode names the kind of a TUF metadata verification failure.
func metadataCode(err error) string {
	switch {
	case errors.Is(err, &metadata.ErrBadVersionNumber{}):
		return "metadata_rollback"
	case errors.Is(err, &metadata.ErrExpiredMetadata{}):
		return "metadata_expired"
	case errors.Is(err, &metadata.ErrUnsignedMetadata{}):
		return "metadata_signature"
	case errors.Is(err, &metadata.ErrDownloadLengthMismatch{}), errors.Is(err, &metadata.ErrLengthOrHashMismatch{}):
		return "metadata_oversized"
	}
	return "metadata"
}

// wireReport is the JSON body of POST /api/v1/device/status.
type wireReport struct {
	DeviceID string `json:"device_id"`
	Report
}

// ErrReportPending: the report is saved in the state dir but not delivered
// yet; Flush (and every Check) retries it, also after a restart. The
// delivery error stays in the chain.
var ErrReportPending = errors.New("status report pending")

// maxQueued bounds the on-disk report queue; the oldest reports are dropped
// beyond it.
const maxQueued = 1000

// Report saves r in the on-disk queue (StateDir/reports), then tries to
// deliver every queued report, oldest first, to POST /api/v1/device/status.
// It returns nil when all were delivered. When delivery fails the error
// wraps ErrReportPending together with the cause (ErrServer,
// ErrUnreachable...): the report is safe on disk and a later Flush or
// Check sends it, across restarts. Delivery is at least once: a crash just
// after a delivery may send a report again. Safe for concurrent use.
func (c *Client) Report(ctx context.Context, r Report) error {
	if !r.State.Valid() {
		return fmt.Errorf("report: invalid state %q", r.State)
	}
	if r.Download == "" && (r.State == StateDownloaded || r.State == StateInstalled) {
		if last := c.LastDownload(); last.Target != "" && last.Target == r.Target {
			r.Download, r.Bytes = last.Path(), last.Bytes
		}
	}
	body, err := json.Marshal(wireReport{DeviceID: c.cfg.DeviceID, Report: r})
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	c.queueMu.Lock()
	defer c.queueMu.Unlock()
	if err := c.enqueue(body); err != nil {
		return fmt.Errorf("report %s %s: %w", r.Target, r.State, err)
	}
	if err := c.flush(ctx, false); err != nil {
		return fmt.Errorf("report %s %s: %w: %w", r.Target, r.State, ErrReportPending, err)
	}
	return nil
}

// Flush delivers the queued reports, oldest first, retrying temporary
// failures under the client's RetryPolicy. It stops at the first report
// that cannot be delivered and returns that error; a report the server
// refuses as malformed (400, 404, 409, 413, 422) is dropped and logged.
// Safe for concurrent use.
func (c *Client) Flush(ctx context.Context) error {
	c.queueMu.Lock()
	defer c.queueMu.Unlock()
	if err := c.flush(ctx, true); err != nil {
		return fmt.Errorf("flush reports: %w", err)
	}
	return nil
}

// Pending returns the number of queued, undelivered reports.
func (c *Client) Pending() (int, error) {
	c.queueMu.Lock()
	defer c.queueMu.Unlock()
	names, err := c.queued()
	return len(names), err
}

func (c *Client) queueDir() string { return filepath.Join(c.cfg.StateDir, "reports") }

// queued lists the queue's files, oldest first.
func (c *Client) queued() ([]string, error) {
	entries, err := os.ReadDir(c.queueDir())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read report queue: %w", err)
	}
	var names []string
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".json") && !strings.HasPrefix(e.Name(), ".") {
			names = append(names, e.Name())
		}
	}
	slices.Sort(names)
	return names, nil
}

// enqueue writes one report atomically under a name that sorts by time.
func (c *Client) enqueue(body []byte) error {
	if err := os.MkdirAll(c.queueDir(), 0o700); err != nil {
		return fmt.Errorf("report queue: %w", err)
	}
	names, err := c.queued()
	if err != nil {
		return err
	}
	for len(names) >= maxQueued {
		c.log.Warn("report queue full; dropping the oldest report", "file", names[0])
		_ = os.Remove(filepath.Join(c.queueDir(), names[0]))
		names = names[1:]
	}
	seq := time.Now().UnixNano()
	if len(names) > 0 {
		// Keep the order even if the clock went backwards.
		var last int64
		if _, err := fmt.Sscanf(names[len(names)-1], "%d.json", &last); err == nil && last >= seq {
			seq = last + 1
		}
	}
	name := filepath.Join(c.queueDir(), fmt.Sprintf("%020d.json", seq))
	if err := writeFileAtomic(name, body); err != nil {
		return fmt.Errorf("report queue: %w", err)
	}
	return nil
}

// flush sends queued reports in order; with retry it applies the retry
// policy to each.
func (c *Client) flush(ctx context.Context, retry bool) error {
	names, err := c.queued()
	if err != nil {
		return err
	}
	for _, name := range names {
		p := filepath.Join(c.queueDir(), name)
		body, err := os.ReadFile(p)
		if err != nil {
			return fmt.Errorf("read queued report: %w", err)
		}
		send := func(ctx context.Context) error { return c.postReport(ctx, body) }
		if retry {
			err = c.retry(ctx, "report", send)
		} else {
			err = send(ctx)
		}
		var se *ServerError
		switch {
		case err == nil:
		case errors.As(err, &se) && refusedForGood(se.Status):
			c.log.Warn("server refused a status report; dropping it", "status", se.Status, "code", se.Code, "message", se.Message)
		default:
			return err
		}
		if err := os.Remove(p); err != nil {
			return fmt.Errorf("remove delivered report: %w", err)
		}
	}
	return nil
}

// refusedForGood reports whether a status means the report itself is bad,
// so sending it again cannot succeed.
func refusedForGood(status int) bool {
	switch status {
	case http.StatusBadRequest, http.StatusNotFound, http.StatusConflict, http.StatusRequestEntityTooLarge, http.StatusUnprocessableEntity:
		return true
	}
	return false
}

func (c *Client) postReport(ctx context.Context, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url("/api/v1/device/status"), bytes.NewReader(body))
	if err != nil {
		return err
	}
	c.authorize(req)
	req.Header.Set("Content-Type", "application/json")
	res, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrUnreachable, err)
	}
	defer res.Body.Close()
	if res.StatusCode/100 != 2 {
		return serverError("report", res)
	}
	drain(res.Body)
	return nil
}

// maxRetryAfter bounds what a server's Retry-After can ask for.
const maxRetryAfter = 24 * time.Hour

// parseRetryAfter reads a Retry-After header (seconds or an HTTP date),
// at most maxRetryAfter (a huge value must not overflow into a negative
// duration).
func parseRetryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseInt(v, 10, 64); err == nil && s >= 0 {
		if s >= int64(maxRetryAfter/time.Second) {
			return maxRetryAfter
		}
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := time.Until(t); d > 0 {
			return min(d, maxRetryAfter)
		}
	}
	return 0
}
