package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"maps"
	mrand "math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/tufota/tufota"
	apipkg "github.com/tufota/tufota/api"
	"github.com/tufota/tufota/apiclient"
	"github.com/tufota/tufota/audit"
	"github.com/tufota/tufota/internal/datadir"
	"github.com/tufota/tufota/internal/leader"
	"github.com/tufota/tufota/internal/report"
	"github.com/tufota/tufota/internal/sim"
	"github.com/tufota/tufota/rollout"
	"github.com/tufota/tufota/server"
	"github.com/tufota/tufota/signer"
)

type quickstartOptions struct {
	dir     string
	devices int
	size    int
}

func (a *app) quickstartCommand() *cobra.Command {
	var o quickstartOptions
	cmd := &cobra.Command{
		Use:   "quickstart [--dir DIR] [--devices N]",
		Short: "Run the whole product once, in one process: init, server, signed release, devices",
		Long: `quickstart initialises a repository (in a temporary directory unless --dir is
given), starts the server on a free loopback port with a self-signed TLS
certificate, pushes a generated firmware image as a signed release, and runs N
simulated devices with the real client package: each checks, downloads,
verifies and reports. It prints what every device runs and exits non-zero if
any device failed.`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.quickstart(cmd.Context(), o)
		},
	}
	cmd.Flags().StringVar(&o.dir, "dir", "", "data directory to create (default: a temporary directory, removed afterwards)")
	cmd.Flags().IntVar(&o.devices, "devices", 20, "number of simulated devices")
	cmd.Flags().IntVar(&o.size, "image-size", 2<<20, "size in bytes of the generated firmware image")
	return cmd
}

func (a *app) quickstart(ctx context.Context, o quickstartOptions) (err error) {
	if o.devices < 1 || o.devices > 10000 {
		return tufota.Errorf(tufota.EInvalid, "quickstart: --devices %d: want 1 to 10000", o.devices)
	}
	if o.size < 1 || o.size > 1<<30 {
		return tufota.Errorf(tufota.EInvalid, "quickstart: --image-size %d: want 1 byte to 1 GiB", o.size)
	}
	work, err := os.MkdirTemp("", "tufota-quickstart-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	dir := o.dir
	if dir == "" {
		dir = filepath.Join(work, "repo")
	}
	// The quickstart's keys get a random passphrase unless one is set: there
	// is no default passphrase anywhere.
	a.env = maps.Clone(a.env)
	if a.env["TUFOTA_KEY_PASSPHRASE"] == "" {
		b := make([]byte, 24)
		if _, err := rand.Read(b); err != nil {
			return err
		}
		a.env["TUFOTA_KEY_PASSPHRASE"] = hex.EncodeToString(b)
		if o.dir != "" {
			fmt.Fprintf(a.stdout, "Key passphrase for %s (shown once; needed to run 'tufota server' on it):\n  %s\n", dir, a.env["TUFOTA_KEY_PASSPHRASE"])
		}
	}
	step := func(format string, args ...any) { fmt.Fprintf(a.stdout, "==> "+format+"\n", args...) }

	step("init: creating repository in %s", dir)
	loud := a.logLevel
	a.logLevel = "warn"
	res, err := datadir.Init(ctx, datadir.InitOptions{Dir: dir, KeyAlg: "ecdsa-p256", AdminExpires: 24 * time.Hour}, a.openBlobs, func() ([]byte, error) { return a.passphrase(true) }, a.logger())
	if err != nil {
		return err
	}
	a.logLevel = loud
	step("root metadata (the devices' trust anchor): %s", res.Root)

	srvCtx, stopServer := context.WithCancel(ctx)
	ready := make(chan listening, 1)
	srvErr := make(chan error, 1)
	quiet := *a
	quiet.logLevel = "warn"
	go func() {
		srvErr <- quiet.runServer(srvCtx, serverOptions{
			dir: dir, addr: "127.0.0.1:0", selfSigned: true, maxUpload: server.DefaultMaxUploadBytes,
			controllerEvery: 200 * time.Millisecond, leasePeriod: leader.DefaultPeriod, auditRetention: audit.DefaultRetention,
			stagingMaxAge: signer.DefaultStagingMaxAge, stagingSweep: 10 * time.Minute,
		}, ready)
	}()
	defer func() {
		stopServer()
		if serr := <-srvErr; serr != nil && err == nil {
			err = serr
		}
	}()
	var l listening
	select {
	case l = <-ready:
	case err := <-srvErr:
		srvErr <- nil
		return fmt.Errorf("quickstart: server: %w", err)
	}
	a.serverURL, a.token, a.caFile = l.URL, res.AdminToken, l.CAFile
	api, err := a.api()
	if err != nil {
		return err
	}
	hc := api.HTTP()
	if err := api.WaitReady(ctx); err != nil {
		return err
	}
	step("server: listening at %s (TLS, self-signed certificate %s)", l.URL, l.CAFile)

	fw := filepath.Join(work, "pump-fw-1.1.0.bin")
	if err := writeSampleImage(fw, o.size); err != nil {
		return err
	}
	rel, err := a.pushRelease(ctx, fw, apipkg.PushRequest{
		Name: "pump-fw", Version: "1.1.0", Hardware: []string{"pump-a"},
		Notes: "quickstart sample image",
	})
	if err != nil {
		return fmt.Errorf("quickstart: push: %w", err)
	}
	step("release: pushed %s@%s (%s, sha256 %s…), signed into targets v%d", rel.Name, rel.Version, report.Bytes(rel.Length), rel.SHA256[:16], rel.TargetsVersion)

	enroll, err := api.CreateEnrollToken(ctx, apipkg.EnrollTokenRequest{EnrollScope: apipkg.EnrollScope{Hardware: "pump-a", Attrs: map[string]string{"site": "north"}, Tags: []string{"icu"}}, Expires: "1h"})
	if err != nil {
		return fmt.Errorf("quickstart: enrollment token: %w", err)
	}
	devs, err := sim.NewDevices(filepath.Join(work, "devices"), "pump", "pump-a", "1.0.0", o.devices, 0, 0, 1)
	if err != nil {
		return err
	}
	if err := sim.EnrollAll(ctx, apiclient.New(l.URL, enroll.EnrollToken, apiclient.WithHTTPClient(hc)), devs); err != nil {
		return fmt.Errorf("quickstart: %w", err)
	}
	step("devices: %d simulated pump-a devices on 1.0.0 enrolled themselves with a bulk enrollment token", len(devs))

	co, err := api.CreateCohort(ctx, apipkg.CohortRequest{Name: "icu-pumps", Selector: "hardware=pump-a,tag:icu"})
	if err != nil {
		return fmt.Errorf("quickstart: cohort: %w", err)
	}
	spec := apipkg.RolloutSpec{Release: rel.Name + "@" + rel.Version, Cohort: co.Name, Waves: "10%,50%,100%", Soak: "1s", MinReports: 1, MaxFailureRate: "10%", DeviceTimeout: "1m"}
	ro, err := api.CreateRollout(ctx, spec)
	if err != nil {
		return fmt.Errorf("quickstart: rollout: %w", err)
	}
	if _, err := api.RolloutAction(ctx, ro.ID, "start", apipkg.ActionRequest{Reason: "quickstart canary"}); err != nil {
		return fmt.Errorf("quickstart: start rollout: %w", err)
	}
	step("rollout: %s takes %s to cohort %s (%d devices) in waves %s, soak %s, max failure rate %s", ro.ID, spec.Release, co.Name, co.Devices, spec.Waves, spec.Soak, spec.MaxFailureRate)

	rootJSON, err := os.ReadFile(res.Root)
	if err != nil {
		return err
	}
	fleet := &sim.Fleet{ServerURL: l.URL, Root: rootJSON, HTTP: deviceHTTPClient(hc), Log: slog.New(slog.DiscardHandler)}
	runCtx, cancelRun := context.WithTimeout(ctx, 2*time.Minute)
	defer cancelRun()
	var final apipkg.RolloutStatus
	results := fleet.RunUntil(runCtx, devs, 250*time.Millisecond, func(ctx context.Context) bool {
		var err error
		if final, err = api.Rollout(ctx, ro.ID); err != nil {
			return false
		}
		switch rollout.Phase(final.State) {
		case rollout.Completed, rollout.Paused, rollout.Aborted:
			return true
		}
		return false
	})

	failed := 0
	for _, r := range results {
		if r.Version != rel.Version {
			failed++
		}
	}
	if err := a.print(results, func(w io.Writer) { printSimResults(w, results) }); err != nil {
		return err
	}
	hist, err := api.RolloutHistory(ctx, ro.ID)
	if err != nil {
		return fmt.Errorf("quickstart: history: %w", err)
	}
	step("history of rollout %s:", ro.ID)
	if a.output != "json" {
		if err := a.print(hist, func(w io.Writer) { printHistory(w, hist) }); err != nil {
			return err
		}
	}
	if rollout.Phase(final.State) != rollout.Completed {
		return fmt.Errorf("quickstart: rollout %s ended %s, not completed", ro.ID, final.State)
	}
	if failed > 0 {
		return fmt.Errorf("quickstart: %d of %d devices are not on %s", failed, len(results), rel.Version)
	}
	step("done: rollout %s completed; all %d devices run %s@%s", ro.ID, len(results), rel.Name, rel.Version)
	return nil
}

// deviceHTTPClient is the http.Client devices use: the CLI's trust, with
// timeouts a device would set.
func deviceHTTPClient(hc *http.Client) *http.Client {
	tr := hc.Transport.(*http.Transport).Clone()
	tr.ResponseHeaderTimeout = 30 * time.Second
	tr.MaxIdleConnsPerHost = 16
	return &http.Client{Transport: tr}
}

func writeSampleImage(path string, size int) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	r := mrand.NewChaCha8([32]byte{'t', 'u', 'f', 'o', 't', 'a'})
	if _, err := io.CopyN(f, r, int64(size)); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
