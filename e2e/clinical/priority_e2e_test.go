package clinical

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tufota/tufota/e2e"
	"github.com/tufota/tufota/internal/testenv"
	"github.com/tufota/tufota/rollout"
)

// TestPriorityEndToEnd: two overlapping rollouts through the CLI and the
// real client: the second is refused (naming the first and the shared
// devices), then accepted with a higher --priority; each shared device
// gets the higher-priority release, the others the lower one, and both
// rollouts complete. On SQLite and PostgreSQL.
func TestPriorityEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("SKIPPING priority end-to-end test: -short")
	}
	t.Run("sqlite", func(t *testing.T) {
		testPriorityEndToEnd(t, e2e.StartWith(t, "--controller-interval", "100ms"))
	})
	t.Run("postgres", func(t *testing.T) {
		pg := testenv.Postgres(t)
		testPriorityEndToEnd(t, e2e.StartFull(t, nil, []string{"--db", pg}, "--controller-interval", "100ms"))
	})
}

func testPriorityEndToEnd(t *testing.T, h *e2e.Harness) {
	for _, v := range []string{"1.1.0", "1.2.0"} {
		fw, _ := h.WriteFirmware("q"+v+".bin", 2048)
		h.MustCLI("release", "push", fw, "--name", "q-fw", "--version", v, "--hardware", "pump-q")
	}
	fleet, icu := enrollTagged(t, h, "pump-q", "icu", 4, "tag:icu")
	_, ward := enrollTagged(t, h, "pump-q", "ward", 6)
	devs := append(slices.Clone(icu), ward...)
	low := h.CreateRollout("--release", "q-fw@1.1.0", "--cohort", "hardware=pump-q", "--waves", "100%")
	h.MustCLI("rollout", "start", low)
	args := []string{"--release", "q-fw@1.2.0", "--cohort", "tag:icu", "--waves", "100%"}
	if out, err := h.RunCLI(append([]string{"rollout", "create"}, args...)...); err == nil || !strings.Contains(err.Error(), "cohort overlaps active rollout "+low) || !strings.Contains(err.Error(), "icu-0001") {
		t.Fatalf("overlapping create: %v %s", err, out)
	}
	high := h.CreateRollout(append(args, "--priority", "10")...)
	h.MustCLI("rollout", "start", high)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var lo, hi rollout.Status
	fleet.RunUntil(ctx, devs, 50*time.Millisecond, func(context.Context) bool {
		lo, hi = h.RolloutStatus(low), h.RolloutStatus(high)
		return lo.State != rollout.Running && hi.State != rollout.Running
	})
	if lo.State != rollout.Completed || hi.State != rollout.Completed || lo.Health.Installed != 6 || hi.Health.Installed != 4 {
		t.Fatalf("low %s %+v; high %s %+v", lo.State, lo.Health, hi.State, hi.Health)
	}
	for _, d := range icu {
		if d.Version != "1.2.0" {
			t.Errorf("icu device %s runs %s, want 1.2.0 (the higher priority)", d.ID, d.Version)
		}
	}
	for _, d := range ward {
		if d.Version != "1.1.0" {
			t.Errorf("ward device %s runs %s, want 1.1.0", d.ID, d.Version)
		}
	}
}
