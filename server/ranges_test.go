package server

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/tufota/tufota/access"
	"github.com/tufota/tufota/signer"
)

// TestManyRangesRefused asks for a 4 KiB target with up to 4,000 ranges:
// more than maxRanges answer 416 with a short body (they used to return a
// multipart body 140 times the file); a few ranges still answer 206.
func TestManyRangesRefused(t *testing.T) {
	ts := newTestServer(t)
	const size = 4 << 10
	if _, err := ts.cfg.Releases.Push(context.Background(), signer.PushRequest{Name: "ranges", Version: "1.0.0", Hardware: []string{"pump-a"}, File: "fw.bin"},
		strings.NewReader(strings.Repeat("r", size)), 1<<20, "test"); err != nil {
		t.Fatal(err)
	}
	url := ts.http.URL + ts.targetURL(t, "ranges/1.0.0/fw.bin")
	for _, tc := range []struct {
		ranges int
		want   int
	}{
		{1, http.StatusPartialContent},
		{2, http.StatusPartialContent},
		{maxRanges, http.StatusPartialContent},
		{maxRanges + 1, http.StatusRequestedRangeNotSatisfiable},
		{4000, http.StatusRequestedRangeNotSatisfiable},
	} {
		t.Run(fmt.Sprint(tc.ranges), func(t *testing.T) {
			specs := make([]string, tc.ranges)
			for i := range specs {
				specs[i] = fmt.Sprintf("%d-%d", i, i)
			}
			req := httptest.NewRequest(http.MethodGet, url, nil)
			req.RequestURI = ""
			req.Header.Set("Range", "bytes="+strings.Join(specs, ","))
			resp, body := ts.do(t, req, ts.tokens[access.RoleDevice])
			if resp.StatusCode != tc.want {
				t.Fatalf("status = %d, want %d (%d bytes)", resp.StatusCode, tc.want, len(body))
			}
			if len(body) > size {
				t.Errorf("answer is %d bytes for a %d-byte target", len(body), size)
			}
		})
	}
}
