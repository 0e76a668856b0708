package rollout

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/storage"
)

// clock is a settable clock for the service.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// releases is an in-memory ReleaseLookup.
type releases struct {
	mu   sync.Mutex
	refs map[string]ReleaseRef
}

func (r *releases) Release(_ context.Context, name, version string) (ReleaseRef, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ref, ok := r.refs[name+"@"+version]
	if !ok {
		return ReleaseRef{}, tufota.Errorf(tufota.ENotFound, "no release %s@%s", name, version)
	}
	return ref, nil
}

func (r *releases) add(name, version string, hardware []string, allowFrom ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.refs[name+"@"+version] = ReleaseRef{Name: name, Version: version, TargetPath: tufota.TargetPath(name, version, "fw.bin"),
		Hardware: hardware, AllowDowngradeFrom: allowFrom, PublishedAt: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)}
}

// env is a service on a fresh database with a fake clock, releases and
// sequential rollout IDs.
type env struct {
	t      testing.TB
	svc    *Service
	db     *storage.DB
	clock  *clock
	rels   *releases
	mu     sync.Mutex
	events []Event
}

type dbOpener func(t *testing.T) *storage.DB

func sqliteDB(t *testing.T) *storage.DB {
	t.Helper()
	db, err := storage.OpenDB(t.Context(), "sqlite:"+filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatalf("open db: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func newEnv(t *testing.T, open dbOpener) *env {
	t.Helper()
	if open == nil {
		open = sqliteDB
	}
	return newEnvOn(t, open(t))
}

// newEnvOn is newEnv on db, for tests and benchmarks.
func newEnvOn(t testing.TB, db *storage.DB) *env {
	t.Helper()
	e := &env{t: t, db: db, clock: &clock{t: time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)}, rels: &releases{refs: map[string]ReleaseRef{}}}
	var n int
	var idMu sync.Mutex
	e.svc = NewService(e.db, e.rels, WithClock(e.clock.Now), WithLogger(slog.New(slog.DiscardHandler)), WithIDs(func() string {
		idMu.Lock()
		defer idMu.Unlock()
		n++
		return fmt.Sprintf("ro-%d", n)
	}), WithObserver(func(_ context.Context, ev Event) {
		e.mu.Lock()
		defer e.mu.Unlock()
		e.events = append(e.events, ev)
	}))
	e.rels.add("pump-fw", "1.0.0", []string{"pump-b"})
	e.rels.add("pump-fw", "1.1.0", []string{"pump-b"})
	return e
}

// fleet registers n devices pump-000.. with hardware pump-b, version 1.0.0
// and attributes from attrs (called with the index).
func (e *env) fleet(n int, attrs func(i int, d *Device)) []string {
	e.t.Helper()
	ids := make([]string, n)
	for i := range n {
		d := Device{ID: fmt.Sprintf("pump-%03d", i), Hardware: "pump-b", Version: "1.0.0", Attrs: map[string]string{"site": "north"}}
		if attrs != nil {
			attrs(i, &d)
		}
		if err := e.svc.RegisterDevice(e.t.Context(), d, "admin"); err != nil {
			e.t.Fatalf("register %s: %v", d.ID, err)
		}
		ids[i] = d.ID
	}
	return ids
}

func (e *env) create(spec Spec, actor string) Rollout {
	e.t.Helper()
	r, err := e.svc.CreateRollout(e.t.Context(), spec, actor)
	if err != nil {
		e.t.Fatalf("CreateRollout(%+v): %v", spec, err)
	}
	return r
}

func (e *env) tick() {
	e.t.Helper()
	if err := e.svc.Tick(e.t.Context()); err != nil {
		e.t.Fatalf("Tick: %v", err)
	}
}

func (e *env) status(id string) Status {
	e.t.Helper()
	st, err := e.svc.Status(e.t.Context(), id)
	if err != nil {
		e.t.Fatalf("Status(%s): %v", id, err)
	}
	return st
}

func (e *env) report(device string, a *Assignment, state DeviceState, code string) {
	e.t.Helper()
	if err := e.svc.Report(e.t.Context(), device, Report{Target: a.Target, Version: a.Version, State: state, ErrorCode: code, RolloutID: a.RolloutID}); err != nil {
		e.t.Fatalf("Report(%s, %s): %v", device, state, err)
	}
}

// behaviour says what a simulated device does with an offer.
type behaviour int

const (
	healthy behaviour = iota
	failing           // reports failed
	silent            // reports downloading, then nothing
)

// sim is a fleet of simulated devices polling the service.
type sim struct {
	e        *env
	ids      []string
	behave   func(id string) behaviour
	offered  map[string]string // device -> rollout offered
	finished map[string]bool
}

func (e *env) sim(ids []string, behave func(string) behaviour) *sim {
	if behave == nil {
		behave = func(string) behaviour { return healthy }
	}
	return &sim{e: e, ids: ids, behave: behave, offered: map[string]string{}, finished: map[string]bool{}}
}

// poll lets every device ask once and act on the answer.
func (s *sim) poll() {
	s.e.t.Helper()
	ctx := s.e.t.Context()
	for _, id := range s.ids {
		if s.finished[id] {
			continue
		}
		a, err := s.e.svc.Assignment(ctx, Query{DeviceID: id, Hardware: "pump-b"})
		if err != nil {
			s.e.t.Fatalf("Assignment(%s): %v", id, err)
		}
		if a == nil {
			continue
		}
		s.offered[id] = a.RolloutID
		switch s.behave(id) {
		case healthy:
			s.e.report(id, a, StatusDownloading, "")
			s.e.report(id, a, StatusInstalling, "")
			s.e.report(id, a, StatusInstalled, "")
			s.finished[id] = true
		case failing:
			s.e.report(id, a, StatusDownloading, "")
			s.e.report(id, a, StatusFailed, "hash_mismatch")
			s.finished[id] = true
		case silent:
			s.e.report(id, a, StatusDownloading, "")
			s.finished[id] = true
		}
	}
}

// run polls, ticks and advances the clock by step until the rollout is
// in a phase of stop or steps run out; it returns the status.
func (s *sim) run(id string, step time.Duration, steps int, stop ...Phase) Status {
	s.e.t.Helper()
	for range steps {
		s.poll()
		s.e.tick()
		st := s.e.status(id)
		for _, p := range stop {
			if st.State == p {
				return st
			}
		}
		s.e.clock.Advance(step)
	}
	st := s.e.status(id)
	s.e.t.Fatalf("rollout %s still %s after %d steps: %s", id, st.State, steps, st.Next)
	return st
}

func wantCode(t *testing.T, err error, code tufota.Code, substr string) {
	t.Helper()
	if err == nil {
		t.Fatalf("err = nil, want %s error containing %q", code, substr)
	}
	var te *tufota.Error
	if !errors.As(err, &te) || te.Code != code {
		t.Fatalf("err = %v (code %s), want code %s", err, tufota.ErrorCode(err), code)
	}
	if !strings.Contains(err.Error(), substr) {
		t.Fatalf("err = %q, want it to contain %q", err, substr)
	}
}
