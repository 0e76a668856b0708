package storage

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/tufota/tufota"
)

// postgresMaxConns bounds the PostgreSQL connection pool of one DB.
const postgresMaxConns = 20

// openPostgres opens a PostgreSQL database through pgx's database/sql
// driver. A URL without connect_timeout gets 10 seconds, so that an
// unreachable server fails fast.
func openPostgres(ctx context.Context, url string) (*DB, error) {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		// pgx's parse errors may quote the URL: show only the redacted one.
		return nil, tufota.Errorf(tufota.EInvalid, "open database %q: malformed PostgreSQL URL", redactURL(url))
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = 10 * time.Second
	}
	sdb := stdlib.OpenDB(*cfg)
	sdb.SetMaxOpenConns(postgresMaxConns)
	sdb.SetMaxIdleConns(postgresMaxConns / 2)
	sdb.SetConnMaxIdleTime(5 * time.Minute)
	d := &DB{db: sdb, dialect: DialectPostgres}
	if err := sdb.PingContext(ctx); err != nil {
		_ = sdb.Close()
		return nil, d.translate(fmt.Sprintf("open database %q", redactURL(url)), err)
	}
	return d, nil
}

// postgresCode classifies a pgx error; "" if it is not one pgx reports.
func postgresCode(err error) (tufota.Code, string) {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		msg := pe.Message
		if pe.Detail != "" {
			msg += " (" + pe.Detail + ")"
		}
		switch {
		case pe.Code == "53100": // disk_full
			return tufota.ENoSpace, msg
		case pe.Code == "23505", pe.Code == "23503": // unique_violation, foreign_key_violation
			return tufota.EConflict, msg
		case strings.HasPrefix(pe.Code, "23"), strings.HasPrefix(pe.Code, "22"): // integrity, data exceptions
			return tufota.EInvalid, msg
		case strings.HasPrefix(pe.Code, "08"), strings.HasPrefix(pe.Code, "53"), strings.HasPrefix(pe.Code, "58"),
			pe.Code == "57P01", pe.Code == "57P02", pe.Code == "57P03", pe.Code == "57014",
			pe.Code == "40001", pe.Code == "40P01":
			// connection, resources, system; shutdown, cannot connect now,
			// statement cancelled; serialization failure, deadlock: retry.
			return tufota.EUnavailable, msg
		}
		return "", ""
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) || pgconn.Timeout(err) {
		return tufota.EUnavailable, err.Error()
	}
	if strings.Contains(err.Error(), "conn closed") || strings.Contains(err.Error(), "unexpected EOF") {
		return tufota.EUnavailable, err.Error()
	}
	return "", ""
}
