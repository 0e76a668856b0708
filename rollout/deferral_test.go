package rollout

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestLivenessOf(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	p := Plan{DeviceTimeout: time.Hour, MaxDeferral: 72 * time.Hour}
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	for _, tc := range []struct {
		name     string
		plan     Plan
		last     time.Time
		deferral Deferral
		now      time.Duration
		want     Liveness
	}{
		{"fresh report", p, t0, Deferral{}, 59 * time.Minute, Live},
		{"timeout reached", p, t0, Deferral{}, time.Hour, Silent},
		{"deferral runs past the device timeout", p, t0, Deferral{Since: t0, Until: at(10 * time.Hour)}, 9 * time.Hour, Deferred},
		{"until reached: the timeout runs from until", p, t0, Deferral{Since: t0, Until: at(10 * time.Hour)}, 10*time.Hour + 59*time.Minute, Live},
		{"until plus timeout: silent", p, t0, Deferral{Since: t0, Until: at(10 * time.Hour)}, 11 * time.Hour, Silent},
		{"asked beyond max deferral: deferred until the max", p, t0, Deferral{Since: t0, Until: at(100 * time.Hour)}, 71 * time.Hour, Deferred},
		{"max deferral reached: silent at once", p, t0, Deferral{Since: t0, Until: at(100 * time.Hour)}, 72 * time.Hour, Silent},
		{"re-deferral keeps the first since", p, at(70 * time.Hour), Deferral{Since: t0, Until: at(80 * time.Hour)}, 72 * time.Hour, Silent},
		{"zero max deferral is the default 24h", Plan{DeviceTimeout: time.Hour}, t0, Deferral{Since: t0, Until: at(48 * time.Hour)}, 23 * time.Hour, Deferred},
		{"default max deferral reached", Plan{DeviceTimeout: time.Hour}, t0, Deferral{Since: t0, Until: at(48 * time.Hour)}, 24 * time.Hour, Silent},
		{"until in the past", p, t0, Deferral{Since: t0, Until: t0}, 30 * time.Minute, Live},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := LivenessOf(tc.plan, tc.last, tc.deferral, t0.Add(tc.now)); got != tc.want {
				t.Fatalf("LivenessOf = %s, want %s", got, tc.want)
			}
		})
	}
}

func TestDecideWithDeferrals(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	p := Plan{Waves: mustWaves(t, "50%,100%"), MinReports: 10, MaxFailureRate: 0.05, DeviceTimeout: time.Hour}
	last := State{Phase: Running, Wave: 1, WaveStartedAt: now.Add(-time.Hour), Plan: p}
	for _, tc := range []struct {
		name   string
		h      Health
		action Action
		reason string
	}{
		{"30% deferred: no pause, the last wave waits",
			Health{Cohort: 20, Members: 20, Offered: 20, Installed: 14, Deferred: 6, WaveMembers: 10, WaveReports: 7},
			Hold, "wave 2 waiting for reports from its devices: 7 of 10 needed (6 deferred)"},
		{"all of the last wave in but deferred ones of wave 1: the wave waits",
			Health{Cohort: 20, Members: 20, Offered: 20, Installed: 17, Deferred: 3, WaveMembers: 10, WaveReports: 10},
			Hold, "wave 2 of 2 waiting for 3 of 20 devices to report (3 deferred)"},
		{"deferrals stop: complete",
			Health{Cohort: 20, Members: 20, Offered: 20, Installed: 20, WaveMembers: 10, WaveReports: 10},
			Complete, "wave 2 of 2 done: 20 installed, 0 failed"},
		{"past max deferral they are silent: pause",
			Health{Cohort: 20, Members: 20, Offered: 20, Installed: 14, Silent: 6, OverDeferred: 4, WaveMembers: 10, WaveReports: 10},
			Pause, "wave 2: failure rate 30.0% (6 of 20 reports; 2 silent past device timeout 1h0m0s, 4 silent past max deferral 24h0m0s) above max 5.0%"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := Decide(last, now, tc.h)
			if d.Action != tc.action || d.Reason != tc.reason {
				t.Fatalf("Decide = %s %q, want %s %q", d.Action, d.Reason, tc.action, tc.reason)
			}
		})
	}
	// The first wave's min reports: deferred devices do not count.
	first := State{Phase: Running, Wave: 0, WaveStartedAt: now.Add(-time.Hour), Plan: p}
	d := Decide(first, now, Health{Cohort: 20, Members: 10, Offered: 10, Installed: 7, Deferred: 3, WaveMembers: 10, WaveReports: 7})
	if d.Action != Hold || !strings.Contains(d.Reason, "7 of 10 needed (3 deferred)") {
		t.Fatalf("Decide = %s %q", d.Action, d.Reason)
	}
}

func mustWaves(t *testing.T, s string) []WaveSpec {
	t.Helper()
	w, err := ParseWaves(s)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func TestMaxDeferralSpec(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in, want, err string
	}{
		{"", "24h0m0s", ""},
		{"72h", "72h0m0s", ""},
		{"0s", "", "must be above zero"},
		{"-1h", "", "must be above zero"},
		{"9000h", "", "longer than a year"},
		{"soon", "", "not a duration"},
	} {
		sp := Spec{Release: "a@1.0.0", Cohort: "x", Waves: "100%", MaxDeferral: tc.in}
		p, _, err := sp.plan()
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("max deferral %q: err = %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("max deferral %q: %v", tc.in, err)
		}
		if p.MaxDeferral.String() != tc.want {
			t.Errorf("max deferral %q = %s, want %s", tc.in, p.MaxDeferral, tc.want)
		}
		b, _ := json.Marshal(p)
		var back Plan
		if err := json.Unmarshal(b, &back); err != nil || back.MaxDeferral != p.MaxDeferral {
			t.Errorf("round trip %s: %v %s", b, err, back.MaxDeferral)
		}
	}
}

// TestDeferralHoldsTheTimeout: devices that defer are neither failed nor
// silent while their deferral runs, even far past the device timeout; the
// rollout completes once they install, without a pause. A device that
// defers past the max deferral counts as silent.
func TestDeferralHoldsTheTimeout(t *testing.T) {
	t.Parallel()
	testDeferralHoldsTheTimeout(t, nil)
}

func testDeferralHoldsTheTimeout(t *testing.T, open dbOpener) {
	e := newEnv(t, open)
	ids := e.fleet(20, nil)
	spec := canary
	spec.Waves, spec.MinReports, spec.MaxFailureRate, spec.DeviceTimeout, spec.Soak, spec.MaxDeferral = "50%,100%", 1, "10%", "30m", "", "72h"
	r := e.create(spec, "alice")
	if err := e.svc.Start(t.Context(), r.ID, "alice", ""); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	deferring := map[string]bool{}
	offers := map[string]*Assignment{}
	until := e.clock.Now().Add(48 * time.Hour)
	poll := func(deferNow bool) {
		t.Helper()
		for _, id := range ids {
			a, err := e.svc.Assignment(ctx, Query{DeviceID: id, Hardware: "pump-b"})
			if err != nil {
				t.Fatal(err)
			}
			if a == nil {
				continue
			}
			offers[id] = a
			if len(deferring) < 6 || deferring[id] {
				deferring[id] = true
				if !deferNow {
					continue // quiet until its deferral ends
				}
				if err := e.svc.Report(ctx, id, Report{Target: a.Target, Version: a.Version, RolloutID: a.RolloutID,
					State: StatusDeferred, Message: "therapy in progress", DeferUntil: &until}); err != nil {
					t.Fatal(err)
				}
				continue
			}
			e.report(id, a, StatusInstalled, "")
		}
	}
	for range 3 {
		poll(true)
		e.tick()
	}
	st := e.status(r.ID)
	if st.State != Running || st.Wave != 2 || st.Health.Deferred != 6 || st.Health.Installed != 14 {
		t.Fatalf("after the first polls: %s wave %d health %+v", st.State, st.Wave, st.Health)
	}
	// A day later, far past the 30m device timeout: still deferred.
	e.clock.Advance(24 * time.Hour)
	poll(false)
	e.tick()
	st = e.status(r.ID)
	if st.State != Running || st.Health.Silent != 0 || st.Health.Deferred != 6 || !strings.Contains(st.Next, "(6 deferred)") {
		t.Fatalf("a day later: %s health %+v next %q", st.State, st.Health, st.Next)
	}
	deferredWaves := 0
	for _, w := range st.Waves {
		deferredWaves += w.Deferred
	}
	if deferredWaves != 6 {
		t.Errorf("waves %+v: %d deferred, want 6", st.Waves, deferredWaves)
	}
	h, err := e.svc.History(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range h.Devices {
		if deferring[d.DeviceID] && (d.State != StatusDeferred || d.Message != "therapy in progress" || d.DeferredUntil == nil || !d.DeferredUntil.Equal(until)) {
			t.Errorf("history of deferring device: %+v", d)
		}
	}
	// They stop deferring and install: the rollout completes, no pause.
	for id := range deferring {
		e.report(id, offers[id], StatusInstalled, "")
	}
	e.tick()
	if st = e.status(r.ID); st.State != Completed {
		t.Fatalf("after the deferrals: %s %q", st.State, st.Next)
	}
	for _, ev := range e.events {
		if ev.RolloutID == r.ID && ev.Kind == EventPaused {
			t.Fatalf("paused: %s", ev.Reason)
		}
	}

	// A second rollout: a device that defers past the max deferral counts
	// as silent and pauses it.
	e.rels.add("pump-fw", "1.2.0", []string{"pump-b"})
	zero := 0
	spec.Release, spec.Waves, spec.MaxDeferral, spec.MaxFailures = "pump-fw@1.2.0", "100%", "2h", &zero
	r2 := e.create(spec, "alice")
	if err := e.svc.Start(ctx, r2.ID, "alice", ""); err != nil {
		t.Fatal(err)
	}
	long := e.clock.Now().Add(10 * time.Hour)
	for i, id := range ids {
		a, err := e.svc.Assignment(ctx, Query{DeviceID: id, Hardware: "pump-b"})
		if err != nil || a == nil {
			t.Fatalf("offer to %s: %v %v", id, a, err)
		}
		if i == 0 {
			if err := e.svc.Report(ctx, id, Report{Target: a.Target, RolloutID: a.RolloutID, State: StatusDeferred,
				Message: "on battery", DeferUntil: &long}); err != nil {
				t.Fatal(err)
			}
			continue
		}
		e.report(id, a, StatusInstalled, "")
	}
	e.clock.Advance(2*time.Hour - time.Second)
	e.tick()
	if st = e.status(r2.ID); st.State != Running || st.Health.Deferred != 1 {
		t.Fatalf("before the max deferral: %s %+v", st.State, st.Health)
	}
	e.clock.Advance(time.Second)
	e.tick()
	if st = e.status(r2.ID); st.State != Paused || st.Health.Silent != 1 || st.Reason != "wave 1: 1 failures; 1 silent past max deferral 2h0m0s above max 0" {
		t.Fatalf("at the max deferral: %s %+v %q", st.State, st.Health, st.Reason)
	}
}

func TestDeferralReportErrors(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	e.fleet(1, nil)
	until := e.clock.Now().Add(time.Hour)
	for _, tc := range []struct {
		r    Report
		want string
	}{
		{Report{State: StatusDeferred, Message: "therapy"}, "needs defer_until"},
		{Report{State: StatusDeferred, DeferUntil: &until}, "needs a message"},
		{Report{State: StatusDownloading, DeferUntil: &until}, "defer_until is only for state deferred"},
	} {
		wantCode(t, e.svc.Report(t.Context(), "pump-000", tc.r), "invalid", tc.want)
	}
}
