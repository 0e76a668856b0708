package storage

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"syscall"

	"github.com/tufota/tufota"
)

// Dialect names returned by DB.Dialect.
const (
	DialectSQLite   = "sqlite"
	DialectPostgres = "postgres"
)

// Querier is what DB and Tx have in common: code that may run inside or
// outside a transaction takes a Querier.
type Querier interface {
	Exec(ctx context.Context, query string, args ...any) (sql.Result, error)
	Query(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRow(ctx context.Context, query string, args ...any) *Row
}

var (
	_ Querier = (*DB)(nil)
	_ Querier = (*Tx)(nil)
)

// DB is tufota's SQL state store: SQLite (the embedded default, pure Go) or
// PostgreSQL, with the embedded migrations in storage/migrations applied by
// OpenDB.
//
// Queries use '?' placeholders on both dialects; on PostgreSQL they are
// rewritten to $1, $2, ... ('?' inside string literals, quoted identifiers
// and comments is left alone). Write portable SQL (see the migrations).
//
// Errors are translated: no row is tufota.ErrNotFound, a UNIQUE or PRIMARY
// KEY violation is tufota.ErrConflict (the message names the constraint), a
// foreign key violation is tufota.ErrConflict, a NOT NULL or CHECK violation
// is tufota.ErrInvalid, and an unreachable, locked, full or failing database
// (and an expired context deadline) is tufota.ErrUnavailable. A cancelled
// context comes back as an error matching context.Canceled.
//
// On SQLite, writers are serialised inside the process (Exec and Tx take a
// write lock; every transaction starts with BEGIN IMMEDIATE) so concurrent
// writers wait instead of failing with SQLITE_BUSY; readers run in parallel
// (WAL). Consequently, inside a Tx function use the *Tx, never the *DB, for
// writes, or the call deadlocks until its context ends.
//
// A DB is safe for concurrent use by multiple goroutines.
type DB struct {
	db      *sql.DB
	dialect string

	// wsem is the SQLite write lock (capacity 1); nil on PostgreSQL.
	wsem chan struct{}

	// locksMu guards locks, the per-name process mutexes of WithLock on
	// SQLite.
	locksMu sync.Mutex
	locks   map[string]chan struct{}
}

// OpenDB opens the state store named by url and applies the embedded
// migrations. url is "sqlite:PATH" or a bare file path for SQLite (the file
// is created if missing; its directory must exist), or "postgres://..." /
// "postgresql://..." for PostgreSQL.
//
// It fails with tufota.ErrInvalid for a malformed url, tufota.ErrUnavailable
// when the database cannot be reached, and tufota.ErrConflict when the
// database schema is newer than this build knows.
func OpenDB(ctx context.Context, url string) (*DB, error) {
	var (
		d   *DB
		err error
	)
	switch {
	case strings.HasPrefix(url, "postgres://"), strings.HasPrefix(url, "postgresql://"):
		d, err = openPostgres(ctx, url)
	case strings.HasPrefix(url, "sqlite:"):
		d, err = openSQLite(ctx, strings.TrimPrefix(strings.TrimPrefix(url, "sqlite:"), "//"))
	case strings.Contains(url, "://"):
		return nil, tufota.Errorf(tufota.EInvalid, "open database: unsupported URL %q (want sqlite:PATH, a file path or postgres://...)", redactURL(url))
	default:
		d, err = openSQLite(ctx, url)
	}
	if err != nil {
		return nil, err
	}
	if err := d.Migrate(ctx); err != nil {
		_ = d.Close()
		return nil, err
	}
	return d, nil
}

// Dialect returns "sqlite" or "postgres".
func (d *DB) Dialect() string { return d.dialect }

// Ping checks that the database answers; tufota.ErrUnavailable if not.
func (d *DB) Ping(ctx context.Context) error {
	if err := d.db.PingContext(ctx); err != nil {
		return d.translate("ping database", err)
	}
	return nil
}

// Close closes the database. Open Rows and transactions must be finished
// first.
func (d *DB) Close() error { return d.db.Close() }

// Exec runs a statement that returns no rows.
func (d *DB) Exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if err := d.lockWrite(ctx); err != nil {
		return nil, err
	}
	defer d.unlockWrite()
	res, err := d.db.ExecContext(ctx, d.rebind(query), args...)
	if err != nil {
		return nil, d.translate("exec", err)
	}
	return res, nil
}

// Query runs a query that returns rows. The caller must close the rows. On
// SQLite, Query does not take the write lock: use Exec or Tx for writes.
func (d *DB) Query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	rows, err := d.db.QueryContext(ctx, d.rebind(query), args...)
	if err != nil {
		return nil, d.translate("query", err)
	}
	return rows, nil
}

// QueryRow runs a query expected to return at most one row. Errors are
// deferred to Row.Scan.
func (d *DB) QueryRow(ctx context.Context, query string, args ...any) *Row {
	rows, err := d.db.QueryContext(ctx, d.rebind(query), args...)
	return &Row{rows: rows, err: err, d: d}
}

// Tx runs fn in a transaction. If fn returns an error or panics, the
// transaction is rolled back and the error (unchanged) is returned or the
// panic continues; otherwise it is committed. On SQLite the transaction holds
// the write lock for its whole life, so keep it short.
func (d *DB) Tx(ctx context.Context, fn func(tx *Tx) error) (err error) {
	if err := d.lockWrite(ctx); err != nil {
		return err
	}
	defer d.unlockWrite()
	stx, err := d.db.BeginTx(ctx, nil)
	if err != nil {
		return d.translate("begin transaction", err)
	}
	committed := false
	defer func() {
		if !committed {
			_ = stx.Rollback()
		}
	}()
	tx := &Tx{tx: stx, d: d}
	if err := fn(tx); err != nil {
		return err
	}
	for i := 0; i < len(tx.beforeCommit); i++ { // a hook may add hooks
		if err := tx.beforeCommit[i](); err != nil {
			return err
		}
	}
	if err := stx.Commit(); err != nil {
		committed = true // a failed commit has ended the transaction
		return d.translate("commit", err)
	}
	committed = true
	for _, f := range tx.onCommit {
		f()
	}
	return nil
}

// Tx is a transaction handed to the function given to DB.Tx. It is valid
// only during that call and must not be used from other goroutines at the
// same time.
type Tx struct {
	tx           *sql.Tx
	d            *DB
	onCommit     []func()
	beforeCommit []func() error
	values       map[any]any
	savepoints   int
}

// Value returns what SetValue stored under key in this transaction, or nil.
func (t *Tx) Value(key any) any { return t.values[key] }

// SetValue keeps v with the transaction under key (for code that collects
// what a transaction changed, e.g. for a BeforeCommit hook).
func (t *Tx) SetValue(key, v any) {
	if t.values == nil {
		t.values = map[any]any{}
	}
	t.values[key] = v
}

// BeforeCommit registers f to run after the transaction's function
// returned without error, before the commit; an error from f rolls the
// transaction back and is returned by DB.Tx.
// Use it for the last writes of a transaction, such as bumping a change
// counter, whose row lock must be the last one the transaction takes.
func (t *Tx) BeforeCommit(f func() error) { t.beforeCommit = append(t.beforeCommit, f) }

// OnCommit registers f to run after the transaction commits (in order of
// registration, before DB.Tx returns); it does not run on rollback. Use it
// to drop in-memory copies of what the transaction changed.
func (t *Tx) OnCommit(f func()) { t.onCommit = append(t.onCommit, f) }

// Exec runs a statement that returns no rows in the transaction.
func (t *Tx) Exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	res, err := t.tx.ExecContext(ctx, t.d.rebind(query), args...)
	if err != nil {
		return nil, t.d.translate("exec", err)
	}
	return res, nil
}

// Query runs a query that returns rows in the transaction. The caller must
// close the rows before the transaction ends.
func (t *Tx) Query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	rows, err := t.tx.QueryContext(ctx, t.d.rebind(query), args...)
	if err != nil {
		return nil, t.d.translate("query", err)
	}
	return rows, nil
}

// QueryRow runs a query expected to return at most one row in the
// transaction. Errors are deferred to Row.Scan.
func (t *Tx) QueryRow(ctx context.Context, query string, args ...any) *Row {
	rows, err := t.tx.QueryContext(ctx, t.d.rebind(query), args...)
	return &Row{rows: rows, err: err, d: t.d}
}

// Row is the result of QueryRow.
type Row struct {
	rows *sql.Rows
	err  error
	d    *DB
}

// Scan copies the first row's columns into dest (as sql.Row.Scan) and
// discards the rest. No row is tufota.ErrNotFound; other errors are
// translated as documented on DB.
func (r *Row) Scan(dest ...any) error {
	if r.err != nil {
		return r.d.translate("query", r.err)
	}
	defer r.rows.Close()
	if !r.rows.Next() {
		if err := r.rows.Err(); err != nil {
			return r.d.translate("query", err)
		}
		return r.d.translate("query", sql.ErrNoRows)
	}
	if err := r.rows.Scan(dest...); err != nil {
		return r.d.translate("scan", err)
	}
	if err := r.rows.Close(); err != nil {
		return r.d.translate("query", err)
	}
	return nil
}

// Err returns the error of the query, if it failed before any row was read
// (translated). It does not report no-row.
func (r *Row) Err() error {
	if r.err != nil {
		return r.d.translate("query", r.err)
	}
	return nil
}

// lockWrite takes the SQLite write lock, waiting at most until ctx ends.
func (d *DB) lockWrite(ctx context.Context) error {
	if d.wsem == nil {
		return nil
	}
	select {
	case d.wsem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return d.translate("wait for database write lock", ctx.Err())
	}
}

func (d *DB) unlockWrite() {
	if d.wsem != nil {
		<-d.wsem
	}
}

// rebind rewrites '?' placeholders for the dialect.
func (d *DB) rebind(query string) string {
	if d.dialect == DialectPostgres {
		return Rebind(query)
	}
	return query
}

// Rebind rewrites '?' placeholders to PostgreSQL's $1, $2, ... It leaves
// alone '?' inside single-quoted string literals (quotes escaped by doubling), E'...'
// strings with backslash escapes, double-quoted identifiers, dollar-quoted
// strings ($$...$$, $tag$...$tag$), -- line comments and /* */ comments.
func Rebind(query string) string {
	if !strings.Contains(query, "?") {
		return query
	}
	var b strings.Builder
	b.Grow(len(query) + 8)
	n := 0
	for i := 0; i < len(query); {
		c := query[i]
		switch {
		case c == '?':
			n++
			fmt.Fprintf(&b, "$%d", n)
			i++
		case c == '\'':
			escapes := i > 0 && (query[i-1] == 'E' || query[i-1] == 'e') && (i < 2 || !isIdentByte(query[i-2]))
			j := i + 1
			for j < len(query) {
				if escapes && query[j] == '\\' {
					j += 2
					continue
				}
				if query[j] == '\'' {
					if j+1 < len(query) && query[j+1] == '\'' {
						j += 2
						continue
					}
					break
				}
				j++
			}
			j = min(j+1, len(query))
			b.WriteString(query[i:j])
			i = j
		case c == '"':
			j := strings.IndexByte(query[i+1:], '"')
			if j < 0 {
				j = len(query)
			} else {
				j = i + 1 + j + 1
			}
			b.WriteString(query[i:j])
			i = j
		case c == '-' && i+1 < len(query) && query[i+1] == '-':
			j := strings.IndexByte(query[i:], '\n')
			if j < 0 {
				j = len(query)
			} else {
				j = i + j
			}
			b.WriteString(query[i:j])
			i = j
		case c == '/' && i+1 < len(query) && query[i+1] == '*':
			j := strings.Index(query[i+2:], "*/")
			if j < 0 {
				j = len(query)
			} else {
				j = i + 2 + j + 2
			}
			b.WriteString(query[i:j])
			i = j
		case c == '$' && (i == 0 || !isIdentByte(query[i-1])):
			// A dollar quote: $tag$ where tag is empty or an identifier.
			k := i + 1
			for k < len(query) && isIdentByte(query[k]) && !(k == i+1 && query[k] >= '0' && query[k] <= '9') {
				k++
			}
			if k < len(query) && query[k] == '$' {
				tag := query[i : k+1]
				end := strings.Index(query[k+1:], tag)
				j := len(query)
				if end >= 0 {
					j = k + 1 + end + len(tag)
				}
				b.WriteString(query[i:j])
				i = j
				continue
			}
			b.WriteByte(c)
			i++
		default:
			b.WriteByte(c)
			i++
		}
	}
	return b.String()
}

func isIdentByte(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c >= 0x80
}

// translate maps a driver error to tufota's error codes, keeping the cause.
func (d *DB) translate(op string, err error) error {
	if err == nil {
		return nil
	}
	var te *tufota.Error
	switch {
	case errors.As(err, &te):
		return err
	case errors.Is(err, sql.ErrNoRows):
		return tufota.Errorf(tufota.ENotFound, "%s: not found: %w", op, err)
	case errors.Is(err, context.Canceled):
		return fmt.Errorf("%s: %w", op, err)
	case errors.Is(err, context.DeadlineExceeded):
		return tufota.Errorf(tufota.EUnavailable, "storage unavailable: database: %s: %w", op, err)
	}
	var code tufota.Code
	var msg string
	switch d.dialect {
	case DialectSQLite:
		code, msg = sqliteCode(err)
	case DialectPostgres:
		code, msg = postgresCode(err)
	}
	if code == "" {
		var ne net.Error
		switch {
		case errors.Is(err, driver.ErrBadConn), errors.Is(err, sql.ErrConnDone), errors.As(err, &ne),
			errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.ErrUnexpectedEOF):
			code = tufota.EUnavailable
		default:
			return fmt.Errorf("%s: %w", op, err)
		}
	}
	if msg == "" {
		msg = err.Error()
	}
	switch code {
	case tufota.EUnavailable:
		msg = "storage unavailable: database: " + op + ": " + msg
	case tufota.ENoSpace:
		msg = "storage full: database: " + op + ": " + msg
	case tufota.EConflict:
		msg = "conflict: " + msg
	default:
		msg = op + ": " + msg
	}
	return &tufota.Error{Code: code, Message: msg, Err: err}
}

// redactURL hides the password of a database URL for error messages.
func redactURL(s string) string {
	at := strings.LastIndexByte(s, '@')
	scheme := strings.Index(s, "://")
	if at < 0 || scheme < 0 || at < scheme {
		return s
	}
	userinfo := s[scheme+3 : at]
	if i := strings.IndexByte(userinfo, ':'); i >= 0 {
		return s[:scheme+3] + userinfo[:i] + ":xxxxx" + s[at:]
	}
	return s
}
