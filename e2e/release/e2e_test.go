package release

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tufota/tufota/client"
	"github.com/tufota/tufota/e2e"
)

func TestEndToEndPushVerifyDownload(t *testing.T) {
	h := e2e.Start(t)
	fw, want := h.WriteFirmware("pump.bin", 3<<20+17)
	var rel struct {
		TargetPath string `json:"target_path"`
		SHA256     string `json:"sha256"`
		State      string `json:"state"`
	}
	out := h.MustCLI("release", "push", fw, "--name", "pump-fw", "--version", "1.1.0", "--hardware", "pump-a,pump-b", "--notes", "fixes occlusion alarm", "-o", "json")
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
	c := h.NewClient(h.URL, "dev-1", "pump-a", "1.0.0")
	// Releases reach devices only through rollouts or an explicit,
	// audited assignment.
	if upd, err := c.Check(ctx); err != nil || upd != nil {
		t.Fatalf("Check before any assignment = %+v, %v; want nil, nil", upd, err)
	}
	h.MustCLI("device", "assign", "dev-1", "pump-fw@1.1.0", "--reason", "bench test")
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
	c2 := h.NewClient(h.URL, "dev-2", "pump-b", "1.1.0")
	if _, err := h.RunCLI("device", "assign", "dev-2", "pump-fw@1.1.0"); err == nil || !strings.Contains(err.Error(), "runs pump-fw@1.1.0 already") {
		t.Fatalf("assigning a device the release it runs: %v, want a refusal", err)
	}
	if upd, err := c2.Check(ctx); err != nil || upd != nil {
		t.Fatalf("Check on current device = %+v, %v; want nil, nil", upd, err)
	}

	t.Run("tampered byte", func(t *testing.T) {
		blob := e2e.TargetBlob(t, h, rel.TargetPath, rel.SHA256)
		orig := e2e.MutateFile(t, blob, func(b []byte) []byte { b[len(b)/2] ^= 0x01; return b })
		defer os.WriteFile(blob, orig, 0o644)
		err := c.Download(ctx, upd, filepath.Join(t.TempDir(), "x.bin"))
		if !errors.Is(err, client.ErrHashMismatch) {
			t.Fatalf("Download of tampered image: %v, want ErrHashMismatch", err)
		}
	})
	t.Run("truncated file", func(t *testing.T) {
		blob := e2e.TargetBlob(t, h, rel.TargetPath, rel.SHA256)
		orig := e2e.MutateFile(t, blob, func(b []byte) []byte { return b[:len(b)-1000] })
		defer os.WriteFile(blob, orig, 0o644)
		err := c.Download(ctx, upd, filepath.Join(t.TempDir(), "x.bin"))
		if !errors.Is(err, client.ErrLengthMismatch) {
			t.Fatalf("Download of truncated image: %v, want ErrLengthMismatch", err)
		}
	})
	t.Run("wrong hardware offered by a compromised server", func(t *testing.T) {
		mon, _ := h.WriteFirmware("monitor.bin", 4096)
		h.MustCLI("release", "push", mon, "--name", "monitor-fw", "--version", "2.0.0", "--hardware", "monitor-x")
		// A man in the middle rewrites the server's assignment to offer the
		// monitor image to a pump; TUF metadata stays genuine.
		proxy := e2e.MITM(t, h, func(path string, body []byte) []byte {
			if path == "/api/v1/device/update" {
				return []byte(`{"target":"monitor-fw/2.0.0/monitor.bin","name":"monitor-fw","version":"2.0.0"}`)
			}
			return body
		})
		_, err := h.NewClient(proxy, "dev-3", "pump-a", "1.0.0").Check(ctx)
		if !errors.Is(err, client.ErrWrongHardware) {
			t.Fatalf("Check offered a monitor image on a pump: %v, want ErrWrongHardware", err)
		}
		if !strings.Contains(err.Error(), "monitor-x") {
			t.Errorf("error %q does not name the target's hardware", err)
		}
	})
}

func TestReleasePushBadInput(t *testing.T) {
	h := e2e.Start(t)
	fw, _ := h.WriteFirmware("fw.bin", 1024)
	empty := filepath.Join(t.TempDir(), "empty.bin")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	h.MustCLI("release", "push", fw, "--name", "pump-fw", "--version", "1.0.0", "--hardware", "pump-a")
	before := e2e.SnapshotTree(t, filepath.Join(h.Dir, "blobs"))

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
			_, err := h.RunCLI(tc.args...)
			if err == nil {
				t.Fatalf("tufota %v succeeded, want an error containing %q", tc.args, tc.want)
			}
			if msg := err.Error(); !strings.Contains(msg, tc.want) || strings.Contains(msg, "\n") {
				t.Fatalf("error = %q, want one line containing %q", msg, tc.want)
			}
		})
	}
	if after := e2e.SnapshotTree(t, filepath.Join(h.Dir, "blobs")); strings.Join(after, "\n") != strings.Join(before, "\n") {
		t.Fatalf("bad pushes changed the repository:\nbefore %v\nafter  %v", before, after)
	}
}

func TestInitRefusesExistingRepository(t *testing.T) {
	h := e2e.Start(t)
	_, err := h.RunCLI("init", "--dir", h.Dir)
	if err == nil || !strings.Contains(err.Error(), "refusing to overwrite") {
		t.Fatalf("second init: %v, want a refusal", err)
	}
}
