package server

import (
	"context"
	"io"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/access"
	"github.com/tufota/tufota/signer"
	"github.com/tufota/tufota/storage"
)

// openAPIDownBlobs is a blob store that answers every read as an unreachable
// bucket does once down is set, and every write as a full disk once full
// is set.
type openAPIDownBlobs struct {
	fullBlobs
	down atomic.Bool
}

func (d *openAPIDownBlobs) Open(ctx context.Context, key string) (storage.Object, error) {
	if d.down.Load() {
		return nil, tufota.Errorf(tufota.EUnavailable, "storage unavailable: dial tcp 10.0.0.7:9000: connection refused")
	}
	return d.fullBlobs.Open(ctx, key)
}

func (d *openAPIDownBlobs) Stat(ctx context.Context, key string) (storage.Info, error) {
	if d.down.Load() {
		return storage.Info{}, tufota.Errorf(tufota.EUnavailable, "storage unavailable: dial tcp 10.0.0.7:9000: connection refused")
	}
	return d.fullBlobs.Stat(ctx, key)
}

// TestOpenAPIValidatesStorageFailures checks the documented answers of a
// server whose blob store is full (507, /readyz 503) or unreachable (503
// with Retry-After), with every request and response validated against
// the OpenAPI document.
func TestOpenAPIValidatesStorageFailures(t *testing.T) {
	var blobs *openAPIDownBlobs
	ts := newTestServerWith(t, func(b storage.Blobs) storage.Blobs {
		blobs = &openAPIDownBlobs{fullBlobs: fullBlobs{Blobs: b}}
		return blobs
	})
	v := ts.checkTraffic(t)
	ts.push(t, "fixture", "1.0.0")
	target := ts.targetURL(t, "fixture/1.0.0/fw.bin")
	push := func(version string) int {
		r, ct := pushBody(t, signer.PushRequest{Name: "full", Version: version, Hardware: []string{"pump-a"}, File: "fw.bin"}, []byte("firmware"))
		req := openAPIRequest(t, http.MethodPost, ts.http.URL+"/api/v1/releases", "", "")
		req.Body, req.Header["Content-Type"] = io.NopCloser(r), []string{ct}
		resp, _ := ts.do(t, req, ts.tokens[access.RoleReleaseEngineer])
		return resp.StatusCode
	}
	get := func(method, path string, role access.Role) int {
		resp, _ := ts.do(t, openAPIRequest(t, method, ts.http.URL+path, "", ""), ts.tokens[role])
		return resp.StatusCode
	}

	blobs.full.Store(true)
	if st := push("1.0.0"); st != http.StatusInsufficientStorage {
		t.Errorf("push on a full disk: status = %d, want 507", st)
	}
	if st := get(http.MethodGet, "/readyz", ""); st != http.StatusServiceUnavailable {
		t.Errorf("/readyz on a full disk: status = %d, want 503", st)
	}
	blobs.full.Store(false)

	blobs.down.Store(true)
	for _, method := range []string{http.MethodGet, http.MethodHead} {
		if st := get(method, target, access.RoleDevice); st != http.StatusServiceUnavailable {
			t.Errorf("%s target with the bucket down: status = %d, want 503", method, st)
		}
	}
	blobs.down.Store(false)
	if st := get(http.MethodGet, target, access.RoleDevice); st != http.StatusOK {
		t.Errorf("target after the bucket returned: status = %d, want 200", st)
	}

	for _, want := range []struct {
		method, path string
		status       int
	}{
		{"POST", "/api/v1/releases", 507},
		{"GET", "/readyz", 503},
		{"GET", "/tuf/targets/{path}", 503},
		{"HEAD", "/tuf/targets/{path}", 503},
	} {
		found := false
		for _, s := range v.statuses(want.method, want.path) {
			found = found || s == want.status
		}
		if !found {
			t.Errorf("%s %s: status %d not validated", want.method, want.path, want.status)
		}
	}
}
