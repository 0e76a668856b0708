package signer

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tufota/tufota"
)

func readSBOM(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "sbom", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestValidateSBOM(t *testing.T) {
	t.Parallel()
	cdx, spdx := readSBOM(t, "pump-fw.cdx.json"), readSBOM(t, "pump-fw.spdx.json")
	tests := []struct {
		name   string
		data   string
		format string
		code   tufota.Code
		msg    string
	}{
		{"cyclonedx 1.5", string(cdx), SBOMCycloneDX, "", ""},
		{"spdx 2.3", string(spdx), SBOMSPDX, "", ""},
		{"minimal cyclonedx", `{"bomFormat":"CycloneDX","specVersion":"1.6"}`, SBOMCycloneDX, "", ""},
		{"cyclonedx empty components", `{"bomFormat":"CycloneDX","specVersion":"1.4","components":[]}`, SBOMCycloneDX, "", ""},
		{"minimal spdx", `{"spdxVersion":"SPDX-2.2","SPDXID":"SPDXRef-DOCUMENT"}`, SBOMSPDX, "", ""},
		{"trailing whitespace", "{\"spdxVersion\":\"SPDX-2.3\",\"SPDXID\":\"SPDXRef-DOCUMENT\"}\n\n", SBOMSPDX, "", ""},

		{"empty", "", "", tufota.EInvalid, "SBOM is empty"},
		{"whitespace", " \n", "", tufota.EInvalid, "SBOM is empty"},
		{"not JSON", "name,version\nzephyr,3.6.0\n", "", tufota.EInvalid, "not valid JSON"},
		{"truncated", string(cdx[:len(cdx)/2]), "", tufota.EInvalid, "not valid JSON"},
		{"array", `[{"bomFormat":"CycloneDX"}]`, "", tufota.EInvalid, "JSON array, not an object"},
		{"string", `"CycloneDX"`, "", tufota.EInvalid, "JSON string, not an object"},
		{"null", `null`, "", tufota.EInvalid, "null, not an object"},
		{"trailing data", `{"bomFormat":"CycloneDX","specVersion":"1.5"} {}`, "", tufota.EInvalid, "trailing data"},
		{"trailing garbage", `{"bomFormat":"CycloneDX","specVersion":"1.5"}x`, "", tufota.EInvalid, "trailing data"},
		{"bad utf-8", "{\"bomFormat\":\"CycloneDX\",\"specVersion\":\"1.5\",\"x\":\"\xff\"}", "", tufota.EInvalid, "UTF-8"},
		{"neither", `{"name":"pump-fw","version":"1.0.0"}`, "", tufota.EInvalid, "neither CycloneDX JSON (no \"bomFormat\") nor SPDX JSON (no \"spdxVersion\")"},
		{"both", `{"bomFormat":"CycloneDX","specVersion":"1.5","spdxVersion":"SPDX-2.3"}`, "", tufota.EInvalid, "both"},

		{"cdx wrong bomFormat", `{"bomFormat":"cyclonedx","specVersion":"1.5"}`, "", tufota.EInvalid, `"bomFormat" is "cyclonedx", want "CycloneDX"`},
		{"cdx bomFormat not string", `{"bomFormat":1,"specVersion":"1.5"}`, "", tufota.EInvalid, `"bomFormat" is not a string`},
		{"cdx no specVersion", `{"bomFormat":"CycloneDX"}`, "", tufota.EInvalid, `CycloneDX SBOM has no "specVersion"`},
		{"cdx specVersion 2", `{"bomFormat":"CycloneDX","specVersion":"2.0"}`, "", tufota.EInvalid, `"specVersion" is "2.0", want 1.x`},
		{"cdx specVersion 1.", `{"bomFormat":"CycloneDX","specVersion":"1."}`, "", tufota.EInvalid, `want 1.x`},
		{"cdx specVersion number", `{"bomFormat":"CycloneDX","specVersion":1.5}`, "", tufota.EInvalid, `"specVersion" is not a string`},
		{"cdx components object", `{"bomFormat":"CycloneDX","specVersion":"1.5","components":{}}`, "", tufota.EInvalid, `"components" is not an array`},
		{"cdx components null", `{"bomFormat":"CycloneDX","specVersion":"1.5","components":null}`, "", tufota.EInvalid, `"components" is not an array`},
		{"cdx component not object", `{"bomFormat":"CycloneDX","specVersion":"1.5","components":["zephyr"]}`, "", tufota.EInvalid, "components[0] is not an object"},
		{"cdx component no name", `{"bomFormat":"CycloneDX","specVersion":"1.5","components":[{"type":"library","name":"a"},{"type":"library"}]}`, "", tufota.EInvalid, `components[1] has no "name"`},

		{"spdx 3", `{"spdxVersion":"SPDX-3.0","SPDXID":"SPDXRef-DOCUMENT"}`, "", tufota.EInvalid, `"spdxVersion" is "SPDX-3.0", want SPDX-2.x`},
		{"spdx no SPDXID", `{"spdxVersion":"SPDX-2.3"}`, "", tufota.EInvalid, `SPDX SBOM has no "SPDXID"`},
		{"spdx wrong SPDXID", `{"spdxVersion":"SPDX-2.3","SPDXID":"SPDXRef-Package"}`, "", tufota.EInvalid, `want "SPDXRef-DOCUMENT"`},
		{"spdx packages string", `{"spdxVersion":"SPDX-2.3","SPDXID":"SPDXRef-DOCUMENT","packages":"zephyr"}`, "", tufota.EInvalid, `"packages" is not an array`},
		{"spdx package no SPDXID", `{"spdxVersion":"SPDX-2.3","SPDXID":"SPDXRef-DOCUMENT","packages":[{"name":"zephyr"}]}`, "", tufota.EInvalid, `packages[0] has no "SPDXID"`},

		{"too large", `{"bomFormat":"CycloneDX","specVersion":"1.5","x":"` + strings.Repeat("a", MaxSBOMBytes) + `"}`, "", tufota.ETooLarge, "larger than the limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			format, err := ValidateSBOM([]byte(tt.data))
			if tt.code == "" {
				if err != nil || format != tt.format {
					t.Fatalf("ValidateSBOM = %q, %v; want %q", format, err, tt.format)
				}
				return
			}
			if tufota.ErrorCode(err) != tt.code || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("ValidateSBOM err = %v (code %s), want %s containing %q", err, tufota.ErrorCode(err), tt.code, tt.msg)
			}
		})
	}
}

func FuzzValidateSBOM(f *testing.F) {
	f.Add(readSBOM(f, "pump-fw.cdx.json"))
	f.Add(readSBOM(f, "pump-fw.spdx.json"))
	for _, s := range []string{
		`{"bomFormat":"CycloneDX","specVersion":"1.5","components":[{"type":"library","name":"a"}]}`,
		`{"spdxVersion":"SPDX-2.3","SPDXID":"SPDXRef-DOCUMENT","packages":[]}`,
		`{"bomFormat":"CycloneDX","specVersion":"1.5"} {}`, `[]`, `null`, ``, `{"spdxVersion":"SPDX-2.x"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		format, err := ValidateSBOM(data)
		if err != nil {
			if code := tufota.ErrorCode(err); code != tufota.EInvalid && code != tufota.ETooLarge {
				t.Fatalf("ValidateSBOM code %s: %v", code, err)
			}
			if format != "" && format != SBOMCycloneDX && format != SBOMSPDX {
				t.Fatalf("ValidateSBOM returned format %q with an error", format)
			}
			return
		}
		if SBOMFileName(format) == "" {
			t.Fatalf("ValidateSBOM accepted %q as unknown format %q", data, format)
		}
		var v map[string]any
		if err := json.Unmarshal(data, &v); err != nil || v == nil {
			t.Fatalf("ValidateSBOM accepted %q, which is not one JSON object: %v", data, err)
		}
		key := map[string]string{SBOMCycloneDX: "bomFormat", SBOMSPDX: "spdxVersion"}[format]
		if _, ok := v[key].(string); !ok {
			t.Fatalf("ValidateSBOM accepted %q as %s without a string %q", data, format, key)
		}
	})
}

// targetCustom returns the custom metadata of a published target.
func targetCustom(t *testing.T, e *thresholdEnv, path string) map[string]json.RawMessage {
	t.Helper()
	tg, err := e.rels.repo.Targets(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	tf, ok := tg.Signed.Targets[path]
	if !ok || tf.Custom == nil {
		t.Fatalf("target %s is not published with custom metadata", path)
	}
	var c map[string]json.RawMessage
	if err := json.Unmarshal(*tf.Custom, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestPushWithSBOM(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tests := []struct {
		file, format, target string
	}{
		{"pump-fw.cdx.json", SBOMCycloneDX, "pump-fw/1.4.2/sbom.cdx.json"},
		{"pump-fw.spdx.json", SBOMSPDX, "pump-fw/1.4.2/sbom.spdx.json"},
	}
	for _, tt := range tests {
		t.Run(tt.format, func(t *testing.T) {
			t.Parallel()
			e := newThresholdEnv(t)
			e.open(e.keys.targets...) // the server holds both targets keys: online
			doc := readSBOM(t, tt.file)
			fw := []byte("firmware image 1.4.2")
			rel, err := e.rels.Push(ctx, PushRequest{Name: "pump-fw", Version: "1.4.2", Hardware: []string{"hw-a"}, File: "fw.bin"},
				bytes.NewReader(fw), 0, "alice", WithSBOM(doc))
			if err != nil {
				t.Fatalf("Push: %v", err)
			}
			sum := sha256.Sum256(doc)
			want := SBOM{Path: tt.target, Format: tt.format, SHA256: hex.EncodeToString(sum[:]), Length: int64(len(doc))}
			if rel.State != StatePublished || rel.SBOM == nil || *rel.SBOM != want {
				t.Fatalf("pushed release: state %s, SBOM %+v; want published with %+v", rel.State, rel.SBOM, want)
			}
			got, err := e.rels.Get(ctx, "pump-fw", "1.4.2")
			if err != nil || got.SBOM == nil || *got.SBOM != want {
				t.Fatalf("Get: SBOM %+v, %v; want %+v", got.SBOM, err, want)
			}
			tg, err := e.rels.repo.Targets(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if tg.Signed.Version != 2 || len(tg.Signed.Targets) != 2 || rel.TargetsVersion != 2 {
				t.Fatalf("targets v%d with %d files (release v%d), want firmware and SBOM together in v2", tg.Signed.Version, len(tg.Signed.Targets), rel.TargetsVersion)
			}

			// The SBOM target is marked as an SBOM and carries no firmware
			// metadata, so no device can take it for firmware.
			sc := targetCustom(t, e, tt.target)
			if _, ok := sc[tufota.CustomKey]; ok {
				t.Fatalf("SBOM target carries a %q object", tufota.CustomKey)
			}
			raw, _ := json.Marshal(sc)
			if _, err := tufota.UnmarshalCustom(raw); err == nil {
				t.Fatal("the SBOM target's custom metadata parses as firmware metadata")
			}
			var of SBOMOf
			if err := json.Unmarshal(sc[CustomSBOMOfKey], &of); err != nil || of != (SBOMOf{Name: "pump-fw", Version: "1.4.2", Format: tt.format, Firmware: "pump-fw/1.4.2/fw.bin"}) {
				t.Fatalf("SBOM target %q = %+v, %v", CustomSBOMOfKey, of, err)
			}
			// The firmware target names its SBOM and still parses as firmware.
			fc := targetCustom(t, e, rel.TargetPath)
			raw, _ = json.Marshal(fc)
			if tc, err := tufota.UnmarshalCustom(raw); err != nil || tc.Name != "pump-fw" {
				t.Fatalf("firmware custom metadata: %+v, %v", tc, err)
			}
			var ref SBOM
			if err := json.Unmarshal(fc[CustomSBOMKey], &ref); err != nil || ref != want {
				t.Fatalf("firmware target %q = %+v, %v; want %+v", CustomSBOMKey, ref, err, want)
			}

			// go-tuf's stock updater verifies and downloads both.
			ts := serveBlobs(t, e.blobs)
			for path, data := range map[string][]byte{tt.target: doc, rel.TargetPath: fw} {
				b, err := fetchTarget(t, ts, e.root, testEpoch, path)
				if err != nil || !bytes.Equal(b, data) {
					t.Fatalf("stock client download of %s: %v", path, err)
				}
			}
			if staged, _ := e.blobs.List(ctx, StagingPrefix); len(staged) != 0 {
				t.Fatalf("%d staged blobs left after publish", len(staged))
			}
		})
	}
}

func TestPushInvalidSBOMStagesNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cdx := readSBOM(t, "pump-fw.cdx.json")
	tests := []struct {
		name string
		file string
		sbom []byte
		code tufota.Code
		msg  string
	}{
		{"not JSON", "fw.bin", []byte("not json"), tufota.EInvalid, "not valid JSON"},
		{"empty", "fw.bin", []byte{}, tufota.EInvalid, "SBOM is empty"},
		{"unknown format", "fw.bin", []byte(`{"format":"syft"}`), tufota.EInvalid, "neither CycloneDX"},
		{"trailing data", "fw.bin", append(append([]byte{}, cdx...), '{', '}'), tufota.EInvalid, "trailing data"},
		{"file named like the SBOM", "sbom.cdx.json", cdx, tufota.EInvalid, "name of the release's SBOM target"},
		{"too large", "fw.bin", append([]byte(`{"bomFormat":"CycloneDX","specVersion":"1.5","x":"`), bytes.Repeat([]byte("a"), MaxSBOMBytes)...), tufota.ETooLarge, "larger than"},
	}
	for _, threshold := range []bool{false, true} {
		e := newThresholdEnv(t)
		if !threshold {
			e.open(e.keys.targets...)
		}
		before := snapshotBlobs(t, e.blobs)
		for _, tt := range tests {
			_, err := e.rels.Push(ctx, PushRequest{Name: "pump-fw", Version: "1.0.0", Hardware: []string{"hw-a"}, File: tt.file},
				strings.NewReader("firmware"), 0, "alice", WithSBOM(tt.sbom))
			if tufota.ErrorCode(err) != tt.code || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("threshold %v, %s: err = %v, want %s containing %q", threshold, tt.name, err, tt.code, tt.msg)
			}
		}
		if after := snapshotBlobs(t, e.blobs); len(after) != len(before) {
			t.Fatalf("threshold %v: bad SBOMs changed the store: %d blobs, want %d", threshold, len(after), len(before))
		}
		if rels, _ := e.rels.List(ctx); len(rels) != 0 {
			t.Fatalf("threshold %v: bad SBOMs left %d release rows", threshold, len(rels))
		}
	}
}

func TestPendingReleaseCarriesSBOM(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newThresholdEnv(t)
	doc := readSBOM(t, "pump-fw.spdx.json")
	fw := []byte("firmware 1.0.0")
	rel, err := e.rels.Push(ctx, PushRequest{Name: "pump-fw", Version: "1.0.0", Hardware: []string{"hw-a"}, File: "fw.bin"},
		bytes.NewReader(fw), 0, "alice", WithSBOM(doc))
	if err != nil {
		t.Fatal(err)
	}
	if rel.State != StatePending || rel.SBOM == nil || rel.SBOM.Path != "pump-fw/1.0.0/sbom.spdx.json" {
		t.Fatalf("pushed: state %s, SBOM %+v; want pending with an SBOM", rel.State, rel.SBOM)
	}
	if e.live(rel.SBOM.Path) {
		t.Fatal("the SBOM of a pending release is published")
	}
	// Another release publishes first: the payload is rebuilt and must
	// still carry the SBOM.
	_, other := e.push("pump-fw", "0.9.0")
	po := e.payload("pump-fw", "0.9.0")
	for _, k := range e.keys.targets {
		if _, err := e.rels.SignRelease(ctx, "pump-fw", "0.9.0", signUpload(t, k, po), "x"); err != nil {
			t.Fatal(err)
		}
	}
	if !e.live(other.TargetPath) {
		t.Fatal("0.9.0 not live")
	}
	p := e.payload("pump-fw", "1.0.0")
	if p.Status.Version != 3 || !bytes.Contains(p.Payload, []byte(rel.SBOM.Path)) || !bytes.Contains(p.Payload, []byte(rel.TargetPath)) {
		t.Fatalf("pending payload (targets v%d) lacks the firmware or the SBOM", p.Status.Version)
	}
	if p.Release == nil || p.Release.SBOM == nil || *p.Release.SBOM != *rel.SBOM {
		t.Fatalf("payload summary SBOM = %+v, want %+v", p.Release, rel.SBOM)
	}
	for i, k := range e.keys.targets {
		st, err := e.rels.SignRelease(ctx, "pump-fw", "1.0.0", signUpload(t, k, p), "signer")
		if err != nil {
			t.Fatal(err)
		}
		if st.Published != (i == 1) {
			t.Fatalf("after signature %d: published = %v", i+1, st.Published)
		}
	}
	tg, err := e.rels.repo.Targets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if tg.Signed.Version != 3 || tg.Signed.Targets[rel.SBOM.Path] == nil || tg.Signed.Targets[rel.TargetPath] == nil {
		t.Fatalf("targets v%d: want firmware and SBOM both in v3", tg.Signed.Version)
	}
	ts := serveBlobs(t, e.blobs)
	for path, data := range map[string][]byte{rel.SBOM.Path: doc, rel.TargetPath: fw} {
		b, err := fetchTarget(t, ts, e.root, testEpoch, path)
		if err != nil || !bytes.Equal(b, data) {
			t.Fatalf("stock client download of %s: %v", path, err)
		}
	}
	got, err := e.rels.Get(ctx, "pump-fw", "1.0.0")
	if err != nil || got.State != StatePublished || got.SBOM == nil || *got.SBOM != *rel.SBOM {
		t.Fatalf("after publish: %+v, %v", got, err)
	}
}
