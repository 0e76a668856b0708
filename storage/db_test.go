package storage_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/storage"
	"github.com/tufota/tufota/storage/storagetest"
)

func openSQLite(t *testing.T) (*storage.DB, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "state.db")
	db, err := storage.OpenDB(context.Background(), "sqlite:"+path)
	if err != nil {
		t.Fatalf("OpenDB: %v", err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db, path
}

func TestSQLiteConformance(t *testing.T) {
	t.Parallel()
	storagetest.RunDB(t, func(t *testing.T) *storage.DB {
		db, _ := openSQLite(t)
		return db
	})
}

func TestSQLiteReopen(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, path := openSQLite(t)
	if _, err := db.Exec(ctx, `INSERT INTO settings (key, value, updated_at) VALUES (?, ?, ?)`, "k", "v", int64(1)); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	// Reopen by bare path: the migrations are not applied twice and the
	// data is there.
	db2, err := storage.OpenDB(ctx, path)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	var v string
	if err := db2.QueryRow(ctx, `SELECT value FROM settings WHERE key = ?`, "k").Scan(&v); err != nil || v != "v" {
		t.Fatalf("after reopen value = %q, %v", v, err)
	}
	var mode string
	if err := db2.QueryRow(ctx, `PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
		t.Fatalf("journal_mode = %q, %v; want wal", mode, err)
	}
	var fk int
	if err := db2.QueryRow(ctx, `PRAGMA foreign_keys`).Scan(&fk); err != nil || fk != 1 {
		t.Fatalf("foreign_keys = %d, %v; want 1", fk, err)
	}
	// A schema from a newer tufota is refused at open.
	if _, err := db2.Exec(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`,
		int64(9999), "future", int64(1)); err != nil {
		t.Fatal(err)
	}
	if err := db2.Close(); err != nil {
		t.Fatal(err)
	}
	_, err = storage.OpenDB(ctx, "sqlite:"+path)
	if !errors.Is(err, tufota.ErrConflict) || !strings.Contains(err.Error(), "9999") {
		t.Fatalf("OpenDB of a newer schema: err = %v, want ErrConflict naming version 9999", err)
	}
}

func TestOpenDBBadURLs(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	tests := []struct {
		url  string
		want error
	}{
		{"", tufota.ErrInvalid},
		{"sqlite:", tufota.ErrInvalid},
		{":memory:", tufota.ErrInvalid},
		{"mysql://u:secret@h/db", tufota.ErrInvalid},
		{filepath.Join(dir, "no", "such", "dir", "state.db"), tufota.ErrUnavailable},
	}
	for _, tc := range tests {
		db, err := storage.OpenDB(ctx, tc.url)
		if err == nil {
			_ = db.Close()
		}
		if !errors.Is(err, tc.want) {
			t.Errorf("OpenDB(%q): err = %v, want %v", tc.url, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("OpenDB(%q): error %q shows the password", tc.url, err)
		}
	}
}

// TestSQLiteSpecialPath checks that a path with URI metacharacters opens
// the file it names.
func TestSQLiteSpecialPath(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "we?ird #dir %41", "state.db")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	db, err := storage.OpenDB(context.Background(), path)
	if err != nil {
		t.Fatalf("OpenDB: %v", err)
	}
	defer db.Close()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("database file not at %q: %v", path, err)
	}
}

func TestRebind(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"SELECT 1", "SELECT 1"},
		{"a = ? AND b = ?", "a = $1 AND b = $2"},
		{"v = '?' AND k = ?", "v = '?' AND k = $1"},
		{"v = 'it''s?' AND k = ?", "v = 'it''s?' AND k = $1"},
		{`"we?rd" = ?`, `"we?rd" = $1`},
		{"x -- why?\n= ?", "x -- why?\n= $1"},
		{"x /* ? ' */ = ?", "x /* ? ' */ = $1"},
		{"E'a\\'?' = ?", "E'a\\'?' = $1"},
		{"'a\\' = ?", "'a\\' = $1"}, // standard strings: backslash is a plain character
		{"$$ ? $$ = ?", "$$ ? $$ = $1"},
		{"$tag$ ? $x$ ? $tag$ = ?", "$tag$ ? $x$ ? $tag$ = $1"},
		{"x$1 = ?", "x$1 = $1"},
		{"'unterminated ?", "'unterminated ?"},
		{"?,?,?,?,?,?,?,?,?,?,?", "$1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11"},
	}
	for _, tc := range tests {
		if got := storage.Rebind(tc.in); got != tc.want {
			t.Errorf("Rebind(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func FuzzRebind(f *testing.F) {
	for _, s := range []string{"a = ?", "'?' ?", `"?" ?`, "-- ?\n?", "/* ? */ ?", "$$?$$?", "E'\\'?'?"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, q string) {
		out := storage.Rebind(q)
		// Placeholders are replaced, never added: the text without
		// '?' and "$N" is unchanged, and there are no more $N than '?'.
		if strings.Count(out, "?") > strings.Count(q, "?") {
			t.Fatalf("Rebind(%q) = %q added '?'", q, out)
		}
		if !strings.Contains(q, "?") && out != q {
			t.Fatalf("Rebind(%q) = %q changed a query without '?'", q, out)
		}
	})
}
