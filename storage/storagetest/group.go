package storagetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/storage"
)

// testGroupCommit: concurrent calls share transactions; a call that fails
// (by returning an error, or by a statement the database refuses, which on
// PostgreSQL would abort a transaction without savepoints) is rolled back
// alone and gets its own error; every other call is committed when Do
// returns nil; OnCommit hooks run for committed work.
func testGroupCommit(t *testing.T, db *storage.DB) {
	ctx := context.Background()
	setSetting(t, db, "taken", "1")
	g := db.NewGroup(16)
	errBoom := errors.New("boom")
	const n = 60
	errs := make([]error, n)
	var committed sync.Map
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = g.Do(ctx, func(tx *storage.Tx) error {
				key := fmt.Sprintf("g-%02d", i)
				if _, err := tx.Exec(ctx, `INSERT INTO settings (key, value, updated_at) VALUES (?, ?, ?)`, key, "v", int64(1)); err != nil {
					return err
				}
				switch i % 5 {
				case 1:
					return errBoom
				case 2:
					_, err := tx.Exec(ctx, `INSERT INTO settings (key, value, updated_at) VALUES (?, ?, ?)`, "taken", "2", int64(1))
					return err
				}
				tx.OnCommit(func() { committed.Store(i, true) })
				return nil
			})
		}()
	}
	wg.Wait()
	for i := range n {
		_, stored := setting(t, db, fmt.Sprintf("g-%02d", i))
		_, hooked := committed.Load(i)
		switch i % 5 {
		case 1:
			if !errors.Is(errs[i], errBoom) || stored {
				t.Errorf("call %d: err %v, stored %v; want its own error and nothing stored", i, errs[i], stored)
			}
		case 2:
			if !errors.Is(errs[i], tufota.ErrConflict) || stored {
				t.Errorf("call %d: err %v, stored %v; want a conflict and nothing stored", i, errs[i], stored)
			}
		default:
			if errs[i] != nil || !stored || !hooked {
				t.Errorf("call %d: err %v, stored %v, OnCommit ran %v; want committed", i, errs[i], stored, hooked)
			}
		}
	}
	// A call whose context ended before its transaction is not run.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	ran := false
	if err := g.Do(cctx, func(*storage.Tx) error { ran = true; return nil }); !errors.Is(err, context.Canceled) || ran {
		t.Fatalf("cancelled call: err %v, ran %v; want context.Canceled and not run", err, ran)
	}
}

// testGenerations: Bump returns successive values that Generation reads
// after commit, and not after a rollback.
func testGenerations(t *testing.T, db *storage.DB) {
	ctx := context.Background()
	g0, err := db.Generation(ctx, storage.GenDevices)
	if err != nil {
		t.Fatal(err)
	}
	var g1 int64
	if err := db.Tx(ctx, func(tx *storage.Tx) error {
		g1, err = db.Bump(ctx, tx, storage.GenDevices)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if g1 != g0+1 {
		t.Fatalf("Bump = %d after %d", g1, g0)
	}
	_ = db.Tx(ctx, func(tx *storage.Tx) error {
		if _, err := db.Bump(ctx, tx, storage.GenDevices); err != nil {
			return err
		}
		return errors.New("roll back")
	})
	if g, err := db.Generation(ctx, storage.GenDevices); err != nil || g != g1 {
		t.Fatalf("Generation after a rolled-back bump = %d, %v; want %d", g, err, g1)
	}
	if _, err := db.Bump(ctx, db, "no-such-counter"); !errors.Is(err, tufota.ErrInvalid) {
		t.Fatalf("Bump of an unknown counter: %v, want invalid", err)
	}
}
