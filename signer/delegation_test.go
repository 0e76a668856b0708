package signer

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/tufota/tufota"
)

// tufKeyOf returns the public TUF key of sv.
func tufKeyOf(t *testing.T, sv signature.SignerVerifier) *metadata.Key {
	t.Helper()
	k, err := tufKey(sv)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// newOnlineEnv is a threshold environment whose server holds both targets
// keys (the targets role is online), so that it can add delegations.
func newOnlineEnv(t *testing.T) *thresholdEnv {
	t.Helper()
	e := newThresholdEnv(t)
	e.open(e.keys.targets...)
	return e
}

func TestDelegatedReleaseSignedByTheLineOnly(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newOnlineEnv(t)
	pump := []signature.SignerVerifier{newKey(t, true), newKey(t, false)}
	d, err := e.rels.AddDelegation(ctx, DelegationRequest{Name: "pump", Paths: []string{"pump/*/*"}, Keys: []*metadata.Key{tufKeyOf(t, pump[0]), tufKeyOf(t, pump[1])}, Threshold: 2}, "admin")
	if err != nil {
		t.Fatalf("AddDelegation: %v", err)
	}
	if d.TargetsVersion != 2 || d.Version != 0 || d.Threshold != 2 || len(d.KeyIDs) != 2 {
		t.Fatalf("delegation = %+v, want targets v2 delegating to 2 keys, no metadata yet", d)
	}

	// Another product line is still signed online by the top-level role.
	_, other := e.push("monitor", "1.0.0")
	if other.State != StatePublished || other.Role != RoleTargets || !e.live(other.TargetPath) {
		t.Fatalf("monitor release = %+v, want published by targets", other)
	}

	data, rel := e.push("pump", "1.0.0")
	if rel.State != StatePending || rel.Role != "pump" || rel.Signing == nil || rel.Signing.Role != "pump" || rel.Signing.Needed != 2 || rel.Signing.Version != 1 {
		t.Fatalf("pump release = %+v (signing %+v), want pending for role pump v1 needing 2", rel, rel.Signing)
	}
	if len(rel.Signing.ServerKeys) != 0 {
		t.Fatalf("server keys counted for a delegated role: %v", rel.Signing.ServerKeys)
	}
	ts := serveBlobs(t, e.blobs)
	if _, err := fetchTarget(t, ts, e.root, testEpoch, rel.TargetPath); err == nil {
		t.Fatal("a client found a delegated release before its role signed it")
	}
	p := e.payload("pump", "1.0.0")
	if p.Role != "pump" || !bytes.Contains(p.Payload, []byte(rel.TargetPath)) {
		t.Fatalf("payload role %q, want pump with %s", p.Role, rel.TargetPath)
	}

	// The top-level targets keys cannot sign the line's firmware.
	_, err = e.rels.SignRelease(ctx, "pump", "1.0.0", signUpload(t, e.keys.targets[0], p), "mallory")
	wantCode(t, err, tufota.EForbidden)
	if !strings.Contains(err.Error(), "not a key of delegated role pump") {
		t.Fatalf("targets key signing for pump: %v", err)
	}
	// Nor can the line's key sign the top-level role.
	if _, err := e.rels.repo.Publish(ctx, Signers{Targets: []signature.Signer{pump[0], pump[1]}, Snapshot: e.keys.snapshot, Timestamp: e.keys.timestamp},
		Target{Path: "monitor/9.0.0/fw.bin", Staged: stage(t, e.rels.repo, []byte("x"))}); !errors.Is(err, tufota.ErrForbidden) {
		t.Fatalf("publishing top-level targets with the pump keys: %v, want forbidden", err)
	}
	// A top-level publish of a path the role covers is refused.
	_, err = e.rels.repo.Publish(ctx, e.rels.Signers(), Target{Path: "pump/9.0.0/fw.bin", Staged: stage(t, e.rels.repo, []byte("x"))})
	wantCode(t, err, tufota.EInvalid)
	if !strings.Contains(err.Error(), "delegated to role pump") {
		t.Fatalf("top-level publish of pump/9.0.0/fw.bin: %v", err)
	}

	st, err := e.rels.SignRelease(ctx, "pump", "1.0.0", signUpload(t, pump[0], p), "petra")
	if err != nil || st.Published || st.Needed != 1 {
		t.Fatalf("first pump signature: %+v, %v", st, err)
	}
	_, err = e.rels.SignRelease(ctx, "pump", "1.0.0", signUpload(t, pump[0], p), "petra")
	wantCode(t, err, tufota.EConflict)
	st, err = e.rels.SignRelease(ctx, "pump", "1.0.0", signUpload(t, pump[1], p), "paul")
	if err != nil || !st.Published {
		t.Fatalf("second pump signature: %+v, %v", st, err)
	}
	got, err := e.rels.Get(ctx, "pump", "1.0.0")
	if err != nil || got.State != StatePublished || got.Role != "pump" || got.TargetsVersion != 1 {
		t.Fatalf("after publish: %+v, %v; want published as pump v1", got, err)
	}
	fetched, err := fetchTarget(t, ts, e.root, testEpoch, rel.TargetPath)
	if err != nil || !bytes.Equal(fetched, data) {
		t.Fatalf("stock go-tuf download of the delegated release: %v", err)
	}
	if e.live(rel.TargetPath) {
		t.Fatal("the delegated release is in the top-level targets metadata")
	}

	// Two pending releases of the line: the second is rebuilt on the
	// role's new version when the first publishes, and old signatures
	// are refused as stale.
	_, r11 := e.push("pump", "1.1.0")
	_, r12 := e.push("pump", "1.2.0")
	p11, p12 := e.payload("pump", "1.1.0"), e.payload("pump", "1.2.0")
	if _, err := e.rels.SignRelease(ctx, "pump", "1.2.0", signUpload(t, pump[0], p12), "petra"); err != nil {
		t.Fatal(err)
	}
	for _, k := range pump {
		if _, err := e.rels.SignRelease(ctx, "pump", "1.1.0", signUpload(t, k, p11), "petra"); err != nil {
			t.Fatal(err)
		}
	}
	_, err = e.rels.SignRelease(ctx, "pump", "1.2.0", signUpload(t, pump[1], p12), "paul")
	wantCode(t, err, tufota.EConflict)
	if !strings.Contains(err.Error(), "stale payload") || !strings.Contains(err.Error(), "pump v3") {
		t.Fatalf("signature over a stale pump payload: %v", err)
	}
	p12 = e.payload("pump", "1.2.0")
	if p12.Status.Version != 3 || len(p12.Status.Signatures) != 0 {
		t.Fatalf("rebuilt payload = %+v, want pump v3 with no signatures", p12.Status)
	}
	for _, k := range pump {
		if _, err := e.rels.SignRelease(ctx, "pump", "1.2.0", signUpload(t, k, p12), "petra"); err != nil {
			t.Fatal(err)
		}
	}
	for _, path := range []string{r11.TargetPath, r12.TargetPath, other.TargetPath} {
		if _, err := fetchTarget(t, ts, e.root, testEpoch, path); err != nil {
			t.Fatalf("stock download of %s: %v", path, err)
		}
	}

	// A restart reads the delegated metadata back, and reports it.
	e.open(e.keys.targets...)
	ds, err := e.rels.Delegations(ctx)
	if err != nil || len(ds) != 1 || ds[0].Version != 3 || ds[0].Targets != 3 || ds[0].Expires == nil {
		t.Fatalf("Delegations = %+v, %v; want pump v3 with 3 targets", ds, err)
	}
	exp, err := e.rels.repo.Expiries(ctx)
	if err != nil || exp["pump"].IsZero() {
		t.Fatalf("Expiries = %v, %v; want the pump role", exp, err)
	}
	if _, err := e.rels.repo.Refresh(ctx, e.rels.Signers(), 0); err != nil {
		t.Fatalf("Refresh with a delegated role: %v", err)
	}
	if _, err := fetchTarget(t, ts, e.root, testEpoch, r12.TargetPath); err != nil {
		t.Fatalf("stock download after a refresh: %v", err)
	}
}

func TestAddDelegationRejects(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newOnlineEnv(t)
	k1, k2 := newKey(t, true), newKey(t, false)
	keys := []*metadata.Key{tufKeyOf(t, k1), tufKeyOf(t, k2)}
	if _, err := e.rels.AddDelegation(ctx, DelegationRequest{Name: "pump", Paths: []string{"pump/*/*"}, Keys: keys[:1], Threshold: 1}, "admin"); err != nil {
		t.Fatal(err)
	}
	before := snapshotBlobs(t, e.blobs)
	bad := &metadata.Key{Type: "ecdsa", Scheme: "ecdsa-sha2-nistp256", Value: metadata.KeyVal{PublicKey: "not a key"}}
	for _, tc := range []struct {
		name string
		req  DelegationRequest
		code tufota.Code
		msg  string
	}{
		{"upper case", DelegationRequest{Name: "Pump", Paths: []string{"x/*/*"}, Keys: keys, Threshold: 1}, tufota.EInvalid, "lower-case"},
		{"top-level role", DelegationRequest{Name: "targets", Paths: []string{"x/*/*"}, Keys: keys, Threshold: 1}, tufota.EInvalid, "top-level TUF role"},
		{"no paths", DelegationRequest{Name: "x", Keys: keys, Threshold: 1}, tufota.EInvalid, "names no paths"},
		{"two segments", DelegationRequest{Name: "x", Paths: []string{"x/*"}, Keys: keys, Threshold: 1}, tufota.EInvalid, `did you mean "x/*/*"`},
		{"dot-dot", DelegationRequest{Name: "x", Paths: []string{"x/../*"}, Keys: keys, Threshold: 1}, tufota.EInvalid, "segment"},
		{"bracket", DelegationRequest{Name: "x", Paths: []string{"x/[a]/*"}, Keys: keys, Threshold: 1}, tufota.EInvalid, "wildcards"},
		{"path twice", DelegationRequest{Name: "x", Paths: []string{"x/*/*", "x/*/*"}, Keys: keys, Threshold: 1}, tufota.EInvalid, "given twice"},
		{"no keys", DelegationRequest{Name: "x", Paths: []string{"x/*/*"}, Threshold: 1}, tufota.EInvalid, "has no keys"},
		{"key twice", DelegationRequest{Name: "x", Paths: []string{"x/*/*"}, Keys: []*metadata.Key{keys[0], keys[0]}, Threshold: 1}, tufota.EInvalid, "given twice"},
		{"bad key", DelegationRequest{Name: "x", Paths: []string{"x/*/*"}, Keys: []*metadata.Key{bad}, Threshold: 1}, tufota.EInvalid, "not a usable public key"},
		{"threshold 0", DelegationRequest{Name: "x", Paths: []string{"x/*/*"}, Keys: keys, Threshold: 0}, tufota.EInvalid, "between 1 and its 2 keys"},
		{"threshold 3", DelegationRequest{Name: "x", Paths: []string{"x/*/*"}, Keys: keys, Threshold: 3}, tufota.EInvalid, "between 1 and its 2 keys"},
		{"exists", DelegationRequest{Name: "pump", Paths: []string{"pump/*/*"}, Keys: keys, Threshold: 1}, tufota.EConflict, "exists already"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.rels.AddDelegation(ctx, tc.req, "admin")
			wantCode(t, err, tc.code)
			if !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("error %q does not say %q", err, tc.msg)
			}
		})
	}
	if after := snapshotBlobs(t, e.blobs); len(after) != len(before) {
		t.Fatal("a refused delegation changed the repository")
	}

	var err error
	// A release whose SBOM the role would not cover is refused before
	// anything is staged.
	if _, err := e.rels.AddDelegation(ctx, DelegationRequest{Name: "pump2", Paths: []string{"pump2/*/fw.bin"}, Keys: keys[:1], Threshold: 1}, "admin"); err != nil {
		t.Fatal(err)
	}
	staged := snapshotBlobs(t, e.blobs)
	fw := make([]byte, 100)
	_, _ = rand.Read(fw)
	_, err = e.rels.Push(ctx, PushRequest{Name: "pump2", Version: "1.0.0", Hardware: []string{"hw-a"}, File: "fw.bin"}, bytes.NewReader(fw), 0, "alice", WithSBOM(readSBOM(t, "pump-fw.cdx.json")))
	wantCode(t, err, tufota.EInvalid)
	if !strings.Contains(err.Error(), "must be signed by one role") {
		t.Fatalf("push with an uncovered SBOM: %v", err)
	}
	if len(snapshotBlobs(t, e.blobs)) != len(staged) {
		t.Fatal("a refused push left blobs behind")
	}
}

// A delegated role's metadata that lists a path outside the role's
// patterns does not make that path trusted: a client searching for it
// never consults the role. Here the pump key holders (and a compromised
// server signing snapshot and timestamp) list an infusion image.
func TestClientIgnoresDelegatedTargetsOutsideTheRole(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newOnlineEnv(t)
	pk, ik := newKey(t, true), newKey(t, true)
	for _, d := range []DelegationRequest{
		{Name: "pump", Paths: []string{"pump/*/*"}, Keys: []*metadata.Key{tufKeyOf(t, pk)}, Threshold: 1},
		{Name: "infusion", Paths: []string{"infusion/*/*"}, Keys: []*metadata.Key{tufKeyOf(t, ik)}, Threshold: 1},
	} {
		if _, err := e.rels.AddDelegation(ctx, d, "admin"); err != nil {
			t.Fatal(err)
		}
	}
	// infusion has published one release, so clients consult its metadata.
	e.push("infusion", "1.0.0")
	if _, err := e.rels.SignRelease(ctx, "infusion", "1.0.0", signUpload(t, ik, e.payload("infusion", "1.0.0")), "ines"); err != nil {
		t.Fatal(err)
	}
	// The server itself refuses to build such a payload.
	st, err := e.rels.repo.load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	evil := Target{Path: "infusion/6.6.6/fw.bin", Staged: stage(t, e.rels.repo, []byte("evil image"))}
	_, _, err = e.rels.repo.pendingPayload(ctx, st, "pump", []Target{evil})
	wantCode(t, err, tufota.EInvalid)

	// Forge it by hand: pump v1 lists the infusion path, signed by the
	// pump key; snapshot and timestamp name it.
	if err := e.rels.repo.moveStaged(ctx, evil); err != nil {
		t.Fatal(err)
	}
	md := metadata.Targets(testEpoch.AddDate(0, 1, 0))
	tf, err := metadata.TargetFile().FromBytes(evil.Path, []byte("evil image"), "sha256")
	if err != nil {
		t.Fatal(err)
	}
	md.Signed.Targets[evil.Path] = tf
	if _, err := md.Sign(pk); err != nil {
		t.Fatal(err)
	}
	data, err := md.ToBytes(true)
	if err != nil {
		t.Fatal(err)
	}
	st.snapshot.Signed.Version++
	st.snapshot.Signed.Meta["pump.json"] = metaFileFor(1, data)
	files, err := e.rels.repo.signSnapshotTimestamp(st.root, st.snapshot, st.timestamp, e.rels.Signers(), []metaFile{{name: "1.pump.json", data: data}})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.rels.repo.writeChain(ctx, files); err != nil {
		t.Fatal(err)
	}
	up := stockUpdater(t, serveBlobs(t, e.blobs), e.root, testEpoch)
	if err := up.Refresh(); err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	if _, err := up.GetTargetInfo("infusion/1.0.0/fw.bin"); err != nil {
		t.Fatalf("the infusion role's own release: %v", err)
	}
	ti, err := up.GetTargetInfo(evil.Path)
	if err == nil || !strings.Contains(err.Error(), "target "+evil.Path+" not found") {
		t.Fatalf("GetTargetInfo(%s) = %+v, %v; want not found: only the infusion role may list it", evil.Path, ti, err)
	}
	if pm := up.GetTrustedMetadataSet().Targets["pump"]; pm != nil {
		t.Fatalf("the client loaded the pump role looking for an infusion path")
	}
}

// With an offline targets role (2-of-2, no key on the server), adding a
// delegation is a pending top-level targets change that the targets key
// holders sign like a release; it goes stale when other targets metadata
// publishes first, and can be cancelled.
func TestPendingDelegationUnderOfflineTargets(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newThresholdEnv(t)
	pk := newKey(t, true)
	req := DelegationRequest{Name: "pump", Paths: []string{"pump/*/*"}, Keys: []*metadata.Key{tufKeyOf(t, pk)}, Threshold: 1}
	d, err := e.rels.AddDelegation(ctx, req, "admin")
	if err != nil || d.Signing == nil || d.Signing.Needed != 2 || d.TargetsVersion != 2 {
		t.Fatalf("AddDelegation under offline targets = %+v, %v; want pending targets v2 needing 2", d, err)
	}
	if ds, err := e.rels.Delegations(ctx); err != nil || len(ds) != 1 || ds[0].Pending != "add" || ds[0].Version != 0 || ds[0].Signing == nil || ds[0].Signing.Needed != 2 {
		t.Fatalf("Delegations with a pending add = %+v, %v; want it marked pending, 2 signatures needed", ds, err)
	}
	_, err = e.rels.AddDelegation(ctx, req, "admin")
	wantCode(t, err, tufota.EConflict)
	if err := e.rels.CancelDelegation(ctx, "pump"); err != nil {
		t.Fatalf("CancelDelegation: %v", err)
	}
	_, err = e.rels.DelegationPayload(ctx, "pump")
	wantCode(t, err, tufota.ENotFound)
	if _, err := e.rels.AddDelegation(ctx, req, "admin"); err != nil {
		t.Fatalf("AddDelegation after cancel: %v", err)
	}
	old := func() SigningPayload {
		p, err := e.rels.DelegationPayload(ctx, "pump")
		if err != nil {
			t.Fatal(err)
		}
		return p
	}()
	if old.Delegation == nil || old.Delegation.Name != "pump" || !bytes.Contains(old.Payload, []byte(`"pump/*/*"`)) {
		t.Fatalf("payload does not carry the delegation: %+v", old.Delegation)
	}
	if _, err := e.rels.SignDelegation(ctx, "pump", signUpload(t, e.keys.targets[0], old), "tina"); err != nil {
		t.Fatal(err)
	}

	// A release publishes first: the delegation's payload is rebuilt.
	e.push("monitor", "1.0.0")
	mp := e.payload("monitor", "1.0.0")
	for _, k := range e.keys.targets {
		if _, err := e.rels.SignRelease(ctx, "monitor", "1.0.0", signUpload(t, k, mp), "tina"); err != nil {
			t.Fatal(err)
		}
	}
	_, err = e.rels.SignDelegation(ctx, "pump", signUpload(t, e.keys.targets[1], old), "tom")
	wantCode(t, err, tufota.EConflict)
	if !strings.Contains(err.Error(), "stale payload") || !strings.Contains(err.Error(), "tufota delegation sign pump") {
		t.Fatalf("signature over the stale delegation payload: %v", err)
	}
	// A pump key cannot sign the top-level targets.
	cur, err := e.rels.DelegationPayload(ctx, "pump")
	if err != nil || cur.Status.Version != 3 || len(cur.Status.Signatures) != 0 {
		t.Fatalf("rebuilt payload: %+v, %v; want targets v3 (monitor took v2), no signatures", cur.Status, err)
	}
	_, err = e.rels.SignDelegation(ctx, "pump", signUpload(t, pk, cur), "petra")
	wantCode(t, err, tufota.EForbidden)
	var st SigningStatus
	for _, k := range e.keys.targets {
		if st, err = e.rels.SignDelegation(ctx, "pump", signUpload(t, k, cur), "tina"); err != nil {
			t.Fatal(err)
		}
	}
	if !st.Published || st.Version != 3 {
		t.Fatalf("status after the threshold = %+v, want published targets v3", st)
	}
	_, err = e.rels.SignDelegation(ctx, "pump", signUpload(t, e.keys.targets[0], cur), "tina")
	wantCode(t, err, tufota.EConflict)
	if err := e.rels.CancelDelegation(ctx, "pump"); !errors.Is(err, tufota.ErrConflict) {
		t.Fatalf("cancel of a published delegation: %v, want conflict", err)
	}

	// The delegation is live: a pump release waits for the pump key only,
	// and a stock client downloads it through the delegation.
	data, rel := e.push("pump", "1.0.0")
	if rel.Role != "pump" || rel.Signing == nil || rel.Signing.Needed != 1 {
		t.Fatalf("pump push = %+v", rel)
	}
	if st, err := e.rels.SignRelease(ctx, "pump", "1.0.0", signUpload(t, pk, e.payload("pump", "1.0.0")), "petra"); err != nil || !st.Published {
		t.Fatalf("pump signature: %+v %v", st, err)
	}
	got, err := fetchTarget(t, serveBlobs(t, e.blobs), e.root, testEpoch, rel.TargetPath)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("stock download: %v", err)
	}
}

// FuzzValidateDelegationPath: an accepted pattern has three segments, no
// way out of the targets tree, and compiles for TUF's segment matching; a
// refusal is always tufota.EInvalid.
func FuzzValidateDelegationPath(f *testing.F) {
	for _, s := range []string{"pump/*/*", "pump/*", "*/*/*", "a/../b", "pump-?/2.*/fw.bin", "x/[a]/*", "/a/b", "a/b/", "a\\b/c/d"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		err := ValidateDelegationPath(p)
		if err != nil {
			if code := tufota.ErrorCode(err); code != tufota.EInvalid {
				t.Fatalf("ValidateDelegationPath(%q) code %s: %v", p, code, err)
			}
			return
		}
		if strings.Count(p, "/") != 2 || strings.Contains(p, "..") || strings.ContainsAny(p, "[]\\\x00") {
			t.Fatalf("accepted %q", p)
		}
		role := metadata.DelegatedRole{Name: "r", Paths: []string{p}}
		if _, err := role.IsDelegatedPath("a/b/c"); err != nil {
			t.Fatalf("accepted %q, which go-tuf cannot match: %v", p, err)
		}
	})
}

// A product line's metadata expires like any targets metadata, and its
// keys are offline: RenewDelegation is how the line's key holders keep it
// valid without a release. Past expiry a client refuses the line's
// releases; after the renewal it takes them again.
func TestRenewDelegation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newOnlineEnv(t)
	pk := newKey(t, false)
	if _, err := e.rels.AddDelegation(ctx, DelegationRequest{Name: "pump", Paths: []string{"pump/*/*"}, Keys: []*metadata.Key{tufKeyOf(t, pk)}, Threshold: 1}, "admin"); err != nil {
		t.Fatal(err)
	}
	_, err := e.rels.RenewDelegation(ctx, "pump", "petra")
	wantCode(t, err, tufota.EConflict) // no metadata before the first release
	_, err = e.rels.RenewDelegation(ctx, "vent", "petra")
	wantCode(t, err, tufota.ENotFound)

	data, rel := e.push("pump", "1.0.0")
	if _, err := e.rels.SignRelease(ctx, "pump", "1.0.0", signUpload(t, pk, e.payload("pump", "1.0.0")), "petra"); err != nil {
		t.Fatal(err)
	}
	ts := serveBlobs(t, e.blobs)
	late := testEpoch.Add(100 * 24 * time.Hour) // past the role's 90 days
	e.clock.Set(late)
	if _, err := e.rels.repo.Refresh(ctx, e.rels.Signers(), time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := fetchTarget(t, ts, e.root, late, rel.TargetPath); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("download past the pump role's expiry: %v, want expired", err)
	}
	if st, err := e.rels.repo.Expiries(ctx); err != nil || !st["pump"].Before(late) {
		t.Fatalf("Expiries: %v %v", st, err)
	}

	d, err := e.rels.RenewDelegation(ctx, "pump", "petra")
	if err != nil || d.Signing == nil || d.Signing.Role != "pump" || d.Signing.Version != 2 || d.Signing.Needed != 1 {
		t.Fatalf("RenewDelegation = %+v, %v; want pending pump v2 needing 1", d, err)
	}
	_, err = e.rels.RenewDelegation(ctx, "pump", "petra")
	wantCode(t, err, tufota.EConflict)
	if ds, err := e.rels.Delegations(ctx); err != nil || len(ds) != 1 || ds[0].Pending != "renewal" || ds[0].Signing.Needed != 1 {
		t.Fatalf("Delegations with a pending renewal = %+v, %v", ds, err)
	}
	p, err := e.rels.DelegationPayload(ctx, "pump")
	if err != nil || p.Role != "pump" {
		t.Fatalf("renewal payload: %+v %v", p, err)
	}
	_, err = e.rels.SignDelegation(ctx, "pump", signUpload(t, e.keys.targets[0], p), "tina")
	wantCode(t, err, tufota.EForbidden)
	st, err := e.rels.SignDelegation(ctx, "pump", signUpload(t, pk, p), "petra")
	if err != nil || !st.Published || st.Version != 2 {
		t.Fatalf("renewal signature: %+v %v", st, err)
	}
	got, err := fetchTarget(t, ts, e.root, late, rel.TargetPath)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("download after the renewal: %v", err)
	}
	ds, err := e.rels.Delegations(ctx)
	if err != nil || ds[0].Version != 2 || ds[0].Targets != 1 || !ds[0].Expires.After(late.Add(89*24*time.Hour)) {
		t.Fatalf("Delegations after renewal = %+v, %v", ds, err)
	}

	// A release that publishes first makes a pending renewal stale: it is
	// rebuilt on the new version and the old signature is refused.
	if _, err := e.rels.RenewDelegation(ctx, "pump", "petra"); err != nil {
		t.Fatal(err)
	}
	old, err := e.rels.DelegationPayload(ctx, "pump")
	if err != nil {
		t.Fatal(err)
	}
	e.push("pump", "1.1.0")
	if _, err := e.rels.SignRelease(ctx, "pump", "1.1.0", signUpload(t, pk, e.payload("pump", "1.1.0")), "petra"); err != nil {
		t.Fatal(err)
	}
	_, err = e.rels.SignDelegation(ctx, "pump", signUpload(t, pk, old), "petra")
	wantCode(t, err, tufota.EConflict)
	if !strings.Contains(err.Error(), "stale payload") {
		t.Fatalf("stale renewal signature: %v", err)
	}
	if err := e.rels.CancelDelegation(ctx, "pump"); err != nil {
		t.Fatalf("cancel the renewal: %v", err)
	}
}

// A product line's key is compromised: the admin revokes it. The role's
// published metadata is signed only by that key, so the change carries a
// re-signing by the remaining key, and both publish together; afterwards
// devices refuse anything the revoked key signs for the line.
func TestUpdateDelegationRevokesALineKey(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newOnlineEnv(t)
	k1, k2, k3 := newKey(t, true), newKey(t, false), newKey(t, true)
	id1, _ := KeyID(k1)
	if _, err := e.rels.AddDelegation(ctx, DelegationRequest{Name: "pump", Paths: []string{"pump/*/*"}, Keys: []*metadata.Key{tufKeyOf(t, k1), tufKeyOf(t, k2)}, Threshold: 1}, "admin"); err != nil {
		t.Fatal(err)
	}
	data, rel := e.push("pump", "1.0.0")
	if _, err := e.rels.SignRelease(ctx, "pump", "1.0.0", signUpload(t, k1, e.payload("pump", "1.0.0")), "petra"); err != nil {
		t.Fatal(err)
	}

	// Bad changes, each refused with nothing changed.
	before := snapshotBlobs(t, e.blobs)
	for _, tc := range []struct {
		name string
		role string
		ch   DelegationChange
		code tufota.Code
		msg  string
	}{
		{"unknown role", "vent", DelegationChange{Threshold: 1}, tufota.ENotFound, "delegates to no role vent"},
		{"no change", "pump", DelegationChange{Threshold: 1}, tufota.EInvalid, "changes nothing"},
		{"revoke a stranger", "pump", DelegationChange{RevokeKeys: []string{strings.Repeat("ab", 32)}}, tufota.EInvalid, "is not a key of the role"},
		{"add a member", "pump", DelegationChange{AddKeys: []*metadata.Key{tufKeyOf(t, k2)}}, tufota.EInvalid, "a key of the role already"},
		{"threshold above keys", "pump", DelegationChange{Threshold: 3}, tufota.EInvalid, "between 1 and its 2 keys"},
		{"revoke every key", "pump", DelegationChange{RevokeKeys: []string{id1, mustKeyID(t, k2)}}, tufota.EInvalid, "has no keys"},
	} {
		_, err := e.rels.UpdateDelegation(ctx, tc.role, tc.ch, "admin")
		wantCode(t, err, tc.code)
		if !strings.Contains(err.Error(), tc.msg) {
			t.Fatalf("%s: %v, want %q", tc.name, err, tc.msg)
		}
	}
	if len(snapshotBlobs(t, e.blobs)) != len(before) {
		t.Fatal("a refused change wrote metadata")
	}

	// Adding a key needs no re-signing: it publishes at once.
	d, err := e.rels.UpdateDelegation(ctx, "pump", DelegationChange{AddKeys: []*metadata.Key{tufKeyOf(t, k3)}}, "admin")
	if err != nil || d.Signing != nil || d.Resign != nil || len(d.KeyIDs) != 3 || d.TargetsVersion != 3 {
		t.Fatalf("add a key = %+v, %v; want published targets v3 with 3 keys", d, err)
	}

	// Revoking k1, the only signer of pump v1, needs k2 or k3 to re-sign.
	d, err = e.rels.UpdateDelegation(ctx, "pump", DelegationChange{RevokeKeys: []string{id1}}, "admin")
	if err != nil || d.Signing == nil || d.Signing.Needed != 0 || d.Resign == nil || d.Resign.Needed != 1 || d.Resign.Version != 2 || slices.Contains(d.KeyIDs, id1) {
		t.Fatalf("revoke k1 = %+v (signing %+v, resign %+v), %v; want a pending re-signing of pump v2 by the new keys", d, d.Signing, d.Resign, err)
	}
	if ds, err := e.rels.Delegations(ctx); err != nil || len(ds) != 1 || ds[0].Pending != "key change" || ds[0].Version != 1 {
		t.Fatalf("Delegations with a pending key change = %+v, %v", ds, err)
	}
	_, err = e.rels.UpdateDelegation(ctx, "pump", DelegationChange{Threshold: 2}, "admin")
	wantCode(t, err, tufota.EConflict)
	_, err = e.rels.RenewDelegation(ctx, "pump", "petra")
	wantCode(t, err, tufota.EConflict)
	p, err := e.rels.DelegationPayload(ctx, "pump")
	if err != nil || p.Resign == nil || p.Resign.Role != "pump" {
		t.Fatalf("payload of the change: %+v, %v; want a pump re-signing", p, err)
	}
	_, err = e.rels.SignDelegation(ctx, "pump", signUpload(t, k1, *p.Resign), "mallory")
	wantCode(t, err, tufota.EForbidden) // the revoked key does not count for the new role
	st, err := e.rels.SignDelegation(ctx, "pump", signUpload(t, k2, *p.Resign), "paul")
	if err != nil || !st.Published {
		t.Fatalf("re-signing by k2: %+v %v; want published", st, err)
	}
	ts := serveBlobs(t, e.blobs)
	if got, err := fetchTarget(t, ts, e.root, testEpoch, rel.TargetPath); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("download after the rotation: %v", err)
	}
	ds, _ := e.rels.Delegations(ctx)
	if len(ds) != 1 || ds[0].Version != 2 || len(ds[0].KeyIDs) != 2 || slices.Contains(ds[0].KeyIDs, id1) {
		t.Fatalf("after the rotation: %+v", ds)
	}

	// The revoked key signs nothing for the line any more: not through
	// the server, and not by a forged pump v3 served to a device.
	e.push("pump", "1.1.0")
	_, err = e.rels.SignRelease(ctx, "pump", "1.1.0", signUpload(t, k1, e.payload("pump", "1.1.0")), "mallory")
	wantCode(t, err, tufota.EForbidden)
	if st, err := e.rels.SignRelease(ctx, "pump", "1.1.0", signUpload(t, k3, e.payload("pump", "1.1.0")), "kim"); err != nil || !st.Published {
		t.Fatalf("k3 signing 1.1.0: %+v %v", st, err)
	}
	cur, err := e.rels.repo.load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	forged := renewed(cur.delegated["pump"], cur.delegated["pump"].Signed.Version+1, testEpoch.AddDate(0, 1, 0))
	if _, err := forged.Sign(k1); err != nil {
		t.Fatal(err)
	}
	fdata, _ := forged.ToBytes(true)
	cur.snapshot.Signed.Version++
	cur.snapshot.Signed.Meta["pump.json"] = metaFileFor(forged.Signed.Version, fdata)
	files, err := e.rels.repo.signSnapshotTimestamp(cur.root, cur.snapshot, cur.timestamp, e.rels.Signers(), []metaFile{{name: "4.pump.json", data: fdata}})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.rels.repo.writeChain(ctx, files); err != nil {
		t.Fatal(err)
	}
	if _, err := fetchTarget(t, ts, e.root, testEpoch, rel.TargetPath); err == nil || !strings.Contains(err.Error(), "not enough signatures") {
		t.Fatalf("download with pump metadata signed by the revoked key: %v, want not enough signatures", err)
	}
}

// Under an offline targets role the same rotation needs the targets key
// holders too; a release that publishes first makes the re-signing
// stale, and it is rebuilt.
func TestUpdateDelegationUnderOfflineTargets(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newThresholdEnv(t)
	k1, k2 := newKey(t, true), newKey(t, true)
	id1 := mustKeyID(t, k1)
	if _, err := e.rels.AddDelegation(ctx, DelegationRequest{Name: "pump", Paths: []string{"pump/*/*"}, Keys: []*metadata.Key{tufKeyOf(t, k1), tufKeyOf(t, k2)}, Threshold: 1}, "admin"); err != nil {
		t.Fatal(err)
	}
	add, err := e.rels.DelegationPayload(ctx, "pump")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range e.keys.targets {
		if _, err := e.rels.SignDelegation(ctx, "pump", signUpload(t, k, add), "tina"); err != nil {
			t.Fatal(err)
		}
	}
	e.push("pump", "1.0.0")
	if _, err := e.rels.SignRelease(ctx, "pump", "1.0.0", signUpload(t, k1, e.payload("pump", "1.0.0")), "petra"); err != nil {
		t.Fatal(err)
	}
	d, err := e.rels.UpdateDelegation(ctx, "pump", DelegationChange{RevokeKeys: []string{id1}}, "admin")
	if err != nil || d.Signing == nil || d.Signing.Needed != 2 || d.Resign == nil || d.Resign.Needed != 1 {
		t.Fatalf("revoke under offline targets = %+v, %v", d, err)
	}
	old, err := e.rels.DelegationPayload(ctx, "pump")
	if err != nil || old.Resign == nil {
		t.Fatalf("payload: %+v %v", old, err)
	}
	// A pump release published with k1 before the change completes: the
	// re-signing is rebuilt on pump v2.
	e.push("pump", "1.1.0")
	if _, err := e.rels.SignRelease(ctx, "pump", "1.1.0", signUpload(t, k1, e.payload("pump", "1.1.0")), "petra"); err != nil {
		t.Fatal(err)
	}
	_, err = e.rels.SignDelegation(ctx, "pump", signUpload(t, k2, *old.Resign), "paul")
	wantCode(t, err, tufota.EConflict)
	cur, err := e.rels.DelegationPayload(ctx, "pump")
	if err != nil || cur.Resign == nil || cur.Resign.Status.Version != 3 {
		t.Fatalf("rebuilt re-signing: %+v %v; want pump v3", cur.Resign, err)
	}
	if st, err := e.rels.SignDelegation(ctx, "pump", signUpload(t, k2, *cur.Resign), "paul"); err != nil || st.Published {
		t.Fatalf("re-signing before the targets signatures: %+v %v; want recorded, not published", st, err)
	}
	var st SigningStatus
	for _, k := range e.keys.targets {
		if st, err = e.rels.SignDelegation(ctx, "pump", signUpload(t, k, cur), "tina"); err != nil {
			t.Fatal(err)
		}
	}
	if !st.Published {
		t.Fatalf("after both thresholds: %+v", st)
	}
	for _, v := range []string{"1.0.0", "1.1.0"} {
		if _, err := fetchTarget(t, serveBlobs(t, e.blobs), e.root, testEpoch, "pump/"+v+"/fw.bin"); err != nil {
			t.Fatalf("download of pump %s after the rotation: %v", v, err)
		}
	}
	if err := e.rels.CancelDelegation(ctx, "pump"); !errors.Is(err, tufota.ErrConflict) {
		t.Fatalf("cancel after publish: %v", err)
	}
}

// A delegation made by mistake (no release yet) can be removed, and its
// paths go back to the top-level role; one with releases cannot.
func TestRemoveDelegation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newOnlineEnv(t)
	k := newKey(t, true)
	for _, name := range []string{"pmup", "pump"} {
		if _, err := e.rels.AddDelegation(ctx, DelegationRequest{Name: name, Paths: []string{name + "/*/*"}, Keys: []*metadata.Key{tufKeyOf(t, k)}, Threshold: 1}, "admin"); err != nil {
			t.Fatal(err)
		}
	}
	e.push("pump", "1.0.0")
	if _, err := e.rels.SignRelease(ctx, "pump", "1.0.0", signUpload(t, k, e.payload("pump", "1.0.0")), "petra"); err != nil {
		t.Fatal(err)
	}
	_, err := e.rels.RemoveDelegation(ctx, "pump", "admin")
	wantCode(t, err, tufota.EConflict)
	if !strings.Contains(err.Error(), "has published releases") {
		t.Fatalf("removing a role with releases: %v", err)
	}
	_, err = e.rels.RemoveDelegation(ctx, "vent", "admin")
	wantCode(t, err, tufota.ENotFound)
	e.push("pmup", "1.0.0") // pending under the mistaken role
	_, err = e.rels.RemoveDelegation(ctx, "pmup", "admin")
	wantCode(t, err, tufota.EConflict)
	if !strings.Contains(err.Error(), "pmup@1.0.0") {
		t.Fatalf("removing a role with a pending release: %v", err)
	}
	if _, err := e.rels.CancelRelease(ctx, "pmup", "1.0.0"); err != nil {
		t.Fatal(err)
	}
	d, err := e.rels.RemoveDelegation(ctx, "pmup", "admin")
	if err != nil || d.Signing != nil {
		t.Fatalf("RemoveDelegation = %+v, %v; want published", d, err)
	}
	ds, _ := e.rels.Delegations(ctx)
	if len(ds) != 1 || ds[0].Name != "pump" {
		t.Fatalf("after removal: %+v", ds)
	}
	// Its paths are the top-level role's again: published at once.
	_, rel := e.push("pmup", "1.0.0")
	if rel.State != StatePublished || rel.Role != RoleTargets {
		t.Fatalf("push after the removal = %+v", rel)
	}
	if _, err := fetchTarget(t, serveBlobs(t, e.blobs), e.root, testEpoch, "pump/1.0.0/fw.bin"); err != nil {
		t.Fatalf("the other line after the removal: %v", err)
	}
}

// Under an offline targets role a removal waits for the targets keys.
func TestRemoveDelegationUnderOfflineTargets(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newThresholdEnv(t)
	req := DelegationRequest{Name: "pump", Paths: []string{"pump/*/*"}, Keys: []*metadata.Key{tufKeyOf(t, newKey(t, true))}, Threshold: 1}
	if _, err := e.rels.AddDelegation(ctx, req, "admin"); err != nil {
		t.Fatal(err)
	}
	sign := func() SigningStatus {
		t.Helper()
		p, err := e.rels.DelegationPayload(ctx, "pump")
		if err != nil {
			t.Fatal(err)
		}
		var st SigningStatus
		for _, k := range e.keys.targets {
			if st, err = e.rels.SignDelegation(ctx, "pump", signUpload(t, k, p), "tina"); err != nil {
				t.Fatal(err)
			}
		}
		return st
	}
	if st := sign(); !st.Published {
		t.Fatalf("add: %+v", st)
	}
	d, err := e.rels.RemoveDelegation(ctx, "pump", "admin")
	if err != nil || d.Signing == nil || d.Signing.Needed != 2 || d.Pending != "removal" {
		t.Fatalf("RemoveDelegation under offline targets = %+v, %v", d, err)
	}
	if ds, _ := e.rels.Delegations(ctx); len(ds) != 1 || ds[0].Pending != "removal" {
		t.Fatalf("Delegations with a pending removal: %+v", ds)
	}
	if st := sign(); !st.Published {
		t.Fatalf("removal: %+v", st)
	}
	if ds, _ := e.rels.Delegations(ctx); len(ds) != 0 {
		t.Fatalf("after the removal: %+v", ds)
	}
	tg, err := e.rels.repo.Targets(ctx)
	if err != nil || tg.Signed.Delegations != nil {
		t.Fatalf("targets after removing the last delegation: %+v, %v", tg.Signed.Delegations, err)
	}
}
