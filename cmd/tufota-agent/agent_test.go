package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
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
	f := &fakeServer{repo: repo}
	f.publish(t, "1.2.0")
	mux := http.NewServeMux()
	mux.Handle("/tuf/", repo.Handler("/tuf/"))
	mux.HandleFunc("GET /api/v1/device/update", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		target, version := f.target, f.version
		f.mu.Unlock()
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
