package server

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tufota/tufota/access"
)

// TestMetadataETags: metadata is served with a strong ETag; a client that
// has the current file gets 304 and no body; after a publish the same
// If-None-Match gets the new file with a new ETag, byte for byte what the
// blob store holds; HEAD answers without a body; versioned files are
// immutable and timestamp.json is revalidated.
func TestMetadataETags(t *testing.T) {
	ts := newTestServer(t)
	dev := ts.tokens[access.RoleDevice]
	get := func(method, file, inm string) (*http.Response, []byte) {
		t.Helper()
		req := httptest.NewRequest(method, ts.http.URL+"/tuf/"+file, nil)
		req.RequestURI = ""
		if inm != "" {
			req.Header.Set("If-None-Match", inm)
		}
		return ts.do(t, req, dev)
	}
	stored := func(file string) []byte {
		t.Helper()
		obj, err := ts.cfg.Blobs.Open(context.Background(), "metadata/"+file)
		if err != nil {
			t.Fatal(err)
		}
		defer obj.Close()
		var b bytes.Buffer
		if _, err := b.ReadFrom(obj); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}

	resp, body := get(http.MethodGet, "timestamp.json", "")
	etag := resp.Header.Get("ETag")
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(etag, `"`) || strings.HasPrefix(etag, `W/`) || len(etag) != 66 {
		t.Fatalf("GET timestamp.json = %d, ETag %q; want 200 with a strong SHA-256 ETag", resp.StatusCode, etag)
	}
	if !bytes.Equal(body, stored("timestamp.json")) {
		t.Fatal("served timestamp.json differs from the stored one")
	}
	if cc := resp.Header.Get("Cache-Control"); cc != "no-cache" {
		t.Fatalf("timestamp.json Cache-Control = %q, want no-cache", cc)
	}
	if resp, body := get(http.MethodGet, "timestamp.json", etag); resp.StatusCode != http.StatusNotModified || len(body) != 0 {
		t.Fatalf("GET with the current ETag = %d, %d bytes; want 304, none", resp.StatusCode, len(body))
	}
	if resp, body := get(http.MethodHead, "timestamp.json", ""); resp.StatusCode != http.StatusOK || len(body) != 0 || resp.Header.Get("ETag") != etag {
		t.Fatalf("HEAD = %d, %d bytes, ETag %q; want 200, no body, %q", resp.StatusCode, len(body), resp.Header.Get("ETag"), etag)
	}

	ts.push(t, "etag-fw", "1.0.0")

	resp, body = get(http.MethodGet, "timestamp.json", etag)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("ETag") == etag {
		t.Fatalf("after a publish, GET with the old ETag = %d, ETag %q; want 200 and a new ETag", resp.StatusCode, resp.Header.Get("ETag"))
	}
	if !bytes.Equal(body, stored("timestamp.json")) {
		t.Fatal("after a publish, served timestamp.json differs from the stored one")
	}
	if !bytes.Contains(body, []byte(`"version":2`)) && !bytes.Contains(body, []byte(`"version": 2`)) {
		t.Fatalf("after a publish timestamp.json is %s; want version 2", body)
	}

	resp, body = get(http.MethodGet, "2.snapshot.json", "")
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, stored("2.snapshot.json")) {
		t.Fatalf("GET 2.snapshot.json = %d", resp.StatusCode)
	}
	if cc := resp.Header.Get("Cache-Control"); !strings.Contains(cc, "immutable") {
		t.Fatalf("2.snapshot.json Cache-Control = %q, want immutable", cc)
	}
	if resp, _ := get(http.MethodGet, "2.snapshot.json", resp.Header.Get("ETag")); resp.StatusCode != http.StatusNotModified {
		t.Fatalf("versioned file with its ETag = %d, want 304", resp.StatusCode)
	}
	if resp, _ := get(http.MethodGet, "99.snapshot.json", ""); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("missing versioned file = %d, want 404", resp.StatusCode)
	}
}

// TestMetadataRevalidation: a timestamp.json written by another replica
// (straight into the shared blob store) is served once the copy is older
// than metaRevalidate; versioned files are read once.
func TestMetadataRevalidation(t *testing.T) {
	ts := newTestServer(t)
	ctx := context.Background()
	now := time.Now()
	c := newMetaCache(ts.cfg.Blobs, func() time.Time { return now })
	first, err := c.get(ctx, "timestamp.json")
	if err != nil {
		t.Fatal(err)
	}
	other := []byte(`{"written":"by another replica"}`)
	if _, err := ts.cfg.Blobs.Put(ctx, "metadata/timestamp.json", bytes.NewReader(other)); err != nil {
		t.Fatal(err)
	}
	if e, _ := c.get(ctx, "timestamp.json"); e.etag != first.etag {
		t.Fatal("copy re-read before metaRevalidate")
	}
	now = now.Add(metaRevalidate)
	if e, err := c.get(ctx, "timestamp.json"); err != nil || !bytes.Equal(e.body, other) {
		t.Fatalf("after metaRevalidate: %v, %q; want the other replica's file", err, e.body)
	}
	// This server's own write is served at once.
	mine := []byte(`{"written":"here"}`)
	c.written("timestamp.json", mine)
	if e, _ := c.get(ctx, "timestamp.json"); !bytes.Equal(e.body, mine) {
		t.Fatalf("after a local write: %q", e.body)
	}
	// A slow read that started before the local write does not replace it.
	c.store("timestamp.json", newMetaEntry(other, now, now.Add(-time.Millisecond)))
	if e, _ := c.get(ctx, "timestamp.json"); !bytes.Equal(e.body, mine) {
		t.Fatalf("an older read replaced a newer write: %q", e.body)
	}
}

// TestMetadataCacheBounds: the copies kept stay within the file and byte
// bounds, and the mutable files are never the ones evicted.
func TestMetadataCacheBounds(t *testing.T) {
	c := newMetaCache(nil, time.Now)
	c.maxFiles, c.maxBytes = 8, 10_000
	now := time.Now()
	c.store("timestamp.json", newMetaEntry(make([]byte, 500), now, now))
	for i := range 100 {
		c.store(fmt.Sprintf("%d.targets.json", i+1), newMetaEntry(make([]byte, 1500), now, now))
		total := 0
		for _, e := range c.m {
			total += len(e.body)
		}
		if len(c.m) > c.maxFiles || c.bytes > c.maxBytes || total != c.bytes {
			t.Fatalf("after %d stores: %d files, %d bytes (counted %d); bounds %d files, %d bytes", i+1, len(c.m), total, c.bytes, c.maxFiles, c.maxBytes)
		}
		if _, ok := c.m["timestamp.json"]; !ok {
			t.Fatal("timestamp.json was evicted")
		}
	}
}
