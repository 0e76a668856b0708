package main

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
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/tufota/tufota/client"
)

// harness is one repository and one running server, driven through run().
type harness struct {
	t          *testing.T
	dir        string
	env        map[string]string
	url        string
	caFile     string
	adminToken string
	root       []byte
	hc         *http.Client
}

// runCLI runs the CLI and returns stdout, or the error.
func (h *harness) runCLI(args ...string) (string, error) {
	h.t.Helper()
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err := run(ctx, args, h.env, strings.NewReader(""), &out, &errOut)
	return out.String(), err
}

func (h *harness) mustCLI(args ...string) string {
	h.t.Helper()
	out, err := h.runCLI(args...)
	if err != nil {
		h.t.Fatalf("tufota %s: %v", strings.Join(args, " "), err)
	}
	return out
}

// startHarness inits a repository and serves it over TLS on a free port.
func startHarness(t *testing.T) *harness {
	t.Helper()
	return startHarnessWith(t)
}

// startHarnessWith passes extra flags to tufota server.
func startHarnessWith(t *testing.T, serverFlags ...string) *harness {
	t.Helper()
	return startHarnessFull(t, nil, nil, serverFlags...)
}

// startHarnessFull passes extra flags to init and server, and extra
// environment to both.
func startHarnessFull(t *testing.T, env map[string]string, initFlags []string, serverFlags ...string) *harness {
	t.Helper()
	pass := make([]byte, 16)
	_, _ = rand.Read(pass)
	h := &harness{t: t, dir: filepath.Join(t.TempDir(), "repo"), env: map[string]string{"TUFOTA_KEY_PASSPHRASE": hex.EncodeToString(pass)}}
	for k, v := range env {
		h.env[k] = v
	}
	var res initResult
	if err := json.Unmarshal([]byte(h.mustCLI(append([]string{"init", "--dir", h.dir, "-o", "json"}, initFlags...)...)), &res); err != nil {
		t.Fatalf("init -o json: %v", err)
	}
	if !strings.HasPrefix(res.AdminToken, "tft_") {
		t.Fatalf("admin token = %q, want a tft_ token", res.AdminToken)
	}
	h.adminToken = res.AdminToken
	var err error
	if h.root, err = os.ReadFile(res.Root); err != nil {
		t.Fatal(err)
	}
	urlFile := filepath.Join(t.TempDir(), "url")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		var out, errOut bytes.Buffer
		args := append([]string{"server", "--dir", h.dir, "--addr", "127.0.0.1:0", "--tls-self-signed", "--url-file", urlFile, "--log-level", "warn"}, serverFlags...)
		done <- run(ctx, args, h.env, strings.NewReader(""), &out, &errOut)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("server: %v", err)
		}
	})
	deadline := time.Now().Add(2 * time.Minute) // a liveness bound: key unlocks (scrypt) are slow on a loaded machine
	for {
		b, err := os.ReadFile(urlFile)
		if err == nil {
			h.url = strings.TrimSpace(string(b))
			break
		}
		select {
		case err := <-done:
			t.Fatalf("server exited: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("server did not write its URL")
		}
	}
	h.caFile = filepath.Join(h.dir, "tls-self-signed.pem")
	pem, err := os.ReadFile(h.caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	h.hc = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}, Timeout: 30 * time.Second}
	h.env["TUFOTA_SERVER"], h.env["TUFOTA_TOKEN"], h.env["TUFOTA_CA"] = h.url, h.adminToken, h.caFile
	h.env["TUFOTA_ROOT"] = res.Root // the trust anchor release sign verifies payloads against
	return h
}

func (h *harness) writeFirmware(name string, size int) (string, []byte) {
	h.t.Helper()
	b := make([]byte, size)
	_, _ = rand.Read(b)
	p := filepath.Join(h.t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		h.t.Fatal(err)
	}
	return p, b
}

// deviceToken returns a new token for device id, registering the device
// (hardware pump-a) first if it is not registered: the server issues device
// tokens only for registered devices.
func (h *harness) deviceToken(id string) string {
	h.t.Helper()
	if _, err := h.runCLI("device", "show", id); err != nil {
		h.mustCLI("device", "register", id, "--hardware", "pump-a")
	}
	var res struct {
		Token string `json:"token"`
	}
	out := h.mustCLI("token", "create", "--name", id, "--role", "device", "--device-id", id, "-o", "json")
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		h.t.Fatalf("token create: %v in %q", err, out)
	}
	return res.Token
}

// registerDevice registers a device through the CLI and returns its token.
func (h *harness) registerDevice(id, hw, version string) string {
	h.t.Helper()
	var res struct {
		Token string `json:"token"`
	}
	out := h.mustCLI("device", "register", id, "--hardware", hw, "--current-version", version, "-o", "json")
	if err := json.Unmarshal([]byte(out), &res); err != nil || res.Token == "" {
		h.t.Fatalf("device register: %v in %q", err, out)
	}
	return res.Token
}

func (h *harness) newClient(serverURL, id, hw, version string) *client.Client {
	h.t.Helper()
	c, err := client.New(client.Config{
		ServerURL: serverURL, TrustedRoot: h.root, StateDir: h.t.TempDir(),
		DeviceID: id, Token: h.registerDevice(id, hw, version), HardwareID: hw, CurrentVersion: version, HTTPClient: h.hc,
	})
	if err != nil {
		h.t.Fatal(err)
	}
	return c
}

// snapshotTree lists every file under dir with its size and hash.
func snapshotTree(t *testing.T, dir string) []string {
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

func TestEndToEndPushVerifyDownload(t *testing.T) {
	h := startHarness(t)
	fw, want := h.writeFirmware("pump.bin", 3<<20+17)
	var rel struct {
		TargetPath string `json:"target_path"`
		SHA256     string `json:"sha256"`
		State      string `json:"state"`
	}
	out := h.mustCLI("release", "push", fw, "--name", "pump-fw", "--version", "1.1.0", "--hardware", "pump-a,pump-b", "--notes", "fixes occlusion alarm", "-o", "json")
	if err := json.Unmarshal([]byte(out), &rel); err != nil {
		t.Fatalf("push -o json: %v in %q", err, out)
	}
	if rel.State != "published" || rel.TargetPath != "pump-fw/1.1.0/pump.bin" {
		t.Fatalf("pushed release = %+v, want published pump-fw/1.1.0/pump.bin", rel)
	}
	if sum := sha256.Sum256(want); rel.SHA256 != hex.EncodeToString(sum[:]) {
		t.Fatalf("sha256 = %s, want %x", rel.SHA256, sum)
	}

	ctx := context.Background()
	c := h.newClient(h.url, "dev-1", "pump-a", "1.0.0")
	// Releases reach devices only through rollouts or an explicit,
	// audited assignment.
	if upd, err := c.Check(ctx); err != nil || upd != nil {
		t.Fatalf("Check before any assignment = %+v, %v; want nil, nil", upd, err)
	}
	h.mustCLI("device", "assign", "dev-1", "pump-fw@1.1.0", "--reason", "bench test")
	upd, err := c.Check(ctx)
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	if upd == nil || upd.Version != "1.1.0" || upd.Target != rel.TargetPath {
		t.Fatalf("Check = %+v, want pump-fw 1.1.0", upd)
	}
	dst := filepath.Join(t.TempDir(), "image.bin")
	if err := c.Download(ctx, upd, dst); err != nil {
		t.Fatalf("Download: %v", err)
	}
	got, err := os.ReadFile(dst)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("downloaded image differs from the pushed one (err %v)", err)
	}

	// A device already on the assigned version is told there is nothing to do.
	c2 := h.newClient(h.url, "dev-2", "pump-b", "1.1.0")
	if _, err := h.runCLI("device", "assign", "dev-2", "pump-fw@1.1.0"); err == nil || !strings.Contains(err.Error(), "runs pump-fw@1.1.0 already") {
		t.Fatalf("assigning a device the release it runs: %v, want a refusal", err)
	}
	if upd, err := c2.Check(ctx); err != nil || upd != nil {
		t.Fatalf("Check on current device = %+v, %v; want nil, nil", upd, err)
	}

	t.Run("tampered byte", func(t *testing.T) {
		blob := targetBlob(t, h, rel.TargetPath, rel.SHA256)
		orig := mutateFile(t, blob, func(b []byte) []byte { b[len(b)/2] ^= 0x01; return b })
		defer os.WriteFile(blob, orig, 0o644)
		err := c.Download(ctx, upd, filepath.Join(t.TempDir(), "x.bin"))
		if !errors.Is(err, client.ErrHashMismatch) {
			t.Fatalf("Download of tampered image: %v, want ErrHashMismatch", err)
		}
	})
	t.Run("truncated file", func(t *testing.T) {
		blob := targetBlob(t, h, rel.TargetPath, rel.SHA256)
		orig := mutateFile(t, blob, func(b []byte) []byte { return b[:len(b)-1000] })
		defer os.WriteFile(blob, orig, 0o644)
		err := c.Download(ctx, upd, filepath.Join(t.TempDir(), "x.bin"))
		if !errors.Is(err, client.ErrLengthMismatch) {
			t.Fatalf("Download of truncated image: %v, want ErrLengthMismatch", err)
		}
	})
	t.Run("wrong hardware offered by a compromised server", func(t *testing.T) {
		mon, _ := h.writeFirmware("monitor.bin", 4096)
		h.mustCLI("release", "push", mon, "--name", "monitor-fw", "--version", "2.0.0", "--hardware", "monitor-x")
		// A man in the middle rewrites the server's assignment to offer the
		// monitor image to a pump; TUF metadata stays genuine.
		proxy := mitm(t, h, func(path string, body []byte) []byte {
			if path == "/api/v1/device/update" {
				return []byte(`{"target":"monitor-fw/2.0.0/monitor.bin","name":"monitor-fw","version":"2.0.0"}`)
			}
			return body
		})
		_, err := h.newClient(proxy, "dev-3", "pump-a", "1.0.0").Check(ctx)
		if !errors.Is(err, client.ErrWrongHardware) {
			t.Fatalf("Check offered a monitor image on a pump: %v, want ErrWrongHardware", err)
		}
		if !strings.Contains(err.Error(), "monitor-x") {
			t.Errorf("error %q does not name the target's hardware", err)
		}
	})
}

// targetBlob is the file that holds a target in the data dir.
func targetBlob(t *testing.T, h *harness, targetPath, sha string) string {
	t.Helper()
	dir, base := filepath.Split(targetPath)
	p := filepath.Join(h.dir, "blobs", "targets", dir, sha+"."+base)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("target blob: %v", err)
	}
	return p
}

func mutateFile(t *testing.T, p string, f func([]byte) []byte) []byte {
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

// mitm serves a reverse proxy to the harness server over plain HTTP on
// loopback that rewrites response bodies.
func mitm(t *testing.T, h *harness, rewrite func(path string, body []byte) []byte) string {
	t.Helper()
	target, _ := url.Parse(h.url)
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.Transport = h.hc.Transport
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

func TestReleasePushBadInput(t *testing.T) {
	h := startHarness(t)
	fw, _ := h.writeFirmware("fw.bin", 1024)
	empty := filepath.Join(t.TempDir(), "empty.bin")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	h.mustCLI("release", "push", fw, "--name", "pump-fw", "--version", "1.0.0", "--hardware", "pump-a")
	before := snapshotTree(t, filepath.Join(h.dir, "blobs"))

	push := func(extra ...string) []string {
		return append([]string{"release", "push"}, extra...)
	}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"missing file", push("/nonexistent/fw.bin", "--name", "x", "--version", "1.0.0", "--hardware", "a"), "no such file /nonexistent/fw.bin"},
		{"empty file", push(empty, "--name", "x", "--version", "1.0.0", "--hardware", "a"), "is empty"},
		{"not semver", push(fw, "--name", "x", "--version", "1.0", "--hardware", "a"), `version "1.0" is not a semantic version`},
		{"leading v", push(fw, "--name", "x", "--version", "v1.0.0", "--hardware", "a"), `version "v1.0.0" is not a semantic version`},
		{"duplicate", push(fw, "--name", "pump-fw", "--version", "1.0.0", "--hardware", "pump-a"), "release pump-fw@1.0.0 already exists"},
		{"dot-dot name", push(fw, "--name", "..", "--version", "1.0.0", "--hardware", "a"), `release name ".." must start with a letter or digit`},
		{"slash name", push(fw, "--name", "a/../../etc", "--version", "1.0.0", "--hardware", "a"), `release name "a/../../etc" must not contain ".."`},
		{"slash in name", push(fw, "--name", "pump/fw", "--version", "1.0.0", "--hardware", "a"), `release name "pump/fw" contains "/"`},
		{"bad hardware", push(fw, "--name", "x", "--version", "1.0.0", "--hardware", "../a"), `hardware ID "../a" must start with a letter or digit`},
		{"unknown flag", push(fw, "--name", "x", "--version", "1.0.0", "--hardware", "a", "--colour", "red"), "unknown flag: --colour"},
		{"missing flag", push(fw, "--name", "x", "--hardware", "a"), `required flag(s) "version" not set`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := h.runCLI(tc.args...)
			if err == nil {
				t.Fatalf("tufota %v succeeded, want an error containing %q", tc.args, tc.want)
			}
			if msg := err.Error(); !strings.Contains(msg, tc.want) || strings.Contains(msg, "\n") {
				t.Fatalf("error = %q, want one line containing %q", msg, tc.want)
			}
		})
	}
	if after := snapshotTree(t, filepath.Join(h.dir, "blobs")); strings.Join(after, "\n") != strings.Join(before, "\n") {
		t.Fatalf("bad pushes changed the repository:\nbefore %v\nafter  %v", before, after)
	}
}

func TestInitRefusesExistingRepository(t *testing.T) {
	h := startHarness(t)
	_, err := h.runCLI("init", "--dir", h.dir)
	if err == nil || !strings.Contains(err.Error(), "refusing to overwrite") {
		t.Fatalf("second init: %v, want a refusal", err)
	}
}
