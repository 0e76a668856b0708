// Package e2e runs tufota end to end, as its users do: the tufota binary,
// built once per test package (Main), initialises a repository, serves it
// over TLS on a free loopback port, and is driven through its CLI; devices
// are the real client library. The end-to-end tests live in the packages
// below this one (release, rollout, delegation, hsm, replicas, audit), so
// that go test runs them in parallel; this package holds what they share.
// It is test support: nothing outside tests imports it.
package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tufota/tufota/client"
)

// bin is the tufota binary Main built.
var bin string

// Main builds cmd/tufota into a temporary directory (with -race when the
// tests run with it), runs the tests and removes the binary. Call it from
// TestMain: os.Exit(e2e.Main(m)).
func Main(m *testing.M) int {
	flag.Parse()
	if f := flag.Lookup("test.list"); f != nil && f.Value.String() != "" {
		return m.Run() // listing runs no test: no binary to build
	}
	dir, err := os.MkdirTemp("", "tufota-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	bin = filepath.Join(dir, "tufota")
	args := []string{"build", "-o", bin}
	if raceEnabled {
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, "github.com/tufota/tufota/cmd/tufota")...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: build tufota:", err)
		return 1
	}
	return m.Run()
}

// Run runs `tufota args...` to the end with env as its TUFOTA_* settings
// (the test process's other variables pass through, for SoftHSM and the
// like), as cmd/tufota's run(ctx, args, env, stdin, stdout, stderr) would.
// When ctx ends the process gets SIGTERM, as from an operator, and a
// server shuts down cleanly. A failure comes back as an error carrying
// what the CLI printed to stderr.
func Run(ctx context.Context, args []string, env map[string]string, stdin io.Reader, stdout, stderr io.Writer) error {
	if bin == "" {
		return errors.New("e2e: no tufota binary: call e2e.Main from TestMain")
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = time.Minute
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TUFOTA_") && !strings.HasPrefix(kv, "AWS_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var errBuf bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, io.MultiWriter(stderr, &errBuf)
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil, ctx.Err() != nil && cmd.ProcessState != nil && cmd.ProcessState.Success():
		return nil // a server that shut down cleanly on SIGTERM
	case errors.As(err, &exit):
		msg := strings.TrimSpace(errBuf.String())
		if i := strings.LastIndex(msg, "tufota: "); i >= 0 {
			msg = msg[:i] + msg[i+len("tufota: "):]
		}
		return &Error{Args: args, ExitCode: exit.ExitCode(), Stderr: msg}
	default:
		return fmt.Errorf("tufota %s: %w", strings.Join(args, " "), err)
	}
}

// Error is a tufota command that exited with an error.
type Error struct {
	Args     []string
	ExitCode int
	// Stderr is what the command printed to stderr, with its final
	// "tufota: " prefix taken off: the error message at the end.
	Stderr string
}

func (e *Error) Error() string { return e.Stderr }

// Harness is one repository and one running server, driven through the
// CLI. Env holds the TUFOTA_* settings every CLI call gets (server URL,
// admin token, CA, trust anchor, key passphrase).
type Harness struct {
	T          *testing.T
	Dir        string
	Env        map[string]string
	URL        string
	CAFile     string
	AdminToken string
	Root       []byte
	HC         *http.Client
}

// InitResult is what `tufota init -o json` prints.
type InitResult struct {
	AdminToken string              `json:"admin_token"`
	Root       string              `json:"root"`
	Dir        string              `json:"dir"`
	KeyIDs     map[string][]string `json:"key_ids"`
	Thresholds map[string]int      `json:"thresholds"`
	HashedBins int                 `json:"hashed_bins,omitempty"`
	AuditKey   string              `json:"audit_verifier_key"`
}

// RunCLI runs the CLI and returns stdout, or the error.
func (h *Harness) RunCLI(args ...string) (string, error) {
	h.T.Helper()
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err := Run(ctx, args, h.Env, strings.NewReader(""), &out, &errOut)
	return out.String(), err
}

// MustCLI runs the CLI and fails the test on an error.
func (h *Harness) MustCLI(args ...string) string {
	h.T.Helper()
	out, err := h.RunCLI(args...)
	if err != nil {
		h.T.Fatalf("tufota %s: %v", strings.Join(args, " "), err)
	}
	return out
}

// New makes a harness with a fresh key passphrase and env's settings; no
// repository or server yet.
func New(t *testing.T, env map[string]string) *Harness {
	t.Helper()
	pass := make([]byte, 16)
	_, _ = rand.Read(pass)
	h := &Harness{T: t, Dir: filepath.Join(t.TempDir(), "repo"), Env: map[string]string{"TUFOTA_KEY_PASSPHRASE": hex.EncodeToString(pass)}}
	maps.Copy(h.Env, env)
	return h
}

// Init runs tufota init with initFlags and records the admin token and
// the trust anchor.
func (h *Harness) Init(initFlags ...string) InitResult {
	h.T.Helper()
	var res InitResult
	if err := json.Unmarshal([]byte(h.MustCLI(append([]string{"init", "--dir", h.Dir, "-o", "json"}, initFlags...)...)), &res); err != nil {
		h.T.Fatalf("init -o json: %v", err)
	}
	if !strings.HasPrefix(res.AdminToken, "tft_") {
		h.T.Fatalf("admin token = %q, want a tft_ token", res.AdminToken)
	}
	h.AdminToken = res.AdminToken
	var err error
	if h.Root, err = os.ReadFile(res.Root); err != nil {
		h.T.Fatal(err)
	}
	return res
}

// Start inits a repository and serves it over TLS on a free port.
func Start(t *testing.T) *Harness {
	t.Helper()
	return StartWith(t)
}

// StartWith passes extra flags to tufota server.
func StartWith(t *testing.T, serverFlags ...string) *Harness {
	t.Helper()
	return StartFull(t, nil, nil, serverFlags...)
}

// StartFull passes extra flags to init and server, and extra environment
// to both.
func StartFull(t *testing.T, env map[string]string, initFlags []string, serverFlags ...string) *Harness {
	t.Helper()
	h := New(t, env)
	res := h.Init(initFlags...)
	urlFile := filepath.Join(t.TempDir(), "url")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var errOut SyncBuffer
	env = maps.Clone(h.Env) // the harness adds the server's URL to h.Env below
	go func() {
		args := append([]string{"server", "--dir", h.Dir, "--addr", "127.0.0.1:0", "--tls-self-signed", "--url-file", urlFile, "--log-level", "warn"}, serverFlags...)
		done <- Run(ctx, args, env, strings.NewReader(""), io.Discard, &errOut)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("server: %v", err)
		}
	})
	h.URL = WaitURL(t, urlFile, done)
	h.CAFile = filepath.Join(h.Dir, "tls-self-signed.pem")
	pem, err := os.ReadFile(h.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	h.HC = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}, Timeout: 30 * time.Second}
	h.Env["TUFOTA_SERVER"], h.Env["TUFOTA_TOKEN"], h.Env["TUFOTA_CA"] = h.URL, h.AdminToken, h.CAFile
	h.Env["TUFOTA_ROOT"] = res.Root // the trust anchor release sign verifies payloads against
	return h
}

// WaitURL waits until a server started with --url-file urlFile has
// written its URL, and returns it; done delivers the server's exit.
func WaitURL(t *testing.T, urlFile string, done chan error) string {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute) // a liveness bound: key unlocks (scrypt) are slow on a loaded machine
	for {
		if b, err := os.ReadFile(urlFile); err == nil {
			return strings.TrimSpace(string(b))
		}
		select {
		case err := <-done:
			done <- err
			t.Fatalf("server exited: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("server did not write its URL")
		}
	}
}

// WriteFirmware writes size random bytes to a file named name.
func (h *Harness) WriteFirmware(name string, size int) (string, []byte) {
	h.T.Helper()
	b := make([]byte, size)
	_, _ = rand.Read(b)
	p := filepath.Join(h.T.TempDir(), name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		h.T.Fatal(err)
	}
	return p, b
}

// DeviceToken returns a new token for device id, registering the device
// (hardware pump-a) first if it is not registered: the server issues device
// tokens only for registered devices.
func (h *Harness) DeviceToken(id string) string {
	h.T.Helper()
	if _, err := h.RunCLI("device", "show", id); err != nil {
		h.MustCLI("device", "register", id, "--hardware", "pump-a")
	}
	var res struct {
		Token string `json:"token"`
	}
	out := h.MustCLI("token", "create", "--name", id, "--role", "device", "--device-id", id, "-o", "json")
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		h.T.Fatalf("token create: %v in %q", err, out)
	}
	return res.Token
}

// RegisterDevice registers a device through the CLI and returns its token.
func (h *Harness) RegisterDevice(id, hw, version string) string {
	h.T.Helper()
	var res struct {
		Token string `json:"token"`
	}
	out := h.MustCLI("device", "register", id, "--hardware", hw, "--current-version", version, "-o", "json")
	if err := json.Unmarshal([]byte(out), &res); err != nil || res.Token == "" {
		h.T.Fatalf("device register: %v in %q", err, out)
	}
	return res.Token
}

// NewClient registers a device and returns its client library.
func (h *Harness) NewClient(serverURL, id, hw, version string) *client.Client {
	h.T.Helper()
	c, err := client.New(client.Config{
		ServerURL: serverURL, TrustedRoot: h.Root, StateDir: h.T.TempDir(),
		DeviceID: id, Token: h.RegisterDevice(id, hw, version), HardwareID: hw, CurrentVersion: version, HTTPClient: h.HC,
	})
	if err != nil {
		h.T.Fatal(err)
	}
	return c
}

// SnapshotTree lists every file under dir with its size and hash.
func SnapshotTree(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		rel, _ := filepath.Rel(dir, p)
		out = append(out, rel+" "+hex.EncodeToString(sum[:8]))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

// TargetBlob is the file that holds a target in the data dir.
func TargetBlob(t *testing.T, h *Harness, targetPath, sha string) string {
	t.Helper()
	dir, base := filepath.Split(targetPath)
	p := filepath.Join(h.Dir, "blobs", "targets", dir, sha+"."+base)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("target blob: %v", err)
	}
	return p
}

// MutateFile rewrites the file at p through f and returns what it held.
func MutateFile(t *testing.T, p string, f func([]byte) []byte) []byte {
	t.Helper()
	orig, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, f(bytes.Clone(orig)), 0o644); err != nil {
		t.Fatal(err)
	}
	return orig
}

// MITM serves a reverse proxy to the harness server over plain HTTP on
// loopback that rewrites response bodies.
func MITM(t *testing.T, h *Harness, rewrite func(path string, body []byte) []byte) string {
	t.Helper()
	target, _ := url.Parse(h.URL)
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.Transport = h.HC.Transport
	rp.ModifyResponse = func(resp *http.Response) error {
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		resp.Body.Close()
		nb := rewrite(resp.Request.URL.Path, b)
		if !bytes.Equal(nb, b) {
			resp.StatusCode = http.StatusOK
		}
		resp.Body = io.NopCloser(bytes.NewReader(nb))
		resp.ContentLength = int64(len(nb))
		resp.Header.Del("Content-Length")
		return nil
	}
	srv := httptest.NewServer(rp)
	t.Cleanup(srv.Close)
	return srv.URL
}

// SyncBuffer is a bytes.Buffer safe for a process's output and the test.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns what was written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
