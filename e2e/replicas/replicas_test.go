package replicas

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata/config"
	"github.com/theupdateframework/go-tuf/v2/metadata/updater"

	"github.com/tufota/tufota/apiclient"
	"github.com/tufota/tufota/e2e"
	"github.com/tufota/tufota/internal/testenv"
	"github.com/tufota/tufota/server"
	"github.com/tufota/tufota/signer"
)

// cluster is one repository (initialised into S3 and PostgreSQL) served by
// several `tufota server` replicas, each started through e2e.Run() with the
// same TLS certificate, as behind a load balancer. The embedded harness
// drives the CLI; its url is the first replica's.
type cluster struct {
	*e2e.Harness
	certFile, keyFile string
}

// initCluster runs tufota init with initFlags (--storage, --db) and makes
// the replicas' TLS certificate. No server runs yet.
func initCluster(t *testing.T, env map[string]string, initFlags ...string) *cluster {
	t.Helper()
	pass := make([]byte, 16)
	_, _ = rand.Read(pass)
	h := &e2e.Harness{T: t, Dir: filepath.Join(t.TempDir(), "repo"), Env: map[string]string{"TUFOTA_KEY_PASSPHRASE": hex.EncodeToString(pass)}}
	maps.Copy(h.Env, env)
	var res e2e.InitResult
	if err := json.Unmarshal([]byte(h.MustCLI(append([]string{"init", "--dir", h.Dir, "-o", "json"}, initFlags...)...)), &res); err != nil {
		t.Fatalf("init -o json: %v", err)
	}
	h.AdminToken = res.AdminToken
	var err error
	if h.Root, err = os.ReadFile(res.Root); err != nil {
		t.Fatal(err)
	}
	cert, leaf, err := server.SelfSignedCertificate([]string{"localhost", "127.0.0.1"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	c := &cluster{Harness: h, certFile: filepath.Join(t.TempDir(), "cert.pem"), keyFile: filepath.Join(t.TempDir(), "key.pem")}
	if err := os.WriteFile(c.certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(c.keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	h.CAFile = c.certFile
	h.HC = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}, Timeout: 30 * time.Second}
	h.Env["TUFOTA_TOKEN"], h.Env["TUFOTA_CA"] = h.AdminToken, h.CAFile
	return c
}

// replica is one running `tufota server`.
type replica struct {
	name   string
	url    string
	cancel context.CancelFunc
	done   chan error
	logs   *e2e.SyncBuffer
}

// startReplica starts a server on the cluster's repository and waits until
// it listens. The first replica started becomes the CLI's server.
func (c *cluster) startReplica(name string, flags ...string) *replica {
	t := c.T
	t.Helper()
	urlFile := filepath.Join(t.TempDir(), "url")
	ctx, cancel := context.WithCancel(context.Background())
	r := &replica{name: name, cancel: cancel, done: make(chan error, 1), logs: &e2e.SyncBuffer{}}
	env := maps.Clone(c.Env) // the first replica's URL goes into c.Env below
	go func() {
		args := append([]string{"server", "--dir", c.Dir, "--addr", "127.0.0.1:0", "--tls-cert", c.certFile, "--tls-key", c.keyFile,
			"--url-file", urlFile, "--log-level", "info"}, flags...)
		r.done <- e2e.Run(ctx, args, env, strings.NewReader(""), io.Discard, r.logs)
	}()
	t.Cleanup(func() {
		r.stop(t)
		if t.Failed() {
			t.Logf("replica %s log:\n%s", r.name, r.logs.String())
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		if b, err := os.ReadFile(urlFile); err == nil {
			r.url = strings.TrimSpace(string(b))
			break
		}
		select {
		case err := <-r.done:
			t.Fatalf("replica %s exited: %v\n%s", name, err, r.logs.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica %s did not write its URL", name)
		}
	}
	if c.URL == "" {
		c.URL = r.url
		c.Env["TUFOTA_SERVER"] = r.url
	}
	return r
}

// stop cancels the replica's context (the process is told to end, as by
// SIGTERM) and waits until e2e.Run() returns. Idempotent.
func (r *replica) stop(t *testing.T) {
	t.Helper()
	if r.cancel == nil {
		return
	}
	r.cancel()
	r.cancel = nil
	if err := <-r.done; err != nil {
		t.Errorf("replica %s: %v", r.name, err)
	}
}

// readyz returns a replica's /readyz answer.
func (c *cluster) readyz(url string) (server.Readiness, int, error) {
	var r server.Readiness
	resp, err := c.HC.Get(url + "/readyz")
	if err != nil {
		return r, 0, err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return r, resp.StatusCode, err
	}
	return r, resp.StatusCode, nil
}

// waitFor polls cond every 50ms until it holds or the deadline passes; it
// returns how long it took, or fails the test with what cond last said.
func waitFor(t *testing.T, what string, deadline time.Duration, cond func() (bool, string)) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		ok, last := cond()
		if ok {
			return time.Since(start)
		}
		if time.Since(start) > deadline {
			t.Fatalf("%s: not within %v (last: %s)", what, deadline, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// roleIs returns a waitFor condition: the replica at url reports role.
func (c *cluster) roleIs(url, role string) func() (bool, string) {
	return func() (bool, string) {
		r, code, err := c.readyz(url)
		return err == nil && r.Role == role, fmt.Sprintf("status %d, %+v, %v", code, r, err)
	}
}

// metaVersion returns signed.version of a metadata file served at url.
func (c *cluster) metaVersion(url, file string) (int64, error) {
	req, err := http.NewRequest(http.MethodGet, url+"/tuf/"+file, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+c.AdminToken)
	resp, err := c.HC.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET %s: status %d", file, resp.StatusCode)
	}
	var m struct {
		Signed struct {
			Version int64 `json:"version"`
		} `json:"signed"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		return 0, err
	}
	return m.Signed.Version, nil
}

// cliAt runs the CLI against the replica at url; safe from goroutines.
func (c *cluster) cliAt(url string, args ...string) (string, error) {
	env := maps.Clone(c.Env)
	env["TUFOTA_SERVER"] = url
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err := e2e.Run(ctx, args, env, strings.NewReader(""), &out, &errOut)
	return out.String(), err
}

// pushAt pushes a release through the replica at url.
func (c *cluster) pushAt(url, fw, name, version string) (signer.Release, error) {
	var rel signer.Release
	out, err := c.cliAt(url, "release", "push", fw, "--name", name, "--version", version, "--hardware", "pump-a", "-o", "json")
	if err != nil {
		return rel, err
	}
	if err := json.Unmarshal([]byte(out), &rel); err != nil {
		return rel, fmt.Errorf("release push -o json: %v in %q", err, out)
	}
	return rel, nil
}

// TestReplicasFailover runs two replicas on one PostgreSQL and one MinIO:
// a release pushed through replica A is verified and downloaded by a device
// through replica B; concurrent pushes through both land, each in its own
// targets version; when the leader A shuts down, B takes the lease and
// re-signs the timestamp within one lease period.
func TestReplicasFailover(t *testing.T) {
	endpoint, access, secret := testenv.MinIO(t)
	pg := testenv.Postgres(t)
	const lease = 6 * time.Second
	c := initCluster(t, map[string]string{"AWS_ACCESS_KEY_ID": access, "AWS_SECRET_ACCESS_KEY": secret},
		"--storage", "s3://tufota-replicas/repo?endpoint="+endpoint+"&secure=false", "--db", pg)
	// A refresh margin beyond every expiry: a new leader re-signs
	// timestamp (and snapshot) as soon as it takes over.
	flags := []string{"--lease-period", lease.String(), "--refresh-margin", "100000h"}
	a := c.startReplica("A", flags...)
	waitFor(t, "replica A elected", lease, c.roleIs(a.url, "leader"))
	b := c.startReplica("B", flags...)
	// B has made at least one attempt once it reports an attempt time.
	waitFor(t, "replica B settles as follower", lease, func() (bool, string) {
		r, _, err := c.readyz(b.url)
		return err == nil && r.Role == "follower" && r.LeaseError == "", fmt.Sprintf("%+v %v", r, err)
	})

	// Push through A, verify and download through B.
	fw, want := c.WriteFirmware("pump.bin", 1<<20+5)
	if _, err := c.pushAt(a.url, fw, "pump-fw", "2.0.0"); err != nil {
		t.Fatalf("push through A: %v", err)
	}
	dev := c.NewClient(b.url, "dev-b", "pump-a", "1.0.0")
	if _, err := c.cliAt(b.url, "device", "assign", "dev-b", "pump-fw@2.0.0"); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	upd, err := dev.Check(ctx)
	if err != nil || upd == nil {
		t.Fatalf("device Check through B = %+v, %v", upd, err)
	}
	dst := filepath.Join(t.TempDir(), "img")
	if err := dev.Download(ctx, upd, dst); err != nil {
		t.Fatalf("device Download through B: %v", err)
	}
	if got, _ := os.ReadFile(dst); !bytes.Equal(got, want) {
		t.Fatal("image downloaded through B differs from the one pushed through A")
	}

	// Concurrent pushes through both replicas: the publish lock makes each
	// its own targets version; none is lost.
	before, err := c.metaVersion(b.url, "timestamp.json")
	if err != nil {
		t.Fatal(err)
	}
	const perReplica = 3
	type pushed struct {
		rel signer.Release
		err error
	}
	results := make(chan pushed, 2*perReplica)
	var wg sync.WaitGroup
	for i := range 2 * perReplica {
		url := []string{a.url, b.url}[i%2]
		fw, _ := c.WriteFirmware(fmt.Sprintf("fw-%d.bin", i), 4096+i)
		wg.Go(func() {
			rel, err := c.pushAt(url, fw, "pump-fw", fmt.Sprintf("3.0.%d", i))
			results <- pushed{rel, err}
		})
	}
	wg.Wait()
	close(results)
	versions := map[int64]string{}
	var paths []string
	for p := range results {
		if p.err != nil {
			t.Fatalf("concurrent push: %v", p.err)
		}
		if other, dup := versions[p.rel.TargetsVersion]; dup {
			t.Fatalf("%s and %s both published as targets v%d: a lost update", other, p.rel.TargetPath, p.rel.TargetsVersion)
		}
		versions[p.rel.TargetsVersion] = p.rel.TargetPath
		paths = append(paths, p.rel.TargetPath)
	}
	tv, err := c.metaVersion(b.url, "timestamp.json")
	if err != nil {
		t.Fatal(err)
	}
	if tv <= before {
		t.Fatalf("timestamp version %d after the pushes, want above %d", tv, before)
	}
	// Every target of every push is in the latest targets metadata.
	stock := stockUpdater(t, c.Harness, b.url)
	for _, p := range append(paths, "pump-fw/2.0.0/pump.bin") {
		if _, err := stock.GetTargetInfo(p); err != nil {
			t.Fatalf("target %s lost: %v", p, err)
		}
	}

	// Failover: the leader shuts down; B takes the lease and re-signs.
	if r, _, _ := c.readyz(b.url); r.Role != "follower" {
		t.Fatalf("B is %q before the failover, want follower", r.Role)
	}
	v0, err := c.metaVersion(b.url, "timestamp.json")
	if err != nil {
		t.Fatal(err)
	}
	a.stop(t)
	took := waitFor(t, "B leads after A stopped", lease, c.roleIs(b.url, "leader"))
	refreshed := waitFor(t, "B re-signs the timestamp", lease-took, func() (bool, string) {
		v, err := c.metaVersion(b.url, "timestamp.json")
		return err == nil && v > v0, fmt.Sprintf("timestamp v%d (was v%d), %v", v, v0, err)
	})
	t.Logf("failover: B leads %v after A stopped, new timestamp %v later (lease period %v)", took, refreshed, lease)
	if !strings.Contains(b.logs.String(), "elected leader") {
		t.Fatal("B's log does not say it was elected")
	}
}

// stockUpdater is go-tuf's own updater (as in stocktuf_test.go), refreshed
// from the replica at url with the admin token (a reader): it fails the
// test if the repository does not verify.
func stockUpdater(t *testing.T, h *e2e.Harness, url string) *updater.Updater {
	t.Helper()
	cfg, err := config.New(url+"/tuf", h.Root)
	if err != nil {
		t.Fatal(err)
	}
	cfg.LocalMetadataDir = t.TempDir()
	cfg.LocalTargetsDir = t.TempDir()
	cfg.RemoteTargetsURL = url + "/tuf/targets"
	cfg.PrefixTargetsWithHash = true
	if err := cfg.SetDefaultFetcherTransport(apiclient.New(h.URL, h.AdminToken, apiclient.WithHTTPClient(h.HC)).Transport()); err != nil {
		t.Fatal(err)
	}
	if err := cfg.SetDefaultFetcherRetry(0, 1); err != nil {
		t.Fatal(err)
	}
	up, err := updater.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := up.Refresh(); err != nil {
		t.Fatalf("stock go-tuf updater Refresh through %s: %v", url, err)
	}
	return up
}
