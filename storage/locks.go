package storage

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"time"

	"github.com/tufota/tufota"
)

// WithLock runs fn while holding the named lock (see DB.Locker), so that at
// most one fn per name runs at a time: across all processes sharing the
// database on PostgreSQL, inside this process on SQLite. It waits for the
// lock until ctx ends (then the error matches ctx.Err()).
//
// fn's error is returned unchanged. On PostgreSQL, if the lock's connection
// breaks while fn runs the lock is lost (see Lock).
func (d *DB) WithLock(ctx context.Context, name string, fn func(ctx context.Context) error) error {
	unlock, err := d.Locker(name).Lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	return fn(ctx)
}

// lockKey maps a lock name to a PostgreSQL advisory lock key (FNV-1a).
func lockKey(name string) int64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte("tufota-lock:" + name))
	return int64(h.Sum64()) // #nosec G115 -- wrapping to a signed lock key is intended
}

// TryLease tries to take or renew the lease name for holder for ttl: it
// succeeds (true) when no one holds the lease, the lease has expired, or
// holder already holds it (then it is extended to now+ttl). Otherwise it
// returns false. Use it for leader election: each replica calls TryLease
// every ttl/3 and does the leader's work only while it gets true.
//
// Time is the database server's clock on PostgreSQL (one clock for all
// replicas) and this process's clock on SQLite. Errors are translated as on
// DB (tufota.ErrUnavailable when the database is down).
func (d *DB) TryLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error) {
	if name == "" || holder == "" || ttl <= 0 {
		return false, tufota.Errorf(tufota.EInvalid, "lease: name, holder and a positive ttl are required")
	}
	var ok bool
	err := d.Tx(ctx, func(tx *Tx) error {
		now, err := d.now(ctx, tx)
		if err != nil {
			return err
		}
		var got string
		err = tx.QueryRow(ctx, `INSERT INTO leases (name, holder, expires_at) VALUES (?, ?, ?)
			ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
			WHERE leases.holder = excluded.holder OR leases.expires_at <= ?
			RETURNING holder`, name, holder, now+int64(ttl), now).Scan(&got)
		switch {
		case errors.Is(err, tufota.ErrNotFound):
			return nil
		case err != nil:
			return err
		}
		ok = got == holder
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("lease %q: %w", name, err)
	}
	return ok, nil
}

// ReleaseLease gives up the lease name if holder holds it, so another
// replica can take it at once. Releasing a lease one does not hold is not an
// error.
func (d *DB) ReleaseLease(ctx context.Context, name, holder string) error {
	if _, err := d.Exec(ctx, `DELETE FROM leases WHERE name = ? AND holder = ?`, name, holder); err != nil {
		return fmt.Errorf("release lease %q: %w", name, err)
	}
	return nil
}

// now returns the current time in unix nanoseconds: the database server's
// clock on PostgreSQL, this process's on SQLite.
func (d *DB) now(ctx context.Context, q Querier) (int64, error) {
	if d.dialect != DialectPostgres {
		return time.Now().UnixNano(), nil
	}
	var micros int64
	if err := q.QueryRow(ctx, `SELECT (EXTRACT(EPOCH FROM clock_timestamp()) * 1000000)::BIGINT`).Scan(&micros); err != nil {
		return 0, err
	}
	return micros * 1000, nil
}

// LockXact takes the lock name for the rest of the transaction: on
// PostgreSQL a transaction-level advisory lock (pg_advisory_xact_lock),
// released at commit or rollback; on SQLite nothing, because the
// transaction holds the database's write lock already. Take it after the
// rows the transaction locks and before Tx.BeforeCommit hooks run.
func (t *Tx) LockXact(ctx context.Context, name string) error {
	if t.d.dialect != DialectPostgres {
		return nil
	}
	if _, err := t.Exec(ctx, `SELECT pg_advisory_xact_lock(?)`, lockKey(name)); err != nil {
		return fmt.Errorf("lock %q: %w", name, err)
	}
	return nil
}
