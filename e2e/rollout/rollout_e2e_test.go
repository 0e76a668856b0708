package rollout

import (
	"context"
	"encoding/json"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tufota/tufota/apiclient"
	"github.com/tufota/tufota/audit"
	"github.com/tufota/tufota/e2e"
	"github.com/tufota/tufota/internal/sim"
	"github.com/tufota/tufota/rollout"
	"github.com/tufota/tufota/server"
)

// runFleet polls until the rollout leaves running (or a minute passes).
func runFleet(t *testing.T, h *e2e.Harness, fleet *sim.Fleet, devs []*sim.Device, id string) rollout.Status {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var st rollout.Status
	fleet.RunUntil(ctx, devs, 50*time.Millisecond, func(context.Context) bool {
		st = h.RolloutStatus(id)
		return st.State != rollout.Running
	})
	return st
}

// TestRolloutEndToEnd takes a release to 200 simulated devices (the real
// client against the real server) in waves of 5%, 25% and 100%.
func TestRolloutEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("SKIPPING 200-device rollout end-to-end test: -short")
	}
	h := e2e.StartWith(t, "--controller-interval", "100ms")
	fw, _ := h.WriteFirmware("pump.bin", 4096)
	h.MustCLI("release", "push", fw, "--name", "pump-fw", "--version", "1.1.0", "--hardware", "pump-a")

	t.Run("all healthy completes", func(t *testing.T) {
		fleet, devs := enrollFleet(t, h, "pump-a", 200, 0, 0, 7)
		id := h.CreateRollout("--release", "pump-fw@1.1.0", "--cohort", "hardware=pump-a", "--waves", "5%,25%,100%", "--max-failure-rate", "5%")
		h.MustCLI("rollout", "start", id, "--reason", "e2e")
		st := runFleet(t, h, fleet, devs, id)
		if st.State != rollout.Completed {
			t.Fatalf("rollout state = %s (%s), want completed", st.State, st.Next)
		}
		for _, d := range devs {
			if d.Version != "1.1.0" {
				t.Fatalf("device %s runs %s, want 1.1.0", d.ID, d.Version)
			}
		}
		var hist rollout.History
		if err := json.Unmarshal([]byte(h.MustCLI("rollout", "history", id, "-o", "json")), &hist); err != nil {
			t.Fatal(err)
		}
		waves := 0
		for _, e := range hist.Events {
			if e.Kind == rollout.EventStarted || e.Kind == rollout.EventWaveStarted {
				waves++
			}
		}
		if waves != 3 || len(hist.Waves) != 3 {
			t.Fatalf("history shows %d wave starts and %d waves, want 3 and 3", waves, len(hist.Waves))
		}
		if sizes := []int{hist.Waves[0].Size, hist.Waves[1].Size, hist.Waves[2].Size}; sizes[0] != 10 || sizes[1] != 50 || sizes[2] != 200 {
			t.Fatalf("wave sizes = %v, want [10 50 200]", sizes)
		}
	})

	t.Run("half failing pauses in wave 1", func(t *testing.T) {
		fw2, _ := h.WriteFirmware("pump.bin", 4096)
		h.MustCLI("release", "push", fw2, "--name", "pump-fw", "--version", "1.2.0", "--hardware", "pump-b")
		fleet, devs := enrollFleet(t, h, "pump-b", 200, 0.5, 0, 11)
		id := h.CreateRollout("--release", "pump-fw@1.2.0", "--cohort", "hardware=pump-b", "--waves", "5%,25%,100%", "--min-reports", "10", "--max-failure-rate", "5%")
		h.MustCLI("rollout", "start", id)
		st := runFleet(t, h, fleet, devs, id)
		if st.State != rollout.Paused {
			t.Fatalf("rollout state = %s, want paused", st.State)
		}
		var hist rollout.History
		if err := json.Unmarshal([]byte(h.MustCLI("rollout", "history", id, "-o", "json")), &hist); err != nil {
			t.Fatal(err)
		}
		last := hist.Events[len(hist.Events)-1]
		if last.Kind != rollout.EventPaused || !strings.Contains(last.Reason, "wave 1") || !strings.Contains(last.Reason, "5.0%") {
			t.Fatalf("last event = %s %q, want a pause naming wave 1, the rate and the 5.0%% threshold", last.Kind, last.Reason)
		}
		if st.Waves[1].Offered != 0 || st.Waves[2].Offered != 0 {
			t.Fatalf("devices outside wave 1 were offered the release: %+v", st.Waves)
		}
		offered := 0
		for _, d := range hist.Devices {
			if d.Wave != 1 {
				t.Fatalf("device %s in wave %d was offered the release", d.DeviceID, d.Wave)
			}
			offered++
		}
		if offered != st.Waves[0].Size {
			t.Fatalf("%d devices offered, wave 1 has %d", offered, st.Waves[0].Size)
		}
	})
}

// enrollFleet pushes a release for hw and enrolls n devices on 1.0.0.
func enrollFleet(t *testing.T, h *e2e.Harness, hw string, n int, failRate, silentRate float64, seed uint64) (*sim.Fleet, []*sim.Device) {
	t.Helper()
	var enroll server.EnrollTokenResponse
	if err := json.Unmarshal([]byte(h.MustCLI("device", "enroll-token", "--hardware", hw, "-o", "json")), &enroll); err != nil {
		t.Fatal(err)
	}
	devs, err := sim.NewDevices(t.TempDir(), hw, hw, "1.0.0", n, failRate, silentRate, seed)
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.EnrollAll(context.Background(), apiclient.New(h.URL, enroll.EnrollToken, apiclient.WithHTTPClient(h.HC)), devs); err != nil {
		t.Fatal(err)
	}
	return &sim.Fleet{ServerURL: h.URL, Root: h.Root, HTTP: h.HC, Log: slog.New(slog.DiscardHandler)}, devs
}

func TestRolloutGatesEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("SKIPPING rollout gates end-to-end test: -short")
	}
	h := e2e.StartWith(t, "--controller-interval", "100ms")

	t.Run("silent devices past the device timeout count as failed", func(t *testing.T) {
		fw, _ := h.WriteFirmware("c.bin", 2048)
		h.MustCLI("release", "push", fw, "--name", "c-fw", "--version", "1.1.0", "--hardware", "pump-c")
		fleet, devs := enrollFleet(t, h, "pump-c", 20, 0, 1, 3)
		id := h.CreateRollout("--release", "c-fw@1.1.0", "--cohort", "hardware=pump-c", "--waves", "50%,100%", "--device-timeout", "1s", "--max-failure-rate", "10%")
		h.MustCLI("rollout", "start", id)
		st := runFleet(t, h, fleet, devs, id)
		if st.State != rollout.Paused {
			t.Fatalf("rollout = %s, wave 1 %+v; want paused", st.State, st.Waves[0])
		}
		var hist rollout.History
		if err := json.Unmarshal([]byte(h.MustCLI("rollout", "history", id, "-o", "json")), &hist); err != nil {
			t.Fatal(err)
		}
		last := hist.Events[len(hist.Events)-1]
		if last.Kind != rollout.EventPaused || last.Actor != rollout.ControllerActor || !strings.Contains(last.Reason, "silent past device timeout 1s") {
			t.Fatalf("last event = %s by %s %q; want the controller pausing on devices silent past the timeout", last.Kind, last.Actor, last.Reason)
		}
	})

	t.Run("approval gate needs a different user", func(t *testing.T) {
		fw, _ := h.WriteFirmware("d.bin", 2048)
		h.MustCLI("release", "push", fw, "--name", "d-fw", "--version", "1.1.0", "--hardware", "pump-d")
		fleet, devs := enrollFleet(t, h, "pump-d", 20, 0, 0, 3)
		id := h.CreateRollout("--release", "d-fw@1.1.0", "--cohort", "hardware=pump-d", "--waves", "10%,100%", "--approval-required-after-wave", "1")
		h.MustCLI("rollout", "start", id)
		st := runFleet(t, h, fleet, devs, id)
		if st.State != rollout.WaitingApproval {
			t.Fatalf("rollout = %s, want waiting-approval after wave 1", st.State)
		}
		if _, err := h.RunCLI("rollout", "approve", id); err == nil {
			t.Fatal("the creator approved their own rollout")
		}
		var olivia struct {
			Token string `json:"token"`
		}
		h.MustCLI("user", "create", "olivia", "--role", "operator")
		if err := json.Unmarshal([]byte(h.MustCLI("token", "create", "--name", "olivia", "--role", "operator", "--user", "olivia", "-o", "json")), &olivia); err != nil {
			t.Fatal(err)
		}
		h.MustCLI("rollout", "approve", id, "--token", olivia.Token, "--reason", "wave 1 clean")
		if st := runFleet(t, h, fleet, devs, id); st.State != rollout.Completed {
			t.Fatalf("after approval: %s, want completed", st.State)
		}
		var hist rollout.History
		if err := json.Unmarshal([]byte(h.MustCLI("rollout", "history", id, "-o", "json")), &hist); err != nil {
			t.Fatal(err)
		}
		approved := false
		for _, e := range hist.Events {
			approved = approved || (e.Kind == rollout.EventApproved && e.Actor == "olivia")
		}
		if !approved {
			t.Fatalf("history does not record olivia's approval: %+v", hist.Events)
		}
		// The audit export lists the release and every rollout action
		// with the right actor, and verifies.
		export := filepath.Join(t.TempDir(), "audit.json")
		h.MustCLI("audit", "export", "--format", "json", "--out", export)
		h.MustCLI("audit", "verify", "--export", export)
		var entries []audit.Entry
		if err := json.Unmarshal([]byte(h.MustCLI("audit", "log", "--object", "rollout/"+id, "-o", "json")), &entries); err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for _, e := range entries {
			seen[e.Actor+" "+e.Action+" "+e.Outcome] = true
		}
		for _, want := range []string{
			"admin rollout.create ok", "admin rollout.action ok", "admin rollout.action denied",
			"olivia rollout.action ok", "olivia rollout.approved ok", "controller rollout.completed ok",
		} {
			if !seen[want] {
				t.Errorf("audit log of rollout %s lacks %q; has %v", id, want, seen)
			}
		}
	})

	t.Run("bad input", func(t *testing.T) {
		tests := []struct {
			args []string
			want string
		}{
			{[]string{"--release", "nope@1.0.0", "--cohort", "hardware=pump-d", "--waves", "100%"}, "nope@1.0.0"},
			{[]string{"--release", "d-fw@1.1.0", "--cohort", "hardware=nothing", "--waves", "100%"}, "no device"},
			{[]string{"--release", "d-fw@1.1.0", "--cohort", "hardware=pump-d", "--waves", "50%,10%"}, "not increasing"},
			{[]string{"--release", "d-fw@1.1.0", "--cohort", "hardware=pump-d", "--waves", "150%"}, "150%"},
			{[]string{"--release", "d-fw@1.1.0", "--cohort", "hardware=pump-d", "--waves", "100%", "--window", "Funday 25:00-26:00"}, "window"},
		}
		for _, tc := range tests {
			_, err := h.RunCLI(append([]string{"rollout", "create"}, tc.args...)...)
			if err == nil || !strings.Contains(strings.ToLower(err.Error()), strings.ToLower(tc.want)) {
				t.Errorf("rollout create %v: %v, want an error about %q", tc.args, err, tc.want)
			}
		}
	})
}
