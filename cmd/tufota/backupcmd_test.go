package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata/config"
	"github.com/theupdateframework/go-tuf/v2/metadata/updater"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/apiclient"
	"github.com/tufota/tufota/audit"
	"github.com/tufota/tufota/backup"
	"github.com/tufota/tufota/client"
	"github.com/tufota/tufota/internal/datadir"
	"github.com/tufota/tufota/internal/testenv"
)

// serveDir starts tufota server on an existing repository directory and
// returns its URL and an HTTP client that trusts it.
func serveDir(t *testing.T, dir string, env map[string]string) (string, *http.Client) {
	t.Helper()
	urlFile := filepath.Join(t.TempDir(), "url")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		var out, errOut bytes.Buffer
		done <- run(ctx, []string{"server", "--dir", dir, "--addr", "127.0.0.1:0", "--tls-self-signed", "--url-file", urlFile, "--log-level", "warn"},
			env, strings.NewReader(""), &out, &errOut)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("server on %s: %v", dir, err)
		}
	})
	var url string
	for deadline := time.Now().Add(2 * time.Minute); ; { // a liveness bound, as in e2e_test.go
		if b, err := os.ReadFile(urlFile); err == nil {
			url = strings.TrimSpace(string(b))
			break
		}
		select {
		case err := <-done:
			t.Fatalf("server on %s exited: %v", dir, err)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("server did not write its URL")
		}
	}
	pem, err := os.ReadFile(filepath.Join(dir, "tls-self-signed.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	return url, &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}, Timeout: 30 * time.Second}
}

// restoredFleet is what a backup test sets up before backing up: two
// releases and a device assigned the newer one.
type restoredFleet struct {
	fw       map[string][]byte // target path -> bytes
	devToken string
}

func setUpFleet(t *testing.T, h *harness, size int) restoredFleet {
	t.Helper()
	f := restoredFleet{fw: map[string][]byte{}}
	for _, v := range []string{"1.0.0", "1.1.0"} {
		p, b := h.writeFirmware("pump.bin", size)
		h.mustCLI("release", "push", p, "--name", "pump-fw", "--version", v, "--hardware", "pump-a")
		f.fw["pump-fw/"+v+"/pump.bin"] = b
	}
	f.devToken = h.registerDevice("dev-1", "pump-a", "1.0.0")
	h.mustCLI("device", "assign", "dev-1", "pump-fw@1.1.0")
	return f
}

// checkRestored serves the restored directory and has both go-tuf's stock
// updater and tufota's client verify and download from it.
func checkRestored(t *testing.T, h *harness, dir string, f restoredFleet) {
	t.Helper()
	url, hc := serveDir(t, dir, h.env)

	cfg, err := config.New(url+"/tuf", h.root)
	if err != nil {
		t.Fatal(err)
	}
	cfg.LocalMetadataDir, cfg.LocalTargetsDir = t.TempDir(), t.TempDir()
	cfg.RemoteTargetsURL = url + "/tuf/targets"
	cfg.PrefixTargetsWithHash = true
	if err := cfg.SetDefaultFetcherTransport(apiclient.New(url, f.devToken, apiclient.WithHTTPClient(hc)).Transport()); err != nil {
		t.Fatal(err)
	}
	up, err := updater.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := up.Refresh(); err != nil {
		t.Fatalf("stock updater on the restored repository: %v", err)
	}
	for p, want := range f.fw {
		ti, err := up.GetTargetInfo(p)
		if err != nil {
			t.Fatalf("GetTargetInfo(%s): %v", p, err)
		}
		_, got, err := up.DownloadTarget(ti, filepath.Join(cfg.LocalTargetsDir, ti.Hashes["sha256"].String()), "")
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("DownloadTarget(%s) from the restored repository: %v (equal %v)", p, err, bytes.Equal(got, want))
		}
	}

	// The device token, the device and its assignment came back with the
	// database: the device is offered 1.1.0 and verifies it.
	c, err := client.New(client.Config{ServerURL: url, TrustedRoot: h.root, StateDir: t.TempDir(), DeviceID: "dev-1",
		Token: f.devToken, HardwareID: "pump-a", CurrentVersion: "1.0.0", HTTPClient: hc})
	if err != nil {
		t.Fatal(err)
	}
	upd, err := c.Check(context.Background())
	if err != nil || upd == nil || upd.Version != "1.1.0" {
		t.Fatalf("Check on the restored server = %+v, %v; want 1.1.0", upd, err)
	}
	dst := filepath.Join(t.TempDir(), "img")
	if err := c.Download(context.Background(), upd, dst); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(dst); !bytes.Equal(got, f.fw["pump-fw/1.1.0/pump.bin"]) {
		t.Fatal("image from the restored server differs")
	}
}

func TestBackupRestoreSQLiteFile(t *testing.T) {
	h := startHarness(t)
	f := setUpFleet(t, h, 200<<10)
	bdir := filepath.Join(t.TempDir(), "backup")
	// The server is running: backup takes a consistent copy anyway.
	var br backup.DirResult
	if err := json.Unmarshal([]byte(h.mustCLI("backup", "--dir", h.dir, "--to", bdir, "-o", "json")), &br); err != nil {
		t.Fatal(err)
	}
	if br.TargetsVersion < 2 || br.Blobs == 0 || len(br.ManifestSHA256) != 64 {
		t.Fatalf("backup result = %+v", br)
	}
	newDir := filepath.Join(t.TempDir(), "restored")
	var rr backup.RestoreResult
	out := h.mustCLI("restore", "--from", bdir, "--dir", newDir, "--manifest-sha256", br.ManifestSHA256, "-o", "json")
	if err := json.Unmarshal([]byte(out), &rr); err != nil {
		t.Fatal(err)
	}
	if rr.Repository.Releases != 2 || rr.Repository.Targets != 2 || !rr.Audit.OK || rr.Audit.Entries == 0 {
		t.Fatalf("restore result = %+v", rr)
	}
	// The key files came back byte for byte (still encrypted).
	for _, k := range []string{"keys/root.key", "keys/audit.key", "root.json"} {
		a, _ := os.ReadFile(filepath.Join(h.dir, k))
		b, err := os.ReadFile(filepath.Join(newDir, k))
		if err != nil || !bytes.Equal(a, b) {
			t.Fatalf("%s differs after restore (%v)", k, err)
		}
	}
	checkRestored(t, h, newDir, f)
}

func TestRestoreRefusesTamperedBackup(t *testing.T) {
	h := startHarness(t)
	setUpFleet(t, h, 4096)
	bdir := filepath.Join(t.TempDir(), "backup")
	h.mustCLI("backup", "--dir", h.dir, "--to", bdir)
	var m struct {
		Files []struct{ Path string } `json:"files"`
	}
	mb, _ := os.ReadFile(filepath.Join(bdir, "manifest.json"))
	if err := json.Unmarshal(mb, &m); err != nil {
		t.Fatal(err)
	}
	var target, table string
	for _, f := range m.Files {
		switch {
		case strings.HasPrefix(f.Path, "blobs/targets/") && target == "":
			target = f.Path
		case f.Path == "db/audit_entries.jsonl":
			table = f.Path
		}
	}
	if target == "" || table == "" {
		t.Fatalf("backup lacks a target blob or the audit table: %v", m.Files)
	}
	restore := func(args ...string) (string, error) {
		newDir := filepath.Join(t.TempDir(), "restored")
		_, err := h.runCLI(append([]string{"restore", "--from", bdir, "--dir", newDir}, args...)...)
		if _, serr := os.Stat(newDir); serr == nil {
			t.Errorf("restore %v created %s although it refused the backup", args, newDir)
		}
		return newDir, err
	}
	cases := []struct {
		name    string
		tamper  func() func() // returns an undo
		args    []string
		wantMsg string
	}{
		{"flipped byte in a target", func() func() { return flipByte(t, filepath.Join(bdir, target), 100) }, nil, target},
		{"flipped byte in the audit table", func() func() { return flipByte(t, filepath.Join(bdir, table), 40) }, nil, table},
		{"extra file", func() func() {
			p := filepath.Join(bdir, "blobs", "targets", "evil.bin")
			if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
				t.Fatal(err)
			}
			return func() { os.Remove(p) }
		}, nil, "blobs/targets/evil.bin is not listed"},
		{"pinned manifest hash differs", func() func() { return func() {} }, []string{"--manifest-sha256", strings.Repeat("0", 64)}, "not the pinned"},
	}
	for _, tc := range cases {
		undo := tc.tamper()
		_, err := restore(tc.args...)
		undo()
		t.Logf("%s: %v", tc.name, err)
		if err == nil || !errors.Is(err, tufota.ErrInvalid) || !strings.Contains(err.Error(), tc.wantMsg) {
			t.Errorf("%s: restore error = %v, want EInvalid naming %q", tc.name, err, tc.wantMsg)
		}
	}

	// A wrong audit key: the restored log does not verify under it, and the
	// half-restored directory is removed.
	cfg, err := datadir.Load(h.dir)
	if err != nil {
		t.Fatal(err)
	}
	otherPub, _, _ := ed25519.GenerateKey(nil)
	otherKey, err := audit.VerifierKey(cfg.AuditOrigin, otherPub)
	if err != nil {
		t.Fatal(err)
	}
	_, err = restore("--audit-key", otherKey)
	t.Logf("another audit key: %v", err)
	if err == nil || !strings.Contains(err.Error(), "checkpoint") {
		t.Errorf("restore with another audit key: %v, want a checkpoint verification failure", err)
	}

	// Restore into a non-empty directory is refused and leaves it alone.
	busy := t.TempDir()
	if err := os.WriteFile(filepath.Join(busy, "keep"), []byte("mine"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := h.runCLI("restore", "--from", bdir, "--dir", busy); !errors.Is(err, tufota.ErrConflict) {
		t.Errorf("restore into a non-empty dir: %v, want a conflict", err)
	}
	if entries, _ := os.ReadDir(busy); len(entries) != 1 {
		t.Errorf("restore touched the non-empty dir: %v", entries)
	}
	// Backup into a non-empty directory is refused too.
	if _, err := h.runCLI("backup", "--dir", h.dir, "--to", busy); !errors.Is(err, tufota.ErrConflict) {
		t.Errorf("backup into a non-empty dir: %v, want a conflict", err)
	}
}

// flipByte flips one byte of a file and returns a function that restores it.
func flipByte(t *testing.T, p string, off int) func() {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	orig := append([]byte(nil), b...)
	b[off%len(b)] ^= 0x01
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return func() { _ = os.WriteFile(p, orig, 0o600) }
}

// TestBackupFromS3PostgresRestoreToFileSQLite backs up a deployment on
// real MinIO and PostgreSQL and restores it onto the embedded backends.
func TestBackupFromS3PostgresRestoreToFileSQLite(t *testing.T) {
	endpoint, access, secret := testenv.MinIO(t)
	pg := testenv.Postgres(t)
	env := map[string]string{"AWS_ACCESS_KEY_ID": access, "AWS_SECRET_ACCESS_KEY": secret}
	h := startHarnessFull(t, env, []string{
		"--storage", "s3://tufota-backup/src?endpoint=" + endpoint + "&secure=false",
		"--db", pg,
	})
	f := setUpFleet(t, h, 6<<20+5) // multipart upload at the source
	bdir := filepath.Join(t.TempDir(), "backup")
	h.mustCLI("backup", "--dir", h.dir, "--to", bdir)
	newDir := filepath.Join(t.TempDir(), "restored")
	h.mustCLI("restore", "--from", bdir, "--dir", newDir)
	for _, local := range []string{"blobs", "tufota.db"} {
		if _, err := os.Stat(filepath.Join(newDir, local)); err != nil {
			t.Fatalf("restored repository lacks %s: %v", local, err)
		}
	}
	checkRestored(t, h, newDir, f)

	// And back into a fresh PostgreSQL database and bucket prefix; a second
	// restore into the same (now non-empty) stores is refused.
	pg2 := testenv.Postgres(t)
	s3dst := "s3://tufota-backup/restored?endpoint=" + endpoint + "&secure=false"
	h.mustCLI("restore", "--from", bdir, "--dir", filepath.Join(t.TempDir(), "r2"), "--storage", s3dst, "--db", pg2)
	if _, err := h.runCLI("restore", "--from", bdir, "--dir", filepath.Join(t.TempDir(), "r3"), "--storage", s3dst, "--db", pg2); !errors.Is(err, tufota.ErrConflict) {
		t.Fatalf("restore into non-empty stores: %v, want a conflict", err)
	}
}
