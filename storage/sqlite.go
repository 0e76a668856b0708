package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/tufota/tufota"
)

// sqliteMaxConns bounds the SQLite connection pool: one writer at a time
// (the write lock) plus concurrent readers (WAL).
const sqliteMaxConns = 8

// openSQLite opens the SQLite database file path with WAL, a busy timeout,
// foreign keys, and BEGIN IMMEDIATE transactions.
func openSQLite(ctx context.Context, path string) (*DB, error) {
	if path == "" {
		return nil, tufota.Errorf(tufota.EInvalid, "open database: empty SQLite path")
	}
	if path == ":memory:" || strings.HasPrefix(path, "file:") || strings.Contains(path, "mode=memory") {
		return nil, tufota.Errorf(tufota.EInvalid, "open database: SQLite path %q: want a plain file path (in-memory databases are not supported)", path)
	}
	// SQLite parses "file:" URIs: escape the characters that would end or
	// alter the path.
	escaped := strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(path)
	dsn := "file:" + escaped + "?_pragma=busy_timeout(30000)&_pragma=journal_mode(WAL)" +
		"&_pragma=foreign_keys(1)&_pragma=synchronous(FULL)&_txlock=immediate"
	sdb, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, tufota.Errorf(tufota.EUnavailable, "open database %q: %w", path, err)
	}
	sdb.SetMaxOpenConns(sqliteMaxConns)
	sdb.SetMaxIdleConns(sqliteMaxConns)
	d := &DB{db: sdb, dialect: DialectSQLite, wsem: make(chan struct{}, 1)}
	// Switching a new file to WAL needs an exclusive lock, and SQLite
	// answers SQLITE_BUSY at once, without its busy handler, while another
	// process opens the same file: retry that for a while.
	for attempt := 0; ; attempt++ {
		err := sdb.PingContext(ctx)
		if err == nil {
			return d, nil
		}
		var se *sqlite.Error
		if attempt < 100 && errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_BUSY && ctx.Err() == nil {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		_ = sdb.Close()
		return nil, d.translate(fmt.Sprintf("open database %q", path), err)
	}
}

// sqliteCode classifies a modernc.org/sqlite error; "" if err is not one.
func sqliteCode(err error) (tufota.Code, string) {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return "", ""
	}
	msg := sqlite.ErrorCodeString[se.Code()]
	if m := se.Error(); m != "" {
		msg = m
	}
	switch se.Code() {
	case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY, sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY:
		return tufota.EConflict, constraintMessage(msg)
	case sqlite3.SQLITE_CONSTRAINT_NOTNULL, sqlite3.SQLITE_CONSTRAINT_CHECK:
		return tufota.EInvalid, constraintMessage(msg)
	}
	switch se.Code() & 0xff {
	case sqlite3.SQLITE_FULL:
		return tufota.ENoSpace, msg
	case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_CANTOPEN,
		sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_PROTOCOL,
		sqlite3.SQLITE_READONLY, sqlite3.SQLITE_NOMEM:
		return tufota.EUnavailable, msg
	case sqlite3.SQLITE_CONSTRAINT:
		return tufota.EConflict, constraintMessage(msg)
	}
	return "", ""
}

// constraintMessage trims modernc's "constraint failed: " prefix and
// " (2067)" suffix, leaving SQLite's own message, which names the
// constraint ("UNIQUE constraint failed: tokens.hash").
func constraintMessage(msg string) string {
	msg = strings.TrimPrefix(msg, "constraint failed: ")
	if i := strings.LastIndex(msg, " ("); i > 0 && strings.HasSuffix(msg, ")") {
		msg = msg[:i]
	}
	return msg
}
