package rollout

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tufota/tufota/apiclient"
	"github.com/tufota/tufota/e2e"
	"github.com/tufota/tufota/internal/sim"
	"github.com/tufota/tufota/rollout"
	"github.com/tufota/tufota/server"
)

// TestSimLoadEndToEnd runs the load mode of the simulator (scheduled,
// jittered polls over bounded workers and connections) with the real
// client against a real server while a two-wave rollout runs, and compares
// its counts with the server's; then shows that the comparison catches a
// report the server does not have.
func TestSimLoadEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("SKIPPING sim load end-to-end test: -short")
	}
	h := e2e.StartWith(t, "--controller-interval", "100ms")
	fw, _ := h.WriteFirmware("pump.bin", 4096)
	h.MustCLI("release", "push", fw, "--name", "pump-fw", "--version", "1.1.0", "--hardware", "pump-a")
	var enroll server.EnrollTokenResponse
	if err := json.Unmarshal([]byte(h.MustCLI("device", "enroll-token", "--hardware", "pump-a", "-o", "json")), &enroll); err != nil {
		t.Fatal(err)
	}
	devs, err := sim.NewDevices(t.TempDir(), "load", "pump-a", "1.0.0", 30, 0, 0, 5)
	if err != nil {
		t.Fatal(err)
	}
	stats := sim.NewStats()
	tr := sim.DeviceTransport(h.HC, 4)
	defer tr.CloseIdleConnections()
	if err := sim.EnrollParallel(context.Background(), apiclient.New(h.URL, enroll.EnrollToken, apiclient.WithHTTPClient(h.HC)), devs, 8); err != nil {
		t.Fatal(err)
	}
	id := h.CreateRollout("--release", "pump-fw@1.1.0", "--cohort", "hardware=pump-a", "--waves", "50%,100%")
	h.MustCLI("rollout", "start", id)
	fleet := &sim.Fleet{ServerURL: h.URL, Root: h.Root, HTTP: &http.Client{Transport: stats.CountRequests(tr)}, Log: slog.New(slog.DiscardHandler), Stats: stats}

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// Poll in rounds of a few seconds until the rollout completes, as
	// `tufota sim` would for its --duration.
	for ctx.Err() == nil && h.RolloutStatus(id).State == rollout.Running {
		fleet.RunLoad(ctx, devs, sim.Load{Every: 100 * time.Millisecond, Jitter: 0.5, Duration: 2 * time.Second, Workers: 3, Seed: 1})
	}
	if st := h.RolloutStatus(id); st.State != rollout.Completed {
		t.Fatalf("rollout = %s (%s), want completed", st.State, st.Next)
	}
	if n := sim.FlushReports(ctx, devs, 4); n != 0 {
		t.Fatalf("%d reports undelivered", n)
	}
	sum := stats.Summarize(len(devs), 0, time.Second)
	api := apiclient.New(h.URL, h.AdminToken, apiclient.WithHTTPClient(h.HC))
	diffs, err := sim.CompareWithServer(ctx, api, stats, devs, nil, &sum)
	if err != nil {
		t.Fatal(err)
	}
	sum.Judge(diffs)
	if !sum.OK || sum.ErrorCount != 0 || len(sum.Rollouts) != 1 {
		t.Fatalf("summary not OK: errors %v, differences %v, rollouts %+v", sum.Errors, sum.Mismatches, sum.Rollouts)
	}
	if r := sum.Rollouts[0]; r.ID != id || r.Sim["installed"] != 30 || r.Server["installed"] != 30 || r.WavesStarted != 2 {
		t.Errorf("rollout check = %+v; want 30 installed on both sides, 2 waves started", r)
	}
	if sum.Versions.Sim["1.1.0"] != 30 || sum.Versions.Server["1.1.0"] != 30 {
		t.Errorf("versions = %+v; want 30 devices on 1.1.0 on both sides", sum.Versions)
	}
	if sum.ReportsAcked["installed"] != 30 || sum.PollStatus["200"] < 30 {
		t.Errorf("acknowledged %v, poll answers %v; want 30 installed reports and at least 30 offers", sum.ReportsAcked, sum.PollStatus)
	}

	// A device the simulator saw acknowledged in a state the server does
	// not have (as if the server had lost the report) is a difference.
	stats.SetLast(devs[0].ID, id, string(rollout.StatusRolledBack))
	sum2 := stats.Summarize(len(devs), 0, time.Second)
	diffs, err = sim.CompareWithServer(ctx, api, stats, devs, nil, &sum2)
	if err != nil {
		t.Fatal(err)
	}
	sum2.Judge(diffs)
	if sum2.OK || sum2.Lost != 1 || !strings.Contains(sum2.Mismatches[0], devs[0].ID+": simulator rolled-back, server installed") {
		t.Fatalf("a report the server lacks: OK %v, lost %d, %v", sum2.OK, sum2.Lost, sum2.Mismatches)
	}
}

// TestSimCommand runs `tufota sim` itself against a server with no
// rollout: every poll is answered 204, nothing is lost, the exit is clean
// and the summary says so.
func TestSimCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("SKIPPING tufota sim command test: -short")
	}
	h := e2e.Start(t)
	var enroll server.EnrollTokenResponse
	if err := json.Unmarshal([]byte(h.MustCLI("device", "enroll-token", "--hardware", "pump-a", "-o", "json")), &enroll); err != nil {
		t.Fatal(err)
	}
	out := h.MustCLI("sim", "--enroll-token", enroll.EnrollToken, "--root", h.Env["TUFOTA_ROOT"], "--devices", "12",
		"--hardware", "pump-a", "--poll", "100ms", "--duration", "1s", "--concurrency", "3", "--max-conns", "2", "-o", "json")
	var sum sim.Summary
	if err := json.Unmarshal([]byte(out), &sum); err != nil {
		t.Fatalf("sim -o json: %v in %q", err, out)
	}
	if !sum.OK || !sum.Compared || sum.Devices != 12 || sum.Polls < 12 || sum.PollStatus["204"] != sum.Polls || sum.ErrorCount != 0 {
		t.Fatalf("summary = %+v; want 12 devices, every poll a 204, compared, OK", sum)
	}
	if sum.Versions == nil || sum.Versions.Server["1.0.0"] != 12 {
		t.Errorf("versions = %+v; want 12 devices on 1.0.0 in the fleet report", sum.Versions)
	}
	if _, err := h.RunCLI("sim", "--enroll-token", enroll.EnrollToken, "--root", h.Env["TUFOTA_ROOT"], "--devices", "2",
		"--hardware", "pump-a", "--jitter", "2"); err == nil || !strings.Contains(err.Error(), "--jitter") {
		t.Errorf("sim --jitter 2: %v, want refused", err)
	}
}
