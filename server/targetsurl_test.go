package server

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/tufota/tufota"
)

// TestTargetsURLRedirect: with a targets URL, an authenticated GET or HEAD of
// a target answers 307 to the same key under the bucket/CDN base; metadata is
// still served here; an unauthenticated request gets 401, not the redirect.
func TestTargetsURLRedirect(t *testing.T) {
	ts := newTestServer(t)
	ts.push(t, "pumpfw", "1.0.0")
	cfg, err := WithTargetsURL(ts.cfg, "https://cdn.example/ota/prod/")
	if err != nil {
		t.Fatal(err)
	}
	ts.cfg = cfg // before any request of this test
	p := ts.targetURL(t, "pumpfw/1.0.0/fw.bin")
	noFollow := &http.Client{Transport: ts.http.Client().Transport,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(method, path, token string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(method, ts.http.URL+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		res, err := noFollow.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res
	}
	for _, method := range []string{http.MethodGet, http.MethodHead} {
		res := get(method, p, ts.tokens["device"])
		want := "https://cdn.example/ota/prod/targets/" + strings.TrimPrefix(p, "/tuf/targets/")
		if res.StatusCode != http.StatusTemporaryRedirect || res.Header.Get("Location") != want {
			t.Fatalf("%s %s = %d Location %q, want 307 to %q", method, p, res.StatusCode, res.Header.Get("Location"), want)
		}
	}
	if res := get(http.MethodGet, p, ""); res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("unauthenticated GET %s = %d, want 401", p, res.StatusCode)
	}
	if res := get(http.MethodGet, "/tuf/timestamp.json", ts.tokens["device"]); res.StatusCode != http.StatusOK {
		t.Fatalf("timestamp.json = %d, want 200 from the server itself", res.StatusCode)
	}
}

func TestWithTargetsURLRefusesBadURLs(t *testing.T) {
	t.Parallel()
	for _, u := range []string{"", "cdn.example", "ftp://cdn.example", "https://cdn.example/x?sig=abc", "https://cdn.example/#f"} {
		if _, err := WithTargetsURL(Config{}, u); !errors.Is(err, tufota.ErrInvalid) {
			t.Errorf("WithTargetsURL(%q) = %v, want EInvalid", u, err)
		}
	}
}
