package release

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tufota/tufota/e2e"
	"github.com/tufota/tufota/signer"
)

// TestReleaseSignRefusesSmuggledTarget: a server (here a man in the middle
// of the engineer's CLI) that adds another image to a pending release's
// payload does not get the engineer's signature.
func TestReleaseSignRefusesSmuggledTarget(t *testing.T) {
	h := e2e.Start(t)
	engPath := filepath.Join(t.TempDir(), "engineer.key")
	if _, err := signer.GenerateFileKey(engPath, "ed25519", []byte(h.Env["TUFOTA_KEY_PASSPHRASE"])); err != nil {
		t.Fatal(err)
	}
	h.MustCLI("root", "update", "--add-key", "targets=file:"+engPath, "--threshold", "targets=2")
	h.MustCLI("root", "sign", "--key", "file:"+engPath, "--yes")
	h.MustCLI("root", "sign", "--key", "file:"+filepath.Join(h.Dir, "keys", "root.key"), "--yes")
	fw, _ := h.WriteFirmware("pump.bin", 4096)
	h.MustCLI("release", "push", fw, "--name", "pump-fw", "--version", "2.0.0", "--hardware", "pump-a")

	proxy := e2e.MITM(t, h, e2e.SmuggleImage(t))
	_, err := h.RunCLI("release", "sign", "pump-fw@2.0.0", "--key", "file:"+engPath, "--yes", "--server", proxy)
	if err == nil || !strings.Contains(err.Error(), "adds evil/9.9.9/implant.bin") {
		t.Fatalf("release sign through a server that smuggles an image: %v, want a refusal naming it", err)
	}
	var rel signer.Release
	if err := json.Unmarshal([]byte(h.MustCLI("release", "show", "pump-fw@2.0.0", "-o", "json")), &rel); err != nil {
		t.Fatal(err)
	}
	if rel.Signing == nil || len(rel.Signing.Signatures) != 0 {
		t.Fatalf("after the refusal the release has signatures %+v, want none", rel.Signing)
	}
	// Without the trust anchor the CLI does not sign at all.
	root := h.Env["TUFOTA_ROOT"]
	delete(h.Env, "TUFOTA_ROOT")
	if _, err := h.RunCLI("release", "sign", "pump-fw@2.0.0", "--key", "file:"+engPath, "--yes"); err == nil || !strings.Contains(err.Error(), "--root FILE is required") {
		t.Fatalf("release sign without --root: %v", err)
	}
	h.Env["TUFOTA_ROOT"] = root

	// The engineers withdraw the suspicious release; the version is free
	// again and can be pushed and signed properly.
	if out := h.MustCLI("release", "cancel", "pump-fw@2.0.0"); !strings.Contains(out, "cancelled") {
		t.Fatalf("release cancel:\n%s", out)
	}
	if _, err := h.RunCLI("release", "show", "pump-fw@2.0.0"); err == nil {
		t.Fatal("release show found a cancelled release")
	}
	if _, err := h.RunCLI("release", "cancel", "pump-fw@2.0.0"); err == nil {
		t.Fatal("a cancelled release was cancelled again")
	}
	h.MustCLI("release", "push", fw, "--name", "pump-fw", "--version", "2.0.0", "--hardware", "pump-a")
	if out := h.MustCLI("release", "sign", "pump-fw@2.0.0", "--key", "file:"+engPath, "--yes"); !strings.Contains(out, "published as targets v") {
		t.Fatalf("release sign after the cancel:\n%s", out)
	}
	if _, err := h.RunCLI("release", "cancel", "pump-fw@2.0.0"); err == nil || !strings.Contains(err.Error(), "only a pending release can be cancelled") {
		t.Fatalf("cancel of a published release: %v", err)
	}
}
