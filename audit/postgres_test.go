package audit

import (
	"testing"

	"github.com/tufota/tufota/internal/testenv"
	"github.com/tufota/tufota/storage"
)

// TestPostgres runs the database tests on PostgreSQL: tampering is caught
// the same way, and two database handles appending at once (two server
// replicas) race for sequence numbers, which the loser retries.
func TestPostgres(t *testing.T) {
	if testing.Short() {
		t.Skip("SKIPPING integration test TestPostgres: -short")
	}
	t.Run("concurrent appends from two handles", func(t *testing.T) {
		url := testenv.Postgres(t)
		testConcurrentAppends(t, openTestDB(t, url), openTestDB(t, url))
	})
	t.Run("tamper", func(t *testing.T) {
		testTamperDB(t, func(t *testing.T) *storage.DB { return openTestDB(t, testenv.Postgres(t)) })
	})
}
