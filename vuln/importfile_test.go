package vuln

import (
	"archive/zip"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/tufota/tufota"
)

// TestOpenImport checks the three shapes tufota vuln import sends: a JSON
// file as it is, a zip as it is, and a directory zipped on the fly with
// only its *.json files; a missing path is a clear EInvalid.
func TestOpenImport(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("osv/a.json", `{"id":"A"}`)
	write("osv/sub/b.JSON", `{"id":"B"}`)
	write("osv/notes.txt", "not sent")
	one := write("one.json", `{"id":"ONE"}`)

	for _, tc := range []struct {
		path, wantType string
		wantFiles      []string // for zips
		wantBody       string   // for JSON
	}{
		{path: one, wantType: "application/json", wantBody: `{"id":"ONE"}`},
		{path: filepath.Join(dir, "osv"), wantType: "application/zip", wantFiles: []string{"a.json", "sub/b.JSON"}},
	} {
		rc, ct, err := OpenImport(tc.path)
		if err != nil {
			t.Fatalf("OpenImport(%s): %v", tc.path, err)
		}
		b, err := io.ReadAll(rc)
		_ = rc.Close()
		if err != nil {
			t.Fatalf("read %s: %v", tc.path, err)
		}
		if ct != tc.wantType {
			t.Errorf("%s: content type %q, want %q", tc.path, ct, tc.wantType)
		}
		if tc.wantFiles == nil {
			if string(b) != tc.wantBody {
				t.Errorf("%s: body %q, want %q", tc.path, b, tc.wantBody)
			}
			continue
		}
		zr, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			t.Fatalf("%s: not a zip: %v", tc.path, err)
		}
		var got []string
		for _, f := range zr.File {
			got = append(got, f.Name)
		}
		slices.Sort(got)
		if !slices.Equal(got, tc.wantFiles) {
			t.Errorf("%s: zip holds %q, want %q", tc.path, got, tc.wantFiles)
		}
	}
	if _, _, err := OpenImport(filepath.Join(dir, "missing")); tufota.ErrorCode(err) != tufota.EInvalid {
		t.Errorf("missing path: %v, want EInvalid", err)
	}
}
