package client_test

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/tufota/tufota/client"
)

// openRepo opens a client Repository on r with the clock at now.
func openRepo(t *testing.T, r *tufRepo, dir string, now time.Time) *client.Repository {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	repo, err := client.OpenRepository(client.RepositoryConfig{
		TrustedRoot: r.trustedRoot(),
		MetadataURL: r.metadataURL(),
		TargetsURL:  r.targetsURL(),
		MetadataDir: dir,
		Now:         clockAt(now),
		Retry:       client.RetryPolicy{Attempts: 1},
	})
	if err != nil {
		t.Fatalf("OpenRepository: %v", err)
	}
	return repo
}

// TestRepositoryLayouts: the client reads spec-conforming repositories
// whatever their layout: consistent snapshots on and off, targets hashed
// with sha256, sha512 or both, paths with and without a directory. One
// Refresh serves several look-ups, and the bytes are verified against the
// signed hashes (a same-length substitute is refused).
func TestRepositoryLayouts(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name       string
		consistent bool
		algs       []string
	}{
		{"consistent sha256", true, []string{"sha256"}},
		{"consistent sha512 only", true, []string{"sha512"}},
		{"consistent sha256+sha512", true, []string{"sha256", "sha512"}},
		{"plain sha256", false, []string{"sha256"}},
		{"plain sha512 only", false, []string{"sha512"}},
		{"plain sha256+sha512", false, []string{"sha256", "sha512"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := newTUFRepo(t, tt.consistent, tt.algs...)
			images := map[string][]byte{
				"fw.bin":           bytes.Repeat([]byte("top-level "), 30_000),
				"pump/2.0/fw.bin":  bytes.Repeat([]byte("nested "), 50_000),
				"tampered.bin":     bytes.Repeat([]byte("good "), 1000),
				"README-no-dir.md": []byte("x"),
			}
			served := map[string][]string{}
			for p, data := range images {
				served[p] = r.addTarget(metadata.TARGETS, p, data)
			}
			r.publish()
			for _, name := range served["tampered.bin"] {
				r.setFile(name, bytes.Repeat([]byte("evil "), 1000))
			}

			repo := openRepo(t, r, "", repoEpoch)
			if err := repo.Refresh(t.Context()); err != nil {
				t.Fatalf("Refresh: %v", err)
			}
			_, afterRefresh := r.requestsFor("")
			dst := t.TempDir()
			for _, p := range []string{"fw.bin", "pump/2.0/fw.bin", "README-no-dir.md"} {
				tg, err := repo.Target(t.Context(), p)
				if err != nil {
					t.Fatalf("Target(%s): %v", p, err)
				}
				if !slices.Equal(slices.Sorted(maps.Keys(tg.Hashes)), slices.Sorted(slices.Values(tt.algs))) || tg.Length != int64(len(images[p])) {
					t.Fatalf("Target(%s) = %+v, want length %d hashed with %v", p, tg, len(images[p]), tt.algs)
				}
				out := filepath.Join(dst, filepath.Base(p))
				if err := repo.Download(t.Context(), tg, out); err != nil {
					t.Fatalf("Download(%s): %v", p, err)
				}
				if got, _ := os.ReadFile(out); !bytes.Equal(got, images[p]) {
					t.Fatalf("Download(%s) wrote other bytes", p)
				}
				if n := requestsOf(r, served[p]); n != 1 {
					t.Fatalf("%s: %d requests for its files %v, want 1", p, n, served[p])
				}
				_ = os.Remove(out)
			}
			if _, m := r.requestsFor(""); m != afterRefresh {
				t.Fatalf("look-ups after Refresh made %d metadata requests, want none", m-afterRefresh)
			}
			tg, err := repo.Target(t.Context(), "tampered.bin")
			if err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(dst, "tampered.bin")
			if err := repo.Download(t.Context(), tg, out); !errors.Is(err, client.ErrHashMismatch) {
				t.Fatalf("Download of substituted bytes = %v, want ErrHashMismatch", err)
			}
			assertNoFile(t, out)
			if _, err := repo.Target(t.Context(), "unsigned.bin"); !errors.Is(err, client.ErrNotSigned) {
				t.Fatalf("Target(unsigned.bin) = %v, want ErrNotSigned", err)
			}
		})
	}
}

func requestsOf(r *tufRepo, names []string) int {
	n := 0
	for _, name := range names {
		c, _ := r.requestsFor(name)
		n += c
	}
	return n
}

// TestRepositoryAttacks: a device refreshes from the honest repository
// (its state in dir), then the repository (or a man in the middle)
// misbehaves, and Refresh must refuse with ErrMetadata and the go-tuf
// error named. Where the attack needs the device to have seen newer
// metadata first, the case refreshes the device from the honest state
// before the attack, so a client that verified nothing would pass there
// and fail the attack.
func TestRepositoryAttacks(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name   string
		attack func(t *testing.T, r *tufRepo, dir string) (now time.Time)
		want   error
	}{
		{"rollback: older timestamp", func(t *testing.T, r *tufRepo, dir string) time.Time {
			old := r.file("metadata/timestamp.json")
			r.addTarget(metadata.TARGETS, "new.bin", []byte("new"))
			r.publish()
			refreshOKIn(t, r, dir, repoEpoch)
			r.setFile("metadata/timestamp.json", old)
			return repoEpoch
		}, &metadata.ErrBadVersionNumber{}},
		{"rollback: timestamp names an older snapshot", func(t *testing.T, r *tufRepo, dir string) time.Time {
			r.publish()
			refreshOKIn(t, r, dir, repoEpoch)
			r.Snapshot.Signed.Version = 1
			r.Timestamp.Signed.Version += 5
			r.publishTimestamp(false)
			return repoEpoch
		}, &metadata.ErrBadVersionNumber{}},
		{"freeze: expired timestamp under the injected clock", func(t *testing.T, r *tufRepo, dir string) time.Time {
			r.Timestamp.Signed.Expires = repoEpoch.Add(time.Hour)
			r.Timestamp.Signed.Version++
			r.publishTimestamp(false)
			refreshOKIn(t, r, dir, repoEpoch)
			// The wall clock (before repoEpoch) would still accept it.
			return repoEpoch.Add(2 * time.Hour)
		}, &metadata.ErrExpiredMetadata{}},
		{"freeze: expired snapshot", func(t *testing.T, r *tufRepo, dir string) time.Time {
			r.Snapshot.Signed.Expires = repoEpoch.Add(time.Hour)
			r.Timestamp.Signed.Version++
			r.Snapshot.Signed.Version++
			r.publishTimestamp(true)
			refreshOKIn(t, r, dir, repoEpoch)
			return repoEpoch.Add(2 * time.Hour)
		}, &metadata.ErrExpiredMetadata{}},
		{"mix-and-match: targets of another version under the snapshot's name", func(t *testing.T, r *tufRepo, dir string) time.Time {
			v1 := r.file(r.metaName(metadata.TARGETS, 1))
			r.addTarget(metadata.TARGETS, "new.bin", []byte("new"))
			r.publish() // snapshot names targets v2
			r.setFile(r.metaName(metadata.TARGETS, 2), v1)
			return repoEpoch
		}, &metadata.ErrBadVersionNumber{}},
		{"mix-and-match: targets signed by the snapshot key", func(t *testing.T, r *tufRepo, dir string) time.Time {
			r.addTarget(metadata.TARGETS, "evil.bin", []byte("evil"))
			r.Targets.Signed.Version++
			r.setFile(r.metaName(metadata.TARGETS, r.Targets.Signed.Version), r.sign(metadata.SNAPSHOT, r.Targets))
			r.Snapshot.Signed.Meta["targets.json"] = metadata.MetaFile(r.Targets.Signed.Version)
			r.Snapshot.Signed.Version++
			r.Timestamp.Signed.Version++
			r.publishTimestamp(true)
			return repoEpoch
		}, &metadata.ErrUnsignedMetadata{}},
		{"key rotation: timestamp signed by the revoked key", func(t *testing.T, r *tufRepo, dir string) time.Time {
			old := r.keys[metadata.TIMESTAMP]
			r.rotateKey(metadata.TIMESTAMP)
			r.publish()
			refreshOKIn(t, r, dir, repoEpoch) // walks to root v2, new key accepted
			r.Timestamp.Signed.Version++
			r.setFile("metadata/timestamp.json", signWith(t, r.Timestamp, old))
			return repoEpoch
		}, &metadata.ErrUnsignedMetadata{}},
		{"key rotation: root v2 not signed by the old root key", func(t *testing.T, r *tufRepo, dir string) time.Time {
			r.rotateKey(metadata.ROOT)
			r.publishRoot() // v2 re-served signed by the new key alone
			return repoEpoch
		}, &metadata.ErrUnsignedMetadata{}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := newTUFRepo(t, true)
			r.addTarget(metadata.TARGETS, "fw.bin", []byte("firmware"))
			r.publish()
			dir := t.TempDir()
			refreshOKIn(t, r, dir, repoEpoch)
			now := tt.attack(t, r, dir)
			err := openRepo(t, r, dir, now).Refresh(t.Context())
			if !errors.Is(err, client.ErrMetadata) || !errors.Is(err, tt.want) {
				t.Fatalf("Refresh under attack = %v, want ErrMetadata with %T", err, tt.want)
			}
		})
	}
}

// refreshOKIn checks that the device whose metadata is in dir accepts the
// current (honest) repository at now.
func refreshOKIn(t *testing.T, r *tufRepo, dir string, now time.Time) {
	t.Helper()
	if err := openRepo(t, r, dir, now).Refresh(t.Context()); err != nil {
		t.Fatalf("Refresh of the honest repository: %v", err)
	}
}

// TestRepositoryKeyRotation: a device that shipped with root v1 walks
// every root version (root key rotated, then the targets key), persists
// the newest, and verifies targets signed by the new key; a reopened
// repository starts from the persisted root.
func TestRepositoryKeyRotation(t *testing.T) {
	t.Parallel()
	r := newTUFRepo(t, true)
	r.addTarget(metadata.TARGETS, "fw.bin", []byte("v1"))
	r.publish()
	dir := t.TempDir()
	refreshOKIn(t, r, dir, repoEpoch)

	r.rotateKey(metadata.ROOT)    // v2, signed by the old and the new root key
	r.rotateKey(metadata.TARGETS) // v3, new root key only
	r.addTarget(metadata.TARGETS, "fw2.bin", []byte("v2"))
	r.publish()
	repo := openRepo(t, r, dir, repoEpoch)
	tg, err := repo.Target(t.Context(), "fw2.bin")
	if err != nil {
		t.Fatalf("Target after rotations: %v", err)
	}
	if tg.Length != 2 {
		t.Fatalf("Target = %+v", tg)
	}
	b, err := os.ReadFile(filepath.Join(dir, "root.json"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := metadata.Root().FromBytes(b)
	if err != nil || m.Signed.Version != 3 {
		t.Fatalf("persisted root = v%d, %v; want v3", m.Signed.Version, err)
	}
	// The old targets key can no longer sign a release.
	_, s := newKey(t)
	r.keys[metadata.TARGETS] = []signature.Signer{s}
	r.publish()
	if err := openRepo(t, r, dir, repoEpoch).Refresh(t.Context()); !errors.Is(err, client.ErrMetadata) {
		t.Fatalf("Refresh with targets signed by an untrusted key = %v, want ErrMetadata", err)
	}
}

// TestRepositoryDelegationOrder: delegated roles are searched in the
// order the delegating role lists them; the first that lists the target
// wins, a terminating delegation ends the search, and a role whose paths
// do not match is never asked.
func TestRepositoryDelegationOrder(t *testing.T) {
	t.Parallel()
	for _, consistent := range []bool{true, false} {
		t.Run(fmt.Sprintf("consistent=%v", consistent), func(t *testing.T) {
			t.Parallel()
			testDelegationOrder(t, newTUFRepo(t, consistent))
		})
	}
}

func testDelegationOrder(t *testing.T, r *tufRepo) {
	t.Helper()
	r.delegate(metadata.TARGETS, "first", []string{"fw/*"}, false)
	r.delegate(metadata.TARGETS, "stop", []string{"fw/term/*"}, true)
	r.delegate(metadata.TARGETS, "second", []string{"fw/*"}, false)
	r.delegate(metadata.TARGETS, "other", []string{"other/*"}, false)
	// Without consistent snapshots one path is one served file: the
	// winning role's bytes are added last.
	r.addTarget("second", "fw/a.bin", []byte("from second, later in order"))
	r.addTarget("first", "fw/a.bin", []byte("from first"))
	r.addTarget("second", "fw/b.bin", []byte("only in second"))
	r.addTarget("second", "fw/term/c.bin", []byte("behind a terminating role"))
	r.addTarget("other", "fw/d.bin", []byte("outside other's paths"))
	r.publish()

	repo := openRepo(t, r, "", repoEpoch)
	if err := repo.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		path string
		want string // content, "" for ErrNotSigned
	}{
		{"fw/a.bin", "from first"},
		{"fw/b.bin", "only in second"},
		{"fw/term/c.bin", ""},
		{"fw/d.bin", ""},
	} {
		tg, err := repo.Target(t.Context(), tt.path)
		if tt.want == "" {
			if !errors.Is(err, client.ErrNotSigned) {
				t.Fatalf("Target(%s) = %+v, %v; want ErrNotSigned", tt.path, tg, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("Target(%s): %v", tt.path, err)
		}
		out := filepath.Join(t.TempDir(), "out")
		if err := repo.Download(t.Context(), tg, out); err != nil {
			t.Fatalf("Download(%s): %v", tt.path, err)
		}
		if got, _ := os.ReadFile(out); string(got) != tt.want {
			t.Fatalf("Target(%s) gave %q, want %q", tt.path, got, tt.want)
		}
	}
	if n, _ := r.requestsFor(r.metaName("other", 1)); n != 0 {
		t.Fatalf("role 'other' fetched %d times, want never (its paths match none of the look-ups)", n)
	}
}

// TestRepositoryConcurrentUse: look-ups, downloads (two of them of the
// same target) and a Refresh at once, under the race detector.
func TestRepositoryConcurrentUse(t *testing.T) {
	t.Parallel()
	r := newTUFRepo(t, true, "sha256", "sha512")
	images := map[string][]byte{}
	for i := range 3 {
		p := fmt.Sprintf("fw/%d.bin", i)
		images[p] = bytes.Repeat([]byte{byte('a' + i)}, 300_000+i)
		r.addTarget(metadata.TARGETS, p, images[p])
	}
	r.publish()
	repo := openRepo(t, r, "", repoEpoch)
	dir := t.TempDir()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i, p := range []string{"fw/0.bin", "fw/1.bin", "fw/2.bin", "fw/0.bin"} {
		wg.Go(func() {
			tg, err := repo.Target(t.Context(), p)
			if err != nil {
				errs <- err
				return
			}
			out := filepath.Join(dir, fmt.Sprintf("out-%d", i))
			if err := repo.Download(t.Context(), tg, out); err != nil {
				errs <- err
				return
			}
			if got, _ := os.ReadFile(out); !bytes.Equal(got, images[p]) {
				errs <- fmt.Errorf("%s: downloaded bytes differ", p)
			}
		})
	}
	wg.Go(func() {
		if err := repo.Refresh(t.Context()); err != nil {
			errs <- err
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
