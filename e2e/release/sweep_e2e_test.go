package release

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tufota/tufota/e2e"
)

// writeStale writes size bytes to dir/name with a modification time of
// age ago.
func writeStale(t *testing.T, dir, name string, size int, age time.Duration) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, make([]byte, size), 0o600); err != nil {
		t.Fatal(err)
	}
	mt := time.Now().Add(-age)
	if err := os.Chtimes(p, mt, mt); err != nil {
		t.Fatal(err)
	}
	return p
}

// waitGone waits (at most 30 s) until none of paths exists.
func waitGone(t *testing.T, paths ...string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var left []string
		for _, p := range paths {
			if _, err := os.Stat(p); err == nil {
				left = append(left, filepath.Base(p))
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("abandoned staging files still there after 30 s: %v", left)
		}
	}
}

// TestServerStartSweepsStaging is the end-to-end regression test of issue
// 13 item 4: a server started, with its default flags, on a data directory
// where crashed pushes left a staged upload no release names and the
// temporary file of a write that never finished removes both, and keeps a
// younger one that may belong to a write still running elsewhere. Before
// the fix they stayed forever.
func TestServerStartSweepsStaging(t *testing.T) {
	t.Parallel()
	pass := make([]byte, 16)
	_, _ = rand.Read(pass)
	env := map[string]string{"TUFOTA_KEY_PASSPHRASE": hex.EncodeToString(pass)}
	dir := filepath.Join(t.TempDir(), "repo")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errOut bytes.Buffer
	if err := e2e.Run(ctx, []string{"init", "--dir", dir}, env, strings.NewReader(""), &out, &errOut); err != nil {
		t.Fatalf("init: %v: %s", err, errOut.String())
	}
	staging := filepath.Join(dir, "blobs", "staging")
	stale := []string{
		writeStale(t, staging, "00112233445566778899aabbccddeeff", 1<<20, 2*time.Hour),
		writeStale(t, staging, ".tufota-tmp-00112233445566778899aabb", 1<<20, 2*time.Hour),
	}
	young := writeStale(t, staging, ".tufota-tmp-ffeeddccbbaa998877665544", 100, 0)
	urlFile := filepath.Join(t.TempDir(), "url")
	done := make(chan error, 1)
	go func() {
		var out, errOut bytes.Buffer
		done <- e2e.Run(ctx, []string{"server", "--dir", dir, "--addr", "127.0.0.1:0", "--insecure-http", "--url-file", urlFile, "--log-level", "warn"}, env, strings.NewReader(""), &out, &errOut)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("server: %v", err)
		}
	})
	// Unlocking the keys takes a while on a loaded machine: count the
	// sweep's time from when the server listens.
	for deadline := time.Now().Add(2 * time.Minute); ; {
		if _, err := os.Stat(urlFile); err == nil {
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
	waitGone(t, stale...)
	if _, err := os.Stat(young); err != nil {
		t.Fatalf("a staging file younger than --staging-max-age was removed: %v", err)
	}
}

// TestServerSweepsStagingPeriodically: leftovers that appear while the
// server runs go at the next sweep (--staging-sweep-interval), and pushes
// keep working.
func TestServerSweepsStagingPeriodically(t *testing.T) {
	t.Parallel()
	h := e2e.StartWith(t, "--staging-sweep-interval", "50ms", "--staging-max-age", "1h")
	staging := filepath.Join(h.Dir, "blobs", "staging")
	stale := []string{
		writeStale(t, staging, "00112233445566778899aabbccddeeff", 1<<20, 2*time.Hour),
		writeStale(t, staging, ".tufota-tmp-00112233445566778899aabb", 1<<20, 2*time.Hour),
	}
	young := writeStale(t, staging, ".tufota-tmp-ffeeddccbbaa998877665544", 100, 0)
	waitGone(t, stale...)
	if _, err := os.Stat(young); err != nil {
		t.Fatalf("a staging file younger than --staging-max-age was removed: %v", err)
	}
	fw, _ := h.WriteFirmware("fw.bin", 3<<20)
	h.MustCLI("release", "push", fw, "--name", "pump", "--version", "1.0.0", "--hardware", "hw-a")
}
