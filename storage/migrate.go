package storage

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tufota/tufota"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// migrationLockKey is the PostgreSQL advisory lock key that serialises
// migrations between replicas starting at once ("tufota-m" in ASCII).
const migrationLockKey int64 = 0x7475666f74612d6d

// Migration is one embedded schema migration, from a file
// migrations/NNNN_name.sql.
type Migration struct {
	Version int64
	Name    string
	SQL     string
}

// Migrations returns the embedded migrations in version order. It fails if a
// file name is not NNNN_name.sql or two files share a version.
func Migrations() ([]Migration, error) {
	return loadMigrations(migrationFiles, "migrations")
}

func loadMigrations(fsys fs.FS, dir string) ([]Migration, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("read migrations: %w", err)
	}
	var ms []Migration
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".sql") {
			continue
		}
		num, rest, ok := strings.Cut(strings.TrimSuffix(name, ".sql"), "_")
		v, err := strconv.ParseInt(num, 10, 64)
		if !ok || err != nil || v <= 0 || rest == "" {
			return nil, fmt.Errorf("migration %q: file name is not NNNN_name.sql", name)
		}
		b, err := fs.ReadFile(fsys, path.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("read migration %q: %w", name, err)
		}
		ms = append(ms, Migration{Version: v, Name: rest, SQL: string(b)})
	}
	slices.SortFunc(ms, func(a, b Migration) int { return int(a.Version - b.Version) })
	for i := 1; i < len(ms); i++ {
		if ms[i].Version == ms[i-1].Version {
			return nil, fmt.Errorf("migrations %q and %q share version %d", ms[i-1].Name, ms[i].Name, ms[i].Version)
		}
	}
	return ms, nil
}

// Migrate applies the embedded migrations that the database lacks, each in
// its own transaction and recorded in schema_migrations. OpenDB calls it;
// calling it again is a no-op. It refuses (tufota.ErrConflict) a database
// whose schema is newer than this build. Concurrent callers, also in other
// processes, are serialised (a PostgreSQL advisory lock; SQLite's write
// lock).
func (d *DB) Migrate(ctx context.Context) error {
	ms, err := Migrations()
	if err != nil {
		return err
	}
	return d.applyMigrations(ctx, ms)
}

func (d *DB) applyMigrations(ctx context.Context, ms []Migration) error {
	err := d.Tx(ctx, func(tx *Tx) error {
		if err := d.lockMigrations(ctx, tx); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			version BIGINT PRIMARY KEY,
			name TEXT NOT NULL,
			applied_at BIGINT NOT NULL
		)`)
		return err
	})
	if err != nil {
		return fmt.Errorf("migrate: create schema_migrations: %w", err)
	}
	var known int64
	if len(ms) > 0 {
		known = ms[len(ms)-1].Version
	}
	var newest int64
	if err := d.QueryRow(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&newest); err != nil {
		return fmt.Errorf("migrate: read schema version: %w", err)
	}
	if newest > known {
		return tufota.Errorf(tufota.EConflict,
			"database schema version %d is newer than this tufota build knows (%d): upgrade tufota", newest, known)
	}
	for _, m := range ms {
		err := d.Tx(ctx, func(tx *Tx) error {
			if err := d.lockMigrations(ctx, tx); err != nil {
				return err
			}
			var n int64
			if err := tx.QueryRow(ctx, `SELECT COUNT(*) FROM schema_migrations WHERE version = ?`, m.Version).Scan(&n); err != nil {
				return err
			}
			if n > 0 {
				return nil
			}
			if _, err := tx.Exec(ctx, m.SQL); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`,
				m.Version, m.Name, time.Now().UTC().UnixNano())
			return err
		})
		if err != nil {
			return fmt.Errorf("migrate: apply %04d_%s: %w", m.Version, m.Name, err)
		}
	}
	return nil
}

// lockMigrations serialises migrations between processes on PostgreSQL (an
// advisory lock released at the end of tx). SQLite needs nothing: every
// transaction takes the database write lock at BEGIN.
func (d *DB) lockMigrations(ctx context.Context, tx *Tx) error {
	if d.dialect != DialectPostgres {
		return nil
	}
	_, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(?)`, migrationLockKey)
	return err
}
