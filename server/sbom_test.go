package server

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/tufota/tufota/access"
	"github.com/tufota/tufota/signer"
)

// part is one part of a multipart release upload.
type part struct {
	name, file string
	data       []byte
}

// multipartBody builds a release upload from parts, in order.
func multipartBody(t *testing.T, parts ...part) (io.Reader, string) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for _, p := range parts {
		var w io.Writer
		var err error
		if p.file != "" {
			w, err = mw.CreateFormFile(p.name, p.file)
		} else {
			w, err = mw.CreateFormField(p.name)
		}
		if err != nil {
			t.Fatal(err)
		}
		_, _ = w.Write(p.data)
	}
	_ = mw.Close()
	return &buf, mw.FormDataContentType()
}

func releasePart(t *testing.T, name, version string) part {
	t.Helper()
	b, err := json.Marshal(signer.PushRequest{Name: name, Version: version, Hardware: []string{"pump-a"}, File: "fw.bin"})
	if err != nil {
		t.Fatal(err)
	}
	return part{name: "release", data: b}
}

func (ts *testServer) pushParts(t *testing.T, parts ...part) (*http.Response, []byte) {
	t.Helper()
	body, ct := multipartBody(t, parts...)
	req := httptest.NewRequest(http.MethodPost, ts.http.URL+"/api/v1/releases", body)
	req.RequestURI = ""
	req.Header.Set("Content-Type", ct)
	return ts.do(t, req, ts.tokens[access.RoleReleaseEngineer])
}

func testSBOM(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "signer", "testdata", "sbom", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestPushSBOMOverAPI(t *testing.T) {
	ts := newTestServer(t)
	ts.cfg.RequireSBOM = true
	doc := testSBOM(t, "pump-fw.cdx.json")
	resp, out := ts.pushParts(t, releasePart(t, "fw", "1.0.0"), part{name: "sbom", file: "bom.json", data: doc}, part{name: "file", file: "fw.bin", data: []byte("firmware")})
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("push with SBOM: status = %d, want 201 (%s)", resp.StatusCode, out)
	}
	var rel signer.Release
	if err := json.Unmarshal(out, &rel); err != nil {
		t.Fatal(err)
	}
	if rel.SBOM == nil || rel.SBOM.Path != "fw/1.0.0/sbom.cdx.json" || rel.SBOM.Format != signer.SBOMCycloneDX || rel.SBOM.Length != int64(len(doc)) {
		t.Fatalf("release SBOM = %+v", rel.SBOM)
	}
	req := httptest.NewRequest(http.MethodGet, ts.http.URL+"/tuf/"+signer.TargetBlobKey(rel.SBOM.Path, rel.SBOM.SHA256), nil)
	req.RequestURI = ""
	resp, got := ts.do(t, req, ts.tokens[access.RoleAuditor])
	if resp.StatusCode != http.StatusOK || !bytes.Equal(got, doc) {
		t.Fatalf("GET SBOM target: status %d, %d bytes; want 200 with the document", resp.StatusCode, len(got))
	}
}

func TestPushBadSBOMOverAPI(t *testing.T) {
	ts := newTestServer(t)
	ctx := context.Background()
	before, err := ts.cfg.Repo.Targets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cdx := testSBOM(t, "pump-fw.cdx.json")
	fw := part{name: "file", file: "fw.bin", data: []byte("firmware")}
	sbom := func(b []byte) part { return part{name: "sbom", file: "bom.json", data: b} }
	tests := []struct {
		name    string
		require bool
		parts   []part
		status  int
		want    string
	}{
		{"malformed SBOM", false, []part{releasePart(t, "fw", "1.0.0"), sbom([]byte(`{"bomFormat":"CycloneDX"`)), fw}, 400, "SBOM is not valid JSON"},
		{"unknown SBOM format", false, []part{releasePart(t, "fw", "1.0.0"), sbom([]byte(`{"name":"fw"}`)), fw}, 400, "neither CycloneDX JSON"},
		{"SBOM trailing data", false, []part{releasePart(t, "fw", "1.0.0"), sbom(append(append([]byte{}, cdx...), "{}"...)), fw}, 400, "trailing data"},
		{"empty SBOM", false, []part{releasePart(t, "fw", "1.0.0"), sbom(nil), fw}, 400, "SBOM is empty"},
		{"oversized SBOM", false, []part{releasePart(t, "fw", "1.0.0"), sbom(bytes.Repeat([]byte(" "), signer.MaxSBOMBytes+1)), fw}, 413, "larger than"},
		{"SBOM after file", false, []part{releasePart(t, "fw", "1.0.0"), fw, sbom(cdx)}, 400, `part "sbom" after "file"`},
		{"unknown part", false, []part{releasePart(t, "fw", "1.0.0"), {name: "spdx", data: cdx}, fw}, 400, `part "spdx" after "release"`},
		{"SBOM but no file", false, []part{releasePart(t, "fw", "1.0.0"), sbom(cdx)}, 400, `want a "file" part after "sbom"`},
		{"required, missing", true, []part{releasePart(t, "fw", "1.0.0"), fw}, 400, "this repository requires an SBOM with every release (--sbom FILE)"},
		{"required, malformed", true, []part{releasePart(t, "fw", "1.0.0"), sbom([]byte("[]")), fw}, 400, "not an object"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ts.cfg.RequireSBOM = tc.require
			resp, out := ts.pushParts(t, tc.parts...)
			wantError(t, resp, out, tc.status, tc.want)
		})
	}
	ts.assertNothingPushed(t, before.Signed.Version)
}
