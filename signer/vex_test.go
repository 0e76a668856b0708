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

func readVEX(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "vex", "pump-fw.vex.cdx.json"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A release pushed with an SBOM and a VEX document publishes three
// targets in one targets version; the VEX target is listed with its
// hashes, names its release, is named by the firmware target, and go-tuf's
// stock updater downloads and verifies it.
func TestPushWithVEX(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, threshold := range []bool{false, true} {
		e := newThresholdEnv(t)
		if !threshold {
			e.open(e.keys.targets...)
		}
		vex, sbom := readVEX(t), readSBOM(t, "pump-fw.cdx.json")
		fw := []byte("firmware image 1.4.2")
		rel, err := e.rels.Push(ctx, PushRequest{Name: "pump-fw", Version: "1.4.2", Hardware: []string{"hw-a"}, File: "fw.bin"},
			bytes.NewReader(fw), 0, "alice", WithSBOM(sbom), WithVEX(vex))
		if err != nil {
			t.Fatalf("threshold %v: Push: %v", threshold, err)
		}
		sum := sha256.Sum256(vex)
		want := VEX{Path: "pump-fw/1.4.2/vex.cdx.json", SHA256: hex.EncodeToString(sum[:]), Length: int64(len(vex))}
		if rel.VEX == nil || *rel.VEX != want || rel.SBOM == nil {
			t.Fatalf("threshold %v: pushed release VEX %+v SBOM %+v; want %+v", threshold, rel.VEX, rel.SBOM, want)
		}
		if threshold {
			// Pending: the VEX waits in the same payload, unpublished,
			// and is published by the targets signatures.
			got, err := e.rels.Get(ctx, "pump-fw", "1.4.2")
			if err != nil || got.State != StatePending || got.VEX == nil || *got.VEX != want {
				t.Fatalf("pending Get: %+v VEX %+v, %v", got.State, got.VEX, err)
			}
			if e.live(want.Path) {
				t.Fatal("the VEX of a pending release is published")
			}
			p := e.payload("pump-fw", "1.4.2")
			if !bytes.Contains(p.Payload, []byte(want.Path)) || p.Release == nil || p.Release.VEX == nil || *p.Release.VEX != want {
				t.Fatalf("pending payload lacks the VEX target, or its summary VEX is %+v", p.Release)
			}
			for _, k := range e.keys.targets {
				if _, err := e.rels.SignRelease(ctx, "pump-fw", "1.4.2", signUpload(t, k, p), "signer"); err != nil {
					t.Fatal(err)
				}
			}
			if got, err = e.rels.Get(ctx, "pump-fw", "1.4.2"); err != nil || got.State != StatePublished {
				t.Fatalf("after the signatures: %+v, %v; want published", got.State, err)
			}
		}
		got, err := e.rels.Get(ctx, "pump-fw", "1.4.2")
		if err != nil || got.VEX == nil || *got.VEX != want {
			t.Fatalf("Get: VEX %+v, %v; want %+v", got.VEX, err, want)
		}
		tg, err := e.rels.repo.Targets(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(tg.Signed.Targets) != 3 || got.TargetsVersion != tg.Signed.Version {
			t.Fatalf("targets v%d with %d files, want firmware, SBOM and VEX together in v%d", tg.Signed.Version, len(tg.Signed.Targets), got.TargetsVersion)
		}
		tf := tg.Signed.Targets[want.Path]
		if tf == nil || tf.Length != want.Length || hex.EncodeToString(tf.Hashes["sha256"]) != want.SHA256 {
			t.Fatalf("signed targets list the VEX as %+v, want length %d sha256 %s", tf, want.Length, want.SHA256)
		}
		vc := targetCustom(t, e, want.Path)
		if _, ok := vc[tufota.CustomKey]; ok {
			t.Fatalf("VEX target carries a %q object", tufota.CustomKey)
		}
		var of VEXOf
		if err := json.Unmarshal(vc[CustomVEXOfKey], &of); err != nil || of != (VEXOf{Name: "pump-fw", Version: "1.4.2", Firmware: "pump-fw/1.4.2/fw.bin"}) {
			t.Fatalf("VEX target %q = %+v, %v", CustomVEXOfKey, of, err)
		}
		fc := targetCustom(t, e, rel.TargetPath)
		var ref VEX
		if err := json.Unmarshal(fc[CustomVEXKey], &ref); err != nil || ref != want {
			t.Fatalf("firmware target %q = %+v, %v; want %+v", CustomVEXKey, ref, err, want)
		}
		ts := serveBlobs(t, e.blobs)
		b, err := fetchTarget(t, ts, e.root, testEpoch, want.Path)
		if err != nil || !bytes.Equal(b, vex) {
			t.Fatalf("stock client download of %s: %v", want.Path, err)
		}
	}
}

func TestPushInvalidVEXStagesNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	vex := readVEX(t)
	tests := []struct {
		name string
		file string
		vex  []byte
		code tufota.Code
		msg  string
	}{
		{"not JSON", "fw.bin", []byte("not json"), tufota.EInvalid, "not CycloneDX JSON"},
		{"an SBOM, not VEX", "fw.bin", readSBOM(t, "pump-fw.cdx.json"), tufota.EInvalid, "no \"vulnerabilities\""},
		{"no analysis state", "fw.bin", []byte(`{"bomFormat":"CycloneDX","specVersion":"1.5","vulnerabilities":[{"id":"CVE-2024-1","affects":[{"ref":"pkg:generic/zephyr@3.6.0"}]}]}`), tufota.EInvalid, "no analysis state"},
		{"file named like the VEX", "vex.cdx.json", vex, tufota.EInvalid, "name of the release's VEX target"},
		{"too large", "fw.bin", append([]byte(`{"bomFormat":"CycloneDX","x":"`), bytes.Repeat([]byte("a"), MaxVEXBytes)...), tufota.ETooLarge, "larger than"},
	}
	e := newThresholdEnv(t)
	e.open(e.keys.targets...)
	before := snapshotBlobs(t, e.blobs)
	for _, tt := range tests {
		_, err := e.rels.Push(ctx, PushRequest{Name: "pump-fw", Version: "1.0.0", Hardware: []string{"hw-a"}, File: tt.file},
			strings.NewReader("firmware"), 0, "alice", WithVEX(tt.vex))
		if tufota.ErrorCode(err) != tt.code || err == nil || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("%s: err = %v, want %s containing %q", tt.name, err, tt.code, tt.msg)
		}
	}
	if after := snapshotBlobs(t, e.blobs); len(after) != len(before) {
		t.Fatalf("bad VEX changed the store: %d blobs, want %d", len(after), len(before))
	}
	if rels, _ := e.rels.List(ctx); len(rels) != 0 {
		t.Fatalf("bad VEX left %d release rows", len(rels))
	}
}
