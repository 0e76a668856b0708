package replicas

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tufota/tufota/internal/testenv"
	"github.com/tufota/tufota/rollout"
	"github.com/tufota/tufota/server"
	"github.com/tufota/tufota/signer"
	"github.com/tufota/tufota/storage"
)

// apiCall is one raw request to a replica with the admin token.
func (c *cluster) apiCall(method, url string, body io.Reader, contentType string) (status int, retryAfter string, e server.ErrorBody, took time.Duration) {
	c.T.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		c.T.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+c.AdminToken)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	start := time.Now()
	resp, err := c.HC.Do(req) // the client's 30s timeout turns a hang into a failure
	took = time.Since(start)
	if err != nil {
		c.T.Fatalf("%s %s: %v (after %v): the server must answer, not hang", method, url, err, took)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 400 {
		_ = json.Unmarshal(b, &e)
	}
	return resp.StatusCode, resp.Header.Get("Retry-After"), e, took
}

// wantUnavailable checks a 503 with Retry-After and a "storage
// unavailable" message.
func wantUnavailable(t *testing.T, what string, status int, retryAfter string, e server.ErrorBody, took time.Duration) {
	t.Helper()
	if status != http.StatusServiceUnavailable || retryAfter == "" || e.Error.Code != "unavailable" ||
		!strings.Contains(e.Error.Message, "storage unavailable") {
		t.Fatalf("%s during the outage: status %d, Retry-After %q, error %+v; want 503, Retry-After, code unavailable, \"storage unavailable: ...\"",
			what, status, retryAfter, e)
	}
	t.Logf("%s during the outage: 503 in %v: %s", what, took, e.Error.Message)
}

// TestFaultsOutagesAndRecovery stops a private MinIO in the middle of an
// upload and in the middle of a publish, and a private PostgreSQL during a
// rollout update. During each outage requests fail at once with 503,
// Retry-After and "storage unavailable", /readyz names the failing
// dependency, and the leader steps down while it cannot renew its lease.
// After both return the same server (never restarted) serves again: the
// acknowledged release and rollout changes are there, neither interrupted
// release is visible anywhere, and the stock go-tuf updater verifies the
// repository.
func TestFaultsOutagesAndRecovery(t *testing.T) {
	m := testenv.StartMinIO(t)
	pg := testenv.StartPostgres(t)
	const lease = 3 * time.Second
	c := initCluster(t, map[string]string{"AWS_ACCESS_KEY_ID": m.AccessKey, "AWS_SECRET_ACCESS_KEY": m.SecretKey},
		"--storage", "s3://tufota-faults/repo?endpoint="+m.Endpoint+"&secure=false", "--db", pg.URL)
	s := c.startReplica("S", "--lease-period", lease.String())
	waitFor(t, "the server is elected", lease, c.roleIs(s.url, "leader"))
	ctx := context.Background()

	// Acknowledged before any fault.
	fw, want := c.WriteFirmware("pump.bin", 64<<10)
	if _, err := c.pushAt(s.url, fw, "pump-fw", "1.0.0"); err != nil {
		t.Fatal(err)
	}
	c.RegisterDevice("dev-1", "pump-a", "0.9.0")
	ro := c.CreateRollout("--release", "pump-fw@1.0.0", "--cohort", "hardware=pump-a", "--waves", "100%")
	c.MustCLI("rollout", "start", ro, "--reason", "before the faults")

	t.Run("MinIO stops mid-upload", func(t *testing.T) {
		const size = 40 << 20 // a multipart upload of 16 MiB parts
		pr, pw := io.Pipe()
		mw := multipart.NewWriter(pw)
		type answer struct {
			status     int
			retryAfter string
			e          server.ErrorBody
			took       time.Duration
		}
		got := make(chan answer, 1)
		go func() {
			st, ra, e, took := c.apiCall(http.MethodPost, s.url+"/api/v1/releases", pr, mw.FormDataContentType())
			got <- answer{st, ra, e, took}
		}()
		part, _ := mw.CreateFormField("release")
		_ = json.NewEncoder(part).Encode(signer.PushRequest{Name: "pump-fw", Version: "2.0.0", Hardware: []string{"pump-a"}, File: "big.bin"})
		fp, _ := mw.CreateFormFile("file", "big.bin")
		chunk := make([]byte, 1<<20)
		_, _ = rand.Read(chunk)
		for range 24 { // the server has read 24 MiB: its first part is in S3
			if _, err := fp.Write(chunk); err != nil {
				t.Fatalf("upload body: %v", err)
			}
		}
		m.Stop()
		go func() {
			for range size>>20 - 24 {
				if _, err := fp.Write(chunk); err != nil {
					return // the server answered and closed the request
				}
			}
			_ = mw.Close()
			_ = pw.Close()
		}()
		a := <-got
		_ = pw.CloseWithError(io.ErrClosedPipe)
		wantUnavailable(t, "push with MinIO stopped mid-upload", a.status, a.retryAfter, a.e, a.took)

		st, ra, e, took := c.apiCall(http.MethodGet, s.url+"/tuf/timestamp.json", nil, "")
		wantUnavailable(t, "GET /tuf/timestamp.json", st, ra, e, took)
		r, code, err := c.readyz(s.url)
		if err != nil || code != http.StatusServiceUnavailable || r.Checks["storage"] == "ok" || r.Checks["database"] != "ok" {
			t.Fatalf("/readyz with MinIO down = %d %+v %v; want 503 naming storage, database ok", code, r, err)
		}
		m.Start()
		waitFor(t, "/readyz after MinIO returned", 30*time.Second, func() (bool, string) {
			r, code, err := c.readyz(s.url)
			return code == http.StatusOK, fmt.Sprintf("%d %+v %v", code, r, err)
		})
	})

	t.Run("MinIO stops mid-publish", func(t *testing.T) {
		// Hold the repository lock as another replica would: the push
		// stages its image and records its row, then waits to publish.
		db, err := storage.OpenDB(ctx, pg.URL)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		unlock, err := db.Locker(repositoryLock).Lock(ctx)
		if err != nil {
			t.Fatal(err)
		}
		fw2, _ := c.WriteFirmware("pump.bin", 32<<10)
		pushed := make(chan error, 1)
		go func() {
			_, err := c.pushAt(s.url, fw2, "pump-fw", "1.1.0")
			pushed <- err
		}()
		waitFor(t, "the push waits for the publish lock", 30*time.Second, func() (bool, string) {
			var n int64
			err := db.QueryRow(ctx, `SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted`).Scan(&n)
			return err == nil && n > 0, fmt.Sprintf("%d waiting, %v", n, err)
		})
		m.Stop()
		unlock()
		err = <-pushed
		if err == nil || !strings.Contains(err.Error(), "storage unavailable") {
			t.Fatalf("push with MinIO stopped mid-publish: err = %v, want storage unavailable", err)
		}
		t.Logf("push with MinIO stopped mid-publish: %v", err)
		m.Start()
	})

	t.Run("PostgreSQL stops during a rollout update", func(t *testing.T) {
		pg.Stop()
		st, ra, e, took := c.apiCall(http.MethodPost, s.url+"/api/v1/rollouts/"+ro+"/pause", strings.NewReader(`{"reason":"outage"}`), "application/json")
		wantUnavailable(t, "rollout pause with PostgreSQL stopped", st, ra, e, took)
		r, code, err := c.readyz(s.url)
		if err != nil || code != http.StatusServiceUnavailable || r.Checks["database"] == "ok" {
			t.Fatalf("/readyz with PostgreSQL down = %d %+v %v; want 503 naming the database", code, r, err)
		}
		// The leader cannot renew its lease: it stops its jobs.
		waitFor(t, "the leader steps down", lease, func() (bool, string) {
			r, _, err := c.readyz(s.url)
			return err == nil && r.Role == "follower" && r.LeaseError != "", fmt.Sprintf("%+v %v", r, err)
		})
		pg.Start()
		waitFor(t, "re-elected after PostgreSQL returned", 2*lease, c.roleIs(s.url, "leader"))
		c.MustCLI("rollout", "pause", ro, "--reason", "after the outage")
		if st := c.RolloutStatus(ro); st.State != rollout.Paused {
			t.Fatalf("rollout state after recovery = %s, want paused", st.State)
		}
	})

	// Recovery, without a restart: every acknowledged write is there, the
	// interrupted releases are nowhere, a new push works and the stock
	// go-tuf updater verifies the repository.
	waitFor(t, "/readyz after both returned", 30*time.Second, func() (bool, string) {
		r, code, err := c.readyz(s.url)
		return code == http.StatusOK, fmt.Sprintf("%d %+v %v", code, r, err)
	})
	fw3, want3 := c.WriteFirmware("pump.bin", 48<<10)
	if _, err := c.pushAt(s.url, fw3, "pump-fw", "1.2.0"); err != nil {
		t.Fatalf("push after recovery: %v", err)
	}
	var rels []signer.Release
	if err := json.Unmarshal([]byte(c.MustCLI("release", "list", "-o", "json")), &rels); err != nil {
		t.Fatal(err)
	}
	listed := map[string]string{}
	for _, r := range rels {
		listed[r.Version] = r.State
	}
	if listed["1.0.0"] != signer.StatePublished || listed["1.2.0"] != signer.StatePublished || len(listed) != 2 {
		t.Fatalf("releases after recovery = %v; want exactly 1.0.0 and 1.2.0 published", listed)
	}
	up := stockUpdater(t, c.Harness, s.url)
	for path, content := range map[string][]byte{"pump-fw/1.0.0/pump.bin": want, "pump-fw/1.2.0/pump.bin": want3} {
		ti, err := up.GetTargetInfo(path)
		if err != nil {
			t.Fatalf("acknowledged target %s: %v", path, err)
		}
		_, got, err := up.DownloadTarget(ti, "", "")
		if err != nil || !bytes.Equal(got, content) {
			t.Fatalf("stock updater download of %s: %v (bytes equal: %v)", path, err, bytes.Equal(got, content))
		}
	}
	for _, path := range []string{"pump-fw/2.0.0/big.bin", "pump-fw/1.1.0/pump.bin"} {
		if _, err := up.GetTargetInfo(path); err == nil {
			t.Fatalf("interrupted release %s is visible in the signed targets", path)
		}
	}
}

// repositoryLock is the database lock the server takes to write the TUF
// repository (cmd/tufota, servercmd.go).
const repositoryLock = "tuf-repository"
