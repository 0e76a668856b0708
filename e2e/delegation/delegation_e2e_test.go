package delegation

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tufota/tufota/backup"
	"github.com/tufota/tufota/e2e"
	"github.com/tufota/tufota/signer"
)

// TestDelegationCLI is a product line with its own keys: the admin
// delegates pump/*/* to two keys in a SoftHSM2 token (2-of-2), held by the
// pump team. A pump release pushed afterwards waits, invisible to devices,
// until both pump keys sign it with `release sign`; the top-level targets
// key cannot sign it, and a pump key cannot sign another line's release.
// Then the tufota client and go-tuf's stock updater verify and download it
// through the delegation; another line is still published at once by the
// server's online targets key.
func TestDelegationCLI(t *testing.T) {
	_, uri, _ := e2e.SoftHSMKeys(t)
	h := e2e.Start(t)
	for _, object := range []string{"pump-1", "pump-2"} {
		h.MustCLI("key", "create", "--uri", uri(object))
	}
	// A public key file works as well as a URI: the admin needs no access
	// to the team's token. Here the second key comes as a PEM file.
	var info struct {
		PublicKey string `json:"public_key"`
		KeyID     string `json:"keyid"`
	}
	if err := json.Unmarshal([]byte(h.MustCLI("key", "show", uri("pump-2"), "-o", "json")), &info); err != nil || info.PublicKey == "" {
		t.Fatalf("key show: %v %+v", err, info)
	}
	pubFile := filepath.Join(t.TempDir(), "pump-2.pub")
	if err := os.WriteFile(pubFile, []byte(info.PublicKey), 0o600); err != nil {
		t.Fatal(err)
	}

	// Bad input first: each a clear error, nothing changes.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"delegation", "add", "pump", "--paths", "pump/*", "--key", uri("pump-1")}, `did you mean "pump/*/*"`},
		{[]string{"delegation", "add", "pump", "--paths", "pump/*/*", "--key", uri("pump-1"), "--threshold", "2"}, "threshold 2 must be between 1 and its 1 keys"},
		{[]string{"delegation", "add", "targets", "--paths", "x/*/*", "--key", uri("pump-1")}, "top-level TUF role"},
		{[]string{"delegation", "add", "pump", "--paths", "pump/*/*", "--key", uri("no-such-object")}, "no-such-object"},
	} {
		if _, err := h.RunCLI(tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Fatalf("%v: %v, want an error saying %q", tc.args, err, tc.want)
		}
	}
	if out := h.MustCLI("delegation", "list"); strings.Contains(out, "pump") {
		t.Fatalf("a refused delegation is listed:\n%s", out)
	}

	out := h.MustCLI("delegation", "add", "pump", "--paths", "pump/*/*", "--key", uri("pump-1"), "--key", pubFile, "--threshold", "2")
	if !strings.Contains(out, "2 of 2 keys") || !strings.Contains(out, info.KeyID) {
		t.Fatalf("delegation add:\n%s", out)
	}
	if _, err := h.RunCLI("delegation", "add", "pump", "--paths", "pump/*/*", "--key", uri("pump-1")); err == nil || !strings.Contains(err.Error(), "exists already") {
		t.Fatalf("second delegation add: %v", err)
	}
	// A delegation made by mistake (a typo in the name) is removed again.
	h.MustCLI("delegation", "add", "pmup", "--paths", "pmup/*/*", "--key", uri("pump-1"))
	if out := h.MustCLI("delegation", "remove", "pmup"); !strings.Contains(out, "Delegation pmup removed") {
		t.Fatalf("delegation remove:\n%s", out)
	}
	h.MustCLI("delegation", "add", "monitor", "--paths", "monitor/*/*", "--key", uri("pump-1"), "--threshold", "1")
	out = h.MustCLI("delegation", "list")
	if !strings.Contains(out, "pump/*/*") || !strings.Contains(out, "2 of 2") || strings.Index(out, "pump") > strings.Index(out, "monitor") {
		t.Fatalf("delegation list (pump first, then monitor):\n%s", out)
	}

	// Another line is signed by the online top-level targets key at once.
	fwOther, wantOther := h.WriteFirmware("vent.bin", 4000)
	if out := h.MustCLI("release", "push", fwOther, "--name", "vent", "--version", "1.0.0", "--hardware", "vent-a"); strings.Contains(out, "pending") {
		t.Fatalf("a release outside every delegation waits:\n%s", out)
	}

	fw, want := h.WriteFirmware("pump.bin", 70<<10)
	const path = "pump/2.0.0/pump.bin"
	var rel signer.Release
	if err := json.Unmarshal([]byte(h.MustCLI("release", "push", fw, "--name", "pump", "--version", "2.0.0", "--hardware", "pump-a", "-o", "json")), &rel); err != nil {
		t.Fatal(err)
	}
	if rel.State != signer.StatePending || rel.Role != "pump" || rel.Signing == nil || rel.Signing.Needed != 2 {
		t.Fatalf("pump push = state %s role %s signing %+v; want pending for role pump, 2 needed", rel.State, rel.Role, rel.Signing)
	}
	if _, err := h.Download(h.Root, path); err == nil {
		t.Fatal("a TUF client downloaded a pump release no pump key signed")
	}
	if out := h.MustCLI("release", "show", "pump@2.0.0"); !strings.Contains(out, "pump v1 needs 2 of its 2 keys") || !strings.Contains(out, "Signed by role:") {
		t.Fatalf("release show:\n%s", out)
	}

	// The top-level targets key is refused by the CLI before anything is
	// uploaded (and by the server: signer tests).
	targetsKey := "file:" + filepath.Join(h.Dir, "keys", "targets.key")
	if _, err := h.RunCLI("release", "sign", "pump@2.0.0", "--key", targetsKey, "--yes"); err == nil || !strings.Contains(err.Error(), "not a key of delegated role pump") {
		t.Fatalf("release sign with the top-level targets key: %v", err)
	}
	out = h.MustCLI("release", "sign", "pump@2.0.0", "--key", uri("pump-1"), "--yes")
	if !strings.Contains(out, "1 more signature(s) needed") {
		t.Fatalf("first pump signature:\n%s", out)
	}
	if _, err := h.Download(h.Root, path); err == nil {
		t.Fatal("a TUF client downloaded a pump release with one signature of two")
	}
	if out := h.MustCLI("release", "sign", "pump@2.0.0", "--key", uri("pump-2"), "--yes"); !strings.Contains(out, "published as pump v1") {
		t.Fatalf("second pump signature:\n%s", out)
	}

	// go-tuf's stock updater finds it through the delegation ...
	got, err := h.Download(h.Root, path)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("stock updater download through the delegation: %v", err)
	}
	up, err := h.StockClient(h.Root)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := up.GetTargetInfo(path); err != nil {
		t.Fatal(err)
	}
	if pm := up.GetTrustedMetadataSet().Targets["pump"]; pm == nil || pm.Signed.Version != 1 || len(pm.Signatures) != 2 {
		t.Fatalf("the client's pump metadata = %+v, want v1 with 2 signatures", pm)
	}
	if got, err := h.Download(h.Root, "vent/1.0.0/vent.bin"); err != nil || !bytes.Equal(got, wantOther) {
		t.Fatalf("download of the other line: %v", err)
	}
	// ... and so does tufota's own client.
	c := h.NewClient(h.URL, "dev-pump-1", "pump-a", "1.0.0")
	h.MustCLI("device", "assign", "dev-pump-1", "pump@2.0.0", "--reason", "delegation test")
	ctx := context.Background()
	upd, err := c.Check(ctx)
	if err != nil || upd == nil || upd.Version != "2.0.0" {
		t.Fatalf("tufota client Check = %+v, %v; want pump 2.0.0", upd, err)
	}
	dst := filepath.Join(t.TempDir(), "image.bin")
	if err := c.Download(ctx, upd, dst); err != nil {
		t.Fatalf("tufota client Download: %v", err)
	}
	if b, err := os.ReadFile(dst); err != nil || !bytes.Equal(b, want) {
		t.Fatalf("tufota client downloaded different bytes (err %v)", err)
	}

	// The line renews its metadata (new expiry, same releases) with its
	// own two keys; the top-level targets key cannot.
	if out := h.MustCLI("delegation", "renew", "pump"); !strings.Contains(out, "Pending: pump v2 renews the role's metadata and needs 2 of its 2 keys") {
		t.Fatalf("delegation renew:\n%s", out)
	}
	if _, err := h.RunCLI("delegation", "sign", "pump", "--key", targetsKey, "--yes"); err == nil || !strings.Contains(err.Error(), "not a key of delegated role pump") {
		t.Fatalf("the targets key signing the pump renewal: %v", err)
	}
	h.MustCLI("delegation", "sign", "pump", "--key", uri("pump-1"), "--yes")
	if out := h.MustCLI("delegation", "sign", "pump", "--key", uri("pump-2"), "--yes"); !strings.Contains(out, "Delegation pump published as pump v2") {
		t.Fatalf("renewal's second signature:\n%s", out)
	}
	var ds []signer.Delegation
	if err := json.Unmarshal([]byte(h.MustCLI("delegation", "list", "-o", "json")), &ds); err != nil || len(ds) != 2 || ds[0].Name != "pump" || ds[0].Version != 2 || ds[0].Targets != 1 {
		t.Fatalf("delegation list after the renewal = %+v, %v; want pump v2 with its release first", ds, err)
	}
	if got, err := h.Download(h.Root, path); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("download after the renewal: %v", err)
	}

	// Both pump keys are retired for a new one: pump v2 is signed only by
	// revoked keys, so the change carries its re-signing by pump-3, and
	// the targets change (signed by the server's online targets key)
	// publishes with it.
	h.MustCLI("key", "create", "--uri", uri("pump-3"))
	var k1 struct {
		KeyID string `json:"keyid"`
	}
	if err := json.Unmarshal([]byte(h.MustCLI("key", "show", uri("pump-1"), "-o", "json")), &k1); err != nil || k1.KeyID == "" {
		t.Fatalf("key show pump-1: %v", err)
	}
	if _, err := h.RunCLI("delegation", "update", "pump", "--revoke-key", strings.Repeat("ab", 32)); err == nil || !strings.Contains(err.Error(), "is not a key of the role") {
		t.Fatalf("revoking a stranger: %v", err)
	}
	out = h.MustCLI("delegation", "update", "pump", "--add-key", uri("pump-3"), "--revoke-key", k1.KeyID, "--revoke-key", info.KeyID, "--threshold", "1")
	if !strings.Contains(out, "must be re-signed by 1 of them") {
		t.Fatalf("delegation update:\n%s", out)
	}
	if _, err := h.RunCLI("delegation", "sign", "pump", "--key", uri("pump-1"), "--yes"); err == nil || !strings.Contains(err.Error(), "not a targets key") && !strings.Contains(err.Error(), "is not a key of this repository") {
		t.Fatalf("a revoked key signing the change: %v", err)
	}
	if out := h.MustCLI("delegation", "sign", "pump", "--key", uri("pump-3"), "--yes"); !strings.Contains(out, "Delegation pump published as pump v3") {
		t.Fatalf("re-signing by the new key:\n%s", out)
	}
	if got, err := h.Download(h.Root, path); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("download after the key rotation: %v", err)
	}
	fw21, want21 := h.WriteFirmware("pump.bin", 4000)
	h.MustCLI("release", "push", fw21, "--name", "pump", "--version", "2.1.0", "--hardware", "pump-a")
	if _, err := h.RunCLI("release", "sign", "pump@2.1.0", "--key", uri("pump-1"), "--yes"); err == nil || !strings.Contains(err.Error(), "not a key of delegated role pump") {
		t.Fatalf("a revoked pump key signing a release: %v", err)
	}
	if out := h.MustCLI("release", "sign", "pump@2.1.0", "--key", uri("pump-3"), "--yes"); !strings.Contains(out, "published as pump v4") {
		t.Fatalf("the new pump key signing a release:\n%s", out)
	}
	if got, err := h.Download(h.Root, "pump/2.1.0/pump.bin"); err != nil || !bytes.Equal(got, want21) {
		t.Fatalf("download of a release signed by the new key: %v", err)
	}

	// The pump-1 key is also the monitor line's key; the pump-2 key is
	// not: it cannot publish a monitor release.
	fwMon, _ := h.WriteFirmware("mon.bin", 2000)
	h.MustCLI("release", "push", fwMon, "--name", "monitor", "--version", "1.0.0", "--hardware", "mon-a")
	if _, err := h.RunCLI("release", "sign", "monitor@1.0.0", "--key", uri("pump-2"), "--yes"); err == nil || !strings.Contains(err.Error(), "not a key of delegated role monitor") {
		t.Fatalf("pump-2 signing a monitor release: %v", err)
	}
	if _, err := h.Download(h.Root, "monitor/1.0.0/mon.bin"); err == nil {
		t.Fatal("a monitor release was published without a monitor key")
	}

	// A role with releases cannot be removed.
	if _, err := h.RunCLI("delegation", "remove", "pump"); err == nil || !strings.Contains(err.Error(), "has published releases") {
		t.Fatalf("removing a role with releases: %v", err)
	}

	// The audit trail names the delegation and every signature.
	audit := h.MustCLI("audit", "log", "-o", "json")
	for _, want := range []string{`"delegation.add"`, `"delegation/pump"`, `"delegation.remove"`, `"delegation.update"`, `"delegation.renew"`, `"release.sign"`, `"release.publish"`} {
		if !strings.Contains(audit, want) {
			t.Fatalf("audit log lacks %s", want)
		}
	}
	// The status lists the pump role's expiry.
	if out := h.MustCLI("status"); !strings.Contains(out, "pump") {
		t.Fatalf("status does not list the pump role:\n%s", out)
	}
}

// TestPendingDelegationCLI: under a 2-of-2 targets role whose keys the
// server does not hold, `delegation add` is a pending targets change; the
// two targets key holders sign it with `delegation sign` (each checking
// the payload against the verified repository), and then the pump line's
// own key publishes a pump release.
func TestPendingDelegationCLI(t *testing.T) {
	pass := "delegation-test-passphrase"
	keyDir := t.TempDir()
	key := func(name string) string {
		p := filepath.Join(keyDir, name+".key")
		if _, err := signer.GenerateFileKey(p, "ecdsa-p256", []byte(pass)); err != nil {
			t.Fatal(err)
		}
		return "file:" + p
	}
	alice, bob, pump := key("alice"), key("bob"), key("pump")
	h := e2e.StartFull(t, map[string]string{"TUFOTA_KEY_PASSPHRASE": pass}, []string{
		"--targets-key", alice, "--targets-key", bob, "--targets-threshold", "2",
	})

	out := h.MustCLI("delegation", "add", "pump", "--paths", "pump/*/*", "--key", pump)
	if !strings.Contains(out, "Pending: targets v2 adds the delegation") || !strings.Contains(out, "2 more signature(s) needed") {
		t.Fatalf("delegation add under an offline targets role:\n%s", out)
	}
	if out := h.MustCLI("delegation", "list"); !strings.Contains(out, "add: 2 more signature(s)") {
		t.Fatalf("delegation list does not show the pending add:\n%s", out)
	}
	if _, err := h.RunCLI("delegation", "sign", "pump", "--key", pump, "--yes"); err == nil || !strings.Contains(err.Error(), "is not a key of this repository") {
		t.Fatalf("the pump key signing the top-level targets: %v", err)
	}
	// A server (or a man in the middle) that slips an image into the
	// targets change is refused before anything is signed.
	proxy := e2e.MITM(t, h, e2e.SmuggleImage(t))
	if _, err := h.RunCLI("delegation", "sign", "pump", "--key", alice, "--yes", "--server", proxy); err == nil || !strings.Contains(err.Error(), "adds evil/9.9.9/implant.bin") {
		t.Fatalf("delegation sign through a server that smuggles an image: %v, want a refusal naming it", err)
	}
	if out := h.MustCLI("delegation", "sign", "pump", "--key", alice, "--yes"); !strings.Contains(out, "1 more signature(s) needed") {
		t.Fatalf("first targets signature:\n%s", out)
	}
	if out := h.MustCLI("delegation", "sign", "pump", "--key", bob, "--yes"); !strings.Contains(out, "Delegation pump published as targets v2") {
		t.Fatalf("second targets signature:\n%s", out)
	}
	if _, err := h.RunCLI("delegation", "cancel", "pump"); err == nil || !strings.Contains(err.Error(), "published already") {
		t.Fatalf("cancel of a published delegation: %v", err)
	}
	if out := h.MustCLI("delegation", "list"); !strings.Contains(out, "pump/*/*") || strings.Contains(out, "more signature(s)") {
		t.Fatalf("delegation list after publish:\n%s", out)
	}

	fw, want := h.WriteFirmware("pump.bin", 3000)
	h.MustCLI("release", "push", fw, "--name", "pump", "--version", "1.0.0", "--hardware", "pump-a")
	if _, err := h.RunCLI("release", "sign", "pump@1.0.0", "--key", alice, "--yes"); err == nil || !strings.Contains(err.Error(), "not a key of delegated role pump") {
		t.Fatalf("a targets key signing a pump release: %v", err)
	}
	if out := h.MustCLI("release", "sign", "pump@1.0.0", "--key", pump, "--yes"); !strings.Contains(out, "published as pump v1") {
		t.Fatalf("pump signature:\n%s", out)
	}
	if got, err := h.Download(h.Root, "pump/1.0.0/pump.bin"); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("stock updater download: %v", err)
	}
	var rels []signer.Release
	if err := json.Unmarshal([]byte(h.MustCLI("release", "list", "-o", "json")), &rels); err != nil || len(rels) != 1 || rels[0].Role != "pump" || rels[0].TargetsVersion != 1 || rels[0].State != signer.StatePublished {
		t.Fatalf("release list = %+v, %v; want pump@1.0.0 published as pump v1", rels, err)
	}
	audit := h.MustCLI("audit", "log", "-o", "json")
	for _, want := range []string{`"delegation.sign"`, `"delegation.publish"`} {
		if !strings.Contains(audit, want) {
			t.Fatalf("audit log lacks %s", want)
		}
	}

	// Backup and restore keep the line: restore verifies every published
	// release, the delegated one through the delegation.
	bdir := filepath.Join(t.TempDir(), "backup")
	var br struct {
		ManifestSHA256 string `json:"manifest_sha256"`
	}
	if err := json.Unmarshal([]byte(h.MustCLI("backup", "--dir", h.Dir, "--to", bdir, "-o", "json")), &br); err != nil {
		t.Fatal(err)
	}
	var rr struct {
		Repository backup.RepoReport `json:"repository"`
	}
	if err := json.Unmarshal([]byte(h.MustCLI("restore", "--from", bdir, "--dir", filepath.Join(t.TempDir(), "restored"), "--manifest-sha256", br.ManifestSHA256, "-o", "json")), &rr); err != nil {
		t.Fatal(err)
	}
	if rr.Repository.Releases != 1 || rr.Repository.Targets != 1 {
		t.Fatalf("restore verified %d releases and %d targets, want the pump release through its delegation", rr.Repository.Releases, rr.Repository.Targets)
	}
}
