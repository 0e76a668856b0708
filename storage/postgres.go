package storage

import (
	"context"

	"github.com/tufota/tufota"
)

// openPostgres opens a PostgreSQL database. Not built yet.
func openPostgres(_ context.Context, url string) (*DB, error) {
	return nil, tufota.Errorf(tufota.EUnavailable, "open database %q: PostgreSQL support is not built yet", redactURL(url))
}

// postgresCode classifies a PostgreSQL error; "" if err is not one.
func postgresCode(error) (tufota.Code, string) { return "", "" }
