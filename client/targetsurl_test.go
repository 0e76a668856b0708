package client_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/tufota/tufota/client"
	repofixtures "github.com/tufota/tufota/repo-fixtures"
)

// cdn serves the target files of a fixture under /bucket/targets/...,
// honestly, with one byte flipped, or not at all, and records the
// Authorization headers it was sent.
type cdn struct {
	next http.Handler // the fixture's /tuf/ handler
	mode string       // "ok", "tampered", "missing"

	mu    sync.Mutex
	auths []string
	hits  int
}

func (c *cdn) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	c.auths = append(c.auths, r.Header.Get("Authorization"))
	c.hits++
	c.mu.Unlock()
	rest, ok := strings.CutPrefix(r.URL.Path, "/bucket/targets/")
	if !ok || c.mode == "missing" {
		http.NotFound(w, r)
		return
	}
	r2 := r.Clone(r.Context())
	r2.URL.Path = "/tuf/targets/" + rest
	rec := httptest.NewRecorder()
	c.next.ServeHTTP(rec, r2)
	body := rec.Body.Bytes()
	if c.mode == "tampered" && len(body) > 0 {
		body[len(body)/2] ^= 0xff
	}
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	_, _ = w.Write(body)
}

// TestTargetsURL: with Config.TargetsURL the image comes from the CDN (the
// server refuses to serve targets here), is verified against the signed
// metadata all the same, and the device token never reaches the CDN.
func TestTargetsURL(t *testing.T) {
	t.Parallel()
	fx, err := repofixtures.Load(filepath.Join(fixturesDir, "valid"))
	if err != nil {
		t.Fatal(err)
	}
	tuf := fx.Served().Handler("/tuf/")
	mux := http.NewServeMux()
	mux.HandleFunc("/tuf/targets/", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "targets come from the CDN in this test", http.StatusGone)
	})
	mux.Handle("/tuf/", tuf)
	mux.HandleFunc("GET /api/v1/device/update", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(fx.Meta.Offer)
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()

	for _, tc := range []struct {
		mode string
		want error
	}{
		{"ok", nil},
		{"tampered", client.ErrHashMismatch},
		{"missing", client.ErrServer},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			c := &cdn{next: tuf, mode: tc.mode}
			cdnSrv := httptest.NewServer(c)
			defer cdnSrv.Close()
			cl, err := client.New(client.Config{
				ServerURL: srv.URL, TargetsURL: cdnSrv.URL + "/bucket/", TrustedRoot: fx.Trusted, StateDir: t.TempDir(),
				DeviceID: "cdn-device", Token: "device-secret", HardwareID: fx.Meta.Hardware,
				CurrentVersion: fx.Meta.CurrentVersion, HTTPClient: srv.Client(), Retry: client.RetryPolicy{Sleep: noSleep},
			})
			if err != nil {
				t.Fatal(err)
			}
			upd, err := cl.Check(t.Context())
			if err != nil || upd == nil {
				t.Fatalf("Check = %+v, %v", upd, err)
			}
			dst := filepath.Join(t.TempDir(), "fw.bin")
			err = cl.Download(t.Context(), upd, dst)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Download from the CDN: %v", err)
				}
				got, _ := os.ReadFile(dst)
				if !bytes.Equal(got, repofixtures.Image(fx.Meta.Offer.Name, fx.Meta.Offer.Version)) {
					t.Fatal("image from the CDN differs from the signed one")
				}
			} else {
				if !errors.Is(err, tc.want) {
					t.Fatalf("Download = %v, want %v", err, tc.want)
				}
				var se *client.ServerError
				if tc.mode == "missing" && (!errors.As(err, &se) || se.Status != http.StatusNotFound) {
					t.Fatalf("Download = %v, want a 404 ServerError", err)
				}
				assertNoFile(t, dst)
			}
			c.mu.Lock()
			defer c.mu.Unlock()
			if c.hits == 0 {
				t.Fatal("the CDN was never asked")
			}
			for _, a := range c.auths {
				if a != "" {
					t.Fatalf("the CDN received an Authorization header %q", a)
				}
			}
		})
	}
}

func TestTargetsURLMustBeHTTP(t *testing.T) {
	t.Parallel()
	fx, err := repofixtures.Load(filepath.Join(fixturesDir, "valid"))
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"ftp://cdn.example/x", "cdn.example/x", "https://cdn.example/x?sig=1"} {
		_, err := client.New(client.Config{ServerURL: "https://ota.example", TargetsURL: u, TrustedRoot: fx.Trusted,
			StateDir: t.TempDir(), DeviceID: "d", HardwareID: "h"})
		if err == nil {
			t.Errorf("TargetsURL %q accepted", u)
		}
	}
}
