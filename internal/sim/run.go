package sim

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/apiclient"
)

// Options are the settings of a run (`tufota sim` flags).
type Options struct {
	EnrollToken       string
	Root              string
	Devices           int
	Hardware          string
	Version           string
	Prefix            string
	FailRate          float64
	SilentRate        float64
	Poll              time.Duration
	Jitter            float64
	Duration          time.Duration
	Seed              uint64
	Concurrency       int
	MaxConns          int
	EnrollConcurrency int
	Rollouts          []string
	PerDevice         bool
	WorkDir           string
}

// Check refuses settings outside their range.
func (o Options) Check() error {
	switch {
	case o.Devices < 1 || o.Devices > 100000:
		return tufota.Errorf(tufota.EInvalid, "sim: --devices %d: want 1 to 100000", o.Devices)
	case o.FailRate < 0 || o.FailRate > 1 || o.SilentRate < 0 || o.SilentRate > 1 || o.FailRate+o.SilentRate > 1:
		return tufota.Errorf(tufota.EInvalid, "sim: --failure-rate and --silent-rate must be within 0..1 and add up to at most 1")
	case o.Poll <= 0 || o.Duration <= 0:
		return tufota.Errorf(tufota.EInvalid, "sim: --poll and --duration must be positive")
	case o.Jitter < 0 || o.Jitter > 1:
		return tufota.Errorf(tufota.EInvalid, "sim: --jitter %g: want 0 to 1", o.Jitter)
	case o.Concurrency < 1 || o.Concurrency > 10000, o.MaxConns < 1 || o.MaxConns > 10000, o.EnrollConcurrency < 1 || o.EnrollConcurrency > 1000:
		return tufota.Errorf(tufota.EInvalid, "sim: --concurrency and --max-conns must be within 1..10000, --enroll-concurrency within 1..1000")
	}
	return nil
}

// Run makes o.Devices devices in a new directory under o.WorkDir (removed
// at the end), enrolls them with o.EnrollToken, polls for o.Duration
// through one transport of at most o.MaxConns connections, delivers the
// reports still queued, and summarises the run; with admin (a client that
// may read rollouts and the fleet report) it compares the devices with
// the server's counts. The summary is judged (Summary.OK).
func Run(ctx context.Context, o Options, serverURL string, root []byte, hc *http.Client, admin *apiclient.Client, log *slog.Logger) (Summary, []Result, error) {
	work, err := os.MkdirTemp(o.WorkDir, "tufota-sim-")
	if err != nil {
		return Summary{}, nil, fmt.Errorf("sim: %w", err)
	}
	defer os.RemoveAll(work)
	devs, err := NewDevices(work, o.Prefix, o.Hardware, o.Version, o.Devices, o.FailRate, o.SilentRate, o.Seed)
	if err != nil {
		return Summary{}, nil, fmt.Errorf("sim: %w", err)
	}
	stats := NewStats()
	tr := DeviceTransport(hc, o.MaxConns)
	defer tr.CloseIdleConnections()
	shared := &http.Client{Transport: stats.CountRequests(tr)}

	enroller := apiclient.New(serverURL, o.EnrollToken, apiclient.WithHTTPClient(&http.Client{Transport: tr}))
	t0 := time.Now()
	if err := EnrollParallel(ctx, enroller, devs, o.EnrollConcurrency); err != nil {
		return Summary{}, nil, fmt.Errorf("sim: %w", err)
	}
	enrollTook := time.Since(t0)
	log.Info("sim: enrolled", "devices", len(devs), "seconds", enrollTook.Seconds(), "per_second", float64(len(devs))/enrollTook.Seconds())

	fleet := &Fleet{ServerURL: serverURL, Root: root, HTTP: shared, Log: slog.New(slog.DiscardHandler), Stats: stats}
	t1 := time.Now()
	stats.Begin(t1)
	results := fleet.RunLoad(ctx, devs, Load{Every: o.Poll, Jitter: o.Jitter, Duration: o.Duration, Workers: o.Concurrency, Seed: o.Seed})
	runTook := time.Since(t1)
	log.Info("sim: polls done; delivering queued reports", "seconds", runTook.Seconds())
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	unacked := FlushReports(fctx, devs, o.Concurrency)
	cancel()

	sum := stats.Summarize(len(devs), enrollTook, runTook)
	sum.Unacknowledged = unacked
	var diffs []string
	if admin != nil {
		if diffs, err = CompareWithServer(ctx, admin, stats, devs, o.Rollouts, &sum); err != nil {
			return Summary{}, nil, fmt.Errorf("sim: read the server's counts: %w", err)
		}
		sum.Compared = true
	} else {
		log.Warn("sim: no --token: the server's counts are not compared")
	}
	sum.Judge(diffs)
	return sum, results, nil
}
