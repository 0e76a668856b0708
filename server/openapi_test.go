package server

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/tufota/tufota/access"
)

// TestOpenAPIDocumentLoads checks that the embedded document is OpenAPI
// 3.1 and that kin-openapi loads and validates it.
func TestOpenAPIDocumentLoads(t *testing.T) {
	doc := loadOpenAPI(t)
	if !doc.IsOpenAPI31OrLater() || doc.OpenAPI != "3.1.0" {
		t.Errorf("openapi = %q, want 3.1.0", doc.OpenAPI)
	}
}

// TestOpenAPICopyInDocs checks that docs/openapi.json is the embedded
// document, byte for byte (cp server/openapi.json docs/openapi.json).
func TestOpenAPICopyInDocs(t *testing.T) {
	b, err := os.ReadFile("../docs/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, OpenAPI()) {
		t.Error("docs/openapi.json differs from server/openapi.json: cp server/openapi.json docs/openapi.json")
	}
}

var openAPIPathParam = regexp.MustCompile(`\{([^}]+)\}`)

// TestOpenAPICompleteness checks the document against the route table:
// every route (but the HTML dashboard's, see describedByOpenAPI) is
// described, every described operation is a route, the roles in
// x-tufota-roles are the route's, x-tufota-audit-action is its action,
// public routes need no credentials and the others a bearer token (and a
// client certificate where devices are admitted), and every path parameter
// is declared.
func TestOpenAPICompleteness(t *testing.T) {
	doc := loadOpenAPI(t)
	ts := newTestServer(t)
	routes := map[string]Route{}
	for _, r := range ts.Routes() {
		if describedByOpenAPI(r) {
			routes[r.Method+" "+openAPIPath(r.Path)] = r
		}
	}
	described := map[string]*openapi3.Operation{}
	for p, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			described[method+" "+p] = op
		}
	}
	for key, r := range routes {
		op := described[key]
		if op == nil {
			t.Errorf("route %s %s is not described in openapi.json", r.Method, r.Path)
			continue
		}
		if got := op.Extensions["x-tufota-audit-action"]; got != r.Action {
			t.Errorf("%s: x-tufota-audit-action = %v, want %q", key, got, r.Action)
		}
		var roles []access.Role
		if raw, ok := op.Extensions["x-tufota-roles"].([]any); ok {
			for _, v := range raw {
				s, _ := v.(string)
				roles = append(roles, access.Role(s))
			}
		}
		if r.Public {
			if op.Security == nil || len(*op.Security) != 0 {
				t.Errorf("%s is public: want security: []", key)
			}
			if _, ok := op.Extensions["x-tufota-roles"]; ok {
				t.Errorf("%s is public: want no x-tufota-roles", key)
			}
		} else {
			if !slices.Equal(roles, r.Roles) {
				t.Errorf("%s: x-tufota-roles = %v, want %v", key, roles, r.Roles)
			}
			var schemes []string
			if op.Security != nil {
				for _, req := range *op.Security {
					for name := range req {
						schemes = append(schemes, name)
					}
				}
			}
			want := []string{"bearerToken"}
			if slices.Contains(r.Roles, access.RoleDevice) {
				want = append(want, "deviceCertificate")
			}
			if !slices.Equal(schemes, want) {
				t.Errorf("%s: security = %v, want %v", key, schemes, want)
			}
			for _, st := range []string{"401", "403"} {
				if op.Responses.Value(st) == nil {
					t.Errorf("%s: no %s response described", key, st)
				}
			}
		}
		// Path parameters: exactly those of the template, all required.
		p := strings.SplitN(key, " ", 2)[1]
		var names, declared []string
		for _, m := range openAPIPathParam.FindAllStringSubmatch(p, -1) {
			names = append(names, m[1])
		}
		for _, pr := range op.Parameters {
			if pr.Value.In == openapi3.ParameterInPath {
				declared = append(declared, pr.Value.Name)
				if !pr.Value.Required {
					t.Errorf("%s: path parameter %s is not required", key, pr.Value.Name)
				}
			}
		}
		slices.Sort(names)
		slices.Sort(declared)
		if !slices.Equal(names, declared) {
			t.Errorf("%s: path parameters declared %v, template has %v", key, declared, names)
		}
		if op.OperationID == "" {
			t.Errorf("%s: no operationId", key)
		}
	}
	for key := range described {
		if _, ok := routes[key]; !ok {
			t.Errorf("openapi.json describes %s, which is not a route in Routes()", key)
		}
	}
}

// TestOpenAPIServed checks that GET /api/v1/openapi.json serves the
// embedded document to any authenticated role and refuses anonymous
// callers.
func TestOpenAPIServed(t *testing.T) {
	ts := newTestServer(t)
	ts.checkTraffic(t)
	for _, role := range access.Roles {
		resp, body := ts.do(t, openAPIRequest(t, http.MethodGet, ts.http.URL+"/api/v1/openapi.json", "", ""), ts.tokens[role])
		if resp.StatusCode != http.StatusOK || !bytes.Equal(body, OpenAPI()) {
			t.Errorf("%s: status = %d, body equal = %v", role, resp.StatusCode, bytes.Equal(body, OpenAPI()))
		}
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("%s: Content-Type = %q", role, ct)
		}
	}
	resp, _ := ts.do(t, breaksOpenAPI(openAPIRequest(t, http.MethodGet, ts.http.URL+"/api/v1/openapi.json", "", "")), "")
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("anonymous: status = %d, want 401", resp.StatusCode)
	}
}

// TestOpenAPIRejectsWrongBodies shows that the validation the traffic
// tests rely on fails for bodies the document forbids: a field too many, a
// required field missing, an error code outside the table, an undescribed
// status, a 503 without Retry-After, a request body with an unknown
// field, a request without credentials and a push whose "release" part
// breaks PushRequest.
func TestOpenAPIRejectsWrongBodies(t *testing.T) {
	ts := newTestServer(t)
	v := newOpenAPIChecker(t, ts.Server, nil)
	ctx := context.Background()
	in, err := v.validateRequest(openAPIRequest(t, http.MethodGet, "http://tufota.test/api/v1/cohorts/icu", "", "Bearer tft_x"))
	if err != nil {
		t.Fatalf("valid request: %v", err)
	}
	jsonHeader := http.Header{"Content-Type": {"application/json"}}
	good := `{"name":"icu","selector":"hardware=pump-a","devices":2,"created_at":"2026-01-02T03:04:05Z","created_by":"ops"}`
	if err := validateOpenAPIResponse(ctx, in, 200, jsonHeader, []byte(good)); err != nil {
		t.Fatalf("a correct cohort is refused: %v", err)
	}
	for _, tc := range []struct {
		name   string
		status int
		body   string
	}{
		{"extra field", 200, strings.Replace(good, `"devices":2`, `"devices":2,"secret":"x"`, 1)},
		{"missing required field", 200, strings.Replace(good, `"devices":2,`, ``, 1)},
		{"wrong type", 200, strings.Replace(good, `"devices":2`, `"devices":"2"`, 1)},
		{"error code outside the table", 404, `{"error":{"code":"missing","message":"no cohort"}}`},
		{"error body with an extra field", 404, `{"error":{"code":"not_found","message":"no cohort","stack":"..."}}`},
		{"undescribed status", 418, `{"error":{"code":"invalid","message":"teapot"}}`},
	} {
		if err := validateOpenAPIResponse(ctx, in, tc.status, jsonHeader, []byte(tc.body)); err == nil {
			t.Errorf("%s: %d %s validates, want an error", tc.name, tc.status, tc.body)
		}
	}
	if _, err := v.validateRequest(openAPIRequest(t, http.MethodPost, "http://tufota.test/api/v1/cohorts", `{"name":"icu","selector":"hardware=pump-a","owner":"x"}`, "Bearer tft_x")); err == nil {
		t.Error("a cohort request with an unknown field validates, want an error")
	}
	if _, err := v.validateRequest(openAPIRequest(t, http.MethodPost, "http://tufota.test/api/v1/cohorts", `{"name":"icu","selector":"hardware=pump-a"}`, "")); err == nil {
		t.Error("a request without credentials validates, want an error")
	}
	// A 503 must say when to retry.
	tin, err := v.validateRequest(openAPIRequest(t, http.MethodGet, "http://tufota.test/tuf/targets/pump/1.0.0/abc.fw.bin", "", "Bearer tft_x"))
	if err != nil {
		t.Fatalf("valid target request: %v", err)
	}
	unavailable := []byte(`{"error":{"code":"unavailable","message":"storage unavailable: blob store; retry later"}}`)
	if err := validateOpenAPIResponse(ctx, tin, 503, http.Header{"Content-Type": {"application/json"}, "Retry-After": {"5"}}, unavailable); err != nil {
		t.Errorf("a 503 with Retry-After is refused: %v", err)
	}
	if err := validateOpenAPIResponse(ctx, tin, 503, jsonHeader, unavailable); err == nil {
		t.Error("a 503 without Retry-After validates, want an error")
	}
	// The JSON "release" part of a push is checked against PushRequest.
	for _, tc := range []struct {
		release any
		valid   bool
	}{
		{map[string]any{"name": "pump", "version": "1.0.0", "hardware": []string{"pump-a"}, "file": "fw.bin"}, true},
		{map[string]any{"name": "pump", "version": "1.0.0", "hardware": []string{"pump-a"}, "file": "fw.bin", "signed": true}, false},
		{map[string]any{"name": "pump", "hardware": []string{"pump-a"}}, false},
	} {
		body, ct := pushBody(t, tc.release, []byte("fw"))
		req := openAPIRequest(t, http.MethodPost, "http://tufota.test/api/v1/releases", "", "Bearer tft_x")
		req.Body, req.Header["Content-Type"] = io.NopCloser(body), []string{ct}
		if _, err := v.validateRequest(req); (err == nil) != tc.valid {
			t.Errorf("push of release %v: validation error %v, want valid = %v", tc.release, err, tc.valid)
		}
	}
}

// TestOpenAPIRouteMatrixTraffic sends every route a request its handler
// accepts (the route matrix's validRequest) with an admitted role, one
// with an unknown token and one with a role it refuses, all through the
// validating transport; every operation must then have had a validated
// success answer.
func TestOpenAPIRouteMatrixTraffic(t *testing.T) {
	ts := newTestServer(t)
	v := ts.checkTraffic(t)
	for _, r := range ts.Routes() {
		if !describedByOpenAPI(r) {
			continue
		}
		var token string
		if !r.Public {
			token = ts.tokens[r.Roles[0]]
		}
		if resp, body := ts.do(t, ts.validRequest(t, r), token); resp.StatusCode/100 != 2 {
			t.Errorf("%s %s: status = %d, want 2xx (%s)", r.Method, r.Path, resp.StatusCode, body)
		}
		if !r.Public {
			if resp, _ := ts.do(t, ts.validRequest(t, r), "tft_0000000000000000_"+strings.Repeat("A", 43)); resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("%s %s with an unknown token: status = %d, want 401", r.Method, r.Path, resp.StatusCode)
			}
		}
		for _, role := range access.Roles {
			if !r.Public && !slices.Contains(r.Roles, role) {
				if resp, _ := ts.do(t, ts.validRequest(t, r), ts.tokens[role]); resp.StatusCode != http.StatusForbidden {
					t.Errorf("%s %s as %s: status = %d, want 403", r.Method, r.Path, role, resp.StatusCode)
				}
				break
			}
		}
	}
	for _, r := range ts.Routes() {
		if !describedByOpenAPI(r) {
			continue
		}
		st := v.statuses(r.Method, openAPIPath(r.Path))
		if !slices.ContainsFunc(st, func(s int) bool { return s/100 == 2 }) {
			t.Errorf("%s %s: no success answer validated (statuses %v)", r.Method, r.Path, st)
		}
	}
}

// openAPIRequest builds a client request; a body is sent as JSON.
func openAPIRequest(t *testing.T, method, url, body, auth string) *http.Request {
	t.Helper()
	var req *http.Request
	var err error
	if body != "" {
		req, err = http.NewRequest(method, url, strings.NewReader(body))
	} else {
		req, err = http.NewRequest(method, url, nil)
	}
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	return req
}

// openAPIDecode decodes a JSON answer into v.
func openAPIDecode(t *testing.T, body []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("decode %.200s: %v", body, err)
	}
}
