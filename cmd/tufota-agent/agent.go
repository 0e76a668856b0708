package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/client"
)

// options are the agent's flags.
type options struct {
	server, deviceID, token, rootPath, stateDir, hardware, currentVersion string
	caCert, installPath, installer, healthCmd, targetsURL                 string
	once, verbose                                                         bool
	poll                                                                  time.Duration
	bootAttempts                                                          int
}

// run is the whole agent: it parses args (with env as the fallback for the
// server URL and the token), then runs one update cycle (--once) or polls
// until ctx ends. It prints one line per cycle to stdout.
//
// --help (or -h) prints the usage and every flag to stdout and returns nil.
func run(ctx context.Context, args []string, env func(string) string, stdout io.Writer) error {
	o, err := parseFlags(args, env)
	if errors.Is(err, flag.ErrHelp) {
		fs := newFlagSet(&options{})
		fs.SetOutput(stdout)
		fmt.Fprint(stdout, usage)
		fs.PrintDefaults()
		return nil
	}
	if err != nil {
		return err
	}
	level := slog.LevelWarn
	if o.verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	root, err := os.ReadFile(o.rootPath)
	if err != nil {
		return fmt.Errorf("read trusted root: %w", err)
	}
	hc, err := httpClient(o.caCert)
	if err != nil {
		return err
	}
	c, err := client.New(client.Config{
		ServerURL:      o.server,
		TargetsURL:     o.targetsURL,
		TrustedRoot:    root,
		StateDir:       o.stateDir,
		DeviceID:       o.deviceID,
		Token:          o.token,
		HardwareID:     o.hardware,
		CurrentVersion: o.currentVersion,
		HTTPClient:     hc,
		Logger:         log,
	})
	if err != nil {
		return err
	}
	a := &agent{
		c:         c,
		inst:      &client.FileInstaller{Path: o.installPath},
		stateDir:  o.stateDir,
		deviceID:  o.deviceID,
		healthCmd: o.healthCmd,
		stdout:    stdout,
		log:       log,
		reportCtx: context.WithoutCancel(ctx),
	}
	if o.installer == "ab" {
		a.ab = &client.ABInstaller{Dir: filepath.Join(o.stateDir, "slots"), MaxBoots: o.bootAttempts}
		a.inst = a.ab
		if _, err := a.startup(ctx); err != nil {
			if o.once {
				return err
			}
			fmt.Fprintf(stdout, "%s: %v\n", o.deviceID, err)
		}
	}
	if o.once {
		return a.cycle(ctx)
	}
	for {
		if err := a.cycle(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			fmt.Fprintf(stdout, "%s: %v\n", o.deviceID, err)
		}
		// Jitter the poll so a fleet does not ask in lockstep.
		wait := o.poll/2 + rand.N(o.poll/2+1) // #nosec G404 -- poll jitter, not a secret
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

// usage heads --help.
const usage = `Usage: tufota-agent --server URL --device-id ID --token TOKEN --root root.json \
    --state-dir DIR --hardware HW [flags]

tufota's reference device agent: checks for an update, verifies it against
signed TUF metadata, downloads, installs and reports it.

Flags:
`

// newFlagSet declares the agent's flags into o. Defaults never come from
// the environment, so --help cannot print a token: environment fallbacks
// are applied after parsing.
func newFlagSet(o *options) *flag.FlagSet {
	fs := flag.NewFlagSet("tufota-agent", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	// Environment values are applied after parsing, not as defaults: the
	// usage text prints defaults, and the device token is a secret.
	fs.StringVar(&o.server, "server", "", "tufota server URL (or TUFOTA_SERVER)")
	fs.StringVar(&o.deviceID, "device-id", "", "this device's ID")
	fs.StringVar(&o.token, "token", "", "device token (or TUFOTA_DEVICE_TOKEN)")
	fs.StringVar(&o.rootPath, "root", "", "trusted root.json (the trust anchor)")
	fs.StringVar(&o.stateDir, "state-dir", "", "state directory (metadata cache, installed version, image)")
	fs.StringVar(&o.hardware, "hardware", "", "this device's hardware ID")
	fs.StringVar(&o.currentVersion, "current-version", "", "running firmware version (default: the one recorded in the state dir)")
	fs.StringVar(&o.targetsURL, "targets-url", "", "download target bytes from this bucket/CDN base (BASE/targets/...) instead of the server; verified all the same (or TUFOTA_TARGETS_URL)")
	fs.StringVar(&o.caCert, "ca-cert", "", "PEM CA certificate to trust for the server (default: system roots)")
	fs.StringVar(&o.installPath, "install-path", "", "where the file installer puts the image (default STATE-DIR/firmware/image.bin)")
	fs.StringVar(&o.installer, "installer", "file", "installer: file (replace one file) or ab (two slots in STATE-DIR/slots, boot counter)")
	fs.IntVar(&o.bootAttempts, "boot-attempts", 3, "ab: boots a new slot gets before it is reverted")
	fs.StringVar(&o.healthCmd, "health-cmd", "", "ab: shell command that checks a trial image (TUFOTA_IMAGE, TUFOTA_VERSION set); exit 0 = healthy")
	fs.BoolVar(&o.once, "once", false, "run one update cycle and exit (non-zero on failure)")
	fs.DurationVar(&o.poll, "poll", 5*time.Minute, "poll interval")
	fs.BoolVar(&o.verbose, "v", false, "verbose logs on stderr")
	return fs
}

func parseFlags(args []string, env func(string) string) (options, error) {
	var o options
	fs := newFlagSet(&o)
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	for _, f := range []struct {
		val *string
		env string
	}{{&o.server, "TUFOTA_SERVER"}, {&o.token, "TUFOTA_DEVICE_TOKEN"}, {&o.targetsURL, "TUFOTA_TARGETS_URL"}} {
		if *f.val == "" {
			*f.val = env(f.env)
		}
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	for _, req := range []struct{ name, val string }{
		{"--server", o.server}, {"--device-id", o.deviceID}, {"--token", o.token},
		{"--root", o.rootPath}, {"--state-dir", o.stateDir}, {"--hardware", o.hardware},
	} {
		if req.val == "" {
			return o, fmt.Errorf("%s is required", req.name)
		}
	}
	if o.installer != "file" && o.installer != "ab" {
		return o, fmt.Errorf("--installer must be file or ab, not %q", o.installer)
	}
	if o.poll <= 0 {
		return o, errors.New("--poll must be positive")
	}
	if o.installPath == "" {
		o.installPath = filepath.Join(o.stateDir, "firmware", "image.bin")
	}
	return o, nil
}

func httpClient(caCert string) (*http.Client, error) {
	tr := &http.Transport{
		TLSClientConfig:       &tls.Config{MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:   15 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
		IdleConnTimeout:       90 * time.Second,
		ForceAttemptHTTP2:     true,
	}
	if caCert != "" {
		pem, err := os.ReadFile(caCert)
		if err != nil {
			return nil, fmt.Errorf("read CA certificate: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s holds no PEM certificate", caCert)
		}
		tr.TLSClientConfig.RootCAs = pool
	}
	return &http.Client{Transport: tr}, nil
}

// agent runs update cycles.
type agent struct {
	c         *client.Client
	inst      client.Installer
	ab        *client.ABInstaller // nil with the file installer
	healthCmd string
	stateDir  string
	deviceID  string
	stdout    io.Writer
	log       *slog.Logger
	reportCtx context.Context // reports outlive a cancelled cycle briefly
}

// cycle runs check → download → install → report once.
func (a *agent) cycle(ctx context.Context) error {
	upd, err := a.c.Check(ctx)
	if err != nil {
		if refused(err) {
			// Check has reported the refusal; the server ends the offer,
			// so later cycles must not claim the device is up to date.
			a.recordFailure(failure{Error: err.Error()})
		}
		return err
	}
	if upd == nil {
		a.noUpdate()
		return nil
	}
	fail := func(err error) error {
		a.report(upd, client.StateFailed, err)
		a.recordFailure(failure{Target: upd.Target, Name: upd.Name, Version: upd.Version, Error: err.Error()})
		return err
	}
	a.report(upd, client.StateDownloading, nil)
	dl := filepath.Join(a.stateDir, "download")
	if err := os.MkdirAll(dl, 0o700); err != nil {
		return fail(fmt.Errorf("download dir: %w", err))
	}
	img := filepath.Join(dl, path.Base(upd.Target))
	if err := a.c.Download(ctx, upd, img); err != nil {
		return fail(err)
	}
	a.report(upd, client.StateDownloaded, nil)
	a.report(upd, client.StateInstalling, nil)
	if err := a.inst.Install(ctx, img, upd); err != nil {
		return fail(err)
	}
	if a.ab != nil {
		// A real device reboots here; the reference agent boots the new
		// slot in-process and runs the same start-up path.
		_ = os.Remove(img)
		res, err := a.startup(ctx)
		if err != nil {
			return err
		}
		if !res.Trial && res.Reverted == nil && res.Record.Target == upd.Target {
			// The first image of a fresh device goes straight to the
			// primary slot: there is nothing to fall back to.
			a.clearFailure()
			a.report(upd, client.StateInstalled, nil)
			fmt.Fprintf(a.stdout, "%s: installed %s %s\n", a.deviceID, upd.Name, upd.Version)
		}
		return nil
	}
	if err := a.c.MarkInstalled(ctx, upd); err != nil {
		if rerr := a.inst.Rollback(ctx); rerr != nil {
			err = errors.Join(err, rerr)
		}
		return fail(err)
	}
	if err := a.inst.Confirm(ctx); err != nil {
		a.log.Warn("confirm failed", "err", err)
	}
	a.clearFailure()
	a.report(upd, client.StateInstalled, nil)
	fmt.Fprintf(a.stdout, "%s: installed %s %s\n", a.deviceID, upd.Name, upd.Version)
	return nil
}

// report sends a status report; a report that cannot be delivered is
// logged and does not stop the update.
func (a *agent) report(upd *client.Update, st client.State, err error) {
	ctx, cancel := context.WithTimeout(a.reportCtx, time.Minute)
	defer cancel()
	if rerr := a.c.Report(ctx, client.NewReport(upd, st, err)); rerr != nil {
		a.log.Warn("status report not delivered", "state", st, "err", rerr)
	}
}

// refused reports whether a Check error is the device's own refusal of
// an offer (not a network or server failure).
func refused(err error) bool {
	for _, class := range []error{client.ErrMetadata, client.ErrNotSigned, client.ErrWrongHardware, client.ErrNotNewer} {
		if errors.Is(err, class) {
			return true
		}
	}
	return false
}

// failureFile records, in the state dir, the last update that failed, so
// that the agent can say so (also after a restart) when the server no
// longer offers it.
const failureFile = "last-failure.json"

// failure is the record of the last failed update: the offered release,
// or only the error when the check itself was refused.
type failure struct {
	Target  string    `json:"target,omitempty"`
	Name    string    `json:"name,omitempty"`
	Version string    `json:"version,omitempty"`
	Error   string    `json:"error"`
	Time    time.Time `json:"time"`
}

func (a *agent) recordFailure(f failure) {
	f.Time = time.Now().UTC()
	b, err := json.Marshal(f)
	if err == nil {
		err = writeFile(filepath.Join(a.stateDir, failureFile), b)
	}
	if err != nil {
		a.log.Warn("could not record the failed update", "err", err)
	}
}

func (a *agent) clearFailure() {
	if err := os.Remove(filepath.Join(a.stateDir, failureFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		a.log.Warn("could not clear the failed-update record", "err", err)
	}
}

// noUpdate prints what a cycle without an offer means: up to date, unless
// the last update failed (the server stops offering an update a device
// reported as failed), which it names.
func (a *agent) noUpdate() {
	cur := orNone(a.c.CurrentVersion())
	b, err := os.ReadFile(filepath.Join(a.stateDir, failureFile))
	var f failure
	stale := func() bool { // the device runs the failed version or a newer one
		c, err := tufota.CompareVersions(f.Version, a.c.CurrentVersion())
		return f.Version != "" && a.c.CurrentVersion() != "" && err == nil && c <= 0
	}
	if err != nil || json.Unmarshal(b, &f) != nil || stale() {
		fmt.Fprintf(a.stdout, "%s: up to date (%s)\n", a.deviceID, cur)
		return
	}
	what := "the last update check"
	if f.Name != "" {
		what = fmt.Sprintf("the last update, %s %s,", f.Name, f.Version)
	}
	fmt.Fprintf(a.stdout, "%s: no update offered, running %s; %s failed at %s: %s\n",
		a.deviceID, cur, what, f.Time.Format(time.RFC3339), f.Error)
}

// writeFile writes data to name through a temporary file and a rename, so
// a crash leaves the old or the new content.
func writeFile(name string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), name)
}

func orNone(v string) string {
	if v == "" {
		return "no firmware"
	}
	return v
}

// startup is what the A/B agent does at every start: boot (counting a
// trial's boots, reverting an exhausted or corrupt trial), then run the
// health check on a trial and confirm or roll it back, reporting the
// outcome.
func (a *agent) startup(ctx context.Context) (client.BootResult, error) {
	res, err := a.ab.Boot(ctx)
	if errors.Is(err, tufota.ErrNotFound) {
		return res, nil // nothing installed yet
	}
	if err != nil {
		return res, err
	}
	if res.Reverted != nil {
		rv := recordUpdate(*res.Reverted)
		rerr := fmt.Errorf("trial of %s abandoned by the boot counter", rv.Version)
		a.report(rv, client.StateRolledBack, rerr)
		a.recordFailure(failure{Target: rv.Target, Name: rv.Name, Version: rv.Version, Error: rerr.Error()})
		fmt.Fprintf(a.stdout, "%s: rolled back %s, running %s\n", a.deviceID, rv.Version, res.Record.Version)
	}
	upd := recordUpdate(res.Record)
	if !res.Trial {
		if res.Record.Version != a.c.CurrentVersion() {
			return res, a.c.MarkInstalled(ctx, upd)
		}
		return res, nil
	}
	// A trial boot that ends with trial=false below is a confirmed or
	// rolled-back slot; the caller only needs to know it was a trial.
	if herr := a.health(ctx, res); herr != nil {
		if err := a.ab.Rollback(ctx); err != nil {
			return res, err
		}
		a.report(upd, client.StateRolledBack, herr)
		a.recordFailure(failure{Target: upd.Target, Name: upd.Name, Version: upd.Version, Error: herr.Error()})
		fmt.Fprintf(a.stdout, "%s: rolled back %s: %v\n", a.deviceID, upd.Version, herr)
		return res, herr
	}
	if err := a.ab.Confirm(ctx); err != nil {
		return res, err
	}
	if err := a.c.MarkInstalled(ctx, upd); err != nil {
		return res, err
	}
	a.clearFailure()
	a.report(upd, client.StateInstalled, nil)
	fmt.Fprintf(a.stdout, "%s: installed %s %s\n", a.deviceID, upd.Name, upd.Version)
	return res, nil
}

// health runs the health check on a booted trial image.
func (a *agent) health(ctx context.Context, res client.BootResult) error {
	if a.healthCmd == "" {
		return nil // Boot verified the image; no device-specific check
	}
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", a.healthCmd) // #nosec G204 -- the health command is the device operator's own --health-cmd
	cmd.Env = append(os.Environ(), "TUFOTA_IMAGE="+res.Image, "TUFOTA_VERSION="+res.Record.Version)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("health check: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// recordUpdate rebuilds the report fields of an update from a slot record.
func recordUpdate(r client.SlotRecord) *client.Update {
	name, _, _ := strings.Cut(r.Target, "/")
	return &client.Update{Target: r.Target, Name: name, Version: r.Version, RolloutID: r.RolloutID}
}
