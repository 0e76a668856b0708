package testenv

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// The environment variables scripts/testenv.sh exports for tests that run
// private instances they can stop and restart.
const (
	EnvMinIOBin         = "TUFOTA_TEST_MINIO_BIN"       // the MinIO server binary
	EnvPostgresBinDir   = "TUFOTA_TEST_POSTGRES_BINDIR" // directory of initdb, pg_ctl, postgres
	privateStartTimeout = 60 * time.Second
)

// MinIOProc is a MinIO server of one test's own (StartMinIO): the test may
// stop and restart it; data directory, port and credentials survive.
type MinIOProc struct {
	Endpoint  string // 127.0.0.1:PORT, plain HTTP
	AccessKey string
	SecretKey string

	t       testing.TB
	bin     string
	dataDir string
	logPath string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

// StartMinIO starts a private MinIO server from TUFOTA_TEST_MINIO_BIN on a
// free loopback port with a temporary data directory, waits until it serves
// S3 calls, and kills it when the test ends. It skips the test under -short
// and fails it when the variable is unset or the server does not start.
func StartMinIO(t testing.TB) *MinIOProc {
	t.Helper()
	bin := require(t, "a private MinIO", EnvMinIOBin)[0]
	m := &MinIOProc{
		Endpoint: freeLoopbackAddr(t), AccessKey: "tufota" + randomHex(6), SecretKey: randomHex(20),
		t: t, bin: bin, dataDir: t.TempDir(),
	}
	m.logPath = filepath.Join(t.TempDir(), "minio.log")
	m.Start()
	t.Cleanup(m.Stop)
	return m
}

// Start runs the server (again) and waits until it serves S3 calls. It
// fails the test if the server does not become ready in 60s.
func (m *MinIOProc) Start() {
	m.t.Helper()
	m.mu.Lock()
	running := m.cmd != nil
	m.mu.Unlock()
	if running {
		return
	}
	logf, err := os.OpenFile(m.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		m.t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(m.bin, "server", "--quiet", "--address", m.Endpoint, m.dataDir)
	cmd.Env = append(os.Environ(), "MINIO_ROOT_USER="+m.AccessKey, "MINIO_ROOT_PASSWORD="+m.SecretKey,
		"MINIO_BROWSER=off", "MINIO_UPDATE=off", "MINIO_CALLHOME_ENABLE=off")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		m.t.Fatalf("testenv: start minio: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	m.mu.Lock()
	m.cmd, m.exited = cmd, exited
	m.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), privateStartTimeout)
	defer cancel()
	for {
		// Ready means an authenticated S3 call succeeds (ListBuckets):
		// the health probe answers a moment before the object layer is up.
		if m.answers(ctx) {
			return
		}
		select {
		case <-exited:
			log, _ := os.ReadFile(m.logPath)
			m.t.Fatalf("testenv: minio exited before it was ready:\n%s", log)
		case <-ctx.Done():
			m.t.Fatalf("testenv: minio at %s not ready in %v", m.Endpoint, privateStartTimeout)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (m *MinIOProc) answers(ctx context.Context) bool {
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, "http://"+m.Endpoint+"/minio/health/ready", nil)
	if err != nil {
		m.t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false
	}
	return s3Answers(rctx, m.Endpoint, m.AccessKey, m.SecretKey)
}

// Stop kills the server (SIGKILL: an outage, not a clean shutdown) and
// waits until it has exited. Stopping a stopped server does nothing.
func (m *MinIOProc) Stop() {
	m.mu.Lock()
	cmd, exited := m.cmd, m.exited
	m.cmd = nil
	m.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-exited
}

// PostgresProc is a PostgreSQL cluster of one test's own (StartPostgres):
// the test may stop and restart it; data directory and port survive.
type PostgresProc struct {
	// URL connects as the superuser "postgres" (trust authentication on
	// loopback) to the database "postgres"; tufota's migrations may run
	// there, the cluster is the test's own.
	URL string

	t       testing.TB
	binDir  string
	dir     string // cluster root: data/, sock/, log
	port    int
	runAs   string // unprivileged user to run as when the test runs as root
	mu      sync.Mutex
	running bool
}

// StartPostgres creates a PostgreSQL cluster (initdb, from
// TUFOTA_TEST_POSTGRES_BINDIR) in a temporary directory, starts it on a free
// loopback port and stops it when the test ends. Running as root, it runs the
// server as the "postgres" user (initdb refuses root), as
// scripts/testenv.sh does. It skips the test under -short and fails it when
// the variable is unset or the cluster does not start.
func StartPostgres(t testing.TB) *PostgresProc {
	t.Helper()
	binDir := require(t, "a private PostgreSQL", EnvPostgresBinDir)[0]
	dir, err := os.MkdirTemp("", "tufota-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	p := &PostgresProc{t: t, binDir: binDir, dir: dir}
	if os.Geteuid() == 0 {
		p.runAs = "postgres"
		if _, err := user.Lookup(p.runAs); err != nil {
			p.runAs = "tufota-pg"
			if _, err := user.Lookup(p.runAs); err != nil {
				t.Fatalf("testenv: running as root and neither user postgres nor tufota-pg exists (run make test once, which creates one)")
			}
		}
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "sock"), 0o755); err != nil {
		t.Fatal(err)
	}
	p.chown(dir)
	p.chown(filepath.Join(dir, "sock"))
	ctx, cancel := context.WithTimeout(context.Background(), privateStartTimeout)
	defer cancel()
	if out, err := p.command(ctx, "initdb", "-D", filepath.Join(dir, "data"), "-U", "postgres",
		"--auth-local=trust", "--auth-host=trust", "-E", "UTF8", "--no-locale", "--no-sync").CombinedOutput(); err != nil {
		t.Fatalf("testenv: initdb: %v\n%s", err, out)
	}
	// fsync off is safe here: a stopped server is a killed process, not a
	// lost OS page cache. synchronous_commit stays on, so that every
	// acknowledged commit survives an immediate stop (fault tests check it).
	conf := fmt.Sprintf("\n# tufota testenv (private)\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '%s'\nmax_connections = 200\nfsync = off\nfull_page_writes = off\n",
		filepath.Join(dir, "sock"))
	f, err := os.OpenFile(filepath.Join(dir, "data", "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.WriteString(conf)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	_, portStr, _ := net.SplitHostPort(freeLoopbackAddr(t))
	p.port, _ = strconv.Atoi(portStr)
	p.URL = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable&connect_timeout=5", p.port)
	p.Start()
	t.Cleanup(p.Stop)
	return p
}

// Start starts the cluster (again) on its port and waits until it accepts
// connections. It fails the test if it does not within 60s.
func (p *PostgresProc) Start() {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.running {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), privateStartTimeout)
	defer cancel()
	if out, err := p.command(ctx, "pg_ctl", "-D", filepath.Join(p.dir, "data"), "-l", filepath.Join(p.dir, "log"),
		"-w", "-t", "60", "-o", "-p "+strconv.Itoa(p.port), "start").CombinedOutput(); err != nil {
		log, _ := os.ReadFile(filepath.Join(p.dir, "log"))
		p.t.Fatalf("testenv: pg_ctl start: %v\n%s\n%s", err, out, log)
	}
	p.running = true
	for {
		conn, err := pgx.Connect(ctx, p.URL)
		if err == nil {
			_ = conn.Close(ctx)
			return
		}
		select {
		case <-ctx.Done():
			p.t.Fatalf("testenv: postgres on port %d not accepting connections: %v", p.port, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Stop stops the cluster at once (pg_ctl stop -m immediate: every
// connection is cut, as in a crash; the next Start recovers from the WAL).
// Stopping a stopped cluster does nothing.
func (p *PostgresProc) Stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.running {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), privateStartTimeout)
	defer cancel()
	if out, err := p.command(ctx, "pg_ctl", "-D", filepath.Join(p.dir, "data"), "-m", "immediate", "-w", "-t", "60", "stop").CombinedOutput(); err != nil {
		p.t.Errorf("testenv: pg_ctl stop: %v\n%s", err, out)
		return
	}
	p.running = false
}

// command runs a PostgreSQL binary, as the unprivileged user when root.
func (p *PostgresProc) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	bin := filepath.Join(p.binDir, name)
	if p.runAs != "" {
		return exec.CommandContext(ctx, "runuser", append([]string{"-u", p.runAs, "--", bin}, args...)...)
	}
	return exec.CommandContext(ctx, bin, args...)
}

func (p *PostgresProc) chown(path string) {
	if p.runAs == "" {
		return
	}
	u, err := user.Lookup(p.runAs)
	if err != nil {
		p.t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chown(path, uid, gid); err != nil {
		p.t.Fatal(err)
	}
}

// freeLoopbackAddr returns 127.0.0.1:PORT with a port nobody listens on now.
func freeLoopbackAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}

// s3Answers reports whether an authenticated S3 call (ListBuckets)
// succeeds.
func s3Answers(ctx context.Context, endpoint, access, secret string) bool {
	c, err := minio.New(endpoint, &minio.Options{Creds: credentials.NewStaticV4(access, secret, ""), MaxRetries: 1})
	if err != nil {
		return false
	}
	_, err = c.ListBuckets(ctx)
	return err == nil
}
