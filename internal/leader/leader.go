// Package leader elects one tufota server replica, among all that share a
// state database, to run the background jobs that must not run twice at
// once: the timestamp/snapshot refresher, the rollout controller and the
// audit checkpointer.
//
// Election is a lease in the database (storage.DB.TryLease): the replica
// that holds the lease is the leader until the lease expires. The leader
// renews it every third of the lease period; a follower tries to take it at
// the same cadence and succeeds once the lease is free (released by a leader
// that shut down) or expired (a leader that died or lost the database).
// A leader that cannot renew stops its jobs when two thirds of the period
// have passed since its last successful renewal, a third of a period before
// another replica can take over, so two leaders never run jobs at once as
// long as the replicas' clocks run at the same rate (the lease's expiry is
// the database server's clock on PostgreSQL).
//
// Failover: after a graceful shutdown (the lease is released) a follower
// takes over within one renewal interval (period/3); after a crash, within
// period + period/3 of the leader's last renewal.
//
// The package lives under internal/ because it is the server's wiring, not
// an API: cmd/tufota builds an Elector and the server package runs its jobs
// under it.
package leader

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// Roles reported by Status.
const (
	RoleLeader   = "leader"
	RoleFollower = "follower"
)

// Defaults of Config.
const (
	DefaultName   = "tufota-leader"
	DefaultPeriod = 15 * time.Second
	// releaseTimeout bounds giving the lease up at shutdown.
	releaseTimeout = 5 * time.Second
)

// Leases is the part of storage.DB the elector uses.
type Leases interface {
	// TryLease takes or renews the lease name for holder for ttl and
	// reports whether holder holds it now.
	TryLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error)
	// ReleaseLease gives the lease up if holder holds it.
	ReleaseLease(ctx context.Context, name, holder string) error
}

// Config configures an Elector.
type Config struct {
	Leases Leases
	// Name is the lease's name (default DefaultName): replicas that
	// share a name elect one leader.
	Name string
	// Holder identifies this replica; it must be unique among replicas
	// (e.g. host-pid-random).
	Holder string
	// Period is the lease's length (default DefaultPeriod). The lease is
	// renewed every Period/3.
	Period time.Duration
	Logger *slog.Logger
	// Now and After are the clock (default: time.Now and time.After);
	// tests inject a fake one.
	Now   func() time.Time
	After func(time.Duration) <-chan time.Time
}

// Status is a snapshot of an Elector's state.
type Status struct {
	Role   string    `json:"role"`            // RoleLeader or RoleFollower
	Holder string    `json:"replica"`         // this replica's ID
	Since  time.Time `json:"since"`           // when Role last changed (zero before Run's first attempt)
	Error  string    `json:"error,omitempty"` // the last failed lease attempt, cleared by a success
	Period string    `json:"lease_period"`    // the lease period, e.g. "15s"
}

// Elector campaigns for the lease and runs jobs while it leads. Build it
// with New; it is safe for concurrent use (Status may be called while Run
// runs).
type Elector struct {
	cfg   Config
	renew time.Duration

	mu     sync.Mutex
	status Status
}

// New checks cfg and returns an Elector. It fails when Leases or Holder is
// missing or Period is negative.
func New(cfg Config) (*Elector, error) {
	switch {
	case cfg.Leases == nil:
		return nil, errors.New("leader: Leases is required")
	case cfg.Holder == "":
		return nil, errors.New("leader: Holder is required")
	case cfg.Period < 0:
		return nil, fmt.Errorf("leader: negative lease period %v", cfg.Period)
	}
	if cfg.Name == "" {
		cfg.Name = DefaultName
	}
	if cfg.Period == 0 {
		cfg.Period = DefaultPeriod
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.After == nil {
		cfg.After = time.After
	}
	e := &Elector{cfg: cfg, renew: cfg.Period / 3}
	e.status = Status{Role: RoleFollower, Holder: cfg.Holder, Period: cfg.Period.String()}
	return e, nil
}

// Status returns the current role and the last lease error.
func (e *Elector) Status() Status {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.status
}

// IsLeader reports whether this replica leads now.
func (e *Elector) IsLeader() bool { return e.Status().Role == RoleLeader }

func (e *Elector) setRole(role string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.status.Role != role {
		e.status.Role, e.status.Since = role, e.cfg.Now()
	} else if e.status.Since.IsZero() {
		e.status.Since = e.cfg.Now()
	}
}

func (e *Elector) setErr(err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.status.Error = ""
	if err != nil {
		e.status.Error = err.Error()
	}
}

// Run campaigns until ctx ends. Whenever this replica wins the lease it
// starts jobs(jobCtx) in a goroutine; jobCtx ends when leadership is lost
// (the lease could not be renewed in time, or another replica holds it)
// or ctx ends, and Run waits for jobs to return before it campaigns again,
// so jobs never run twice at once in one process. jobs must return soon
// after its context ends.
//
// When ctx ends Run stops the jobs, waits for them, releases the lease (so a
// follower takes over at its next attempt) and returns nil. Lease errors
// (the database is down) are logged and retried, never returned.
func (e *Elector) Run(ctx context.Context, jobs func(ctx context.Context)) error {
	log := e.cfg.Logger.With("lease", e.cfg.Name, "replica", e.cfg.Holder)
	var (
		jobCancel context.CancelFunc
		jobDone   chan struct{}
		// stopAt is when a leader that has not renewed must have stopped
		// its jobs: two thirds of a period after the start of its last
		// successful renewal, one renewal interval before the lease can
		// expire.
		stopAt time.Time
	)
	stop := func(reason string) {
		if jobCancel == nil {
			return
		}
		jobCancel()
		<-jobDone
		jobCancel, jobDone = nil, nil
		e.setRole(RoleFollower)
		level := slog.LevelWarn
		if ctx.Err() != nil {
			level = slog.LevelInfo // an orderly shutdown, not a lost lease
		}
		log.Log(context.WithoutCancel(ctx), level, "leadership ended: background jobs stopped", "reason", reason)
	}
	defer func() {
		stop("shutting down")
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
		defer cancel()
		if err := e.cfg.Leases.ReleaseLease(rctx, e.cfg.Name, e.cfg.Holder); err != nil {
			log.Warn("release leader lease", "err", err)
		}
	}()
	first := true
	for {
		if !first {
			select {
			case <-ctx.Done():
				return nil
			case <-e.cfg.After(e.renew):
			}
		}
		first = false
		if ctx.Err() != nil {
			return nil
		}
		start := e.cfg.Now()
		leading := jobCancel != nil
		if leading && !start.Before(stopAt) {
			stop("the lease could not be renewed in time")
			leading = false
		}
		// A leader's attempt must end by stopAt; a follower's by the next
		// attempt.
		timeout := e.renew
		if leading {
			timeout = min(timeout, stopAt.Sub(start))
		}
		actx, cancel := context.WithTimeout(ctx, timeout)
		ok, err := e.cfg.Leases.TryLease(actx, e.cfg.Name, e.cfg.Holder, e.cfg.Period)
		cancel()
		if ctx.Err() != nil {
			return nil
		}
		e.setErr(err)
		switch {
		case err != nil:
			log.Warn("leader lease attempt failed", "leading", leading, "err", err)
			if leading && !e.cfg.Now().Before(stopAt) {
				stop("the lease could not be renewed in time")
			}
		case ok:
			stopAt = start.Add(e.cfg.Period - e.renew)
			if !leading {
				jctx, jcancel := context.WithCancel(ctx)
				done := make(chan struct{})
				jobCancel, jobDone = jcancel, done
				e.setRole(RoleLeader)
				log.Info("elected leader: this replica runs the background jobs", "lease_period", e.cfg.Period)
				go func() {
					defer close(done)
					jobs(jctx)
				}()
			}
		default:
			if leading {
				stop("another replica holds the lease")
			}
			e.setRole(RoleFollower)
		}
	}
}
