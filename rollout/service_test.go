package rollout

import (
	"encoding/json"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tufota/tufota"
)

var canary = Spec{Release: "pump-fw@1.1.0", Cohort: "hardware=pump-b", Waves: "5%,25%,100%", Soak: "10m",
	MinReports: 10, MaxFailureRate: "5%", DeviceTimeout: "2h"}

// TestHealthyFleetCompletes: 200 devices, waves 5%,25%,100%, all healthy:
// the rollout completes in three waves and every device runs the release.
func TestHealthyFleetCompletes(t *testing.T) {
	t.Parallel()
	testHealthyFleetCompletes(t, nil)
}

func testHealthyFleetCompletes(t *testing.T, open dbOpener) {
	e := newEnv(t, open)
	ids := e.fleet(200, nil)
	r := e.create(canary, "alice")
	if r.State != Draft || r.Wave != 0 {
		t.Fatalf("new rollout = %s wave %d, want draft wave 0", r.State, r.Wave)
	}
	// Nothing reaches a device before the start.
	s := e.sim(ids, nil)
	s.poll()
	if len(s.offered) != 0 {
		t.Fatalf("%d devices offered a draft rollout", len(s.offered))
	}
	if err := e.svc.Start(t.Context(), r.ID, "alice", "go"); err != nil {
		t.Fatal(err)
	}
	st := s.run(r.ID, 5*time.Minute, 60, Completed)

	if got := len(st.Waves); got != 3 {
		t.Fatalf("%d waves, want 3", got)
	}
	for i, want := range []int{10, 50, 200} {
		w := st.Waves[i]
		if !w.Started || w.Size != want {
			t.Errorf("wave %d: started %v size %d, want started, size %d", i+1, w.Started, w.Size, want)
		}
	}
	// Per-wave counts are of the devices that joined in that wave.
	if st.Waves[0].Installed != 10 || st.Waves[1].Installed != 40 || st.Waves[2].Installed != 150 {
		t.Errorf("installed per wave = %d, %d, %d; want 10, 40, 150", st.Waves[0].Installed, st.Waves[1].Installed, st.Waves[2].Installed)
	}
	if st.Health.Installed != 200 || st.Health.Failed != 0 {
		t.Errorf("health = %+v", st.Health)
	}
	devices, err := e.svc.Devices(t.Context(), DeviceFilter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range devices {
		if d.Version != "1.1.0" || d.CurrentRelease != "pump-fw@1.1.0" {
			t.Errorf("device %s runs %s (%s), want 1.1.0", d.ID, d.Version, d.CurrentRelease)
		}
	}
	h, err := e.svc.History(t.Context(), r.ID)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, ev := range h.Events {
		kinds = append(kinds, ev.Kind)
		if ev.Reason == "" || ev.Actor == "" {
			t.Errorf("event %+v lacks a reason or actor", ev)
		}
	}
	want := []string{EventCreated, EventStarted, EventWaveStarted, EventWaveStarted, EventCompleted}
	if !slices.Equal(kinds, want) {
		t.Fatalf("events = %v, want %v", kinds, want)
	}
	if h.Events[1].Actor != "alice" || h.Events[2].Actor != ControllerActor || h.Events[4].Actor != ControllerActor {
		t.Errorf("actors = %s, %s, %s", h.Events[1].Actor, h.Events[2].Actor, h.Events[4].Actor)
	}
	if len(h.Devices) != 200 {
		t.Errorf("history has %d devices, want 200", len(h.Devices))
	}
	for _, m := range h.Milestones {
		if m.ReachedAt == nil || m.Elapsed <= 0 {
			t.Errorf("milestone %d%% not reached: %+v", m.Percent, m)
		}
	}
	if h.Milestones[2].Devices != 200 || h.SinceWhat != "release published" {
		t.Errorf("milestones = %+v since %s", h.Milestones, h.SinceWhat)
	}
	// Observer saw every recorded event.
	e.mu.Lock()
	seen := len(e.events)
	e.mu.Unlock()
	if seen != len(h.Events) {
		t.Errorf("observer saw %d events, history has %d", seen, len(h.Events))
	}
	// JSON shape the CLI relies on: id, state, waves[{size, offered, installed, failed, silent}].
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	var shape struct {
		ID    string `json:"id"`
		State string `json:"state"`
		Waves []struct {
			Size, Offered, Installed, Failed, Silent *int
		} `json:"waves"`
	}
	if err := json.Unmarshal(b, &shape); err != nil || shape.ID != r.ID || shape.State != "completed" || len(shape.Waves) != 3 ||
		shape.Waves[0].Size == nil || shape.Waves[0].Silent == nil || *shape.Waves[2].Size != 200 {
		t.Fatalf("status JSON %s does not have the documented shape", b)
	}
	// Status and History survive a JSON round trip (the CLI reads them
	// from the API into these types).
	var back Status
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.ID != st.ID || back.State != st.State || !reflect.DeepEqual(back.Waves, waveValues(st.Waves)) || back.Health != st.Health ||
		!reflect.DeepEqual(back.Plan.Waves, st.Plan.Waves) || back.Plan.Soak != st.Plan.Soak || back.Wave != st.Wave {
		t.Fatalf("status round trip:\n got %+v\nwant %+v", back, st)
	}
	hb, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	var hback History
	if err := json.Unmarshal(hb, &hback); err != nil {
		t.Fatal(err)
	}
	if len(hback.Events) != len(h.Events) || len(hback.Devices) != 200 || hback.Milestones[2].Elapsed != h.Milestones[2].Elapsed ||
		!strings.Contains(string(hb), `"elapsed":"`+h.Milestones[2].Elapsed.String()+`"`) {
		t.Fatalf("history round trip lost data: %s", hb[:min(len(hb), 400)])
	}
	// Completed is final.
	for _, act := range []func() error{
		func() error { return e.svc.Pause(t.Context(), r.ID, "bob", "") },
		func() error { return e.svc.Resume(t.Context(), r.ID, "bob", "") },
		func() error { return e.svc.Approve(t.Context(), r.ID, "bob", "") },
		func() error { return e.svc.Abort(t.Context(), r.ID, "bob", "") },
		func() error { return e.svc.Start(t.Context(), r.ID, "bob", "") },
	} {
		wantCode(t, act(), tufota.EConflict, "completed rollout")
	}
}

// TestFailingFleetPausesInWave1: half the fleet fails; the rollout pauses in
// wave 1 with the measured rate and threshold, and no device outside wave 1
// is ever offered the release.
func TestFailingFleetPausesInWave1(t *testing.T) {
	t.Parallel()
	testFailingFleetPauses(t, nil)
}

func testFailingFleetPauses(t *testing.T, open dbOpener) {
	e := newEnv(t, open)
	ids := e.fleet(200, nil)
	r := e.create(canary, "alice")
	if err := e.svc.Start(t.Context(), r.ID, "alice", ""); err != nil {
		t.Fatal(err)
	}
	s := e.sim(ids, func(id string) behaviour {
		var n int
		fmt.Sscanf(id, "pump-%d", &n)
		if n%2 == 0 {
			return failing
		}
		return healthy
	})
	st := s.run(r.ID, 5*time.Minute, 20, Paused)
	if st.Wave != 1 {
		t.Fatalf("paused in wave %d, want 1", st.Wave)
	}
	re := regexp.MustCompile(`^wave 1: failure rate (\d+\.\d)% \((\d+) of 10 reports\) above max 5\.0%$`)
	m := re.FindStringSubmatch(st.Reason)
	if m == nil {
		t.Fatalf("reason = %q, want it to match %s", st.Reason, re)
	}
	if m[2] != fmt.Sprint(st.Health.Failed) {
		t.Errorf("reason counts %s failures, health has %d", m[2], st.Health.Failed)
	}
	if len(s.offered) != 10 {
		t.Errorf("%d devices were offered the release, want the 10 of wave 1", len(s.offered))
	}
	if st.Waves[1].Offered != 0 || st.Waves[2].Offered != 0 || st.Waves[1].Started {
		t.Errorf("waves after 1 = %+v, %+v; want none offered or started", st.Waves[1], st.Waves[2])
	}
	// Paused: more polling offers nothing; more ticks change nothing.
	s.finished = map[string]bool{}
	for range 5 {
		s.poll()
		e.tick()
		e.clock.Advance(time.Hour)
	}
	if len(s.offered) != 10 {
		t.Errorf("a paused rollout offered its release to %d devices", len(s.offered))
	}
	if got := e.status(r.ID); got.State != Paused {
		t.Errorf("state = %s after more ticks, want paused", got.State)
	}
	h, err := e.svc.History(t.Context(), r.ID)
	if err != nil {
		t.Fatal(err)
	}
	last := h.Events[len(h.Events)-1]
	if last.Kind != EventPaused || last.Actor != ControllerActor || last.Reason != st.Reason {
		t.Errorf("last event = %+v, want the controller's pause with the reason", last)
	}
	failed := 0
	for _, d := range h.Devices {
		if d.Wave != 1 {
			t.Errorf("device %s in wave %d was offered", d.DeviceID, d.Wave)
		}
		if d.State == StatusFailed {
			failed++
			if d.ErrorCode != "hash_mismatch" {
				t.Errorf("device %s error code %q", d.DeviceID, d.ErrorCode)
			}
		}
	}
	if failed != st.Health.Failed {
		t.Errorf("history lists %d failed devices, health %d", failed, st.Health.Failed)
	}
}

// TestSilentDevicesCountAsFailures: devices that accepted the release and
// then say nothing past the device timeout are failures.
func TestSilentDevicesCountAsFailures(t *testing.T) {
	t.Parallel()
	testSilentDevicesCountAsFailures(t, nil)
}

func testSilentDevicesCountAsFailures(t *testing.T, open dbOpener) {
	e := newEnv(t, open)
	ids := e.fleet(40, nil)
	spec := canary
	spec.Waves, spec.MinReports, spec.MaxFailureRate, spec.DeviceTimeout, spec.Soak = "25%,100%", 10, "10%", "30m", "5m"
	r := e.create(spec, "alice")
	if err := e.svc.Start(t.Context(), r.ID, "alice", ""); err != nil {
		t.Fatal(err)
	}
	silentSet := map[string]bool{}
	s := e.sim(ids, func(id string) behaviour {
		if len(silentSet) < 3 || silentSet[id] {
			silentSet[id] = true
			return silent
		}
		return healthy
	})
	s.poll()
	e.tick()
	st := e.status(r.ID)
	if st.State != Running || st.Health.Silent != 0 || st.Waves[0].InProgress != 3 {
		t.Fatalf("before the timeout: state %s health %+v wave 1 %+v", st.State, st.Health, st.Waves[0])
	}
	// 29 minutes later they are still in progress: the wave waits.
	e.clock.Advance(29 * time.Minute)
	e.tick()
	if st = e.status(r.ID); st.State != Running || st.Health.Silent != 0 {
		t.Fatalf("at 29m: state %s, health %+v", st.State, st.Health)
	}
	if !strings.Contains(st.Next, "waiting for reports from its devices: 7 of 10") {
		t.Errorf("next = %q", st.Next)
	}
	e.clock.Advance(time.Minute)
	e.tick()
	st = e.status(r.ID)
	if st.State != Paused || st.Health.Silent != 3 || st.Waves[0].Silent != 3 {
		t.Fatalf("after the timeout: state %s, health %+v, wave 1 %+v", st.State, st.Health, st.Waves[0])
	}
	want := "wave 1: failure rate 30.0% (3 of 10 reports; 3 silent past device timeout 30m0s) above max 10.0%"
	if st.Reason != want {
		t.Fatalf("reason = %q, want %q", st.Reason, want)
	}
	h, err := e.svc.History(t.Context(), r.ID)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, d := range h.Devices {
		if d.Silent {
			n++
			if !silentSet[d.DeviceID] || d.State != StatusDownloading {
				t.Errorf("silent device %+v", d)
			}
		}
	}
	if n != 3 {
		t.Errorf("history marks %d devices silent, want 3", n)
	}
}

// TestApprovalGate: the rollout waits after wave 1 until someone other than
// its creator approves, and the history records who.
func TestApprovalGate(t *testing.T) {
	t.Parallel()
	testApprovalGate(t, nil)
}

func testApprovalGate(t *testing.T, open dbOpener) {
	e := newEnv(t, open)
	ids := e.fleet(40, nil)
	spec := canary
	spec.ApprovalRequiredAfterWave = 1
	r := e.create(spec, "alice")
	if err := e.svc.Start(t.Context(), r.ID, "alice", ""); err != nil {
		t.Fatal(err)
	}
	s := e.sim(ids, nil)
	st := s.run(r.ID, 5*time.Minute, 20, WaitingApproval)
	if st.Wave != 1 || !strings.Contains(st.Reason, "wave 2 needs approval") {
		t.Fatalf("waiting: wave %d reason %q", st.Wave, st.Reason)
	}
	// Waiting: hours pass, nothing moves, wave 2's devices get nothing.
	for range 5 {
		s.poll()
		e.tick()
		e.clock.Advance(time.Hour)
	}
	if st = e.status(r.ID); st.State != WaitingApproval || st.Waves[1].Offered != 0 {
		t.Fatalf("while waiting: %s, wave 2 offered %d", st.State, st.Waves[1].Offered)
	}
	wantCode(t, e.svc.Approve(t.Context(), r.ID, "alice", "lgtm"), tufota.EForbidden, "alice created it, so someone else must approve it")
	if err := e.svc.Approve(t.Context(), r.ID, "bob", "checked the wave 1 devices"); err != nil {
		t.Fatal(err)
	}
	wantCode(t, e.svc.Approve(t.Context(), r.ID, "carol", ""), tufota.EConflict, "not waiting for approval")
	st = s.run(r.ID, 5*time.Minute, 20, Completed)
	if st.ApprovedBy != "bob" || st.ApprovedAt == nil {
		t.Errorf("approved by %q at %v", st.ApprovedBy, st.ApprovedAt)
	}
	h, err := e.svc.History(t.Context(), r.ID)
	if err != nil {
		t.Fatal(err)
	}
	var approved *Event
	for i, ev := range h.Events {
		if ev.Kind == EventApproved {
			approved = &h.Events[i]
		}
	}
	if approved == nil || approved.Actor != "bob" || !strings.Contains(approved.Reason, "bob approved wave 2: checked the wave 1 devices") {
		t.Fatalf("approval event = %+v", approved)
	}
}

// TestBadInput: each bad request fails with a clear error.
func TestBadInput(t *testing.T) {
	t.Parallel()
	testBadInput(t, nil)
}

func testBadInput(t *testing.T, open dbOpener) {
	e := newEnv(t, open)
	e.fleet(10, nil)
	e.rels.mu.Lock()
	e.rels.refs["pump-fw@2.0.0"] = ReleaseRef{Name: "pump-fw", Version: "2.0.0", TargetPath: "pump-fw/2.0.0/fw.bin", Hardware: []string{"pump-b"}}
	e.rels.mu.Unlock()
	with := func(f func(*Spec)) Spec {
		s := canary
		f(&s)
		return s
	}
	tests := []struct {
		name  string
		spec  Spec
		actor string
		code  tufota.Code
		want  string
	}{
		{"unknown release", with(func(s *Spec) { s.Release = "pump-fw@9.9.9" }), "alice", tufota.ENotFound, "unknown release pump-fw@9.9.9"},
		{"unpublished release", with(func(s *Spec) { s.Release = "pump-fw@2.0.0" }), "alice", tufota.EConflict, "not published yet"},
		{"release without version", with(func(s *Spec) { s.Release = "pump-fw" }), "alice", tufota.EInvalid, "want NAME@VERSION"},
		{"empty cohort", with(func(s *Spec) { s.Cohort = "hardware=monitor-a" }), "alice", tufota.EInvalid, "empty cohort: devices hardware=monitor-a has no device that can take pump-fw@1.1.0 (0 registered devices match"},
		{"cohort of the wrong hardware", with(func(s *Spec) { s.Cohort = "site=north"; s.Release = "pump-fw@1.0.0" }), "alice", tufota.EInvalid, "10 run 1.0.0 or newer"},
		{"unknown cohort name", with(func(s *Spec) { s.Cohort = "icu-pumps" }), "alice", tufota.ENotFound, "no cohort icu-pumps"},
		{"no cohort", with(func(s *Spec) { s.Cohort = "" }), "alice", tufota.EInvalid, "cohort is required"},
		{"bad selector", with(func(s *Spec) { s.Cohort = "site in (north" }), "alice", tufota.EInvalid, "never closed"},
		{"waves not increasing", with(func(s *Spec) { s.Waves = "10%,5%,100%" }), "alice", tufota.EInvalid, "not increasing: wave 2 (5%) is not above wave 1 (10%)"},
		{"percentage over 100", with(func(s *Spec) { s.Waves = "10%,150%" }), "alice", tufota.EInvalid, "over 100%"},
		{"no waves", with(func(s *Spec) { s.Waves = "" }), "alice", tufota.EInvalid, "plan is empty"},
		{"malformed window", with(func(s *Spec) { s.Window = "Mon-Fry 01:00-05:00 Europe/Berlin" }), "alice", tufota.EInvalid, `unknown day "Fry"`},
		{"window in an unknown zone", with(func(s *Spec) { s.Window = "Mon-Fri 01:00-05:00 Europe/Atlantis" }), "alice", tufota.EInvalid, "unknown time zone"},
		{"bad soak", with(func(s *Spec) { s.Soak = "a while" }), "alice", tufota.EInvalid, `soak "a while" is not a duration`},
		{"bad rate", with(func(s *Spec) { s.MaxFailureRate = "5" }), "alice", tufota.EInvalid, "write a percentage"},
		{"bad start", with(func(s *Spec) { s.StartAt = "tomorrow" }), "alice", tufota.EInvalid, "RFC 3339"},
		{"approval after the last wave", with(func(s *Spec) { s.ApprovalRequiredAfterWave = 3 }), "alice", tufota.EInvalid, "no wave follows it"},
		{"negative min reports", with(func(s *Spec) { s.MinReports = -1 }), "alice", tufota.EInvalid, "min reports -1"},
		{"no actor", canary, " ", tufota.EInvalid, "actor is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.svc.CreateRollout(t.Context(), tt.spec, tt.actor)
			wantCode(t, err, tt.code, tt.want)
		})
	}
	rs, err := e.svc.Rollouts(t.Context())
	if err != nil || len(rs) != 0 {
		t.Fatalf("bad input left rollouts %v, %v", rs, err)
	}
	wantCode(t, e.svc.Start(t.Context(), "ro-404", "alice", ""), tufota.ENotFound, "no rollout ro-404")
	_, err = e.svc.Status(t.Context(), "ro-404")
	wantCode(t, err, tufota.ENotFound, "no rollout ro-404")
}

// TestStateErrors: every command in the wrong state names the state.
func TestStateErrors(t *testing.T) {
	t.Parallel()
	testStateErrors(t, nil)
}

func testStateErrors(t *testing.T, open dbOpener) {
	e := newEnv(t, open)
	e.fleet(10, nil)
	r := e.create(canary, "alice")
	ctx := t.Context()
	wantCode(t, e.svc.Pause(ctx, r.ID, "alice", ""), tufota.EConflict, "cannot pause a draft rollout")
	wantCode(t, e.svc.Resume(ctx, r.ID, "alice", ""), tufota.EConflict, "cannot resume a draft rollout")
	wantCode(t, e.svc.Approve(ctx, r.ID, "bob", ""), tufota.EConflict, "cannot approve a draft rollout")
	wantCode(t, e.svc.Rollback(ctx, r.ID, "bob", ""), tufota.EConflict, "cannot rollback a draft rollout: it never reached a device")
	if err := e.svc.Start(ctx, r.ID, "alice", ""); err != nil {
		t.Fatal(err)
	}
	wantCode(t, e.svc.Start(ctx, r.ID, "alice", ""), tufota.EConflict, "cannot start a running rollout")
	wantCode(t, e.svc.Resume(ctx, r.ID, "alice", ""), tufota.EConflict, "cannot resume a running rollout")
	if err := e.svc.Pause(ctx, r.ID, "bob", "investigating"); err != nil {
		t.Fatal(err)
	}
	wantCode(t, e.svc.Pause(ctx, r.ID, "bob", ""), tufota.EConflict, "paused already")
	if err := e.svc.Abort(ctx, r.ID, "bob", "wrong release"); err != nil {
		t.Fatal(err)
	}
	st := e.status(r.ID)
	if st.State != Aborted || st.FinishedAt == nil || !strings.Contains(st.Reason, "bob aborted it: wrong release") {
		t.Fatalf("after abort: %+v", st.Rollout)
	}
	wantCode(t, e.svc.Abort(ctx, r.ID, "bob", ""), tufota.EConflict, "cannot abort a aborted rollout: it is final already")
	wantCode(t, e.svc.Start(ctx, r.ID, "bob", ""), tufota.EConflict, "cannot start a aborted rollout")
}

// TestCohortsAndOverlap: saved cohorts count their devices; a rollout whose
// cohort shares devices with an active rollout is refused, naming it.
func TestCohortsAndOverlap(t *testing.T) {
	t.Parallel()
	testCohortsAndOverlap(t, nil)
}

func testCohortsAndOverlap(t *testing.T, open dbOpener) {
	e := newEnv(t, open)
	ctx := t.Context()
	e.fleet(30, func(i int, d *Device) {
		d.Attrs["site"] = []string{"north", "south", "east"}[i%3]
		if i%2 == 0 {
			d.Tags = []string{"icu"}
		}
	})
	c, err := e.svc.CreateCohort(ctx, "north-icu", "hardware=pump-b,site in (north),tag:icu", "alice")
	if err != nil {
		t.Fatal(err)
	}
	if c.Devices != 5 || c.Selector != "hardware=pump-b,site in (north),tag:icu" {
		t.Fatalf("cohort = %+v, want 5 devices", c)
	}
	if _, err := e.svc.CreateCohort(ctx, "south", "site=south", "alice"); err != nil {
		t.Fatal(err)
	}
	_, err = e.svc.CreateCohort(ctx, "south", "site=south", "alice")
	wantCode(t, err, tufota.EConflict, "cohort south exists already")
	_, err = e.svc.CreateCohort(ctx, "bad", "site=", "alice")
	wantCode(t, err, tufota.EInvalid, "site value is empty")
	_, err = e.svc.CreateCohort(ctx, "../x", "site=a", "alice")
	wantCode(t, err, tufota.EInvalid, "cohort name")
	cs, err := e.svc.Cohorts(ctx)
	if err != nil || len(cs) != 2 || cs[0].Name != "north-icu" || cs[1].Devices != 10 {
		t.Fatalf("Cohorts = %+v, %v", cs, err)
	}
	got, err := e.svc.Cohort(ctx, "south")
	if err != nil || got.Devices != 10 {
		t.Fatalf("Cohort(south) = %+v, %v", got, err)
	}
	_, err = e.svc.Cohort(ctx, "nope")
	wantCode(t, err, tufota.ENotFound, "no cohort nope")

	spec := canary
	spec.Cohort = "north-icu"
	a := e.create(spec, "alice")
	if a.Cohort != "north-icu" || a.Selector != c.Selector {
		t.Fatalf("rollout cohort %q selector %q", a.Cohort, a.Selector)
	}
	if err := e.svc.Start(ctx, a.ID, "alice", ""); err != nil {
		t.Fatal(err)
	}
	spec.Cohort = "tag:icu"
	_, err = e.svc.CreateRollout(ctx, spec, "bob")
	wantCode(t, err, tufota.EConflict, "cohort overlaps active rollout ro-1 (pump-fw@1.1.0 to cohort north-icu")
	wantCode(t, err, tufota.EConflict, "5 devices in both")
	// A disjoint cohort is fine, and two drafts may overlap until one starts.
	spec.Cohort = "south"
	b := e.create(spec, "bob")
	spec.Cohort = "site=south"
	c2 := e.create(spec, "bob")
	if err := e.svc.Start(ctx, b.ID, "bob", ""); err != nil {
		t.Fatal(err)
	}
	wantCode(t, e.svc.Start(ctx, c2.ID, "bob", ""), tufota.EConflict, "start rollout "+c2.ID+": cohort overlaps active rollout "+b.ID)
	// Once the first is over, its devices are free again.
	if err := e.svc.Abort(ctx, b.ID, "bob", ""); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.Start(ctx, c2.ID, "bob", ""); err != nil {
		t.Fatal(err)
	}
}

// TestDevices: registration, validation, updates and filters.
func TestDevices(t *testing.T) {
	t.Parallel()
	testDevices(t, nil)
}

func testDevices(t *testing.T, open dbOpener) {
	e := newEnv(t, open)
	ctx := t.Context()
	d := Device{ID: "pump-1", Hardware: "pump-b", Version: "1.0.0", Attrs: map[string]string{"site": "north", "region": "eu"}, Tags: []string{"icu", "loaner", "icu"}}
	if err := e.svc.RegisterDevice(ctx, d, "alice"); err != nil {
		t.Fatal(err)
	}
	got, err := e.svc.Device(ctx, "pump-1")
	if err != nil {
		t.Fatal(err)
	}
	if got.Attrs["region"] != "eu" || !slices.Equal(got.Tags, []string{"icu", "loaner"}) || got.CreatedBy != "alice" || got.CreatedAt.IsZero() {
		t.Fatalf("device = %+v", got)
	}
	// Re-registering updates attributes and keeps the creator.
	d.Attrs = map[string]string{"site": "south"}
	d.Tags = nil
	if err := e.svc.RegisterDevice(ctx, d, "bob"); err != nil {
		t.Fatal(err)
	}
	got, _ = e.svc.Device(ctx, "pump-1")
	if got.Attrs["site"] != "south" || len(got.Tags) != 0 || got.CreatedBy != "alice" {
		t.Fatalf("re-registered device = %+v", got)
	}
	wantCode(t, e.svc.RegisterDevice(ctx, Device{ID: "x y", Hardware: "pump-b"}, "alice"), tufota.EInvalid, "device ID")
	wantCode(t, e.svc.RegisterDevice(ctx, Device{ID: "p2", Hardware: "pump-b", Attrs: map[string]string{"tags": "x"}}, "alice"), tufota.EInvalid, "reserved")
	_, err = e.svc.Device(ctx, "nope")
	wantCode(t, err, tufota.ENotFound, "device nope is not registered")
	e.fleet(5, nil)
	ds, err := e.svc.Devices(ctx, DeviceFilter{Selector: "site=north"})
	if err != nil || len(ds) != 5 {
		t.Fatalf("Devices(site=north) = %d, %v", len(ds), err)
	}
	ds, err = e.svc.Devices(ctx, DeviceFilter{Limit: 2})
	if err != nil || len(ds) != 2 {
		t.Fatalf("Devices(limit 2) = %d, %v", len(ds), err)
	}
	_, err = e.svc.Devices(ctx, DeviceFilter{Selector: "site=="})
	wantCode(t, err, tufota.EInvalid, "selector")
	// Assignment records last seen and believes the reported version.
	e.clock.Advance(time.Minute)
	a, err := e.svc.Assignment(ctx, Query{DeviceID: "pump-1", Hardware: "pump-b", Version: "1.0.5"})
	if err != nil || a != nil {
		t.Fatalf("Assignment = %v, %v; want nothing", a, err)
	}
	got, _ = e.svc.Device(ctx, "pump-1")
	if got.Version != "1.0.5" || !got.LastSeen.Equal(e.clock.Now()) {
		t.Fatalf("after a poll: version %s last seen %v", got.Version, got.LastSeen)
	}
	_, err = e.svc.Assignment(ctx, Query{DeviceID: "pump-1", Hardware: "monitor-a"})
	wantCode(t, err, tufota.EConflict, "registered as hardware pump-b but reports monitor-a")
	_, err = e.svc.Assignment(ctx, Query{DeviceID: "ghost"})
	wantCode(t, err, tufota.ENotFound, "not registered")
	_, err = e.svc.Assignment(ctx, Query{DeviceID: "pump-1", Version: "one"})
	wantCode(t, err, tufota.EInvalid, "not a semantic version")
}

// TestJoinersFallIntoTheirBucket: a device registered after a wave started
// is offered the release in that wave only if the wave's cutoff covers it.
func TestJoinersFallIntoTheirBucket(t *testing.T) {
	t.Parallel()
	testJoinersFallIntoTheirBucket(t, nil)
}

func testJoinersFallIntoTheirBucket(t *testing.T, open dbOpener) {
	e := newEnv(t, open)
	ctx := t.Context()
	ids := e.fleet(100, nil)
	spec := canary
	spec.Waves = "10%,100%"
	r := e.create(spec, "alice")
	if err := e.svc.Start(ctx, r.ID, "alice", ""); err != nil {
		t.Fatal(err)
	}
	st := e.status(r.ID)
	if st.Waves[0].Size != 10 {
		t.Fatalf("wave 1 size %d, want 10", st.Waves[0].Size)
	}
	// Find one newcomer inside the first cutoff and one outside.
	rr, _ := e.svc.Rollout(ctx, r.ID)
	cut := rr.cutoffs()
	var in, out string
	for i := 0; in == "" || out == ""; i++ {
		id := fmt.Sprintf("late-%d", i)
		if WaveOf(cut, KeyOf(r.ID, id)) == 0 {
			if in == "" {
				in = id
			}
		} else if out == "" {
			out = id
		}
	}
	for _, id := range []string{in, out} {
		if err := e.svc.RegisterDevice(ctx, Device{ID: id, Hardware: "pump-b", Version: "1.0.0"}, "admin"); err != nil {
			t.Fatal(err)
		}
	}
	a, err := e.svc.Assignment(ctx, Query{DeviceID: in})
	if err != nil || a == nil || a.RolloutID != r.ID {
		t.Fatalf("newcomer %s in wave 1's bucket range: %v, %v", in, a, err)
	}
	a, err = e.svc.Assignment(ctx, Query{DeviceID: out})
	if err != nil || a != nil {
		t.Fatalf("newcomer %s outside wave 1: %v, %v", out, a, err)
	}
	st = e.status(r.ID)
	if st.Waves[0].Size != 11 || st.Health.Cohort != 102 {
		t.Fatalf("wave 1 size %d cohort %d, want 11 and 102", st.Waves[0].Size, st.Health.Cohort)
	}
	// Wave 2 (100%) takes everyone, the other newcomer included.
	s := e.sim(append(ids, in, out), nil)
	st = s.run(r.ID, 5*time.Minute, 20, Completed)
	if st.Waves[1].Size != 102 || st.Health.Installed != 102 {
		t.Fatalf("final %+v", st.Waves)
	}
}

// TestEligibility: devices of other hardware or on the release (or newer)
// are not in the rollout; a device already on the version is not offered.
func TestEligibility(t *testing.T) {
	t.Parallel()
	testEligibility(t, nil)
}

func testEligibility(t *testing.T, open dbOpener) {
	e := newEnv(t, open)
	ctx := t.Context()
	e.fleet(4, func(i int, d *Device) {
		switch i {
		case 1:
			d.Hardware = "monitor-a"
		case 2:
			d.Version = "1.1.0"
		case 3:
			d.Version = "2.0.0"
		}
	})
	spec := canary
	spec.Cohort, spec.Waves = "site=north", "100%"
	r := e.create(spec, "alice")
	if err := e.svc.Start(ctx, r.ID, "alice", ""); err != nil {
		t.Fatal(err)
	}
	for i, want := range []bool{true, false, false, false} {
		id := fmt.Sprintf("pump-%03d", i)
		a, err := e.svc.Assignment(ctx, Query{DeviceID: id})
		if err != nil || (a != nil) != want {
			t.Errorf("Assignment(%s) = %v, %v; want offered %v", id, a, err, want)
		}
	}
	if st := e.status(r.ID); st.Health.Cohort != 1 {
		t.Errorf("cohort = %d, want 1", st.Health.Cohort)
	}
}

// TestWindowHoldsOffers: outside the maintenance window nothing is offered
// and no wave starts; inside it the rollout proceeds.
func TestWindowHoldsOffers(t *testing.T) {
	t.Parallel()
	testWindowHoldsOffers(t, nil)
}

func testWindowHoldsOffers(t *testing.T, open dbOpener) {
	e := newEnv(t, open) // clock: Monday 09:00 UTC
	ctx := t.Context()
	ids := e.fleet(20, nil)
	spec := canary
	spec.Waves, spec.Window, spec.Soak = "50%,100%", "Mon-Fri 12:00-13:00 UTC", "1m"
	r := e.create(spec, "alice")
	if err := e.svc.Start(ctx, r.ID, "alice", ""); err != nil {
		t.Fatal(err)
	}
	s := e.sim(ids, nil)
	s.poll()
	if len(s.offered) != 0 {
		t.Fatalf("%d offers outside the window", len(s.offered))
	}
	e.clock.Advance(2 * time.Minute)
	if st := e.status(r.ID); !strings.Contains(st.Next, "wave 1 waiting for reports from its devices: 0 of 10 needed") {
		t.Errorf("next = %q", st.Next)
	}
	e.clock.Advance(3*time.Hour - 2*time.Minute) // 12:00
	s.poll()
	if len(s.offered) != 10 {
		t.Fatalf("%d offers in the window, want 10", len(s.offered))
	}
	e.clock.Advance(2 * time.Minute)
	e.tick()
	if st := e.status(r.ID); st.Wave != 2 {
		t.Fatalf("wave %d inside the window, want 2 (%s)", st.Wave, st.Next)
	}
	// Advance past the window: the rest wait for tomorrow.
	e.clock.Advance(time.Hour)
	s.poll()
	if len(s.offered) != 10 {
		t.Fatalf("%d offers after the window closed", len(s.offered))
	}
	e.clock.Advance(23 * time.Hour)
	st := s.run(r.ID, time.Minute, 30, Completed)
	if st.Health.Installed != 20 {
		t.Fatalf("installed %d", st.Health.Installed)
	}
}

// TestScheduledStart: a start time in the future schedules the rollout; the
// controller starts it when the time comes.
func TestScheduledStart(t *testing.T) {
	t.Parallel()
	testScheduledStart(t, nil)
}

func testScheduledStart(t *testing.T, open dbOpener) {
	e := newEnv(t, open)
	ctx := t.Context()
	e.fleet(10, nil)
	spec := canary
	spec.StartAt = e.clock.Now().Add(2 * time.Hour).Format(time.RFC3339)
	r := e.create(spec, "alice")
	if err := e.svc.Start(ctx, r.ID, "alice", ""); err != nil {
		t.Fatal(err)
	}
	if st := e.status(r.ID); st.State != Scheduled || !strings.Contains(st.Next, "scheduled to start at 2026-03-02T11:00:00Z") {
		t.Fatalf("state %s next %q", st.State, st.Next)
	}
	if a, _ := e.svc.Assignment(ctx, Query{DeviceID: "pump-000"}); a != nil {
		t.Fatal("scheduled rollout offered its release")
	}
	e.clock.Advance(time.Hour)
	e.tick()
	if st := e.status(r.ID); st.State != Scheduled {
		t.Fatalf("state %s before the start time", st.State)
	}
	// Paused and resumed before its start, it is scheduled again.
	if err := e.svc.Pause(ctx, r.ID, "bob", ""); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.Resume(ctx, r.ID, "bob", ""); err != nil {
		t.Fatal(err)
	}
	if st := e.status(r.ID); st.State != Scheduled {
		t.Fatalf("resumed before the start: %s", st.State)
	}
	e.clock.Advance(time.Hour)
	e.tick()
	st := e.status(r.ID)
	if st.State != Running || st.Wave != 1 || !strings.Contains(st.Reason, "start time 2026-03-02T11:00:00Z reached") {
		t.Fatalf("after the start time: %s wave %d reason %q", st.State, st.Wave, st.Reason)
	}
	h, _ := e.svc.History(ctx, r.ID)
	kinds := []string{}
	for _, ev := range h.Events {
		kinds = append(kinds, ev.Kind+"/"+ev.Actor)
	}
	if want := []string{"created/alice", "scheduled/alice", "paused/bob", "resumed/bob", "started/controller"}; !slices.Equal(kinds, want) {
		t.Fatalf("events %v, want %v", kinds, want)
	}
}

// TestResumeAcceptsPastFailures: after a breach pause, resume lets the
// rollout go on, judging only new reports.
func TestResumeAcceptsPastFailures(t *testing.T) {
	t.Parallel()
	testResumeAcceptsPastFailures(t, nil)
}

func testResumeAcceptsPastFailures(t *testing.T, open dbOpener) {
	e := newEnv(t, open)
	ctx := t.Context()
	ids := e.fleet(100, nil)
	spec := canary
	spec.Waves, spec.MinReports = "10%,100%", 10
	r := e.create(spec, "alice")
	if err := e.svc.Start(ctx, r.ID, "alice", ""); err != nil {
		t.Fatal(err)
	}
	first := true
	s := e.sim(ids, func(string) behaviour {
		if first {
			first = false
			return failing
		}
		return healthy
	})
	st := s.run(r.ID, 5*time.Minute, 10, Paused)
	if !strings.Contains(st.Reason, "failure rate 10.0% (1 of 10 reports) above max 5.0%") {
		t.Fatalf("reason %q", st.Reason)
	}
	if err := e.svc.Resume(ctx, r.ID, "bob", "the one failure was a flat battery"); err != nil {
		t.Fatal(err)
	}
	st = e.status(r.ID)
	if st.State != Running || !strings.Contains(st.Reason, "bob resumed it, accepting 1 failures in 10 reports so far: the one failure was a flat battery") {
		t.Fatalf("after resume: %s %q", st.State, st.Reason)
	}
	st = s.run(r.ID, 5*time.Minute, 20, Completed)
	if st.Health.Installed != 99 || st.Health.Failed != 1 {
		t.Fatalf("health %+v", st.Health)
	}
}

// TestReportStateMachine: reports move a device's status forward, outcomes
// are final, and reports about things never offered are refused.
func TestReportStateMachine(t *testing.T) {
	t.Parallel()
	testReportStateMachine(t, nil)
}

func testReportStateMachine(t *testing.T, open dbOpener) {
	e := newEnv(t, open)
	ctx := t.Context()
	e.fleet(3, nil)
	spec := canary
	spec.Waves = "100%"
	r := e.create(spec, "alice")
	if err := e.svc.Start(ctx, r.ID, "alice", ""); err != nil {
		t.Fatal(err)
	}
	a0, _ := e.svc.Assignment(ctx, Query{DeviceID: "pump-000"})
	a1, _ := e.svc.Assignment(ctx, Query{DeviceID: "pump-001"})
	if a0 == nil || a1 == nil {
		t.Fatal("no offers")
	}
	// Re-polling an offered device returns the same target.
	again, _ := e.svc.Assignment(ctx, Query{DeviceID: "pump-000"})
	if *again != *a0 {
		t.Fatalf("re-offer %+v, want %+v", again, a0)
	}
	e.report("pump-000", a0, StatusDownloading, "")
	e.report("pump-000", a0, StatusDownloading, "") // repeated: fine
	e.report("pump-000", a0, StatusFailed, "hash_mismatch")
	err := e.svc.Report(ctx, "pump-000", Report{Target: a0.Target, Version: a0.Version, State: StatusDownloading, RolloutID: r.ID})
	wantCode(t, err, tufota.EConflict, "outcome in rollout ro-1 is failed, which is final")
	e.report("pump-000", a0, StatusFailed, "hash_mismatch") // repeated outcome: fine
	// A failed device is not offered again.
	if a, _ := e.svc.Assignment(ctx, Query{DeviceID: "pump-000"}); a != nil {
		t.Fatalf("failed device re-offered %+v", a)
	}
	// Installed, then the device reverted by itself.
	e.report("pump-001", a1, StatusInstalled, "")
	if d, _ := e.svc.Device(ctx, "pump-001"); d.Version != "1.1.0" {
		t.Fatalf("installed device runs %s", d.Version)
	}
	e.report("pump-001", a1, StatusRolledBack, "boot_failed")
	if d, _ := e.svc.Device(ctx, "pump-001"); d.Version != "1.0.0" {
		t.Fatalf("rolled-back device runs %s, want 1.0.0", d.Version)
	}
	// Reports without a rollout ID find the rollout by target.
	a2, _ := e.svc.Assignment(ctx, Query{DeviceID: "pump-002"})
	if err := e.svc.Report(ctx, "pump-002", Report{Target: a2.Target, Version: "1.1.0", State: StatusInstalled}); err != nil {
		t.Fatal(err)
	}
	if st := e.status(r.ID); st.Health.Installed != 1 || st.Health.Failed != 2 {
		t.Fatalf("health %+v", st.Health)
	}
	// Refused reports.
	wantCode(t, e.svc.Report(ctx, "pump-002", Report{State: "exploded"}), tufota.EInvalid, `state "exploded"`)
	wantCode(t, e.svc.Report(ctx, "pump-002", Report{State: StatusInstalled, Version: "x"}), tufota.EInvalid, "not a semantic version")
	wantCode(t, e.svc.Report(ctx, "pump-002", Report{State: StatusInstalled, RolloutID: "ro-404"}), tufota.EConflict, "rollout ro-404, which does not exist")
	wantCode(t, e.svc.Report(ctx, "ghost", Report{State: StatusInstalled}), tufota.ENotFound, "not registered")
	wantCode(t, e.svc.Report(ctx, "pump-002", Report{State: StatusFailed, ErrorCode: "bad code!"}), tufota.EInvalid, "error code")
	e.rels.add("monitor-fw", "2.0.0", []string{"monitor-a"})
	if err := e.svc.RegisterDevice(ctx, Device{ID: "mon-1", Hardware: "monitor-a"}, "admin"); err != nil {
		t.Fatal(err)
	}
	other := e.create(Spec{Release: "monitor-fw@2.0.0", Cohort: "id=mon-1", Waves: "all"}, "alice")
	wantCode(t, e.svc.Report(ctx, "pump-001", Report{State: StatusInstalled, RolloutID: other.ID}), tufota.EConflict, "never offered it")
	wantCode(t, e.svc.Report(ctx, "pump-002", Report{Target: "other/1.0.0/x", State: StatusInstalled, RolloutID: r.ID}), tufota.EConflict, "which offered pump-fw/1.1.0/fw.bin")
	// A long message is cut, not refused.
	long := strings.Repeat("é", 1000)
	if err := e.svc.Report(ctx, "pump-000", Report{Target: a0.Target, State: StatusFailed, ErrorCode: "hash_mismatch", Message: long, RolloutID: r.ID}); err != nil {
		t.Fatal(err)
	}
	h, _ := e.svc.History(ctx, r.ID)
	for _, d := range h.Devices {
		if d.DeviceID == "pump-000" && (len(d.Message) > maxMessage || !strings.HasPrefix(long, d.Message)) {
			t.Fatalf("stored message of %d bytes", len(d.Message))
		}
	}
	// Every report is in the history table, refused ones excepted.
	var n int
	if err := e.db.QueryRow(ctx, `SELECT COUNT(*) FROM status_reports`).Scan(&n); err != nil || n != 8 {
		t.Fatalf("status_reports has %d rows (%v), want 8", n, err)
	}
}

// TestRollback: a rollback needs a release signed for the downgrade; with
// one, every device that took the release is assigned it, installs it, and
// the history says so.
func TestRollback(t *testing.T) {
	t.Parallel()
	testRollback(t, nil)
}

func testRollback(t *testing.T, open dbOpener) {
	e := newEnv(t, open)
	ctx := t.Context()
	ids := e.fleet(20, nil)
	spec := canary
	spec.Waves = "50%,100%"
	r := e.create(spec, "alice")
	if err := e.svc.Start(ctx, r.ID, "alice", ""); err != nil {
		t.Fatal(err)
	}
	s := e.sim(ids, nil)
	s.run(r.ID, time.Minute, 60, Completed)

	// 1.0.0 was signed before 1.1.0 existed: devices would refuse it.
	wantCode(t, e.svc.Rollback(ctx, r.ID, "bob", "alarms"), tufota.EConflict,
		"devices would refuse pump-fw@1.0.0: its signed metadata does not allow a downgrade from 1.1.0; push the old image as a release signed for it, e.g. tufota release push pump-fw 1.0.0+rollback.1 FILE --allow-downgrade-from 1.1.0")
	wantCode(t, e.svc.RollbackTo(ctx, r.ID, "pump-fw@1.0.1", "bob", ""), tufota.ENotFound, "unknown release pump-fw@1.0.1")
	e.rels.add("pump-fw", "1.0.0+rollback.1", []string{"pump-b"}, "1.1.0")
	if err := e.svc.RollbackTo(ctx, r.ID, "pump-fw@1.0.0+rollback.1", "bob", "alarms on ward 3"); err != nil {
		t.Fatal(err)
	}
	st := e.status(r.ID)
	if st.State != RolledBack || st.RollbackRelease != "pump-fw@1.0.0+rollback.1" ||
		!strings.Contains(st.Reason, "bob rolled it back: 20 devices running pump-fw@1.1.0 are assigned pump-fw@1.0.0+rollback.1: alarms on ward 3") {
		t.Fatalf("after rollback: %s %q", st.State, st.Reason)
	}
	wantCode(t, e.svc.Rollback(ctx, r.ID, "bob", ""), tufota.EConflict, "rolled back, which is final")
	for _, id := range ids {
		a, err := e.svc.Assignment(ctx, Query{DeviceID: id, Version: "1.1.0"})
		if err != nil || a == nil || a.Version != "1.0.0+rollback.1" || a.RolloutID != r.ID || a.Target != "pump-fw/1.0.0+rollback.1/fw.bin" {
			t.Fatalf("Assignment(%s) after rollback = %+v, %v", id, a, err)
		}
		e.report(id, a, StatusDownloading, "")
		e.report(id, a, StatusInstalled, "")
		if a, _ := e.svc.Assignment(ctx, Query{DeviceID: id}); a != nil {
			t.Fatalf("device %s still assigned %+v after installing the rollback", id, a)
		}
		if d, _ := e.svc.Device(ctx, id); d.Version != "1.0.0+rollback.1" || d.TargetRelease != "" {
			t.Fatalf("device %s after rollback: %+v", id, d)
		}
	}
	// A queued report repeated after the rollback is history only.
	if err := e.svc.Report(ctx, ids[0], Report{Target: "pump-fw/1.0.0+rollback.1/fw.bin", Version: "1.0.0+rollback.1", State: StatusInstalled, RolloutID: r.ID}); err != nil {
		t.Fatalf("repeated report: %v", err)
	}
	h, err := e.svc.History(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range h.Devices {
		if d.State != StatusReverted || d.PreviousVersion != "1.0.0" {
			t.Errorf("device %s: %s (previous %s), want reverted from 1.0.0", d.DeviceID, d.State, d.PreviousVersion)
		}
	}
	last := h.Events[len(h.Events)-1]
	if last.Kind != EventRolledBack || last.Actor != "bob" || last.Details["devices"] != "20" {
		t.Fatalf("last event %+v", last)
	}
}

// TestRollbackToPrevious: when each device's previous release is signed to
// allow the downgrade, Rollback needs no --to; devices that were still
// installing are taken back when they report installed.
func TestRollbackToPrevious(t *testing.T) {
	t.Parallel()
	testRollbackToPrevious(t, nil)
}

func testRollbackToPrevious(t *testing.T, open dbOpener) {
	e := newEnv(t, open)
	ctx := t.Context()
	e.rels.add("pump-fw", "1.0.0", []string{"pump-b"}, "1.1.0") // signed for it
	ids := e.fleet(4, nil)
	spec := canary
	spec.Waves = "100%"
	r := e.create(spec, "alice")
	if err := e.svc.Start(ctx, r.ID, "alice", ""); err != nil {
		t.Fatal(err)
	}
	offers := map[string]*Assignment{}
	for _, id := range ids {
		a, _ := e.svc.Assignment(ctx, Query{DeviceID: id})
		offers[id] = a
	}
	e.report("pump-000", offers["pump-000"], StatusInstalled, "")
	e.report("pump-001", offers["pump-001"], StatusInstalling, "")
	e.report("pump-002", offers["pump-002"], StatusFailed, "not_newer")
	if err := e.svc.Rollback(ctx, r.ID, "bob", ""); err != nil {
		t.Fatal(err)
	}
	if a, _ := e.svc.Assignment(ctx, Query{DeviceID: "pump-000"}); a == nil || a.Version != "1.0.0" {
		t.Fatalf("installed device after rollback: %+v", a)
	}
	for _, id := range []string{"pump-001", "pump-002", "pump-003"} {
		if a, _ := e.svc.Assignment(ctx, Query{DeviceID: id}); a != nil {
			t.Fatalf("device %s (never installed) assigned %+v", id, a)
		}
	}
	// pump-001 finishes installing after the rollback: it is taken back.
	e.report("pump-001", offers["pump-001"], StatusInstalled, "")
	if a, _ := e.svc.Assignment(ctx, Query{DeviceID: "pump-001"}); a == nil || a.Version != "1.0.0" || a.RolloutID != r.ID {
		t.Fatalf("late installer after rollback: %+v", a)
	}
}

// TestAssignDevice: a service engineer's one-device assignment.
func TestAssignDevice(t *testing.T) {
	t.Parallel()
	testAssignDevice(t, nil)
}

func testAssignDevice(t *testing.T, open dbOpener) {
	e := newEnv(t, open)
	ctx := t.Context()
	e.fleet(3, nil)
	e.rels.add("pump-fw", "0.9.0", []string{"pump-b"})
	e.rels.add("monitor-fw", "1.0.0", []string{"monitor-a"})
	wantCode(t, e.svc.AssignDevice(ctx, "pump-000", "pump-fw", "9.0.0", "sam"), tufota.ENotFound, "unknown release pump-fw@9.0.0")
	wantCode(t, e.svc.AssignDevice(ctx, "ghost", "pump-fw", "1.1.0", "sam"), tufota.ENotFound, "not registered")
	wantCode(t, e.svc.AssignDevice(ctx, "pump-000", "monitor-fw", "1.0.0", "sam"), tufota.EInvalid, "supports hardware monitor-a, not device pump-000's pump-b")
	wantCode(t, e.svc.AssignDevice(ctx, "pump-000", "pump-fw", "0.9.0", "sam"), tufota.EInvalid, "does not allow a downgrade from 1.0.0")
	wantCode(t, e.svc.AssignDevice(ctx, "pump-000", "pump-fw", "1.0.0", "sam"), tufota.EConflict, "runs pump-fw@1.0.0 already")
	wantCode(t, e.svc.AssignDevice(ctx, "pump-000", "pump-fw", "1.1.0", ""), tufota.EInvalid, "actor is empty")
	if err := e.svc.AssignDevice(ctx, "pump-000", "pump-fw", "1.1.0", "sam"); err != nil {
		t.Fatal(err)
	}
	a, err := e.svc.Assignment(ctx, Query{DeviceID: "pump-000"})
	if err != nil || a == nil || a.Target != "pump-fw/1.1.0/fw.bin" || a.RolloutID != "" {
		t.Fatalf("Assignment = %+v, %v", a, err)
	}
	if err := e.svc.Report(ctx, "pump-000", Report{Target: a.Target, Version: "1.1.0", State: StatusInstalled}); err != nil {
		t.Fatal(err)
	}
	if d, _ := e.svc.Device(ctx, "pump-000"); d.Version != "1.1.0" || d.TargetRelease != "" || d.CurrentRelease != "pump-fw@1.1.0" {
		t.Fatalf("device after install: %+v", d)
	}
	e.mu.Lock()
	last := e.events[len(e.events)-1]
	e.mu.Unlock()
	if last.Kind != EventDeviceAssigned || last.Actor != "sam" || last.Details["device"] != "pump-000" {
		t.Fatalf("event %+v", last)
	}
	// A device in an active rollout cannot be assigned elsewhere.
	spec := canary
	spec.Waves = "100%"
	r := e.create(spec, "alice")
	if err := e.svc.Start(ctx, r.ID, "alice", ""); err != nil {
		t.Fatal(err)
	}
	if a, _ := e.svc.Assignment(ctx, Query{DeviceID: "pump-001"}); a == nil {
		t.Fatal("not offered")
	}
	wantCode(t, e.svc.AssignDevice(ctx, "pump-001", "pump-fw", "1.1.0", "sam"), tufota.EConflict, "in active rollout "+r.ID)

	// A failed assignment ends instead of making the device retry at
	// every poll; a repeated installed report is history only.
	if err := e.svc.Abort(ctx, r.ID, "alice", ""); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.AssignDevice(ctx, "pump-002", "pump-fw", "1.1.0", "sam"); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.Report(ctx, "pump-002", Report{Target: "pump-fw/1.1.0/fw.bin", Version: "1.1.0", State: StatusFailed, ErrorCode: "hash_mismatch"}); err != nil {
		t.Fatal(err)
	}
	if a, _ := e.svc.Assignment(ctx, Query{DeviceID: "pump-002"}); a != nil {
		t.Fatalf("failed assignment still offered: %+v", a)
	}
	e.mu.Lock()
	last = e.events[len(e.events)-1]
	e.mu.Unlock()
	if last.Kind != EventDeviceAssignmentFailed || !strings.Contains(last.Reason, "device pump-002 reported failed for pump-fw@1.1.0 (hash_mismatch)") {
		t.Fatalf("event %+v", last)
	}
	if err := e.svc.Report(ctx, "pump-000", Report{Target: "pump-fw/1.1.0/fw.bin", Version: "1.1.0", State: StatusInstalled}); err != nil {
		t.Fatalf("repeated installed report: %v", err)
	}
}

// TestConcurrentDevicesAndController: many devices poll and report from
// several goroutines while the controller ticks; the rollout completes and
// every device is offered once.
func TestConcurrentDevicesAndController(t *testing.T) {
	t.Parallel()
	testConcurrentDevicesAndController(t, nil)
}

func testConcurrentDevicesAndController(t *testing.T, open dbOpener) {
	e := newEnv(t, open)
	ctx := t.Context()
	ids := e.fleet(60, nil)
	spec := canary
	spec.Waves, spec.Soak, spec.MinReports = "10%,50%,100%", "0s", 3
	r := e.create(spec, "alice")
	if err := e.svc.Start(ctx, r.ID, "alice", ""); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	done := make(chan struct{})
	errs := make(chan error, 100)
	for w := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				for i := w; i < len(ids); i += 6 {
					a, err := e.svc.Assignment(ctx, Query{DeviceID: ids[i]})
					if err != nil {
						errs <- err
						return
					}
					if a == nil {
						continue
					}
					for _, st := range []DeviceState{StatusDownloading, StatusInstalled} {
						if err := e.svc.Report(ctx, ids[i], Report{Target: a.Target, Version: a.Version, State: st, RolloutID: a.RolloutID}); err != nil {
							errs <- err
							return
						}
					}
				}
			}
		}()
	}
	var st Status
	for range 2000 {
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
	if st.State != Completed || st.Health.Installed != 60 || st.Health.Offered != 60 {
		t.Fatalf("state %s health %+v", st.State, st.Health)
	}
}

// TestLaterWaveWaitsForItsOwnDevices: wave 1's reports do not let wave 2
// end; wave 2 needs reports from the devices that joined in it.
func TestLaterWaveWaitsForItsOwnDevices(t *testing.T) {
	t.Parallel()
	testLaterWaveWaitsForItsOwnDevices(t, nil)
}

func testLaterWaveWaitsForItsOwnDevices(t *testing.T, open dbOpener) {
	e := newEnv(t, open)
	ids := e.fleet(100, nil)
	spec := canary
	spec.Waves, spec.MinReports = "10%,50%,100%", 5
	r := e.create(spec, "alice")
	if err := e.svc.Start(t.Context(), r.ID, "alice", ""); err != nil {
		t.Fatal(err)
	}
	s := e.sim(ids, nil)
	s.poll() // wave 1's ten devices install
	e.clock.Advance(11 * time.Minute)
	e.tick()
	if st := e.status(r.ID); st.Wave != 2 {
		t.Fatalf("wave %d, want 2", st.Wave)
	}
	// Wave 2's devices stay offline: hours pass, the wave does not end.
	for range 5 {
		e.clock.Advance(time.Hour)
		e.tick()
	}
	st := e.status(r.ID)
	if st.Wave != 2 || st.State != Running || st.Next != "wave 2 waiting for reports from its devices: 0 of 5 needed" {
		t.Fatalf("wave %d %s next %q", st.Wave, st.State, st.Next)
	}
	s.poll()
	e.tick()
	if st := e.status(r.ID); st.Wave != 3 {
		t.Fatalf("after wave 2 reported: wave %d (%s)", st.Wave, st.Next)
	}
}

// waveValues copies wave statuses with their times normalised the way a
// JSON round trip leaves them.
func waveValues(ws []WaveStatus) []WaveStatus {
	out := slices.Clone(ws)
	for i := range out {
		if out[i].StartedAt != nil {
			t := out[i].StartedAt.Round(0)
			out[i].StartedAt = &t
		}
	}
	return out
}
