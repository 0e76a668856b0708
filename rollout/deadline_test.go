package rollout

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/tufota/tufota"
)

func TestPlanRequired(t *testing.T) {
	t.Parallel()
	dl := time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		deadline time.Time
		now      time.Time
		want     bool
	}{
		{time.Time{}, dl, false},
		{dl, dl.Add(-time.Second), false},
		{dl, dl, true},
		{dl, dl.Add(time.Hour), true},
	} {
		if got := (Plan{Deadline: tc.deadline}).Required(tc.now); got != tc.want {
			t.Errorf("deadline %v at %v: required %v, want %v", tc.deadline, tc.now, got, tc.want)
		}
	}
	p := Plan{Waves: mustWaves(t, "100%"), MinReports: 1, DeviceTimeout: time.Hour, Deadline: dl}
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	var back Plan
	if err := json.Unmarshal(b, &back); err != nil || !back.Deadline.Equal(dl) {
		t.Fatalf("round trip %s: %v %v", b, back.Deadline, err)
	}
}

// TestDeadlineTurnsOptionalIntoRequired: before the rollout's deadline
// the offer is optional, from it on required, and the offer says when.
func TestDeadlineTurnsOptionalIntoRequired(t *testing.T) {
	t.Parallel()
	testDeadlineTurnsOptionalIntoRequired(t, nil)
}

func testDeadlineTurnsOptionalIntoRequired(t *testing.T, open dbOpener) {
	e := newEnv(t, open)
	ctx := t.Context()
	e.fleet(2, nil)
	spec := Spec{Release: "pump-fw@1.1.0", Cohort: "hardware=pump-b", Waves: "100%", Deadline: "2026-03-02T10:00:00+01:00"}
	_, err := e.svc.CreateRollout(ctx, Spec{Release: spec.Release, Cohort: spec.Cohort, Waves: spec.Waves, Deadline: "tomorrow"}, "alice")
	wantCode(t, err, tufota.EInvalid, `deadline "tomorrow" is not an RFC 3339 time`)
	r := e.create(spec, "alice")
	if err := e.svc.Start(ctx, r.ID, "alice", ""); err != nil {
		t.Fatal(err)
	}
	// The clock starts at 09:00 UTC: one hour before the deadline.
	dl := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	e.clock.Advance(-time.Hour)
	a, err := e.svc.Assignment(ctx, Query{DeviceID: "pump-000"})
	if err != nil || a == nil || a.Required || a.Deadline == nil || !a.Deadline.Equal(dl) {
		t.Fatalf("before the deadline: %+v %v", a, err)
	}
	e.clock.Advance(time.Hour)
	for _, id := range []string{"pump-000", "pump-001"} {
		a, err := e.svc.Assignment(ctx, Query{DeviceID: id})
		if err != nil || a == nil || !a.Required {
			t.Fatalf("%s at the deadline: %+v %v", id, a, err)
		}
	}
}
