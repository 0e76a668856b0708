// Package bench compares tufota's hot paths side by side, in one run, with
// the references a user would reach for instead:
//
//   - BenchmarkDownload: a 64 MiB firmware image from a real `tufota server`
//     (TLS, loopback) fetched by tufota's client (streamed to disk, length,
//     the signed SHA-256 verified as the bytes arrive), by go-tuf's own
//     updater (DownloadTarget, which holds the whole image in memory), by
//     curl (no verification), and by curl followed by sha256sum.
//   - BenchmarkHash: staging the same image in the repository (read,
//     SHA-256 and the blob store's write and fsync as a pipeline) against
//     sha256sum, openssl dgst -sha256 and dd conv=fsync.
//   - BenchmarkUpdateCheck: a device's full metadata refresh from an empty
//     cache (root, timestamp, snapshot, targets; the assignment lookup too
//     for tufota's client) against go-tuf's updater Refresh, for a release
//     signed by the top-level targets role and for one signed by a
//     delegated role (one more metadata file to fetch and verify).
//
// Run with `make bench` (or go test -run '^$' -bench . -benchmem ./bench/).
// The fixture (a tufota binary, a repository, a server, a release and a
// device) is built on first use, so `go test ./...` without -bench costs
// nothing here. External references (curl, sha256sum, openssl, dd) are looked
// up on PATH; a missing one fails its sub-benchmark with a clear message.
package bench

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata/config"
	"github.com/theupdateframework/go-tuf/v2/metadata/updater"

	"github.com/tufota/tufota/client"
	"github.com/tufota/tufota/signer"
	"github.com/tufota/tufota/storage"
)

const imageSize = 64 << 20

// fixture is a running tufota server with one published 64 MiB release
// assigned to one registered device.
type fixture struct {
	tmp         string
	bin         string
	server      *exec.Cmd
	url, caFile string
	root        []byte
	image       string // local copy of the published image
	target      string // its TUF target path
	deviceToken string
	// A release of a product line delegated to its own key, assigned to
	// device bench-line.
	lineTarget, lineToken string
	hc                    *http.Client
}

var (
	fixOnce sync.Once
	fix     *fixture
	fixErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if fix != nil {
		fix.close()
	}
	os.Exit(code)
}

func getFixture(b *testing.B) *fixture {
	b.Helper()
	fixOnce.Do(func() { fix, fixErr = newFixture() })
	if fixErr != nil {
		b.Fatalf("bench fixture: %v", fixErr)
	}
	return fix
}

func newFixture() (f *fixture, err error) {
	tmp, err := os.MkdirTemp("", "tufota-bench-*")
	if err != nil {
		return nil, err
	}
	f = &fixture{tmp: tmp, bin: filepath.Join(tmp, "tufota")}
	defer func() {
		if err != nil {
			f.close()
		}
	}()
	if out, err := exec.Command("go", "build", "-o", f.bin, "github.com/tufota/tufota/cmd/tufota").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build: %v\n%s", err, out)
	}
	pass := make([]byte, 16)
	_, _ = rand.Read(pass)
	env := append(os.Environ(), "TUFOTA_KEY_PASSPHRASE="+hex.EncodeToString(pass))
	dir := filepath.Join(tmp, "repo")

	var initRes struct {
		AdminToken string `json:"admin_token"`
		Root       string `json:"root"`
	}
	if err := f.cli(env, &initRes, "init", "--dir", dir, "-o", "json"); err != nil {
		return nil, err
	}
	if f.root, err = os.ReadFile(initRes.Root); err != nil {
		return nil, err
	}

	urlFile := filepath.Join(tmp, "url")
	f.server = exec.Command(f.bin, "server", "--dir", dir, "--addr", "127.0.0.1:0", "--tls-self-signed", "--url-file", urlFile, "--log-level", "warn")
	f.server.Env = env
	f.server.Stderr = os.Stderr
	if err := f.server.Start(); err != nil {
		return nil, err
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if b, err := os.ReadFile(urlFile); err == nil {
			f.url = strings.TrimSpace(string(b))
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("server did not start")
		}
	}
	f.caFile = filepath.Join(dir, "tls-self-signed.pem")
	pem, err := os.ReadFile(f.caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	f.hc = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}

	env = append(env, "TUFOTA_SERVER="+f.url, "TUFOTA_TOKEN="+initRes.AdminToken, "TUFOTA_CA="+f.caFile)
	f.image = filepath.Join(tmp, "pump.bin")
	img := make([]byte, imageSize)
	_, _ = rand.Read(img)
	if err := os.WriteFile(f.image, img, 0o600); err != nil {
		return nil, err
	}
	var rel struct {
		TargetPath string `json:"target_path"`
	}
	if err := f.cli(env, &rel, "release", "push", f.image, "--name", "pump-fw", "--version", "2.0.0", "--hardware", "pump-a", "-o", "json"); err != nil {
		return nil, err
	}
	f.target = rel.TargetPath
	var dev struct {
		Token string `json:"token"`
	}
	if err := f.cli(env, &dev, "device", "register", "bench-1", "--hardware", "pump-a", "--current-version", "1.0.0", "-o", "json"); err != nil {
		return nil, err
	}
	f.deviceToken = dev.Token
	if err := f.cli(env, nil, "device", "assign", "bench-1", "pump-fw@2.0.0", "--reason", "benchmark"); err != nil {
		return nil, err
	}
	if err := f.delegatedRelease(env, initRes.Root); err != nil {
		return nil, err
	}
	return f, nil
}

// delegatedRelease delegates line/*/* to a new file key, pushes a 64 KiB
// release of the line, signs it with that key and assigns it to device
// bench-line.
func (f *fixture) delegatedRelease(env []string, rootFile string) error {
	key := "file:" + filepath.Join(f.tmp, "line.key")
	if err := f.cli(env, nil, "key", "create", "--uri", key); err != nil {
		return err
	}
	if err := f.cli(env, nil, "delegation", "add", "line", "--paths", "line/*/*", "--key", key, "-o", "json"); err != nil {
		return err
	}
	img := filepath.Join(f.tmp, "line.bin")
	b := make([]byte, 64<<10)
	_, _ = rand.Read(b)
	if err := os.WriteFile(img, b, 0o600); err != nil {
		return err
	}
	var rel struct {
		TargetPath string `json:"target_path"`
	}
	if err := f.cli(env, &rel, "release", "push", img, "--name", "line", "--version", "2.0.0", "--hardware", "line-a", "-o", "json"); err != nil {
		return err
	}
	f.lineTarget = rel.TargetPath
	if err := f.cli(env, nil, "release", "sign", "line@2.0.0", "--key", key, "--root", rootFile, "--yes", "-o", "json"); err != nil {
		return err
	}
	var dev struct {
		Token string `json:"token"`
	}
	if err := f.cli(env, &dev, "device", "register", "bench-line", "--hardware", "line-a", "--current-version", "1.0.0", "-o", "json"); err != nil {
		return err
	}
	f.lineToken = dev.Token
	return f.cli(env, nil, "device", "assign", "bench-line", "line@2.0.0", "--reason", "benchmark")
}

// cli runs the tufota binary and decodes its JSON output into v (if not nil).
func (f *fixture) cli(env []string, v any, args ...string) error {
	cmd := exec.Command(f.bin, args...)
	cmd.Env = env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("tufota %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	if v != nil {
		if err := json.Unmarshal(out, v); err != nil {
			return fmt.Errorf("tufota %s: %v in %q", args[0], err, out)
		}
	}
	return nil
}

func (f *fixture) close() {
	if f.server != nil && f.server.Process != nil {
		_ = f.server.Process.Signal(os.Interrupt)
		_ = f.server.Wait()
	}
	_ = os.RemoveAll(f.tmp)
}

func (f *fixture) newClient(b *testing.B) *client.Client {
	b.Helper()
	return f.newDeviceClient(b, "bench-1", f.deviceToken, "pump-a")
}

func (f *fixture) newDeviceClient(b *testing.B, id, token, hw string) *client.Client {
	b.Helper()
	c, err := client.New(client.Config{
		ServerURL: f.url, TrustedRoot: f.root, StateDir: b.TempDir(),
		DeviceID: id, Token: token, HardwareID: hw, CurrentVersion: "1.0.0", HTTPClient: f.hc,
	})
	if err != nil {
		b.Fatal(err)
	}
	return c
}

// bearer adds the device token to go-tuf's fetcher requests.
type bearer struct {
	token string
	next  http.RoundTripper
}

func (t bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+t.token)
	return t.next.RoundTrip(r)
}

func (f *fixture) newUpdater(b *testing.B) (*updater.Updater, string) {
	b.Helper()
	cfg, err := config.New(f.url+"/tuf", f.root)
	if err != nil {
		b.Fatal(err)
	}
	cfg.LocalMetadataDir, cfg.LocalTargetsDir = b.TempDir(), b.TempDir()
	cfg.RemoteTargetsURL = f.url + "/tuf/targets"
	cfg.PrefixTargetsWithHash = true
	if err := cfg.SetDefaultFetcherTransport(bearer{f.deviceToken, f.hc.Transport}); err != nil {
		b.Fatal(err)
	}
	up, err := updater.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	return up, cfg.LocalTargetsDir
}

func lookPath(b *testing.B, names ...string) {
	b.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			b.Fatalf("reference tool %s is not on PATH (apt-get install curl coreutils): %v", n, err)
		}
	}
}

func run(b *testing.B, name string, args ...string) {
	b.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		b.Fatalf("%s: %v\n%s", name, err, out)
	}
}

func BenchmarkDownload(b *testing.B) {
	f := getFixture(b)
	ctx := context.Background()
	b.Run("tufota-client", func(b *testing.B) {
		c := f.newClient(b)
		upd, err := c.Check(ctx)
		if err != nil || upd == nil || upd.Target != f.target {
			b.Fatalf("Check = %+v, %v; want %s", upd, err, f.target)
		}
		dst := filepath.Join(b.TempDir(), "image.bin")
		b.SetBytes(imageSize)
		b.ReportAllocs()
		for b.Loop() {
			if err := c.Download(ctx, upd, dst); err != nil {
				b.Fatal(err)
			}
			_ = os.Remove(dst)
		}
	})
	b.Run("go-tuf-updater", func(b *testing.B) {
		up, dir := f.newUpdater(b)
		if err := up.Refresh(); err != nil {
			b.Fatal(err)
		}
		ti, err := up.GetTargetInfo(f.target)
		if err != nil {
			b.Fatal(err)
		}
		dst := filepath.Join(dir, "image.bin")
		b.SetBytes(imageSize)
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := up.DownloadTarget(ti, dst, ""); err != nil {
				b.Fatal(err)
			}
			_ = os.Remove(dst)
		}
	})
	// curl fetches the same consistent-snapshot URL the clients use.
	up, _ := f.newUpdater(b)
	if err := up.Refresh(); err != nil {
		b.Fatal(err)
	}
	ti, err := up.GetTargetInfo(f.target)
	if err != nil {
		b.Fatal(err)
	}
	dirPart, base := filepath.Split(f.target)
	url := f.url + "/tuf/targets/" + dirPart + ti.Hashes["sha256"].String() + "." + base
	curl := func(b *testing.B, dst string) {
		run(b, "curl", "-sS", "--fail", "--cacert", f.caFile, "-H", "Authorization: Bearer "+f.deviceToken, "-o", dst, url)
	}
	b.Run("curl", func(b *testing.B) {
		lookPath(b, "curl")
		dst := filepath.Join(b.TempDir(), "image.bin")
		b.SetBytes(imageSize)
		for b.Loop() {
			curl(b, dst)
			_ = os.Remove(dst)
		}
	})
	b.Run("curl+sha256sum", func(b *testing.B) {
		lookPath(b, "curl", "sha256sum")
		dst := filepath.Join(b.TempDir(), "image.bin")
		b.SetBytes(imageSize)
		for b.Loop() {
			curl(b, dst)
			run(b, "sha256sum", dst)
			_ = os.Remove(dst)
		}
	})
}

func BenchmarkHash(b *testing.B) {
	f := getFixture(b)
	ctx := context.Background()
	b.Run("tufota-stage", func(b *testing.B) {
		blobs, err := storage.NewFile(b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		repo := signer.NewRepository(blobs)
		b.SetBytes(imageSize)
		b.ReportAllocs()
		for b.Loop() {
			src, err := os.Open(f.image)
			if err != nil {
				b.Fatal(err)
			}
			st, err := repo.Stage(ctx, src, imageSize)
			_ = src.Close()
			if err != nil {
				b.Fatal(err)
			}
			if err := repo.Discard(ctx, st); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("sha256sum", func(b *testing.B) {
		lookPath(b, "sha256sum")
		b.SetBytes(imageSize)
		for b.Loop() {
			run(b, "sha256sum", f.image)
		}
	})
	// The hashing limit (sha256sum is not it: openssl and Go's
	// crypto/sha256 use the CPU's SHA extensions) and the disk's.
	b.Run("openssl-sha256", func(b *testing.B) {
		lookPath(b, "openssl")
		b.SetBytes(imageSize)
		for b.Loop() {
			run(b, "openssl", "dgst", "-sha256", f.image)
		}
	})
	b.Run("dd-fsync", func(b *testing.B) {
		lookPath(b, "dd")
		out := filepath.Join(b.TempDir(), "dd.out")
		b.SetBytes(imageSize)
		for b.Loop() {
			run(b, "dd", "if="+f.image, "of="+out, "bs=1M", "conv=fsync", "status=none")
			_ = os.Remove(out)
		}
	})
}

func BenchmarkUpdateCheck(b *testing.B) {
	f := getFixture(b)
	ctx := context.Background()
	b.Run("tufota-client", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			upd, err := f.newClient(b).Check(ctx)
			if err != nil || upd == nil {
				b.Fatalf("Check = %+v, %v", upd, err)
			}
		}
	})
	b.Run("go-tuf-updater", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			up, _ := f.newUpdater(b)
			if err := up.Refresh(); err != nil {
				b.Fatal(err)
			}
			if _, err := up.GetTargetInfo(f.target); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("tufota-client-delegated", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			upd, err := f.newDeviceClient(b, "bench-line", f.lineToken, "line-a").Check(ctx)
			if err != nil || upd == nil {
				b.Fatalf("Check = %+v, %v", upd, err)
			}
		}
	})
	b.Run("go-tuf-updater-delegated", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			up, _ := f.newUpdater(b)
			if err := up.Refresh(); err != nil {
				b.Fatal(err)
			}
			if _, err := up.GetTargetInfo(f.lineTarget); err != nil {
				b.Fatal(err)
			}
		}
	})
}
