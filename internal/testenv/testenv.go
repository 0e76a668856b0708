// Package testenv gives integration tests the real services that
// scripts/testenv.sh provisions for `make test` and .ci/run: a MinIO server, a
// throwaway PostgreSQL cluster and the SoftHSM2 PKCS#11 module.
//
// Every helper skips the calling test, loudly, under `go test -short`. Otherwise
// a missing environment variable fails the test ("… not set: run make test"), so
// an integration test can never pass by quietly doing nothing.
//
// Import it only from _test.go files. The helpers are safe to call from parallel
// tests, except SoftHSM, which sets SOFTHSM2_CONF with t.Setenv.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// The environment variables that scripts/testenv.sh exports.
const (
	EnvMinIOEndpoint  = "TUFOTA_TEST_MINIO_ENDPOINT"   // host:port of a MinIO server on loopback
	EnvMinIOAccessKey = "TUFOTA_TEST_MINIO_ACCESS_KEY" // its (random) root access key
	EnvMinIOSecretKey = "TUFOTA_TEST_MINIO_SECRET_KEY" // its (random) root secret key
	EnvPostgresURL    = "TUFOTA_TEST_POSTGRES_URL"     // superuser URL of a throwaway cluster
	EnvSoftHSMModule  = "TUFOTA_TEST_SOFTHSM_MODULE"   // path of libsofthsm2.so
)

// setupTimeout bounds every call a helper makes to a service.
const setupTimeout = 30 * time.Second

// MinIO returns the endpoint (host:port, plain HTTP) and root credentials of the
// MinIO server provisioned for this test run, after checking that it answers.
// Tests share the server: each creates its own bucket with a random name and
// removes it when done.
//
// MinIO skips the test under -short and fails it when the variables are unset
// or the server does not answer.
func MinIO(t testing.TB) (endpoint, accessKey, secretKey string) {
	t.Helper()
	v := require(t, "MinIO", EnvMinIOEndpoint, EnvMinIOAccessKey, EnvMinIOSecretKey)
	endpoint, accessKey, secretKey = v[0], v[1], v[2]

	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+endpoint+"/minio/health/live", nil)
	if err != nil {
		t.Fatalf("testenv: %s=%q: %v", EnvMinIOEndpoint, endpoint, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("testenv: MinIO at %s does not answer: %v (run make test, which starts it)", endpoint, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("testenv: MinIO at %s: health check status = %d, want 200", endpoint, resp.StatusCode)
	}
	return endpoint, accessKey, secretKey
}

// Postgres creates a fresh, empty database (tufota_test_<random>) in the
// PostgreSQL cluster provisioned for this test run and returns a URL to it
// (postgres://…, connecting as the cluster's superuser). The database is
// dropped, with any connections still open to it, when the test and its
// subtests finish; close your own pools in a t.Cleanup registered after this
// call.
//
// Postgres skips the test under -short and fails it when the variable is unset
// or the database cannot be created.
func Postgres(t testing.TB) string {
	t.Helper()
	admin := require(t, "PostgreSQL", EnvPostgresURL)[0]
	u, err := url.Parse(admin)
	if err != nil {
		t.Fatalf("testenv: %s: %v", EnvPostgresURL, err)
	}
	name := "tufota_test_" + randomHex(8)

	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	if err := adminExec(ctx, admin, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("testenv: create database %s on %s: %v (run make test, which starts PostgreSQL)", name, u.Redacted(), err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
		defer cancel()
		if err := adminExec(ctx, admin, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("testenv: drop database %s: %v", name, err)
		}
	})
	u.Path = "/" + name
	return u.String()
}

// adminExec runs one statement on its own connection to the cluster.
func adminExec(ctx context.Context, adminURL, stmt string) error {
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, stmt); err != nil {
		return fmt.Errorf("%s: %w", strings.Fields(stmt)[0], err)
	}
	return nil
}

// HSM is a SoftHSM2 token made for one test.
type HSM struct {
	Module     string // path of the PKCS#11 module (libsofthsm2.so)
	Conf       string // the softhsm2.conf file; SOFTHSM2_CONF points to it for the test
	TokenDir   string // the token directory Conf names
	TokenLabel string // random label of the initialised token
	PIN        string // random user PIN
	SOPIN      string // random security officer PIN
}

// KeyURI returns the PKCS#11 URI (RFC 7512 style, as the signer package reads
// it) of the object labelled object in this token, with the module path and
// the PIN inline (pin-value=, for tests only).
func (h HSM) KeyURI(object string) string {
	return fmt.Sprintf("pkcs11:token=%s;object=%s?module-path=%s&pin-value=%s",
		url.PathEscape(h.TokenLabel), url.PathEscape(object), h.Module, url.QueryEscape(h.PIN))
}

// SoftHSM makes a private SoftHSM2 configuration in a temp dir (its own token
// directory), initialises a token with a random label, PIN and SO PIN using
// softhsm2-util, and sets SOFTHSM2_CONF to it for the rest of the test (so the
// test must not be parallel: t.Setenv panics there). The token is gone when the
// test ends.
//
// SoftHSM2 reads SOFTHSM2_CONF when the module is initialised (C_Initialize):
// finalise every PKCS#11 context a test opens (crypto11's Context.Close) before
// the next test makes its own token.
//
// SoftHSM skips the test under -short and fails it when the variable is unset,
// the module or softhsm2-util is missing, or the token cannot be initialised.
func SoftHSM(t testing.TB) HSM {
	t.Helper()
	module := require(t, "SoftHSM2", EnvSoftHSMModule)[0]
	if _, err := os.Stat(module); err != nil {
		t.Fatalf("testenv: %s: %v (run make test, which installs softhsm2)", EnvSoftHSMModule, err)
	}
	util, err := exec.LookPath("softhsm2-util")
	if err != nil {
		t.Fatalf("testenv: softhsm2-util not found: %v (run make test, which installs softhsm2)", err)
	}

	dir := t.TempDir()
	h := HSM{
		Module:     module,
		Conf:       filepath.Join(dir, "softhsm2.conf"),
		TokenDir:   filepath.Join(dir, "tokens"),
		TokenLabel: "tufota-test-" + randomHex(4),
		PIN:        randomHex(8),
		SOPIN:      randomHex(8),
	}
	if err := os.Mkdir(h.TokenDir, 0o700); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	conf := fmt.Sprintf("directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n", h.TokenDir)
	if err := os.WriteFile(h.Conf, []byte(conf), 0o600); err != nil {
		t.Fatalf("testenv: %v", err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, util, "--init-token", "--free",
		"--label", h.TokenLabel, "--pin", h.PIN, "--so-pin", h.SOPIN, "--module", h.Module)
	cmd.Env = append(os.Environ(), "SOFTHSM2_CONF="+h.Conf)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("testenv: softhsm2-util --init-token: %v\n%s", err, out)
	}
	t.Setenv("SOFTHSM2_CONF", h.Conf)
	return h
}

// require returns the values of the named environment variables, skipping the
// test under -short and failing it when any is unset.
func require(t testing.TB, service string, names ...string) []string {
	t.Helper()
	vals, skip, fatal := lookup(testing.Short(), os.Getenv, t.Name(), service, names...)
	if skip != "" {
		t.Skip(skip)
	}
	if fatal != "" {
		t.Fatal(fatal)
	}
	return vals
}

// lookup is require's decision, without the testing.TB: it returns either the
// values, a skip message, or a fatal message.
func lookup(short bool, getenv func(string) string, test, service string, names ...string) (vals []string, skip, fatal string) {
	if short {
		return nil, fmt.Sprintf("SKIPPING integration test %s (needs %s): -short; run make test to run it", test, service), ""
	}
	var missing []string
	vals = make([]string, len(names))
	for i, n := range names {
		vals[i] = getenv(n)
		if vals[i] == "" {
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 {
		return nil, "", fmt.Sprintf("testenv: %s not set: run make test (it provisions %s for integration tests)", strings.Join(missing, ", "), service)
	}
	return vals, "", ""
}

// randomHex returns 2n random hex digits.
func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (it crashes the program instead) since Go 1.24
	return hex.EncodeToString(b)
}
