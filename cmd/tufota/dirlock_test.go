package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/internal/datadir"
)

// TestSecondServerOnOneDataDirRefuses starts a real server on an embedded
// (SQLite and file store) data directory and then a second one on the same
// directory: the second refuses to start, naming the holder (pid, host,
// start time), and the first keeps serving.
func TestSecondServerOnOneDataDirRefuses(t *testing.T) {
	h := startHarness(t)
	_, err := h.runCLI("server", "--dir", h.dir, "--addr", "127.0.0.1:0", "--insecure-http", "--log-level", "warn")
	if !errors.Is(err, tufota.ErrConflict) {
		t.Fatalf("second server: %v, want a conflict", err)
	}
	host, _ := os.Hostname()
	for _, want := range []string{"in use by another tufota server", fmt.Sprintf("pid %d", os.Getpid()), "host " + host, "started 20", datadir.LockName} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("second server: %q, want it to name %q", err, want)
		}
	}
	if out := h.mustCLI("release", "list"); out == "" {
		t.Error("the first server stopped answering")
	}
}
