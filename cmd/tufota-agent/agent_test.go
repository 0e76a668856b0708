package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/client"
	repofixtures "github.com/tufota/tufota/repo-fixtures"
)

// fakeServer serves a TUF repository with one release and offers it to any
// device below its version.
type fakeServer struct {
	repo    *repofixtures.Repo
	srv     *httptest.Server
	target  string // newest release
	version string
	image   []byte
	mu      sync.Mutex
	reports []string
	// endOnFailure makes the server act as tufota's does: a target a
	// device reported as failed is no longer offered to it.
	endOnFailure bool
	ended        map[string]bool
	offerTarget  string // when set, offered instead of the newest release
}

// publish adds a newer release and offers it.
func (f *fakeServer) publish(t *testing.T, version string) {
	t.Helper()
	img := bytes.Repeat([]byte("firmware "+version+" "), 5000)
	target, err := f.repo.AddRelease(tufota.TargetCustom{Name: "pumpfw", Version: version, Hardware: []string{"pump-a"}}, "fw.bin", img)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.repo.Publish(); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	f.target, f.version, f.image = target, version, img
	f.mu.Unlock()
}

func (f *fakeServer) takeReports() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := strings.Join(f.reports, ",")
	f.reports = nil
	return r
}

func newFakeServer(t *testing.T) *fakeServer {
	t.Helper()
	repo, err := repofixtures.New("agent-test", time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeServer{repo: repo, ended: map[string]bool{}}
	f.publish(t, "1.2.0")
	mux := http.NewServeMux()
	mux.Handle("/tuf/", repo.Handler("/tuf/"))
	mux.HandleFunc("GET /api/v1/device/update", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		target, version := f.target, f.version
		if f.offerTarget != "" {
			target, version = f.offerTarget, strings.Split(f.offerTarget, "/")[1]
		}
		ended := f.endOnFailure && f.ended[target]
		f.mu.Unlock()
		if ended {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		if v := r.URL.Query().Get("version"); v != "" {
			if c, _ := tufota.CompareVersions(version, v); c <= 0 {
				w.WriteHeader(http.StatusNoContent)
				return
			}
		}
		json.NewEncoder(w).Encode(map[string]string{"target": target, "name": "pumpfw", "version": version, "rollout_id": "r1"})
	})
	mux.HandleFunc("POST /api/v1/device/status", func(w http.ResponseWriter, r *http.Request) {
		var rep map[string]string
		json.NewDecoder(r.Body).Decode(&rep)
		f.mu.Lock()
		f.reports = append(f.reports, rep["state"])
		if rep["state"] == "failed" {
			f.ended[rep["target"]] = true
		}
		f.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	})
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

func TestAgentOnceInstallsThenIsUpToDate(t *testing.T) {
	t.Parallel()
	f := newFakeServer(t)
	dir := t.TempDir()
	rootPath := filepath.Join(dir, "root.json")
	if err := os.WriteFile(rootPath, f.repo.TrustedRoot(), 0o600); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(dir, "state")
	args := []string{"--server", f.srv.URL, "--device-id", "pump-1", "--root", rootPath,
		"--state-dir", state, "--hardware", "pump-a", "--once"}
	env := func(k string) string {
		if k == "TUFOTA_DEVICE_TOKEN" {
			return "tok"
		}
		return ""
	}

	var out bytes.Buffer
	if err := run(t.Context(), args, env, &out); err != nil {
		t.Fatalf("run: %v", err)
	}
	if got, want := out.String(), "pump-1: installed pumpfw 1.2.0\n"; got != want {
		t.Fatalf("stdout = %q, want %q", got, want)
	}
	img, err := os.ReadFile(filepath.Join(state, "firmware", "image.bin"))
	if err != nil || !bytes.Equal(img, f.image) {
		t.Fatalf("installed image differs (err %v)", err)
	}
	inst, err := client.ReadInstalled(state)
	if err != nil || inst.Version != "1.2.0" || inst.Target != f.target {
		t.Fatalf("installed state = %+v, %v", inst, err)
	}
	if got, want := f.takeReports(), "downloading,downloaded,installing,installed"; got != want {
		t.Fatalf("reports = %s, want %s", got, want)
	}

	// Second run: the state dir says 1.2.0 is installed.
	out.Reset()
	if err := run(t.Context(), args, env, &out); err != nil {
		t.Fatalf("second run: %v", err)
	}
	if got, want := out.String(), "pump-1: up to date (1.2.0)\n"; got != want {
		t.Fatalf("stdout = %q, want %q", got, want)
	}
}

func TestAgentABInstallRollbackConfirm(t *testing.T) {
	t.Parallel()
	f := newFakeServer(t)
	dir := t.TempDir()
	rootPath := filepath.Join(dir, "root.json")
	if err := os.WriteFile(rootPath, f.repo.TrustedRoot(), 0o600); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(dir, "state")
	args := func(health string) []string {
		return []string{"--server", f.srv.URL, "--device-id", "pump-2", "--token", "tok", "--root", rootPath,
			"--state-dir", state, "--hardware", "pump-a", "--once", "--installer", "ab", "--health-cmd", health}
	}
	env := func(string) string { return "" }
	runOnce := func(health string) (string, error) {
		var out bytes.Buffer
		err := run(t.Context(), args(health), env, &out)
		return out.String(), err
	}

	// Fresh device: the first image goes straight to the primary slot.
	if out, err := runOnce("true"); err != nil || out != "pump-2: installed pumpfw 1.2.0\n" {
		t.Fatalf("first run = %q, %v", out, err)
	}
	if got, want := f.takeReports(), "downloading,downloaded,installing,installed"; got != want {
		t.Fatalf("reports = %s, want %s", got, want)
	}

	// 1.3.0 fails its health check: rolled back to 1.2.0.
	f.publish(t, "1.3.0")
	out, err := runOnce(`test "$TUFOTA_VERSION" != 1.3.0`)
	if err == nil || !strings.Contains(out, "pump-2: rolled back 1.3.0: health check") {
		t.Fatalf("bad-image run = %q, %v; want a rollback", out, err)
	}
	if got, want := f.takeReports(), "downloading,downloaded,installing,rolled-back"; got != want {
		t.Fatalf("reports = %s, want %s", got, want)
	}
	if inst, _ := client.ReadInstalled(state); inst.Version != "1.2.0" {
		t.Fatalf("installed after rollback = %+v, want 1.2.0", inst)
	}

	// A healthy 1.3.0: trial, health check, confirm.
	out, err = runOnce("true")
	if err != nil || out != "pump-2: installed pumpfw 1.3.0\n" {
		t.Fatalf("good run = %q, %v", out, err)
	}
	if got, want := f.takeReports(), "downloading,downloaded,installing,installed"; got != want {
		t.Fatalf("reports = %s, want %s", got, want)
	}
	ab := &client.ABInstaller{Dir: filepath.Join(state, "slots")}
	res, err := ab.Boot(t.Context())
	if err != nil || res.Trial || res.Record.Version != "1.3.0" || res.Slot != client.SlotB {
		t.Fatalf("boot = %+v, %v; want confirmed 1.3.0 in slot b", res, err)
	}
	if out, err := runOnce("true"); err != nil || out != "pump-2: up to date (1.3.0)\n" {
		t.Fatalf("last run = %q, %v", out, err)
	}
}

func TestAgentFlagErrors(t *testing.T) {
	t.Parallel()
	env := func(string) string { return "" }
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--bogus"}, "flag provided but not defined: -bogus"},
		{[]string{"--server", "http://x"}, "--device-id is required"},
		{[]string{"--server", "http://x", "--device-id", "d", "--token", "t", "--root", "r", "--state-dir", "s", "--hardware", "h", "extra"}, `unexpected argument "extra"`},
	}
	for _, tt := range tests {
		err := run(t.Context(), tt.args, env, &bytes.Buffer{})
		if err == nil || err.Error() != tt.want {
			t.Errorf("run(%q) = %v, want %q", tt.args, err, tt.want)
		}
	}
}

// TestAgentTargetsURL: with --targets-url the image comes from the CDN, not
// the server, and is verified all the same.
func TestAgentTargetsURL(t *testing.T) {
	t.Parallel()
	f := newFakeServer(t)
	var cdnHits int
	var mu sync.Mutex
	tuf := f.repo.Handler("/tuf/")
	cdn := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		cdnHits++
		mu.Unlock()
		r2 := r.Clone(r.Context())
		r2.URL.Path = "/tuf/targets/" + strings.TrimPrefix(r.URL.Path, "/cdn/targets/")
		tuf.ServeHTTP(w, r2)
	}))
	t.Cleanup(cdn.Close)
	// The server no longer serves target bytes.
	mux := f.srv.Config.Handler.(*http.ServeMux)
	mux.HandleFunc("/tuf/targets/", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "gone", http.StatusGone) })

	dir := t.TempDir()
	rootPath := filepath.Join(dir, "root.json")
	if err := os.WriteFile(rootPath, f.repo.TrustedRoot(), 0o600); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(dir, "state")
	args := []string{"--server", f.srv.URL, "--targets-url", cdn.URL + "/cdn", "--device-id", "pump-1", "--root", rootPath,
		"--state-dir", state, "--hardware", "pump-a", "--token", "tok", "--once"}
	var out bytes.Buffer
	if err := run(t.Context(), args, func(string) string { return "" }, &out); err != nil {
		t.Fatalf("run: %v", err)
	}
	if got, want := out.String(), "pump-1: installed pumpfw 1.2.0\n"; got != want {
		t.Fatalf("stdout = %q, want %q", got, want)
	}
	mu.Lock()
	defer mu.Unlock()
	if cdnHits == 0 {
		t.Fatal("the image did not come from --targets-url")
	}
}

// TestAgentHelp: --help and -h print the usage and every flag on stdout and
// succeed, and never show the token from the environment.
func TestAgentHelp(t *testing.T) {
	t.Parallel()
	env := func(k string) string { return "secret-" + k }
	for _, arg := range []string{"--help", "-h"} {
		var out bytes.Buffer
		if err := run(t.Context(), []string{arg}, env, &out); err != nil {
			t.Fatalf("run(%s) = %v, want nil", arg, err)
		}
		help := out.String()
		for _, flag := range []string{"Usage: tufota-agent", "-server", "-device-id", "-token", "-root", "-state-dir", "-hardware",
			"-current-version", "-targets-url", "-ca-cert", "-install-path", "-installer", "-boot-attempts", "-health-cmd", "-once", "-poll", "-v"} {
			if !strings.Contains(help, flag) {
				t.Errorf("run(%s) output lacks %q:\n%s", arg, flag, help)
			}
		}
		if strings.Contains(help, "secret-") {
			t.Errorf("run(%s) printed a value from the environment:\n%s", arg, help)
		}
	}
}

// TestAgentHelpExitsZero runs the agent's main as a process: --help exits 0
// with the flags on stdout; a bad flag exits 1.
func TestAgentHelpExitsZero(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		arg  string
		code int
	}{{"--help", 0}, {"--bogus", 1}} {
		cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "TUFOTA_AGENT_TEST_MAIN="+tt.arg)
		out, err := cmd.Output()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != tt.code {
			t.Fatalf("tufota-agent %s exited %d, want %d (stdout %q)", tt.arg, code, tt.code, out)
		}
		if tt.code == 0 && !strings.Contains(string(out), "-state-dir") {
			t.Fatalf("tufota-agent %s printed %q, want the flags", tt.arg, out)
		}
	}
}

// TestMain runs main instead of the tests when TUFOTA_AGENT_TEST_MAIN
// names an argument (TestAgentHelpExitsZero's child process).
func TestMain(m *testing.M) {
	if arg := os.Getenv("TUFOTA_AGENT_TEST_MAIN"); arg != "" {
		os.Args = []string{"tufota-agent", arg}
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestAgentSaysWhatFailed: after a failed download (or a refused check)
// the server stops offering the update; the agent's next cycle says that
// the update failed and why, not "up to date", until an update installs.
func TestAgentSaysWhatFailed(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name    string
		break_  func(f *fakeServer) // makes the first cycle fail
		repair  func(f *fakeServer)
		wantErr string
		wantOut string // in the second cycle's output
	}{
		{"tampered image", func(f *fakeServer) {
			sum, _ := repofixtures.Hashes(f.image)
			name := repofixtures.TargetFilePath(f.target, sum)
			f.repo.SetFile(name, bytes.ToUpper(f.repo.File(name)))
		}, func(f *fakeServer) {
			sum, _ := repofixtures.Hashes(f.image)
			f.repo.SetFile(repofixtures.TargetFilePath(f.target, sum), f.image)
		}, "hash mismatch", "; the last update, pumpfw 1.2.0, failed at "},
		{"offer not signed", func(f *fakeServer) {
			f.offerTarget = "pumpfw/9.9.9/fw.bin"
		}, func(f *fakeServer) {
			f.offerTarget = ""
		}, "not signed", "; the last update check failed at "},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeServer(t)
			f.mu.Lock()
			f.endOnFailure = true
			tt.break_(f)
			f.mu.Unlock()
			dir := t.TempDir()
			rootPath := filepath.Join(dir, "root.json")
			if err := os.WriteFile(rootPath, f.repo.TrustedRoot(), 0o600); err != nil {
				t.Fatal(err)
			}
			args := []string{"--server", f.srv.URL, "--device-id", "pump-1", "--token", "tok", "--root", rootPath,
				"--state-dir", filepath.Join(dir, "state"), "--hardware", "pump-a", "--once"}
			cycle := func() (string, error) {
				var out bytes.Buffer
				err := run(t.Context(), args, func(string) string { return "" }, &out)
				return out.String(), err
			}
			if out, err := cycle(); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("first cycle = %q, %v; want an error with %q", out, err, tt.wantErr)
			}
			out, err := cycle()
			if err != nil || strings.Contains(out, "up to date") || !strings.Contains(out, "pump-1: no update offered, running no firmware"+tt.wantOut) || !strings.Contains(out, tt.wantErr) {
				t.Fatalf("cycle after the failure = %q, %v; want it to say the update failed (%s)", out, err, tt.wantErr)
			}
			// A device that runs the failed version (or a newer one) by
			// other means is up to date. (A refused check names no
			// version: its record stays until an update installs.)
			if tt.name == "tampered image" {
				var o bytes.Buffer
				err := run(t.Context(), append(slices.Clone(args), "--current-version", "1.2.0"), func(string) string { return "" }, &o)
				if err != nil || o.String() != "pump-1: up to date (1.2.0)\n" {
					t.Fatalf("cycle on 1.2.0 = %q, %v; want up to date", o.String(), err)
				}
			}
			// The operator fixes the release and offers it again.
			f.mu.Lock()
			tt.repair(f)
			f.ended = map[string]bool{}
			f.mu.Unlock()
			if out, err := cycle(); err != nil || out != "pump-1: installed pumpfw 1.2.0\n" {
				t.Fatalf("cycle after the repair = %q, %v", out, err)
			}
			if out, err := cycle(); err != nil || out != "pump-1: up to date (1.2.0)\n" {
				t.Fatalf("last cycle = %q, %v", out, err)
			}
		})
	}
}
