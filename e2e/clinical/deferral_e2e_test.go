package clinical

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/tufota/tufota/client"
	"github.com/tufota/tufota/e2e"
	"github.com/tufota/tufota/internal/testenv"
	"github.com/tufota/tufota/rollout"
)

// TestDeferralEndToEnd: 30% of a fleet (the real client against the real
// server) say "not now" through Client.Defer and then stay quiet, far past
// the rollout's 1s device timeout. The server counts them deferred, not
// silent: the rollout neither pauses nor completes until they stop
// deferring and install, and then completes. On SQLite and PostgreSQL.
func TestDeferralEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("SKIPPING deferral end-to-end test: -short")
	}
	t.Run("sqlite", func(t *testing.T) {
		testDeferralEndToEnd(t, e2e.StartWith(t, "--controller-interval", "100ms"))
	})
	t.Run("postgres", func(t *testing.T) {
		pg := testenv.Postgres(t)
		testDeferralEndToEnd(t, e2e.StartFull(t, nil, []string{"--db", pg}, "--controller-interval", "100ms"))
	})
}

func testDeferralEndToEnd(t *testing.T, h *e2e.Harness) {
	fw, _ := h.WriteFirmware("e.bin", 2048)
	h.MustCLI("release", "push", fw, "--name", "e-fw", "--version", "1.1.0", "--hardware", "pump-e")
	fleet, devs := enrollFleet(t, h, "pump-e", 20, 0, 0, 5)
	deferrers, others := devs[:6], devs[6:]
	id := h.CreateRollout("--release", "e-fw@1.1.0", "--cohort", "hardware=pump-e", "--waves", "50%,100%",
		"--device-timeout", "1s", "--max-deferral", "72h", "--max-failure-rate", "10%")
	h.MustCLI("rollout", "start", id)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const timeout = time.Second // the rollout's device timeout
	deferredAt := map[string]bool{}
	clients := map[string]*client.Client{} // the deferrers' own, until released
	var allDeferred time.Time              // when the server first counted all six deferred
	released := false
	var st rollout.Status
	for ctx.Err() == nil {
		fleet.RunOnce(ctx, others)
		if released {
			fleet.RunOnce(ctx, deferrers)
		}
		for _, d := range deferrers {
			if released {
				continue
			}
			if deferredAt[d.ID] {
				continue // quiet until its deferral ends
			}
			c, ok := clients[d.ID]
			if !ok {
				var err error
				if c, err = deviceClient(fleet, d); err != nil {
					t.Fatal(err)
				}
				clients[d.ID] = c
			}
			upd, err := c.Check(ctx)
			if err != nil || upd == nil {
				continue // not offered yet (a later wave)
			}
			if err := c.Defer(ctx, upd, "therapy in progress", time.Now().Add(time.Hour)); err != nil {
				t.Fatalf("defer %s: %v", d.ID, err)
			}
			deferredAt[d.ID] = true
		}
		st = h.RolloutStatus(id)
		if st.State != rollout.Running {
			break
		}
		if !released && st.Health.Deferred == len(deferrers) {
			if allDeferred.IsZero() {
				allDeferred = time.Now()
			}
			// Three device timeouts later, the deferred devices are still
			// neither silent nor failed and the rollout waits for them.
			if time.Since(allDeferred) > 3*timeout {
				if st.Health.Silent != 0 || st.Health.Failed != 0 || !strings.Contains(st.Next, "(6 deferred)") {
					t.Fatalf("while deferred: health %+v, next %q", st.Health, st.Next)
				}
				out := h.MustCLI("rollout", "status", id)
				if !strings.Contains(out, "DEFERRED") {
					t.Errorf("rollout status does not show deferrals:\n%s", out)
				}
				hist := h.MustCLI("rollout", "history", id)
				if !strings.Contains(hist, "deferred until") || !strings.Contains(hist, "therapy in progress") {
					t.Errorf("rollout history does not show the deferrals:\n%s", hist)
				}
				released = true
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	if st.State != rollout.Completed || !released {
		t.Fatalf("rollout = %s (released %v), health %+v, next %q; want completed after the deferrals", st.State, released, st.Health, st.Next)
	}
	if st.Health.Installed != len(devs) {
		t.Errorf("health %+v: want all %d installed", st.Health, len(devs))
	}
	var hist rollout.History
	if err := json.Unmarshal([]byte(h.MustCLI("rollout", "history", id, "-o", "json")), &hist); err != nil {
		t.Fatal(err)
	}
	for _, e := range hist.Events {
		if e.Kind == rollout.EventPaused {
			t.Fatalf("paused: %s", e.Reason)
		}
	}
	n := 0
	for _, d := range hist.Devices {
		if d.DeferredSince != nil {
			n++
		}
	}
	if n != len(deferrers) {
		t.Errorf("history shows %d devices that deferred, want %d", n, len(deferrers))
	}
	// The device's report is audited with its reason and until.
	audit := h.MustCLI("audit", "log", "--since", "1h", "--action", "device.report", "-o", "json")
	if !strings.Contains(audit, "therapy in progress") || !strings.Contains(audit, "defer_until") {
		t.Errorf("audit log lacks the deferral:\n%.2000s", audit)
	}
}
