package vuln

import (
	"encoding/csv"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tufota/tufota/api"
	"github.com/tufota/tufota/e2e"
	"github.com/tufota/tufota/server"
)

// TestVulnEndToEnd drives the vulnerability commands against a real server
// process (run() on loopback) with the alert webhook configured: releases
// pushed with real SBOMs, devices registered with the CLI, advisories
// imported from a directory (zipped on the fly), the report as a table,
// JSON and CSV, a remediation cohort, and VEX clearing the finding.
func TestVulnEndToEnd(t *testing.T) {
	vulnAlerts := make(chan server.Alert, 16)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var a server.Alert
		_ = json.NewDecoder(r.Body).Decode(&a)
		if a.Kind == server.AlertVulnDeployed {
			vulnAlerts <- a
		}
	}))
	defer hook.Close()
	secret := filepath.Join(t.TempDir(), "alert.secret")
	if err := os.WriteFile(secret, []byte("0123456789abcdef-alert-secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	h := e2e.StartWith(t, "--alert-webhook", hook.URL, "--alert-secret-file", secret)
	td := filepath.Join("..", "..", "vuln", "testdata")
	for _, v := range []string{"1.0.0", "1.1.0"} {
		fw, _ := h.WriteFirmware("pumpd-"+v+".bin", 4<<10)
		h.MustCLI("release", "push", fw, "--name", "pumpd", "--version", v, "--hardware", "pump-a", "--sbom", filepath.Join(td, "pumpd-"+v+".cdx.json"))
	}
	for _, d := range [][2]string{{"pump-1", "1.0.0"}, {"pump-2", "1.0.0"}, {"pump-3", "1.1.0"}} {
		h.MustCLI("device", "register", d[0], "--hardware", "pump-a", "--current-version", d[1])
	}

	// A directory with one malformed file: refused, the file named, nothing imported.
	bad := t.TempDir()
	for _, f := range []string{"osv/GO-2023-2402.json", "bad/unknown-ecosystem.json"} {
		b, err := os.ReadFile(filepath.Join(td, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(bad, filepath.Base(f)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := h.RunCLI("vuln", "import", bad); err == nil || !strings.Contains(err.Error(), `unknown-ecosystem.json: GO-BAD-2: affected[0] (foo): unknown ecosystem "Nixpkgs-Unknown"`) {
		t.Fatalf("import of a bad directory: %v, want the bad file named", err)
	}
	if out := h.MustCLI("vuln", "report", "-o", "json"); strings.TrimSpace(out) != "[]" {
		t.Fatalf("after a refused import: %s, want []", out)
	}

	out := h.MustCLI("vuln", "import", filepath.Join(td, "osv"))
	if !strings.Contains(out, "Imported 5 file(s): 4 advisories, 1 withdrawn") || !strings.Contains(out, "CVE-2023-48795") {
		t.Fatalf("vuln import:\n%s", out)
	}
	if a := <-vulnAlerts; a.Details["devices"] != "3" {
		t.Errorf("alert %+v, want 3 devices (pump-1, pump-2 on 1.0.0 for CVE-2023-48795; all three for CVE-2023-45288)", a)
	}
	var reps []server.VulnReport
	if err := json.Unmarshal([]byte(h.MustCLI("vuln", "report", "--id", "GO-2023-2402", "-o", "json")), &reps); err != nil {
		t.Fatal(err)
	}
	if len(reps) != 1 || !slices.Equal(reps[0].ExposedDevices, []string{"pump-1", "pump-2"}) || reps[0].Fixes[0].Release != "pumpd@1.1.0" {
		t.Fatalf("report --id GO-2023-2402: %+v, want pump-1 and pump-2 exposed, fixed by pumpd@1.1.0", reps)
	}
	// CVE-2023-45288 (x/net < 0.23.0) is in both releases: all three devices.
	if err := json.Unmarshal([]byte(h.MustCLI("vuln", "report", "--id", "CVE-2023-45288", "-o", "json")), &reps); err != nil {
		t.Fatal(err)
	}
	if len(reps) != 1 || len(reps[0].ExposedDevices) != 3 || len(reps[0].Fixes) != 0 {
		t.Fatalf("report --id CVE-2023-45288: %+v, want 3 exposed and no fixing release", reps)
	}
	if table := h.MustCLI("vuln", "report", "--release", "pumpd@1.0.0"); !strings.Contains(table, "fixed by pumpd@1.1.0") {
		t.Errorf("report table:\n%s", table)
	}
	rows, err := csv.NewReader(strings.NewReader(h.MustCLI("vuln", "report", "--id", "CVE-2023-48795", "--format", "csv"))).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 3 || rows[1][0] != "CVE-2023-48795" || rows[1][7] != "pump-1" || rows[2][7] != "pump-2" || rows[1][8] != "pumpd@1.1.0" {
		t.Errorf("report --format csv: %v", rows)
	}
	if out := h.MustCLI("vuln", "cohort", "terrapin", "--exposed-to", "CVE-2023-48795"); !strings.Contains(out, "Cohort terrapin: 2 device(s)") {
		t.Errorf("vuln cohort: %s", out)
	}
	// The same from the cohort command: --exposed-to instead of a selector.
	var co api.Cohort
	if err := json.Unmarshal([]byte(h.MustCLI("cohort", "create", "terrapin-2", "--exposed-to", "CVE-2023-48795", "-o", "json")), &co); err != nil {
		t.Fatal(err)
	}
	if co.Name != "terrapin-2" || co.Devices != 2 || co.Selector != "id in (pump-1,pump-2)" {
		t.Errorf("cohort create --exposed-to: %+v, want terrapin-2 selecting pump-1 and pump-2", co)
	}
	if out, err := h.RunCLI("cohort", "create", "both", "--exposed-to", "CVE-2023-48795", "--selector", "site=north"); err == nil {
		t.Errorf("cohort create with --selector and --exposed-to succeeded: %s", out)
	}
	if out, err := h.RunCLI("cohort", "create", "neither"); err == nil {
		t.Errorf("cohort create without --selector or --exposed-to succeeded: %s", out)
	}

	h.MustCLI("vuln", "import", filepath.Join(td, "vex", "pumpd-1.0.0.vex.json"))
	if err := json.Unmarshal([]byte(h.MustCLI("vuln", "report", "--id", "CVE-2023-48795", "-o", "json")), &reps); err != nil {
		t.Fatal(err)
	}
	if reps[0].Status != "not_affected" || len(reps[0].ExposedDevices) != 0 {
		t.Errorf("after VEX: %+v, want not_affected, none exposed", reps[0])
	}
	// Importing the same advisories again makes nothing newly affected.
	h.MustCLI("vuln", "import", filepath.Join(td, "osv"))
	if len(vulnAlerts) != 0 {
		t.Errorf("%d more %s alerts, want exactly one in all", len(vulnAlerts), server.AlertVulnDeployed)
	}

	// A release that ships its VEX (--vex): signed with it, shown, and
	// applied without an import. pumpd 1.2.0 has 1.0.0's components; the
	// imported VEX speaks for 1.0.0 only, the shipped one for 1.2.0.
	fw, _ := h.WriteFirmware("pumpd-1.2.0.bin", 4<<10)
	if _, err := h.RunCLI("release", "push", fw, "--name", "pumpd", "--version", "1.2.0", "--hardware", "pump-a",
		"--sbom", filepath.Join(td, "pumpd-1.0.0.cdx.json"), "--vex", filepath.Join(td, "pumpd-1.0.0.cdx.json")); err == nil {
		t.Error("release push --vex with an SBOM for a VEX succeeded")
	}
	h.MustCLI("release", "push", fw, "--name", "pumpd", "--version", "1.2.0", "--hardware", "pump-a",
		"--sbom", filepath.Join(td, "pumpd-1.0.0.cdx.json"), "--vex", filepath.Join(td, "vex", "pumpd-1.0.0.vex.json"))
	if out := h.MustCLI("release", "show", "pumpd@1.2.0"); !strings.Contains(out, "pumpd/1.2.0/vex.cdx.json") || !strings.Contains(out, "VEX SHA-256:") {
		t.Errorf("release show of a release with VEX:\n%s", out)
	}
	reps = nil // a fresh decode: json.Unmarshal keeps fields an answer omits
	if err := json.Unmarshal([]byte(h.MustCLI("vuln", "report", "--id", "CVE-2023-48795", "-o", "json")), &reps); err != nil {
		t.Fatal(err)
	}
	status := map[string]string{}
	for _, r := range reps[0].Releases {
		status[r.Release] = r.Status
	}
	if len(reps) != 1 || status["pumpd@1.2.0"] != "not_affected" || status["pumpd@1.0.0"] != "not_affected" {
		t.Errorf("report of CVE-2023-48795 after pumpd 1.2.0 shipped its VEX: %+v, want 1.2.0 (shipped) and 1.0.0 (imported) not_affected", reps)
	}
}
