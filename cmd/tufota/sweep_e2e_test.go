package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestServerSweepsStaging: a running server removes what crashed uploads
// left in the file store's staging/ folder (a staged blob no release
// names, a temporary file of a write that never finished) once it is older
// than --staging-max-age, and keeps younger ones; pushes keep working.
// Before the fix such files stayed forever (issue 13 item 4).
func TestServerSweepsStaging(t *testing.T) {
	t.Parallel()
	h := startHarnessWith(t, "--staging-sweep-interval", "50ms", "--staging-max-age", "1h")
	staging := filepath.Join(h.dir, "blobs", "staging")
	if err := os.MkdirAll(staging, 0o750); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-2 * time.Hour)
	stale := []string{"00112233445566778899aabbccddeeff", ".tufota-tmp-00112233445566778899aabb"}
	for _, n := range stale {
		p := filepath.Join(staging, n)
		if err := os.WriteFile(p, make([]byte, 1<<20), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, old, old); err != nil {
			t.Fatal(err)
		}
	}
	young := filepath.Join(staging, ".tufota-tmp-ffeeddccbbaa998877665544")
	if err := os.WriteFile(young, []byte("a write that may still be running"), 0o600); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		left := 0
		for _, n := range stale {
			if _, err := os.Stat(filepath.Join(staging, n)); err == nil {
				left++
			}
		}
		if left == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d abandoned staging files still there after 20s of sweeps every 50ms", left)
		}
	}
	if _, err := os.Stat(young); err != nil {
		t.Fatalf("a staging file younger than --staging-max-age was removed: %v", err)
	}
	fw, _ := h.writeFirmware("fw.bin", 3<<20)
	h.mustCLI("release", "push", fw, "--name", "pump", "--version", "1.0.0", "--hardware", "hw-a")
}
