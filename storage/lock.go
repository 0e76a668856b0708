package storage

import (
	"context"
	"database/sql/driver"
	"fmt"
	"sync"
	"time"

	"github.com/tufota/tufota"
)

// unlockTimeout bounds pg_advisory_unlock; past it the connection is
// dropped, which releases the lock too.
const unlockTimeout = 5 * time.Second

// Lock is a named mutual-exclusion lock kept by the state database, shared
// by every tufota server replica that uses the same database. It satisfies
// signer.Locker, so that every write to the TUF repository (publish,
// timestamp and snapshot refresh) is serialised across replicas.
//
// On PostgreSQL it is a session-level advisory lock
// (pg_advisory_lock(hash(name))) taken on a connection dedicated to the lock
// for as long as it is held: unlock releases it and returns the connection
// to the pool, and if the holder dies or its connection breaks, PostgreSQL
// releases the lock when it notices the session is gone (at once for a
// closed socket; for a silently vanished host, after TCP keepalive gives up).
// A holder whose connection breaks is not told; writers that must not
// overlap should also check what they write (the repository re-reads its
// state under the lock and versions only grow).
//
// On SQLite it is a mutex inside this process. That is enough because the
// SQLite deployment is a single server: SQLite is an embedded file database,
// its data directory lives on that server's disk, and running two servers on
// one SQLite file is not supported (use PostgreSQL and S3 for replicas);
// `tufota server` refuses it with a lock on the data directory.
//
// A Lock is safe for concurrent use; it is not reentrant.
type Lock struct {
	d    *DB
	name string
}

// Locker returns the lock called name. It does no I/O. Use a distinct name
// per resource, e.g. "tuf-repository".
func (d *DB) Locker(name string) *Lock { return &Lock{d: d, name: name} }

// Lock waits until the lock is held or ctx ends, and returns the function
// that releases it (safe to call more than once). Errors: an empty name is
// tufota.ErrInvalid; a cancelled or expired ctx matches ctx.Err(); a
// database that cannot be reached is tufota.ErrUnavailable ("storage
// unavailable: ...").
func (l *Lock) Lock(ctx context.Context) (unlock func(), err error) {
	if l.name == "" {
		return nil, tufota.Errorf(tufota.EInvalid, "lock: empty name")
	}
	if l.d.dialect == DialectPostgres {
		return l.advisory(ctx)
	}
	ch := l.d.processLock(l.name)
	select {
	case ch <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("lock %q: %w", l.name, ctx.Err())
	}
	var once sync.Once
	return func() { once.Do(func() { <-ch }) }, nil
}

// advisory takes pg_advisory_lock on a dedicated pooled connection.
func (l *Lock) advisory(ctx context.Context) (func(), error) {
	op := fmt.Sprintf("lock %q", l.name)
	key := lockKey(l.name)
	conn, err := l.d.db.Conn(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%s: %w", op, ctx.Err())
		}
		return nil, l.d.translate(op, err)
	}
	if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock($1)`, key); err != nil {
		// The lock may have been granted just as the wait was cancelled:
		// drop the session rather than pool a connection that holds it.
		_ = conn.Raw(func(any) error { return driver.ErrBadConn })
		_ = conn.Close()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%s: %w", op, ctx.Err())
		}
		return nil, l.d.translate(op, err)
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), unlockTimeout)
			defer cancel()
			var released bool
			err := conn.QueryRowContext(uctx, `SELECT pg_advisory_unlock($1)`, key).Scan(&released)
			if err != nil || !released {
				// The session may still hold the lock: drop the
				// connection so that the server releases it.
				_ = conn.Raw(func(any) error { return driver.ErrBadConn })
			}
			_ = conn.Close()
		})
	}, nil
}

// processLock returns the in-process mutex (a channel of capacity 1) of
// name.
func (d *DB) processLock(name string) chan struct{} {
	d.locksMu.Lock()
	defer d.locksMu.Unlock()
	if d.locks == nil {
		d.locks = make(map[string]chan struct{})
	}
	ch, ok := d.locks[name]
	if !ok {
		ch = make(chan struct{}, 1)
		d.locks[name] = ch
	}
	return ch
}
