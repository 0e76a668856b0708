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
	target  string
	image   []byte
	mu      sync.Mutex
	reports []string
}

func newFakeServer(t *testing.T) *fakeServer {
	t.Helper()
	repo, err := repofixtures.New("agent-test", time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeServer{repo: repo, image: bytes.Repeat([]byte("firmware "), 5000)}
	f.target, err = repo.AddRelease(tufota.TargetCustom{Name: "pumpfw", Version: "1.2.0", Hardware: []string{"pump-a"}}, "fw.bin", f.image)
	if err != nil {
		t.Fatal(err)
	}
	if err := repo.Publish(); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/tuf/", repo.Handler("/tuf/"))
	mux.HandleFunc("GET /api/v1/device/update", func(w http.ResponseWriter, r *http.Request) {
		if v := r.URL.Query().Get("version"); v != "" {
			if c, _ := tufota.CompareVersions("1.2.0", v); c <= 0 {
				w.WriteHeader(http.StatusNoContent)
				return
			}
		}
		json.NewEncoder(w).Encode(map[string]string{"target": f.target, "name": "pumpfw", "version": "1.2.0"})
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
	f.mu.Lock()
	got := strings.Join(f.reports, ",")
	f.mu.Unlock()
	if want := "downloading,downloaded,installing,installed"; got != want {
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
