package repofixtures_test

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"testing"

	repofixtures "github.com/tufota/tufota/repo-fixtures"
)

var update = flag.Bool("update", false, "rewrite the checked-in fixtures")

// TestFixturesUpToDate regenerates every fixture and compares it with the
// checked-in copy (with -update, rewrites the copy instead).
func TestFixturesUpToDate(t *testing.T) {
	fixtures, err := repofixtures.All()
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := repofixtures.Write(".", fixtures); err != nil {
			t.Fatal(err)
		}
	}
	tmp := t.TempDir()
	if err := repofixtures.Write(tmp, fixtures); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range fixtures {
		names = append(names, f.Name)
		want, err := repofixtures.Load(filepath.Join(tmp, f.Name))
		if err != nil {
			t.Fatal(err)
		}
		got, err := repofixtures.Load(f.Name)
		if err != nil {
			t.Fatalf("%s: %v (run go run ./repo-fixtures/gen)", f.Name, err)
		}
		compare(t, f.Name+"/repo", got.Repo, want.Repo)
		compare(t, f.Name+"/cached", got.Cached, want.Cached)
		if !bytes.Equal(got.Trusted, want.Trusted) || got.Meta != want.Meta {
			t.Errorf("%s: trusted root or fixture.json differ from the generator (run go run ./repo-fixtures/gen)", f.Name)
		}
	}
	onDisk, err := repofixtures.Names(".")
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(names)
	if !slices.Equal(onDisk, names) {
		t.Errorf("fixture directories %v, generator makes %v", onDisk, names)
	}
	readme, _ := os.ReadFile("README.md")
	if !bytes.Equal(readme, repofixtures.README(fixtures)) {
		t.Error("README.md differs from the generator (run go run ./repo-fixtures/gen)")
	}
}

func compare(t *testing.T, where string, got, want map[string][]byte) {
	t.Helper()
	for name, w := range want {
		if g, ok := got[name]; !ok || !bytes.Equal(g, w) {
			t.Errorf("%s/%s differs from the generator (run go run ./repo-fixtures/gen)", where, name)
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("%s/%s is not made by the generator", where, name)
		}
	}
}

// TestGeneratorIsDeterministic: two runs write the same bytes.
func TestGeneratorIsDeterministic(t *testing.T) {
	a, err := repofixtures.All()
	if err != nil {
		t.Fatal(err)
	}
	b, err := repofixtures.All()
	if err != nil {
		t.Fatal(err)
	}
	for i := range a {
		compare(t, a[i].Name, a[i].Repo, b[i].Repo)
	}
}
