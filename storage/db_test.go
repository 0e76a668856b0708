package storage_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/storage"
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

func TestSQLiteBasics(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, path := openSQLite(t)
	if db.Dialect() != "sqlite" {
		t.Fatalf("Dialect = %q", db.Dialect())
	}
	for _, table := range []string{"tokens", "releases", "settings", "schema_migrations"} {
		var n int
		if err := db.QueryRow(ctx, "SELECT COUNT(*) FROM "+table).Scan(&n); err != nil {
			t.Fatalf("table %s: %v", table, err)
		}
	}
	if _, err := db.Exec(ctx, `INSERT INTO settings (key, value, updated_at) VALUES (?, ?, ?)`, "k", "v", int64(1)); err != nil {
		t.Fatalf("insert: %v", err)
	}
	_, err := db.Exec(ctx, `INSERT INTO settings (key, value, updated_at) VALUES (?, ?, ?)`, "k", "w", int64(2))
	if !errors.Is(err, tufota.ErrConflict) {
		t.Fatalf("duplicate insert: err = %v, want ErrConflict", err)
	}
	var v string
	err = db.QueryRow(ctx, `SELECT value FROM settings WHERE key = ?`, "nope").Scan(&v)
	if !errors.Is(err, tufota.ErrNotFound) {
		t.Fatalf("missing row: err = %v, want ErrNotFound", err)
	}
	boom := errors.New("boom")
	err = db.Tx(ctx, func(tx *storage.Tx) error {
		if _, err := tx.Exec(ctx, `UPDATE settings SET value = ? WHERE key = ?`, "x", "k"); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Tx err = %v, want boom", err)
	}
	if err := db.QueryRow(ctx, `SELECT value FROM settings WHERE key = ?`, "k").Scan(&v); err != nil || v != "v" {
		t.Fatalf("after rollback value = %q, %v; want v", v, err)
	}

	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := range 40 {
		wg.Go(func() {
			errs <- db.Tx(ctx, func(tx *storage.Tx) error {
				_, err := tx.Exec(ctx, `INSERT INTO settings (key, value, updated_at) VALUES (?, ?, ?)`, fmt.Sprint("c", i), "v", int64(i))
				return err
			})
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("concurrent writer: %v", err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db2, err := storage.OpenDB(ctx, path)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer db2.Close()
	var n int
	if err := db2.QueryRow(ctx, `SELECT COUNT(*) FROM settings`).Scan(&n); err != nil || n != 41 {
		t.Fatalf("rows after reopen = %d, %v; want 41", n, err)
	}
}
