package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/tufota/tufota"
)

// apiClient calls a tufota server's management API.
type apiClient struct {
	base  string
	token string
	http  *http.Client
}

// api returns a client for the server named by the global flags.
func (a *app) api() (*apiClient, error) {
	if a.serverURL == "" {
		return nil, errNoServer
	}
	if a.token == "" {
		return nil, tufota.Errorf(tufota.EUnauthorized, "no API token: pass --token or set TUFOTA_TOKEN")
	}
	hc, err := a.httpClient()
	if err != nil {
		return nil, err
	}
	return &apiClient{base: strings.TrimRight(a.serverURL, "/"), token: a.token, http: hc}, nil
}

// httpClient trusts the system roots, or only --ca when given.
func (a *app) httpClient() (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	if a.caFile != "" {
		pem, err := os.ReadFile(a.caFile)
		if err != nil {
			return nil, fmt.Errorf("read --ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, tufota.Errorf(tufota.EInvalid, "--ca %s holds no PEM certificate", a.caFile)
		}
		tr.TLSClientConfig.RootCAs = pool
	}
	return &http.Client{Transport: tr, Timeout: 0}, nil
}

// do sends a request and decodes a JSON answer into out (if not nil).
// Error answers become *tufota.Error with the server's code and message.
func (c *apiClient) do(ctx context.Context, method, path string, body io.Reader, contentType string, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return tufota.Errorf(tufota.EUnavailable, "%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		return decodeError(resp)
	}
	if out == nil || resp.StatusCode == http.StatusNoContent {
		return nil
	}
	if raw, ok := out.(rawSink); ok {
		if _, err := io.Copy(raw.w, resp.Body); err != nil {
			return tufota.Errorf(tufota.EUnavailable, "%s %s: read answer: %w", method, path, err)
		}
		return nil
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(out); err != nil {
		return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
	}
	return nil
}

func (c *apiClient) getJSON(ctx context.Context, path string, out any) error {
	return c.do(ctx, http.MethodGet, path, nil, "", out)
}

func (c *apiClient) sendJSON(ctx context.Context, method, path string, in, out any) error {
	b, err := json.Marshal(in)
	if err != nil {
		return err
	}
	return c.do(ctx, method, path, bytes.NewReader(b), "application/json", out)
}

func decodeError(resp *http.Response) error {
	var body struct {
		Error struct {
			Code    tufota.Code `json:"code"`
			Message string      `json:"message"`
		} `json:"error"`
	}
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if json.Unmarshal(raw, &body) == nil && body.Error.Message != "" {
		return &tufota.Error{Code: body.Error.Code, Message: body.Error.Message}
	}
	return tufota.Errorf(tufota.EInternal, "server answered %s", resp.Status)
}

// waitReady polls /healthz until the server answers or ctx ends.
func waitReady(ctx context.Context, hc *http.Client, base string) error {
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/healthz", nil)
		resp, err := hc.Do(req)
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("server at %s not ready: %w", base, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}
