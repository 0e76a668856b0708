package signer

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/storage"
)

// thresholdEnv is a repository with a 2-of-2 targets role whose keys the
// server does not hold (unless given), and a state database.
type thresholdEnv struct {
	t     *testing.T
	keys  testKeys
	blobs storage.Blobs
	db    *storage.DB
	dbURL string
	root  []byte
	rels  *Releases
	clock *fixedClock
}

func newThresholdEnv(t *testing.T, serverTargets ...signature.SignerVerifier) *thresholdEnv {
	t.Helper()
	ctx := context.Background()
	e := &thresholdEnv{t: t, keys: newTestKeys(t, 1, 2), blobs: newMemBlobs(), clock: &fixedClock{t: testEpoch}}
	e.dbURL = "sqlite:" + filepath.Join(t.TempDir(), "state.db")
	var err error
	repo := NewRepository(e.blobs, WithNow(e.clock.Now))
	if e.root, err = repo.Init(ctx, e.keys.roleKeys(1, 2)); err != nil {
		t.Fatalf("Init: %v", err)
	}
	e.open(serverTargets...)
	return e
}

// open (re)opens the database and the release service, as a server
// restart does.
func (e *thresholdEnv) open(serverTargets ...signature.SignerVerifier) {
	e.t.Helper()
	if e.db != nil {
		_ = e.db.Close()
	}
	db, err := storage.OpenDB(context.Background(), e.dbURL)
	if err != nil {
		e.t.Fatalf("OpenDB: %v", err)
	}
	e.t.Cleanup(func() { db.Close() })
	e.db = db
	s := Signers{Snapshot: e.keys.snapshot, Timestamp: e.keys.timestamp}
	for _, k := range serverTargets {
		s.Targets = append(s.Targets, k)
	}
	e.rels = NewReleases(db, NewRepository(e.blobs, WithNow(e.clock.Now)), s, WithClock(e.clock.Now))
}

func (e *thresholdEnv) push(name, version string) ([]byte, Release) {
	e.t.Helper()
	data := make([]byte, 3000)
	_, _ = rand.Read(data)
	rel, err := e.rels.Push(context.Background(), PushRequest{Name: name, Version: version, Hardware: []string{"hw-a"}, File: "fw.bin"}, bytes.NewReader(data), 0, "alice")
	if err != nil {
		e.t.Fatalf("Push(%s@%s): %v", name, version, err)
	}
	return data, rel
}

func (e *thresholdEnv) payload(name, version string) SigningPayload {
	e.t.Helper()
	p, err := e.rels.ReleasePayload(context.Background(), name, version)
	if err != nil {
		e.t.Fatalf("ReleasePayload(%s@%s): %v", name, version, err)
	}
	return p
}

func signUpload(t *testing.T, k signature.SignerVerifier, p SigningPayload) SignatureUpload {
	t.Helper()
	sig, err := k.SignMessage(bytes.NewReader(p.Payload))
	if err != nil {
		t.Fatal(err)
	}
	id, err := KeyID(k)
	if err != nil {
		t.Fatal(err)
	}
	return SignatureUpload{KeyID: id, Sig: hex.EncodeToString(sig), PayloadSHA256: p.PayloadSHA256}
}

func (e *thresholdEnv) live(path string) bool {
	e.t.Helper()
	tg, err := e.rels.repo.Targets(context.Background())
	if err != nil {
		e.t.Fatalf("Targets: %v", err)
	}
	_, ok := tg.Signed.Targets[path]
	return ok
}

func TestPendingReleaseThresholdSigning(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newThresholdEnv(t)
	data, rel := e.push("pump-fw", "1.0.0")
	if rel.State != StatePending || rel.Signing == nil || rel.Signing.Needed != 2 || rel.Signing.Threshold != 2 {
		t.Fatalf("pushed release = %+v (signing %+v), want pending needing 2 signatures", rel, rel.Signing)
	}
	if e.live(rel.TargetPath) {
		t.Fatal("a pending release is in the published targets metadata")
	}
	before := snapshotBlobs(t, e.blobs)

	p := e.payload("pump-fw", "1.0.0")
	if p.Release == nil || p.Release.SHA256 != rel.SHA256 || p.Status.Version != 2 || !bytes.Contains(p.Payload, []byte(rel.TargetPath)) {
		t.Fatalf("payload summary = %+v, want release %s in targets v2", p.Release, rel.TargetPath)
	}

	st, err := e.rels.SignRelease(ctx, "pump-fw", "1.0.0", signUpload(t, e.keys.targets[0], p), "alice")
	if err != nil {
		t.Fatalf("first signature: %v", err)
	}
	if st.Published || st.Needed != 1 || len(st.Signatures) != 1 || st.Signatures[0].SignedBy != "alice" {
		t.Fatalf("status after one signature = %+v, want 1 still needed", st)
	}
	if got := snapshotBlobs(t, e.blobs); len(got) != len(before) {
		t.Fatal("one signature of two changed the repository")
	}
	if _, err := fetchTarget(t, serveBlobs(t, e.blobs), e.root, testEpoch, rel.TargetPath); err == nil {
		t.Fatal("a client found the release after one signature of two")
	}

	// Every acknowledged signature is in the database: a restart keeps it.
	e.open()
	got, err := e.rels.Get(ctx, "pump-fw", "1.0.0")
	if err != nil || got.Signing == nil || got.Signing.Needed != 1 {
		t.Fatalf("after restart: %+v, %v; want 1 signature still needed", got.Signing, err)
	}

	st, err = e.rels.SignRelease(ctx, "pump-fw", "1.0.0", signUpload(t, e.keys.targets[1], p), "bob")
	if err != nil {
		t.Fatalf("second signature: %v", err)
	}
	if !st.Published || st.Needed != 0 {
		t.Fatalf("status after two signatures = %+v, want published", st)
	}
	got, err = e.rels.Get(ctx, "pump-fw", "1.0.0")
	if err != nil || got.State != StatePublished || got.TargetsVersion != 2 || got.Signing != nil {
		t.Fatalf("after publish: %+v, %v", got, err)
	}
	fetched, err := fetchTarget(t, serveBlobs(t, e.blobs), e.root, testEpoch, rel.TargetPath)
	if err != nil || !bytes.Equal(fetched, data) {
		t.Fatalf("stock client download after threshold: %v", err)
	}
	_, err = e.rels.SignRelease(ctx, "pump-fw", "1.0.0", signUpload(t, e.keys.targets[1], p), "bob")
	wantCode(t, err, tufota.EConflict)
	if !strings.Contains(err.Error(), "published already") {
		t.Fatalf("sign after publish: %v", err)
	}
}

func TestSignReleaseRejects(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newThresholdEnv(t)
	e.push("pump-fw", "1.0.0")
	p := e.payload("pump-fw", "1.0.0")
	good := signUpload(t, e.keys.targets[0], p)
	if _, err := e.rels.SignRelease(ctx, "pump-fw", "1.0.0", good, "alice"); err != nil {
		t.Fatal(err)
	}
	other := signUpload(t, e.keys.targets[1], SigningPayload{Payload: []byte("something else"), PayloadSHA256: p.PayloadSHA256})
	tests := []struct {
		name string
		up   SignatureUpload
		code tufota.Code
		msg  string
	}{
		{"unknown key", signUpload(t, newKey(t, true), p), tufota.EForbidden, "not a key of this repository"},
		{"root key", signUpload(t, e.keys.root[0], p), tufota.EForbidden, "not a targets key"},
		{"snapshot key", signUpload(t, e.keys.snapshot, p), tufota.EForbidden, "not a targets key"},
		{"bad signature", other, tufota.EInvalid, "does not verify"},
		{"duplicate signer", good, tufota.EConflict, "already signed"},
		{"malformed keyid", SignatureUpload{KeyID: "xyz", Sig: "00", PayloadSHA256: p.PayloadSHA256}, tufota.EInvalid, "64 hex"},
		{"malformed sig", SignatureUpload{KeyID: good.KeyID, Sig: "zz", PayloadSHA256: p.PayloadSHA256}, tufota.EInvalid, "hex signature"},
		{"no payload hash", SignatureUpload{KeyID: good.KeyID, Sig: good.Sig}, tufota.EInvalid, "payload_sha256"},
		{"wrong payload hash", SignatureUpload{KeyID: good.KeyID, Sig: good.Sig, PayloadSHA256: strings.Repeat("0", 64)}, tufota.EConflict, "stale payload"},
	}
	for _, tt := range tests {
		_, err := e.rels.SignRelease(ctx, "pump-fw", "1.0.0", tt.up, "mallory")
		if tufota.ErrorCode(err) != tt.code || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("%s: err = %v, want %s containing %q", tt.name, err, tt.code, tt.msg)
		}
	}
	_, err := e.rels.SignRelease(ctx, "pump-fw", "9.9.9", good, "alice")
	wantCode(t, err, tufota.ENotFound)
	st, err := e.rels.Get(ctx, "pump-fw", "1.0.0")
	if err != nil || st.State != StatePending || st.Signing.Needed != 1 || len(st.Signing.Signatures) != 1 {
		t.Fatalf("after rejected signatures: %+v %v; want still 1 signature, 1 needed", st.Signing, err)
	}
}

func TestPendingReleaseStaleAfterAnotherPublishes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newThresholdEnv(t)
	dataA, relA := e.push("pump-fw", "1.0.0")
	_, relB := e.push("pump-fw", "1.0.1")
	pA := e.payload("pump-fw", "1.0.0")
	if _, err := e.rels.SignRelease(ctx, "pump-fw", "1.0.0", signUpload(t, e.keys.targets[0], pA), "alice"); err != nil {
		t.Fatal(err)
	}
	pB := e.payload("pump-fw", "1.0.1")
	for i, k := range e.keys.targets {
		if _, err := e.rels.SignRelease(ctx, "pump-fw", "1.0.1", signUpload(t, k, pB), "signer"+string(rune('1'+i))); err != nil {
			t.Fatal(err)
		}
	}
	if !e.live(relB.TargetPath) || e.live(relA.TargetPath) {
		t.Fatal("want B live and A not")
	}
	// A's payload was built on targets v1; B published v2.
	_, err := e.rels.SignRelease(ctx, "pump-fw", "1.0.0", signUpload(t, e.keys.targets[1], pA), "bob")
	wantCode(t, err, tufota.EConflict)
	if !strings.Contains(err.Error(), "stale payload") || !strings.Contains(err.Error(), "1 signature(s)") || !strings.Contains(err.Error(), "targets v3") {
		t.Fatalf("stale signature: %v", err)
	}
	pA2 := e.payload("pump-fw", "1.0.0")
	if pA2.Status.Version != 3 || len(pA2.Status.Signatures) != 0 || pA2.PayloadSHA256 == pA.PayloadSHA256 {
		t.Fatalf("rebuilt payload = %+v, want targets v3 with no signatures", pA2.Status)
	}
	if !bytes.Contains(pA2.Payload, []byte(relB.TargetPath)) {
		t.Fatal("rebuilt payload drops the release published meanwhile")
	}
	for _, k := range e.keys.targets {
		if _, err := e.rels.SignRelease(ctx, "pump-fw", "1.0.0", signUpload(t, k, pA2), "x"); err != nil {
			t.Fatal(err)
		}
	}
	ts := serveBlobs(t, e.blobs)
	for path, want := range map[string][]byte{relA.TargetPath: dataA} {
		got, err := fetchTarget(t, ts, e.root, testEpoch, path)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("fetch %s: %v", path, err)
		}
	}
	if !e.live(relB.TargetPath) {
		t.Fatal("B vanished")
	}
}

func TestPendingReleaseServerHoldsOneOfTwo(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newThresholdEnv(t)
	e.open(e.keys.targets[0])
	_, rel := e.push("pump-fw", "2.0.0")
	if rel.Signing == nil || rel.Signing.Needed != 1 || len(rel.Signing.ServerKeys) != 1 {
		t.Fatalf("signing = %+v, want 1 needed and one server key", rel.Signing)
	}
	p := e.payload("pump-fw", "2.0.0")
	_, err := e.rels.SignRelease(ctx, "pump-fw", "2.0.0", signUpload(t, e.keys.targets[0], p), "alice")
	wantCode(t, err, tufota.EConflict)
	st, err := e.rels.SignRelease(ctx, "pump-fw", "2.0.0", signUpload(t, e.keys.targets[1], p), "bob")
	if err != nil || !st.Published {
		t.Fatalf("sign: %+v %v", st, err)
	}
	if !e.live(rel.TargetPath) {
		t.Fatal("not live")
	}
}
