package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/apiclient"
	"github.com/tufota/tufota/internal/sim"
)

func (a *app) simCommand() *cobra.Command {
	var o sim.Options
	cmd := &cobra.Command{
		Use:   "sim --server URL --enroll-token TOKEN --root root.json --devices N --hardware HW --current-version V",
		Short: "Simulate a fleet: N devices on the real client package against a running server",
		Long: `sim enrolls N devices with a bulk enrollment token (tufota device enroll-token),
--enroll-concurrency at a time, then polls each on its own schedule (every --poll,
jittered by --jitter, the first poll spread over the first interval) with the real
client package: check, download, verify, install, report. At most --concurrency
polls run at once, over one shared HTTP transport with at most --max-conns
connections to the server. --failure-rate makes that share of devices fail their
install; --silent-rate makes that share go quiet after accepting the update.

It starts polls for --duration, lets the running ones finish, delivers every
status report still queued on a device, and prints its own counts: polls, their
answers and p50/p99 latency, errors by kind, reports sent and acknowledged per
state. With --token (a role that may read rollouts and the fleet report) it then
compares, device by device, each device's last acknowledged state in every rollout
that offered it something (and each --rollout) with the server's rollout history,
and what each device runs with the fleet report. It exits non-zero when any
request or device cycle failed, a report stayed undelivered, or the server's
counts differ from the simulator's.`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.sim(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.EnrollToken, "enroll-token", "", "bulk enrollment token (required)")
	f.StringVar(&o.Root, "root", "", "trusted root.json (required)")
	f.IntVar(&o.Devices, "devices", 10, "number of devices")
	f.StringVar(&o.Hardware, "hardware", "", "hardware ID the devices report (must match the enrollment token's)")
	f.StringVar(&o.Version, "current-version", "1.0.0", "firmware version the devices start on")
	f.StringVar(&o.Prefix, "id-prefix", "sim", "device IDs are PREFIX-0001...")
	f.Float64Var(&o.FailRate, "failure-rate", 0, "share of devices whose install fails (0 to 1)")
	f.Float64Var(&o.SilentRate, "silent-rate", 0, "share of devices that go silent after accepting (0 to 1)")
	f.DurationVar(&o.Poll, "poll", time.Second, "poll interval of each device")
	f.Float64Var(&o.Jitter, "jitter", 0.1, "each interval is --poll × (1 ± jitter), uniformly (0 to 1)")
	f.DurationVar(&o.Duration, "duration", time.Minute, "how long to start polls")
	f.Uint64Var(&o.Seed, "seed", 1, "seed of the choice of failing and silent devices and of the schedule")
	f.IntVar(&o.Concurrency, "concurrency", 256, "polls in flight at most")
	f.IntVar(&o.MaxConns, "max-conns", 256, "connections to the server at most")
	f.IntVar(&o.EnrollConcurrency, "enroll-concurrency", 32, "enrollments in flight at most")
	f.StringSliceVar(&o.Rollouts, "rollout", nil, "also compare this rollout's outcomes with the server's (repeatable)")
	f.BoolVar(&o.PerDevice, "per-device", false, "print every device's last result too")
	f.StringVar(&o.WorkDir, "work-dir", "", "where the devices' state directories go (a new directory in it, removed at the end; default the system's temporary directory)")
	for _, n := range []string{"enroll-token", "root", "hardware"} {
		_ = cmd.MarkFlagRequired(n)
	}
	return cmd
}

func (a *app) sim(ctx context.Context, o sim.Options) error {
	if err := o.Check(); err != nil {
		return err
	}
	if a.serverURL == "" {
		return errNoServer
	}
	root, err := os.ReadFile(o.Root)
	if err != nil {
		return fmt.Errorf("sim: %w", err)
	}
	hc, err := a.httpClient()
	if err != nil {
		return err
	}
	var admin *apiclient.Client
	if a.token != "" {
		admin = apiclient.New(a.serverURL, a.token, apiclient.WithHTTPClient(hc))
	}
	log := slog.New(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	sum, results, err := sim.Run(ctx, o, a.serverURL, root, hc, admin, log)
	if err != nil {
		return err
	}
	var perDevice []sim.Result
	if o.PerDevice {
		perDevice = results
	}
	out := struct {
		sim.Summary
		DevicesLast []sim.Result `json:"device_results,omitempty"`
	}{sum, perDevice}
	if err := a.print(out, func(w io.Writer) {
		printSimSummary(w, sum)
		if o.PerDevice {
			fmt.Fprintln(w)
			printSimResults(w, results)
		}
	}); err != nil {
		return err
	}
	if !sum.OK {
		return tufota.Errorf(tufota.EInternal, "sim: %d errors, %d reports unacknowledged, %d devices differ from the server", sum.ErrorCount, sum.Unacknowledged, sum.Lost)
	}
	return nil
}

func printSimSummary(w io.Writer, s sim.Summary) {
	row(w, "DEVICES", s.Devices)
	row(w, "ENROLLED", fmt.Sprintf("%.1f s (%.0f/s)", s.EnrollSeconds, s.EnrollPerSecond))
	row(w, "POLLS", fmt.Sprintf("%d in %.1f s (%.0f/s): %s", s.Polls, s.RunSeconds, s.PollsPerSecond, countList(s.PollStatus)))
	row(w, "POLL LATENCY", fmt.Sprintf("p50 %.2f ms, p99 %.2f ms, max %.2f ms", s.PollP50Ms, s.PollP99Ms, s.PollMaxMs))
	for _, ph := range []struct {
		name string
		p    *sim.Phase
	}{{"WHILE UPDATING", s.Rollout}, {"AFTER UPDATES", s.After}} {
		if ph.p != nil {
			row(w, ph.name, fmt.Sprintf("%.0f s: %d polls (%.0f/s), p50 %.2f ms, p99 %.2f ms, max %.2f ms", ph.p.Seconds, ph.p.Polls, ph.p.PollsPerSecond, ph.p.P50Ms, ph.p.P99Ms, ph.p.MaxMs))
		}
	}
	row(w, "LATE POLLS", fmt.Sprintf("%d started more than one interval late (max lag %.0f ms)", s.LatePolls, s.MaxLagMs))
	row(w, "REQUESTS", s.Requests)
	row(w, "ERRORS", fmt.Sprintf("%d %s", s.ErrorCount, countList(s.Errors)))
	row(w, "REPORTS SENT", countList(s.ReportsSent))
	row(w, "REPORTS ACKNOWLEDGED", countList(s.ReportsAcked))
	row(w, "UNACKNOWLEDGED", s.Unacknowledged)
	for _, r := range s.Rollouts {
		row(w, "ROLLOUT "+r.ID, fmt.Sprintf("%s, %d of %d waves started; simulator %s; server %s", r.State, r.WavesStarted, r.Waves, countList(r.Sim), countList(r.Server)))
	}
	if s.Versions != nil {
		row(w, "VERSIONS", fmt.Sprintf("simulator %s; fleet report %s", countList(s.Versions.Sim), countList(s.Versions.Server)))
	}
	if !s.Compared {
		row(w, "SERVER", "not compared (no --token)")
	}
	row(w, "LOST REPORTS", s.Lost)
	for _, m := range s.Mismatches {
		row(w, "", m)
	}
	row(w, "OK", s.OK)
}

// countList prints a count map as "k=v k=v", sorted by key; "-" if empty.
func countList(m map[string]int) string {
	if len(m) == 0 {
		return "-"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%d", k, m[k])
	}
	return strings.Join(parts, " ")
}

func printSimResults(w io.Writer, results []sim.Result) {
	row(w, "DEVICE", "HARDWARE", "VERSION", "STATUS", "ERROR")
	for _, r := range results {
		row(w, r.ID, r.Hardware, r.Version, r.Status, dash(r.Error))
	}
}
