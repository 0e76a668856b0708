package rollout

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tufota/tufota"
)

var t0 = time.Date(2026, 3, 2, 2, 0, 0, 0, time.UTC) // a Monday

func intp(v int) *int { return &v }

func basePlan(t testing.TB) Plan {
	t.Helper()
	waves, err := ParseWaves("5%,25%,100%")
	if err != nil {
		t.Fatal(err)
	}
	return Plan{Waves: waves, Soak: 30 * time.Minute, MinReports: 10, MaxFailureRate: 0.05, DeviceTimeout: 2 * time.Hour}
}

func TestDecide(t *testing.T) {
	t.Parallel()
	plan := basePlan(t)
	withPlan := func(f func(*Plan)) Plan {
		p := plan
		f(&p)
		return p
	}
	running := func(wave int, started time.Time, p Plan) State {
		return State{Phase: Running, Wave: wave, WaveStartedAt: started, Plan: p}
	}
	soaked := t0.Add(-31 * time.Minute)
	healthy1 := Health{Cohort: 200, Members: 10, Offered: 10, Installed: 10}
	tests := []struct {
		name   string
		state  State
		now    time.Time
		health Health
		want   Action
		phase  Phase
		wave   int
		size   int
		reason string // substring
	}{
		// Phases Decide leaves alone.
		{"draft holds", State{Phase: Draft, Wave: -1, Plan: plan}, t0, Health{Cohort: 200}, Hold, Draft, -1, 0, "draft"},
		{"paused holds", State{Phase: Paused, Wave: 0, Plan: plan}, t0, healthy1, Hold, Paused, 0, 0, "paused"},
		{"completed holds", State{Phase: Completed, Wave: 2, Plan: plan}, t0, healthy1, Hold, Completed, 2, 0, "final"},
		{"aborted holds", State{Phase: Aborted, Wave: 0, Plan: plan}, t0, healthy1, Hold, Aborted, 0, 0, "final"},
		{"rolled back holds", State{Phase: RolledBack, Wave: 0, Plan: plan}, t0, healthy1, Hold, RolledBack, 0, 0, "final"},

		// Scheduled start.
		{"scheduled before start-at", State{Phase: Scheduled, Wave: -1, StartAt: t0.Add(time.Hour), Plan: plan}, t0, Health{Cohort: 200}, Hold, Scheduled, -1, 0, "scheduled to start at 2026-03-02T03:00:00Z"},
		{"scheduled start-at reached", State{Phase: Scheduled, Wave: -1, StartAt: t0, Plan: plan}, t0, Health{Cohort: 200}, Start, Running, 0, 10, "start time 2026-03-02T02:00:00Z reached: wave 1 of 3 (5%, 10 devices) starts"},
		{"scheduled without start-at starts", State{Phase: Scheduled, Wave: -1, Plan: plan}, t0, Health{Cohort: 10}, Start, Running, 0, 1, "starting: wave 1 of 3 (5%, 1 device)"},

		// Advancing.
		{"soaking", running(0, t0.Add(-10*time.Minute), plan), t0, healthy1, Hold, Running, 0, 0, "wave 1 soaking: 20m0s of 30m0s left"},
		{"soaked but too few reports", running(0, soaked, plan), t0, Health{Cohort: 200, Members: 10, Offered: 10, Installed: 9}, Hold, Running, 0, 0, "wave 1 waiting for reports from its devices: 9 of 10 needed"},
		{"later wave needs reports from its own devices", running(1, soaked, plan), t0, Health{Cohort: 200, Members: 50, Offered: 20, Installed: 12, WaveMembers: 40, WaveReports: 2}, Hold, Running, 1, 0, "wave 2 waiting for reports from its devices: 2 of 10 needed"},
		{"later wave with its own reports in advances", running(1, soaked, plan), t0, Health{Cohort: 200, Members: 50, Offered: 20, Installed: 20, WaveMembers: 40, WaveReports: 10}, Advance, Running, 2, 200, "wave 2 healthy"},
		{"a wave that adds no device needs no report", running(1, soaked, plan), t0, Health{Cohort: 3, Members: 1, Offered: 1, Installed: 1}, Advance, Running, 2, 3, ""},
		{"soaked, reports in, healthy: advance", running(0, soaked, plan), t0, healthy1, Advance, Running, 1, 50, "wave 1 healthy after soak 30m0s (10 installed, 0 failed); wave 2 of 3 (25%, 50 devices) starts"},
		{"small wave needs all of its devices, not min reports", running(0, soaked, plan), t0, Health{Cohort: 20, Members: 1, Offered: 1, Installed: 1}, Advance, Running, 1, 5, "wave 2 of 3"},
		{"next wave sized on the cohort of now", running(0, soaked, plan), t0, Health{Cohort: 400, Members: 10, Offered: 10, Installed: 10}, Advance, Running, 1, 100, "100 devices"},
		{"failures below the rate advance", running(1, soaked, plan), t0, Health{Cohort: 200, Members: 50, Offered: 50, Installed: 48, Failed: 2}, Advance, Running, 2, 200, "48 installed, 2 failed"},
		{"rate exactly at max is not a breach", running(1, soaked, withPlan(func(p *Plan) { p.MinReports = 20 })), t0, Health{Cohort: 200, Members: 50, Offered: 20, Installed: 19, Failed: 1}, Advance, Running, 2, 200, "19 installed"},

		// Gates.
		{"rate above max pauses", running(0, soaked, withPlan(func(p *Plan) { p.MinReports = 20 })), t0, Health{Cohort: 400, Members: 20, Offered: 20, Installed: 10, Failed: 10}, Pause, Paused, 0, 0, "wave 1: failure rate 50.0% (10 of 20 reports) above max 5.0%"},
		{"rate gate waits for min reports", running(0, t0, plan), t0, Health{Cohort: 200, Members: 10, Offered: 10, Failed: 2, Installed: 1}, Hold, Running, 0, 0, "soaking"},
		{"rate gate judged during soak once min reports are in", running(0, t0, plan), t0, Health{Cohort: 200, Members: 10, Offered: 10, Failed: 5, Installed: 5}, Pause, Paused, 0, 0, "failure rate 50.0% (5 of 10 reports) above max 5.0%"},
		{"small wave judged once all its devices reported", running(0, t0, plan), t0, Health{Cohort: 20, Members: 1, Offered: 1, Failed: 1}, Pause, Paused, 0, 0, "failure rate 100.0% (1 of 1 reports)"},
		{"max failures exceeded pauses before min reports", running(0, t0, withPlan(func(p *Plan) { p.MaxFailures = intp(2) })), t0, Health{Cohort: 200, Members: 10, Offered: 10, Failed: 3}, Pause, Paused, 0, 0, "wave 1: 3 failures above max 2"},
		{"max failures reached is tolerated", running(0, soaked, withPlan(func(p *Plan) { p.MaxFailures = intp(2); p.MaxFailureRate = 1 })), t0, Health{Cohort: 200, Members: 10, Offered: 10, Installed: 8, Failed: 2}, Advance, Running, 1, 50, ""},
		{"max failures 0: first failure pauses", running(0, t0, withPlan(func(p *Plan) { p.MaxFailures = intp(0) })), t0, Health{Cohort: 200, Members: 10, Offered: 10, Failed: 1}, Pause, Paused, 0, 0, "1 failures above max 0"},
		{"silent devices count as failures", running(0, soaked, plan), t0, Health{Cohort: 200, Members: 10, Offered: 10, Installed: 6, Silent: 4}, Pause, Paused, 0, 0, "wave 1: failure rate 40.0% (4 of 10 reports; 4 silent past device timeout 2h0m0s) above max 5.0%"},
		{"silent devices hit max failures", running(0, t0, withPlan(func(p *Plan) { p.MaxFailures = intp(1) })), t0, Health{Cohort: 200, Members: 10, Offered: 10, Failed: 1, Silent: 1}, Pause, Paused, 0, 0, "2 failures; 1 silent past device timeout 2h0m0s above max 1"},
		{"breach aborts when the plan says so", running(0, soaked, withPlan(func(p *Plan) { p.OnBreach = BreachAbort })), t0, Health{Cohort: 200, Members: 10, Offered: 10, Installed: 5, Failed: 5}, Abort, Aborted, 0, 0, "failure rate 50.0%"},
		{"gate breaks while waiting for approval", State{Phase: WaitingApproval, Wave: 0, WaveStartedAt: soaked, Plan: withPlan(func(p *Plan) { p.ApprovalAfterWave = 1 })}, t0, Health{Cohort: 200, Members: 10, Offered: 10, Installed: 5, Failed: 5}, Pause, Paused, 0, 0, "failure rate 50.0%"},
		{"gate breaks outside the window", running(0, soaked, withPlan(func(p *Plan) { p.Window = mustWindow(t, "Sat 01:00-02:00") })), t0, Health{Cohort: 200, Members: 10, Offered: 10, Installed: 5, Failed: 5}, Pause, Paused, 0, 0, "failure rate"},
		{"gate breaks in the last wave", running(2, soaked, plan), t0, Health{Cohort: 200, Members: 200, Offered: 200, Installed: 150, Failed: 50}, Pause, Paused, 2, 0, "wave 3: failure rate 25.0% (50 of 200 reports)"},

		// Resume baseline: accepted failures no longer count.
		{"resumed: old failures accepted", State{Phase: Running, Wave: 0, WaveStartedAt: soaked, Baseline: Baseline{Reports: 10, Failures: 5}, Plan: plan}, t0, Health{Cohort: 200, Members: 10, Offered: 10, Installed: 5, Failed: 5}, Advance, Running, 1, 50, "5 installed, 5 failed"},
		{"resumed: new failures judged alone", State{Phase: Running, Wave: 1, WaveStartedAt: soaked, Baseline: Baseline{Reports: 10, Failures: 5}, Plan: plan}, t0, Health{Cohort: 200, Members: 50, Offered: 50, Installed: 25, Failed: 25}, Pause, Paused, 1, 0, "wave 2: failure rate 50.0% (20 of 40 reports) since the last resume above max 5.0%"},
		{"resumed: max failures since resume", State{Phase: Running, Wave: 0, WaveStartedAt: t0, Baseline: Baseline{Reports: 3, Failures: 3}, Plan: withPlan(func(p *Plan) { p.MaxFailures = intp(3) })}, t0, Health{Cohort: 200, Members: 10, Offered: 10, Failed: 6}, Hold, Running, 0, 0, "soaking"},

		// Approval.
		{"approval gate after wave 1", running(0, soaked, withPlan(func(p *Plan) { p.ApprovalAfterWave = 1 })), t0, healthy1, WaitApproval, WaitingApproval, 0, 0, "wave 1 healthy (10 installed, 0 failed); wave 2 needs approval by someone other than the rollout's creator"},
		{"waiting for approval holds", State{Phase: WaitingApproval, Wave: 0, WaveStartedAt: soaked, Plan: withPlan(func(p *Plan) { p.ApprovalAfterWave = 1 })}, t0, healthy1, Hold, WaitingApproval, 0, 0, "waiting for approval of wave 2"},
		{"approved: advance", State{Phase: Running, Wave: 0, WaveStartedAt: soaked, Approved: true, Plan: withPlan(func(p *Plan) { p.ApprovalAfterWave = 1 })}, t0, healthy1, Advance, Running, 1, 50, "wave 2 of 3"},
		{"approval gate only after its wave", running(0, soaked, withPlan(func(p *Plan) { p.ApprovalAfterWave = 2 })), t0, healthy1, Advance, Running, 1, 50, ""},
		{"approval gate after wave 2", running(1, soaked, withPlan(func(p *Plan) { p.ApprovalAfterWave = 2 })), t0, Health{Cohort: 200, Members: 50, Offered: 50, Installed: 50}, WaitApproval, WaitingApproval, 1, 0, "wave 3 needs approval"},

		// Windows.
		{"outside the window: hold", running(0, soaked, withPlan(func(p *Plan) { p.Window = mustWindow(t, "Mon-Fri 03:00-05:00 UTC") })), t0, healthy1, Hold, Running, 0, 0, "outside maintenance window Mon-Fri 03:00-05:00 UTC: wave 2 waits until 2026-03-02T03:00:00Z"},
		{"inside the window: advance", running(0, soaked, withPlan(func(p *Plan) { p.Window = mustWindow(t, "Mon-Fri 01:00-05:00 UTC") })), t0, healthy1, Advance, Running, 1, 50, ""},
		{"window does not hold completion", running(2, soaked, withPlan(func(p *Plan) { p.Window = mustWindow(t, "Sat 01:00-02:00 UTC") })), t0, Health{Cohort: 200, Members: 200, Offered: 200, Installed: 200}, Complete, Completed, 2, 0, ""},

		// Completion.
		{"last wave waits for every device", running(2, soaked, plan), t0, Health{Cohort: 200, Members: 200, Offered: 195, Installed: 195}, Hold, Running, 2, 0, "wave 3 of 3 waiting for 5 of 200 devices to report"},
		{"last wave complete", running(2, soaked, plan), t0, Health{Cohort: 200, Members: 200, Offered: 200, Installed: 199, Failed: 1}, Complete, Completed, 2, 0, "wave 3 of 3 done: 199 installed, 1 failed"},
		{"last wave counts silent devices as done", running(2, soaked, plan), t0, Health{Cohort: 200, Members: 200, Offered: 200, Installed: 199, Silent: 1}, Complete, Completed, 2, 0, "1 silent past device timeout"},
		{"last wave still soaking", running(2, t0, plan), t0, Health{Cohort: 200, Members: 200, Offered: 200, Installed: 200}, Hold, Running, 2, 0, "wave 3 soaking"},
		{"single-wave plan completes", running(0, soaked, withPlan(func(p *Plan) { p.Waves = []WaveSpec{{Count: 3}} })), t0, Health{Cohort: 50, Members: 3, Offered: 3, Installed: 3}, Complete, Completed, 0, 0, "wave 1 of 1 done"},
		{"empty wave with soak done advances", running(0, soaked, plan), t0, Health{Cohort: 0}, Advance, Running, 1, 0, ""},

		// Corrupt state.
		{"wave index outside plan", running(7, soaked, plan), t0, healthy1, Hold, Running, 7, 0, "outside the plan"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := tt.health
			if tt.state.Wave == 0 && h.WaveMembers == 0 {
				// In the first wave, the wave's devices are all the members.
				h.WaveMembers, h.WaveReports = h.Members, h.Reports()
			}
			got := Decide(tt.state, tt.now, h)
			if got.Action != tt.want || got.Phase != tt.phase || got.Wave != tt.wave || got.Size != tt.size {
				t.Fatalf("Decide = %+v, want action %s phase %s wave %d size %d", got, tt.want, tt.phase, tt.wave, tt.size)
			}
			if !strings.Contains(got.Reason, tt.reason) {
				t.Fatalf("reason = %q, want it to contain %q", got.Reason, tt.reason)
			}
			if got.Reason == "" {
				t.Fatal("decision has no reason")
			}
		})
	}
}

// TestDecideWalk drives a rollout of 200 devices through Decide from start
// to completion, feeding back each decision, as the controller does.
func TestDecideWalk(t *testing.T) {
	t.Parallel()
	plan := basePlan(t)
	plan.ApprovalAfterWave = 1
	s := State{Phase: Scheduled, Wave: -1, StartAt: t0, Plan: plan}
	now := t0
	var actions []Action
	for step := 0; step < 50 && !s.Phase.Final(); step++ {
		size := 0
		if s.Wave >= 0 {
			size = Sizes(plan.Waves, 200)[s.Wave]
		}
		d := Decide(s, now, Health{Cohort: 200, Members: size, Offered: size, Installed: size})
		if d.Action != Hold {
			actions = append(actions, d.Action)
		}
		switch d.Action {
		case Start, Advance:
			s.WaveStartedAt = now
		case WaitApproval:
			// A person approves.
			next, err := Transition(d.Phase, CmdApprove)
			if err != nil {
				t.Fatal(err)
			}
			d.Phase = next
			s.Approved = true
		}
		s.Phase, s.Wave = d.Phase, d.Wave
		now = now.Add(10 * time.Minute)
	}
	want := []Action{Start, WaitApproval, Advance, Advance, Complete}
	if !reflect.DeepEqual(actions, want) {
		t.Fatalf("actions = %v, want %v", actions, want)
	}
}

func TestTransition(t *testing.T) {
	t.Parallel()
	// want[phase][command] = resulting phase, or "" for a refusal.
	want := map[Phase]map[Command]Phase{
		Draft:           {CmdStart: Scheduled, CmdAbort: Aborted},
		Scheduled:       {CmdPause: Paused, CmdAbort: Aborted},
		Running:         {CmdPause: Paused, CmdAbort: Aborted, CmdRollback: RolledBack},
		WaitingApproval: {CmdPause: Paused, CmdApprove: Running, CmdAbort: Aborted, CmdRollback: RolledBack},
		Paused:          {CmdResume: Running, CmdAbort: Aborted, CmdRollback: RolledBack},
		Completed:       {CmdRollback: RolledBack},
		Aborted:         {CmdRollback: RolledBack},
		RolledBack:      {},
	}
	cmds := []Command{CmdStart, CmdPause, CmdResume, CmdApprove, CmdAbort, CmdRollback}
	for _, from := range Phases {
		for _, cmd := range cmds {
			got, err := Transition(from, cmd)
			exp, ok := want[from][cmd]
			switch {
			case ok && (err != nil || got != exp):
				t.Errorf("Transition(%s, %s) = %s, %v; want %s", from, cmd, got, err, exp)
			case !ok && err == nil:
				t.Errorf("Transition(%s, %s) = %s, want a refusal", from, cmd, got)
			case !ok && (!errors.Is(err, tufota.ErrConflict) || !strings.Contains(err.Error(), "cannot "+string(cmd)+" a "+string(from)+" rollout")):
				t.Errorf("Transition(%s, %s) error = %v, want EConflict naming the command and phase", from, cmd, err)
			}
		}
	}
	if _, err := Transition(Running, "explode"); !errors.Is(err, tufota.ErrInvalid) {
		t.Errorf("unknown command error = %v", err)
	}
}

func TestPhase(t *testing.T) {
	t.Parallel()
	for _, p := range Phases {
		if p.Active() && p.Final() {
			t.Errorf("%s is both active and final", p)
		}
	}
	active := 0
	for _, p := range Phases {
		if p.Active() {
			active++
		}
	}
	if active != 4 {
		t.Errorf("%d active phases, want 4", active)
	}
}

func TestPlanValidate(t *testing.T) {
	t.Parallel()
	good := basePlan(t)
	if err := good.Validate(); err != nil {
		t.Fatalf("good plan: %v", err)
	}
	tests := []struct {
		mod  func(*Plan)
		want string
	}{
		{func(p *Plan) { p.Waves = nil }, "plan is empty"},
		{func(p *Plan) { p.Waves = []WaveSpec{{BasisPoints: 50}, {BasisPoints: 10}} }, "not increasing"},
		{func(p *Plan) { p.Soak = -time.Second }, "soak -1s is negative"},
		{func(p *Plan) { p.MinReports = 0 }, "min reports 0"},
		{func(p *Plan) { p.MaxFailureRate = 1.5 }, "150.0% is not between"},
		{func(p *Plan) { p.MaxFailureRate = -0.1 }, "not between"},
		{func(p *Plan) { p.MaxFailures = intp(-1) }, "max failures -1 is negative"},
		{func(p *Plan) { p.DeviceTimeout = 0 }, "device timeout 0s must be above zero"},
		{func(p *Plan) { p.ApprovalAfterWave = 3 }, "approval after wave 3: the plan has 3 waves"},
		{func(p *Plan) { p.ApprovalAfterWave = -1 }, "negative"},
		{func(p *Plan) { p.OnBreach = "panic" }, `on breach "panic"`},
	}
	for _, tt := range tests {
		p := good
		tt.mod(&p)
		err := p.Validate()
		if err == nil || !errors.Is(err, tufota.ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Validate() = %v, want EInvalid containing %q", err, tt.want)
		}
	}
}

func TestPlanJSON(t *testing.T) {
	t.Parallel()
	p := basePlan(t)
	p.MaxFailures = intp(3)
	p.ApprovalAfterWave = 1
	p.Window = mustWindow(t, "Mon-Fri 01:00-05:00 Europe/Berlin")
	p.OnBreach = BreachAbort
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"waves":["5%","25%","100%"],"soak":"30m0s","min_reports":10,"max_failure_rate":0.05,"max_failures":3,"device_timeout":"2h0m0s","approval_after_wave":1,"window":"Mon-Fri 01:00-05:00 Europe/Berlin","on_breach":"abort"}`
	if string(b) != want {
		t.Fatalf("json = %s\nwant   %s", b, want)
	}
	var back Plan
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !back.Window.Equal(p.Window) || *back.MaxFailures != 3 || back.Soak != p.Soak || back.DeviceTimeout != p.DeviceTimeout ||
		!reflect.DeepEqual(back.Waves, p.Waves) || back.OnBreach != p.OnBreach || back.ApprovalAfterWave != 1 || back.MinReports != 10 {
		t.Fatalf("round trip = %+v, want %+v", back, p)
	}
	// No window, no cap: both omitted.
	p2 := basePlan(t)
	b, _ = json.Marshal(p2)
	if strings.Contains(string(b), "window") || strings.Contains(string(b), "max_failures") {
		t.Fatalf("json = %s, want no window and no max_failures", b)
	}
	if err := json.Unmarshal([]byte(`{"waves":["5%"],"soak":"forever"}`), &back); err == nil {
		t.Fatal("bad soak accepted")
	}
}

func TestParseRate(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]float64{"5%": 0.05, "0.5%": 0.005, " 100% ": 1, "0%": 0} {
		if got, err := ParseRate(in); err != nil || got != want {
			t.Errorf("ParseRate(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for in, want := range map[string]string{"5": "write a percentage", "abc%": "not a percentage", "101%": "not between", "-1%": "not between", "NaN%": "not a percentage"} {
		if _, err := ParseRate(in); err == nil || !errors.Is(err, tufota.ErrInvalid) || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseRate(%q) error = %v, want %q", in, err, want)
		}
	}
}
