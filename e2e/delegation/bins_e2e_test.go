package delegation

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tufota/tufota/e2e"
	"github.com/tufota/tufota/internal/datadir"
)

// TestHashedBinsCLI: `init --hashed-bins 4` records the layout in
// DIR/tufota.json and builds it; a pushed release is published into its
// bin at once by the server's targets key; tufota's device client (Check,
// Download) and go-tuf's stock updater find it through the bins; a
// product-line delegation is refused; and a server whose config disagrees
// with the signed metadata refuses to start.
func TestHashedBinsCLI(t *testing.T) {
	h := e2e.StartFull(t, nil, []string{"--hashed-bins", "4"})
	b, err := os.ReadFile(filepath.Join(h.Dir, datadir.ConfigName))
	if err != nil {
		t.Fatal(err)
	}
	var cfg datadir.Config
	if err := json.Unmarshal(b, &cfg); err != nil || cfg.HashedBins != 4 {
		t.Fatalf("%s: hashed_bins = %d (%v), want 4", datadir.ConfigName, cfg.HashedBins, err)
	}

	fw, want := h.WriteFirmware("pump.bin", 5000)
	var rel struct {
		TargetPath     string `json:"target_path"`
		State          string `json:"state"`
		TargetsVersion int64  `json:"targets_version"`
	}
	if err := json.Unmarshal([]byte(h.MustCLI("release", "push", fw, "--name", "pump", "--version", "2.0.0", "--hardware", "pump-a", "-o", "json")), &rel); err != nil {
		t.Fatal(err)
	}
	if rel.State != "published" {
		t.Fatalf("pushed release = %+v, want published", rel)
	}
	h.MustCLI("release", "push", fw, "--name", "monitor", "--version", "1.0.0", "--hardware", "mon-a")

	// go-tuf's updater, through the server's /tuf/.
	up, err := h.StockClient(h.Root) // refreshed
	if err != nil {
		t.Fatalf("stock Refresh: %v", err)
	}
	top := up.GetTrustedMetadataSet().Targets["targets"]
	if top == nil || len(top.Signed.Targets) != 0 || top.Signed.Delegations == nil || top.Signed.Delegations.SuccinctRoles == nil {
		t.Fatalf("top-level targets = %+v, want no targets and a succinct delegation", top)
	}
	if got, err := h.Download(h.Root, rel.TargetPath); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("stock download of %s: %v", rel.TargetPath, err)
	}

	// tufota's device client.
	c := h.NewClient(h.URL, "dev-1", "pump-a", "1.0.0")
	h.MustCLI("device", "assign", "dev-1", "pump@2.0.0", "--reason", "hashed bins test")
	ctx := context.Background()
	upd, err := c.Check(ctx)
	if err != nil || upd == nil || upd.Version != "2.0.0" {
		t.Fatalf("Check = %+v, %v; want pump 2.0.0", upd, err)
	}
	dst := filepath.Join(t.TempDir(), "image.bin")
	if err := c.Download(ctx, upd, dst); err != nil {
		t.Fatalf("Download: %v", err)
	}
	if got, err := os.ReadFile(dst); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("client downloaded different bytes (err %v)", err)
	}

	if _, err := h.RunCLI("delegation", "add", "pumps", "--paths", "pump/*/*", "--key", "file:"+filepath.Join(h.Dir, "keys", "targets.key")); err == nil || !strings.Contains(err.Error(), "hashed bins") {
		t.Fatalf("delegation add in a hashed-bin repository: %v, want a refusal naming hashed bins", err)
	}
}

// TestHashedBinsInitRefusals: init refuses a bit length out of range and
// hashed bins with a targets threshold above one, before creating
// anything.
func TestHashedBinsInitRefusals(t *testing.T) {
	h := &e2e.Harness{T: t, Env: map[string]string{"TUFOTA_KEY_PASSPHRASE": "0123456789abcdef"}}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--hashed-bins", "15"}, "between 1 and 14"},
		{[]string{"--hashed-bins", "-1"}, "between 1 and 14"},
		{[]string{"--hashed-bins", "4", "--targets-key", "file:keys/t1.key", "--targets-key", "file:keys/t2.key", "--targets-threshold", "2"}, "needs --targets-threshold 1"},
	} {
		dir := filepath.Join(t.TempDir(), "repo")
		_, err := h.RunCLI(append([]string{"init", "--dir", dir}, tc.args...)...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Fatalf("init %v: %v, want an error saying %q", tc.args, err, tc.want)
		}
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Fatalf("init %v: refused, but %s exists (%v)", tc.args, dir, err)
		}
	}
}

// TestHashedBinsConfigMismatch: a server refuses to start when
// DIR/tufota.json and the signed metadata disagree about the layout.
func TestHashedBinsConfigMismatch(t *testing.T) {
	h := &e2e.Harness{T: t, Dir: filepath.Join(t.TempDir(), "repo"), Env: map[string]string{"TUFOTA_KEY_PASSPHRASE": "0123456789abcdef"}}
	h.MustCLI("init", "--dir", h.Dir, "--hashed-bins", "2")
	cfg, err := datadir.Load(h.Dir)
	if err != nil {
		t.Fatal(err)
	}
	cfg.HashedBins = 0
	if err := datadir.Write(h.Dir, cfg); err != nil {
		t.Fatal(err)
	}
	_, err = h.RunCLI("server", "--dir", h.Dir, "--addr", "127.0.0.1:0", "--tls-self-signed")
	if err == nil || !strings.Contains(err.Error(), "hashed_bins 0") {
		t.Fatalf("server with a config that disagrees with the metadata: %v, want a refusal", err)
	}
}
