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
			Health{Cohort: 20, Members: 20, Offered: 20, Installed: 14, Silent: 6, WaveMembers: 10, WaveReports: 10},
			Pause, "wave 2: failure rate 30.0% (6 of 20 reports; 6 silent past device timeout 1h0m0s) above max 5.0%"},
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
