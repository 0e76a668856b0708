package vuln

import (
	"os"
	"path/filepath"
	"testing"
)

func addSeeds(f *testing.F, globs ...string) {
	for _, g := range globs {
		files, _ := filepath.Glob(filepath.Join("testdata", g))
		for _, p := range files {
			b, err := os.ReadFile(p)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b)
		}
	}
}

// FuzzParseOSV checks that no input makes the OSV parser panic, and that
// what it accepts has an ID and matches without failing.
func FuzzParseOSV(f *testing.F) {
	addSeeds(f, "osv/*.json", "bad/*.json")
	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := ParseOSV(data)
		if err != nil {
			return
		}
		if a.ID == "" {
			t.Fatal("accepted a record without an ID")
		}
		Match([]Advisory{a}, nil, []Release{{Ref: "x@1", Components: []Component{
			{Purl: "pkg:golang/golang.org/x/crypto@v0.16.0", Name: "golang.org/x/crypto", Version: "v0.16.0", Ecosystem: "Go", Package: "golang.org/x/crypto"},
		}}})
	})
}

// FuzzParseVEX checks that no input makes the VEX parser panic, and that
// every statement it accepts is complete.
func FuzzParseVEX(f *testing.F) {
	addSeeds(f, "vex/*.json", "bad/vex-*.json", "*.cdx.json")
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := ParseVEX(data)
		if err != nil {
			return
		}
		for _, s := range st {
			if s.VulnID == "" || s.Ref == "" || s.State == "" {
				t.Fatalf("incomplete statement %+v", s)
			}
		}
	})
}

// FuzzComponents checks that no SBOM makes the component reader panic.
func FuzzComponents(f *testing.F) {
	addSeeds(f, "*.cdx.json")
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = Components(data)
	})
}
