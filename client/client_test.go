package client_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
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

const (
	testToken    = "device-token-1"
	testDevice   = "pump-0001"
	testHardware = "pump-a"
)

// server is a fake tufota server: a TUF repository under /tuf/ and the
// device endpoints, with request counters.
type server struct {
	t    *testing.T
	repo *repofixtures.Repo
	srv  *httptest.Server

	mu       sync.Mutex
	offer    any // JSON body of the update answer; nil → 204
	requests map[string]int
	fail     map[string]int // path → status to answer instead
	override map[string]http.Handler
	reports  []map[string]string
}

func newServer(t *testing.T) *server {
	t.Helper()
	repo, err := repofixtures.New("client-test", time.Now().Add(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	s := &server{t: t, repo: repo, requests: map[string]int{}, fail: map[string]int{}, override: map[string]http.Handler{}}
	mux := http.NewServeMux()
	mux.Handle("/tuf/", repo.Handler("/tuf/"))
	mux.HandleFunc("GET /api/v1/device/update", func(w http.ResponseWriter, r *http.Request) {
		if !s.authorized(w, r) {
			return
		}
		q := r.URL.Query()
		if q.Get("device_id") != testDevice || q.Get("hardware") != testHardware {
			http.Error(w, `{"error":{"code":"invalid","message":"bad query"}}`, http.StatusBadRequest)
			return
		}
		s.mu.Lock()
		offer := s.offer
		s.mu.Unlock()
		if offer == nil {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(offer)
	})
	mux.HandleFunc("POST /api/v1/device/status", func(w http.ResponseWriter, r *http.Request) {
		if !s.authorized(w, r) {
			return
		}
		var raw map[string]any
		if err := json.NewDecoder(r.Body).Decode(&raw); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		rep := map[string]string{}
		for k, v := range raw {
			rep[k] = fmt.Sprint(v)
		}
		s.mu.Lock()
		s.reports = append(s.reports, rep)
		s.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	})
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.requests[r.URL.Path]++
		status := s.fail[r.URL.Path]
		h := s.override[r.URL.Path]
		s.mu.Unlock()
		if h != nil {
			h.ServeHTTP(w, r)
			return
		}
		if status != 0 {
			w.Header().Set("Retry-After", "1")
			http.Error(w, `{"error":{"code":"unavailable","message":"storage unavailable"}}`, status)
			return
		}
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *server) authorized(w http.ResponseWriter, r *http.Request) bool {
	if r.Header.Get("Authorization") != "Bearer "+testToken {
		http.Error(w, `{"error":{"code":"unauthorized","message":"no token"}}`, http.StatusUnauthorized)
		return false
	}
	return true
}

// release adds and publishes a release and returns its target path and
// image bytes.
func (s *server) release(c tufota.TargetCustom, size int) (string, []byte) {
	s.t.Helper()
	data := randomBytes(size, uint64(size)+uint64(len(c.Version)))
	p, err := s.repo.AddRelease(c, "fw.bin", data)
	if err != nil {
		s.t.Fatal(err)
	}
	if err := s.repo.Publish(); err != nil {
		s.t.Fatal(err)
	}
	return p, data
}

// offerTarget makes the update endpoint offer target.
func (s *server) offerTarget(target string) {
	parts := strings.Split(target, "/")
	s.setOffer(map[string]string{"target": target, "name": parts[0], "version": parts[1], "rollout_id": "r-1"})
}

func (s *server) setOffer(o any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.offer = o
}

func (s *server) count(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests[path]
}

func (s *server) totalTUFRequests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for p, c := range s.requests {
		if strings.HasPrefix(p, "/tuf/") {
			n += c
		}
	}
	return n
}

// targetFile returns the served path of a target's bytes.
func (s *server) targetFile(target string, data []byte) string {
	sum, _ := repofixtures.Hashes(data)
	return repofixtures.TargetFilePath(target, sum)
}

func (s *server) client(t *testing.T, edit func(*client.Config)) *client.Client {
	t.Helper()
	cfg := client.Config{
		ServerURL:      s.srv.URL,
		TrustedRoot:    s.repo.TrustedRoot(),
		StateDir:       t.TempDir(),
		DeviceID:       testDevice,
		Token:          testToken,
		HardwareID:     testHardware,
		CurrentVersion: "1.0.0",
		HTTPClient:     s.srv.Client(),
		Retry:          client.RetryPolicy{Sleep: noSleep},
	}
	if edit != nil {
		edit(&cfg)
	}
	c, err := client.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// noSleep is a RetryPolicy.Sleep that returns at once.
func noSleep(ctx context.Context, _ time.Duration) error { return ctx.Err() }

func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 42))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func release(version string, hw ...string) tufota.TargetCustom {
	if len(hw) == 0 {
		hw = []string{testHardware}
	}
	return tufota.TargetCustom{Name: "pumpfw", Version: version, Hardware: hw, Notes: "test"}
}

func TestCheckDownloadValid(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	target, data := s.release(release("1.2.0"), 200_000)
	s.offerTarget(target)
	c := s.client(t, nil)

	upd, err := c.Check(t.Context())
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	if upd == nil {
		t.Fatal("Check returned no update")
	}
	sha256hex, sha512hex := repofixtures.Hashes(data)
	if upd.Target != target || upd.Name != "pumpfw" || upd.Version != "1.2.0" || upd.Length != int64(len(data)) ||
		upd.Hashes["sha256"] != sha256hex || upd.Hashes["sha512"] != sha512hex || upd.RolloutID != "r-1" ||
		upd.Custom.Notes != "test" {
		t.Fatalf("update = %+v", upd)
	}

	dst := filepath.Join(t.TempDir(), "fw.bin")
	if err := c.Download(t.Context(), upd, dst); err != nil {
		t.Fatalf("Download: %v", err)
	}
	got, err := os.ReadFile(dst)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("downloaded %d bytes, differ from the image", len(got))
	}
	assertNoFile(t, client.PartialPath(c, upd))

	if err := c.Report(t.Context(), client.NewReport(upd, client.StateInstalled, nil)); err != nil {
		t.Fatalf("Report: %v", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// The report says how the image came: the full image, its bytes.
	want := map[string]string{"device_id": testDevice, "target": target, "version": "1.2.0", "state": "installed", "rollout_id": "r-1",
		"download": "full", "bytes": fmt.Sprint(len(data))}
	if len(s.reports) != 1 || !equalMaps(s.reports[0], want) {
		t.Fatalf("reports = %v, want [%v]", s.reports, want)
	}
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func assertNoFile(t *testing.T, name string) {
	t.Helper()
	if _, err := os.Stat(name); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("%s exists (stat err %v), want it gone", name, err)
	}
}

func TestNothingToDo(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	s.release(release("1.2.0"), 1000)
	c := s.client(t, nil)
	upd, err := c.Check(t.Context())
	if err != nil || upd != nil {
		t.Fatalf("Check = %v, %v; want nil, nil", upd, err)
	}
	if n := s.totalTUFRequests(); n != 0 {
		t.Fatalf("%d metadata requests for a 204, want 0", n)
	}
}

func TestDownloadRefusesBadBytes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		mangle func([]byte) []byte
		want   error
	}{
		{"tampered byte", func(b []byte) []byte { b = bytes.Clone(b); b[len(b)/2] ^= 1; return b }, client.ErrHashMismatch},
		{"truncated", func(b []byte) []byte { return b[:len(b)-10] }, client.ErrLengthMismatch},
		{"extended", func(b []byte) []byte { return append(bytes.Clone(b), 'x') }, client.ErrLengthMismatch},
		{"endless", func(b []byte) []byte { return append(bytes.Clone(b), make([]byte, 1<<20)...) }, client.ErrLengthMismatch},
		{"empty", func(b []byte) []byte { return []byte{} }, client.ErrLengthMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newServer(t)
			target, data := s.release(release("1.2.0"), 50_000)
			s.offerTarget(target)
			s.repo.SetFile(s.targetFile(target, data), tt.mangle(data))
			c := s.client(t, nil)
			upd, err := c.Check(t.Context())
			if err != nil {
				t.Fatalf("Check: %v", err)
			}
			dst := filepath.Join(t.TempDir(), "fw.bin")
			err = c.Download(t.Context(), upd, dst)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Download error = %v, want %v", err, tt.want)
			}
			assertNoFile(t, dst)
			assertNoFile(t, client.PartialPath(c, upd))
		})
	}
}

func TestCheckPolicy(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		current string
		rel     tufota.TargetCustom
		offer   func(target string) map[string]string // nil: offer the release
		want    error                                 // nil: update accepted
	}{
		{name: "newer", current: "1.0.0", rel: release("1.2.0")},
		{name: "first install", current: "", rel: release("0.1.0")},
		{name: "wrong hardware", current: "1.0.0", rel: release("1.2.0", "monitor-b"), want: client.ErrWrongHardware},
		{name: "older", current: "2.0.0", rel: release("1.2.0"), want: client.ErrNotNewer},
		{name: "same", current: "1.2.0", rel: release("1.2.0"), want: client.ErrNotNewer},
		{name: "prerelease of same", current: "1.2.0", rel: release("1.2.0-rc.1"), want: client.ErrNotNewer},
		{name: "allowed downgrade", current: "1.3.0", rel: withDowngrade(release("1.2.0"), "1.3.0")},
		{name: "downgrade allowed from other version", current: "1.3.1", rel: withDowngrade(release("1.2.0"), "1.3.0"), want: client.ErrNotNewer},
		{name: "not in metadata", current: "1.0.0", rel: release("1.2.0"), want: client.ErrNotSigned,
			offer: func(string) map[string]string {
				return map[string]string{"target": "pumpfw/9.9.9/fw.bin", "name": "pumpfw", "version": "9.9.9"}
			}},
		{name: "other file of release", current: "1.0.0", rel: release("1.2.0"), want: client.ErrNotSigned,
			offer: func(string) map[string]string {
				return map[string]string{"target": "pumpfw/1.2.0/other.bin", "name": "pumpfw", "version": "1.2.0"}
			}},
		{name: "malformed target", current: "1.0.0", rel: release("1.2.0"), want: client.ErrServer,
			offer: func(string) map[string]string {
				return map[string]string{"target": "../../etc/passwd", "name": "x", "version": "1.0.0"}
			}},
		{name: "name does not match target", current: "1.0.0", rel: release("1.2.0"), want: client.ErrServer,
			offer: func(target string) map[string]string {
				return map[string]string{"target": target, "name": "other", "version": "1.2.0"}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newServer(t)
			target, _ := s.release(tt.rel, 1000)
			if tt.offer != nil {
				s.setOffer(tt.offer(target))
			} else {
				s.offerTarget(target)
			}
			c := s.client(t, func(cfg *client.Config) { cfg.CurrentVersion = tt.current })
			upd, err := c.Check(t.Context())
			if tt.want == nil {
				if err != nil || upd == nil || upd.Version != tt.rel.Version {
					t.Fatalf("Check = %+v, %v; want version %s", upd, err, tt.rel.Version)
				}
				return
			}
			if !errors.Is(err, tt.want) || upd != nil {
				t.Fatalf("Check = %+v, %v; want error %v", upd, err, tt.want)
			}
		})
	}
}

func withDowngrade(c tufota.TargetCustom, from ...string) tufota.TargetCustom {
	c.AllowDowngradeFrom = from
	return c
}

func TestSignedCustomMustMatchOffer(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	// The target path says 2.0.0 but the signed custom metadata says 1.2.0:
	// the server may not promote a signed image to another version.
	data := randomBytes(1000, 7)
	custom, err := tufota.MarshalCustom(release("1.2.0"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.repo.AddTarget("targets", "pumpfw/2.0.0/fw.bin", data, custom); err != nil {
		t.Fatal(err)
	}
	if _, err := s.repo.AddTarget("targets", "pumpfw/3.0.0/fw.bin", data, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.repo.Publish(); err != nil {
		t.Fatal(err)
	}
	for _, target := range []string{"pumpfw/2.0.0/fw.bin", "pumpfw/3.0.0/fw.bin"} {
		s.offerTarget(target)
		upd, err := s.client(t, nil).Check(t.Context())
		if !errors.Is(err, client.ErrNotSigned) {
			t.Fatalf("%s: Check = %+v, %v; want ErrNotSigned", target, upd, err)
		}
	}
}

func TestMissingMetadataFailsFast(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	target, _ := s.release(release("1.2.0"), 1000)
	s.offerTarget(target)
	s.repo.SetFile("timestamp.json", nil)
	c := s.client(t, func(cfg *client.Config) {
		cfg.Retry = client.RetryPolicy{Attempts: 10, Sleep: func(context.Context, time.Duration) error {
			t.Error("the client slept before retrying a 404")
			return nil
		}}
	})
	_, err := c.Check(t.Context())
	if !errors.Is(err, client.ErrMetadata) {
		t.Fatalf("Check error = %v, want ErrMetadata", err)
	}
	// One request for 2.root.json (404 ends the root walk), one for
	// timestamp.json (404 is final): no retries.
	if got := s.count("/tuf/timestamp.json"); got != 1 {
		t.Fatalf("timestamp.json fetched %d times, want 1", got)
	}
	if got := s.totalTUFRequests(); got != 2 {
		t.Fatalf("%d metadata requests, want 2", got)
	}
}

func TestTemporaryFailuresRetriedUpToCap(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	target, _ := s.release(release("1.2.0"), 1000)
	s.offerTarget(target)
	var (
		mu     sync.Mutex
		delays []time.Duration
	)
	c := s.client(t, func(cfg *client.Config) {
		cfg.Retry = client.RetryPolicy{Attempts: 5, BaseDelay: time.Second, MaxDelay: 4 * time.Second,
			Sleep: func(_ context.Context, d time.Duration) error {
				mu.Lock()
				delays = append(delays, d)
				mu.Unlock()
				return nil
			}}
	})
	s.failPath("/api/v1/device/update", http.StatusServiceUnavailable)
	_, err := c.Check(t.Context())
	var se *client.ServerError
	if !errors.Is(err, client.ErrServer) || !errors.As(err, &se) || se.Status != http.StatusServiceUnavailable {
		t.Fatalf("Check error = %v, want a 503 ServerError", err)
	}
	if got := s.count("/api/v1/device/update"); got != 5 {
		t.Fatalf("update endpoint asked %d times, want 5 (the attempt cap)", got)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(delays) != 4 {
		t.Fatalf("slept %d times, want 4", len(delays))
	}
	for i, d := range delays {
		ceiling := min(time.Second<<i, 4*time.Second)
		if d < ceiling/2 || d > ceiling {
			t.Errorf("delay %d = %v, want within [%v, %v]", i, d, ceiling/2, ceiling)
		}
	}
}

// handle serves path with h instead of the repository.
func (s *server) handle(path string, h http.Handler) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.override[path] = h
}

// failPath makes the server answer status to every request for path.
func (s *server) failPath(path string, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail[path] = status
}

func TestUnauthorizedIsServerError(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	target, _ := s.release(release("1.2.0"), 1000)
	s.offerTarget(target)
	c := s.client(t, func(cfg *client.Config) { cfg.Token = "wrong" })
	_, err := c.Check(t.Context())
	var se *client.ServerError
	if !errors.As(err, &se) || se.Status != http.StatusUnauthorized || se.Code != "unauthorized" {
		t.Fatalf("Check error = %v, want 401 unauthorized", err)
	}
	if got := s.count("/api/v1/device/update"); got != 1 {
		t.Fatalf("a 401 was asked %d times, want 1", got)
	}
}

func TestMarkInstalledIsAntiRollbackState(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	target, _ := s.release(release("1.2.0"), 1000)
	s.offerTarget(target)
	state := t.TempDir()
	c := s.client(t, func(cfg *client.Config) { cfg.StateDir = state; cfg.CurrentVersion = "" })
	upd, err := c.Check(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := c.MarkInstalled(t.Context(), upd); err != nil {
		t.Fatal(err)
	}
	// A new client on the same state dir (a reboot) knows 1.2.0 is installed
	// and refuses to reinstall it.
	c2 := s.client(t, func(cfg *client.Config) { cfg.StateDir = state; cfg.CurrentVersion = "" })
	if v := c2.CurrentVersion(); v != "1.2.0" {
		t.Fatalf("CurrentVersion after restart = %q, want 1.2.0", v)
	}
	if _, err := c2.Check(t.Context()); !errors.Is(err, client.ErrNotNewer) {
		t.Fatalf("Check after install = %v, want ErrNotNewer", err)
	}
}

func TestNewValidatesConfig(t *testing.T) {
	t.Parallel()
	good := client.Config{ServerURL: "https://ota.example", TrustedRoot: []byte("{}"), DeviceID: "d1", HardwareID: "hw"}
	tests := []struct {
		name string
		edit func(*client.Config)
	}{
		{"relative URL", func(c *client.Config) { c.ServerURL = "/x" }},
		{"ftp URL", func(c *client.Config) { c.ServerURL = "ftp://x" }},
		{"no root", func(c *client.Config) { c.TrustedRoot = nil }},
		{"no state dir", func(c *client.Config) { c.StateDir = "" }},
		{"bad device", func(c *client.Config) { c.DeviceID = "../x" }},
		{"no hardware", func(c *client.Config) { c.HardwareID = "" }},
		{"bad version", func(c *client.Config) { c.CurrentVersion = "v1" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := good
			cfg.StateDir = t.TempDir()
			tt.edit(&cfg)
			if _, err := client.New(cfg); !errors.Is(err, tufota.ErrInvalid) {
				t.Fatalf("New error = %v, want ErrInvalid", err)
			}
		})
	}
}
