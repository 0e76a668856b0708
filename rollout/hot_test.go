package rollout

import (
	"context"
	"database/sql"
	"log/slog"
	"testing"
	"time"

	"github.com/tufota/tufota/storage"
)

// A second replica: another Service (with its own caches) on a second
// handle of e's database.
func (e *env) replica(t *testing.T, url string) *Service {
	t.Helper()
	db, err := storage.OpenDB(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return NewService(db, e.rels, WithClock(e.clock.Now), WithLogger(slog.New(slog.DiscardHandler)))
}

// generation reads a change counter.
func generation(t *testing.T, db *storage.DB, name string) int64 {
	t.Helper()
	g, err := db.Generation(t.Context(), name)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// TestPollReadsFromMemory: once a device and the active rollouts are known,
// a poll that changes nothing writes nothing and reads its answer from
// memory; the first offer and a new reported version are the writes.
func TestPollReadsFromMemory(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ctx := t.Context()
	e.fleet(2, nil)
	r := e.create(Spec{Release: "pump-fw@1.1.0", Cohort: "site=north", Waves: "all"}, "alice")
	if err := e.svc.Start(ctx, r.ID, "alice", ""); err != nil {
		t.Fatal(err)
	}
	a, err := e.svc.Assignment(ctx, Query{DeviceID: "pump-000", Hardware: "pump-b"})
	if err != nil || a == nil || a.RolloutID != r.ID {
		t.Fatalf("first poll = %+v, %v; want an offer of %s", a, err, r.ID)
	}
	// The offer changed the device: the next poll reads it again.
	if _, err := e.svc.Assignment(ctx, Query{DeviceID: "pump-000", Hardware: "pump-b"}); err != nil {
		t.Fatal(err)
	}
	devGen, roGen := generation(t, e.db, storage.GenDevices), generation(t, e.db, storage.GenRollouts)
	// Change the rows behind the service's back: a poll served from memory
	// does not see it.
	if _, err := e.db.Exec(ctx, `UPDATE devices SET hardware = 'monitor-a'`); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		e.clock.Advance(time.Second)
		a, err := e.svc.Assignment(ctx, Query{DeviceID: "pump-000", Hardware: "pump-b", Version: "1.0.0"})
		if err != nil || a == nil || a.RolloutID != r.ID {
			t.Fatalf("repeat poll = %+v, %v; want the cached offer", a, err)
		}
	}
	if g := generation(t, e.db, storage.GenDevices); g != devGen {
		t.Fatalf("devices generation moved from %d to %d: a poll that changes nothing wrote", devGen, g)
	}
	if g := generation(t, e.db, storage.GenRollouts); g != roGen {
		t.Fatalf("rollouts generation moved from %d to %d on a poll", roGen, g)
	}
	var seen sql.NullInt64
	if err := e.db.QueryRow(ctx, `SELECT last_seen FROM devices WHERE id = 'pump-000'`).Scan(&seen); err != nil {
		t.Fatal(err)
	}
	if seen.Valid {
		t.Fatalf("last_seen = %d before a flush: the poll wrote it", seen.Int64)
	}
	// Reading the device flushes the coalesced time first.
	d, err := e.svc.Device(ctx, "pump-000")
	if err != nil || !d.LastSeen.Equal(e.clock.Now()) {
		t.Fatalf("Device = %+v, %v; want last seen %v", d, err, e.clock.Now())
	}
}

// TestCachesFollowOtherReplica: what one replica changes (a pause, a
// device's report) reaches another replica's in-memory answers once its
// caches have polled, on SQLite and on PostgreSQL.
func TestCachesFollowOtherReplica(t *testing.T) {
	t.Parallel()
	urls := map[string]func(t *testing.T) string{
		"sqlite": func(t *testing.T) string { return "sqlite:" + t.TempDir() + "/state.db" },
	}
	if !testing.Short() {
		urls["postgres"] = func(t *testing.T) string { return postgresURL(t) }
	}
	for name, url := range urls {
		t.Run(name, func(t *testing.T) {
			u := url(t)
			e := newEnv(t, func(t *testing.T) *storage.DB {
				db, err := storage.OpenDB(t.Context(), u)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { db.Close() })
				return db
			})
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			b := e.replica(t, u)
			done := make(chan struct{})
			go func() { defer close(done); b.RunCaches(ctx, 5*time.Millisecond, time.Hour) }()
			defer func() { cancel(); <-done }()

			e.fleet(3, nil)
			r := e.create(Spec{Release: "pump-fw@1.1.0", Cohort: "site=north", Waves: "all"}, "alice")
			if err := e.svc.Start(ctx, r.ID, "alice", ""); err != nil {
				t.Fatal(err)
			}
			// b learns of the started rollout and offers it.
			eventually(t, ctx, "replica b offers the started rollout", func() bool {
				a, err := b.Assignment(ctx, Query{DeviceID: "pump-000"})
				return err == nil && a != nil && a.RolloutID == r.ID
			})
			// a device's failure reported through a: b stops re-offering.
			a, err := b.Assignment(ctx, Query{DeviceID: "pump-000"})
			if err != nil || a == nil {
				t.Fatalf("b re-offers = %+v, %v", a, err)
			}
			e.report("pump-000", a, StatusFailed, "E42")
			eventually(t, ctx, "replica b sees pump-000's failure", func() bool {
				a, err := b.Assignment(ctx, Query{DeviceID: "pump-000"})
				return err == nil && a == nil
			})
			// a pause through a: b offers nothing to a device not yet offered.
			if err := e.svc.Pause(ctx, r.ID, "alice", "hold"); err != nil {
				t.Fatal(err)
			}
			eventually(t, ctx, "replica b sees the pause", func() bool {
				a, err := b.Assignment(ctx, Query{DeviceID: "pump-001"})
				return err == nil && a == nil
			})
		})
	}
}

// TestLastSeenFlushedWithinInterval: RunCaches writes a device's last-seen
// time without any read asking for it, so the stored time is never older
// than the flush interval (plus the write).
func TestLastSeenFlushedWithinInterval(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ctx, cancel := context.WithCancel(t.Context())
	e.fleet(1, nil)
	done := make(chan struct{})
	go func() { defer close(done); e.svc.RunCaches(ctx, time.Hour, 5*time.Millisecond) }()
	if _, err := e.svc.Assignment(ctx, Query{DeviceID: "pump-000"}); err != nil {
		t.Fatal(err)
	}
	want := e.clock.Now().UnixNano()
	eventually(t, ctx, "last_seen stored by the flusher", func() bool {
		var seen sql.NullInt64
		err := e.db.QueryRow(ctx, `SELECT last_seen FROM devices WHERE id = 'pump-000'`).Scan(&seen)
		return err == nil && seen.Valid && seen.Int64 == want
	})
	// A poll just before shutdown is written by the last flush.
	e.clock.Advance(time.Minute)
	if _, err := e.svc.Assignment(ctx, Query{DeviceID: "pump-000"}); err != nil {
		t.Fatal(err)
	}
	cancel()
	<-done
	var seen sql.NullInt64
	if err := e.db.QueryRow(t.Context(), `SELECT last_seen FROM devices WHERE id = 'pump-000'`).Scan(&seen); err != nil {
		t.Fatal(err)
	}
	if seen.Int64 != e.clock.Now().UnixNano() {
		t.Fatalf("after shutdown last_seen = %d, want %d: the final flush lost a poll", seen.Int64, e.clock.Now().UnixNano())
	}
}

// eventually polls cond until it holds, or fails the test after a minute
// (a liveness bound, not a speed goal) or when ctx ends.
func eventually(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("never: %s", what)
		case <-time.After(2 * time.Millisecond):
		}
	}
}
