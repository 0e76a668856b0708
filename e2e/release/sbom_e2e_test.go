package release

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tufota/tufota/e2e"
	"github.com/tufota/tufota/signer"
)

// TestSBOMReleaseEndToEnd runs a server with --require-sbom: a push without
// an SBOM is refused and leaves nothing; a push with --sbom publishes the
// SBOM as a signed companion target that go-tuf's stock updater verifies
// and downloads, `release show` lists it, and a device is still offered
// only the firmware.
func TestSBOMReleaseEndToEnd(t *testing.T) {
	h := e2e.StartWith(t, "--require-sbom")
	fw, want := h.WriteFirmware("pump.bin", 64<<10)
	doc, err := os.ReadFile(filepath.Join("..", "..", "signer", "testdata", "sbom", "pump-fw.cdx.json"))
	if err != nil {
		t.Fatal(err)
	}
	sbomFile := filepath.Join(t.TempDir(), "pump-fw-1.0.0.cdx.json")
	if err := os.WriteFile(sbomFile, doc, 0o644); err != nil {
		t.Fatal(err)
	}

	// Refused without an SBOM, and with one that is not an SBOM.
	_, err = h.RunCLI("release", "push", fw, "--name", "pump-fw", "--version", "1.0.0", "--hardware", "pump-a")
	if err == nil || !strings.Contains(err.Error(), "this repository requires an SBOM with every release (--sbom FILE)") {
		t.Fatalf("push without --sbom: %v, want the require-sbom refusal", err)
	}
	notSBOM := filepath.Join(t.TempDir(), "notes.json")
	if err := os.WriteFile(notSBOM, []byte(`{"name":"pump-fw"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = h.RunCLI("release", "push", fw, "--name", "pump-fw", "--version", "1.0.0", "--hardware", "pump-a", "--sbom", notSBOM)
	if err == nil || !strings.Contains(err.Error(), "neither CycloneDX JSON") {
		t.Fatalf("push with a non-SBOM: %v, want a validation error", err)
	}
	if out := h.MustCLI("release", "list", "-o", "json"); strings.TrimSpace(out) != "[]" {
		t.Fatalf("refused pushes left releases: %s", out)
	}

	// Published with its SBOM.
	var rel signer.Release
	out := h.MustCLI("release", "push", fw, "--name", "pump-fw", "--version", "1.0.0", "--hardware", "pump-a", "--sbom", sbomFile, "-o", "json")
	if err := json.Unmarshal([]byte(out), &rel); err != nil {
		t.Fatalf("push -o json: %v in %q", err, out)
	}
	sum := sha256.Sum256(doc)
	wantSBOM := signer.SBOM{Path: "pump-fw/1.0.0/sbom.cdx.json", Format: signer.SBOMCycloneDX, SHA256: hex.EncodeToString(sum[:]), Length: int64(len(doc))}
	if rel.State != signer.StatePublished || rel.SBOM == nil || *rel.SBOM != wantSBOM {
		t.Fatalf("pushed release: state %s, SBOM %+v; want published with %+v", rel.State, rel.SBOM, wantSBOM)
	}
	var shown signer.Release
	if err := json.Unmarshal([]byte(h.MustCLI("release", "show", "pump-fw@1.0.0", "-o", "json")), &shown); err != nil {
		t.Fatal(err)
	}
	if shown.SBOM == nil || *shown.SBOM != wantSBOM {
		t.Fatalf("release show -o json: SBOM %+v, want %+v", shown.SBOM, wantSBOM)
	}
	if out := h.MustCLI("release", "show", "pump-fw@1.0.0"); !strings.Contains(out, "pump-fw/1.0.0/sbom.cdx.json (cyclonedx,") || !strings.Contains(out, wantSBOM.SHA256) {
		t.Fatalf("release show does not list the SBOM:\n%s", out)
	}

	// go-tuf's stock updater verifies both targets, signed in one targets
	// version.
	up, err := h.StockClient(h.Root)
	if err != nil {
		t.Fatalf("stock updater Refresh: %v", err)
	}
	if _, err := up.GetTargetInfo(wantSBOM.Path); err != nil {
		t.Fatalf("SBOM target not in the signed targets: %v", err)
	}
	if _, err := up.GetTargetInfo(rel.TargetPath); err != nil {
		t.Fatalf("firmware target not in the signed targets: %v", err)
	}
	got, err := h.Download(h.Root, wantSBOM.Path)
	if err != nil || !bytes.Equal(got, doc) {
		t.Fatalf("stock updater download of the SBOM: %v (equal %v)", err, bytes.Equal(got, doc))
	}

	// A device is offered the firmware, never the SBOM.
	ctx := context.Background()
	c := h.NewClient(h.URL, "dev-1", "pump-a", "0.9.0")
	h.MustCLI("device", "assign", "dev-1", "pump-fw@1.0.0", "--reason", "SBOM test")
	upd, err := c.Check(ctx)
	if err != nil || upd == nil {
		t.Fatalf("Check = %+v, %v; want the firmware", upd, err)
	}
	if upd.Target != rel.TargetPath || upd.Length != int64(len(want)) {
		t.Fatalf("device offered %s (%d bytes), want the firmware %s", upd.Target, upd.Length, rel.TargetPath)
	}
	dst := filepath.Join(t.TempDir(), "image.bin")
	if err := c.Download(ctx, upd, dst); err != nil {
		t.Fatalf("Download: %v", err)
	}
	if b, err := os.ReadFile(dst); err != nil || !bytes.Equal(b, want) {
		t.Fatalf("downloaded image differs from the pushed firmware (%v)", err)
	}
}
