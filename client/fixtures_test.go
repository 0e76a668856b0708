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
	"testing"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/tufota/tufota/client"
	repofixtures "github.com/tufota/tufota/repo-fixtures"
)

const fixturesDir = "../repo-fixtures"

// tufErrors maps a fixture's tuf_error to the go-tuf error that must be in
// the chain.
var tufErrors = map[string]error{
	"expired":     &metadata.ErrExpiredMetadata{},
	"bad_version": &metadata.ErrBadVersionNumber{},
	"unsigned":    &metadata.ErrUnsignedMetadata{},
	"length":      &metadata.ErrDownloadLengthMismatch{},
	"value":       &metadata.ErrValue{},
}

// tufCodes maps a fixture's tuf_error to the report code the device sends.
var tufCodes = map[string]string{
	"expired":     "metadata_expired",
	"bad_version": "metadata_rollback",
	"unsigned":    "metadata_signature",
	"length":      "metadata_oversized",
	"value":       "metadata",
}

// TestFixtures serves every checked-in fixture repository over httptest
// and asserts the exact outcome its fixture.json names.
func TestFixtures(t *testing.T) {
	t.Parallel()
	names, err := repofixtures.Names(fixturesDir)
	if err != nil {
		t.Fatal(err)
	}
	if len(names) < 27 {
		t.Fatalf("found %d fixtures in %s, want all 27", len(names), fixturesDir)
	}
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			fx, err := repofixtures.Load(filepath.Join(fixturesDir, name))
			if err != nil {
				t.Fatal(err)
			}
			runFixture(t, fx)
		})
	}
}

func runFixture(t *testing.T, fx *repofixtures.Fixture) {
	t.Helper()
	m := fx.Meta
	mux := http.NewServeMux()
	mux.Handle("/tuf/", fx.Served().Handler("/tuf/"))
	mux.HandleFunc("GET /api/v1/device/update", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(m.Offer)
	})
	mux.HandleFunc("POST /api/v1/device/status", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()

	state := t.TempDir()
	if fx.Cached != nil {
		dir := filepath.Join(state, "metadata")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		for name, b := range fx.Cached {
			if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	c, err := client.New(client.Config{
		ServerURL: srv.URL, TrustedRoot: fx.Trusted, StateDir: state,
		DeviceID: "fixture-device", HardwareID: m.Hardware, CurrentVersion: m.CurrentVersion,
		HTTPClient: srv.Client(), Retry: client.RetryPolicy{Sleep: noSleep},
	})
	if err != nil {
		t.Fatal(err)
	}

	upd, err := c.Check(t.Context())
	if got := outcome(err); got != m.Check {
		t.Fatalf("Check = %+v, %v; outcome %q, want %q (%s)", upd, err, got, m.Check, m.Description)
	}
	if m.TUFError != "" {
		want, ok := tufErrors[m.TUFError]
		if !ok {
			t.Fatalf("unknown tuf_error %q", m.TUFError)
		}
		if !errors.Is(err, want) {
			t.Fatalf("Check error = %v; want go-tuf %T in the chain", err, want)
		}
		if code := client.ErrorCode(err); code != tufCodes[m.TUFError] {
			t.Fatalf("ErrorCode(%v) = %q, want %q", err, code, tufCodes[m.TUFError])
		}
	}
	if m.Check != "ok" {
		if upd != nil {
			t.Fatalf("Check returned an update with its error: %+v", upd)
		}
		return
	}
	if upd == nil || upd.Target != m.Offer.Target || upd.Version != m.Offer.Version {
		t.Fatalf("Check = %+v, want the offered %s", upd, m.Offer.Target)
	}

	dst := filepath.Join(t.TempDir(), "fw.bin")
	err = c.Download(t.Context(), upd, dst)
	if got := outcome(err); got != m.Download {
		t.Fatalf("Download = %v; outcome %q, want %q (%s)", err, got, m.Download, m.Description)
	}
	if m.Download != "ok" {
		assertNoFile(t, dst)
		assertNoFile(t, client.PartialPath(c, upd))
		return
	}
	got, _ := os.ReadFile(dst)
	if !bytes.Equal(got, repofixtures.Image(m.Offer.Name, m.Offer.Version)) {
		t.Fatal("downloaded image differs from the signed one")
	}
	if err := c.MarkInstalled(t.Context(), upd); err != nil {
		t.Fatal(err)
	}
	if v := c.CurrentVersion(); v != m.Installs {
		t.Fatalf("installed %s, want %s", v, m.Installs)
	}
}

// outcome turns an error into a fixture outcome: "ok" or its error code.
func outcome(err error) string {
	if err == nil {
		return "ok"
	}
	// A fixture names the class; the finer metadata_* codes are checked
	// against its tuf_error.
	code := client.ErrorCode(err)
	if strings.HasPrefix(code, "metadata") {
		return "metadata"
	}
	return code
}
