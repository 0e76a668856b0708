package e2e

import (
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/theupdateframework/go-tuf/v2/metadata/config"
	"github.com/theupdateframework/go-tuf/v2/metadata/updater"

	"github.com/tufota/tufota/apiclient"
	"github.com/tufota/tufota/internal/testenv"
	"github.com/tufota/tufota/rollout"
	"github.com/tufota/tufota/signer"
)

// SoftHSMKeys makes a SoftHSM2 token for the test, writes its PIN to a
// file, and returns the token, a function that names a key object in it as
// a pkcs11: URI with pin-source (what init and the server store), and the
// PIN file.
func SoftHSMKeys(t *testing.T) (testenv.HSM, func(object string) string, string) {
	t.Helper()
	hsm := testenv.SoftHSM(t)
	pinFile := filepath.Join(t.TempDir(), "hsm.pin")
	if err := os.WriteFile(pinFile, []byte(hsm.PIN+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return hsm, func(object string) string {
		return "pkcs11:token=" + hsm.TokenLabel + ";object=" + object + "?module-path=" + hsm.Module + "&pin-source=file:" + pinFile
	}, pinFile
}

// SmuggleImage is a man in the middle's rewrite of signing payloads: it
// adds evil/9.9.9/implant.bin to the targets metadata the signer gets.
func SmuggleImage(t *testing.T) func(path string, body []byte) []byte {
	return func(path string, body []byte) []byte {
		if !strings.HasSuffix(path, "/signing") {
			return body
		}
		var p map[string]any
		if err := json.Unmarshal(body, &p); err != nil {
			t.Errorf("signing payload: %v", err)
			return body
		}
		raw, _ := base64.StdEncoding.DecodeString(p["payload"].(string))
		var md map[string]any
		if err := signer.DecodeCanonical(raw, &md); err != nil {
			t.Errorf("payload: %v", err)
			return body
		}
		md["targets"].(map[string]any)["evil/9.9.9/implant.bin"] = map[string]any{"length": 3, "hashes": map[string]any{"sha256": strings.Repeat("ab", 32)}}
		raw, _ = json.Marshal(md)
		p["payload"] = base64.StdEncoding.EncodeToString(raw)
		out, _ := json.Marshal(p)
		return out
	}
}

// StockClient is go-tuf's own updater trusting root (bytes), refreshed.
func (h *Harness) StockClient(root []byte) (*updater.Updater, error) {
	h.T.Helper()
	cfg, err := config.New(h.URL+"/tuf", root)
	if err != nil {
		h.T.Fatal(err)
	}
	cfg.LocalMetadataDir, cfg.LocalTargetsDir = h.T.TempDir(), h.T.TempDir()
	cfg.RemoteTargetsURL, cfg.PrefixTargetsWithHash = h.URL+"/tuf/targets", true
	if err := cfg.SetDefaultFetcherTransport(apiclient.New(h.URL, h.AdminToken, apiclient.WithHTTPClient(h.HC)).Transport()); err != nil {
		h.T.Fatal(err)
	}
	_ = cfg.SetDefaultFetcherRetry(0, 1)
	up, err := updater.New(cfg)
	if err != nil {
		h.T.Fatal(err)
	}
	return up, up.Refresh()
}

// Download fetches path with go-tuf's own updater trusting root.
func (h *Harness) Download(root []byte, path string) ([]byte, error) {
	h.T.Helper()
	up, err := h.StockClient(root)
	if err != nil {
		return nil, err
	}
	ti, err := up.GetTargetInfo(path)
	if err != nil {
		return nil, err
	}
	_, b, err := up.DownloadTarget(ti, filepath.Join(h.T.TempDir(), "dl"), "")
	return b, err
}

// RolloutStatus is `tufota rollout status ID -o json`.
func (h *Harness) RolloutStatus(id string) rollout.Status {
	h.T.Helper()
	var st rollout.Status
	if err := json.Unmarshal([]byte(h.MustCLI("rollout", "status", id, "-o", "json")), &st); err != nil {
		h.T.Fatal(err)
	}
	return st
}

// CreateRollout runs `tufota rollout create` with args and returns the ID.
func (h *Harness) CreateRollout(args ...string) string {
	h.T.Helper()
	var r rollout.Rollout
	out := h.MustCLI(append([]string{"rollout", "create", "-o", "json"}, args...)...)
	if err := json.Unmarshal([]byte(out), &r); err != nil || r.ID == "" {
		h.T.Fatalf("rollout create: %v in %q", err, out)
	}
	return r.ID
}
