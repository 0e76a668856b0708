package server

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/tufota/tufota/access"
	"github.com/tufota/tufota/internal/testenv"
	"github.com/tufota/tufota/signer"
)

// TestSignerChangesCommitWithTheirAudit: the signer's state changes
// (a release recorded pending, a signature stored, a release published or
// cancelled, a delegation added, updated, removed, renewed, signed or
// cancelled, a root change proposed, signed or cancelled) commit in the
// transaction of their audit entry. When the entry cannot be written,
// nothing of the change is in the database and the caller gets an error;
// when it can, the change and its entry are both there.
func TestSignerChangesCommitWithTheirAudit(t *testing.T) {
	testSignerChangesCommitWithTheirAudit(t, newTestServer(t))
}

// TestSignerChangesCommitWithTheirAuditPostgres is
// TestSignerChangesCommitWithTheirAudit on PostgreSQL.
func TestSignerChangesCommitWithTheirAuditPostgres(t *testing.T) {
	testSignerChangesCommitWithTheirAudit(t, newTestServerIn(t, t.TempDir(), true, nil, testenv.Postgres(t)))
}

func testSignerChangesCommitWithTheirAudit(t *testing.T, ts *testServer) {
	ctx := context.Background()
	admin, eng := ts.tokens[access.RoleAdmin], ts.tokens[access.RoleReleaseEngineer]
	// A delegation with metadata (published while the targets key is
	// online), then 2-of-2 targets: every change below waits for
	// signatures, so each is a row in the database.
	line := ts.publishedDelegation(t, 1)
	empty := "empty-line" // a delegation without releases, which may go
	if _, err := ts.cfg.Releases.AddDelegation(ctx, signer.DelegationRequest{Name: empty, Paths: []string{empty + "/*/*"}, Keys: []*metadata.Key{tufPub(t, newSV(t))}, Threshold: 1}, "test"); err != nil {
		t.Fatal(err)
	}
	relName, relVersion := ts.pendingRelease(t, 2)
	pendingLine := ts.pendingDelegation(t, 3)
	relPayload, err := ts.cfg.Releases.ReleasePayload(ctx, relName, relVersion)
	if err != nil {
		t.Fatal(err)
	}
	linePayload, err := ts.cfg.Releases.DelegationPayload(ctx, pendingLine)
	if err != nil {
		t.Fatal(err)
	}
	rootPayload := ts.pendingRoot(t)

	jsonReq := func(method, path string, v any) *http.Request {
		b, _ := json.Marshal(v)
		r := jsonRequest(method, ts.http.URL+path, string(b))
		if v == nil {
			r = jsonRequest(method, ts.http.URL+path, "")
		}
		r.RequestURI = ""
		return r
	}
	pushReq := func(version string) *http.Request {
		body, ct := pushBody(t, signer.PushRequest{Name: "audited", Version: version, Hardware: []string{"pump-a"}, File: "fw.bin"}, []byte("firmware "+version))
		r := httptest.NewRequest(http.MethodPost, ts.http.URL+"/api/v1/releases", body)
		r.Header.Set("Content-Type", ct)
		r.RequestURI = ""
		return r
	}
	type rows struct{ releases, pending, sigs int }
	count := func() rows {
		t.Helper()
		var r rows
		for _, c := range []struct {
			table string
			n     *int
		}{{"releases", &r.releases}, {"pending_metadata", &r.pending}, {"pending_signatures", &r.sigs}} {
			if err := ts.cfg.DB.QueryRow(ctx, `SELECT COUNT(*) FROM `+c.table).Scan(c.n); err != nil {
				t.Fatal(err)
			}
		}
		return r
	}

	before := count()
	ts.breakAuditLog(t, true)
	for _, c := range []struct {
		what  string
		req   *http.Request
		token string
	}{
		{"release push", pushReq("1.0.0"), eng},
		{"release sign", jsonReq(http.MethodPost, "/api/v1/releases/"+relName+"/"+relVersion+"/signatures", upload(t, ts.extraKey, relPayload)), eng},
		{"release cancel", jsonReq(http.MethodDelete, "/api/v1/releases/"+relName+"/"+relVersion, nil), eng},
		{"delegation add", jsonReq(http.MethodPost, "/api/v1/delegations", map[string]any{"name": "line-new", "paths": []string{"line-new/*/*"}, "keys": []any{tufPub(t, newSV(t))}, "threshold": 1}), admin},
		{"delegation update", jsonReq(http.MethodPatch, "/api/v1/delegations/"+empty, map[string]any{"add_keys": []any{tufPub(t, newSV(t))}}), admin},
		{"delegation remove", jsonReq(http.MethodPost, "/api/v1/delegations/"+empty+"/remove", nil), admin},
		{"delegation renew", jsonReq(http.MethodPost, "/api/v1/delegations/"+line+"/renew", nil), eng},
		{"delegation sign", jsonReq(http.MethodPost, "/api/v1/delegations/"+pendingLine+"/signatures", upload(t, ts.extraKey, linePayload)), eng},
		{"delegation cancel", jsonReq(http.MethodDelete, "/api/v1/delegations/"+pendingLine, nil), admin},
		{"root sign", jsonReq(http.MethodPost, "/api/v1/root/signatures", upload(t, ts.rootKey, rootPayload)), admin},
		{"root cancel", jsonReq(http.MethodDelete, "/api/v1/root/pending", nil), admin},
	} {
		if resp, body := ts.do(t, c.req, c.token); resp.StatusCode < 500 {
			t.Errorf("%s with a broken audit log = %d %s, want 5xx", c.what, resp.StatusCode, body)
		}
	}
	if got := count(); got != before {
		t.Errorf("rows (releases, pending payloads, signatures) = %+v after changes whose audit entries failed, want %+v", got, before)
	}
	if rel, err := ts.cfg.Releases.Get(ctx, relName, relVersion); err != nil || rel.State != signer.StatePending {
		t.Errorf("release %s@%s = %+v, %v; want it still pending", relName, relVersion, rel, err)
	}
	ts.breakAuditLog(t, false)
	if err := ts.cfg.Releases.CancelRoot(ctx); err != nil {
		t.Fatal(err)
	}
	ts.breakAuditLog(t, true)
	if resp, body := ts.do(t, jsonReq(http.MethodPost, "/api/v1/root", signer.RootChange{AddKeys: []signer.RootKeyAdd{{Role: signer.RoleRoot, Key: tufPub(t, newSV(t))}}}), admin); resp.StatusCode < 500 {
		t.Errorf("root update with a broken audit log = %d %s, want 5xx", resp.StatusCode, body)
	}
	ts.breakAuditLog(t, false)
	if _, err := ts.cfg.Releases.RootPayload(ctx); err == nil {
		t.Error("a root change whose audit entry failed is pending")
	}

	// With the log working, each change comes with its entry.
	object := "release/" + relName + "@" + relVersion
	if resp, body := ts.do(t, jsonReq(http.MethodPost, "/api/v1/releases/"+relName+"/"+relVersion+"/signatures", upload(t, ts.extraKey, relPayload)), eng); resp.StatusCode != http.StatusOK {
		t.Fatalf("release sign = %d %s", resp.StatusCode, body)
	}
	if rel, err := ts.cfg.Releases.Get(ctx, relName, relVersion); err != nil || rel.State != signer.StatePublished {
		t.Fatalf("signed release = %+v, %v; want published", rel, err)
	}
	for _, action := range []string{"release.sign", "release.publish"} {
		if n := ts.okEntries(t, action, object); n != 1 {
			t.Errorf("%s entries of %s = %d, want 1", action, object, n)
		}
	}
	if resp, body := ts.do(t, pushReq("1.0.0"), eng); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("release push = %d %s, want 202 pending", resp.StatusCode, body)
	}
	if resp, body := ts.do(t, jsonReq(http.MethodDelete, "/api/v1/releases/audited/1.0.0", nil), eng); resp.StatusCode != http.StatusOK {
		t.Fatalf("release cancel = %d %s", resp.StatusCode, body)
	}
	for _, action := range []string{"release.push", "release.cancel"} {
		if n := ts.okEntries(t, action, "release/audited@1.0.0"); n != 1 {
			t.Errorf("%s entries = %d, want 1", action, n)
		}
	}
	if resp, body := ts.do(t, jsonReq(http.MethodPost, "/api/v1/delegations/"+line+"/renew", nil), eng); resp.StatusCode >= 300 {
		t.Fatalf("delegation renew = %d %s", resp.StatusCode, body)
	}
	if resp, body := ts.do(t, jsonReq(http.MethodPost, "/api/v1/delegations/"+empty+"/remove", nil), admin); resp.StatusCode >= 300 {
		t.Fatalf("delegation remove = %d %s", resp.StatusCode, body)
	}
	for _, c := range []struct{ action, object string }{
		{"delegation.renew", "delegation/" + line}, {"delegation.remove", "delegation/" + empty},
	} {
		if n := ts.okEntries(t, c.action, c.object); n != 1 {
			t.Errorf("%s entries of %s = %d, want 1", c.action, c.object, n)
		}
	}
	if _, err := ts.cfg.Releases.DelegationPayload(ctx, empty); err != nil {
		t.Errorf("the removal of %s is not pending: %v", empty, err)
	}
}
