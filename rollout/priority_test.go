package rollout

import (
	"strings"
	"testing"

	"github.com/tufota/tufota"
)

// TestOverlappingRolloutsByPriority: two active rollouts that would offer
// the same devices different releases are refused at create (naming the
// other rollout and the devices) unless their priorities differ; then each
// shared device gets the higher-priority one, the others the lower, and
// both complete without waiting for each other's devices.
func TestOverlappingRolloutsByPriority(t *testing.T) {
	t.Parallel()
	testOverlappingRolloutsByPriority(t, nil)
}

func testOverlappingRolloutsByPriority(t *testing.T, open dbOpener) {
	e := newEnv(t, open)
	ctx := t.Context()
	ids := e.fleet(20, func(i int, d *Device) {
		if i%4 == 0 {
			d.Tags = []string{"icu"}
		}
	})
	e.rels.add("pump-fw", "1.2.0", []string{"pump-b"})
	spec := Spec{Release: "pump-fw@1.1.0", Cohort: "hardware=pump-b", Waves: "50%,100%"}
	low := e.create(spec, "alice")
	if err := e.svc.Start(ctx, low.ID, "alice", ""); err != nil {
		t.Fatal(err)
	}
	safety := Spec{Release: "pump-fw@1.2.0", Cohort: "tag:icu", Waves: "100%"}
	_, err := e.svc.CreateRollout(ctx, safety, "bob")
	wantCode(t, err, tufota.EConflict, "cohort overlaps active rollout "+low.ID+" (pump-fw@1.1.0 to devices hardware=pump-b, running, priority 0): 5 devices in both, e.g. pump-000, pump-004, pump-008")
	if !strings.Contains(err.Error(), "give one a higher --priority") {
		t.Errorf("err = %v", err)
	}
	safety.Priority = 2000
	_, err = e.svc.CreateRollout(ctx, safety, "bob")
	wantCode(t, err, tufota.EInvalid, "priority 2000 is not between 0 and 1000")
	safety.Priority = 10
	high := e.create(safety, "bob")
	if len(high.Warnings) != 1 || !strings.Contains(high.Warnings[0], "5 devices in both, e.g. pump-000, pump-004, pump-008, go to this rollout (the higher priority)") {
		t.Fatalf("warnings = %q", high.Warnings)
	}
	if high.Plan.Priority != 10 {
		t.Fatalf("plan priority = %d", high.Plan.Priority)
	}
	if err := e.svc.Start(ctx, high.ID, "bob", ""); err != nil {
		t.Fatal(err)
	}
	s := e.sim(ids, nil)
	for range 10 {
		s.poll()
		e.tick()
		if e.status(low.ID).State == Completed && e.status(high.ID).State == Completed {
			break
		}
	}
	lo, hi := e.status(low.ID), e.status(high.ID)
	if lo.State != Completed || hi.State != Completed || lo.Health.Installed != 15 || hi.Health.Installed != 5 {
		t.Fatalf("low %s %+v %q; high %s %+v %q", lo.State, lo.Health, lo.Next, hi.State, hi.Health, hi.Next)
	}
	for i, id := range ids {
		want := low.ID
		if i%4 == 0 {
			want = high.ID
		}
		if s.offered[id] != want {
			t.Errorf("device %s got rollout %s, want %s", id, s.offered[id], want)
		}
	}
}
