package server

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/tufota/tufota/access"
	"github.com/tufota/tufota/signer"
	"github.com/tufota/tufota/storage"
)

// TestTruncatedUploadIs400 sends release uploads that stop before the
// closing boundary: 400 naming the truncation, not 500, and nothing staged
// or recorded.
func TestTruncatedUploadIs400(t *testing.T) {
	ts := newTestServer(t)
	ctx := context.Background()
	fw := bytes.Repeat([]byte("firmware"), 4096)
	for _, tc := range []struct {
		name string
		cut  func(body []byte, boundary string) []byte
	}{
		{"no closing boundary", func(b []byte, boundary string) []byte {
			return b[:bytes.LastIndex(b, []byte("\r\n--"+boundary+"--"))]
		}},
		{"cut inside the file", func(b []byte, boundary string) []byte {
			return b[:bytes.Index(b, fw)+len(fw)/2]
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			version := "2.0." + map[bool]string{true: "1", false: "2"}[tc.name == "no closing boundary"]
			r, ct := pushBody(t, signer.PushRequest{Name: "trunc", Version: version, Hardware: []string{"pump-a"}, File: "fw.bin"}, fw)
			full, _ := io.ReadAll(r)
			boundary := ct[strings.Index(ct, "boundary=")+len("boundary="):]
			req := httptest.NewRequest(http.MethodPost, ts.http.URL+"/api/v1/releases", bytes.NewReader(tc.cut(full, boundary)))
			req.RequestURI = ""
			req.Header.Set("Content-Type", ct)
			resp, body := ts.do(t, req, ts.tokens[access.RoleReleaseEngineer])
			if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "truncated") {
				t.Fatalf("status = %d (%s), want 400 naming the truncation", resp.StatusCode, body)
			}
			if _, err := ts.cfg.Releases.Get(ctx, "trunc", version); err == nil {
				t.Error("the truncated release was recorded")
			}
			if staged, err := ts.cfg.Blobs.List(ctx, signer.StagingPrefix); err != nil || len(staged) != 0 {
				t.Errorf("staging holds %v (%v), want nothing", staged, err)
			}
		})
	}
}

// fullBlobs is a blob store whose writes fail as a full disk does (ENOSPC
// from the kernel, unwrapped) once full is set.
type fullBlobs struct {
	storage.Blobs
	full atomic.Bool
}

func (f *fullBlobs) Put(ctx context.Context, key string, r io.Reader) (int64, error) {
	if f.full.Load() {
		n, _ := io.CopyN(io.Discard, r, 512)
		return n, &os.PathError{Op: "write", Path: key, Err: syscall.ENOSPC}
	}
	return f.Blobs.Put(ctx, key, r)
}

// TestDiskFullIs507AndNotReady fills the blob store: a push answers 507
// Insufficient Storage naming the blob store (not "service unavailable;
// retry later"), /readyz fails with storage "full", and both recover when
// space returns.
func TestDiskFullIs507AndNotReady(t *testing.T) {
	var blobs *fullBlobs
	ts := newTestServerWith(t, func(b storage.Blobs) storage.Blobs {
		blobs = &fullBlobs{Blobs: b}
		return blobs
	})
	push := func(version string) (*http.Response, []byte) {
		r, ct := pushBody(t, signer.PushRequest{Name: "full", Version: version, Hardware: []string{"pump-a"}, File: "fw.bin"}, []byte("firmware"))
		req := httptest.NewRequest(http.MethodPost, ts.http.URL+"/api/v1/releases", r)
		req.RequestURI = ""
		req.Header.Set("Content-Type", ct)
		return ts.do(t, req, ts.tokens[access.RoleReleaseEngineer])
	}
	ready := func() (int, Readiness) {
		req := httptest.NewRequest(http.MethodGet, ts.http.URL+"/readyz", nil)
		req.RequestURI = ""
		resp, body := ts.do(t, req, "")
		var r Readiness
		if err := json.Unmarshal(body, &r); err != nil {
			t.Fatalf("/readyz body %s: %v", body, err)
		}
		return resp.StatusCode, r
	}
	if code, r := ready(); code != http.StatusOK {
		t.Fatalf("/readyz before the disk filled = %d %+v, want 200", code, r)
	}

	blobs.full.Store(true)
	resp, body := push("1.0.0")
	if resp.StatusCode != http.StatusInsufficientStorage || !strings.Contains(string(body), "blob store is full") {
		t.Errorf("push on a full disk: status = %d (%s), want 507 naming the full blob store", resp.StatusCode, body)
	}
	if strings.Contains(string(body), "staging/") {
		t.Errorf("push on a full disk: body %s leaks the storage key", body)
	}
	if code, r := ready(); code != http.StatusServiceUnavailable || r.Checks["storage"] != "full" || r.Checks["database"] != "ok" {
		t.Errorf("/readyz on a full disk = %d %+v, want 503 with storage full", code, r)
	}

	blobs.full.Store(false)
	if code, r := ready(); code != http.StatusOK {
		t.Errorf("/readyz after space returned = %d %+v, want 200", code, r)
	}
	if resp, body := push("1.0.1"); resp.StatusCode != http.StatusCreated {
		t.Errorf("push after space returned: status = %d (%s), want 201", resp.StatusCode, body)
	}
	if probes, err := blobs.List(context.Background(), probeKeyPrefix); err != nil || len(probes) != 0 {
		t.Errorf("readiness probes left %v (%v), want nothing", probes, err)
	}
}
