package testenv_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/tufota/tufota/internal/testenv"
)

// TestPrivateInstancesStopAndStart checks the fault-test helpers: a stopped
// instance refuses connections; a restarted one answers on the same port
// with its data kept.
func TestPrivateInstancesStopAndStart(t *testing.T) {
	ctx := context.Background()
	pg := testenv.StartPostgres(t)
	exec := func(q string) error {
		conn, err := pgx.Connect(ctx, pg.URL)
		if err != nil {
			return err
		}
		defer conn.Close(ctx)
		_, err = conn.Exec(ctx, q)
		return err
	}
	if err := exec(`CREATE TABLE kept (x int); INSERT INTO kept VALUES (42)`); err != nil {
		t.Fatal(err)
	}
	pg.Stop()
	if err := exec(`SELECT 1`); err == nil {
		t.Fatal("a stopped PostgreSQL answered")
	}
	pg.Start()
	if err := exec(`SELECT x FROM kept WHERE x = 42`); err != nil {
		t.Fatalf("after restart: %v", err)
	}

	m := testenv.StartMinIO(t)
	m.Stop()
	m.Stop() // idempotent
	m.Start()
}
