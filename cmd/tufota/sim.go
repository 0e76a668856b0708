package main

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

// simDevice is one simulated device: the real client package against a real
// server, with an image file standing in for the flash.
type simDevice struct {
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

// errSimulated is the install failure a device with Fail makes up: an
// expected outcome, not an error of the run.
var errSimulated = errors.New("simulated install failure")

// simResult is what one device ended with.
type simResult struct {
	ID       string `json:"id"`
	Hardware string `json:"hardware"`
	Version  string `json:"version"`
	Status   string `json:"status"`
	Error    string `json:"error,omitempty"`
}

// simFleet carries what all simulated devices share.
type simFleet struct {
	serverURL string
	root      []byte
	http      *http.Client
	log       *slog.Logger
	// stats, when set, counts what the devices did (see countRequests);
	// nil counts nothing.
	stats *simStats
}

// deviceClient returns d's client, made for its current version.
func (f *simFleet) deviceClient(d *simDevice) (*client.Client, error) {
	if d.client != nil && d.clientVersion == d.Version {
		return d.client, nil
	}
	c, err := client.New(client.Config{
		ServerURL: f.serverURL, TrustedRoot: f.root, StateDir: d.StateDir,
		DeviceID: d.ID, Token: d.Token, HardwareID: d.Hardware, CurrentVersion: d.Version,
		HTTPClient: f.http, Logger: f.log,
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
func (f *simFleet) poll(ctx context.Context, d *simDevice) (string, error) {
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
		return "failed", errSimulated
	}
	// The simulated boot and health check pass: the device now runs it.
	d.Version = upd.Version
	if err := report(client.StateInstalled, nil); err != nil {
		// Queued: the next poll delivers it.
		return "installed", fmt.Errorf("report: %w", err)
	}
	return "installed", nil
}

// runOnce polls every device once, at most 16 at a time, and returns their
// results in device order.
func (f *simFleet) runOnce(ctx context.Context, devs []*simDevice) []simResult {
	out := make([]simResult, len(devs))
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
func (d *simDevice) pollOnce(ctx context.Context, f *simFleet) simResult {
	if d.done != "" {
		return simResult{ID: d.ID, Hardware: d.Hardware, Version: d.Version, Status: d.done, Error: d.lastErr}
	}
	st, err := f.poll(ctx, d)
	f.stats.cycle(err)
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
	return simResult{ID: d.ID, Hardware: d.Hardware, Version: d.Version, Status: st, Error: d.lastErr}
}

// runUntil polls every device every interval until stop reports true or
// ctx ends, and returns the last results.
func (f *simFleet) runUntil(ctx context.Context, devs []*simDevice, every time.Duration, stop func(context.Context) bool) []simResult {
	var last []simResult
	for {
		last = f.runOnce(ctx, devs)
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

// newSimDevices prepares n devices with state dirs under dir; exactly
// round(n*failRate) of them fail their install and round(n*silentRate) go
// silent, chosen by a seeded shuffle so runs repeat.
func newSimDevices(dir, prefix, hw, version string, n int, failRate, silentRate float64, seed uint64) ([]*simDevice, error) {
	devs := make([]*simDevice, n)
	for i := range devs {
		d := &simDevice{ID: fmt.Sprintf("%s-%04d", prefix, i+1), Hardware: hw, Version: version}
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
