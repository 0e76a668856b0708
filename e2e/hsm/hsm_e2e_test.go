package hsm

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/tufota/tufota/e2e"
)

// TestHSMInitServeVerify runs the whole life of a repository whose root
// (2-of-2) and online snapshot/timestamp keys live in a real SoftHSM2 token:
// keys made in the token with 'tufota key create', bad init input refused,
// init with per-role key URIs, the server opening its HSM keys unattended
// (pin-source), a release pushed, and go-tuf's stock updater verifying it.
// The data directory holds no private key of an HSM role and no PIN.
func TestHSMInitServeVerify(t *testing.T) {
	hsm, uri, pinFile := e2e.SoftHSMKeys(t)
	cli := &e2e.Harness{T: t, Env: map[string]string{"TUFOTA_KEY_PASSPHRASE": "not-used-by-hsm-keys"}}

	// Make the keys inside the token.
	ids := map[string]string{}
	for _, object := range []string{"root-1", "root-2", "snapshot", "timestamp"} {
		var info keyInfo
		if err := json.Unmarshal([]byte(cli.MustCLI("key", "create", "--uri", uri(object), "-o", "json")), &info); err != nil {
			t.Fatal(err)
		}
		if len(info.KeyID) != 64 || info.KeyType != metadata.KeyTypeECDSA_SHA2_P256 || !strings.Contains(info.PublicKey, "BEGIN PUBLIC KEY") {
			t.Fatalf("key create %s = %+v", object, info)
		}
		ids[object] = info.KeyID
	}
	if _, err := cli.RunCLI("key", "create", "--uri", uri("root-1")); err == nil || !strings.Contains(err.Error(), "already holds a key pair") {
		t.Fatalf("key create over an existing label: %v, want a refusal", err)
	}
	var shown keyInfo
	if err := json.Unmarshal([]byte(cli.MustCLI("key", "show", uri("root-2"), "-o", "json")), &shown); err != nil {
		t.Fatal(err)
	}
	if shown.KeyID != ids["root-2"] {
		t.Fatalf("key show root-2 = %s, want %s", shown.KeyID, ids["root-2"])
	}

	// Bad init input is refused before anything is created.
	hsmFlags := []string{"--root-key", uri("root-1"), "--root-key", uri("root-2"), "--root-threshold", "2",
		"--snapshot-key", uri("snapshot"), "--timestamp-key", uri("timestamp")}
	bad := []struct {
		name    string
		flags   []string
		mention string
	}{
		{"inline PIN", []string{"--root-key", hsm.KeyURI("root-1")}, "pin-source=file:"},
		{"relative PIN file", []string{"--root-key", strings.Replace(uri("root-1"), "file:"+pinFile, "file:hsm.pin", 1)}, "absolute path"},
		{"threshold above keys", []string{"--root-key", uri("root-1"), "--root-key", uri("root-2"), "--root-threshold", "3"}, "between 1 and the number of root keys (2)"},
		{"threshold zero", []string{"--root-key", uri("root-1"), "--root-threshold", "-1"}, "between 1 and"},
		{"several keys, no threshold", []string{"--root-key", uri("root-1"), "--root-key", uri("root-2")}, "need --root-threshold"},
		{"threshold without keys", []string{"--targets-threshold", "2"}, "needs at least 2 --targets-key"},
		{"duplicate key", []string{"--root-key", uri("root-1"), "--root-key", uri("root-1"), "--root-threshold", "1"}, "given twice"},
		{"root key reused online", []string{"--root-key", uri("root-1"), "--snapshot-key", uri("root-1")}, "root keys must not serve another role"},
		{"missing object", []string{"--root-key", uri("no-such-key")}, `no key pair with label "no-such-key"`},
		{"wrong PIN file", []string{"--root-key", strings.Replace(uri("root-1"), pinFile, filepath.Join(t.TempDir(), "none"), 1)}, "does not exist"},
		{"bad URI", []string{"--timestamp-key", "pkcs11:token=x"}, "object=LABEL"},
	}
	for _, tt := range bad {
		t.Run("refuse "+tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "repo")
			_, err := cli.RunCLI(append([]string{"init", "--dir", dir}, tt.flags...)...)
			if err == nil || !strings.Contains(err.Error(), tt.mention) {
				t.Fatalf("init %s: %v, want an error mentioning %q", strings.Join(tt.flags, " "), err, tt.mention)
			}
			if strings.Contains(err.Error(), hsm.PIN) {
				t.Fatalf("init error shows the PIN: %v", err)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 0 {
				t.Fatalf("refused init left %d entries in %s", len(entries), dir)
			}
		})
	}

	// Init with the HSM keys and serve.
	h := e2e.StartFull(t, nil, hsmFlags)

	root, err := new(metadata.Metadata[metadata.RootType]).FromBytes(h.Root)
	if err != nil {
		t.Fatal(err)
	}
	wantRoles := map[string][]string{
		metadata.ROOT:      {ids["root-1"], ids["root-2"]},
		metadata.SNAPSHOT:  {ids["snapshot"]},
		metadata.TIMESTAMP: {ids["timestamp"]},
	}
	for role, want := range wantRoles {
		got := append([]string(nil), root.Signed.Roles[role].KeyIDs...)
		sort.Strings(got)
		sort.Strings(want)
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Fatalf("root lists %s keys %v, want the HSM keys %v", role, got, want)
		}
	}
	if th := root.Signed.Roles[metadata.ROOT].Threshold; th != 2 {
		t.Fatalf("root threshold = %d, want 2", th)
	}
	if n := len(root.Signatures); n != 2 {
		t.Fatalf("root v1 carries %d signatures, want 2 (both HSM root keys)", n)
	}
	if err := root.VerifyDelegate(metadata.ROOT, root); err != nil {
		t.Fatalf("root v1 does not verify with its own keys: %v", err)
	}

	assertNoHSMSecretsInDir(t, h.Dir, hsm.PIN, map[string]bool{"keys/targets.key": true, "keys/audit.key": true})

	// The server signs snapshot and timestamp with the HSM keys: a stock
	// go-tuf client verifies the new release.
	fw, want := h.WriteFirmware("pump.bin", 64<<10)
	h.MustCLI("release", "push", fw, "--name", "pump-fw", "--version", "2.0.0", "--hardware", "pump-a")
	got, err := h.Download(h.Root, "pump-fw/2.0.0/pump.bin")
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("stock updater download: %v (same bytes: %v)", err, bytes.Equal(got, want))
	}
	// And tufota's own client.
	c := h.NewClient(h.URL, "dev-hsm-1", "pump-a", "1.0.0")
	h.MustCLI("device", "assign", "dev-hsm-1", "pump-fw@2.0.0", "--reason", "hsm test")
	ctx := context.Background()
	upd, err := c.Check(ctx)
	if err != nil || upd == nil || upd.Version != "2.0.0" {
		t.Fatalf("tufota client Check = %+v, %v; want pump-fw 2.0.0", upd, err)
	}
	dst := filepath.Join(t.TempDir(), "image.bin")
	if err := c.Download(ctx, upd, dst); err != nil {
		t.Fatalf("tufota client Download: %v", err)
	}
	if got, err := os.ReadFile(dst); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("tufota client downloaded different bytes (err %v)", err)
	}

	// key list and key show report each role's keys.
	var entries []keyListEntry
	if err := json.Unmarshal([]byte(h.MustCLI("key", "list", "--dir", h.Dir, "-o", "json")), &entries); err != nil {
		t.Fatal(err)
	}
	byRole := map[string][]string{}
	for _, e := range entries {
		if e.Error != "" || !e.InRoot && e.Role != "audit" {
			t.Fatalf("key list entry %+v: want an opened key listed in root", e)
		}
		if strings.Contains(e.URI, hsm.PIN) {
			t.Fatalf("key list shows the PIN: %+v", e)
		}
		byRole[e.Role] = append(byRole[e.Role], e.KeyID)
	}
	if got := byRole["root"]; len(got) != 2 || got[0] != ids["root-1"] || got[1] != ids["root-2"] {
		t.Fatalf("key list root keys = %v, want %s, %s", got, ids["root-1"], ids["root-2"])
	}
	if byRole["timestamp"][0] != ids["timestamp"] || byRole["snapshot"][0] != ids["snapshot"] || len(byRole["targets"]) != 1 {
		t.Fatalf("key list = %v", byRole)
	}
	var byID keyInfo
	if err := json.Unmarshal([]byte(h.MustCLI("key", "show", ids["timestamp"], "--dir", h.Dir, "-o", "json")), &byID); err != nil {
		t.Fatal(err)
	}
	if strings.Join(byID.RootRoles, ",") != "timestamp" || strings.Join(byID.ConfigRoles, ",") != "timestamp" || byID.URI == "" || byID.RootVersion != 1 {
		t.Fatalf("key show %s = %+v, want the timestamp key of root v1 and tufota.json", ids["timestamp"], byID)
	}
	if _, err := h.RunCLI("key", "show", strings.Repeat("ab", 32), "--dir", h.Dir); err == nil {
		t.Fatal("key show of an unknown key ID succeeded")
	}
}

// assertNoHSMSecretsInDir walks dir: no file may hold the PIN, and only the
// files in fileKeys may hold a private key, each encrypted.
func assertNoHSMSecretsInDir(t *testing.T, dir, pin string, fileKeys map[string]bool) {
	t.Helper()
	found := map[string]bool{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		if bytes.Contains(data, []byte(pin)) {
			t.Errorf("%s contains the HSM PIN", rel)
		}
		if !bytes.Contains(data, []byte("PRIVATE KEY")) {
			return nil
		}
		if !fileKeys[rel] {
			t.Errorf("%s holds a private key; only %v may", rel, fileKeys)
			return nil
		}
		block, _ := pem.Decode(data)
		if block == nil || block.Type != "ENCRYPTED SIGSTORE PRIVATE KEY" {
			t.Errorf("%s is not one encrypted key", rel)
		}
		found[rel] = true
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for f := range fileKeys {
		if !found[f] {
			t.Errorf("expected file key %s is missing", f)
		}
	}
	for _, role := range []string{"root", "targets", "snapshot", "timestamp"} {
		f := "keys/" + role + ".key"
		if fileKeys[f] {
			continue
		}
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
			t.Errorf("%s exists for an HSM-held role", f)
		}
	}
}

// keyInfo and keyListEntry are what `tufota key show` and `key list`
// print with -o json.
type keyInfo struct {
	URI         string   `json:"uri,omitempty"`
	KeyID       string   `json:"keyid"`
	KeyType     string   `json:"keytype"`
	Scheme      string   `json:"scheme"`
	PublicKey   string   `json:"public_key"`
	ConfigRoles []string `json:"config_roles,omitempty"`
	RootRoles   []string `json:"root_roles,omitempty"`
	RootVersion int64    `json:"root_version,omitempty"`
}

type keyListEntry struct {
	Role   string `json:"role"`
	URI    string `json:"uri"`
	KeyID  string `json:"keyid,omitempty"`
	InRoot bool   `json:"in_root"`
	Error  string `json:"error,omitempty"`
}
