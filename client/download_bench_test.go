package client_test

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"flag"
	"hash"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/tufota/tufota/client"
)

var downloadSize = flag.Int64("download-size", 64<<20, "bytes of the target BenchmarkRepositoryDownload fetches")

// BenchmarkRepositoryDownload downloads one target from a go-tuf-built
// repository on loopback (plain HTTP, served from disk) with each set of
// signed hashes, and reports the process's peak RSS (VmHWM, client and
// test server together) in MiB; the curl sub-benchmark fetches the same
// size from the same kind of server with curl -o, unverified, as the
// reference. For the 1 GiB figures:
//
//	go test -run '^$' -bench RepositoryDownload -benchtime 1x -download-size 1073741824 ./client/
func BenchmarkRepositoryDownload(b *testing.B) {
	for _, algs := range [][]string{{"sha256"}, {"sha512"}, {"sha256", "sha512"}} {
		b.Run(strings.Join(algs, "+"), func(b *testing.B) {
			r := newTUFRepo(b, true, algs...)
			src := filepath.Join(b.TempDir(), "image.bin")
			tf := writeImage(b, src, *downloadSize, algs)
			tf.Path = "fw/image.bin"
			r.Targets.Signed.Targets[tf.Path] = tf
			for _, h := range tf.Hashes {
				r.disk["targets/fw/"+h.String()+".image.bin"] = src
			}
			r.publish()
			repo, err := client.OpenRepository(client.RepositoryConfig{
				TrustedRoot: r.trustedRoot(), MetadataURL: r.metadataURL(), TargetsURL: r.targetsURL(),
				MetadataDir: b.TempDir(), Now: clockAt(repoEpoch),
			})
			if err != nil {
				b.Fatal(err)
			}
			tg, err := repo.Target(b.Context(), tf.Path)
			if err != nil {
				b.Fatal(err)
			}
			dst := filepath.Join(b.TempDir(), "image.bin")
			b.SetBytes(*downloadSize)
			for b.Loop() {
				if err := repo.Download(b.Context(), tg, dst); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				_ = os.Remove(dst)
				b.StartTimer()
			}
			b.ReportMetric(peakRSSMiB(b), "peak-RSS-MiB")
		})
	}
	// The reference: curl -o from the same kind of server, no verification.
	b.Run("curl", func(b *testing.B) {
		curl, err := exec.LookPath("curl")
		if err != nil {
			b.Skip("curl not on PATH")
		}
		r := newTUFRepo(b, false)
		src := filepath.Join(b.TempDir(), "image.bin")
		writeImage(b, src, *downloadSize, nil)
		r.disk["targets/image.bin"] = src
		dst := filepath.Join(b.TempDir(), "image.bin")
		b.SetBytes(*downloadSize)
		for b.Loop() {
			if out, err := exec.CommandContext(b.Context(), curl, "-sS", "--fail", "-o", dst, r.targetsURL()+"/image.bin").CombinedOutput(); err != nil {
				b.Fatalf("curl: %v: %s", err, out)
			}
			b.StopTimer()
			_ = os.Remove(dst)
			b.StartTimer()
		}
	})
}

// writeImage writes size random-looking bytes to name without holding
// them in memory, and returns their target description.
func writeImage(b *testing.B, name string, size int64, algs []string) *metadata.TargetFiles {
	b.Helper()
	block := make([]byte, 1<<20)
	if _, err := rand.Read(block); err != nil {
		b.Fatal(err)
	}
	f, err := os.Create(name)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	hs := map[string]hash.Hash{}
	ws := []io.Writer{f}
	for _, a := range algs {
		hs[a] = map[string]func() hash.Hash{"sha256": sha256.New, "sha512": sha512.New}[a]()
		ws = append(ws, hs[a])
	}
	w := io.MultiWriter(ws...)
	for left := size; left > 0; left -= int64(len(block)) {
		block[0]++ // no two blocks alike
		if _, err := w.Write(block[:min(left, int64(len(block)))]); err != nil {
			b.Fatal(err)
		}
	}
	tf := &metadata.TargetFiles{Length: size, Hashes: map[string]metadata.HexBytes{}}
	for a, h := range hs {
		tf.Hashes[a] = h.Sum(nil)
	}
	return tf
}

// peakRSSMiB reads VmHWM from /proc/self/status (0 where there is none).
func peakRSSMiB(b *testing.B) float64 {
	b.Helper()
	st, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	sc := bufio.NewScanner(bytes.NewReader(st))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb / 1024
		}
	}
	return 0
}
