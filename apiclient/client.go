// Package apiclient is the typed Go client of tufota's management API
// (/api/v1/): one method per route, the request and response types of
// package api, and error answers decoded into *tufota.Error with the
// server's code, so that errors.Is(err, tufota.ErrNotFound) works on the
// client side as it does on the server side. The CLI is built on it.
//
// A Client is safe for concurrent use. Every method takes a context and
// stops when it ends; release uploads stream from an io.Reader and are
// never held in memory whole.
package apiclient

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/api"
)

// maxAnswer bounds a JSON answer; maxError bounds an error answer.
const (
	maxAnswer = 64 << 20
	maxError  = 64 << 10
)

// Client calls one tufota server with one API token.
type Client struct {
	base  string
	token string
	http  *http.Client
}

// Option configures a Client.
type Option func(*Client)

// WithHTTPClient makes the Client send its requests with hc instead of
// the client New builds (TLS 1.2+, system roots or WithRootCAs).
func WithHTTPClient(hc *http.Client) Option { return func(c *Client) { c.http = hc } }

// New returns a client for the server at base ("https://ota.example:8443")
// that authenticates with token.
func New(base, token string, opts ...Option) *Client {
	c := &Client{base: strings.TrimRight(base, "/"), token: token}
	for _, o := range opts {
		o(c)
	}
	if c.http == nil {
		c.http, _ = HTTPClient(nil)
	}
	return c
}

// HTTPClient returns an HTTP client that speaks TLS 1.2 or newer and
// trusts the PEM certificates in caPEM, or the system roots when caPEM is
// nil. It fails with tufota.EInvalid when caPEM holds no certificate.
// It sets no overall timeout: uploads of large images take as long as
// they take, and contexts bound each call.
func HTTPClient(caPEM []byte) (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	if caPEM != nil {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(caPEM) {
			return nil, tufota.Errorf(tufota.EInvalid, "CA file holds no PEM certificate")
		}
		tr.TLSClientConfig.RootCAs = pool
	}
	return &http.Client{Transport: tr}, nil
}

// HTTP returns the HTTP client the Client sends with.
func (c *Client) HTTP() *http.Client { return c.http }

// BaseURL returns the server's base URL, without a trailing slash.
func (c *Client) BaseURL() string { return c.base }

// Do sends one request to path (below the base URL) and decodes the JSON
// answer into out, when out is not nil and the answer has a body. in, when
// not nil, is sent as JSON. It is the one place requests are made; the
// typed methods call it, and callers may use it for routes this package
// does not know yet.
func (c *Client) Do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	ct := ""
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("%s %s: %w", method, path, err)
		}
		body, ct = bytes.NewReader(b), "application/json"
	}
	resp, err := c.send(ctx, method, path, body, ct)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return decodeInto(resp, method+" "+path, out)
}

// decodeInto decodes a successful answer into out; a 204, or a nil out,
// decodes nothing.
func decodeInto(resp *http.Response, what string, out any) error {
	if out == nil || resp.StatusCode == http.StatusNoContent {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxError))
		return nil
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxAnswer)).Decode(out); err != nil {
		return fmt.Errorf("%s: decode answer: %w", what, err)
	}
	return nil
}

func writeJSON(w io.Writer, v any) error { return json.NewEncoder(w).Encode(v) }

// stream sends a request and copies the answer's body to w.
func (c *Client) stream(ctx context.Context, method, path string, w io.Writer) error {
	resp, err := c.send(ctx, method, path, nil, "")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(w, resp.Body); err != nil {
		return tufota.Errorf(tufota.EUnavailable, "%s %s: read answer: %w", method, path, err)
	}
	return nil
}

// send sends a request with the bearer token and turns answers of 300 and
// above into errors; the caller closes the body of a successful answer.
func (c *Client) send(ctx context.Context, method, path string, body io.Reader, contentType string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, tufota.Errorf(tufota.EUnavailable, "%s %s: %w", method, path, err)
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		return nil, DecodeError(resp)
	}
	return resp, nil
}

// DecodeError turns an error answer into *tufota.Error with the server's
// code and message. An answer without tufota's error body (a proxy's
// page, say) becomes tufota.EInternal naming the HTTP status. It reads at
// most 64 KiB of the body and does not close it.
func DecodeError(resp *http.Response) error {
	var body api.ErrorBody
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, maxError))
	if json.Unmarshal(raw, &body) == nil && body.Error.Message != "" {
		return &tufota.Error{Code: body.Error.Code, Message: body.Error.Message}
	}
	return tufota.Errorf(tufota.EInternal, "server answered %s", resp.Status)
}

// WaitReady polls /healthz until the server answers 200 or ctx ends.
func (c *Client) WaitReady(ctx context.Context) error {
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/healthz", nil)
		resp, err := c.http.Do(req)
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("server at %s not ready: %w", c.base, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Ready asks /readyz. A replica that is not ready answers 503 with its
// checks; Ready returns them with a tufota.EUnavailable error.
func (c *Client) Ready(ctx context.Context) (api.Readiness, error) {
	var r api.Readiness
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/readyz", nil)
	if err != nil {
		return r, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return r, tufota.Errorf(tufota.EUnavailable, "GET /readyz: %w", err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxError)).Decode(&r); err != nil {
		return r, tufota.Errorf(tufota.EUnavailable, "GET /readyz: %s: %w", resp.Status, err)
	}
	if resp.StatusCode != http.StatusOK {
		return r, tufota.Errorf(tufota.EUnavailable, "GET /readyz: %s", r.Status)
	}
	return r, nil
}

// Transport returns a RoundTripper that sends the Client's bearer token
// over the Client's transport: for other HTTP clients of the same server,
// such as a TUF updater reading /tuf/.
func (c *Client) Transport() http.RoundTripper {
	next := c.http.Transport
	if next == nil {
		next = http.DefaultTransport
	}
	return bearer{token: c.token, next: next}
}

type bearer struct {
	token string
	next  http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.next.RoundTrip(r)
}
