package release

import (
	"bytes"
	"path/filepath"
	"testing"

	"github.com/theupdateframework/go-tuf/v2/metadata/config"
	"github.com/theupdateframework/go-tuf/v2/metadata/updater"

	"github.com/tufota/tufota/apiclient"
	"github.com/tufota/tufota/e2e"
)

// TestStockGoTUFUpdaterVerifiesRepository checks that what tufota publishes
// is a valid TUF repository for go-tuf's own updater, not only for tufota's
// client.
func TestStockGoTUFUpdaterVerifiesRepository(t *testing.T) {
	h := e2e.Start(t)
	fw, want := h.WriteFirmware("pump.bin", 1<<20)
	h.MustCLI("release", "push", fw, "--name", "pump-fw", "--version", "1.0.0", "--hardware", "pump-a")
	fw2, want2 := h.WriteFirmware("pump.bin", 4096)
	h.MustCLI("release", "push", fw2, "--name", "pump-fw", "--version", "1.0.1", "--hardware", "pump-a")

	cfg, err := config.New(h.URL+"/tuf", h.Root)
	if err != nil {
		t.Fatal(err)
	}
	cfg.LocalMetadataDir = t.TempDir()
	cfg.LocalTargetsDir = t.TempDir()
	cfg.RemoteTargetsURL = h.URL + "/tuf/targets"
	cfg.PrefixTargetsWithHash = true
	if err := cfg.SetDefaultFetcherTransport(apiclient.New(h.URL, h.DeviceToken("stock-go-tuf"), apiclient.WithHTTPClient(h.HC)).Transport()); err != nil {
		t.Fatal(err)
	}
	if err := cfg.SetDefaultFetcherRetry(0, 1); err != nil {
		t.Fatal(err)
	}
	up, err := updater.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := up.Refresh(); err != nil {
		t.Fatalf("stock updater Refresh: %v", err)
	}
	for path, content := range map[string][]byte{"pump-fw/1.0.0/pump.bin": want, "pump-fw/1.0.1/pump.bin": want2} {
		ti, err := up.GetTargetInfo(path)
		if err != nil {
			t.Fatalf("GetTargetInfo(%s): %v", path, err)
		}
		_, got, err := up.DownloadTarget(ti, filepath.Join(cfg.LocalTargetsDir, filepath.Base(path)+ti.Hashes["sha256"].String()), "")
		if err != nil {
			t.Fatalf("DownloadTarget(%s): %v", path, err)
		}
		if !bytes.Equal(got, content) {
			t.Fatalf("stock updater downloaded different bytes for %s", path)
		}
	}
	if _, err := up.GetTargetInfo("pump-fw/9.9.9/pump.bin"); err == nil {
		t.Fatal("GetTargetInfo of an unsigned target succeeded")
	}
}
