package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tufota/tufota/internal/datadir"
)

// harness is one repository and one running server, driven through run()
// in this process: for the tests that need the CLI's own errors (codes)
// or its process (the data directory lock names the pid). The end-to-end
// tests run the binary instead (package e2e).
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
	return startHarnessFull(t, nil, nil)
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
	var res datadir.InitResult
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
