package rollout

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/audit"
	"github.com/tufota/tufota/storage"
)

// auditedEnv is newEnv with every event recorded in a real audit log in
// the transaction that makes it (AuditEventsIn), as the server does.
func auditedEnv(t *testing.T, open dbOpener) (*env, *audit.Log) {
	t.Helper()
	e := newEnv(t, open)
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ns, err := audit.NewNoteSigner("tufota.test/audit", key)
	if err != nil {
		t.Fatal(err)
	}
	alog, err := audit.New(t.Context(), e.db, ns)
	if err != nil {
		t.Fatal(err)
	}
	e.svc.AuditEventsIn(func(ctx context.Context, tx *storage.Tx, ev Event) error {
		_, err := alog.AppendTx(ctx, tx, audit.Entry{Actor: ev.Actor, Action: "rollout." + ev.Kind, Object: "rollout/" + ev.RolloutID, Outcome: audit.OutcomeOK,
			Details: map[string]string{"reason": ev.Reason}})
		return err
	})
	return e, alog
}

// TestConcurrentAuditedChanges: devices report in shared transactions
// with their audit entries (as the server's group commit does), an
// operator pauses and resumes, and the controller ticks, all at once, each
// change with its audit entry in its transaction. No transaction
// deadlocks (on PostgreSQL the audit lock is taken after the rows and
// before the generation bumps everywhere), the rollout completes, and the
// audit log holds exactly one entry per recorded event.
func TestConcurrentAuditedChanges(t *testing.T) {
	t.Parallel()
	testConcurrentAuditedChanges(t, nil)
}

func testConcurrentAuditedChanges(t *testing.T, open dbOpener) {
	e, alog := auditedEnv(t, open)
	ctx := t.Context()
	ids := e.fleet(40, nil)
	spec := canary
	spec.Waves, spec.Soak, spec.MinReports = "10%,50%,100%", "0s", 3
	r := e.create(spec, "alice")
	if err := e.svc.Start(ctx, r.ID, "alice", ""); err != nil {
		t.Fatal(err)
	}
	appendIn := func(ctx context.Context, tx *storage.Tx, action, object string) error {
		_, err := alog.AppendTx(ctx, tx, audit.Entry{Actor: "test", Action: action, Object: object, Outcome: audit.OutcomeOK})
		return err
	}
	var wg sync.WaitGroup
	done := make(chan struct{})
	errs := make(chan error, 100)
	const workers = 4
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				// Two devices per transaction, each report followed by its
				// entry: rows, audit lock, more rows, as in a group commit.
				for i := w; i+workers < len(ids); i += 2 * workers {
					pair := []string{ids[i], ids[i+workers]}
					var as []*Assignment
					for _, id := range pair {
						a, err := e.svc.Assignment(ctx, Query{DeviceID: id})
						if err != nil {
							errs <- err
							return
						}
						as = append(as, a)
					}
					for _, st := range []DeviceState{StatusDownloading, StatusInstalled} {
						var afters []func()
						err := e.db.Tx(ctx, func(tx *storage.Tx) error {
							afters = afters[:0]
							for k, a := range as {
								if a == nil {
									continue
								}
								after, err := e.svc.ReportIn(ctx, tx, pair[k], Report{Target: a.Target, Version: a.Version, State: st, RolloutID: a.RolloutID})
								if err != nil {
									return err
								}
								afters = append(afters, after)
								if err := appendIn(ctx, tx, "device.report", "device/"+pair[k]); err != nil {
									return err
								}
							}
							return nil
						})
						if err != nil {
							errs <- err
							return
						}
						for _, f := range afters {
							f()
						}
					}
				}
			}
		}()
	}
	wg.Add(1)
	go func() { // an operator pausing and resuming
		defer wg.Done()
		for i := range 20 {
			cmd := CmdPause
			if i%2 == 1 {
				cmd = CmdResume
			}
			err := e.svc.Command(ctx, r.ID, cmd, "bob", "", func(ctx context.Context, tx *storage.Tx) error {
				return appendIn(ctx, tx, "rollout.action", "rollout/"+r.ID)
			})
			if err != nil && !errors.Is(err, tufota.ErrConflict) {
				errs <- err
				return
			}
		}
		// Leave it running.
		if err := e.svc.Resume(ctx, r.ID, "bob", ""); err != nil && !errors.Is(err, tufota.ErrConflict) {
			errs <- err
		}
	}()
	var st Status
	for range 4000 {
		if err := e.svc.Tick(ctx); err != nil {
			t.Fatal(err)
		}
		if st = e.status(r.ID); st.State == Completed {
			break
		}
		e.clock.Advance(time.Second)
	}
	close(done)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if st.State != Completed || st.Health.Installed != len(ids) {
		t.Fatalf("state %s health %+v", st.State, st.Health)
	}
	h, err := e.svc.History(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	entries, err := alog.List(ctx, audit.Filter{Object: "rollout/" + r.ID})
	if err != nil {
		t.Fatal(err)
	}
	byKind := map[string]int{}
	for _, en := range entries {
		if en.Action != "rollout.action" {
			byKind[en.Action]++
		}
	}
	want := map[string]int{}
	for _, ev := range h.Events {
		want["rollout."+ev.Kind]++
	}
	if len(byKind) != len(want) {
		t.Fatalf("audit entries by action %v, events by kind %v", byKind, want)
	}
	for k, n := range want {
		if byKind[k] != n {
			t.Errorf("%s: %d audit entries, %d events", k, byKind[k], n)
		}
	}
}
