package storage_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/storage"
	"github.com/tufota/tufota/storage/storagetest"
)

// privateMinIO is a MinIO server of one test's own, for tests that stop it
// or configure it (KMS). It uses the binary scripts/testenv.sh built.
type privateMinIO struct {
	t                     *testing.T
	bin, dir, addr        string
	access, secret, kmsKV string
	mu                    sync.Mutex
	cmd                   *exec.Cmd
	exited                chan struct{} // closed when cmd has been reaped
}

const minioKMSKey = "tufota-test-key"

func startPrivateMinIO(t *testing.T) *privateMinIO {
	t.Helper()
	if testing.Short() {
		t.Skip("SKIPPING integration test " + t.Name() + " (needs a private MinIO): -short; run make test to run it")
	}
	bin := os.Getenv("TUFOTA_TEST_MINIO_BIN")
	if bin == "" {
		t.Fatal("TUFOTA_TEST_MINIO_BIN not set: run make test (it builds MinIO for integration tests)")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	m := &privateMinIO{t: t, bin: bin, dir: t.TempDir(), addr: addr, access: "tufotatest", secret: "tufota-test-secret-1234",
		kmsKV: minioKMSKey + ":" + base64.StdEncoding.EncodeToString(key)}
	m.start()
	t.Cleanup(m.stop)
	return m
}

// start runs the server and waits until it is ready.
func (m *privateMinIO) start() {
	m.t.Helper()
	cmd := exec.Command(m.bin, "server", "--quiet", "--address", m.addr, m.dir)
	cmd.Env = append(os.Environ(), "MINIO_ROOT_USER="+m.access, "MINIO_ROOT_PASSWORD="+m.secret,
		"MINIO_BROWSER=off", "MINIO_UPDATE=off", "MINIO_CALLHOME_ENABLE=off", "MINIO_KMS_SECRET_KEY="+m.kmsKV)
	logf, err := os.Create(filepath.Join(m.t.TempDir(), "minio.log"))
	if err != nil {
		m.t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		m.t.Fatalf("start minio: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	m.mu.Lock()
	m.cmd, m.exited = cmd, exited
	m.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+m.addr+"/minio/health/ready", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && m.answers(ctx) {
				return
			}
		}
		select {
		case <-exited:
			log, _ := os.ReadFile(logf.Name())
			m.t.Fatalf("minio exited before it was ready:\n%s", log)
		case <-ctx.Done():
			m.t.Fatalf("minio at %s not ready in 60s", m.addr)
		case <-tick.C:
		}
	}
}

// answers reports whether the server serves S3 calls: /minio/health/ready
// can answer 200 a moment before the object layer is initialised.
func (m *privateMinIO) answers(ctx context.Context) bool {
	c, err := minio.New(m.addr, &minio.Options{Creds: credentials.NewStaticV4(m.access, m.secret, ""), MaxRetries: 1})
	if err != nil {
		m.t.Fatal(err)
	}
	_, err = c.ListBuckets(ctx)
	return err == nil
}

// stop kills the server and waits until it has exited.
func (m *privateMinIO) stop() {
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

func (m *privateMinIO) config(bucket, sse string) storage.S3Config {
	return storage.S3Config{Endpoint: m.addr, Bucket: bucket, AccessKey: m.access, SecretKey: m.secret,
		SSE: sse, CreateBucket: true, MaxRetries: 1}
}

// TestS3ServerSideEncryption runs the conformance suite with SSE-S3 and
// checks that objects written with SSE-S3 and SSE-KMS (also by Move) are
// encrypted at rest.
func TestS3ServerSideEncryption(t *testing.T) {
	t.Parallel()
	m := startPrivateMinIO(t)
	ctx := context.Background()
	var n int
	var mu sync.Mutex
	storagetest.RunBlobs(t, func(t *testing.T) storage.Blobs {
		mu.Lock()
		n++
		bucket := fmt.Sprintf("sse-suite-%d", n)
		mu.Unlock()
		s, err := storage.NewS3(ctx, m.config(bucket, "s3"))
		if err != nil {
			t.Fatalf("NewS3: %v", err)
		}
		return s
	})
	for _, tc := range []struct{ sse, header string }{{"s3", "AES256"}, {"kms:" + minioKMSKey, "aws:kms"}} {
		s, err := storage.NewS3(ctx, m.config("sse-check-"+strings.ReplaceAll(strings.ReplaceAll(tc.sse, ":", "-"), "_", "-"), tc.sse))
		if err != nil {
			t.Fatalf("NewS3(sse=%s): %v", tc.sse, err)
		}
		if _, err := s.Put(ctx, "small", strings.NewReader("secret firmware")); err != nil {
			t.Fatalf("Put(sse=%s): %v", tc.sse, err)
		}
		if _, err := s.Put(ctx, "staging/large", io.LimitReader(zeros{}, 12<<20)); err != nil {
			t.Fatalf("multipart Put(sse=%s): %v", tc.sse, err)
		}
		if err := s.Move(ctx, "staging/large", "targets/large"); err != nil {
			t.Fatalf("Move(sse=%s): %v", tc.sse, err)
		}
		for _, key := range []string{"small", "targets/large"} {
			oi, err := s.Client().StatObject(ctx, s.Bucket(), s.ObjectName(key), minio.StatObjectOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if got := oi.Metadata.Get("X-Amz-Server-Side-Encryption"); got != tc.header {
				t.Errorf("sse=%s: %s has X-Amz-Server-Side-Encryption %q, want %q", tc.sse, key, got, tc.header)
			}
		}
		if got := getAll(t, s, "small"); got != "secret firmware" {
			t.Fatalf("encrypted blob read back as %q", got)
		}
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

func getAll(t *testing.T, s storage.Blobs, key string) string {
	t.Helper()
	o, err := s.Open(context.Background(), key)
	if err != nil {
		t.Fatalf("Open(%q): %v", key, err)
	}
	defer o.Close()
	b, err := io.ReadAll(o)
	if err != nil {
		t.Fatalf("read %q: %v", key, err)
	}
	return string(b)
}

// stallReader yields n bytes, then signals and blocks until released, then
// yields n more.
type stallReader struct {
	left     int
	stalled  bool
	reached  chan struct{}
	released chan struct{}
}

func (r *stallReader) Read(p []byte) (int, error) {
	if r.left == 0 && !r.stalled {
		r.stalled = true
		close(r.reached)
		<-r.released
		r.left = 32 << 20
	}
	if r.left == 0 {
		return 0, io.EOF
	}
	k := min(len(p), r.left)
	clear(p[:k])
	r.left -= k
	return k, nil
}

// TestS3Outage stops MinIO in the middle of a multipart upload: the Put
// fails with ErrUnavailable, calls during the outage fail fast with
// ErrUnavailable, and after MinIO returns the same store works again, the
// old blob intact and nothing of the failed upload visible.
func TestS3Outage(t *testing.T) {
	t.Parallel()
	m := startPrivateMinIO(t)
	ctx := context.Background()
	s, err := storage.NewS3(ctx, m.config("outage", ""))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(ctx, "targets/fw.bin", strings.NewReader("old firmware")); err != nil {
		t.Fatal(err)
	}
	r := &stallReader{left: 24 << 20, reached: make(chan struct{}), released: make(chan struct{})}
	putErr := make(chan error, 1)
	go func() {
		_, err := s.Put(ctx, "targets/fw.bin", r)
		putErr <- err
	}()
	<-r.reached // at least one 16 MiB part is uploaded
	m.stop()
	close(r.released)
	err = <-putErr
	if !errors.Is(err, tufota.ErrUnavailable) {
		t.Fatalf("Put while MinIO is down: err = %v, want ErrUnavailable", err)
	}
	_, err = s.Stat(ctx, "targets/fw.bin")
	if !errors.Is(err, tufota.ErrUnavailable) || !strings.Contains(err.Error(), "storage unavailable") {
		t.Fatalf("Stat while MinIO is down: err = %v, want ErrUnavailable saying storage unavailable", err)
	}
	if _, err := s.List(ctx, ""); !errors.Is(err, tufota.ErrUnavailable) {
		t.Fatalf("List while MinIO is down: err = %v, want ErrUnavailable", err)
	}

	m.start()
	if got := getAll(t, s, "targets/fw.bin"); got != "old firmware" {
		t.Fatalf("after the outage targets/fw.bin = %d bytes, want the old blob", len(got))
	}
	infos, err := s.List(ctx, "")
	if err != nil || len(infos) != 1 {
		t.Fatalf("List after the outage = %+v, %v; want only the old blob", infos, err)
	}
	if _, err := s.Put(ctx, "targets/fw.bin", bytes.NewReader([]byte("new firmware"))); err != nil {
		t.Fatalf("Put after MinIO returned: %v", err)
	}
	if got := getAll(t, s, "targets/fw.bin"); got != "new firmware" {
		t.Fatalf("after recovery targets/fw.bin = %q", got)
	}
}
