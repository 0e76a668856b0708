package vuln

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/tufota/tufota"
)

func readFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func testReleases(t *testing.T) []Release {
	t.Helper()
	var rels []Release
	for _, v := range []string{"1.0.0", "1.1.0"} {
		cs, err := Components(readFile(t, "pumpd-"+v+".cdx.json"))
		if err != nil {
			t.Fatalf("Components(pumpd-%s): %v", v, err)
		}
		rels = append(rels, Release{Ref: "pumpd@" + v, Components: cs})
	}
	return rels
}

func TestComponentsOfRealSBOM(t *testing.T) {
	t.Parallel()
	cs, err := Components(readFile(t, "pumpd-1.0.0.cdx.json"))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, c := range cs {
		got[c.Package] = c.Ecosystem + " " + c.Version
	}
	want := map[string]string{
		"example.com/pumpd":   "Go v1.0.0",
		"golang.org/x/crypto": "Go v0.16.0",
		"golang.org/x/net":    "Go v0.19.0",
		"golang.org/x/text":   "Go v0.14.0",
		"stdlib":              "Go go1.26.8",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("component %s = %q, want %q (all: %v)", k, got[k], v, got)
		}
	}
	for _, c := range cs {
		if strings.Contains(c.Purl, "?") {
			t.Errorf("purl %q keeps its qualifiers", c.Purl)
		}
	}
}

func TestMatchRealAdvisories(t *testing.T) {
	t.Parallel()
	b, err := ReadFS(os.DirFS("testdata"), "osv")
	if err != nil {
		t.Fatalf("ReadFS: %v", err)
	}
	vexBatch, err := ReadJSON("pumpd-1.0.0.vex.json", readFile(t, "vex/pumpd-1.0.0.vex.json"))
	if err != nil {
		t.Fatalf("ReadJSON(VEX): %v", err)
	}
	rels := testReleases(t)
	type row struct{ adv, rel, comp, status, fixed string }
	tests := []struct {
		name string
		vex  []Statement
		want []row
	}{
		{
			name: "no VEX",
			want: []row{
				// GO-2023-2402 and GHSA-45x7-px36-x8w8 merge under their CVE.
				{"CVE-2023-48795", "pumpd@1.0.0", "pkg:golang/golang.org/x/crypto@v0.16.0", StatusAffected, "0.17.0"},
				// x/net 0.19.0 is below 0.23.0 in both releases; 1.26.8 stdlib is outside both stdlib intervals.
				{"CVE-2023-45288", "pumpd@1.0.0", "pkg:golang/golang.org/x/net@v0.19.0", StatusAffected, "0.23.0"},
				{"CVE-2023-45288", "pumpd@1.1.0", "pkg:golang/golang.org/x/net@v0.19.0", StatusAffected, "0.23.0"},
				// GO-2023-2102 (x/net fixed in 0.17.0) matches nothing; the withdrawn record neither.
			},
		},
		{
			name: "VEX not_affected for 1.0.0",
			vex:  vexBatch.VEX,
			want: []row{
				{"CVE-2023-48795", "pumpd@1.0.0", "pkg:golang/golang.org/x/crypto@v0.16.0", StatusNotAffected, "0.17.0"},
				{"CVE-2023-45288", "pumpd@1.0.0", "pkg:golang/golang.org/x/net@v0.19.0", StatusAffected, "0.23.0"},
				{"CVE-2023-45288", "pumpd@1.1.0", "pkg:golang/golang.org/x/net@v0.19.0", StatusAffected, "0.23.0"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := Match(b.Advisories, tt.vex, rels)
			var got []row
			for _, f := range fs {
				got = append(got, row{f.Advisory, f.Release, f.Component, f.Status, f.FixedIn})
			}
			sortRows := func(rs []row) {
				for i := range rs {
					for j := i + 1; j < len(rs); j++ {
						if rs[j].adv+rs[j].rel < rs[i].adv+rs[i].rel {
							rs[i], rs[j] = rs[j], rs[i]
						}
					}
				}
			}
			sortRows(got)
			sortRows(tt.want)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("findings:\n got %v\nwant %v", got, tt.want)
			}
		})
	}
	var cve Finding
	for _, f := range Match(b.Advisories, nil, rels) {
		if f.Advisory == "CVE-2023-48795" {
			cve = f
		}
	}
	if want := []string{"GHSA-45x7-px36-x8w8", "GO-2023-2402"}; !reflect.DeepEqual(cve.Aliases, want) {
		t.Errorf("aliases of CVE-2023-48795 = %v, want %v", cve.Aliases, want)
	}
}

func TestAffectedVersion(t *testing.T) {
	t.Parallel()
	ev := func(es ...Event) []Range { return []Range{{Type: "SEMVER", Events: es}} }
	tests := []struct {
		name      string
		eco, ver  string
		ranges    []Range
		versions  []string
		want      bool
		wantFixed string
	}{
		{"below fix", "Go", "0.16.0", ev(Event{Introduced: "0"}, Event{Fixed: "0.17.0"}), nil, true, "0.17.0"},
		{"at fix", "Go", "0.17.0", ev(Event{Introduced: "0"}, Event{Fixed: "0.17.0"}), nil, false, ""},
		{"second interval", "Go", "1.22.1", ev(Event{Introduced: "0"}, Event{Fixed: "1.21.9"}, Event{Introduced: "1.22.0-0"}, Event{Fixed: "1.22.2"}), nil, true, "1.22.2"},
		{"between intervals", "Go", "1.21.10", ev(Event{Introduced: "0"}, Event{Fixed: "1.21.9"}, Event{Introduced: "1.22.0-0"}, Event{Fixed: "1.22.2"}), nil, false, ""},
		{"events unsorted", "Go", "1.22.1", ev(Event{Fixed: "1.22.2"}, Event{Introduced: "1.22.0-0"}, Event{Fixed: "1.21.9"}, Event{Introduced: "0"}), nil, true, "1.22.2"},
		{"last_affected inclusive", "Go", "0.14.0", ev(Event{Introduced: "0"}, Event{LastAffected: "0.14.0"}), nil, true, ""},
		{"above last_affected", "Go", "0.14.1", ev(Event{Introduced: "0"}, Event{LastAffected: "0.14.0"}), nil, false, ""},
		{"before introduced", "Go", "1.0.0", ev(Event{Introduced: "1.1.0"}, Event{Fixed: "1.2.0"}), nil, false, ""},
		{"listed version", "PyPI", "3.3.1", nil, []string{"3.3.1"}, true, ""},
		{"PyPI ordering", "PyPI", "3.4.0rc1", []Range{{Type: "ECOSYSTEM", Events: []Event{{Introduced: "0"}, {Fixed: "3.4.0"}}}}, nil, true, "3.4.0"},
		{"Debian epochs", "Debian:12", "1:1.2.13.dfsg-1", []Range{{Type: "ECOSYSTEM", Events: []Event{{Introduced: "0"}, {Fixed: "1:1.3.dfsg-1"}}}}, nil, true, "1:1.3.dfsg-1"},
		{"unparseable version", "Go", "garbage", ev(Event{Introduced: "0"}), nil, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, fixed := affectedVersion(Affected{Ecosystem: tt.eco, Name: "p", Ranges: tt.ranges, Versions: tt.versions}, tt.ver)
			if got != tt.want || fixed != tt.wantFixed {
				t.Errorf("affectedVersion(%s %s) = %v, %q; want %v, %q", tt.eco, tt.ver, got, fixed, tt.want, tt.wantFixed)
			}
		})
	}
}

func TestBadInput(t *testing.T) {
	t.Parallel()
	tests := []struct {
		file, want string
		code       tufota.Code
	}{
		{"bad/truncated.json", "not a JSON object", tufota.EInvalid},
		{"bad/unknown-ecosystem.json", `unknown ecosystem "Nixpkgs-Unknown"`, tufota.EInvalid},
		{"bad/bad-version.json", `"not.a.version" is not a Go module version`, tufota.EInvalid},
		{"bad/vex-no-justification.json", "not_affected needs a justification", tufota.EInvalid},
		{"bad/vex-bad-state.json", `analysis state "maybe"`, tufota.EInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			_, err := ReadJSON(tt.file, readFile(t, tt.file))
			if err == nil {
				t.Fatalf("ReadJSON(%s) = nil error, want %q", tt.file, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), tt.file) {
				t.Errorf("error = %q, want it to name %s and say %q", err, tt.file, tt.want)
			}
			if c := tufota.ErrorCode(err); c != tt.code {
				t.Errorf("code = %s, want %s", c, tt.code)
			}
		})
	}
	// A directory with good and bad files imports nothing and names every bad file.
	_, err := ReadFS(os.DirFS("testdata"), ".")
	if err == nil {
		t.Fatal("ReadFS(testdata) with bad files = nil error")
	}
	for _, f := range []string{"bad/truncated.json", "bad/unknown-ecosystem.json", "bad/bad-version.json", "bad/vex-bad-state.json"} {
		if !strings.Contains(err.Error(), f) {
			t.Errorf("error does not name %s: %v", f, err)
		}
	}
	// The two SBOMs in testdata are CycloneDX but no VEX: refused too.
	if !strings.Contains(err.Error(), "7 file(s) not imported") || !strings.Contains(err.Error(), `pumpd-1.0.0.cdx.json: VEX document has no "vulnerabilities"`) {
		t.Errorf("error = %v, want 7 bad files", err)
	}
}

// TestComponentsSPDX reads the SPDX SBOM of the signer's tests (a published
// firmware shape: Zephyr, mbed TLS, littlefs). Its pkg:github and
// pkg:generic purls name no OSV ecosystem, so Match cannot judge them; the
// test pins that they are read and left without one.
func TestComponentsSPDX(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile(filepath.Join("..", "signer", "testdata", "sbom", "pump-fw.spdx.json"))
	if err != nil {
		t.Fatal(err)
	}
	cs, err := Components(b)
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, c := range cs {
		if c.Purl == "pkg:github/mbed-tls/mbedtls@v3.6.2" { // packageurl-go normalises github names to lower case
			found = true
			if c.Ecosystem != "" {
				t.Errorf("mbedtls ecosystem = %q, want none", c.Ecosystem)
			}
		}
	}
	if !found {
		t.Errorf("components %+v: no mbedtls purl", cs)
	}
	if _, err := Components([]byte(`{"name":"x"}`)); tufota.ErrorCode(err) != tufota.EInvalid {
		t.Errorf("Components(not an SBOM) error = %v, want invalid", err)
	}
}
