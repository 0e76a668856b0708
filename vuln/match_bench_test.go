package vuln

import (
	"fmt"
	"os"
	"testing"
)

// BenchmarkMatch matches an export the size of OSV's Go ecosystem (about
// 10,000 records; here copies of GO-2023-2402 on distinct modules, one in
// 50 on a module the releases ship) against 20 releases of 200
// components each.
func BenchmarkMatch(b *testing.B) {
	base, err := ParseOSV(mustRead(b, "testdata/osv/GO-2023-2402.json"))
	if err != nil {
		b.Fatal(err)
	}
	var advs []Advisory
	for i := range 10000 {
		a := base
		a.ID, a.Aliases = fmt.Sprintf("BENCH-%d", i), []string{fmt.Sprintf("CVE-BENCH-%d", i)}
		af := a.Affected[0]
		af.Name = fmt.Sprintf("example.com/mod%d", i)
		a.Affected = []Affected{af}
		advs = append(advs, a)
	}
	var rels []Release
	for r := range 20 {
		rel := Release{Ref: fmt.Sprintf("pumpd@1.%d.0", r)}
		for c := range 200 {
			m := fmt.Sprintf("example.com/mod%d", c*50)
			rel.Components = append(rel.Components, component(Component{Name: m, Version: "v0.16.0", Purl: "pkg:golang/" + m + "@v0.16.0"}))
		}
		rels = append(rels, rel)
	}
	b.ReportAllocs()
	for b.Loop() {
		if fs := Match(advs, nil, rels); len(fs) != 20*200 {
			b.Fatalf("%d findings, want %d", len(fs), 20*200)
		}
	}
}

func mustRead(b *testing.B, p string) []byte {
	b.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		b.Fatal(err)
	}
	return data
}
