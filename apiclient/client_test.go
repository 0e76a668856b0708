package apiclient_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/access"
	"github.com/tufota/tufota/api"
	"github.com/tufota/tufota/apiclient"
	"github.com/tufota/tufota/audit"
	"github.com/tufota/tufota/rollout"
	"github.com/tufota/tufota/server"
	"github.com/tufota/tufota/signer"
	"github.com/tufota/tufota/storage"
)

// fixture is a real server (file blobs, SQLite, file keys) over TLS on
// loopback, and one client per role.
type fixture struct {
	base    string
	hc      *http.Client
	srv     *server.Server
	clients map[access.Role]*apiclient.Client
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	pass := []byte("test passphrase")
	key := func(name string) signature.SignerVerifier {
		sv, err := signer.GenerateFileKey(filepath.Join(dir, name+".key"), "ed25519", pass)
		if err != nil {
			t.Fatal(err)
		}
		return sv
	}
	root, targets, snapshot, timestamp := key("root"), key("targets"), key("snapshot"), key("timestamp")
	blobs, err := storage.NewFile(filepath.Join(dir, "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	db, err := storage.OpenDB(ctx, "sqlite:"+filepath.Join(dir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	repo := signer.NewRepository(blobs)
	if _, err := repo.Init(ctx, signer.RoleKeys{
		Root: []signature.SignerVerifier{root}, RootThreshold: 1,
		Targets: []signature.SignerVerifier{targets}, TargetsThreshold: 1,
		Snapshot: snapshot, Timestamp: timestamp,
	}); err != nil {
		t.Fatal(err)
	}
	tokens := access.NewTokens(db, nil)
	ns, err := audit.NewNoteSigner("tufota.test/audit", key("audit").(crypto.Signer))
	if err != nil {
		t.Fatal(err)
	}
	alog, err := audit.New(ctx, db, ns)
	if err != nil {
		t.Fatal(err)
	}
	releases := signer.NewReleases(db, repo, signer.Signers{Targets: []signature.Signer{targets}, Snapshot: snapshot, Timestamp: timestamp})
	rollouts := rollout.NewService(db, server.ReleaseLookup(releases))
	if err := rollouts.RegisterDevice(ctx, rollout.Device{ID: "dev-1", Hardware: "pump-a", Version: "0.0.1"}, "test"); err != nil {
		t.Fatal(err)
	}
	s, err := server.New(server.Config{Blobs: blobs, DB: db, Repo: repo, Releases: releases, Tokens: tokens, Audit: alog, Rollouts: rollouts, MaxUploadBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewTLSServer(s.Handler())
	t.Cleanup(hs.Close)
	f := &fixture{base: hs.URL, hc: hs.Client(), srv: s, clients: map[access.Role]*apiclient.Client{}}
	for _, role := range access.Roles {
		n := access.NewToken{Name: "test-" + string(role), Role: role}
		switch role {
		case access.RoleDevice:
			n.DeviceID = "dev-1"
		case access.RoleEnroll:
			n.Scope = `{"hardware":"pump-a","tags":["icu"]}`
		}
		secret, _, err := tokens.Create(ctx, nil, n, "test")
		if err != nil {
			t.Fatal(err)
		}
		f.clients[role] = apiclient.New(hs.URL, secret, apiclient.WithHTTPClient(hs.Client()))
	}
	return f
}

// tufKey returns a new public key as package api writes it.
func tufKey(t *testing.T) *api.Key {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := metadata.KeyFromPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(k)
	var out api.Key
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return &out
}

// step is one call of the client against the server. Steps run in order
// and share state through the test's variables. A step either checks the
// decoded answer (check) or wants an error with a code (wantCode).
type step struct {
	route    string // METHOD PATH as in server.Routes
	role     access.Role
	call     func(ctx context.Context, c *apiclient.Client) (any, error)
	check    func(got any) string // "" when the answer is right
	wantCode tufota.Code
}

func TestClientCallsEveryRoute(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	var (
		tokenID, rolloutID, userID string
		delKey                     = tufKey(t)
		dev2                       *apiclient.Client
	)
	steps := []step{
		{route: "GET /api/v1/whoami", role: access.RoleOperator,
			call: func(ctx context.Context, c *apiclient.Client) (any, error) { return c.Whoami(ctx) },
			check: func(got any) string {
				return want(got.(api.Principal).Role == "operator", "role = %q", got.(api.Principal).Role)
			}},
		{route: "GET /api/v1/openapi.json", role: access.RoleAuditor,
			call: func(ctx context.Context, c *apiclient.Client) (any, error) { return c.OpenAPI(ctx) },
			check: func(got any) string {
				var doc struct {
					OpenAPI string `json:"openapi"`
				}
				err := json.Unmarshal(got.(json.RawMessage), &doc)
				return want(err == nil && strings.HasPrefix(doc.OpenAPI, "3.1"), "openapi = %q, %v", doc.OpenAPI, err)
			}},
		{route: "POST /api/v1/vulnerabilities/import", role: access.RoleReleaseEngineer,
			call: func(ctx context.Context, c *apiclient.Client) (any, error) {
				f, err := os.Open(filepath.Join("..", "vuln", "testdata", "osv", "GO-2023-2402.json"))
				if err != nil {
					return nil, err
				}
				defer f.Close()
				return c.ImportVulnerabilities(ctx, f, "application/json")
			},
			check: func(got any) string {
				r := got.(api.VulnImportResult)
				return want(r.Files == 1 && r.Advisories == 1 && len(r.NewlyAffected) == 0, "import = %+v", r)
			}},
		{route: "POST /api/v1/vulnerabilities/import", role: access.RoleReleaseEngineer,
			call: func(ctx context.Context, c *apiclient.Client) (any, error) {
				return c.ImportVulnerabilities(ctx, strings.NewReader(`{"id": 7}`), "application/json")
			},
			wantCode: tufota.EInvalid},
		{route: "POST /api/v1/vulnerabilities/import", role: access.RoleOperator,
			call: func(ctx context.Context, c *apiclient.Client) (any, error) {
				return c.ImportVulnerabilities(ctx, strings.NewReader(`{}`), "application/json")
			},
			wantCode: tufota.EForbidden},
		{route: "GET /api/v1/vulnerabilities", role: access.RoleAuditor,
			call: func(ctx context.Context, c *apiclient.Client) (any, error) {
				return c.Vulnerabilities(ctx, "CVE-2023-48795", "")
			},
			check: func(got any) string {
				return want(len(got.([]api.VulnReport)) == 0, "report = %+v (no release has an SBOM)", got)
			}},
		{route: "POST /api/v1/releases", role: access.RoleReleaseEngineer,
			call: func(ctx context.Context, c *apiclient.Client) (any, error) {
				return c.PushRelease(ctx, apiclient.Push{Release: api.PushRequest{Name: "fw", Version: "1.0.0", Hardware: []string{"pump-a"}, File: "fw.bin"}, File: strings.NewReader("firmware bytes")})
			},
			check: func(got any) string {
				r := got.(api.Release)
				return want(r.State == "published" && r.Length == int64(len("firmware bytes")) && r.TargetPath != "", "release = %+v", r)
			}},
		{route: "POST /api/v1/releases", role: access.RoleReleaseEngineer,
			call: func(ctx context.Context, c *apiclient.Client) (any, error) {
				return c.PushRelease(ctx, apiclient.Push{Release: api.PushRequest{Name: "fw", Version: "1.0.0", Hardware: []string{"pump-a"}, File: "fw.bin"}, File: strings.NewReader("again")})
			},
			wantCode: tufota.EConflict},
		{route: "POST /api/v1/releases", role: access.RoleOperator,
			call: func(ctx context.Context, c *apiclient.Client) (any, error) {
				return c.PushRelease(ctx, apiclient.Push{Release: api.PushRequest{Name: "fw", Version: "2.0.0", Hardware: []string{"pump-a"}, File: "fw.bin"}, File: strings.NewReader("x")})
			},
			wantCode: tufota.EForbidden},
		{route: "GET /api/v1/releases", role: access.RoleAuditor,
			call:  func(ctx context.Context, c *apiclient.Client) (any, error) { return c.ListReleases(ctx) },
			check: func(got any) string { return want(len(got.([]api.Release)) == 1, "releases = %+v", got) }},
		{route: "GET /api/v1/releases/:name/:version", role: access.RoleAuditor,
			call:  func(ctx context.Context, c *apiclient.Client) (any, error) { return c.Release(ctx, "fw", "1.0.0") },
			check: func(got any) string { return want(got.(api.Release).Version == "1.0.0", "release = %+v", got) }},
		{route: "GET /api/v1/releases/:name/:version", role: access.RoleAuditor,
			call:     func(ctx context.Context, c *apiclient.Client) (any, error) { return c.Release(ctx, "fw", "9.9.9") },
			wantCode: tufota.ENotFound},
		{route: "GET /api/v1/releases/:name/:version/signing", role: access.RoleReleaseEngineer,
			call: func(ctx context.Context, c *apiclient.Client) (any, error) {
				return c.ReleaseSigning(ctx, "fw", "1.0.0")
			},
			wantCode: tufota.EConflict},
		{route: "POST /api/v1/releases/:name/:version/signatures", role: access.RoleReleaseEngineer,
			call: func(ctx context.Context, c *apiclient.Client) (any, error) {
				return c.SignRelease(ctx, "fw", "1.0.0", api.SignatureUpload{KeyID: "00", Sig: "00", PayloadSHA256: "00"})
			},
			wantCode: tufota.EConflict},
		{route: "DELETE /api/v1/releases/:name/:version", role: access.RoleReleaseEngineer,
			call: func(ctx context.Context, c *apiclient.Client) (any, error) {
				return c.CancelRelease(ctx, "fw", "1.0.0")
			},
			wantCode: tufota.EConflict},
		{route: "POST /api/v1/delegations", role: access.RoleAdmin,
			call: func(ctx context.Context, c *apiclient.Client) (any, error) {
				return c.AddDelegation(ctx, api.DelegationRequest{Name: "line", Paths: []string{"line/*/*"}, Keys: []*api.Key{delKey}, Threshold: 1})
			},
			check: func(got any) string {
				d := got.(api.Delegation)
				return want(d.Name == "line" && len(d.KeyIDs) == 1 && d.Threshold == 1, "delegation = %+v", d)
			}},
		{route: "GET /api/v1/delegations", role: access.RoleAuditor,
			call:  func(ctx context.Context, c *apiclient.Client) (any, error) { return c.ListDelegations(ctx) },
			check: func(got any) string { return want(len(got.([]api.Delegation)) == 1, "delegations = %+v", got) }},
		{route: "PATCH /api/v1/delegations/:name", role: access.RoleAdmin,
			call: func(ctx context.Context, c *apiclient.Client) (any, error) {
				return c.UpdateDelegation(ctx, "line", api.DelegationChange{AddKeys: []*api.Key{tufKey(t)}})
			},
			check: func(got any) string { return want(len(got.(api.Delegation).KeyIDs) == 2, "delegation = %+v", got) }},
		{route: "POST /api/v1/delegations/:name/renew", role: access.RoleReleaseEngineer,
			call:     func(ctx context.Context, c *apiclient.Client) (any, error) { return c.RenewDelegation(ctx, "nosuch") },
			wantCode: tufota.ENotFound},
		{route: "GET /api/v1/delegations/:name/signing", role: access.RoleReleaseEngineer,
			call:     func(ctx context.Context, c *apiclient.Client) (any, error) { return c.DelegationSigning(ctx, "line") },
			wantCode: tufota.EConflict},
		{route: "POST /api/v1/delegations/:name/signatures", role: access.RoleReleaseEngineer,
			call: func(ctx context.Context, c *apiclient.Client) (any, error) {
				return c.SignDelegation(ctx, "line", api.SignatureUpload{KeyID: "00", Sig: "00", PayloadSHA256: "00"})
			},
			wantCode: tufota.EConflict},
		{route: "DELETE /api/v1/delegations/:name", role: access.RoleAdmin,
			call: func(ctx context.Context, c *apiclient.Client) (any, error) {
				return nil, c.CancelDelegation(ctx, "line")
			},
			wantCode: tufota.EConflict},
		{route: "POST /api/v1/delegations/:name/remove", role: access.RoleAdmin,
			call:  func(ctx context.Context, c *apiclient.Client) (any, error) { return c.RemoveDelegation(ctx, "line") },
			check: func(got any) string { return want(got.(api.Delegation).Name == "line", "delegation = %+v", got) }},
		{route: "POST /api/v1/users", role: access.RoleAdmin,
			call: func(ctx context.Context, c *apiclient.Client) (any, error) {
				return c.CreateUser(ctx, api.CreateUserRequest{Name: "ci-bot", Roles: []string{"auditor"}})
			},
			check: func(got any) string {
				u := got.(api.User)
				userID = u.ID
				return want(u.ID != "" && u.Name == "ci-bot" && reflect.DeepEqual(u.Roles, []string{"auditor"}) && !u.Disabled && u.CreatedBy != "", "user = %+v", u)
			}},
		{route: "POST /api/v1/users", role: access.RoleAdmin,
			call: func(ctx context.Context, c *apiclient.Client) (any, error) {
				return c.CreateUser(ctx, api.CreateUserRequest{Name: "ci-bot-2", Roles: []string{"emperor"}})
			},
			wantCode: tufota.EInvalid},
		{route: "POST /api/v1/users", role: access.RoleOperator,
			call: func(ctx context.Context, c *apiclient.Client) (any, error) {
				return c.CreateUser(ctx, api.CreateUserRequest{Name: "ci-bot-3", Roles: []string{"operator"}})
			},
			wantCode: tufota.EForbidden},
		{route: "GET /api/v1/users", role: access.RoleAuditor,
			call: func(ctx context.Context, c *apiclient.Client) (any, error) { return c.ListUsers(ctx) },
			check: func(got any) string {
				for _, u := range got.([]api.User) {
					if u.Name == "ci-bot" {
						return want(u.ID == userID && reflect.DeepEqual(u.Roles, []string{"auditor"}), "user = %+v", u)
					}
				}
				return fmtS("users = %+v: no ci-bot", got)
			}},
		{route: "GET /api/v1/users", role: access.RoleOperator,
			call:     func(ctx context.Context, c *apiclient.Client) (any, error) { return c.ListUsers(ctx) },
			wantCode: tufota.EForbidden},
		{route: "POST /api/v1/tokens", role: access.RoleAdmin,
			call: func(ctx context.Context, c *apiclient.Client) (any, error) {
				// The admin's own user lacks the role auditor: refused.
				return c.CreateToken(ctx, api.CreateTokenRequest{Name: "ci", Role: "auditor"})
			},
			wantCode: tufota.EForbidden},
		{route: "POST /api/v1/tokens", role: access.RoleAdmin,
			call: func(ctx context.Context, c *apiclient.Client) (any, error) {
				return c.CreateToken(ctx, api.CreateTokenRequest{Name: "ci", Role: "auditor", User: userID})
			},
			check: func(got any) string {
				r := got.(api.CreateTokenResponse)
				tokenID = r.Detail.ID
				return want(strings.HasPrefix(r.Token, "tft_") && r.Detail.Role == "auditor" && r.Detail.OwnerID == userID && r.Detail.Owner == "ci-bot", "token = %+v", r.Detail)
			}},
		{route: "POST /api/v1/tokens", role: access.RoleAdmin,
			call: func(ctx context.Context, c *apiclient.Client) (any, error) {
				return c.CreateToken(ctx, api.CreateTokenRequest{Name: "ci-2", Role: "auditor", User: "ci-bot"})
			},
			check: func(got any) string {
				r := got.(api.CreateTokenResponse)
				return want(r.Detail.OwnerID == userID && r.Detail.Owner == "ci-bot", "token = %+v", r.Detail)
			}},
		{route: "POST /api/v1/tokens", role: access.RoleAdmin,
			call: func(ctx context.Context, c *apiclient.Client) (any, error) {
				return c.CreateToken(ctx, api.CreateTokenRequest{Name: "ci", Role: "emperor"})
			},
			wantCode: tufota.EInvalid},
		{route: "GET /api/v1/tokens", role: access.RoleAuditor,
			call: func(ctx context.Context, c *apiclient.Client) (any, error) { return c.ListTokens(ctx) },
			check: func(got any) string {
				return want(len(got.([]api.Token)) == len(access.Roles)+2, "%d tokens", len(got.([]api.Token)))
			}},
		{route: "DELETE /api/v1/tokens/:id", role: access.RoleAdmin,
			call:  func(ctx context.Context, c *apiclient.Client) (any, error) { return c.RevokeToken(ctx, tokenID) },
			check: func(got any) string { return want(got.(api.Token).RevokedAt != nil, "token = %+v", got) }},
		{route: "POST /api/v1/users/:id/disable", role: access.RoleOperator,
			call:     func(ctx context.Context, c *apiclient.Client) (any, error) { return c.DisableUser(ctx, userID) },
			wantCode: tufota.EForbidden},
		{route: "POST /api/v1/users/:id/disable", role: access.RoleAdmin,
			call: func(ctx context.Context, c *apiclient.Client) (any, error) { return c.DisableUser(ctx, userID) },
			check: func(got any) string {
				r := got.(api.DisableUserResponse)
				// ci was revoked above: disabling revokes ci-2 only.
				return want(r.User.ID == userID && r.User.Disabled && r.User.DisabledAt != nil && r.RevokedTokens == 1, "disabled = %+v", r)
			}},
		{route: "POST /api/v1/users/:id/disable", role: access.RoleAdmin,
			call:     func(ctx context.Context, c *apiclient.Client) (any, error) { return c.DisableUser(ctx, userID) },
			wantCode: tufota.EConflict},
		{route: "POST /api/v1/users/:id/disable", role: access.RoleAdmin,
			call:     func(ctx context.Context, c *apiclient.Client) (any, error) { return c.DisableUser(ctx, "nosuch") },
			wantCode: tufota.ENotFound},
		{route: "POST /api/v1/devices", role: access.RoleOperator,
			call: func(ctx context.Context, c *apiclient.Client) (any, error) {
				return c.RegisterDevice(ctx, api.RegisterDeviceRequest{Device: api.Device{ID: "dev-2", Hardware: "pump-a", Version: "0.0.1", Tags: []string{"icu"}}})
			},
			check: func(got any) string {
				r := got.(api.DeviceTokenResponse)
				dev2 = apiclient.New(f.base, r.Token, apiclient.WithHTTPClient(f.hc))
				return want(r.Device.ID == "dev-2" && r.Token != "", "device = %+v", r.Device)
			}},
		{route: "POST /api/v1/devices", role: access.RoleOperator,
			call: func(ctx context.Context, c *apiclient.Client) (any, error) {
				return c.RegisterDevice(ctx, api.RegisterDeviceRequest{Device: api.Device{ID: "dev 4", Hardware: "pump-a"}})
			},
			wantCode: tufota.EInvalid},
		{route: "GET /api/v1/devices", role: access.RoleAuditor,
			call:  func(ctx context.Context, c *apiclient.Client) (any, error) { return c.ListDevices(ctx) },
			check: func(got any) string { return want(len(got.([]api.Device)) == 2, "devices = %+v", got) }},
		{route: "GET /api/v1/devices/:id", role: access.RoleAuditor,
			call: func(ctx context.Context, c *apiclient.Client) (any, error) { return c.Device(ctx, "dev-2") },
			check: func(got any) string {
				return want(reflect.DeepEqual(got.(api.Device).Tags, []string{"icu"}), "device = %+v", got)
			}},
		{route: "POST /api/v1/devices/:id/assign", role: access.RoleOperator,
			call: func(ctx context.Context, c *apiclient.Client) (any, error) {
				return c.AssignDevice(ctx, "dev-2", api.AssignRequest{Release: "fw@1.0.0", Reason: "test"})
			},
			check: func(got any) string { return want(got.(api.Device).TargetRelease == "fw@1.0.0", "device = %+v", got) }},
		{route: "POST /api/v1/enroll-tokens", role: access.RoleOperator,
			call: func(ctx context.Context, c *apiclient.Client) (any, error) {
				return c.CreateEnrollToken(ctx, api.EnrollTokenRequest{EnrollScope: api.EnrollScope{Hardware: "pump-a"}, Expires: "1h"})
			},
			check: func(got any) string {
				r := got.(api.EnrollTokenResponse)
				return want(r.EnrollToken != "" && r.Detail.Role == "enroll", "enroll token = %+v", r.Detail)
			}},
		{route: "POST /api/v1/device/enroll", role: access.RoleEnroll,
			call: func(ctx context.Context, c *apiclient.Client) (any, error) {
				return c.Enroll(ctx, api.EnrollRequest{DeviceID: "dev-3", Version: "0.0.1"})
			},
			check: func(got any) string {
				r := got.(api.DeviceTokenResponse)
				return want(r.Device.ID == "dev-3" && r.Device.Hardware == "pump-a" && r.Token != "", "enrolled = %+v", r.Device)
			}},
		{route: "GET /api/v1/fleet/report", role: access.RoleAuditor,
			call:  func(ctx context.Context, c *apiclient.Client) (any, error) { return c.FleetReport(ctx) },
			check: func(got any) string { return want(len(got.([]api.FleetRow)) == 3, "fleet = %+v", got) }},
		{route: "GET /api/v1/status", role: access.RoleAuditor,
			call:  func(ctx context.Context, c *apiclient.Client) (any, error) { return c.Status(ctx) },
			check: func(got any) string { return want(len(got.(api.Status).Roles) == 4, "status = %+v", got) }},
		{route: "POST /api/v1/cohorts", role: access.RoleOperator,
			call: func(ctx context.Context, c *apiclient.Client) (any, error) {
				return c.CreateCohort(ctx, api.CohortRequest{Name: "pumps", Selector: "hardware=pump-a"})
			},
			check: func(got any) string { return want(got.(api.Cohort).Devices == 3, "cohort = %+v", got) }},
		{route: "GET /api/v1/cohorts", role: access.RoleAuditor,
			call:  func(ctx context.Context, c *apiclient.Client) (any, error) { return c.ListCohorts(ctx) },
			check: func(got any) string { return want(len(got.([]api.Cohort)) == 1, "cohorts = %+v", got) }},
		{route: "GET /api/v1/cohorts/:name", role: access.RoleAuditor,
			call:     func(ctx context.Context, c *apiclient.Client) (any, error) { return c.Cohort(ctx, "nosuch") },
			wantCode: tufota.ENotFound},
		{route: "PUT /api/v1/pins/:kind/:name", role: access.RoleOperator,
			call: func(ctx context.Context, c *apiclient.Client) (any, error) {
				return c.SetPin(ctx, "cohort", "pumps", api.PinRequest{Version: "0.0.*", Reason: "validated by site IT"})
			},
			check: func(got any) string {
				p := got.(api.Pin)
				return want(p.Kind == "cohort" && p.Name == "pumps" && p.Version == "0.0.*" && p.Reason == "validated by site IT" && p.Selector == "hardware=pump-a" && p.CreatedBy == "test-operator", "pin = %+v", p)
			}},
		{route: "PUT /api/v1/pins/:kind/:name", role: access.RoleOperator,
			call: func(ctx context.Context, c *apiclient.Client) (any, error) {
				return c.SetPin(ctx, "device", "dev-3", api.PinRequest{Version: "1.0", Reason: "x"})
			},
			wantCode: tufota.EInvalid},
		{route: "PUT /api/v1/pins/:kind/:name", role: access.RoleAuditor,
			call: func(ctx context.Context, c *apiclient.Client) (any, error) {
				return c.SetPin(ctx, "device", "dev-3", api.PinRequest{Version: "0.0.*", Reason: "x"})
			},
			wantCode: tufota.EForbidden},
		{route: "GET /api/v1/pins", role: access.RoleAuditor,
			call: func(ctx context.Context, c *apiclient.Client) (any, error) { return c.Pins(ctx) },
			check: func(got any) string {
				ps := got.([]api.Pin)
				return want(len(ps) == 1 && ps[0].Kind == "cohort" && ps[0].Name == "pumps", "pins = %+v", ps)
			}},
		{route: "GET /api/v1/pins", role: access.RoleDevice,
			call:     func(ctx context.Context, c *apiclient.Client) (any, error) { return c.Pins(ctx) },
			wantCode: tufota.EForbidden},
		{route: "DELETE /api/v1/pins/:kind/:name", role: access.RoleAuditor,
			call: func(ctx context.Context, c *apiclient.Client) (any, error) {
				return nil, c.RemovePin(ctx, "cohort", "pumps")
			},
			wantCode: tufota.EForbidden},
		{route: "DELETE /api/v1/pins/:kind/:name", role: access.RoleOperator,
			call: func(ctx context.Context, c *apiclient.Client) (any, error) {
				if err := c.RemovePin(ctx, "cohort", "pumps"); err != nil {
					return nil, err
				}
				return c.Pins(ctx)
			},
			check: func(got any) string { return want(len(got.([]api.Pin)) == 0, "pins after remove = %+v", got) }},
		{route: "DELETE /api/v1/pins/:kind/:name", role: access.RoleOperator,
			call: func(ctx context.Context, c *apiclient.Client) (any, error) {
				return nil, c.RemovePin(ctx, "cohort", "pumps")
			},
			wantCode: tufota.ENotFound},
		{route: "POST /api/v1/rollouts/plan", role: access.RoleOperator,
			call: func(ctx context.Context, c *apiclient.Client) (any, error) {
				return c.PlanSpec(ctx, api.RolloutSpec{Release: "fw@1.0.0", Cohort: "pumps", Waves: "1,100%"})
			},
			check: func(got any) string {
				d := got.(api.DryRun)
				return want(d.RolloutID == "" && d.Release == "fw@1.0.0" && d.Matched == 3 && len(d.Waves) == 2 && d.Pinned.Count == 0, "plan = %+v", d)
			}},
		{route: "POST /api/v1/rollouts/plan", role: access.RoleOperator,
			call: func(ctx context.Context, c *apiclient.Client) (any, error) {
				return c.PlanSpec(ctx, api.RolloutSpec{Release: "fw@1.0.0", Cohort: "pumps", Waves: "0%"})
			},
			wantCode: tufota.EInvalid},
		{route: "POST /api/v1/rollouts/plan", role: access.RoleAuditor,
			call: func(ctx context.Context, c *apiclient.Client) (any, error) {
				return c.PlanSpec(ctx, api.RolloutSpec{Release: "fw@1.0.0", Cohort: "pumps", Waves: "1,100%"})
			},
			wantCode: tufota.EForbidden},
		{route: "POST /api/v1/rollouts", role: access.RoleOperator,
			call: func(ctx context.Context, c *apiclient.Client) (any, error) {
				return c.CreateRollout(ctx, api.RolloutSpec{Release: "fw@1.0.0", Cohort: "pumps", Waves: "1,100%"})
			},
			check: func(got any) string {
				r := got.(api.Rollout)
				rolloutID = r.ID
				return want(r.ID != "" && r.Release == "fw@1.0.0" && len(r.Plan) > 0, "rollout = %+v", r)
			}},
		{route: "GET /api/v1/rollouts/plan", role: access.RoleAuditor,
			call: func(ctx context.Context, c *apiclient.Client) (any, error) { return c.PlanRollout(ctx, rolloutID) },
			check: func(got any) string {
				d := got.(api.DryRun)
				return want(d.RolloutID == rolloutID && d.Release == "fw@1.0.0" && d.Matched == 3 && len(d.Waves) == 2 && len(d.Waves[0].Devices) == 1, "plan = %+v", d)
			}},
		{route: "GET /api/v1/rollouts/plan", role: access.RoleAuditor,
			call:     func(ctx context.Context, c *apiclient.Client) (any, error) { return c.PlanRollout(ctx, "") },
			wantCode: tufota.EInvalid},
		{route: "GET /api/v1/rollouts/plan", role: access.RoleAuditor,
			call:     func(ctx context.Context, c *apiclient.Client) (any, error) { return c.PlanRollout(ctx, "ro-nosuch") },
			wantCode: tufota.ENotFound},
		{route: "GET /api/v1/rollouts", role: access.RoleAuditor,
			call:  func(ctx context.Context, c *apiclient.Client) (any, error) { return c.ListRollouts(ctx) },
			check: func(got any) string { return want(len(got.([]api.Rollout)) == 1, "rollouts = %+v", got) }},
		{route: "POST /api/v1/rollouts/:id/:action", role: access.RoleOperator,
			call: func(ctx context.Context, c *apiclient.Client) (any, error) {
				return c.RolloutAction(ctx, rolloutID, "start", api.ActionRequest{Reason: "test"})
			},
			check: func(got any) string {
				return want(got.(api.RolloutStatus).State != "draft", "state = %q", got.(api.RolloutStatus).State)
			}},
		{route: "POST /api/v1/rollouts/:id/:action", role: access.RoleOperator,
			call: func(ctx context.Context, c *apiclient.Client) (any, error) {
				return c.RolloutAction(ctx, rolloutID, "explode", api.ActionRequest{})
			},
			wantCode: tufota.ENotFound},
		{route: "GET /api/v1/rollouts/:id", role: access.RoleAuditor,
			call: func(ctx context.Context, c *apiclient.Client) (any, error) { return c.Rollout(ctx, rolloutID) },
			check: func(got any) string {
				return want(len(got.(api.RolloutStatus).Waves) == 2, "waves = %+v", got.(api.RolloutStatus).Waves)
			}},
		{route: "GET /api/v1/rollouts/:id/history", role: access.RoleAuditor,
			call:  func(ctx context.Context, c *apiclient.Client) (any, error) { return c.RolloutHistory(ctx, rolloutID) },
			check: func(got any) string { return want(len(got.(api.RolloutHistory).Events) > 0, "history = %+v", got) }},
		{route: "GET /api/v1/device/update", role: access.RoleDevice,
			call: func(ctx context.Context, c *apiclient.Client) (any, error) {
				u, ok, err := dev2.DeviceUpdate(ctx, "pump-a", "0.0.1")
				if err == nil && !ok {
					return u, errors.New("no update offered")
				}
				return u, err
			},
			check: func(got any) string { return want(got.(api.UpdateResponse).Version == "1.0.0", "update = %+v", got) }},
		{route: "POST /api/v1/device/status", role: access.RoleDevice,
			call: func(ctx context.Context, c *apiclient.Client) (any, error) {
				return nil, dev2.DeviceStatus(ctx, api.StatusReport{DeviceID: "dev-2", Target: "fw/1.0.0/fw.bin", Version: "1.0.0", State: "exploded"})
			},
			wantCode: tufota.EInvalid},
		{route: "POST /api/v1/device/status", role: access.RoleDevice,
			call: func(ctx context.Context, c *apiclient.Client) (any, error) {
				return "reported", dev2.DeviceStatus(ctx, api.StatusReport{DeviceID: "dev-2", Target: "fw/1.0.0/fw.bin", Version: "1.0.0", State: "downloading"})
			},
			check: func(got any) string { return "" }},
		{route: "GET /api/v1/audit", role: access.RoleAuditor,
			call: func(ctx context.Context, c *apiclient.Client) (any, error) {
				return c.AuditList(ctx, api.AuditFilter{Action: "release.push", Limit: 10})
			},
			check: func(got any) string {
				es := got.([]api.AuditEntry)
				for _, e := range es {
					if e.Action != "release.push" {
						return "entry " + e.Action + " passed the action filter"
					}
				}
				return want(len(es) >= 1, "%d entries", len(es))
			}},
		{route: "GET /api/v1/audit", role: access.RoleAuditor,
			call: func(ctx context.Context, c *apiclient.Client) (any, error) {
				return c.AuditList(ctx, api.AuditFilter{Limit: -1, Since: "yesterday"})
			},
			wantCode: tufota.EInvalid},
		{route: "GET /api/v1/audit/export", role: access.RoleAuditor,
			call: func(ctx context.Context, c *apiclient.Client) (any, error) {
				var b bytes.Buffer
				err := c.AuditExport(ctx, "csv", "", "", &b)
				return b.String(), err
			},
			check: func(got any) string {
				return want(strings.Contains(got.(string), "release.push"), "export = %.200s", got)
			}},
		{route: "POST /api/v1/audit/checkpoint", role: access.RoleAdmin,
			call: func(ctx context.Context, c *apiclient.Client) (any, error) { return c.AuditCheckpoint(ctx) },
			check: func(got any) string {
				return want(strings.HasPrefix(got.(api.CheckpointResponse).Checkpoint, "tufota.test/audit\n"), "checkpoint = %+v", got)
			}},
		{route: "GET /api/v1/audit/verify", role: access.RoleAuditor,
			call: func(ctx context.Context, c *apiclient.Client) (any, error) { return c.AuditVerify(ctx) },
			check: func(got any) string {
				r := got.(api.AuditReport)
				return want(r.OK && r.Checkpoints >= 1 && len(r.Head.Hash) == 32, "report = %+v", r)
			}},
		{route: "GET /api/v1/root", role: access.RoleAuditor,
			call: func(ctx context.Context, c *apiclient.Client) (any, error) { return c.Root(ctx) },
			check: func(got any) string {
				return want(got.(api.RootInfo).Current.Version == 1 && got.(api.RootInfo).Pending == nil, "root = %+v", got)
			}},
		{route: "GET /api/v1/root/pending", role: access.RoleAdmin,
			call:     func(ctx context.Context, c *apiclient.Client) (any, error) { return c.RootPending(ctx) },
			wantCode: tufota.ENotFound},
		{route: "POST /api/v1/root", role: access.RoleAdmin,
			call: func(ctx context.Context, c *apiclient.Client) (any, error) {
				return c.UpdateRoot(ctx, api.RootChange{AddKeys: []api.RootKeyAdd{{Role: "root", Key: tufKey(t)}}})
			},
			check: func(got any) string {
				p := got.(api.SigningPayload)
				return want(p.Role == "root" && p.Status.Version == 2 && len(p.Payload) > 0, "payload = %+v", p.Status)
			}},
		{route: "GET /api/v1/root/pending", role: access.RoleAdmin,
			call:  func(ctx context.Context, c *apiclient.Client) (any, error) { return c.RootPending(ctx) },
			check: func(got any) string { return want(got.(api.SigningPayload).Root != nil, "payload = %+v", got) }},
		{route: "POST /api/v1/root/signatures", role: access.RoleAdmin,
			call: func(ctx context.Context, c *apiclient.Client) (any, error) {
				return c.SignRoot(ctx, api.SignatureUpload{KeyID: "00", Sig: "00", PayloadSHA256: "00"})
			},
			wantCode: tufota.EConflict},
		{route: "DELETE /api/v1/root/pending", role: access.RoleAdmin,
			call:  func(ctx context.Context, c *apiclient.Client) (any, error) { return "cancelled", c.CancelRoot(ctx) },
			check: func(got any) string { return "" }},
		{route: "DELETE /api/v1/root/pending", role: access.RoleAdmin,
			call:     func(ctx context.Context, c *apiclient.Client) (any, error) { return nil, c.CancelRoot(ctx) },
			wantCode: tufota.ENotFound},
	}

	covered := map[string]bool{}
	for i, s := range steps {
		covered[s.route] = true
		got, err := s.call(ctx, f.clients[s.role])
		switch {
		case s.wantCode != "":
			var te *tufota.Error
			if !errors.As(err, &te) || te.Code != s.wantCode {
				t.Errorf("step %d %s as %s: error = %v, want code %s", i, s.route, s.role, err, s.wantCode)
			}
		case err != nil:
			t.Errorf("step %d %s as %s: %v", i, s.route, s.role, err)
		default:
			if msg := s.check(got); msg != "" {
				t.Errorf("step %d %s as %s: %s", i, s.route, s.role, msg)
			}
		}
	}
	for _, r := range f.srv.Routes() {
		key := r.Method + " " + r.Path
		if strings.HasPrefix(r.Path, "/api/v1/") && !covered[key] {
			t.Errorf("route %s has no client method in this test", key)
		}
	}
}

func want(ok bool, format string, args ...any) string {
	if ok {
		return ""
	}
	return fmtS(format, args...)
}

func fmtS(format string, args ...any) string { return fmt.Sprintf(format, args...) }

// TestWireTwins checks that api's twins of the server's domain types
// carry every field the server writes: the server's answer, decoded into
// the twin and encoded again, is the same JSON.
func TestWireTwins(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	admin, eng, op := f.clients[access.RoleAdmin], f.clients[access.RoleReleaseEngineer], f.clients[access.RoleOperator]
	if _, err := eng.PushRelease(ctx, apiclient.Push{Release: api.PushRequest{Name: "fw", Version: "1.0.0", Hardware: []string{"pump-a"}, Notes: "n", File: "fw.bin"}, File: strings.NewReader("fw")}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.AddDelegation(ctx, api.DelegationRequest{Name: "line", Paths: []string{"line/*/*"}, Keys: []*api.Key{tufKey(t)}, Threshold: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := op.RegisterDevice(ctx, api.RegisterDeviceRequest{Device: api.Device{ID: "dev-2", Hardware: "pump-a", Version: "0.0.1", Attrs: map[string]string{"site": "north"}, Tags: []string{"icu"}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := op.CreateCohort(ctx, api.CohortRequest{Name: "pumps", Selector: "hardware=pump-a"}); err != nil {
		t.Fatal(err)
	}
	// A pin keeps dev-2 from the release (status lists it pinned); a user
	// owns a token, and a disabled user shows when and by whom.
	if _, err := op.SetPin(ctx, "device", "dev-2", api.PinRequest{Version: "0.0.*", Reason: "validated"}); err != nil {
		t.Fatal(err)
	}
	if _, err := op.SetPin(ctx, "cohort", "pumps", api.PinRequest{Version: "1.*", Reason: "line"}); err != nil {
		t.Fatal(err)
	}
	u, err := admin.CreateUser(ctx, api.CreateUserRequest{Name: "ci-bot", Roles: []string{"auditor", "operator"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.CreateToken(ctx, api.CreateTokenRequest{Name: "ci", Role: "operator", User: u.ID, Expires: "1h"}); err != nil {
		t.Fatal(err)
	}
	gone, err := admin.CreateUser(ctx, api.CreateUserRequest{Name: "gone", Roles: []string{"auditor"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.DisableUser(ctx, gone.ID); err != nil {
		t.Fatal(err)
	}
	spec := api.RolloutSpec{Release: "fw@1.0.0", Cohort: "pumps", Waves: "1,100%", MaxFailures: new(int)}
	ro, err := op.CreateRollout(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := op.RolloutAction(ctx, ro.ID, "start", api.ActionRequest{Reason: "twin"}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.AuditCheckpoint(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.UpdateRoot(ctx, api.RootChange{AddKeys: []api.RootKeyAdd{{Role: "root", Key: tufKey(t)}}}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path string
		twin any
		body any // POSTed when set
	}{
		{"/api/v1/whoami", &api.Principal{}, nil},
		{"/api/v1/releases", &[]api.Release{}, nil},
		{"/api/v1/releases/fw/1.0.0", &api.Release{}, nil},
		{"/api/v1/delegations", &[]api.Delegation{}, nil},
		{"/api/v1/tokens", &[]api.Token{}, nil},
		{"/api/v1/audit", &[]api.AuditEntry{}, nil},
		{"/api/v1/audit/verify", &api.AuditReport{}, nil},
		{"/api/v1/devices", &[]api.Device{}, nil},
		{"/api/v1/fleet/report", &[]api.FleetRow{}, nil},
		{"/api/v1/status", &api.Status{}, nil},
		{"/api/v1/cohorts", &[]api.Cohort{}, nil},
		{"/api/v1/rollouts", &[]api.Rollout{}, nil},
		{"/api/v1/rollouts/" + ro.ID, &api.RolloutStatus{}, nil},
		{"/api/v1/rollouts/" + ro.ID + "/history", &api.RolloutHistory{}, nil},
		{"/api/v1/root", &api.RootInfo{}, nil},
		{"/api/v1/root/pending", &api.SigningPayload{}, nil},
		{"/api/v1/pins", &[]api.Pin{}, nil},
		{"/api/v1/users", &[]api.User{}, nil},
		{"/api/v1/rollouts/plan", &api.DryRun{}, spec},
	} {
		t.Run(tc.path, func(t *testing.T) {
			var raw json.RawMessage
			method := http.MethodGet
			if tc.body != nil {
				method = http.MethodPost
			}
			if err := admin.Do(ctx, method, tc.path, tc.body, &raw); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(raw, tc.twin); err != nil {
				t.Fatal(err)
			}
			again, err := json.Marshal(tc.twin)
			if err != nil {
				t.Fatal(err)
			}
			var a, b any
			_ = json.Unmarshal(raw, &a)
			_ = json.Unmarshal(again, &b)
			if !reflect.DeepEqual(a, b) {
				t.Errorf("twin %T loses or changes fields:\nserver: %s\ntwin:   %s", tc.twin, raw, again)
			}
		})
	}
}
