package client

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/tufota/tufota"
)

const (
	metadataDir = "metadata"
	// maxAnswer bounds the JSON bodies the client reads from the API.
	maxAnswer = 64 << 10
)

// Update is an update the server offered and the TUF metadata verified:
// everything in it except RolloutID comes from signed metadata.
type Update struct {
	// Target is the TUF target path, NAME/VERSION/FILE.
	Target string
	// Name and Version are the release's, from the signed custom metadata.
	Name, Version string
	// Length is the image's signed length in bytes.
	Length int64
	// Hashes are the signed hashes, algorithm ("sha256", "sha512") to
	// lowercase hex.
	Hashes map[string]string
	// Custom is the signed tufota custom metadata of the target.
	Custom tufota.TargetCustom
	// RolloutID is the server's rollout that offered the update, if any;
	// it is not signed and is only echoed back in reports.
	RolloutID string
	// Required is set once the rollout's deadline has passed: the update
	// is no longer optional (an agent that defers optional updates should
	// install it). Deadline is that deadline, zero if none. Neither is
	// signed: they tell the agent when, never what, to install.
	Required bool
	Deadline time.Time
}

// offer is the device endpoint's answer.
type offer struct {
	Target    string     `json:"target"`
	Name      string     `json:"name"`
	Version   string     `json:"version"`
	RolloutID string     `json:"rollout_id"`
	Required  bool       `json:"required"`
	Deadline  *time.Time `json:"deadline"`
}

// Check asks the server whether the device should update, and verifies the
// answer against freshly refreshed TUF metadata. It returns nil, nil when
// there is nothing to do.
//
// Errors: ErrServer or ErrUnreachable when the question fails; ErrMetadata
// when the TUF metadata does not verify; ErrNotSigned, ErrWrongHardware or
// ErrNotNewer when the offered target breaks the policy. Each of these
// refusals is also queued as a "failed" status report on the offered
// target (ErrorCode gives its code), delivered at once if the server
// answers: a device under a rollback or freeze attack tells its operators.
// It first tries to deliver queued status reports. The context bounds
// every request.
// Concurrent calls are serialised.
func (c *Client) Check(ctx context.Context) (*Update, error) {
	c.checkMu.Lock()
	defer c.checkMu.Unlock()
	c.queueMu.Lock()
	if err := c.flush(ctx, false); err != nil {
		c.log.Warn("status reports still pending", "err", err)
	}
	c.queueMu.Unlock()
	o, err := c.askServer(ctx)
	if err != nil || o == nil {
		return nil, err
	}
	upd, err := c.verifyOffer(ctx, o)
	if err != nil {
		c.reportRefusal(ctx, o, err)
		return nil, err
	}
	c.log.Info("update verified", "target", upd.Target, "version", upd.Version, "length", upd.Length)
	return upd, nil
}

// verifyOffer checks the offer against freshly refreshed TUF metadata and
// the device's policy.
func (c *Client) verifyOffer(ctx context.Context, o *offer) (*Update, error) {
	tf, err := c.verifyTarget(ctx, o.Target)
	if err != nil {
		return nil, err
	}
	return c.applyPolicy(o, tf)
}

// reportRefusal queues a failed status report when Check refused an offer
// on verification grounds (metadata that does not verify, a target that is
// not signed, or one the policy refuses), so that operators learn of what
// may be an attack. The report names the offered target and rollout, like
// a failed download, and is delivered now or by a later Check or Flush.
// Network and server failures are not reported: they are not the device's
// verdict.
func (c *Client) reportRefusal(ctx context.Context, o *offer, err error) {
	refused := false
	for _, class := range []error{ErrMetadata, ErrNotSigned, ErrWrongHardware, ErrNotNewer} {
		refused = refused || errors.Is(err, class)
	}
	if !refused {
		return
	}
	r := NewReport(&Update{Target: o.Target, Version: o.Version, RolloutID: o.RolloutID}, StateFailed, err)
	c.log.Warn("update refused; reporting it", "target", o.Target, "code", r.ErrorCode, "err", err)
	if rerr := c.Report(ctx, r); rerr != nil {
		c.log.Warn("refusal report not delivered yet", "err", rerr)
	}
}

// askServer asks GET /api/v1/device/update. It returns nil, nil on 204.
func (c *Client) askServer(ctx context.Context) (*offer, error) {
	q := url.Values{}
	q.Set("device_id", c.cfg.DeviceID)
	q.Set("hardware", c.cfg.HardwareID)
	if v := c.CurrentVersion(); v != "" {
		q.Set("version", v)
	}
	u := c.url("/api/v1/device/update") + "?" + q.Encode()
	var o *offer
	err := c.retry(ctx, "check", func(ctx context.Context) error {
		var err error
		o, err = c.askOnce(ctx, u)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("check: %w", err)
	}
	return o, nil
}

func (c *Client) askOnce(ctx context.Context, u string) (*offer, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	c.authorize(req)
	req.Header.Set("Accept", "application/json")
	res, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("ask for update: %w: %w", ErrUnreachable, err)
	}
	defer res.Body.Close()
	switch res.StatusCode {
	case http.StatusNoContent:
		return nil, nil
	case http.StatusOK:
	default:
		return nil, serverError("ask for update", res)
	}
	body, err := io.ReadAll(io.LimitReader(res.Body, maxAnswer+1))
	if err != nil {
		return nil, fmt.Errorf("ask for update: read answer: %w: %w", ErrUnreachable, err)
	}
	return parseOffer(body)
}

// parseOffer decodes and validates the device endpoint's 200 answer.
func parseOffer(body []byte) (*offer, error) {
	bad := func(format string, args ...any) (*offer, error) {
		return nil, fmt.Errorf("update answer: %w: %s", ErrServer, fmt.Sprintf(format, args...))
	}
	if len(body) > maxAnswer {
		return bad("body exceeds %d bytes", maxAnswer)
	}
	var o offer
	if err := json.Unmarshal(body, &o); err != nil {
		return bad("%v", err)
	}
	parts := strings.Split(o.Target, "/")
	if len(parts) != 3 {
		return bad("target %.80q is not NAME/VERSION/FILE", o.Target)
	}
	if err := tufota.ValidateName("release name", parts[0]); err != nil {
		return bad("target %.80q: %v", o.Target, err)
	}
	if _, err := tufota.ParseVersion(parts[1]); err != nil {
		return bad("target %.80q: %v", o.Target, err)
	}
	if err := tufota.ValidateName("file name", parts[2]); err != nil {
		return bad("target %.80q: %v", o.Target, err)
	}
	if o.Name != parts[0] || o.Version != parts[1] {
		return bad("name %.80q and version %.80q do not match target %q", o.Name, o.Version, o.Target)
	}
	if len(o.RolloutID) > 128 {
		return bad("rollout_id longer than 128 bytes")
	}
	return &o, nil
}

// serverError builds a *ServerError from an unexpected answer, reading
// tufota's {"error":{"code","message"}} body when there is one.
func serverError(op string, res *http.Response) error {
	e := &ServerError{Op: op, Status: res.StatusCode, RetryAfter: parseRetryAfter(res.Header.Get("Retry-After"))}
	body, _ := io.ReadAll(io.LimitReader(res.Body, 8<<10))
	var eb struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &eb) == nil {
		e.Code = truncate(eb.Error.Code, 64)
		e.Message = truncate(eb.Error.Message, 512)
	}
	return e
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// verifyTarget refreshes the TUF metadata and returns the signed target
// at path.
func (c *Client) verifyTarget(ctx context.Context, path string) (*Target, error) {
	if err := c.repo.Refresh(ctx); err != nil {
		return nil, fmt.Errorf("check: %w", err)
	}
	t, err := c.repo.Target(ctx, path)
	if err != nil {
		return nil, fmt.Errorf("check: %w", err)
	}
	return t, nil
}

// newerRoot returns whichever of the cached and the configured root has the
// higher version; a cached root that does not parse is ignored.
func newerRoot(cached, configured []byte) []byte {
	cr, err := metadata.Root().FromBytes(cached)
	if err != nil {
		return configured
	}
	fr, err := metadata.Root().FromBytes(configured)
	if err != nil || cr.Signed.Version > fr.Signed.Version {
		return cached
	}
	return configured
}

// applyPolicy checks the verified target against the offer and the
// device, and builds the Update.
func (c *Client) applyPolicy(o *offer, tf *Target) (*Update, error) {
	if tf.Custom == nil {
		return nil, fmt.Errorf("check: %w: %s carries no tufota metadata", ErrNotSigned, o.Target)
	}
	custom, err := tufota.UnmarshalCustom(tf.Custom)
	if err != nil {
		return nil, fmt.Errorf("check: %w: %s: %w", ErrNotSigned, o.Target, err)
	}
	if custom.Name != o.Name || custom.Version != o.Version {
		return nil, fmt.Errorf("check: %w: %s is signed as %s %s", ErrNotSigned, o.Target, custom.Name, custom.Version)
	}
	if !custom.SupportsHardware(c.cfg.HardwareID) {
		return nil, fmt.Errorf("check: %w: %s supports %q, device is %q", ErrWrongHardware, o.Target, custom.Hardware, c.cfg.HardwareID)
	}
	if cur := c.CurrentVersion(); cur != "" {
		cmp, err := tufota.CompareVersions(custom.Version, cur)
		if err != nil {
			return nil, fmt.Errorf("check: compare versions: %w", err)
		}
		if cmp <= 0 && !slices.Contains(custom.AllowDowngradeFrom, cur) {
			return nil, fmt.Errorf("check: %w: %s is not newer than installed %s", ErrNotNewer, custom.Version, cur)
		}
	}
	if tf.Length < 0 {
		return nil, fmt.Errorf("check: %w: %s has negative length", ErrMetadata, o.Target)
	}
	if len(tf.Hashes["sha256"]) != 2*sha256.Size {
		return nil, fmt.Errorf("check: %w: %s has no sha256 hash", ErrMetadata, o.Target)
	}
	return &Update{
		Target:    o.Target,
		Name:      custom.Name,
		Version:   custom.Version,
		Length:    tf.Length,
		Hashes:    tf.Hashes,
		Custom:    custom,
		RolloutID: o.RolloutID,
		Required:  o.Required,
		Deadline:  deadlineOf(o.Deadline),
	}, nil
}

func deadlineOf(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.UTC()
}
