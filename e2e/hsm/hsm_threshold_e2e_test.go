package hsm

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tufota/tufota/e2e"
	"github.com/tufota/tufota/signer"
)

// TestHSMThresholdRelease is the two-person rule on a real SoftHSM2 token:
// init with root (2-of-2) and targets (2-of-2) keys in the token; a pushed
// release stays pending, invisible to devices, with no signature and then
// with one; after the second engineer signs with the second HSM key, the
// tufota client and go-tuf's stock updater verify and download it. The data
// dir holds no private key of the HSM roles and no PIN.
func TestHSMThresholdRelease(t *testing.T) {
	hsm, uri, _ := e2e.SoftHSMKeys(t)
	cli := &e2e.Harness{T: t, Env: map[string]string{"TUFOTA_KEY_PASSPHRASE": "not-used-by-hsm-keys"}}
	for _, object := range []string{"root-1", "root-2", "targets-alice", "targets-bob"} {
		cli.MustCLI("key", "create", "--uri", uri(object))
	}
	h := e2e.StartFull(t, nil, []string{
		"--root-key", uri("root-1"), "--root-key", uri("root-2"), "--root-threshold", "2",
		"--targets-key", uri("targets-alice"), "--targets-key", uri("targets-bob"), "--targets-threshold", "2",
	})
	assertNoHSMSecretsInDir(t, h.Dir, hsm.PIN, map[string]bool{"keys/snapshot.key": true, "keys/timestamp.key": true, "keys/audit.key": true})

	fw, want := h.WriteFirmware("pump.bin", 200<<10)
	const path = "pump-fw/3.0.0/pump.bin"
	var rel signer.Release
	if err := json.Unmarshal([]byte(h.MustCLI("release", "push", fw, "--name", "pump-fw", "--version", "3.0.0", "--hardware", "pump-a", "-o", "json")), &rel); err != nil {
		t.Fatal(err)
	}
	if rel.State == signer.StatePublished || rel.Signing == nil || rel.Signing.Needed != 2 || len(rel.Signing.ServerKeys) != 0 {
		t.Fatalf("push under a 2-of-2 HSM targets role = state %s, signing %+v; want pending, 2 signatures needed, no server key", rel.State, rel.Signing)
	}
	invisible := func(stage string) {
		t.Helper()
		if _, err := h.Download(h.Root, path); err == nil {
			t.Fatalf("%s: a TUF client downloaded the pending release", stage)
		}
		if _, err := h.RunCLI("device", "assign", "dev-hsm", "pump-fw@3.0.0", "--reason", "too early"); err == nil {
			t.Fatalf("%s: a pending release was assigned to a device", stage)
		}
	}
	c := h.NewClient(h.URL, "dev-hsm", "pump-a", "1.0.0")
	invisible("no signature")

	// Alice signs with her key in the HSM: one of two.
	h.MustCLI("release", "sign", "pump-fw@3.0.0", "--key", uri("targets-alice"), "--yes")
	if err := json.Unmarshal([]byte(h.MustCLI("release", "show", "pump-fw@3.0.0", "-o", "json")), &rel); err != nil {
		t.Fatal(err)
	}
	if rel.State == signer.StatePublished || rel.Signing == nil || rel.Signing.Needed != 1 || len(rel.Signing.Signatures) != 1 {
		t.Fatalf("after one signature: state %s, signing %+v; want pending with 1 signature, 1 needed", rel.State, rel.Signing)
	}
	invisible("one signature")
	if _, err := h.RunCLI("release", "sign", "pump-fw@3.0.0", "--key", uri("targets-alice"), "--yes"); err == nil {
		t.Fatal("the same HSM key signed twice")
	}

	// Bob signs with the second HSM key: published.
	if out := h.MustCLI("release", "sign", "pump-fw@3.0.0", "--key", uri("targets-bob"), "--yes"); !strings.Contains(out, "published as targets v") {
		t.Fatalf("second signature:\n%s", out)
	}
	got, err := h.Download(h.Root, path)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("stock go-tuf download after two signatures: %v (same bytes: %v)", err, bytes.Equal(got, want))
	}
	h.MustCLI("device", "assign", "dev-hsm", "pump-fw@3.0.0", "--reason", "two-person rule met")
	ctx := context.Background()
	upd, err := c.Check(ctx)
	if err != nil || upd == nil || upd.Target != path {
		t.Fatalf("client Check = %+v, %v; want %s", upd, err, path)
	}
	dst := filepath.Join(t.TempDir(), "image.bin")
	if err := c.Download(ctx, upd, dst); err != nil {
		t.Fatalf("client Download: %v", err)
	}
	if b, err := os.ReadFile(dst); err != nil || !bytes.Equal(b, want) {
		t.Fatalf("client downloaded different bytes (%v)", err)
	}
}
