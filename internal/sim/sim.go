// Package sim is tufota's fleet simulator: devices built on the real
// device library (client) against a real server, each with an image file
// standing in for its flash, polling on a schedule, installing what they
// are offered (or failing, or going silent, as told), and counting from
// the wire what they did, so that a run can be compared with the server's
// own counts. `tufota sim`, the quickstart and the end-to-end tests drive
// it; bench/fleet records its summary.
package sim

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	mrand "math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/tufota/tufota/client"
)

// Device is one simulated device: the real client package against a real
// server, with an image file standing in for the flash.
type Device struct {
	ID       string
	Hardware string
	Version  string
	Token    string
	StateDir string
	// Fail makes installs fail (reported as failed with error code
	// "install_failed"); Silent makes the device go quiet after it started
	// downloading.
	Fail, Silent bool

	done      string // "failed" or "silent" once the device stopped
	installed bool
	lastErr   string

	// client is kept between polls (one per device, made again when the
	// device's version changes), so that a poll costs requests, not a
	// reading of the device's state directory.
	client        *client.Client
	clientVersion string
}

// ErrSimulated is the install failure a device with Fail makes up: an
// expected outcome, not an error of the run.
var ErrSimulated = errors.New("simulated install failure")

// Result is what one device ended with.
type Result struct {
	ID       string `json:"id"`
	Hardware string `json:"hardware"`
	Version  string `json:"version"`
	Status   string `json:"status"`
	Error    string `json:"error,omitempty"`
}

// Fleet carries what all simulated devices share.
type Fleet struct {
	ServerURL string
	Root      []byte // the trust anchor, root.json
	HTTP      *http.Client
	Log       *slog.Logger
	// Stats, when set, counts what the devices did (see CountRequests);
	// nil counts nothing.
	Stats *Stats
}

// deviceClient returns d's client, made for its current version.
func (f *Fleet) deviceClient(d *Device) (*client.Client, error) {
	if d.client != nil && d.clientVersion == d.Version {
		return d.client, nil
	}
	c, err := client.New(client.Config{
		ServerURL: f.ServerURL, TrustedRoot: f.Root, StateDir: d.StateDir,
		DeviceID: d.ID, Token: d.Token, HardwareID: d.Hardware, CurrentVersion: d.Version,
		HTTPClient: f.HTTP, Logger: f.Log,
	})
	if err != nil {
		return nil, fmt.Errorf("device %s: %w", d.ID, err)
	}
	d.client, d.clientVersion = c, d.Version
	return c, nil
}

// poll runs one check-download-install-report cycle. It returns the state
// the device ended in: "current" (nothing to do), "installed", "failed"
// (the download or the install failed, and the device reported it: final
// for this update), "silent", or "error" (the check or a report did not get
// through; the device tries again at its next poll, and a report that was
// not delivered stays in its queue until then).
func (f *Fleet) poll(ctx context.Context, d *Device) (string, error) {
	c, err := f.deviceClient(d)
	if err != nil {
		return "error", err
	}
	upd, err := c.Check(ctx)
	if err != nil {
		return "error", fmt.Errorf("check: %w", err)
	}
	if upd == nil {
		return "current", nil
	}
	report := func(state client.State, cause error) error {
		return c.Report(ctx, client.NewReport(upd, state, cause))
	}
	if err := report(client.StateDownloading, nil); err != nil {
		return "error", fmt.Errorf("report: %w", err)
	}
	if d.Silent {
		return "silent", nil
	}
	image := filepath.Join(d.StateDir, "image.bin")
	if err := c.Download(ctx, upd, image); err != nil {
		_ = report(client.StateFailed, err)
		return "failed", fmt.Errorf("download: %w", err)
	}
	if err := report(client.StateDownloaded, nil); err != nil {
		return "error", fmt.Errorf("report: %w", err)
	}
	if err := report(client.StateInstalling, nil); err != nil {
		return "error", fmt.Errorf("report: %w", err)
	}
	if d.Fail {
		r := client.NewReport(upd, client.StateFailed, nil)
		r.ErrorCode, r.Message = "install_failed", "simulated: health check failed after boot"
		if err := c.Report(ctx, r); err != nil {
			// Queued: the next poll delivers it.
			return "failed", fmt.Errorf("report: %w", err)
		}
		return "failed", ErrSimulated
	}
	// The simulated boot and health check pass: the device now runs it.
	d.Version = upd.Version
	if err := report(client.StateInstalled, nil); err != nil {
		// Queued: the next poll delivers it.
		return "installed", fmt.Errorf("report: %w", err)
	}
	return "installed", nil
}

// RunOnce polls every device once, at most 16 at a time, and returns their
// results in device order.
func (f *Fleet) RunOnce(ctx context.Context, devs []*Device) []Result {
	out := make([]Result, len(devs))
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for i, d := range devs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			out[i] = d.pollOnce(ctx, f)
		}()
	}
	wg.Wait()
	return out
}

// pollOnce polls unless the device already finished (failed or silent
// devices stay that way, as real ones would until serviced).
func (d *Device) pollOnce(ctx context.Context, f *Fleet) Result {
	if d.done != "" {
		return Result{ID: d.ID, Hardware: d.Hardware, Version: d.Version, Status: d.done, Error: d.lastErr}
	}
	st, err := f.poll(ctx, d)
	f.Stats.cycle(err)
	if st == "failed" || st == "silent" {
		d.done = st
	}
	d.lastErr = ""
	if err != nil {
		d.lastErr = err.Error()
	}
	if st == "current" && d.installed {
		st = "installed"
	}
	if st == "installed" {
		d.installed = true
	}
	return Result{ID: d.ID, Hardware: d.Hardware, Version: d.Version, Status: st, Error: d.lastErr}
}

// RunUntil polls every device every interval until stop reports true or
// ctx ends, and returns the last results.
func (f *Fleet) RunUntil(ctx context.Context, devs []*Device, every time.Duration, stop func(context.Context) bool) []Result {
	var last []Result
	for {
		last = f.RunOnce(ctx, devs)
		if stop(ctx) || ctx.Err() != nil {
			return last
		}
		select {
		case <-ctx.Done():
			return last
		case <-time.After(every):
		}
	}
}

// NewDevices prepares n devices with state dirs under dir; exactly
// round(n*failRate) of them fail their install and round(n*silentRate) go
// silent, chosen by a seeded shuffle so runs repeat.
func NewDevices(dir, prefix, hw, version string, n int, failRate, silentRate float64, seed uint64) ([]*Device, error) {
	devs := make([]*Device, n)
	for i := range devs {
		d := &Device{ID: fmt.Sprintf("%s-%04d", prefix, i+1), Hardware: hw, Version: version}
		d.StateDir = filepath.Join(dir, d.ID)
		if err := os.MkdirAll(d.StateDir, 0o700); err != nil {
			return nil, err
		}
		devs[i] = d
	}
	perm := mrand.New(mrand.NewPCG(seed, 0x7475666f7461)).Perm(n) // #nosec G404 -- a repeatable simulation choice, not a secret
	nFail := int(math.Round(float64(n) * failRate))
	nSilent := int(math.Round(float64(n) * silentRate))
	for k, i := range perm {
		switch {
		case k < nFail:
			devs[i].Fail = true
		case k < nFail+nSilent:
			devs[i].Silent = true
		}
	}
	return devs, nil
}
