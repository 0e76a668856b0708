package release

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tufota/tufota/e2e"
	"github.com/tufota/tufota/signer"
)

// TestThresholdSigningCLI: an admin raises the targets threshold to 2
// through a root ceremony (root update, root sign by the root key and by
// the new engineer key for the targets re-signing), so the server's own
// targets key is one of two. A pushed release stays pending and invisible
// to a TUF client until `release sign` adds the engineer's signature.
// Then the root keys rotate (v2 -> v3, signed by old and new root keys)
// and a client still trusting root v1 walks to v3 and downloads a release
// published after it.
func TestThresholdSigningCLI(t *testing.T) {
	h := e2e.Start(t)
	pass := []byte(h.Env["TUFOTA_KEY_PASSPHRASE"])
	keyDir := t.TempDir()
	engPath := filepath.Join(keyDir, "engineer.key")
	eng, err := signer.GenerateFileKey(engPath, "ed25519", pass)
	if err != nil {
		t.Fatal(err)
	}
	engID, _ := signer.KeyID(eng)
	rootURI := "file:" + filepath.Join(h.Dir, "keys", "root.key")

	out := h.MustCLI("root", "update", "--add-key", "targets=file:"+engPath, "--threshold", "targets=2")
	if !strings.Contains(out, "targets: add key "+engID) || !strings.Contains(out, "threshold 1 -> 2") || !strings.Contains(out, "re-signed under the new root") {
		t.Fatalf("root update output:\n%s", out)
	}
	if out := h.MustCLI("root", "sign", "--key", "file:"+engPath, "--yes"); !strings.Contains(out, "Still needed: 1 old root key(s), 1 new root key(s), 0 targets key(s)") {
		t.Fatalf("engineer's targets re-signing:\n%s", out)
	}
	if _, err := h.RunCLI("root", "sign", "--key", rootURI); err == nil || !strings.Contains(err.Error(), "not confirmed") {
		t.Fatalf("root sign without --yes on a non-terminal: %v", err)
	}
	if out := h.MustCLI("root", "sign", "--key", rootURI, "--yes"); !strings.Contains(out, "Root v2 published") {
		t.Fatalf("root sign:\n%s", out)
	}

	fw, want := h.WriteFirmware("pump.bin", 5000)
	out = h.MustCLI("release", "push", fw, "--name", "pump-fw", "--version", "2.0.0", "--hardware", "pump-a")
	if !strings.Contains(out, "pending") || !strings.Contains(out, "1 more signature(s) needed") {
		t.Fatalf("push of a 2-of-2 release:\n%s", out)
	}
	path := "pump-fw/2.0.0/pump.bin"
	if _, err := h.Download(h.Root, path); err == nil {
		t.Fatal("a TUF client downloaded a release that has one signature of two")
	}
	if out := h.MustCLI("release", "show", "pump-fw@2.0.0"); !strings.Contains(out, "by the server") || !strings.Contains(out, "may sign:") || !strings.Contains(out, engID) {
		t.Fatalf("release show of a pending release:\n%s", out)
	}
	if _, err := h.RunCLI("rollout", "create", "pump-fw@2.0.0", "--cohort", "hardware=pump-a", "--waves", "100%"); err == nil {
		t.Fatal("a rollout of a pending release was created")
	}
	if out := h.MustCLI("release", "sign", "pump-fw@2.0.0", "--key", "file:"+engPath, "--yes"); !strings.Contains(out, "published as targets v") {
		t.Fatalf("release sign:\n%s", out)
	}
	if _, err := h.RunCLI("release", "sign", "pump-fw@2.0.0", "--key", "file:"+engPath, "--yes"); err == nil || !strings.Contains(err.Error(), "published already") {
		t.Fatalf("second release sign: %v", err)
	}
	if got, err := h.Download(h.Root, path); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("client download after the second signature: %v", err)
	}

	// Rotate the root key: v3 is signed by the old root key (v2's role)
	// and by the new one (v3's role).
	newRootPath := filepath.Join(keyDir, "root2.key")
	if _, err := signer.GenerateFileKey(newRootPath, "ecdsa-p256", pass); err != nil {
		t.Fatal(err)
	}
	var info signer.RootInfo
	if err := json.Unmarshal([]byte(h.MustCLI("root", "show", "-o", "json")), &info); err != nil {
		t.Fatal(err)
	}
	oldRootID := info.Current.Roles[0].Keys[0]
	h.MustCLI("root", "update", "--add-key", "root=file:"+newRootPath, "--revoke-key", "root="+oldRootID, "--expires", "root=17520h")
	if out := h.MustCLI("root", "sign", "--key", "file:"+newRootPath, "--yes"); !strings.Contains(out, "Still needed: 1 old root key(s), 0 new root key(s)") {
		t.Fatalf("new root key signs first:\n%s", out)
	}
	if out := h.MustCLI("root", "sign", "--key", rootURI, "--yes"); !strings.Contains(out, "Root v3 published") {
		t.Fatalf("old root key signs:\n%s", out)
	}
	if out := h.MustCLI("root", "show"); !strings.Contains(out, "Root version:") || !strings.Contains(out, "3") || !strings.Contains(out, "Pending:") {
		t.Fatalf("root show:\n%s", out)
	}

	fw3, want3 := h.WriteFirmware("pump.bin", 3000)
	h.MustCLI("release", "push", fw3, "--name", "pump-fw", "--version", "3.0.0", "--hardware", "pump-a")
	h.MustCLI("release", "sign", "pump-fw@3.0.0", "--key", "file:"+engPath, "--yes")
	up, err := h.StockClient(h.Root)
	if err != nil {
		t.Fatalf("client at root v1 after two rotations: %v", err)
	}
	if v := up.GetTrustedMetadataSet().Root.Signed.Version; v != 3 {
		t.Fatalf("client walked to root v%d, want 3", v)
	}
	if got, err := h.Download(h.Root, "pump-fw/3.0.0/pump.bin"); err != nil || !bytes.Equal(got, want3) {
		t.Fatalf("download of a release published after root v3: %v", err)
	}
}
