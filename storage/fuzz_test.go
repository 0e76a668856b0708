package storage_test

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tufota/tufota/storage"
	"github.com/tufota/tufota/storage/storagetest"
)

// FuzzFileKey checks that no key accepted by ValidKey escapes the File
// store's directory: whatever Put accepts lands inside the root, at the path
// the key names, and reads back unchanged; everything ValidKey accepts stays
// below the root lexically too.
func FuzzFileKey(f *testing.F) {
	for _, k := range storagetest.InvalidKeys {
		f.Add(k)
	}
	for _, k := range []string{"a", "a/b", "metadata/1.root.json", "targets/fw/abc.bin", "...", "..a", "a..",
		".hidden", "a/..b/c", "~", "$HOME", "%2e%2e/x", "a/\u2024\u2024/b", "a\tb", " ", "a/ /b"} {
		f.Add(k)
	}
	parent := f.TempDir()
	root := filepath.Join(parent, "root")
	store, err := storage.NewFile(root)
	if err != nil {
		f.Fatal(err)
	}
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, key string) {
		if storage.ValidKey(key) != nil {
			return
		}
		joined := filepath.Join(root, filepath.FromSlash(key))
		if !strings.HasPrefix(joined, root+string(filepath.Separator)) {
			t.Fatalf("valid key %q joins to %q, outside %q", key, joined, root)
		}
		data := []byte("fuzz:" + key)
		if _, err := store.Put(ctx, key, bytes.NewReader(data)); err == nil {
			got, err := os.ReadFile(joined)
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("Put(%q) succeeded but %s holds %q, %v", key, joined, got, err)
			}
			o, err := store.Open(ctx, key)
			if err != nil {
				t.Fatalf("Open(%q) after Put: %v", key, err)
			}
			b, _ := io.ReadAll(o)
			_ = o.Close()
			if !bytes.Equal(b, data) {
				t.Fatalf("Open(%q) read %q, want %q", key, b, data)
			}
		}
		entries, err := os.ReadDir(parent)
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != 1 || entries[0].Name() != "root" {
			t.Fatalf("after Put(%q) the parent of the root holds %d entries: something escaped", key, len(entries))
		}
	})
}
