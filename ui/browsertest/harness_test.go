package browsertest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tufota/tufota/client"
)

// tufotaServer is a real tufota server, the binary built from this tree,
// serving TLS on loopback.
type tufotaServer struct {
	t          *testing.T
	bin, dir   string
	url        string
	caFile     string
	adminToken string
	root       []byte
	hc         *http.Client
	env        []string
}

// buildTufota builds cmd/tufota into a temporary directory.
func buildTufota(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "tufota")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/tufota/tufota/cmd/tufota").CombinedOutput()
	if err != nil {
		t.Fatalf("go build cmd/tufota: %v\n%s", err, out)
	}
	return bin
}

// startServer runs tufota init and tufota server (TLS, self-signed, a fast
// rollout controller) and waits until it serves.
func startServer(t *testing.T, bin string) *tufotaServer {
	t.Helper()
	pass := make([]byte, 16)
	_, _ = rand.Read(pass)
	s := &tufotaServer{t: t, bin: bin, dir: filepath.Join(t.TempDir(), "repo")}
	s.env = append(os.Environ(), "TUFOTA_KEY_PASSPHRASE="+hex.EncodeToString(pass))
	initCmd := exec.Command(bin, "init", "--dir", s.dir, "-o", "json")
	initCmd.Env = s.env
	out, err := initCmd.Output()
	if err != nil {
		t.Fatalf("tufota init: %v", err)
	}
	var res struct {
		AdminToken string `json:"admin_token"`
		Root       string `json:"root"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("tufota init -o json: %v", err)
	}
	s.adminToken = res.AdminToken
	if s.root, err = os.ReadFile(res.Root); err != nil {
		t.Fatal(err)
	}
	urlFile := filepath.Join(t.TempDir(), "url")
	ctx, cancel := context.WithCancel(context.Background())
	var logs bytes.Buffer
	srv := exec.CommandContext(ctx, bin, "server", "--dir", s.dir, "--addr", "127.0.0.1:0", "--tls-self-signed",
		"--url-file", urlFile, "--controller-interval", "200ms", "--log-level", "warn")
	srv.Env, srv.Stdout, srv.Stderr = s.env, &logs, &logs
	srv.Cancel = func() error { return srv.Process.Signal(os.Interrupt) }
	srv.WaitDelay = 20 * time.Second
	if err := srv.Start(); err != nil {
		t.Fatalf("start tufota server: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Wait() }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) && !strings.Contains(err.Error(), "interrupt") {
			t.Errorf("tufota server: %v\n%s", err, logs.String())
		}
		if t.Failed() {
			t.Logf("server log:\n%s", logs.String())
		}
	})
	deadline := time.Now().Add(2 * time.Minute) // a liveness bound: key unlocks are slow on a loaded machine
	for {
		b, err := os.ReadFile(urlFile)
		if err == nil && len(bytes.TrimSpace(b)) > 0 {
			s.url = strings.TrimSpace(string(b))
			break
		}
		select {
		case err := <-done:
			t.Fatalf("tufota server exited: %v\n%s", err, logs.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("tufota server did not write its URL")
		}
	}
	s.caFile = filepath.Join(s.dir, "tls-self-signed.pem")
	pemBytes, err := os.ReadFile(s.caFile)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(pemBytes)
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatalf("server certificate: %v", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	s.hc = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}, Timeout: 30 * time.Second}
	return s
}

// call sends a JSON request with token and decodes the JSON answer into
// out; it fails the test unless the status is 2xx.
func (s *tufotaServer) call(method, path, token string, body, out any) {
	s.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, s.url+path, rd)
	req.Header.Set("Authorization", "Bearer "+token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := s.hc.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		s.t.Fatalf("%s %s: status %d: %s", method, path, resp.StatusCode, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			s.t.Fatalf("%s %s: %v in %s", method, path, err, b)
		}
	}
}

// token creates a user named name with role, and a token of theirs.
func (s *tufotaServer) token(name, role string) string {
	s.t.Helper()
	var res struct {
		Token string `json:"token"`
	}
	s.call(http.MethodPost, "/api/v1/users", s.adminToken, map[string]any{"name": name, "roles": []string{role}}, nil)
	s.call(http.MethodPost, "/api/v1/tokens", s.adminToken, map[string]string{"name": name, "role": role, "user": name, "expires": "24h"}, &res)
	return res.Token
}

// pushRelease pushes a random image as name@version for hardware with a
// CycloneDX SBOM.
func (s *tufotaServer) pushRelease(name, version, hardware string) {
	s.t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	part := func(field, file, ctype string, data []byte) {
		h := textproto.MIMEHeader{}
		disp := fmt.Sprintf(`form-data; name=%q`, field)
		if file != "" {
			disp += fmt.Sprintf(`; filename=%q`, file)
		}
		h.Set("Content-Disposition", disp)
		h.Set("Content-Type", ctype)
		w, _ := mw.CreatePart(h)
		_, _ = w.Write(data)
	}
	meta, _ := json.Marshal(map[string]any{"name": name, "version": version, "hardware": []string{hardware}, "notes": "browser test image"})
	part("release", "", "application/json", meta)
	sbom, _ := json.Marshal(map[string]any{"bomFormat": "CycloneDX", "specVersion": "1.5", "version": 1,
		"components": []map[string]string{{"type": "firmware", "name": name, "version": version}}})
	part("sbom", "sbom.cdx.json", "application/json", sbom)
	img := make([]byte, 64<<10)
	_, _ = rand.Read(img)
	part("file", name+"-"+version+".bin", "application/octet-stream", img)
	_ = mw.Close()
	req, _ := http.NewRequest(http.MethodPost, s.url+"/api/v1/releases", &body)
	req.Header.Set("Authorization", "Bearer "+s.adminToken)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	resp, err := s.hc.Do(req)
	if err != nil {
		s.t.Fatalf("push release: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		b, _ := io.ReadAll(resp.Body)
		s.t.Fatalf("push release: status %d: %s", resp.StatusCode, b)
	}
}

// device is one simulated device: the real client package, an image file
// standing in for the flash (as tufota sim does).
type device struct {
	id, hw, version, token, dir string
	c                           *client.Client
	cVersion                    string
}

// enrollDevices enrolls n devices of hardware hw on version with a bulk
// enrollment token, tagged icu.
func (s *tufotaServer) enrollDevices(n int, hw, version string) []*device {
	s.t.Helper()
	var et struct {
		EnrollToken string `json:"enroll_token"`
	}
	s.call(http.MethodPost, "/api/v1/enroll-tokens", s.adminToken, map[string]any{"hardware": hw, "tags": []string{"icu"}, "expires": "1h"}, &et)
	var devs []*device
	for i := range n {
		d := &device{id: fmt.Sprintf("pump-%02d", i+1), hw: hw, version: version, dir: filepath.Join(s.t.TempDir(), "dev")}
		var res struct {
			Token string `json:"token"`
		}
		s.call(http.MethodPost, "/api/v1/device/enroll", et.EnrollToken, map[string]string{"device_id": d.id, "version": version}, &res)
		d.token = res.Token
		devs = append(devs, d)
	}
	return devs
}

// poll runs one check, download, install, report cycle of d.
func (s *tufotaServer) poll(ctx context.Context, d *device) error {
	if d.c == nil || d.cVersion != d.version {
		c, err := client.New(client.Config{ServerURL: s.url, TrustedRoot: s.root, StateDir: d.dir, DeviceID: d.id, Token: d.token,
			HardwareID: d.hw, CurrentVersion: d.version, HTTPClient: s.hc, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			return err
		}
		d.c, d.cVersion = c, d.version
	}
	upd, err := d.c.Check(ctx)
	if err != nil || upd == nil {
		return err
	}
	for _, st := range []client.State{client.StateDownloading} {
		if err := d.c.Report(ctx, client.NewReport(upd, st, nil)); err != nil {
			return err
		}
	}
	if err := d.c.Download(ctx, upd, filepath.Join(d.dir, "image.bin")); err != nil {
		_ = d.c.Report(ctx, client.NewReport(upd, client.StateFailed, err))
		return err
	}
	for _, st := range []client.State{client.StateDownloaded, client.StateInstalling} {
		if err := d.c.Report(ctx, client.NewReport(upd, st, nil)); err != nil {
			return err
		}
	}
	d.version = upd.Version
	return d.c.Report(ctx, client.NewReport(upd, client.StateInstalled, nil))
}

// runDevices polls every device every interval until ctx ends.
func (s *tufotaServer) runDevices(ctx context.Context, devs []*device, every time.Duration) *sync.WaitGroup {
	var wg sync.WaitGroup
	for _, d := range devs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.NewTicker(every)
			defer t.Stop()
			for {
				_ = s.poll(ctx, d) // a failed poll is tried again at the next tick, as a device would
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
			}
		}()
	}
	return &wg
}
