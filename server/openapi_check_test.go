package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/labstack/echo/v4"
)

// loadOpenAPI loads and validates the embedded OpenAPI document.
func loadOpenAPI(t *testing.T) *openapi3.T {
	t.Helper()
	ctx := context.Background()
	doc, err := openapi3.NewLoader().LoadFromData(OpenAPI())
	if err != nil {
		t.Fatalf("load openapi.json: %v", err)
	}
	if err := doc.Validate(ctx); err != nil {
		t.Fatalf("openapi.json does not validate: %v", err)
	}
	return doc
}

// describedByOpenAPI reports whether a route belongs in the OpenAPI
// document: every route but the HTML dashboard under /ui/, which is pages
// for people, not an API.
func describedByOpenAPI(r Route) bool {
	return r.Path != "/ui" && !strings.HasPrefix(r.Path, "/ui/")
}

var openAPIEchoParam = regexp.MustCompile(`:([A-Za-z_][A-Za-z0-9_]*)`)

// openAPIPath maps an echo route path to its OpenAPI path template:
// ":name" becomes "{name}" and the catch-all "*" becomes "{path}".
func openAPIPath(echoPath string) string {
	p := openAPIEchoParam.ReplaceAllString(echoPath, "{$1}")
	return strings.Replace(p, "*", "{path}", 1)
}

// openAPIChecker is an http.RoundTripper that validates every request it
// sends and every response it receives against the OpenAPI document, with
// kin-openapi's openapi3filter. It finds the operation with echo's own
// router over Routes(), so that echo's catch-all routes ("/tuf/targets/*")
// match as the server matches them. Failures are reported on t; each
// operation's answered statuses are recorded.
type openAPIChecker struct {
	t      *testing.T
	doc    *openapi3.T
	router *echo.Echo
	base   http.RoundTripper

	mu   sync.Mutex
	seen map[string][]int // "GET /api/v1/releases" -> statuses validated
}

func newOpenAPIChecker(t *testing.T, s *Server, base http.RoundTripper) *openAPIChecker {
	t.Helper()
	e := echo.New()
	for _, r := range s.Routes() {
		e.Add(r.Method, r.Path, func(echo.Context) error { return nil })
	}
	return &openAPIChecker{t: t, doc: loadOpenAPI(t), router: e, base: base, seen: map[string][]int{}}
}

// openAPIBreaksKey marks a request, through its context, that the test sends
// knowing it breaks the document (no credentials, an unknown field, a value
// out of range): its request validation must fail, and the server's answer
// must still be a documented error response.
type openAPIBreaksKey struct{}

func breaksOpenAPI(req *http.Request) *http.Request {
	return req.WithContext(context.WithValue(req.Context(), openAPIBreaksKey{}, true))
}

// route finds the OpenAPI operation of req as echo routes it.
func (v *openAPIChecker) route(req *http.Request) (*routers.Route, map[string]string, error) {
	c := v.router.NewContext(nil, nil)
	v.router.Router().Find(req.Method, req.URL.Path, c)
	if c.Path() == "" {
		return nil, nil, fmt.Errorf("no route for %s %s", req.Method, req.URL.Path)
	}
	p := openAPIPath(c.Path())
	item := v.doc.Paths.Value(p)
	if item == nil {
		return nil, nil, fmt.Errorf("%s %s: route %s is not in the document", req.Method, req.URL.Path, p)
	}
	op := item.GetOperation(req.Method)
	if op == nil {
		return nil, nil, fmt.Errorf("%s %s: %s has no %s operation in the document", req.Method, req.URL.Path, p, req.Method)
	}
	params := map[string]string{}
	for i, name := range c.ParamNames() {
		if name == "*" {
			name = "path"
		}
		params[name] = c.ParamValues()[i]
	}
	return &routers.Route{Spec: v.doc, Path: p, PathItem: item, Method: req.Method, Operation: op}, params, nil
}

// openAPIAuth checks what the document's security schemes ask for: a
// bearer token in the Authorization header (its validity is the server's
// business), or a client certificate, which a request over plain HTTP
// cannot carry.
func openAPIAuth(_ context.Context, in *openapi3filter.AuthenticationInput) error {
	switch in.SecurityScheme.Type {
	case "http":
		tok, ok := strings.CutPrefix(in.RequestValidationInput.Request.Header.Get("Authorization"), "Bearer ")
		if !ok || tok == "" {
			return errors.New("no bearer token")
		}
		return nil
	case "mutualTLS":
		if cs := in.RequestValidationInput.Request.TLS; cs == nil || len(cs.PeerCertificates) == 0 {
			return errors.New("no client certificate")
		}
		return nil
	}
	return fmt.Errorf("unknown security scheme type %q", in.SecurityScheme.Type)
}

// validateRequest validates req (whose body it reads and restores).
func (v *openAPIChecker) validateRequest(req *http.Request) (*openapi3filter.RequestValidationInput, error) {
	route, params, err := v.route(req)
	if err != nil {
		return nil, err
	}
	var body []byte
	if req.Body != nil {
		if body, err = io.ReadAll(req.Body); err != nil {
			return nil, err
		}
		req.Body.Close()
		req.Body = io.NopCloser(bytes.NewReader(body))
	}
	vreq := req.Clone(req.Context())
	vreq.Body = io.NopCloser(bytes.NewReader(body))
	in := &openapi3filter.RequestValidationInput{
		Request: vreq, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: openAPIAuth, IncludeResponseStatus: true, MultiError: true},
	}
	if err := openapi3filter.ValidateRequest(req.Context(), in); err != nil {
		return in, err
	}
	return in, validateOpenAPIJSONParts(route.Operation, req.Header.Get("Content-Type"), body)
}

// validateOpenAPIJSONParts validates the parts of a multipart/form-data body
// that the document describes as JSON text with a contentSchema (the
// release push's "release" part): openapi3filter checks them only as
// strings, as JSON Schema 2020-12 makes contentSchema an annotation.
func validateOpenAPIJSONParts(op *openapi3.Operation, contentType string, body []byte) error {
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil || mt != "multipart/form-data" || op.RequestBody == nil {
		return nil
	}
	media := op.RequestBody.Value.Content.Get(mt)
	if media == nil || media.Schema == nil {
		return nil
	}
	mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("multipart body: %w", err)
		}
		prop := media.Schema.Value.Properties[part.FormName()]
		if prop == nil || prop.Value.ContentMediaType != "application/json" || prop.Value.ContentSchema == nil {
			continue
		}
		var v any
		if err := json.NewDecoder(part).Decode(&v); err != nil {
			return fmt.Errorf("part %q: %w", part.FormName(), err)
		}
		if err := prop.Value.ContentSchema.Value.VisitJSON(v, openapi3.EnableJSONSchema2020()); err != nil {
			return fmt.Errorf("part %q: %w", part.FormName(), err)
		}
	}
}

// validateOpenAPIResponse validates an answer with the given status, header and
// body to the request described by in.
func validateOpenAPIResponse(ctx context.Context, in *openapi3filter.RequestValidationInput, status int, header http.Header, body []byte) error {
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: status, Header: header,
		Options: &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true}}
	out.SetBodyBytes(body)
	return openapi3filter.ValidateResponse(ctx, out)
}

func (v *openAPIChecker) RoundTrip(req *http.Request) (*http.Response, error) {
	what := req.Method + " " + req.URL.RequestURI()
	bad, _ := req.Context().Value(openAPIBreaksKey{}).(bool)
	in, err := v.validateRequest(req)
	switch {
	case in == nil:
		v.t.Errorf("%s: %v", what, err)
		return v.base.RoundTrip(req)
	case err != nil && !bad:
		v.t.Errorf("%s: request breaks the OpenAPI document: %v", what, err)
	case err == nil && bad:
		v.t.Errorf("%s: request was meant to break the OpenAPI document, but it validates", what)
	}
	resp, err := v.base.RoundTrip(req)
	if err != nil {
		return resp, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(body))
	if err != nil {
		return resp, err
	}
	if err := validateOpenAPIResponse(req.Context(), in, resp.StatusCode, resp.Header, body); err != nil {
		v.t.Errorf("%s: response %d breaks the OpenAPI document: %v\nbody: %.600s", what, resp.StatusCode, err, body)
	}
	v.mu.Lock()
	key := req.Method + " " + in.Route.Path
	if !slices.Contains(v.seen[key], resp.StatusCode) {
		v.seen[key] = append(v.seen[key], resp.StatusCode)
	}
	v.mu.Unlock()
	return resp, nil
}

// statuses returns the statuses validated for the operation.
func (v *openAPIChecker) statuses(method, oaPath string) []int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return slices.Clone(v.seen[method+" "+oaPath])
}

// checkTraffic makes every request the test server's client sends go
// through an openAPIChecker.
func (ts *testServer) checkTraffic(t *testing.T) *openAPIChecker {
	t.Helper()
	cl := ts.http.Client()
	base := cl.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	v := newOpenAPIChecker(t, ts.Server, base)
	cl.Transport = v
	t.Cleanup(func() { cl.Transport = base })
	return v
}
