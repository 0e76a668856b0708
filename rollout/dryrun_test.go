package rollout

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestPlanWaves(t *testing.T) {
	t.Parallel()
	cohort := make([]string, 200)
	for i := range cohort {
		cohort[i] = fmt.Sprintf("dev-%03d", i)
	}
	for _, tc := range []struct {
		waves string
		n     int
		want  []int
	}{
		{"5%,25%,100%", 200, []int{10, 40, 150}},
		{"1,10,all", 200, []int{1, 9, 190}},
		{"50%,100%", 3, []int{2, 1}},
		{"10%,100%", 0, []int{0, 0}},
	} {
		p := Plan{Waves: mustWaves(t, tc.waves)}
		got := PlanWaves("ro-7", p, cohort[:tc.n])
		var seen []string
		for i, w := range got {
			if len(w) != tc.want[i] {
				t.Errorf("%s over %d: wave %d has %d devices, want %d", tc.waves, tc.n, i+1, len(w), tc.want[i])
			}
			seen = append(seen, w...)
		}
		slices.Sort(seen)
		if !slices.Equal(seen, cohort[:tc.n]) && tc.n > 0 {
			t.Errorf("%s over %d: the waves do not cover the cohort exactly once", tc.waves, tc.n)
		}
		// The controller's own cutoffs put each device in the same wave.
		sizes := Sizes(p.Waves, tc.n)
		prev := Cutoff{}
		var cutoffs []Cutoff
		for i, w := range p.Waves {
			prev = NextCutoff("ro-7", cohort[:tc.n], sizes[i], w.BasisPoints == 10000, prev)
			cutoffs = append(cutoffs, prev)
		}
		for i, w := range got {
			for _, id := range w {
				if WaveOf(cutoffs, KeyOf("ro-7", id)) != i {
					t.Fatalf("%s: %s planned in wave %d, the controller puts it elsewhere", tc.waves, id, i+1)
				}
			}
		}
	}
}

// TestDryRun: a draft's plan lists which devices fall into each wave (and
// they are the ones its waves then offer), how many are pinned, already on
// the release, on other hardware or owned by another rollout, and whether
// the window is open; a spec not yet created gets the counts.
func TestDryRun(t *testing.T) {
	t.Parallel()
	testDryRun(t, nil)
}

func testDryRun(t *testing.T, open dbOpener) {
	e := newEnv(t, open)
	ctx := t.Context()
	ids := e.fleet(24, func(i int, d *Device) {
		switch {
		case i < 4:
			d.Tags = []string{"icu"}
		case i < 6:
			d.Version = "1.1.0"
		case i == 6:
			d.Hardware = "pump-x"
		case i < 10:
			d.Attrs["site"] = "south"
		}
	})
	if _, err := e.svc.CreateCohort(ctx, "icu", "tag:icu", "alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.SetPinWith(ctx, Pin{Kind: PinCohort, Name: "icu", Version: "1.0.*", Reason: "validated"}, "it", nil); err != nil {
		t.Fatal(err)
	}
	other := e.create(Spec{Release: "pump-fw@1.1.0", Cohort: "site=south", Waves: "100%"}, "bob")
	if err := e.svc.Start(ctx, other.ID, "bob", ""); err != nil {
		t.Fatal(err)
	}
	e.rels.add("pump-fw", "1.2.0", []string{"pump-b"})
	spec := Spec{Release: "pump-fw@1.2.0", Cohort: "site in (north,south)", Waves: "10%,50%,100%", Window: "Mon-Fri 01:00-05:00 UTC"}
	// 2026-03-02 09:00 UTC is a Monday: the window opens on Tuesday 01:00.
	dr, err := e.svc.PlanSpec(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	want := func(dr DryRun) {
		t.Helper()
		if dr.Matched != 24 || dr.Cohort != 16 || dr.Pinned.Count != 4 || dr.OnRelease.Count != 0 || dr.Newer.Count != 0 ||
			dr.OtherHardware.Count != 1 || dr.InOtherRollout.Count != 3 {
			t.Fatalf("dry run %+v", dr)
		}
		if dr.WindowOpen || dr.WindowOpensAt == nil || !dr.WindowOpensAt.Equal(time.Date(2026, 3, 3, 1, 0, 0, 0, time.UTC)) {
			t.Fatalf("window: open %v, opens at %v", dr.WindowOpen, dr.WindowOpensAt)
		}
		if !slices.Equal(dr.Pinned.Devices, ids[:4]) || !slices.Equal(dr.OtherHardware.Devices, []string{ids[6]}) {
			t.Fatalf("pinned %v, other hardware %v", dr.Pinned.Devices, dr.OtherHardware.Devices)
		}
		if n := []int{dr.Waves[0].New, dr.Waves[1].New, dr.Waves[2].New}; !slices.Equal(n, []int{2, 6, 8}) {
			t.Fatalf("waves %+v", dr.Waves)
		}
	}
	want(dr)
	if dr.RolloutID != "" || dr.Waves[0].Devices != nil {
		t.Fatalf("a spec's dry run names devices: %+v", dr.Waves)
	}
	// Devices 4, 5 run 1.1.0: on another release, they are in the cohort
	// of 1.2.0. A spec of 1.1.0 would find them on it.
	dr11, err := e.svc.PlanSpec(ctx, Spec{Release: "pump-fw@1.1.0", Cohort: "site=north", Waves: "100%"})
	if err != nil || dr11.OnRelease.Count != 2 || !slices.Equal(dr11.OnRelease.Devices, ids[4:6]) {
		t.Fatalf("dry run of 1.1.0: %+v %v", dr11.OnRelease, err)
	}

	spec.Window, spec.Cohort = "", "site=north" // the south devices are owned by the other rollout
	r := e.create(spec, "alice")
	dr, err = e.svc.PlanRollout(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if dr.RolloutID != r.ID || !dr.WindowOpen || len(dr.Waves[0].Devices) != 2 || len(dr.Waves[2].Devices) != 8 {
		t.Fatalf("draft dry run %+v", dr)
	}
	// The first wave the controller starts offers exactly the planned ones.
	if err := e.svc.Start(ctx, r.ID, "alice", ""); err != nil {
		t.Fatal(err)
	}
	var offered []string
	for _, id := range ids {
		a, err := e.svc.Assignment(ctx, Query{DeviceID: id})
		if err != nil {
			t.Fatal(err)
		}
		if a != nil && a.RolloutID == r.ID {
			offered = append(offered, id)
		}
	}
	if !slices.Equal(offered, dr.Waves[0].Devices) {
		t.Fatalf("wave 1 offered %v, planned %v", offered, dr.Waves[0].Devices)
	}
	_, err = e.svc.PlanRollout(ctx, "nope")
	if err == nil || !strings.Contains(err.Error(), "nope") {
		t.Fatalf("PlanRollout(nope) = %v", err)
	}
	_, err = e.svc.PlanSpec(ctx, Spec{Release: "pump-fw@1.2.0", Cohort: "hardware=pump-b", Waves: "0%"})
	if err == nil {
		t.Fatal("PlanSpec with a bad wave plan succeeded")
	}
}
