package clinical

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/tufota/tufota/e2e"
	"github.com/tufota/tufota/internal/sim"
	"github.com/tufota/tufota/internal/testenv"
	"github.com/tufota/tufota/rollout"
)

// TestPinEndToEnd: hospital IT pins a cohort to its validated line with
// `tufota pin set`; a rollout of a release outside the line warns at
// create that its cohort is mostly pinned, never offers the pinned devices
// the release (the real client asks them every poll), lists them as pinned
// in rollout status, and completes with the others. The pin is audited,
// listed and removed. On SQLite and PostgreSQL.
func TestPinEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("SKIPPING pin end-to-end test: -short")
	}
	t.Run("sqlite", func(t *testing.T) {
		testPinEndToEnd(t, e2e.StartWith(t, "--controller-interval", "100ms"))
	})
	t.Run("postgres", func(t *testing.T) {
		pg := testenv.Postgres(t)
		testPinEndToEnd(t, e2e.StartFull(t, nil, []string{"--db", pg}, "--controller-interval", "100ms"))
	})
}

func testPinEndToEnd(t *testing.T, h *e2e.Harness) {
	fw, _ := h.WriteFirmware("p.bin", 2048)
	h.MustCLI("release", "push", fw, "--name", "p-fw", "--version", "1.1.0", "--hardware", "pump-p")
	fleet, pinned := enrollTagged(t, h, "pump-p", "icu", 6, "tag:icu")
	_, free := enrollTagged(t, h, "pump-p", "ward", 4)
	devs := append(slices.Clone(pinned), free...)
	h.MustCLI("cohort", "create", "icu", "--selector", "tag:icu")

	// Bad input gets a clear error.
	if out, err := h.RunCLI("pin", "set", "--cohort", "icu", "--device", devs[0].ID, "--version", "1.0.*", "--reason", "x"); err == nil || !strings.Contains(err.Error()+out, "not both") {
		t.Fatalf("pin set with both: %v %s", err, out)
	}
	if out, err := h.RunCLI("pin", "set", "--cohort", "icu", "--version", "1.0", "--reason", "x"); err == nil || !strings.Contains(err.Error()+out, "version pattern") {
		t.Fatalf("pin set 1.0: %v %s", err, out)
	}
	out := h.MustCLI("pin", "set", "--cohort", "icu", "--version", "1.0.*", "--reason", "validated by site IT")
	if !strings.Contains(out, "validated by site IT") {
		t.Fatalf("pin set: %s", out)
	}
	var pins []rollout.Pin
	if err := json.Unmarshal([]byte(h.MustCLI("pin", "list", "-o", "json")), &pins); err != nil || len(pins) != 1 || pins[0].Selector != "tag:icu" {
		t.Fatalf("pin list: %+v %v", pins, err)
	}

	created := h.MustCLI("rollout", "create", "--release", "p-fw@1.1.0", "--cohort", "hardware=pump-p", "--waves", "50%,100%")
	if !strings.Contains(created, "Warning: cohort mostly pinned: 6 of 10 devices that could take 1.1.0 are pinned outside it: 6 by pin on cohort icu to 1.0.* (validated by site IT)") {
		t.Fatalf("rollout create did not warn of the pins:\n%s", created)
	}
	var list []rollout.Rollout
	if err := json.Unmarshal([]byte(h.MustCLI("rollout", "list", "-o", "json")), &list); err != nil || len(list) != 1 {
		t.Fatalf("rollout list: %v %d", err, len(list))
	}
	id := list[0].ID
	// The dry run, before the start, of the spec and then of the draft.
	var specPlan, plan rollout.DryRun
	if err := json.Unmarshal([]byte(h.MustCLI("rollout", "plan", "--release", "p-fw@1.1.0", "--cohort", "hardware=pump-p", "--waves", "50%,100%", "-o", "json")), &specPlan); err != nil {
		t.Fatal(err)
	}
	if specPlan.Matched != 10 || specPlan.Cohort != 4 || specPlan.Pinned.Count != 6 || specPlan.Waves[0].New != 2 || specPlan.Waves[0].Devices != nil {
		t.Fatalf("plan of the spec: %+v", specPlan)
	}
	if err := json.Unmarshal([]byte(h.MustCLI("rollout", "plan", id, "-o", "json")), &plan); err != nil {
		t.Fatal(err)
	}
	if plan.RolloutID != id || plan.Cohort != 4 || plan.Pinned.Count != 6 || len(plan.Waves[0].Devices) != 2 || len(plan.Waves[1].Devices) != 2 {
		t.Fatalf("plan of the draft: %+v", plan)
	}
	text := h.MustCLI("rollout", "plan", id)
	if !strings.Contains(text, "pinned outside the release") || !strings.Contains(text, plan.Waves[0].Devices[0]) {
		t.Errorf("rollout plan:\n%s", text)
	}
	t.Logf("rollout plan %s:\n%s", id, text)
	if _, err := h.RunCLI("rollout", "plan", id, "--waves", "100%"); err == nil || !strings.Contains(err.Error(), "not both") {
		t.Errorf("rollout plan ID --waves: %v", err)
	}
	h.MustCLI("rollout", "start", id)
	st, results := runFleet(t, h, fleet, devs, id)
	status := map[string]string{}
	for _, r := range results {
		status[r.ID] = r.Status
	}
	if st.State != rollout.Completed || st.Health.Installed != 4 || st.Health.Pinned != 6 {
		t.Fatalf("rollout = %s, health %+v; want completed with 4 installed and 6 pinned", st.State, st.Health)
	}
	for _, d := range pinned {
		if d.Version != "1.0.0" || status[d.ID] == "installed" {
			t.Errorf("pinned device %s runs %s (%s)", d.ID, d.Version, status[d.ID])
		}
		if !slices.Contains(st.Pinned, d.ID) {
			t.Errorf("status does not list %s as pinned: %v", d.ID, st.Pinned)
		}
	}
	if text := h.MustCLI("rollout", "status", id); !strings.Contains(text, "6 devices kept from the release by pins") {
		t.Errorf("rollout status does not show the pinned devices:\n%s", text)
	}
	var hist rollout.History
	if err := json.Unmarshal([]byte(h.MustCLI("rollout", "history", id, "-o", "json")), &hist); err != nil {
		t.Fatal(err)
	}
	for _, d := range hist.Devices {
		if d.Wave == 1 && !slices.Contains(plan.Waves[0].Devices, d.DeviceID) {
			t.Errorf("device %s joined in wave 1, the plan put it in wave 2", d.DeviceID)
		}
		if slices.ContainsFunc(pinned, func(p *sim.Device) bool { return p.ID == d.DeviceID }) {
			t.Errorf("pinned device %s was offered the release: %+v", d.DeviceID, d)
		}
	}
	audit := h.MustCLI("audit", "log", "--since", "1h", "--action", "pin.set", "-o", "json")
	if !strings.Contains(audit, "pin/cohort/icu") || !strings.Contains(audit, "validated by site IT") {
		t.Errorf("audit log lacks the pin:\n%.2000s", audit)
	}
	h.MustCLI("pin", "remove", "--cohort", "icu")
	if out, err := h.RunCLI("pin", "remove", "--cohort", "icu"); err == nil || !strings.Contains(err.Error()+out, "no pin on cohort icu") {
		t.Fatalf("second pin remove: %v %s", err, out)
	}
	if audit := h.MustCLI("audit", "log", "--since", "1h", "--action", "pin.remove", "-o", "json"); !strings.Contains(audit, "pin/cohort/icu") {
		t.Errorf("audit log lacks the pin removal:\n%.2000s", audit)
	}
}
