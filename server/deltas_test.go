package server

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tufota/tufota/access"
	"github.com/tufota/tufota/signer"
)

// TestDeltaWorkerAndReleaseShow runs the background delta worker in a
// serving server and reads its outcome through release show.
func TestDeltaWorkerAndReleaseShow(t *testing.T) {
	ts := newTestServer(t)
	ts.cfg.Deltas = DeltaConfig{Every: 20 * time.Millisecond}
	// A small point release of a 64 KiB image.
	base := strings.Repeat("pump firmware code block ", 64<<10/25)
	for _, v := range []struct{ version, image string }{{"1.0.0", base}, {"1.1.0", strings.Replace(base, "code", "CODE", 3)}} {
		if _, err := ts.cfg.Releases.Push(context.Background(), signer.PushRequest{Name: "pump", Version: v.version, Hardware: []string{"pump-a"}, File: "fw.bin"},
			strings.NewReader(v.image), 1<<20, "test"); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- ts.Serve(ctx, ln, nil) }()
	defer func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()

	var got releaseWithDeltas
	giveUp := time.Now().Add(2 * time.Minute) // a hung worker fails here, not at the go test timeout
	for len(got.Deltas) == 0 {
		if time.Now().After(giveUp) {
			t.Fatal("the delta worker recorded no delta")
		}
		resp, body := ts.do(t, mustRequest(t, http.MethodGet, ts.http.URL+"/api/v1/releases/pump/1.1.0"), ts.tokens[access.RoleAuditor])
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("release show = %d %s", resp.StatusCode, body)
		}
		if err := json.Unmarshal(body, &got); err != nil {
			t.Fatal(err)
		}
		if len(got.Deltas) == 0 {
			time.Sleep(10 * time.Millisecond)
		}
	}
	d := got.Deltas[0]
	if d.State != signer.DeltaPublished || d.BaseVersion != "1.0.0" || d.TargetPath != "pump/1.1.0/delta-from-1.0.0" || d.Length == 0 || d.Length >= d.FullLength/10 {
		t.Fatalf("delta = %+v, want a published small delta from 1.0.0", d)
	}
	if got.Version != "1.1.0" || got.SHA256 == "" {
		t.Fatalf("release show lost the release fields: %+v", got.Release)
	}
}
