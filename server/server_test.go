package server

import (
	"bytes"
	"context"
	"crypto"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/tufota/tufota/access"
	"github.com/tufota/tufota/audit"
	"github.com/tufota/tufota/rollout"
	"github.com/tufota/tufota/signer"
	"github.com/tufota/tufota/storage"
)

// testServer is a Server on a real file blob store, SQLite state and file
// keys, with one token per role.
type testServer struct {
	*Server
	http     *httptest.Server
	tokens   map[access.Role]string
	deviceID string
	seq      atomic.Int64
	rootKey  signature.SignerVerifier // signs root changes (signing_test.go)
	extraKey signature.SignerVerifier // a targets key the server does not hold, once added
}

func newTestServer(t *testing.T) *testServer {
	t.Helper()
	return newTestServerIn(t, t.TempDir(), true, nil)
}

// newTestServerWith is newTestServer with the blob store passed through
// wrap (when not nil), e.g. to inject faults.
func newTestServerWith(t *testing.T, wrap func(storage.Blobs) storage.Blobs) *testServer {
	t.Helper()
	return newTestServerIn(t, t.TempDir(), true, wrap)
}

// newTestServerIn is newTestServer in dir: fresh makes keys, repository,
// device and tokens there; otherwise it opens what a fresh call made (as a
// restarted server process would) and makes no tokens. wrap, when not nil,
// wraps the blob store. dbURL, when given, names the state database
// (a fresh PostgreSQL database); the default is SQLite in dir.
func newTestServerIn(t *testing.T, dir string, fresh bool, wrap func(storage.Blobs) storage.Blobs, dbURL ...string) *testServer {
	t.Helper()
	ctx := context.Background()
	pass := []byte("test passphrase")
	key := func(name string) signature.SignerVerifier {
		path := filepath.Join(dir, name+".key")
		if !fresh {
			sv, err := signer.Open(ctx, "file:"+path, signer.WithPassphrase(func() ([]byte, error) { return pass, nil }))
			if err != nil {
				t.Fatal(err)
			}
			return sv
		}
		sv, err := signer.GenerateFileKey(path, "ed25519", pass)
		if err != nil {
			t.Fatal(err)
		}
		return sv
	}
	root, targets, snapshot, timestamp := key("root"), key("targets"), key("snapshot"), key("timestamp")
	var blobs storage.Blobs
	blobs, err := storage.NewFile(filepath.Join(dir, "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	if wrap != nil {
		blobs = wrap(blobs)
	}
	url := "sqlite:" + filepath.Join(dir, "state.db")
	if len(dbURL) > 0 {
		url = dbURL[0]
	}
	db, err := storage.OpenDB(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	repo := signer.NewRepository(blobs)
	if fresh {
		if _, err := repo.Init(ctx, signer.RoleKeys{
			Root: []signature.SignerVerifier{root}, RootThreshold: 1,
			Targets: []signature.SignerVerifier{targets}, TargetsThreshold: 1,
			Snapshot: snapshot, Timestamp: timestamp,
		}); err != nil {
			t.Fatal(err)
		}
	}
	signers := signer.Signers{Targets: []signature.Signer{targets}, Snapshot: snapshot, Timestamp: timestamp}
	tokens := access.NewTokens(db, nil)
	ns, err := audit.NewNoteSigner("tufota.test/audit", key("audit").(crypto.Signer))
	if err != nil {
		t.Fatal(err)
	}
	alog, err := audit.New(ctx, db, ns)
	if err != nil {
		t.Fatal(err)
	}
	releases := signer.NewReleases(db, repo, signers)
	rollouts := rollout.NewService(db, ReleaseLookup(releases))
	if err := rollouts.RegisterDevice(ctx, rollout.Device{ID: "dev-1", Hardware: "pump-a", Version: "0.0.1"}, "test"); err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{Blobs: blobs, DB: db, Repo: repo, Releases: releases, Tokens: tokens, Audit: alog, Rollouts: rollouts, MaxUploadBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{Server: s, tokens: map[access.Role]string{}, deviceID: "dev-1", rootKey: root}
	for _, role := range access.Roles {
		if !fresh {
			break
		}
		n := access.NewToken{Name: "test-" + string(role), Role: role}
		switch role {
		case access.RoleDevice:
			n.DeviceID = ts.deviceID
		case access.RoleEnroll:
			n.Scope = `{"hardware":"pump-a","tags":["icu"]}`
		}
		secret, _, err := tokens.Create(ctx, nil, n, "test")
		if err != nil {
			t.Fatal(err)
		}
		ts.tokens[role] = secret
	}
	ts.http = httptest.NewServer(s.Handler())
	t.Cleanup(ts.http.Close)
	return ts
}

func (ts *testServer) do(t *testing.T, req *http.Request, token string) (*http.Response, []byte) {
	t.Helper()
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := ts.http.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, body
}

// pushBody builds a multipart release upload.
func pushBody(t *testing.T, release any, file []byte) (io.Reader, string) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	part, _ := mw.CreateFormField("release")
	_ = json.NewEncoder(part).Encode(release)
	fp, _ := mw.CreateFormFile("file", "fw.bin")
	_, _ = fp.Write(file)
	_ = mw.Close()
	return &buf, mw.FormDataContentType()
}

// validRequest builds a request that the route's handler accepts, so that
// an admitted role gets a 2xx answer.
func (ts *testServer) validRequest(t *testing.T, r Route) *http.Request {
	t.Helper()
	u := ts.http.URL
	n := ts.seq.Add(1)
	var req *http.Request
	if req = ts.signingRequest(t, r, n); req != nil {
		req.RequestURI = ""
		return req
	}
	switch r.Path {
	case "/tuf/:file":
		req = httptest.NewRequest(r.Method, u+"/tuf/1.root.json", nil)
	case "/tuf/targets/*":
		ts.push(t, "fixture", "1.0.0")
		tgt := ts.targetURL(t, "fixture/1.0.0/fw.bin")
		req = httptest.NewRequest(r.Method, u+tgt, nil)
	case "/api/v1/releases":
		if r.Method == http.MethodPost {
			body, ct := pushBody(t, signer.PushRequest{Name: "matrix", Version: fmt.Sprintf("1.0.%d", n), Hardware: []string{"pump-a"}, File: "fw.bin"}, []byte("firmware"))
			req = httptest.NewRequest(r.Method, u+r.Path, body)
			req.Header.Set("Content-Type", ct)
		} else {
			req = httptest.NewRequest(r.Method, u+r.Path, nil)
		}
	case "/api/v1/releases/:name/:version":
		ts.push(t, "fixture", "1.0.0")
		req = httptest.NewRequest(r.Method, u+"/api/v1/releases/fixture/1.0.0", nil)
	case "/api/v1/delegations":
		if r.Method == http.MethodPost {
			req = jsonRequest(r.Method, u+r.Path, fmt.Sprintf(`{"name":"line-%d","paths":["line-%d/*/*"],"keys":[%s],"threshold":1}`, n, n, lineKeyJSON(t)))
		} else {
			req = httptest.NewRequest(r.Method, u+r.Path, nil)
		}
	case "/api/v1/delegations/:name":
		name := fmt.Sprintf("update-%d", n)
		if _, err := ts.cfg.Releases.AddDelegation(context.Background(), signer.DelegationRequest{Name: name, Paths: []string{name + "/*/*"}, Keys: []*metadata.Key{tufPub(t, newSV(t))}, Threshold: 1}, "test"); err != nil {
			t.Fatal(err)
		}
		req = jsonRequest(r.Method, u+"/api/v1/delegations/"+name, fmt.Sprintf(`{"add_keys":[%s]}`, lineKeyJSON(t)))
	case "/api/v1/delegations/:name/remove":
		name := fmt.Sprintf("remove-%d", n)
		if _, err := ts.cfg.Releases.AddDelegation(context.Background(), signer.DelegationRequest{Name: name, Paths: []string{name + "/*/*"}, Keys: []*metadata.Key{tufPub(t, newSV(t))}, Threshold: 1}, "test"); err != nil {
			t.Fatal(err)
		}
		req = jsonRequest(r.Method, u+"/api/v1/delegations/"+name+"/remove", "")
	case "/api/v1/delegations/:name/renew":
		req = jsonRequest(r.Method, u+"/api/v1/delegations/"+ts.publishedDelegation(t, n)+"/renew", "")
	case "/api/v1/tokens":
		if r.Method == http.MethodPost {
			req = httptest.NewRequest(r.Method, u+r.Path, strings.NewReader(fmt.Sprintf(`{"name":"t%d","role":"admin"}`, n))) // owned by the caller's user, an admin
			req.Header.Set("Content-Type", "application/json")
		} else {
			req = httptest.NewRequest(r.Method, u+r.Path, nil)
		}
	case "/api/v1/tokens/:id":
		_, tok, err := ts.cfg.Tokens.Create(context.Background(), nil, access.NewToken{Name: fmt.Sprintf("victim%d", n), Role: access.RoleAuditor}, "test")
		if err != nil {
			t.Fatal(err)
		}
		req = httptest.NewRequest(r.Method, u+"/api/v1/tokens/"+tok.ID, nil)
	case "/api/v1/users":
		if r.Method == http.MethodPost {
			req = jsonRequest(r.Method, u+r.Path, fmt.Sprintf(`{"name":"user-%d","roles":["operator"]}`, n))
		} else {
			req = httptest.NewRequest(r.Method, u+r.Path, nil)
		}
	case "/api/v1/users/:id/disable":
		usr, err := ts.cfg.Tokens.CreateUser(context.Background(), nil, access.NewUser{Name: fmt.Sprintf("leaver-%d", n), Roles: []access.Role{access.RoleOperator}}, "test")
		if err != nil {
			t.Fatal(err)
		}
		req = jsonRequest(r.Method, u+"/api/v1/users/"+usr.ID+"/disable", "")
	case "/api/v1/audit", "/api/v1/audit/export", "/api/v1/audit/verify", "/api/v1/audit/checkpoint":
		req = httptest.NewRequest(r.Method, u+r.Path, nil)
	case "/api/v1/device/update":
		req = httptest.NewRequest(r.Method, u+r.Path+"?device_id="+ts.deviceID+"&hardware=pump-a&version=0.0.1", nil)
	case "/api/v1/device/status":
		ts.assignOnce(t)
		req = jsonRequest(r.Method, u+r.Path, `{"device_id":"dev-1","target":"fixture/1.0.0/fw.bin","version":"1.0.0","state":"downloading"}`)
	case "/api/v1/devices":
		if r.Method == http.MethodPost {
			req = jsonRequest(r.Method, u+r.Path, fmt.Sprintf(`{"id":"reg-%d","hardware":"pump-a","attrs":{"site":"north"}}`, n))
		} else {
			req = httptest.NewRequest(r.Method, u+r.Path, nil)
		}
	case "/api/v1/devices/:id":
		req = httptest.NewRequest(r.Method, u+"/api/v1/devices/dev-1", nil)
	case "/api/v1/devices/:id/assign":
		ts.push(t, "fixture", "1.0.0")
		id := ts.freshDevice(t, n)
		req = jsonRequest(r.Method, u+"/api/v1/devices/"+id+"/assign", `{"release":"fixture@1.0.0","reason":"matrix"}`)
	case "/api/v1/enroll-tokens":
		req = jsonRequest(r.Method, u+r.Path, `{"hardware":"pump-a","attrs":{"site":"south"}}`)
	case "/api/v1/device/enroll":
		req = jsonRequest(r.Method, u+r.Path, fmt.Sprintf(`{"device_id":"enrolled-%d","version":"1.0.0"}`, n))
	case "/api/v1/cohorts":
		if r.Method == http.MethodPost {
			req = jsonRequest(r.Method, u+r.Path, fmt.Sprintf(`{"name":"cohort-%d","selector":"hardware=pump-a"}`, n))
		} else {
			req = httptest.NewRequest(r.Method, u+r.Path, nil)
		}
	case "/api/v1/cohorts/:name":
		ts.cohortOnce(t)
		req = httptest.NewRequest(r.Method, u+"/api/v1/cohorts/fixture", nil)
	case "/api/v1/rollouts":
		if r.Method == http.MethodPost {
			ts.push(t, "fixture", "1.0.0")
			req = jsonRequest(r.Method, u+r.Path, fmt.Sprintf(`{"release":"fixture@1.0.0","cohort":"id=%s","waves":"100%%"}`, ts.freshDevice(t, n)))
		} else {
			req = httptest.NewRequest(r.Method, u+r.Path, nil)
		}
	case "/api/v1/pins":
		req = httptest.NewRequest(r.Method, u+r.Path, nil)
	case "/api/v1/pins/:kind/:name":
		id := ts.freshDevice(t, n)
		if r.Method == http.MethodDelete {
			if _, err := ts.cfg.Rollouts.SetPinWith(context.Background(), rollout.Pin{Kind: rollout.PinDevice, Name: id, Version: "1.*", Reason: "matrix"}, "test", nil); err != nil {
				t.Fatal(err)
			}
			req = httptest.NewRequest(r.Method, u+"/api/v1/pins/device/"+id, nil)
			break
		}
		req = jsonRequest(r.Method, u+"/api/v1/pins/device/"+id, `{"version":"1.*","reason":"matrix"}`)
	case "/api/v1/rollouts/plan":
		if r.Method == http.MethodPost {
			ts.push(t, "fixture", "1.0.0")
			req = jsonRequest(r.Method, u+r.Path, fmt.Sprintf(`{"release":"fixture@1.0.0","cohort":"id=%s","waves":"100%%"}`, ts.freshDevice(t, n)))
		} else {
			req = httptest.NewRequest(r.Method, u+r.Path+"?rollout="+ts.newRollout(t, n), nil)
		}
	case "/api/v1/rollouts/:id", "/api/v1/rollouts/:id/history":
		id := ts.newRollout(t, n)
		req = httptest.NewRequest(r.Method, u+strings.Replace(r.Path, ":id", id, 1), nil)
	case "/api/v1/rollouts/:id/:action":
		req = jsonRequest(r.Method, u+"/api/v1/rollouts/"+ts.newRollout(t, n)+"/abort", `{"reason":"matrix"}`)
	case "/api/v1/vulnerabilities/import":
		req = ts.vulnImportRequest(t, r)
	case "/debug/pprof/*":
		req = httptest.NewRequest(r.Method, u+"/debug/pprof/heap", nil)
	case "/api/v1/fleet/report", "/api/v1/status", "/metrics":
		req = httptest.NewRequest(r.Method, u+r.Path, nil)
	default:
		req = httptest.NewRequest(r.Method, u+r.Path, nil)
	}
	req.RequestURI = ""
	return req
}

func jsonRequest(method, url, body string) *http.Request {
	req := httptest.NewRequest(method, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	return req
}

// freshDevice registers a new device and returns its ID.
func (ts *testServer) freshDevice(t *testing.T, n int64) string {
	t.Helper()
	id := fmt.Sprintf("fresh-%d", n)
	if err := ts.cfg.Rollouts.RegisterDevice(context.Background(), rollout.Device{ID: id, Hardware: "pump-a", Version: "0.0.1"}, "test"); err != nil {
		t.Fatal(err)
	}
	return id
}

// newRollout creates a draft rollout of the fixture release to one fresh
// device and returns its ID.
func (ts *testServer) newRollout(t *testing.T, n int64) string {
	t.Helper()
	ts.push(t, "fixture", "1.0.0")
	r, err := ts.cfg.Rollouts.CreateRollout(context.Background(), rollout.Spec{Release: "fixture@1.0.0", Cohort: "id=" + ts.freshDevice(t, n), Waves: "100%"}, "test")
	if err != nil {
		t.Fatal(err)
	}
	return r.ID
}

func (ts *testServer) cohortOnce(t *testing.T) {
	t.Helper()
	if _, err := ts.cfg.Rollouts.Cohort(context.Background(), "fixture"); err == nil {
		return
	}
	if _, err := ts.cfg.Rollouts.CreateCohort(context.Background(), "fixture", "hardware=pump-a", "test"); err != nil {
		t.Fatal(err)
	}
}

// assignOnce assigns the fixture release to dev-1 so that it may report on it.
func (ts *testServer) assignOnce(t *testing.T) {
	t.Helper()
	ts.push(t, "fixture", "1.0.0")
	if d, _ := ts.cfg.Rollouts.Device(context.Background(), "dev-1"); d.TargetRelease == "fixture@1.0.0" {
		return
	}
	if err := ts.cfg.Rollouts.AssignDevice(context.Background(), "dev-1", "fixture", "1.0.0", "test"); err != nil {
		t.Fatal(err)
	}
}

// push publishes a release once.
func (ts *testServer) push(t *testing.T, name, version string) {
	t.Helper()
	if _, err := ts.cfg.Releases.Get(context.Background(), name, version); err == nil {
		return
	}
	_, err := ts.cfg.Releases.Push(context.Background(), signer.PushRequest{Name: name, Version: version, Hardware: []string{"pump-a"}, File: "fw.bin"}, strings.NewReader("firmware "+name+version), 1<<20, "test")
	if err != nil {
		t.Fatal(err)
	}
}

func (ts *testServer) targetURL(t *testing.T, path string) string {
	t.Helper()
	rel, err := ts.cfg.Releases.Get(context.Background(), strings.Split(path, "/")[0], strings.Split(path, "/")[1])
	if err != nil {
		t.Fatal(err)
	}
	dir, base := filepath.Split(rel.TargetPath)
	return "/tuf/targets/" + dir + rel.SHA256 + "." + base
}

// TestRouteRoleMatrix walks every route with no token, a bad token and a
// token of every role: 401 without valid credentials, 403 for roles the
// route does not admit, 2xx for those it does.
func TestRouteRoleMatrix(t *testing.T) {
	ts := newTestServer(t)
	for _, r := range ts.Routes() {
		t.Run(r.Method+" "+r.Path, func(t *testing.T) {
			if r.Public {
				resp, _ := ts.do(t, ts.validRequest(t, r), "")
				if resp.StatusCode/100 != 2 {
					t.Fatalf("public route: status = %d, want 2xx", resp.StatusCode)
				}
				return
			}
			for _, tok := range []string{"", "tft_0000000000000000_" + strings.Repeat("A", 43)} {
				resp, body := ts.do(t, ts.validRequest(t, r), tok)
				if resp.StatusCode != http.StatusUnauthorized {
					t.Errorf("token %q: status = %d, want 401 (%s)", tok, resp.StatusCode, body)
				}
			}
			for _, role := range access.Roles {
				resp, body := ts.do(t, ts.validRequest(t, r), ts.tokens[role])
				admitted := false
				for _, a := range r.Roles {
					admitted = admitted || a == role
				}
				switch {
				case admitted && resp.StatusCode/100 != 2:
					t.Errorf("role %s: status = %d, want 2xx (%s)", role, resp.StatusCode, body)
				case !admitted && resp.StatusCode != http.StatusForbidden:
					t.Errorf("role %s: status = %d, want 403 (%s)", role, resp.StatusCode, body)
				}
			}
		})
	}
}

// lineKeyJSON returns a new public key as TUF key JSON, for delegations.
func lineKeyJSON(t *testing.T) string {
	t.Helper()
	b, err := json.Marshal(tufPub(t, newSV(t)))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// publishedDelegation adds a delegation (while the targets role is
// online) and publishes one release under it, so that the role has
// metadata to renew; it returns the role's name.
func (ts *testServer) publishedDelegation(t *testing.T, n int64) string {
	t.Helper()
	ctx := context.Background()
	name := fmt.Sprintf("renew-%d", n)
	key := newSV(t)
	if _, err := ts.cfg.Releases.AddDelegation(ctx, signer.DelegationRequest{Name: name, Paths: []string{name + "/*/*"}, Keys: []*metadata.Key{tufPub(t, key)}, Threshold: 1}, "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.cfg.Releases.Push(ctx, signer.PushRequest{Name: name, Version: "1.0.0", Hardware: []string{"pump-a"}, File: "fw.bin"}, strings.NewReader("fw"), 1<<20, "test"); err != nil {
		t.Fatal(err)
	}
	p, err := ts.cfg.Releases.ReleasePayload(ctx, name, "1.0.0")
	if err != nil {
		t.Fatal(err)
	}
	if st, err := ts.cfg.Releases.SignRelease(ctx, name, "1.0.0", upload(t, key, p), "test"); err != nil || !st.Published {
		t.Fatalf("publish under %s: %+v %v", name, st, err)
	}
	return name
}
