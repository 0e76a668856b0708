package signer

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tufota/tufota/delta"
	"github.com/tufota/tufota/storage"
)

type deltaEnv struct {
	t     *testing.T
	keys  testKeys
	blobs *storage.File
	repo  *Repository
	rels  *Releases
	root  []byte
}

func newDeltaEnv(t *testing.T) *deltaEnv {
	t.Helper()
	ctx := context.Background()
	e := &deltaEnv{t: t, keys: newTestKeys(t, 1, 1), blobs: newFileBlobs(t)}
	e.repo = NewRepository(e.blobs, WithNow(func() time.Time { return testEpoch }))
	var err error
	if e.root, err = e.repo.Init(ctx, e.keys.roleKeys(1, 1)); err != nil {
		t.Fatalf("Init: %v", err)
	}
	db, err := storage.OpenDB(ctx, "sqlite:"+filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatalf("OpenDB: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	e.rels = NewReleases(db, e.repo, e.keys.signers(), WithClock(func() time.Time { return testEpoch }))
	return e
}

func (e *deltaEnv) push(name, version string, data []byte) Release {
	e.t.Helper()
	rel, err := e.rels.Push(context.Background(), PushRequest{Name: name, Version: version, Hardware: []string{"hw-a"}, File: "fw.bin"}, bytes.NewReader(data), 0, "alice")
	if err != nil || rel.State != StatePublished {
		e.t.Fatalf("Push(%s@%s) = %s, %v; want published", name, version, rel.State, err)
	}
	return rel
}

func randomImage(t *testing.T, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestMakeDelta(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newDeltaEnv(t)
	v1 := randomImage(t, 200_000)
	v11 := slices.Clone(v1)
	copy(v11[100_000:], "a small change")
	v12 := randomImage(t, 200_000) // unrelated: its delta is as large as the image
	e.push("pump", "1.0.0", v1)
	e.push("pump", "1.1.0", v11)
	e.push("pump", "1.2.0", v12)
	e.push("valve", "1.0.0", v1)

	pairs, err := e.rels.DeltaCandidates(ctx, 2, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range pairs {
		got = append(got, p.Base.Name+"@"+p.Base.Version+"→"+p.Result.Version)
	}
	want := []string{"pump@1.1.0→1.2.0", "pump@1.0.0→1.2.0", "pump@1.0.0→1.1.0"}
	if !slices.Equal(got, want) {
		t.Fatalf("DeltaCandidates = %v, want %v", got, want)
	}
	recorded := 0
	for _, p := range pairs {
		if _, err := e.rels.MakeDelta(ctx, p, DeltaOptions{}, func(*storage.Tx, Delta) error { recorded++; return nil }); err != nil {
			t.Fatalf("MakeDelta: %v", err)
		}
	}
	if recorded != len(pairs) {
		t.Fatalf("record called %d times, want %d", recorded, len(pairs))
	}
	if again, err := e.rels.DeltaCandidates(ctx, 2, nil); err != nil || len(again) != 0 {
		t.Fatalf("DeltaCandidates after making them = %v, %v; want none", again, err)
	}

	ds, err := e.rels.Deltas(ctx, "pump", "1.2.0")
	if err != nil || len(ds) != 2 {
		t.Fatalf("Deltas(1.2.0) = %v, %v; want 2", ds, err)
	}
	for _, d := range ds {
		if d.State != DeltaTooLarge || d.TargetPath != "" || d.Length <= int64(0.6*float64(d.FullLength)) {
			t.Errorf("delta %s→1.2.0 = %+v, want too_large with no target", d.BaseVersion, d)
		}
	}
	ds, err = e.rels.Deltas(ctx, "pump", "1.1.0")
	if err != nil || len(ds) != 1 || ds[0].State != DeltaPublished {
		t.Fatalf("Deltas(1.1.0) = %+v, %v; want one published", ds, err)
	}
	d := ds[0]
	if d.TargetPath != delta.TargetPath("pump", "1.1.0", "1.0.0") || d.Length > 1000 {
		t.Fatalf("delta = %+v, want a small target at %s", d, delta.TargetPath("pump", "1.1.0", "1.0.0"))
	}

	// The delta is a signed target: a stock TUF client downloads and
	// verifies it, and its custom metadata names both images.
	ts := serveBlobs(t, e.blobs)
	patch, err := fetchTarget(t, ts, e.root, testEpoch, d.TargetPath)
	if err != nil {
		t.Fatalf("fetch delta target: %v", err)
	}
	if sum := sha256.Sum256(patch); hex.EncodeToString(sum[:]) != d.SHA256 || int64(len(patch)) != d.Length {
		t.Fatalf("signed delta target differs from the recorded delta")
	}
	md, err := e.repo.Targets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tf := md.Signed.Targets[d.TargetPath]
	if tf == nil || tf.Custom == nil {
		t.Fatalf("no delta target %s in the targets metadata", d.TargetPath)
	}
	c, err := delta.UnmarshalCustom(*tf.Custom)
	if err != nil {
		t.Fatalf("delta custom: %v", err)
	}
	s1, s11 := sha256.Sum256(v1), sha256.Sum256(v11)
	if c.Base.Path != "pump/1.0.0/fw.bin" || c.Base.Hashes["sha256"] != hex.EncodeToString(s1[:]) ||
		c.Result.Path != "pump/1.1.0/fw.bin" || c.Result.Hashes["sha256"] != hex.EncodeToString(s11[:]) || c.Result.Length != int64(len(v11)) {
		t.Fatalf("delta custom = %+v, does not name 1.0.0 → 1.1.0", c)
	}
	var out bytes.Buffer
	err = delta.Apply(ctx, bytes.NewReader(v1), bytes.NewReader(patch), &out,
		delta.Expect{OldSize: int64(len(v1)), OldSHA256: s1[:], NewSize: int64(len(v11)), NewSHA256: s11[:]}, delta.Limits{})
	if err != nil || !bytes.Equal(out.Bytes(), v11) {
		t.Fatalf("applying the published delta: %v", err)
	}
}

// TestDeltaCandidatesFromFleet: beyond the newest earlier releases, a
// release that devices still run gets a delta too.
func TestDeltaCandidatesFromFleet(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newDeltaEnv(t)
	for _, v := range []string{"1.0.0", "1.1.0", "1.2.0", "1.3.0"} {
		e.push("pump", v, randomImage(t, 1000))
	}
	run := func(base Release) bool { return base.Version == "1.0.0" }
	pairs, err := e.rels.DeltaCandidates(ctx, 1, run)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range pairs {
		got = append(got, p.Base.Version+"→"+p.Result.Version)
	}
	want := []string{"1.2.0→1.3.0", "1.0.0→1.3.0", "1.1.0→1.2.0", "1.0.0→1.2.0", "1.0.0→1.1.0"}
	if !slices.Equal(got, want) {
		t.Fatalf("DeltaCandidates = %v, want %v", got, want)
	}
}

// TestMakeDeltaOfflineTargets: a server that does not hold the targets key
// makes no delta and records why.
func TestMakeDeltaOfflineTargets(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newDeltaEnv(t)
	v1 := randomImage(t, 10_000)
	a := e.push("pump", "1.0.0", v1)
	b := e.push("pump", "1.1.0", append(slices.Clone(v1), 1))
	offline := NewReleases(e.rels.db, e.repo, Signers{Snapshot: e.keys.snapshot, Timestamp: e.keys.timestamp}, WithClock(func() time.Time { return testEpoch }))
	d, err := offline.MakeDelta(ctx, DeltaPair{Base: a, Result: b}, DeltaOptions{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if d.State != DeltaFailed || !strings.Contains(d.Message, "offline") {
		t.Fatalf("delta = %+v, want failed for offline targets", d)
	}
	md, err := e.repo.Targets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := md.Signed.Targets[delta.TargetPath("pump", "1.1.0", "1.0.0")]; ok {
		t.Fatal("a delta target was published without the targets key")
	}
}

// TestMakeDeltaRecordFails: when the caller's audit entry cannot be
// written, the outcome is not recorded either.
func TestMakeDeltaRecordFails(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newDeltaEnv(t)
	v1 := randomImage(t, 10_000)
	a := e.push("pump", "1.0.0", v1)
	b := e.push("pump", "1.1.0", append(slices.Clone(v1), 1))
	boom := errors.New("audit log unavailable")
	if _, err := e.rels.MakeDelta(ctx, DeltaPair{Base: a, Result: b}, DeltaOptions{}, func(*storage.Tx, Delta) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("MakeDelta = %v, want the record error", err)
	}
	if ds, err := e.rels.Deltas(ctx, "pump", "1.1.0"); err != nil || len(ds) != 0 {
		t.Fatalf("Deltas = %v, %v; want none recorded", ds, err)
	}
	// The next attempt finds the target published and records it.
	d, err := e.rels.MakeDelta(ctx, DeltaPair{Base: a, Result: b}, DeltaOptions{}, nil)
	if err != nil || d.State != DeltaPublished {
		t.Fatalf("second MakeDelta = %+v, %v; want published", d, err)
	}
}
