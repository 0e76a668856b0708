package storagetest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/storage"
)

// RunDB runs the SQL state store conformance suite. newDB must return a DB
// on a fresh, empty database (migrations applied by storage.OpenDB) for the
// (sub)test it is given and arrange its cleanup; it is called once per
// subtest, possibly from parallel subtests.
func RunDB(t *testing.T, newDB func(t *testing.T) *storage.DB) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, db *storage.DB)
	}{
		{"Migrations", testMigrations},
		{"CRUD", testCRUD},
		{"NotFound", testDBNotFound},
		{"Conflict", testDBConflict},
		{"Invalid", testDBInvalid},
		{"TxCommit", testTxCommit},
		{"TxRollbackOnError", testTxRollbackOnError},
		{"TxRollbackOnPanic", testTxRollbackOnPanic},
		{"TxStatementError", testTxStatementError},
		{"ConcurrentWriters", testConcurrentWriters},
		{"GroupCommit", testGroupCommit},
		{"Generations", testGenerations},
		{"NanosecondTimes", testNanosecondTimes},
		{"Placeholders", testPlaceholders},
		{"ContextCancel", testDBContextCancel},
		{"WithLock", testWithLock},
		{"Lease", testLease},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, newDB(t))
		})
	}
}

// setSetting inserts a settings row or fails the test.
func setSetting(t *testing.T, q storage.Querier, key, value string) {
	t.Helper()
	if _, err := q.Exec(context.Background(), `INSERT INTO settings (key, value, updated_at) VALUES (?, ?, ?)`,
		key, value, int64(1)); err != nil {
		t.Fatalf("insert setting %q: %v", key, err)
	}
}

// setting reads a settings value; ok is false if the row is missing.
func setting(t *testing.T, q storage.Querier, key string) (value string, ok bool) {
	t.Helper()
	err := q.QueryRow(context.Background(), `SELECT value FROM settings WHERE key = ?`, key).Scan(&value)
	if errors.Is(err, tufota.ErrNotFound) {
		return "", false
	}
	if err != nil {
		t.Fatalf("read setting %q: %v", key, err)
	}
	return value, true
}

func testMigrations(t *testing.T, db *storage.DB) {
	ctx := context.Background()
	if d := db.Dialect(); d != storage.DialectSQLite && d != storage.DialectPostgres {
		t.Fatalf("Dialect() = %q", d)
	}
	if err := db.Ping(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	ms, err := storage.Migrations()
	if err != nil {
		t.Fatalf("Migrations: %v", err)
	}
	if len(ms) == 0 || ms[0].Version != 1 {
		t.Fatalf("Migrations() = %d migrations, the first %+v; want 0001 first", len(ms), ms)
	}
	check := func(when string) {
		t.Helper()
		rows, err := db.Query(ctx, `SELECT version, name, applied_at FROM schema_migrations ORDER BY version`)
		if err != nil {
			t.Fatalf("%s: read schema_migrations: %v", when, err)
		}
		defer rows.Close()
		i := 0
		for rows.Next() {
			var v, at int64
			var name string
			if err := rows.Scan(&v, &name, &at); err != nil {
				t.Fatal(err)
			}
			if i >= len(ms) || v != ms[i].Version || name != ms[i].Name || at <= 0 {
				t.Fatalf("%s: schema_migrations row %d = (%d, %q, %d), want migration %+v", when, i, v, name, at, ms[min(i, len(ms)-1)].Version)
			}
			i++
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		if i != len(ms) {
			t.Fatalf("%s: %d migrations recorded, want %d", when, i, len(ms))
		}
	}
	check("after open")
	for _, table := range []string{"tokens", "releases", "settings", "leases"} {
		var n int64
		if err := db.QueryRow(ctx, "SELECT COUNT(*) FROM "+table).Scan(&n); err != nil || n != 0 {
			t.Fatalf("table %s: count = %d, %v; want an empty table", table, n, err)
		}
	}
	setSetting(t, db, "survives", "migrate")
	if err := db.Migrate(ctx); err != nil {
		t.Fatalf("second Migrate: %v", err)
	}
	check("after a second Migrate")
	if v, ok := setting(t, db, "survives"); !ok || v != "migrate" {
		t.Fatalf("data after a second Migrate = %q, %v", v, ok)
	}
	// A schema from the future is refused.
	future := ms[len(ms)-1].Version + 1
	if _, err := db.Exec(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`,
		future, "from_the_future", int64(1)); err != nil {
		t.Fatal(err)
	}
	err = db.Migrate(ctx)
	if !errors.Is(err, tufota.ErrConflict) || !strings.Contains(err.Error(), "newer") {
		t.Fatalf("Migrate on a newer schema: err = %v, want ErrConflict saying the schema is newer", err)
	}
	if _, err := db.Exec(ctx, `DELETE FROM schema_migrations WHERE version = ?`, future); err != nil {
		t.Fatal(err)
	}
}

func testCRUD(t *testing.T, db *storage.DB) {
	ctx := context.Background()
	now := time.Now().UnixNano()
	_, err := db.Exec(ctx, `INSERT INTO releases (name, version, target_path, length, sha256, sha512, hardware,
		custom, state, created_at, created_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		"fw", "1.2.3", "fw/1.2.3/fw.bin", int64(5<<30), "aa", "bb", `["hw-a"]`, `{}`, "pending", now, "alice")
	if err != nil {
		t.Fatalf("insert release: %v", err)
	}
	var (
		length, created, tv int64
		notes, state        string
		published           sql.NullInt64
	)
	err = db.QueryRow(ctx, `SELECT length, notes, state, targets_version, created_at, published_at
		FROM releases WHERE name = ? AND version = ?`, "fw", "1.2.3").Scan(&length, &notes, &state, &tv, &created, &published)
	if err != nil {
		t.Fatalf("select release: %v", err)
	}
	if length != 5<<30 || notes != "" || state != "pending" || tv != 0 || created != now || published.Valid {
		t.Fatalf("release = (%d, %q, %q, %d, %d, %v), want defaults and the inserted values", length, notes, state, tv, created, published)
	}
	res, err := db.Exec(ctx, `UPDATE releases SET state = ?, published_at = ?, targets_version = ? WHERE name = ? AND version = ?`,
		"published", now+1, int64(2), "fw", "1.2.3")
	if err != nil {
		t.Fatalf("update: %v", err)
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		t.Fatalf("RowsAffected = %d, %v; want 1", n, err)
	}
	if err := db.QueryRow(ctx, `SELECT published_at FROM releases WHERE target_path = ?`, "fw/1.2.3/fw.bin").Scan(&published); err != nil ||
		!published.Valid || published.Int64 != now+1 {
		t.Fatalf("published_at = %v, %v", published, err)
	}
	for i := range 5 {
		setSetting(t, db, fmt.Sprintf("k%d", i), fmt.Sprintf("v%d", i))
	}
	rows, err := db.Query(ctx, `SELECT key, value FROM settings WHERE key >= ? ORDER BY key`, "k2")
	if err != nil {
		t.Fatalf("query: %v", err)
	}
	var got []string
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			t.Fatal(err)
		}
		got = append(got, k+"="+v)
	}
	if err := rows.Close(); err != nil {
		t.Fatal(err)
	}
	if strings.Join(got, ",") != "k2=v2,k3=v3,k4=v4" {
		t.Fatalf("rows = %q", got)
	}
	res, err = db.Exec(ctx, `DELETE FROM settings WHERE key = ?`, "k0")
	if err != nil {
		t.Fatalf("delete: %v", err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		t.Fatalf("delete affected %d rows, want 1", n)
	}
	if _, ok := setting(t, db, "k0"); ok {
		t.Fatalf("deleted row still there")
	}
}

func testDBNotFound(t *testing.T, db *storage.DB) {
	ctx := context.Background()
	var v string
	err := db.QueryRow(ctx, `SELECT value FROM settings WHERE key = ?`, "missing").Scan(&v)
	wantErr(t, "QueryRow(missing).Scan", err, tufota.ErrNotFound)
	err = db.Tx(ctx, func(tx *storage.Tx) error {
		return tx.QueryRow(ctx, `SELECT value FROM settings WHERE key = ?`, "missing").Scan(&v)
	})
	wantErr(t, "Tx QueryRow(missing).Scan", err, tufota.ErrNotFound)
	// A broken query is not "not found".
	err = db.QueryRow(ctx, `SELECT value FROM no_such_table WHERE key = ?`, "x").Scan(&v)
	if err == nil || errors.Is(err, tufota.ErrNotFound) {
		t.Fatalf("query of a missing table: err = %v, want an error other than ErrNotFound", err)
	}
	if err := db.QueryRow(ctx, `SELECT value FROM no_such_table`).Err(); err == nil {
		t.Fatalf("Row.Err of a broken query = nil")
	}
}

func testDBConflict(t *testing.T, db *storage.DB) {
	ctx := context.Background()
	setSetting(t, db, "dup", "1")
	_, err := db.Exec(ctx, `INSERT INTO settings (key, value, updated_at) VALUES (?, ?, ?)`, "dup", "2", int64(1))
	wantErr(t, "duplicate primary key", err, tufota.ErrConflict)

	insertToken := func(id, hash string) error {
		_, err := db.Exec(ctx, `INSERT INTO tokens (id, name, role, hash, created_at, created_by) VALUES (?, ?, ?, ?, ?, ?)`,
			id, "ci", "publisher", hash, int64(1), "admin")
		return err
	}
	if err := insertToken("t1", "h1"); err != nil {
		t.Fatal(err)
	}
	err = insertToken("t2", "h1")
	wantErr(t, "duplicate UNIQUE column", err, tufota.ErrConflict)
	if !strings.Contains(err.Error(), "hash") {
		t.Fatalf("conflict message %q does not name the constraint (tokens.hash)", err)
	}
	// The cause is kept for logs.
	if errors.Unwrap(err) == nil {
		t.Fatalf("conflict error %q lost its cause", err)
	}

	insertRelease := func(version, path string) error {
		_, err := db.Exec(ctx, `INSERT INTO releases (name, version, target_path, length, sha256, sha512, hardware,
			custom, state, created_at, created_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			"fw", version, path, int64(1), "a", "b", "[]", "{}", "pending", int64(1), "x")
		return err
	}
	if err := insertRelease("1.0.0", "fw/1.0.0/a"); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "duplicate composite primary key", insertRelease("1.0.0", "fw/1.0.0/b"), tufota.ErrConflict)
	wantErr(t, "duplicate target_path", insertRelease("2.0.0", "fw/1.0.0/a"), tufota.ErrConflict)
}

func testDBInvalid(t *testing.T, db *storage.DB) {
	ctx := context.Background()
	_, err := db.Exec(ctx, `INSERT INTO settings (key, value, updated_at) VALUES (?, ?, ?)`, "k", nil, int64(1))
	wantErr(t, "NULL in a NOT NULL column", err, tufota.ErrInvalid)
}

func testTxCommit(t *testing.T, db *storage.DB) {
	ctx := context.Background()
	err := db.Tx(ctx, func(tx *storage.Tx) error {
		setSetting(t, tx, "a", "1")
		setSetting(t, tx, "b", "2")
		// Reads inside the transaction see its writes.
		if v, ok := setting(t, tx, "a"); !ok || v != "1" {
			t.Errorf("read inside Tx = %q, %v", v, ok)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Tx: %v", err)
	}
	for _, k := range []string{"a", "b"} {
		if _, ok := setting(t, db, k); !ok {
			t.Fatalf("committed row %q missing", k)
		}
	}
}

func testTxRollbackOnError(t *testing.T, db *storage.DB) {
	ctx := context.Background()
	setSetting(t, db, "x", "before")
	boom := errors.New("boom")
	err := db.Tx(ctx, func(tx *storage.Tx) error {
		setSetting(t, tx, "new", "1")
		if _, err := tx.Exec(ctx, `UPDATE settings SET value = ? WHERE key = ?`, "after", "x"); err != nil {
			return err
		}
		return fmt.Errorf("wrapped: %w", boom)
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Tx err = %v, want fn's error", err)
	}
	if _, ok := setting(t, db, "new"); ok {
		t.Fatalf("insert of a rolled-back Tx is visible")
	}
	if v, _ := setting(t, db, "x"); v != "before" {
		t.Fatalf("update of a rolled-back Tx is visible: %q", v)
	}
	// The DB is usable afterwards (no lock or connection leaked).
	setSetting(t, db, "after", "ok")
}

func testTxRollbackOnPanic(t *testing.T, db *storage.DB) {
	ctx := context.Background()
	func() {
		defer func() {
			if r := recover(); r != "kaboom" {
				t.Fatalf("recovered %v, want the panic to propagate", r)
			}
		}()
		_ = db.Tx(ctx, func(tx *storage.Tx) error {
			setSetting(t, tx, "panicky", "1")
			panic("kaboom")
		})
	}()
	if _, ok := setting(t, db, "panicky"); ok {
		t.Fatalf("insert of a panicked Tx is visible")
	}
	// Nothing leaked: a new Tx and a plain write still work.
	if err := db.Tx(ctx, func(tx *storage.Tx) error { setSetting(t, tx, "later", "1"); return nil }); err != nil {
		t.Fatalf("Tx after a panic: %v", err)
	}
	setSetting(t, db, "later2", "1")
}

func testTxStatementError(t *testing.T, db *storage.DB) {
	ctx := context.Background()
	setSetting(t, db, "dup", "1")
	err := db.Tx(ctx, func(tx *storage.Tx) error {
		setSetting(t, tx, "fresh", "1")
		_, err := tx.Exec(ctx, `INSERT INTO settings (key, value, updated_at) VALUES (?, ?, ?)`, "dup", "2", int64(1))
		return err
	})
	wantErr(t, "Tx with a conflicting insert", err, tufota.ErrConflict)
	if _, ok := setting(t, db, "fresh"); ok {
		t.Fatalf("a Tx that failed left a row behind")
	}
}

func testConcurrentWriters(t *testing.T, db *storage.DB) {
	ctx := context.Background()
	setSetting(t, db, "counter", "c")
	const writers, each = 24, 5
	var wg sync.WaitGroup
	var failed atomic.Int64
	errs := make(chan error, writers*each*2)
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				// A transaction that reads, then writes.
				err := db.Tx(ctx, func(tx *storage.Tx) error {
					var n int64
					if err := tx.QueryRow(ctx, `SELECT COUNT(*) FROM settings`).Scan(&n); err != nil {
						return err
					}
					if _, err := tx.Exec(ctx, `INSERT INTO settings (key, value, updated_at) VALUES (?, ?, ?)`,
						fmt.Sprintf("w%d-%d", w, i), "v", n); err != nil {
						return err
					}
					_, err := tx.Exec(ctx, `UPDATE settings SET updated_at = updated_at + 1 WHERE key = ?`, "counter")
					return err
				})
				if err != nil {
					failed.Add(1)
					errs <- err
				}
				// A plain autocommit write.
				if _, err := db.Exec(ctx, `UPDATE settings SET updated_at = updated_at + 1 WHERE key = ?`, "counter"); err != nil {
					failed.Add(1)
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent writer: %v", err)
	}
	if failed.Load() > 0 {
		t.FailNow()
	}
	var n, counter int64
	if err := db.QueryRow(ctx, `SELECT COUNT(*) FROM settings WHERE key <> ?`, "counter").Scan(&n); err != nil || n != writers*each {
		t.Fatalf("rows = %d, %v; want %d", n, err, writers*each)
	}
	if err := db.QueryRow(ctx, `SELECT updated_at FROM settings WHERE key = ?`, "counter").Scan(&counter); err != nil ||
		counter != 1+2*writers*each {
		t.Fatalf("counter = %d, %v; want %d (a lost update?)", counter, err, 1+2*writers*each)
	}
}

func testNanosecondTimes(t *testing.T, db *storage.DB) {
	ctx := context.Background()
	now := time.Now()
	values := []int64{
		0, 1, -1, now.UnixNano(), now.UnixNano() + 999, math.MaxInt64, math.MinInt64,
		time.Date(2262, 4, 11, 23, 47, 16, 854775807, time.UTC).UnixNano(), // the last representable instant
		time.Date(1970, 1, 1, 0, 0, 0, 1, time.UTC).UnixNano(),
	}
	for i, v := range values {
		if _, err := db.Exec(ctx, `INSERT INTO tokens (id, name, role, hash, created_at, created_by, expires_at)
			VALUES (?, ?, ?, ?, ?, ?, ?)`, fmt.Sprint("t", i), "n", "r", fmt.Sprint("h", i), v, "x", v); err != nil {
			t.Fatalf("insert %d: %v", v, err)
		}
		var got int64
		var exp sql.NullInt64
		if err := db.QueryRow(ctx, `SELECT created_at, expires_at FROM tokens WHERE id = ?`, fmt.Sprint("t", i)).Scan(&got, &exp); err != nil {
			t.Fatalf("select %d: %v", v, err)
		}
		if got != v || !exp.Valid || exp.Int64 != v {
			t.Fatalf("round trip of %d = %d / %v", v, got, exp)
		}
		if v == now.UnixNano() && !time.Unix(0, got).Equal(now) {
			t.Fatalf("time %v came back as %v", now, time.Unix(0, got))
		}
	}
	// Ordering by BIGINT time is numeric.
	var first int64
	if err := db.QueryRow(ctx, `SELECT created_at FROM tokens ORDER BY created_at LIMIT 1`).Scan(&first); err != nil || first != math.MinInt64 {
		t.Fatalf("smallest created_at = %d, %v", first, err)
	}
	// NULL stays NULL.
	var exp sql.NullInt64
	if err := db.QueryRow(ctx, `SELECT revoked_at FROM tokens WHERE id = ?`, "t0").Scan(&exp); err != nil || exp.Valid {
		t.Fatalf("revoked_at = %v, %v; want NULL", exp, err)
	}
}

func testPlaceholders(t *testing.T, db *storage.DB) {
	ctx := context.Background()
	setSetting(t, db, "q?1", "what?")
	setSetting(t, db, "plain", "it's")
	tests := []struct {
		name  string
		query string
		args  []any
		want  string
	}{
		{"literal with ?", `SELECT key FROM settings WHERE value = 'what?' AND key = ?`, []any{"q?1"}, "q?1"},
		{"? only in argument", `SELECT value FROM settings WHERE key = ?`, []any{"q?1"}, "what?"},
		{"doubled quote", `SELECT key FROM settings WHERE value = 'it''s' AND key <> ?`, []any{"?"}, "plain"},
		{"quoted identifier", `SELECT "key" FROM settings WHERE "value" = ? AND key <> '?'`, []any{"it's"}, "plain"},
		{"line comment", "SELECT key FROM settings -- which one? the '?'\n WHERE value = ?", []any{"it's"}, "plain"},
		{"block comment", `SELECT key /* why? ' */ FROM settings WHERE value = ?`, []any{"what?"}, "q?1"},
		{"several", `SELECT key FROM settings WHERE value = ? AND key = ? AND updated_at = ?`, []any{"what?", "q?1", int64(1)}, "q?1"},
	}
	for _, tc := range tests {
		var got string
		if err := db.QueryRow(ctx, tc.query, tc.args...).Scan(&got); err != nil || got != tc.want {
			t.Errorf("%s: got %q, %v; want %q", tc.name, got, err, tc.want)
		}
	}
}

func testDBContextCancel(t *testing.T, db *storage.DB) {
	dead, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := db.Exec(dead, `INSERT INTO settings (key, value, updated_at) VALUES (?, ?, ?)`, "dead", "x", int64(1))
	wantErr(t, "Exec with a cancelled context", err, context.Canceled)
	err = db.Tx(dead, func(tx *storage.Tx) error {
		_, err := tx.Exec(dead, `INSERT INTO settings (key, value, updated_at) VALUES (?, ?, ?)`, "dead", "x", int64(1))
		return err
	})
	wantErr(t, "Tx with a cancelled context", err, context.Canceled)
	var v string
	err = db.QueryRow(dead, `SELECT value FROM settings`).Scan(&v)
	wantErr(t, "QueryRow with a cancelled context", err, context.Canceled)
	if _, ok := setting(t, db, "dead"); ok {
		t.Fatalf("a write with a cancelled context is visible")
	}

	// A writer cancelled while a transaction holds the row (and, on
	// SQLite, the write lock): it fails with context.Canceled and its
	// write never lands, whether it was cancelled before or while waiting.
	ctx := context.Background()
	setSetting(t, db, "row", "initial")
	inTx := make(chan struct{})
	finish := make(chan struct{})
	txErr := make(chan error, 1)
	go func() {
		txErr <- db.Tx(ctx, func(tx *storage.Tx) error {
			if _, err := tx.Exec(ctx, `UPDATE settings SET value = ? WHERE key = ?`, "tx", "row"); err != nil {
				return err
			}
			close(inTx)
			<-finish
			return nil
		})
	}()
	<-inTx
	wctx, wcancel := context.WithCancel(ctx)
	werr := make(chan error, 1)
	go func() {
		_, err := db.Exec(wctx, `UPDATE settings SET value = ? WHERE key = ?`, "cancelled", "row")
		werr <- err
	}()
	wcancel()
	err = <-werr
	close(finish)
	if err := <-txErr; err != nil {
		t.Fatalf("holding Tx: %v", err)
	}
	wantErr(t, "Exec cancelled while waiting", err, context.Canceled)
	if v, _ := setting(t, db, "row"); v != "tx" {
		t.Fatalf("row = %q, want the Tx's value", v)
	}
}

func testWithLock(t *testing.T, db *storage.DB) {
	ctx := context.Background()
	const workers, rounds = 8, 10
	var inside, maxInside, total atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, workers*rounds)
	for range workers {
		wg.Go(func() {
			for range rounds {
				errs <- db.WithLock(ctx, "publish", func(ctx context.Context) error {
					n := inside.Add(1)
					for {
						m := maxInside.Load()
						if n <= m || maxInside.CompareAndSwap(m, n) {
							break
						}
					}
					// Work that needs the lock: a read-modify-write.
					var c int64
					err := db.QueryRow(ctx, `SELECT COUNT(*) FROM settings`).Scan(&c)
					if err == nil {
						_, err = db.Exec(ctx, `INSERT INTO settings (key, value, updated_at) VALUES (?, ?, ?)`,
							fmt.Sprint("n", c), "v", c)
					}
					total.Add(1)
					inside.Add(-1)
					return err
				})
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("WithLock: %v", err)
		}
	}
	if maxInside.Load() != 1 || total.Load() != workers*rounds {
		t.Fatalf("max holders at once = %d, runs = %d; want 1 and %d", maxInside.Load(), total.Load(), workers*rounds)
	}
	// fn's error comes back unchanged; different names do not exclude
	// each other.
	boom := errors.New("boom")
	err := db.WithLock(ctx, "a", func(ctx context.Context) error {
		return db.WithLock(ctx, "b", func(context.Context) error { return boom })
	})
	if !errors.Is(err, boom) {
		t.Fatalf("WithLock err = %v, want fn's error", err)
	}
	// Waiting for a held lock ends with the context.
	held := make(chan struct{})
	release := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- db.WithLock(ctx, "held", func(context.Context) error {
			close(held)
			<-release
			return nil
		})
	}()
	<-held
	wctx, cancel := context.WithCancel(ctx)
	cancel()
	ran := false
	err = db.WithLock(wctx, "held", func(context.Context) error { ran = true; return nil })
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if ran || !errors.Is(err, context.Canceled) {
		t.Fatalf("WithLock on a held lock with a cancelled context: ran = %v, err = %v", ran, err)
	}
}

func testLease(t *testing.T, db *storage.DB) {
	ctx := context.Background()
	const hour = time.Hour
	try := func(holder string, ttl time.Duration, want bool) {
		t.Helper()
		got, err := db.TryLease(ctx, "leader", holder, ttl)
		if err != nil || got != want {
			t.Fatalf("TryLease(%s) = %v, %v; want %v", holder, got, err, want)
		}
	}
	try("a", hour, true)  // free: a takes it
	try("b", hour, false) // held by a
	try("a", hour, true)  // a renews
	if err := db.ReleaseLease(ctx, "leader", "b"); err != nil {
		t.Fatal(err) // b does not hold it: no-op
	}
	try("b", hour, false)
	if err := db.ReleaseLease(ctx, "leader", "a"); err != nil {
		t.Fatal(err)
	}
	try("b", hour, true) // released: b takes it at once
	// An expired lease is taken over. Expire b's lease by writing its
	// expiry into the past rather than waiting for a clock.
	if _, err := db.Exec(ctx, `UPDATE leases SET expires_at = ? WHERE name = ?`, int64(0), "leader"); err != nil {
		t.Fatal(err)
	}
	try("c", hour, true)
	try("b", hour, false)
	// Leases with other names are independent.
	if ok, err := db.TryLease(ctx, "other", "b", hour); err != nil || !ok {
		t.Fatalf("TryLease(other) = %v, %v", ok, err)
	}
	if _, err := db.TryLease(ctx, "leader", "", hour); !errors.Is(err, tufota.ErrInvalid) {
		t.Fatalf("TryLease with no holder: err = %v, want ErrInvalid", err)
	}
	// Many contenders at once: exactly one wins.
	if _, err := db.Exec(ctx, `DELETE FROM leases`); err != nil {
		t.Fatal(err)
	}
	var wins atomic.Int64
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			ok, err := db.TryLease(ctx, "race", fmt.Sprint("r", i), hour)
			if err != nil {
				t.Errorf("TryLease: %v", err)
			}
			if ok {
				wins.Add(1)
			}
		})
	}
	wg.Wait()
	if wins.Load() != 1 {
		t.Fatalf("%d contenders won the lease, want 1", wins.Load())
	}
}
