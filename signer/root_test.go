package signer

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/storage"
)

// rotationEnv: root 2-of-2, targets held by the server (1-of-2, the
// server holds both), online snapshot and timestamp; a key opener that
// knows a few extra online keys by URI.
type rotationEnv struct {
	t      *testing.T
	blobs  storage.Blobs
	root1  []byte
	keys   testKeys
	rels   *Releases
	online map[string]signature.SignerVerifier
	db     *storage.DB
}

func newRotationEnv(t *testing.T) *rotationEnv {
	t.Helper()
	ctx := context.Background()
	e := &rotationEnv{t: t, blobs: newMemBlobs(), keys: newTestKeys(t, 2, 2), online: map[string]signature.SignerVerifier{}}
	repo := NewRepository(e.blobs, WithNow(func() time.Time { return testEpoch }))
	var err error
	if e.root1, err = repo.Init(ctx, e.keys.roleKeys(2, 1)); err != nil {
		t.Fatal(err)
	}
	if e.db, err = storage.OpenDB(ctx, "sqlite:"+filepath.Join(t.TempDir(), "s.db")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.db.Close() })
	open := func(_ context.Context, uri string) (signature.SignerVerifier, error) {
		if k, ok := e.online[uri]; ok {
			return k, nil
		}
		return nil, tufota.Errorf(tufota.ENotFound, "no key %s", uri)
	}
	e.rels = NewReleases(e.db, repo, e.keys.signers(), WithKeyOpener(open), WithClock(func() time.Time { return testEpoch }))
	return e
}

func pubKey(t *testing.T, k signature.SignerVerifier) *metadata.Key {
	t.Helper()
	mk, err := tufKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return mk
}

func keyID(t *testing.T, k signature.SignerVerifier) string {
	t.Helper()
	id, err := KeyID(k)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// rotate proposes ch and signs it with signers in order; it checks the
// root is published after the last one and not before.
func (e *rotationEnv) rotate(ch RootChange, signers ...signature.SignerVerifier) SigningPayload {
	e.t.Helper()
	ctx := context.Background()
	p, err := e.rels.ProposeRoot(ctx, ch, "admin")
	if err != nil {
		e.t.Fatalf("ProposeRoot: %v", err)
	}
	for i, k := range signers {
		st, err := e.rels.SignRoot(ctx, signUpload(e.t, k, p), fmt.Sprintf("holder%d", i))
		if err != nil {
			e.t.Fatalf("SignRoot #%d: %v", i+1, err)
		}
		if last := i == len(signers)-1; st.Published != last {
			e.t.Fatalf("after signature %d of %d: published = %v (status %+v)", i+1, len(signers), st.Published, st)
		}
	}
	return p
}

func (e *rotationEnv) push(version string) ([]byte, string) {
	e.t.Helper()
	data := make([]byte, 2048)
	_, _ = rand.Read(data)
	rel, err := e.rels.Push(context.Background(), PushRequest{Name: "pump-fw", Version: version, Hardware: []string{"hw"}, File: "fw.bin"}, bytes.NewReader(data), 0, "alice")
	if err != nil || rel.State != StatePublished {
		e.t.Fatalf("Push %s: %+v %v", version, rel, err)
	}
	return data, rel.TargetPath
}

func TestRootRotationTwiceClientWalksChain(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newRotationEnv(t)
	r1, r2 := e.keys.root[0], e.keys.root[1]
	r3, r4, r5 := newKey(t, true), newKey(t, false), newKey(t, true)
	ts2 := newKey(t, true)
	e.online["file:ts2.key"] = ts2

	// v1 -> v2: replace r1 by r3 (2-of-2 stays). Old role {r1,r2} and new
	// role {r2,r3} each need 2 signatures: r1, r2 (old met, new 1 of 2), r3.
	p := e.rotate(RootChange{
		AddKeys:    []RootKeyAdd{{Role: RoleRoot, Key: pubKey(t, r3)}},
		RevokeKeys: []RootKeyRevoke{{Role: RoleRoot, KeyID: keyID(t, r1)}},
	}, r1, r2, r3)
	if p.Root == nil || p.Root.Version != 2 || len(p.Root.Changes) != 2 {
		t.Fatalf("v2 summary = %+v", p.Root)
	}

	// v2 -> v3: root becomes {r4,r5} 1-of-2, and the timestamp key rotates
	// to a new online key the server opens by URI.
	e.rotate(RootChange{
		AddKeys: []RootKeyAdd{{Role: RoleRoot, Key: pubKey(t, r4)}, {Role: RoleRoot, Key: pubKey(t, r5)},
			{Role: RoleTimestamp, Key: pubKey(t, ts2), URI: "file:ts2.key"}},
		RevokeKeys: []RootKeyRevoke{{Role: RoleRoot, KeyID: keyID(t, r2)}, {Role: RoleRoot, KeyID: keyID(t, r3)},
			{Role: RoleTimestamp, KeyID: keyID(t, e.keys.timestamp)}},
		Thresholds: map[string]int{RoleRoot: 1},
	}, r2, r3, r4)
	if got, _ := KeyID(e.rels.Signers().Timestamp); got != keyID(t, ts2) {
		t.Fatalf("server timestamp key = %s, want the rotated one", got)
	}
	info, err := e.rels.RootInfo(ctx)
	if err != nil || info.Current.Version != 3 || info.Pending != nil {
		t.Fatalf("RootInfo = %+v, %v", info, err)
	}

	// A release published after v3; a client that trusts only root v1.
	data, path := e.push("3.0.0")
	got, err := fetchTarget(t, serveBlobs(t, e.blobs), e.root1, testEpoch, path)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("client at root v1 after two rotations: %v", err)
	}
	up := stockUpdater(t, serveBlobs(t, e.blobs), e.root1, testEpoch)
	if err := up.Refresh(); err != nil {
		t.Fatal(err)
	}
	if v := up.GetTrustedMetadataSet().Root.Signed.Version; v != 3 {
		t.Fatalf("client trusts root v%d, want 3", v)
	}
}

func TestSignRootRejects(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newRotationEnv(t)
	r3 := newKey(t, true)
	p, err := e.rels.ProposeRoot(ctx, RootChange{AddKeys: []RootKeyAdd{{Role: RoleRoot, Key: pubKey(t, r3)}}}, "admin")
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.rels.ProposeRoot(ctx, RootChange{Thresholds: map[string]int{RoleRoot: 1}}, "admin")
	wantCode(t, err, tufota.EConflict)
	good := signUpload(t, e.keys.root[0], p)
	if _, err := e.rels.SignRoot(ctx, good, "a"); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		up   SignatureUpload
		code tufota.Code
		msg  string
	}{
		{"unknown key", signUpload(t, newKey(t, false), p), tufota.EForbidden, "not a key of this repository"},
		{"targets key", signUpload(t, e.keys.targets[0], p), tufota.EForbidden, "not a root key"},
		{"duplicate", good, tufota.EConflict, "already signed"},
		{"bad signature", signUpload(t, e.keys.root[1], SigningPayload{Payload: []byte("x"), PayloadSHA256: p.PayloadSHA256}), tufota.EInvalid, "does not verify"},
		{"stale", SignatureUpload{KeyID: good.KeyID, Sig: good.Sig, PayloadSHA256: strings.Repeat("a", 64)}, tufota.EConflict, "stale payload"},
	} {
		_, err := e.rels.SignRoot(ctx, tt.up, "m")
		if tufota.ErrorCode(err) != tt.code || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("%s: err = %v, want %s with %q", tt.name, err, tt.code, tt.msg)
		}
	}
	// Bad proposals.
	if err := e.rels.CancelRoot(ctx); err != nil {
		t.Fatal(err)
	}
	for _, ch := range []RootChange{
		{},
		{Thresholds: map[string]int{RoleRoot: 3}},
		{RevokeKeys: []RootKeyRevoke{{Role: RoleRoot, KeyID: keyID(t, e.keys.targets[0])}}},
		{AddKeys: []RootKeyAdd{{Role: "bogus", Key: pubKey(t, r3)}}},
		{AddKeys: []RootKeyAdd{{Role: RoleSnapshot, Key: pubKey(t, r3)}}},
		{RevokeKeys: []RootKeyRevoke{{Role: RoleTimestamp, KeyID: keyID(t, e.keys.timestamp)}}},
		{Expires: "5m"},
	} {
		_, err := e.rels.ProposeRoot(ctx, ch, "admin")
		wantCode(t, err, tufota.EInvalid)
	}
}

// TestRevokedTargetsKeyRejected: after a targets key is revoked, targets
// metadata signed only by it (say by a thief of that key who also
// controls the online keys) fails verification in go-tuf's updater.
func TestRevokedTargetsKeyRejected(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newRotationEnv(t)
	t1 := e.keys.targets[0]
	e.push("1.0.0")
	e.rotate(RootChange{RevokeKeys: []RootKeyRevoke{{Role: RoleTargets, KeyID: keyID(t, t1)}}}, e.keys.root[0], e.keys.root[1])
	_, path := e.push("1.0.1") // signed by t2 only now; t1 is out
	if _, err := fetchTarget(t, serveBlobs(t, e.blobs), e.root1, testEpoch, path); err != nil {
		t.Fatalf("after revocation: %v", err)
	}

	// Forge: the next targets version, signed only by the revoked t1,
	// with a fresh snapshot and timestamp signed by the real online keys.
	repo := e.rels.repo
	st, err := repo.load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	evil := []byte("evil firmware")
	stg := stage(t, repo, evil)
	md := st.targets
	if err := repo.nextTargets(ctx, md, st.next(RoleTargets), []Target{{Path: "pump-fw/6.6.6/fw.bin", Staged: stg}}); err != nil {
		t.Fatal(err)
	}
	if _, err := md.Sign(t1); err != nil {
		t.Fatal(err)
	}
	if err := repo.moveStaged(ctx, Target{Path: "pump-fw/6.6.6/fw.bin", Staged: stg}); err != nil {
		t.Fatal(err)
	}
	// Skip signChain's own check, which would refuse: write it by hand.
	files, err := repo.signChain(st.root, nil, false, st, e.rels.Signers())
	if err != nil {
		t.Fatal(err)
	}
	data, _ := md.ToBytes(true)
	snap := st.snapshot // signChain bumped it; redo with the forged targets
	snap.Signed.Meta["targets.json"] = metaFileFor(md.Signed.Version, data)
	if err := signRole(st.root, RoleSnapshot, snap, []signature.Signer{e.keys.snapshot}); err != nil {
		t.Fatal(err)
	}
	snapData, _ := snap.ToBytes(true)
	ts := st.timestamp
	ts.Signed.Meta["snapshot.json"] = metaFileFor(snap.Signed.Version, snapData)
	if err := signRole(st.root, RoleTimestamp, ts, []signature.Signer{e.keys.timestamp}); err != nil {
		t.Fatal(err)
	}
	tsData, _ := ts.ToBytes(true)
	_ = files
	for name, b := range map[string][]byte{
		fmt.Sprintf("%d.targets.json", md.Signed.Version):    data,
		fmt.Sprintf("%d.snapshot.json", snap.Signed.Version): snapData,
	} {
		if err := repo.put(ctx, name, b); err != nil {
			t.Fatal(err)
		}
	}
	if err := repo.put(ctx, "timestamp.json", tsData); err != nil {
		t.Fatal(err)
	}
	_, err = fetchTarget(t, serveBlobs(t, e.blobs), e.root1, testEpoch, "pump-fw/6.6.6/fw.bin")
	var unsigned *metadata.ErrUnsignedMetadata
	if !errors.As(err, &unsigned) || !strings.Contains(err.Error(), "Verifying targets failed, not enough signatures") {
		t.Fatalf("client accepted or failed otherwise on targets signed by a revoked key: %v", err)
	}
}
