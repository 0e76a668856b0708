package storage

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/tufota/tufota"
)

// TestFullDiskIsNoSpace checks that the stores name a full disk as
// tufota.ErrNoSpace ("storage full: ..."), not as an outage to retry: the
// file store writing into /dev/full (a real ENOSPC from the kernel), and
// SQLite past its maximum page count (a real SQLITE_FULL).
func TestFullDiskIsNoSpace(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	t.Run("file store", func(t *testing.T) {
		full, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
		if err != nil {
			t.Skipf("no /dev/full: %v", err)
		}
		f, err := NewFile(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		_, err = f.writeTemp(ctx, full, strings.NewReader(strings.Repeat("firmware", 1024)))
		if !errors.Is(err, tufota.ErrNoSpace) || !strings.Contains(err.Error(), "storage full: blob store") {
			t.Fatalf("write to a full disk: %v, want ErrNoSpace naming the blob store", err)
		}
		if errors.Is(err, tufota.ErrUnavailable) {
			t.Errorf("write to a full disk: %v is also ErrUnavailable (retry later)", err)
		}
	})
	t.Run("sqlite", func(t *testing.T) {
		raw, err := sql.Open("sqlite", "file:"+filepath.Join(t.TempDir(), "full.db")+"?_pragma=max_page_count(8)")
		if err != nil {
			t.Fatal(err)
		}
		defer raw.Close()
		raw.SetMaxOpenConns(1)
		if _, err := raw.ExecContext(ctx, `CREATE TABLE t (v TEXT)`); err != nil {
			t.Fatal(err)
		}
		var full error
		for i := 0; i < 100 && full == nil; i++ {
			_, full = raw.ExecContext(ctx, `INSERT INTO t (v) VALUES (?)`, strings.Repeat("x", 4000))
		}
		if full == nil {
			t.Fatal("SQLite never filled up")
		}
		err = (&DB{dialect: DialectSQLite}).translate("insert", full)
		if !errors.Is(err, tufota.ErrNoSpace) || !strings.Contains(err.Error(), "storage full: database") {
			t.Fatalf("SQLite full (%v) translated to %v, want ErrNoSpace naming the database", full, err)
		}
	})
	t.Run("classify", func(t *testing.T) {
		for _, err := range []error{
			fileErr("put", "k", &os.PathError{Op: "open", Path: "k", Err: syscall.ENOSPC}),
			fileWriteErr("write", &os.PathError{Op: "write", Path: "k", Err: syscall.ENOSPC}),
		} {
			if !errors.Is(err, tufota.ErrNoSpace) {
				t.Errorf("%v: want ErrNoSpace", err)
			}
		}
	})
}
