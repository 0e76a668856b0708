package audit

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tufota/tufota/audit"
	"github.com/tufota/tufota/e2e"
)

// TestAuditTrailEndToEnd runs real actions through the CLI and the server,
// then checks the log lists each with the right actor, that an export
// verifies offline against the key init printed, and that a later export
// provably extends it.
func TestAuditTrailEndToEnd(t *testing.T) {
	h := e2e.Start(t)
	fw, _ := h.WriteFirmware("fw.bin", 2048)
	h.MustCLI("user", "create", "alice", "--role", "release-engineer")
	h.MustCLI("token", "create", "--name", "alice", "--role", "release-engineer", "--user", "alice", "--expires", "30d")
	var alice struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal([]byte(h.MustCLI("token", "create", "--name", "alice2", "--role", "release-engineer", "--user", "alice", "-o", "json")), &alice); err != nil {
		t.Fatal(err)
	}
	h.MustCLI("release", "push", fw, "--name", "pump-fw", "--version", "1.0.0", "--hardware", "pump-a", "--token", alice.Token)
	if _, err := h.RunCLI("token", "create", "--name", "eve", "--role", "admin", "--token", alice.Token); err == nil {
		t.Fatal("a release engineer created an admin token")
	}
	h.MustCLI("token", "revoke", "alice")

	var entries []audit.Entry
	if err := json.Unmarshal([]byte(h.MustCLI("audit", "log", "-o", "json")), &entries); err != nil {
		t.Fatal(err)
	}
	type key struct{ actor, action, outcome string }
	seen := map[key]bool{}
	for _, e := range entries {
		seen[key{e.Actor, e.Action, e.Outcome}] = true
	}
	for _, k := range []key{
		{"tufota-init", "repository.init", "ok"},
		{"tufota-init", "token.create", "ok"},
		{"admin", "user.create", "ok"},
		{"admin", "token.create", "ok"},
		{"alice2", "release.push", "ok"},
		{"alice2", "token.create", "denied"},
		{"admin", "token.revoke", "ok"},
	} {
		if !seen[k] {
			t.Errorf("audit log lacks %+v", k)
		}
	}

	dir := t.TempDir()
	old := filepath.Join(dir, "old.json")
	h.MustCLI("audit", "export", "--format", "json", "--out", old)
	var rep struct {
		Export audit.Report `json:"export"`
	}
	if err := json.Unmarshal([]byte(h.MustCLI("audit", "verify", "--export", old, "-o", "json")), &rep); err != nil {
		t.Fatal(err)
	}
	if !rep.Export.OK || rep.Export.Entries < 6 {
		t.Fatalf("verify old export = %+v", rep.Export)
	}
	vkey := rep.Export.VerifierKey
	h.MustCLI("audit", "verify", "--export", old, "--key", vkey)
	if _, err := h.RunCLI("audit", "verify", "--export", old, "--key", strings.Replace(vkey, "+", "-x+", 1)); err == nil {
		t.Fatal("verify accepted an export against the wrong pinned key")
	}

	h.MustCLI("release", "push", fw, "--name", "pump-fw", "--version", "1.0.1", "--hardware", "pump-a")
	newer := filepath.Join(dir, "new.json")
	h.MustCLI("audit", "export", "--format", "json", "--out", newer)
	out := h.MustCLI("audit", "verify", "--export", newer, "--since-export", old, "--key", vkey)
	if !strings.Contains(out, "extends") {
		t.Fatalf("verify --since-export output lacks the consistency result:\n%s", out)
	}
	// Server-side and client-side verification of the live log.
	h.MustCLI("audit", "verify", "--key", vkey)

	// An edited export is refused, naming the entry.
	b, err := os.ReadFile(newer)
	if err != nil {
		t.Fatal(err)
	}
	edited := filepath.Join(dir, "edited.json")
	if err := os.WriteFile(edited, []byte(strings.Replace(string(b), `"alice2"`, `"mallory"`, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := h.RunCLI("audit", "verify", "--export", edited); err == nil || !strings.Contains(err.Error(), "entry") {
		t.Fatalf("verify of an edited export: %v, want a failure naming the entry", err)
	}
}
