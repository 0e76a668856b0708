//go:build linux

package client_test

import (
	"bytes"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// TestRepositoryDownloadAcrossFileSystems: when the destination is on
// another file system than MetadataDir (the rename fails with EXDEV), the
// verified file is copied beside the destination and renamed, and the
// partial file is gone.
func TestRepositoryDownloadAcrossFileSystems(t *testing.T) {
	t.Parallel()
	other, err := os.MkdirTemp("/dev/shm", "tufota-xdev")
	if err != nil {
		t.Skipf("no second file system: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(other) })
	var a, b syscall.Stat_t
	meta := t.TempDir()
	if syscall.Stat(other, &a) != nil || syscall.Stat(meta, &b) != nil || a.Dev == b.Dev {
		t.Skip("/dev/shm is on the same file system as the temp dir")
	}
	r := newTUFRepo(t, true)
	data := bytes.Repeat([]byte("cross "), 100_000)
	r.addTarget(metadata.TARGETS, "fw.bin", data)
	r.publish()
	repo := openRepo(t, r, meta, repoEpoch)
	tg, err := repo.Target(t.Context(), "fw.bin")
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(other, "fw.bin")
	if err := repo.Download(t.Context(), tg, dst); err != nil {
		t.Fatalf("Download to another file system: %v", err)
	}
	if got, _ := os.ReadFile(dst); !bytes.Equal(got, data) {
		t.Fatal("destination differs from the target")
	}
	if entries, _ := os.ReadDir(other); len(entries) != 1 {
		t.Fatalf("destination dir holds %v, want only fw.bin", entries)
	}
	if entries, _ := os.ReadDir(filepath.Join(meta, "downloads")); len(entries) != 0 {
		t.Fatalf("partial files left: %v", entries)
	}
}
