package storage_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/internal/testenv"
	"github.com/tufota/tufota/storage"
	"github.com/tufota/tufota/storage/storagetest"
)

func openPostgres(t *testing.T, url string) *storage.DB {
	t.Helper()
	db, err := storage.OpenDB(context.Background(), url)
	if err != nil {
		t.Fatalf("OpenDB(postgres): %v", err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func TestPostgresConformance(t *testing.T) {
	t.Parallel()
	storagetest.RunDB(t, func(t *testing.T) *storage.DB {
		return openPostgres(t, testenv.Postgres(t))
	})
}

// TestConcurrentOpen checks that replicas starting at once on one database
// all open it, and the migrations are applied once.
func TestConcurrentOpen(t *testing.T) {
	t.Parallel()
	for _, dialect := range []string{"sqlite", "postgres"} {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			var url string
			if dialect == "sqlite" {
				url = "sqlite:" + t.TempDir() + "/state.db"
			} else {
				url = testenv.Postgres(t)
			}
			const replicas = 4
			dbs := make([]*storage.DB, replicas)
			errs := make([]error, replicas)
			var wg sync.WaitGroup
			for i := range replicas {
				wg.Go(func() { dbs[i], errs[i] = storage.OpenDB(context.Background(), url) })
			}
			wg.Wait()
			for i := range replicas {
				if errs[i] != nil {
					t.Fatalf("replica %d: OpenDB: %v", i, errs[i])
				}
				t.Cleanup(func() { _ = dbs[i].Close() })
			}
			ms, err := storage.Migrations()
			if err != nil {
				t.Fatal(err)
			}
			var n int64
			if err := dbs[0].QueryRow(context.Background(), `SELECT COUNT(*) FROM schema_migrations`).Scan(&n); err != nil || n != int64(len(ms)) {
				t.Fatalf("schema_migrations rows = %d, %v; want %d", n, err, len(ms))
			}
		})
	}
}

// TestPostgresLocksAcrossPools checks that WithLock and TryLease exclude
// each other across two DB handles (two replicas), not only within one.
func TestPostgresLocksAcrossPools(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := testenv.Postgres(t)
	a, b := openPostgres(t, url), openPostgres(t, url)
	held := make(chan struct{})
	release := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- a.WithLock(ctx, "publish", func(context.Context) error {
			close(held)
			<-release
			return nil
		})
	}()
	<-held
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	ran := false
	err := b.WithLock(cctx, "publish", func(context.Context) error { ran = true; return nil })
	if ran || !errors.Is(err, context.Canceled) {
		t.Fatalf("second replica took a held lock: ran = %v, err = %v", ran, err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := b.WithLock(ctx, "publish", func(context.Context) error { ran = true; return nil }); err != nil || !ran {
		t.Fatalf("lock not released: ran = %v, err = %v", ran, err)
	}
	if ok, err := a.TryLease(ctx, "leader", "replica-a", 1<<40); err != nil || !ok {
		t.Fatalf("replica a TryLease = %v, %v", ok, err)
	}
	if ok, err := b.TryLease(ctx, "leader", "replica-b", 1<<40); err != nil || ok {
		t.Fatalf("replica b TryLease while a leads = %v, %v; want false", ok, err)
	}
}

func TestPostgresUnavailable(t *testing.T) {
	t.Parallel()
	// A closed loopback port: connection refused, fast.
	url := "postgres://tufota:s3cret-pw@127.0.0.1:1/tufota?connect_timeout=5"
	_, err := storage.OpenDB(context.Background(), url)
	if !errors.Is(err, tufota.ErrUnavailable) {
		t.Fatalf("OpenDB on a dead server: err = %v, want ErrUnavailable", err)
	}
	if strings.Contains(err.Error(), "s3cret-pw") {
		t.Fatalf("error %q shows the password", err)
	}
	_, err = storage.OpenDB(context.Background(), "postgres://u:s3cret-pw@127.0.0.1:1/db?sslmode=bogus")
	if !errors.Is(err, tufota.ErrInvalid) || strings.Contains(fmt.Sprint(err), "s3cret-pw") {
		t.Fatalf("OpenDB with a malformed URL: err = %v, want ErrInvalid without the password", err)
	}
}
