package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"
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
)

// Valid reports whether s is one of the protocol's states.
func (s State) Valid() bool {
	switch s {
	case StateDownloading, StateDownloaded, StateInstalling, StateInstalled, StateFailed, StateRolledBack:
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
// "hash_mismatch", "metadata", "server", "unreachable", "canceled", or
// "internal" for anything else.
func ErrorCode(err error) string {
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

// wireReport is the JSON body of POST /api/v1/device/status.
type wireReport struct {
	DeviceID string `json:"device_id"`
	Report
}

// Report sends r to POST /api/v1/device/status, retrying temporary
// failures under the client's RetryPolicy. Errors: ErrServer when the
// server refuses it, ErrUnreachable when it cannot be delivered. Safe for
// concurrent use.
func (c *Client) Report(ctx context.Context, r Report) error {
	if !r.State.Valid() {
		return fmt.Errorf("report: invalid state %q", r.State)
	}
	body, err := json.Marshal(wireReport{DeviceID: c.cfg.DeviceID, Report: r})
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	err = c.retry(ctx, "report", func(ctx context.Context) error {
		return c.postReport(ctx, body)
	})
	if err != nil {
		return fmt.Errorf("report %s %s: %w", r.Target, r.State, err)
	}
	return nil
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

// parseRetryAfter reads a Retry-After header (seconds or an HTTP date).
func parseRetryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := time.Until(t); d > 0 {
			return d
		}
	}
	return 0
}
