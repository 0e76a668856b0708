package server

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/tufota/tufota/access"
	"github.com/tufota/tufota/audit"
	"github.com/tufota/tufota/signer"
)

func newSV(t *testing.T) signature.SignerVerifier {
	t.Helper()
	sv, _, err := signature.NewDefaultED25519SignerVerifier()
	if err != nil {
		t.Fatal(err)
	}
	return sv
}

func tufPub(t *testing.T, sv signature.SignerVerifier) *metadata.Key {
	t.Helper()
	pub, err := sv.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	k, err := metadata.KeyFromPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func upload(t *testing.T, sv signature.SignerVerifier, p signer.SigningPayload) signer.SignatureUpload {
	t.Helper()
	sig, err := sv.SignMessage(bytes.NewReader(p.Payload))
	if err != nil {
		t.Fatal(err)
	}
	id, err := signer.KeyID(sv)
	if err != nil {
		t.Fatal(err)
	}
	return signer.SignatureUpload{KeyID: id, Sig: hex.EncodeToString(sig), PayloadSHA256: p.PayloadSHA256}
}

// requireTwoPerson rotates the test server's root once so that targets
// needs 2 signatures: the server's key and extraKey, which only the test
// holds. Every release pushed afterwards waits for one offline signature.
func (ts *testServer) requireTwoPerson(t *testing.T) {
	t.Helper()
	if ts.extraKey != nil {
		return
	}
	ctx := context.Background()
	ts.extraKey = newSV(t)
	p, err := ts.cfg.Releases.ProposeRoot(ctx, signer.RootChange{
		AddKeys:    []signer.RootKeyAdd{{Role: signer.RoleTargets, Key: tufPub(t, ts.extraKey)}},
		Thresholds: map[string]int{signer.RoleTargets: 2},
	}, "test")
	if err != nil {
		t.Fatal(err)
	}
	// Raising the threshold orphans the current targets metadata (one
	// signature): the ceremony carries its re-signing by the new keys.
	if p.Targets == nil {
		t.Fatal("raising the targets threshold carries no targets re-signing")
	}
	if st, err := ts.cfg.Releases.SignRoot(ctx, upload(t, ts.extraKey, *p.Targets), "test"); err != nil || st.Published || st.TargetsNeeded != 0 {
		t.Fatalf("targets re-signing: %+v %v", st, err)
	}
	if st, err := ts.cfg.Releases.SignRoot(ctx, upload(t, ts.rootKey, p), "test"); err != nil || !st.Published {
		t.Fatalf("rotate to 2-of-2 targets: %+v %v", st, err)
	}
}

// pendingRelease pushes a release that waits for extraKey's signature.
func (ts *testServer) pendingRelease(t *testing.T, n int64) (string, string) {
	t.Helper()
	ts.requireTwoPerson(t)
	version := fmt.Sprintf("7.0.%d", n)
	rel, err := ts.cfg.Releases.Push(context.Background(), signer.PushRequest{Name: "twoperson", Version: version, Hardware: []string{"pump-a"}, File: "fw.bin"}, strings.NewReader("fw "+version), 1<<20, "test")
	if err != nil || rel.Signing == nil {
		t.Fatalf("push pending: %+v %v", rel, err)
	}
	return "twoperson", version
}

// pendingDelegation adds a delegation that waits for extraKey's targets
// signature and returns its name.
func (ts *testServer) pendingDelegation(t *testing.T, n int64) string {
	t.Helper()
	ts.requireTwoPerson(t)
	name := fmt.Sprintf("pending-%d", n)
	d, err := ts.cfg.Releases.AddDelegation(context.Background(), signer.DelegationRequest{
		Name: name, Paths: []string{name + "/*/*"}, Keys: []*metadata.Key{tufPub(t, newSV(t))}, Threshold: 1,
	}, "test")
	if err != nil || d.Signing == nil {
		t.Fatalf("pending delegation: %+v %v", d, err)
	}
	return name
}

// pendingRoot makes sure a root change is pending.
func (ts *testServer) pendingRoot(t *testing.T) signer.SigningPayload {
	t.Helper()
	ctx := context.Background()
	if p, err := ts.cfg.Releases.RootPayload(ctx); err == nil {
		return p
	}
	p, err := ts.cfg.Releases.ProposeRoot(ctx, signer.RootChange{AddKeys: []signer.RootKeyAdd{{Role: signer.RoleRoot, Key: tufPub(t, newSV(t))}}}, "test")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// signingRequest builds a valid request for the signing routes (nil for
// other routes), for the route matrix.
func (ts *testServer) signingRequest(t *testing.T, r Route, n int64) *http.Request {
	t.Helper()
	ctx := context.Background()
	u := ts.http.URL
	switch r.Path {
	case "/api/v1/releases/:name/:version":
		if r.Method != http.MethodDelete {
			return nil
		}
		name, version := ts.pendingRelease(t, n)
		return httptest.NewRequest(r.Method, u+"/api/v1/releases/"+name+"/"+version, nil)
	case "/api/v1/releases/:name/:version/signing":
		name, version := ts.pendingRelease(t, n)
		return httptest.NewRequest(r.Method, u+"/api/v1/releases/"+name+"/"+version+"/signing", nil)
	case "/api/v1/releases/:name/:version/signatures":
		name, version := ts.pendingRelease(t, n)
		p, err := ts.cfg.Releases.ReleasePayload(ctx, name, version)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(upload(t, ts.extraKey, p))
		return jsonRequest(r.Method, u+"/api/v1/releases/"+name+"/"+version+"/signatures", string(b))
	case "/api/v1/delegations/:name/signing":
		return httptest.NewRequest(r.Method, u+"/api/v1/delegations/"+ts.pendingDelegation(t, n)+"/signing", nil)
	case "/api/v1/delegations/:name/signatures":
		name := ts.pendingDelegation(t, n)
		p, err := ts.cfg.Releases.DelegationPayload(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(upload(t, ts.extraKey, p))
		return jsonRequest(r.Method, u+"/api/v1/delegations/"+name+"/signatures", string(b))
	case "/api/v1/delegations/:name":
		if r.Method != http.MethodDelete {
			return nil
		}
		return httptest.NewRequest(r.Method, u+"/api/v1/delegations/"+ts.pendingDelegation(t, n), nil)
	case "/api/v1/root":
		if r.Method == http.MethodPost {
			_ = ts.cfg.Releases.CancelRoot(ctx)
			b, _ := json.Marshal(signer.RootChange{AddKeys: []signer.RootKeyAdd{{Role: signer.RoleRoot, Key: tufPub(t, newSV(t))}}})
			return jsonRequest(r.Method, u+r.Path, string(b))
		}
		return httptest.NewRequest(r.Method, u+r.Path, nil)
	case "/api/v1/root/pending":
		ts.pendingRoot(t)
		return httptest.NewRequest(r.Method, u+r.Path, nil)
	case "/api/v1/root/signatures":
		p := ts.pendingRoot(t)
		b, _ := json.Marshal(upload(t, ts.rootKey, p))
		return jsonRequest(r.Method, u+r.Path, string(b))
	}
	return nil
}

// TestSigningAPI drives a pending release through the HTTP API: push
// answers 202 pending, the payload names the release, bad signatures get
// precise 4xx answers, the last signature publishes, and the audit log
// records every accepted and rejected signature and the publish.
func TestSigningAPI(t *testing.T) {
	ts := newTestServer(t)
	ts.requireTwoPerson(t)
	tok := ts.tokens[access.RoleReleaseEngineer]
	body, ct := pushBody(t, signer.PushRequest{Name: "pump-fw", Version: "2.0.0", Hardware: []string{"pump-a"}, File: "fw.bin"}, []byte("firmware two"))
	req := httptest.NewRequest(http.MethodPost, ts.http.URL+"/api/v1/releases", body)
	req.Header.Set("Content-Type", ct)
	req.RequestURI = ""
	resp, b := ts.do(t, req, tok)
	if resp.StatusCode != http.StatusAccepted || !strings.Contains(string(b), `"needed":1`) {
		t.Fatalf("push: %d %s, want 202 pending needing 1", resp.StatusCode, b)
	}
	get := httptest.NewRequest(http.MethodGet, ts.http.URL+"/api/v1/releases/pump-fw/2.0.0/signing", nil)
	get.RequestURI = ""
	resp, b = ts.do(t, get, tok)
	var p signer.SigningPayload
	if resp.StatusCode != http.StatusOK || json.Unmarshal(b, &p) != nil || p.Release == nil || p.Release.Name != "pump-fw" {
		t.Fatalf("payload: %d %s", resp.StatusCode, b)
	}
	post := func(up signer.SignatureUpload) (int, string) {
		j, _ := json.Marshal(up)
		req := jsonRequest(http.MethodPost, ts.http.URL+"/api/v1/releases/pump-fw/2.0.0/signatures", string(j))
		req.RequestURI = ""
		resp, b := ts.do(t, req, tok)
		return resp.StatusCode, string(b)
	}
	for _, tt := range []struct {
		name string
		up   signer.SignatureUpload
		code int
		msg  string
	}{
		{"unknown key", upload(t, newSV(t), p), http.StatusForbidden, "not a key of this repository"},
		{"root key", upload(t, ts.rootKey, p), http.StatusForbidden, "not a targets key"},
		{"bad signature", upload(t, ts.extraKey, signer.SigningPayload{Payload: []byte("other"), PayloadSHA256: p.PayloadSHA256}), http.StatusBadRequest, "does not verify"},
		{"stale", signer.SignatureUpload{KeyID: upload(t, ts.extraKey, p).KeyID, Sig: "00", PayloadSHA256: strings.Repeat("1", 64)}, http.StatusConflict, "stale payload"},
	} {
		if code, b := post(tt.up); code != tt.code || !strings.Contains(b, tt.msg) {
			t.Errorf("%s: %d %s, want %d with %q", tt.name, code, b, tt.code, tt.msg)
		}
	}
	if code, b := post(upload(t, ts.extraKey, p)); code != http.StatusOK || !strings.Contains(b, `"published":true`) {
		t.Fatalf("last signature: %d %s", code, b)
	}
	if code, b := post(upload(t, ts.extraKey, p)); code != http.StatusConflict || !strings.Contains(b, "published already") {
		t.Fatalf("signature after publish: %d %s", code, b)
	}
	entries, err := ts.cfg.Audit.List(context.Background(), audit.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	for _, e := range entries {
		if e.Object == "release/pump-fw@2.0.0" {
			count[e.Action+"/"+e.Outcome]++
		}
	}
	if count["release.sign/"+audit.OutcomeOK] != 1 || count["release.sign/"+audit.OutcomeDenied] != 2 || count["release.sign/"+audit.OutcomeFailed] != 3 || count["release.publish/"+audit.OutcomeOK] != 1 {
		t.Fatalf("audit of the signatures = %v", count)
	}
}
