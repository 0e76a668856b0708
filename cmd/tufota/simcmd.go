package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/server"
)

type simOptions struct {
	enrollToken string
	root        string
	devices     int
	hardware    string
	version     string
	prefix      string
	failRate    float64
	silentRate  float64
	poll        time.Duration
	duration    time.Duration
	seed        uint64
}

func (a *app) simCommand() *cobra.Command {
	var o simOptions
	cmd := &cobra.Command{
		Use:   "sim --server URL --enroll-token TOKEN --root root.json --devices N --hardware HW --current-version V",
		Short: "Simulate a fleet: N devices on the real client package against a running server",
		Long: `sim enrolls N devices with a bulk enrollment token (tufota device enroll-token)
and runs each as a goroutine that polls, downloads, verifies, installs and reports
with the real client package. --failure-rate makes that share of devices fail their
install; --silent-rate makes that share go quiet after accepting the update. It
stops after --duration and prints what every device ended on.`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.sim(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.enrollToken, "enroll-token", "", "bulk enrollment token (required)")
	f.StringVar(&o.root, "root", "", "trusted root.json (required)")
	f.IntVar(&o.devices, "devices", 10, "number of devices")
	f.StringVar(&o.hardware, "hardware", "", "hardware ID the devices report (must match the enrollment token's)")
	f.StringVar(&o.version, "current-version", "1.0.0", "firmware version the devices start on")
	f.StringVar(&o.prefix, "id-prefix", "sim", "device IDs are PREFIX-0001...")
	f.Float64Var(&o.failRate, "failure-rate", 0, "share of devices whose install fails (0 to 1)")
	f.Float64Var(&o.silentRate, "silent-rate", 0, "share of devices that go silent after accepting (0 to 1)")
	f.DurationVar(&o.poll, "poll", time.Second, "poll interval")
	f.DurationVar(&o.duration, "duration", time.Minute, "how long to run")
	f.Uint64Var(&o.seed, "seed", 1, "seed of the choice of failing and silent devices")
	for _, n := range []string{"enroll-token", "root", "hardware"} {
		_ = cmd.MarkFlagRequired(n)
	}
	return cmd
}

func (a *app) sim(ctx context.Context, o simOptions) error {
	switch {
	case o.devices < 1 || o.devices > 100000:
		return tufota.Errorf(tufota.EInvalid, "sim: --devices %d: want 1 to 100000", o.devices)
	case o.failRate < 0 || o.failRate > 1 || o.silentRate < 0 || o.silentRate > 1 || o.failRate+o.silentRate > 1:
		return tufota.Errorf(tufota.EInvalid, "sim: --failure-rate and --silent-rate must be within 0..1 and add up to at most 1")
	case o.poll <= 0 || o.duration <= 0:
		return tufota.Errorf(tufota.EInvalid, "sim: --poll and --duration must be positive")
	}
	if a.serverURL == "" {
		return errNoServer
	}
	root, err := os.ReadFile(o.root)
	if err != nil {
		return fmt.Errorf("sim: %w", err)
	}
	hc, err := a.httpClient()
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "tufota-sim-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	devs, err := newSimDevices(work, o.prefix, o.hardware, o.version, o.devices, o.failRate, o.silentRate, o.seed)
	if err != nil {
		return err
	}
	enroller := &apiClient{base: a.serverURL, token: o.enrollToken, http: hc}
	if err := enrollAll(ctx, enroller, devs); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, o.duration)
	defer cancel()
	fleet := &simFleet{serverURL: a.serverURL, root: root, http: deviceHTTPClient(hc), log: slog.New(slog.DiscardHandler)}
	results := fleet.runUntil(ctx, devs, o.poll, func(context.Context) bool { return false })
	return a.print(results, func(w io.Writer) { printSimResults(w, results) })
}

// enrollAll enrolls every device with the enrollment token.
func enrollAll(ctx context.Context, c *apiClient, devs []*simDevice) error {
	for _, d := range devs {
		var res server.DeviceTokenResponse
		if err := c.sendJSON(ctx, http.MethodPost, "/api/v1/device/enroll", server.EnrollRequest{DeviceID: d.ID, Version: d.Version}, &res); err != nil {
			return fmt.Errorf("enroll %s: %w", d.ID, err)
		}
		d.Token = res.Token
	}
	return nil
}

func printSimResults(w io.Writer, results []simResult) {
	row(w, "DEVICE", "HARDWARE", "VERSION", "STATUS", "ERROR")
	for _, r := range results {
		row(w, r.ID, r.Hardware, r.Version, r.Status, dash(r.Error))
	}
}
