package client

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

func TestDeltaErrorCodes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		err  error
		code string
	}{
		{deltaErr(CodeDeltaBase, "other base"), "delta_base_mismatch"},
		{deltaErr(CodeDeltaCorrupt, "%w", fmt.Errorf("download: %w", ErrHashMismatch)), "delta_corrupt"},
		{deltaErr(CodeDeltaResult, "other result"), "delta_result_mismatch"},
		{deltaErr(CodeDeltaMemory, "too small"), "delta_memory_bound"},
		{deltaErr(CodeDeltaDownload, "%w", ErrUnreachable), "delta_download"},
	}
	for _, tt := range tests {
		err := fmt.Errorf("update: %w", tt.err)
		if got := ErrorCode(err); got != tt.code {
			t.Errorf("ErrorCode(%v) = %s, want %s", err, got, tt.code)
		}
		if !errors.Is(err, ErrDelta) {
			t.Errorf("%v is not ErrDelta", err)
		}
	}
	// The cause stays visible.
	if err := tests[1].err; !errors.Is(err, ErrHashMismatch) {
		t.Errorf("%v lost its cause", err)
	}
}

func TestABInstallerDeltaBase(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ab := &ABInstaller{Dir: filepath.Join(t.TempDir(), "slots")}
	if _, err := ab.DeltaBase(ctx); err == nil {
		t.Fatal("DeltaBase on an empty device succeeded")
	}
	install := func(version string, image []byte) *Update {
		t.Helper()
		p := filepath.Join(t.TempDir(), "img")
		if err := os.WriteFile(p, image, 0o600); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(image)
		u := &Update{Target: "pump/" + version + "/fw.bin", Version: version, Length: int64(len(image)), Hashes: map[string]string{"sha256": hex.EncodeToString(sum[:])}}
		if err := ab.Install(ctx, p, u); err != nil {
			t.Fatal(err)
		}
		return u
	}
	u1 := install("1.0.0", []byte("image one"))
	b, err := ab.DeltaBase(ctx)
	if err != nil || b.Length != u1.Length || b.SHA256 != u1.Hashes["sha256"] {
		t.Fatalf("DeltaBase = %+v, %v; want 1.0.0's slot", b, err)
	}
	if got, err := os.ReadFile(b.Path); err != nil || string(got) != "image one" {
		t.Fatalf("base image = %q, %v", got, err)
	}
	u2 := install("1.1.0", []byte("image two"))
	if _, err := ab.DeltaBase(ctx); err == nil {
		t.Fatal("DeltaBase during a trial succeeded; want no base until it is confirmed")
	}
	if _, err := ab.Boot(ctx); err != nil {
		t.Fatal(err)
	}
	if err := ab.Confirm(ctx); err != nil {
		t.Fatal(err)
	}
	if b, err := ab.DeltaBase(ctx); err != nil || b.SHA256 != u2.Hashes["sha256"] {
		t.Fatalf("DeltaBase after confirming 1.1.0 = %+v, %v", b, err)
	}
}
