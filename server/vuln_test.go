package server

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/tufota/tufota/access"
	"github.com/tufota/tufota/api"
	"github.com/tufota/tufota/audit"
)

func vulnTestdata(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "vuln", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// vulnImportRequest is the route matrix's valid import: one real OSV record.
func (ts *testServer) vulnImportRequest(t *testing.T, r Route) *http.Request {
	t.Helper()
	req := httptest.NewRequest(r.Method, ts.http.URL+r.Path, strings.NewReader(string(vulnTestdata(t, "osv/GO-2023-2402.json"))))
	req.Header.Set("Content-Type", "application/json")
	return req
}

// vulnCall sends a request as role and decodes a 2xx answer into out.
func (ts *testServer) vulnCall(t *testing.T, method, path, ct string, body []byte, token string, want int, out any) []byte {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = strings.NewReader(string(body))
	}
	req := httptest.NewRequest(method, ts.http.URL+path, rd)
	req.RequestURI = ""
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	res, b := ts.do(t, req, token)
	if res.StatusCode != want {
		t.Fatalf("%s %s: status = %d, want %d (%s)", method, path, res.StatusCode, want, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: decode %.300s: %v", method, path, b, err)
		}
	}
	return b
}

// TestVulnExposureEndToEnd runs the scenario over the API of a real
// server on loopback: two releases with real SBOMs, a fleet on both, an
// advisory that affects one; the report names exactly its devices, the
// fixing release's rollout progress shows, a VEX not_affected clears it,
// and the alert fires once.
func TestVulnExposureEndToEnd(t *testing.T) {
	ts := newTestServer(t)
	var mu sync.Mutex
	var alerts []Alert
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var a Alert
		if err := json.NewDecoder(r.Body).Decode(&a); err != nil {
			t.Errorf("alert body: %v", err)
		}
		mu.Lock()
		alerts = append(alerts, a)
		mu.Unlock()
	}))
	defer hook.Close()
	al, err := NewAlerter(hook.URL, []byte("0123456789abcdef-alert-secret"), hook.Client(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ts.cfg.Alerts = al
	vulnAlerts := func() []Alert {
		al.Wait()
		mu.Lock()
		defer mu.Unlock()
		var out []Alert
		for _, a := range alerts {
			if a.Kind == AlertVulnDeployed {
				out = append(out, a)
			}
		}
		return out
	}
	engineer, operator, auditor := ts.tokens[access.RoleReleaseEngineer], ts.tokens[access.RoleOperator], ts.tokens[access.RoleAuditor]

	for _, v := range []string{"1.0.0", "1.1.0"} {
		res, body := ts.pushParts(t, releasePart(t, "pumpd", v),
			part{name: "sbom", data: vulnTestdata(t, "pumpd-"+v+".cdx.json")}, part{name: "file", data: []byte("pumpd firmware " + v)})
		if res.StatusCode != http.StatusCreated {
			t.Fatalf("push pumpd %s: %d %s", v, res.StatusCode, body)
		}
	}
	// From here on every request and answer is checked against openapi.json
	// (the push helper above sends its SBOM part as text/plain).
	ts.checkTraffic(t)
	for _, d := range []struct{ id, version, site string }{
		{"pump-1", "1.0.0", "north"}, {"pump-2", "1.0.0", "north"}, {"pump-3", "1.1.0", "north"}, {"pump-4", "1.0.0", "south"},
	} {
		ts.vulnCall(t, http.MethodPost, "/api/v1/devices", "application/json",
			[]byte(fmt.Sprintf(`{"id":%q,"hardware":"pump-a","version":%q,"attrs":{"site":%q}}`, d.id, d.version, d.site)), operator, http.StatusCreated, nil)
	}
	ts.vulnCall(t, http.MethodPost, "/api/v1/cohorts", "application/json", []byte(`{"name":"north","selector":"site=north"}`), operator, http.StatusCreated, nil)

	// Bad input: one bad file refuses the import, nothing is stored.
	ts.vulnCall(t, http.MethodPost, "/api/v1/vulnerabilities/import", "application/json", vulnTestdata(t, "bad/bad-version.json"), engineer, http.StatusBadRequest, nil)
	ts.vulnCall(t, http.MethodGet, "/api/v1/vulnerabilities?id=GO-BAD-3", "", nil, auditor, http.StatusNotFound, nil)
	// An operator may read but not import.
	ts.vulnCall(t, http.MethodPost, "/api/v1/vulnerabilities/import", "application/json", vulnTestdata(t, "osv/GO-2023-2402.json"), operator, http.StatusForbidden, nil)

	var imp VulnImportResult
	ts.vulnCall(t, http.MethodPost, "/api/v1/vulnerabilities/import", "application/json", vulnTestdata(t, "osv/GO-2023-2402.json"), engineer, http.StatusOK, &imp)
	if len(imp.NewlyAffected) != 1 || imp.NewlyAffected[0].Release != "pumpd@1.0.0" || imp.ExposedDevices != 3 {
		t.Fatalf("import = %+v, want pumpd@1.0.0 newly affected on 3 devices", imp)
	}
	// The same advisory under its GHSA alias: nothing new, no second alert.
	ts.vulnCall(t, http.MethodPost, "/api/v1/vulnerabilities/import", "application/json", vulnTestdata(t, "osv/GHSA-45x7-px36-x8w8.json"), engineer, http.StatusOK, &imp)
	if len(imp.NewlyAffected) != 0 {
		t.Errorf("alias re-import newly affected %+v, want none", imp.NewlyAffected)
	}

	report := func(query string) VulnReport {
		t.Helper()
		var reps []VulnReport
		ts.vulnCall(t, http.MethodGet, "/api/v1/vulnerabilities?"+query, "", nil, auditor, http.StatusOK, &reps)
		if len(reps) != 1 {
			t.Fatalf("report %s: %d advisories, want 1: %+v", query, len(reps), reps)
		}
		return reps[0]
	}
	rep := report("id=GHSA-45x7-px36-x8w8")
	if rep.Advisory != "CVE-2023-48795" || rep.Status != "affected" {
		t.Errorf("advisory = %s (%s), want CVE-2023-48795 affected", rep.Advisory, rep.Status)
	}
	if want := []string{"pump-1", "pump-2", "pump-4"}; !slices.Equal(rep.ExposedDevices, want) {
		t.Errorf("exposed devices = %v, want %v", rep.ExposedDevices, want)
	}
	if len(rep.Releases) != 1 || rep.Releases[0].Release != "pumpd@1.0.0" || rep.Releases[0].Components[0].FixedIn != "0.17.0" {
		t.Errorf("releases = %+v, want pumpd@1.0.0 only, fixed in x/crypto 0.17.0", rep.Releases)
	}
	if len(rep.Cohorts) != 1 || rep.Cohorts[0] != (VulnCohort{Name: "north", Exposed: 2}) {
		t.Errorf("cohorts = %+v, want north with 2 exposed", rep.Cohorts)
	}
	if len(rep.Fixes) != 1 || rep.Fixes[0].Release != "pumpd@1.1.0" || rep.Fixes[0].Devices != 1 || len(rep.Fixes[0].Rollouts) != 0 {
		t.Errorf("fixes = %+v, want pumpd@1.1.0 on 1 device, no rollout yet", rep.Fixes)
	}
	if r := report("release=pumpd@1.0.0"); r.Advisory != "CVE-2023-48795" {
		t.Errorf("release filter: %s", r.Advisory)
	}
	var none []VulnReport
	ts.vulnCall(t, http.MethodGet, "/api/v1/vulnerabilities?release=pumpd@1.1.0", "", nil, auditor, http.StatusOK, &none)
	if len(none) != 0 {
		t.Errorf("pumpd@1.1.0 report = %+v, want empty", none)
	}

	// The fix rolls out to pump-1, which installs it.
	var ro struct {
		ID string `json:"id"`
	}
	ts.vulnCall(t, http.MethodPost, "/api/v1/rollouts", "application/json", []byte(`{"release":"pumpd@1.1.0","cohort":"id=pump-1","waves":"100%"}`), operator, http.StatusCreated, &ro)
	ts.vulnCall(t, http.MethodPost, "/api/v1/rollouts/"+ro.ID+"/start", "application/json", []byte(`{"reason":"CVE-2023-48795"}`), operator, http.StatusOK, nil)
	devTok, _, err := ts.cfg.Tokens.Create(context.Background(), nil, access.NewToken{Name: "pump-1", Role: access.RoleDevice, DeviceID: "pump-1"}, "test")
	if err != nil {
		t.Fatal(err)
	}
	ts.vulnCall(t, http.MethodGet, "/api/v1/device/update?device_id=pump-1&hardware=pump-a&version=1.0.0", "", nil, devTok, http.StatusOK, nil)
	ts.vulnCall(t, http.MethodPost, "/api/v1/device/status", "application/json",
		[]byte(`{"device_id":"pump-1","target":"pumpd/1.1.0/fw.bin","version":"1.1.0","state":"installed"}`), devTok, http.StatusNoContent, nil)
	rep = report("id=CVE-2023-48795")
	if want := []string{"pump-2", "pump-4"}; !slices.Equal(rep.ExposedDevices, want) {
		t.Errorf("after the fix on pump-1: exposed = %v, want %v", rep.ExposedDevices, want)
	}
	if len(rep.Fixes) != 1 || len(rep.Fixes[0].Rollouts) != 1 || rep.Fixes[0].Rollouts[0].Installed != 1 || rep.Fixes[0].Devices != 2 {
		t.Errorf("fixes = %+v, want the rollout with 1 installed and 2 devices on pumpd@1.1.0", rep.Fixes)
	}

	// VEX: pumpd 1.0.0 does not reach the vulnerable code.
	ts.vulnCall(t, http.MethodPost, "/api/v1/vulnerabilities/import", "application/json", vulnTestdata(t, "vex/pumpd-1.0.0.vex.json"), engineer, http.StatusOK, &imp)
	rep = report("id=CVE-2023-48795")
	if rep.Status != "not_affected" || len(rep.ExposedDevices) != 0 || rep.Releases[0].Components[0].Justification != "code_not_reachable" {
		t.Errorf("after VEX: %+v, want not_affected (code_not_reachable), nobody exposed", rep)
	}
	if got := vulnAlerts(); len(got) != 1 || !strings.Contains(got[0].Message, "CVE-2023-48795") || got[0].Details["devices"] != "3" {
		t.Errorf("alerts = %+v, want exactly one naming CVE-2023-48795 and 3 devices", got)
	}
	// The imports are audited, with what they changed.
	entries, err := ts.cfg.Audit.List(context.Background(), audit.Filter{Action: "vuln.import"})
	if err != nil {
		t.Fatal(err)
	}
	var ok, failed int
	for _, e := range entries {
		switch e.Outcome {
		case audit.OutcomeOK:
			ok++
		default:
			failed++
		}
	}
	// OK: GO-2023-2402, the GHSA alias, the VEX; refused: the bad file, the operator.
	if ok != 3 || failed != 2 {
		t.Errorf("vuln.import audit entries: %d ok, %d refused; want 3 and 2", ok, failed)
	}
	if e := entries[2]; e.Details["newly_affected"] != "1" || e.Details["advisories"] != "1" {
		t.Errorf("audit entry of the first import = %+v", e.Details)
	}
}

// TestVulnImportRefusals: bad imports get a clear status and code, and
// leave nothing behind.
func TestVulnImportRefusals(t *testing.T) {
	ts := newTestServer(t)
	var zipBad bytes.Buffer
	zw := zip.NewWriter(&zipBad)
	for name, data := range map[string][]byte{
		"osv/GO-2023-2402.json":  vulnTestdata(t, "osv/GO-2023-2402.json"),
		"osv/bad-version.json":   vulnTestdata(t, "bad/bad-version.json"),
		"vex/bad-state.vex.json": vulnTestdata(t, "bad/vex-bad-state.json"),
	} {
		w, err := zw.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = w.Write(data)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	engineer := ts.tokens[access.RoleReleaseEngineer]
	tests := []struct {
		name, ct string
		body     []byte
		token    string
		status   int
		want     string
	}{
		{"no content type", "", []byte(`{}`), engineer, http.StatusBadRequest, "want application/zip"},
		{"text", "text/plain", []byte("GO-2023-2402"), engineer, http.StatusBadRequest, "want application/zip"},
		{"JSON too large", "application/json", bytes.Repeat([]byte(" "), 4<<20+1), engineer, http.StatusRequestEntityTooLarge, "send a zip"},
		{"not a zip", "application/zip", []byte("PK not really"), engineer, http.StatusBadRequest, "not a zip archive"},
		{"zip with bad files", "application/zip", zipBad.Bytes(), engineer, http.StatusBadRequest, "2 file(s) not imported"},
		{"neither OSV nor VEX", "application/json", []byte(`{"name":"x"}`), engineer, http.StatusBadRequest, "neither an OSV record"},
		{"auditor", "application/json", vulnTestdata(t, "osv/GO-2023-2402.json"), ts.tokens[access.RoleAuditor], http.StatusForbidden, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := ts.vulnCall(t, http.MethodPost, "/api/v1/vulnerabilities/import", tt.ct, tt.body, tt.token, tt.status, nil)
			if !strings.Contains(string(b), tt.want) {
				t.Errorf("answer %.300s, want %q", b, tt.want)
			}
		})
	}
	if b := ts.vulnCall(t, http.MethodPost, "/api/v1/vulnerabilities/import", "application/zip", zipBad.Bytes(), engineer, http.StatusBadRequest, nil); !strings.Contains(string(b), "osv/bad-version.json") || !strings.Contains(string(b), "vex/bad-state.vex.json") {
		t.Errorf("zip refusal does not name both bad files: %s", b)
	}
	// GO-2023-2402 was good, but came in a refused import: not stored.
	ts.vulnCall(t, http.MethodGet, "/api/v1/vulnerabilities?id=GO-2023-2402", "", nil, engineer, http.StatusNotFound, nil)
	ts.vulnCall(t, http.MethodGet, "/api/v1/vulnerabilities?release=nonsense", "", nil, engineer, http.StatusBadRequest, nil)
}

// TestShippedVEXApplies: a release pushed with a VEX part ships a signed
// VEX target, and its not_affected statement clears the release's finding
// without any VEX import; a bad VEX part refuses the push.
func TestShippedVEXApplies(t *testing.T) {
	ts := newTestServer(t)
	engineer, operator, auditor := ts.tokens[access.RoleReleaseEngineer], ts.tokens[access.RoleOperator], ts.tokens[access.RoleAuditor]
	res, body := ts.pushParts(t, releasePart(t, "pumpd", "1.0.0"), part{name: "sbom", data: vulnTestdata(t, "pumpd-1.0.0.cdx.json")},
		part{name: "vex", data: []byte(`{"bomFormat":"CycloneDX","specVersion":"1.5"}`)}, part{name: "file", data: []byte("pumpd firmware 1.0.0")})
	if res.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "vulnerabilities") {
		t.Fatalf("push with a VEX without statements: %d %s, want 400 naming \"vulnerabilities\"", res.StatusCode, body)
	}
	vex := vulnTestdata(t, "vex/pumpd-1.0.0.vex.json")
	res, body = ts.pushParts(t, releasePart(t, "pumpd", "1.0.0"), part{name: "sbom", data: vulnTestdata(t, "pumpd-1.0.0.cdx.json")},
		part{name: "vex", data: vex}, part{name: "file", data: []byte("pumpd firmware 1.0.0")})
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("push pumpd 1.0.0 with VEX: %d %s", res.StatusCode, body)
	}
	ts.checkTraffic(t)
	var rel api.Release
	ts.vulnCall(t, http.MethodGet, "/api/v1/releases/pumpd/1.0.0", "", nil, auditor, http.StatusOK, &rel)
	if rel.VEX == nil || rel.VEX.Path != "pumpd/1.0.0/vex.cdx.json" || rel.VEX.Length != int64(len(vex)) {
		t.Fatalf("release VEX = %+v, want pumpd/1.0.0/vex.cdx.json of %d bytes", rel.VEX, len(vex))
	}
	ts.vulnCall(t, http.MethodPost, "/api/v1/devices", "application/json", []byte(`{"id":"pump-1","hardware":"pump-a","version":"1.0.0"}`), operator, http.StatusCreated, nil)

	var imp VulnImportResult
	ts.vulnCall(t, http.MethodPost, "/api/v1/vulnerabilities/import", "application/json", vulnTestdata(t, "osv/GO-2023-2402.json"), engineer, http.StatusOK, &imp)
	if len(imp.NewlyAffected) != 0 || imp.ExposedDevices != 0 {
		t.Errorf("import = %+v, want nothing newly affected: the release shipped a not_affected statement", imp)
	}
	var reps []VulnReport
	ts.vulnCall(t, http.MethodGet, "/api/v1/vulnerabilities?id=CVE-2023-48795", "", nil, auditor, http.StatusOK, &reps)
	if len(reps) != 1 || reps[0].Status != "not_affected" || len(reps[0].ExposedDevices) != 0 ||
		len(reps[0].Releases) != 1 || reps[0].Releases[0].Components[0].Justification != "code_not_reachable" {
		t.Fatalf("report = %+v, want pumpd@1.0.0 not_affected (code_not_reachable), nobody exposed", reps)
	}
}
