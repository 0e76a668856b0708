package leader_test

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/internal/leader"
	"github.com/tufota/tufota/storage"
)

// fakeClock is a manual clock: After channels fire when Advance passes
// their time. Waiting reports how many After calls are pending, so a test
// knows when every elector has finished an attempt and sleeps.
type fakeClock struct {
	mu      sync.Mutex
	cond    *sync.Cond
	now     time.Time
	waiters []waiter
}

type waiter struct {
	at time.Time
	ch chan time.Time
}

func newFakeClock() *fakeClock {
	c := &fakeClock{now: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	c.cond = sync.NewCond(&c.mu)
	return c
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	c.waiters = append(c.waiters, waiter{at: c.now.Add(d), ch: ch})
	c.cond.Broadcast()
	return ch
}

// Advance moves the clock and fires due timers.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	keep := c.waiters[:0]
	for _, w := range c.waiters {
		if !w.at.After(c.now) {
			w.ch <- c.now
		} else {
			keep = append(keep, w)
		}
	}
	c.waiters = keep
}

// BlockUntil waits until n timers are pending.
func (c *fakeClock) BlockUntil(t *testing.T, n int) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		c.mu.Lock()
		for len(c.waiters) < n {
			c.cond.Wait()
		}
		c.mu.Unlock()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatalf("fake clock: %d timers never became pending", n)
	}
}

// flakyLeases wraps a DB; while failing is set every call fails with
// ErrUnavailable, and while hanging is set TryLease blocks until its context
// ends. noRelease makes ReleaseLease a no-op (a replica killed with -9).
type flakyLeases struct {
	db                          *storage.DB
	failing, hanging, noRelease atomic.Bool
}

var errDown = tufota.Errorf(tufota.EUnavailable, "storage unavailable: database: injected outage")

func (f *flakyLeases) TryLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error) {
	if f.hanging.Load() {
		<-ctx.Done()
		return false, ctx.Err()
	}
	if f.failing.Load() {
		return false, errDown
	}
	return f.db.TryLease(ctx, name, holder, ttl)
}

func (f *flakyLeases) ReleaseLease(ctx context.Context, name, holder string) error {
	if f.noRelease.Load() {
		return nil
	}
	if f.failing.Load() {
		return errDown
	}
	return f.db.ReleaseLease(ctx, name, holder)
}

func openDB(t *testing.T) *storage.DB {
	t.Helper()
	db, err := storage.OpenDB(context.Background(), filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// replica is one running Elector and the state of its jobs.
type replica struct {
	e       *leader.Elector
	leases  *flakyLeases
	cancel  context.CancelFunc
	done    chan error
	running atomic.Int32  // jobs running now
	starts  atomic.Int32  // times jobs started
	stopped chan struct{} // receives when jobs return
}

// startReplica starts an elector for holder; setup runs on its leases
// before the first attempt.
func startReplica(t *testing.T, db *storage.DB, holder string, period time.Duration, clk *fakeClock, setup ...func(*flakyLeases)) *replica {
	t.Helper()
	r := &replica{leases: &flakyLeases{db: db}, done: make(chan error, 1), stopped: make(chan struct{}, 100)}
	for _, f := range setup {
		f(r.leases)
	}
	cfg := leader.Config{Leases: r.leases, Holder: holder, Period: period}
	if clk != nil {
		cfg.Now, cfg.After = clk.Now, clk.After
	}
	e, err := leader.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r.e = e
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() {
		r.done <- e.Run(ctx, func(ctx context.Context) {
			r.running.Add(1)
			r.starts.Add(1)
			<-ctx.Done()
			r.running.Add(-1)
			r.stopped <- struct{}{}
		})
	}()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// stop cancels Run and waits for it (idempotent).
func (r *replica) stop(t *testing.T) {
	t.Helper()
	if r.cancel == nil {
		return
	}
	r.cancel()
	r.cancel = nil
	if err := <-r.done; err != nil {
		t.Errorf("Run: %v", err)
	}
}

// waitRunning waits until the replica's jobs goroutine has started (it
// starts asynchronously after the election).
func (r *replica) waitRunning(t *testing.T, want int32) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for r.running.Load() != want {
		if time.Now().After(deadline) {
			t.Fatalf("%s: jobs running = %d, want %d", r.e.Status().Holder, r.running.Load(), want)
		}
		time.Sleep(time.Millisecond)
	}
}

func role(r *replica) string { return r.e.Status().Role }

const period = 15 * time.Second

func TestNew(t *testing.T) {
	t.Parallel()
	db := openDB(t)
	for _, tc := range []struct {
		name string
		cfg  leader.Config
	}{
		{"no leases", leader.Config{Holder: "a"}},
		{"no holder", leader.Config{Leases: db}},
		{"negative period", leader.Config{Leases: db, Holder: "a", Period: -time.Second}},
	} {
		if _, err := leader.New(tc.cfg); err == nil {
			t.Errorf("%s: New succeeded", tc.name)
		}
	}
	e, err := leader.New(leader.Config{Leases: db, Holder: "a"})
	if err != nil {
		t.Fatal(err)
	}
	if s := e.Status(); s.Role != leader.RoleFollower || s.Holder != "a" || s.Period != "15s" {
		t.Fatalf("Status before Run = %+v, want follower a with the default 15s period", s)
	}
}

// TestOneLeaderAndFailoverOnShutdown: of two replicas on one database only
// the first leads, through many renewals; when it shuts down its jobs stop,
// it releases the lease, and the other replica takes over at its next
// attempt.
func TestOneLeaderAndFailoverOnShutdown(t *testing.T) {
	t.Parallel()
	db := openDB(t)
	clk := newFakeClock()
	a := startReplica(t, db, "replica-a", period, clk)
	clk.BlockUntil(t, 1)
	a.waitRunning(t, 1)
	b := startReplica(t, db, "replica-b", period, clk)
	clk.BlockUntil(t, 2)
	if role(a) != leader.RoleLeader || role(b) != leader.RoleFollower {
		t.Fatalf("roles = %s, %s; want leader, follower", role(a), role(b))
	}
	for range 10 { // many renewals, well past the lease period
		clk.Advance(period / 3)
		clk.BlockUntil(t, 2)
		if role(a) != leader.RoleLeader || role(b) != leader.RoleFollower || a.starts.Load() != 1 || b.starts.Load() != 0 {
			t.Fatalf("after renewals: roles %s, %s, job starts %d, %d; want a leading once", role(a), role(b), a.starts.Load(), b.starts.Load())
		}
	}

	a.stop(t)
	if a.running.Load() != 0 || role(a) != leader.RoleFollower {
		t.Fatalf("after shutdown a runs %d jobs as %s", a.running.Load(), role(a))
	}
	clk.Advance(period / 3) // b's next attempt
	clk.BlockUntil(t, 1)
	b.waitRunning(t, 1)
	if role(b) != leader.RoleLeader {
		t.Fatalf("b is %s after a released the lease, want leader", role(b))
	}
	if s := b.e.Status(); !s.Since.Equal(clk.Now()) || s.Error != "" {
		t.Fatalf("b status = %+v, want leader since the last attempt without error", s)
	}
}

// TestLeaderThatCannotRenewStopsBeforeExpiry: when the database fails, the
// leader keeps its jobs through one failed renewal and stops them at two
// thirds of the period, before the lease can expire; when the database
// returns it is elected again.
func TestLeaderThatCannotRenewStopsBeforeExpiry(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"failing", "hanging"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			p := period
			if mode == "hanging" {
				// A hanging attempt is cut by a real-time context
				// timeout of at most period/3 (here 1s per hang; the
				// same budget lets every healthy attempt succeed on a
				// loaded machine).
				p = 3 * time.Second
			}
			db := openDB(t)
			clk := newFakeClock()
			a := startReplica(t, db, "replica-a", p, clk)
			clk.BlockUntil(t, 1)
			a.waitRunning(t, 1)
			elected := clk.Now()
			flag := &a.leases.failing
			if mode == "hanging" {
				flag = &a.leases.hanging
			}
			flag.Store(true)

			clk.Advance(p / 3) // first failed renewal: the lease is still good for 2/3
			clk.BlockUntil(t, 1)
			if role(a) != leader.RoleLeader || a.running.Load() != 1 {
				t.Fatalf("after one failed renewal a is %s with %d jobs; want still leading", role(a), a.running.Load())
			}
			if a.e.Status().Error == "" {
				t.Fatal("Status().Error is empty after a failed attempt")
			}
			clk.Advance(p / 3) // 2/3 of the period since the last renewal: stop
			clk.BlockUntil(t, 1)
			if role(a) != leader.RoleFollower || a.running.Load() != 0 {
				t.Fatalf("at 2/3 of the period without renewal a is %s with %d jobs; want stopped", role(a), a.running.Load())
			}
			stoppedAt := a.e.Status().Since
			if expiry := elected.Add(p); !stoppedAt.Before(expiry) {
				t.Fatalf("jobs stopped at %v, not before the lease expiry %v", stoppedAt, expiry)
			}

			flag.Store(false)
			clk.Advance(p / 3)
			clk.BlockUntil(t, 1)
			a.waitRunning(t, 1)
			if role(a) != leader.RoleLeader || a.starts.Load() != 2 || a.e.Status().Error != "" {
				t.Fatalf("after recovery a is %s, job starts %d, error %q; want leading again", role(a), a.starts.Load(), a.e.Status().Error)
			}
		})
	}
}

// TestLeaseHeldByOtherStopsJobs: a leader that finds the lease held by
// another replica (it was away longer than the period) stops its jobs.
func TestLeaseHeldByOtherStopsJobs(t *testing.T) {
	t.Parallel()
	db := openDB(t)
	clk := newFakeClock()
	a := startReplica(t, db, "replica-a", period, clk)
	clk.BlockUntil(t, 1)
	a.waitRunning(t, 1)
	ctx := context.Background()
	// Another replica took the lease over (as if a's had expired).
	if _, err := db.Exec(ctx, `UPDATE leases SET holder = ?, expires_at = ? WHERE name = ?`,
		"replica-x", time.Now().Add(time.Hour).UnixNano(), leader.DefaultName); err != nil {
		t.Fatal(err)
	}
	clk.Advance(period / 3)
	clk.BlockUntil(t, 1)
	if role(a) != leader.RoleFollower || a.running.Load() != 0 {
		t.Fatalf("a is %s with %d jobs while replica-x holds the lease", role(a), a.running.Load())
	}
	a.stop(t)
	// a's shutdown must not release replica-x's lease.
	var holder string
	if err := db.QueryRow(ctx, `SELECT holder FROM leases WHERE name = ?`, leader.DefaultName).Scan(&holder); err != nil || holder != "replica-x" {
		t.Fatalf("lease holder after a's shutdown = %q, %v; want replica-x", holder, err)
	}
}

// TestFailoverAfterCrash: a leader killed without releasing the lease is
// replaced once the lease expires, not before. This runs on the real clock
// (SQLite's lease expiry is the process clock) with a short period.
func TestFailoverAfterCrash(t *testing.T) {
	t.Parallel()
	const p = 600 * time.Millisecond
	db := openDB(t)
	a := startReplica(t, db, "replica-a", p, nil)
	a.waitRunning(t, 1)
	b := startReplica(t, db, "replica-b", p, nil)
	a.leases.noRelease.Store(true) // killed: the lease stays in the table
	a.stop(t)
	var expires int64
	if err := db.QueryRow(context.Background(), `SELECT expires_at FROM leases WHERE name = ? AND holder = ?`,
		leader.DefaultName, "replica-a").Scan(&expires); err != nil {
		t.Fatalf("a's lease after the crash: %v", err)
	}
	b.waitRunning(t, 1)
	since := b.e.Status().Since
	if since.UnixNano() < expires {
		t.Fatalf("b took over at %v, before a's lease expired at %v", since, time.Unix(0, expires))
	}
	t.Logf("takeover %v after the crashed leader's lease expired", since.Sub(time.Unix(0, expires)))
}

// TestDatabaseErrorIsNotFatal: Run keeps campaigning through errors and
// returns nil when its context ends.
func TestDatabaseErrorIsNotFatal(t *testing.T) {
	t.Parallel()
	db := openDB(t)
	clk := newFakeClock()
	// The database is down from the first attempt on (set before Run
	// starts: a first attempt that won the lease would make a a leader
	// until its stop deadline).
	a := startReplica(t, db, "replica-a", period, clk, func(l *flakyLeases) { l.failing.Store(true) })
	clk.BlockUntil(t, 1)
	clk.Advance(period / 3)
	clk.BlockUntil(t, 1)
	if s := a.e.Status(); s.Role != leader.RoleFollower || !errors.Is(errDown, tufota.ErrUnavailable) || s.Error != errDown.Error() {
		t.Fatalf("status = %+v, want follower with the outage error", s)
	}
	a.stop(t) // Run returned nil: checked by stop
}
