package clinical

import (
	"context"
	"testing"
	"time"

	"github.com/tufota/tufota/e2e"
)

// TestDeadlineEndToEnd: the real client sees a rollout's offer as optional
// before its deadline and as required from it on.
func TestDeadlineEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("SKIPPING deadline end-to-end test: -short")
	}
	h := e2e.StartWith(t, "--controller-interval", "100ms")
	fw, _ := h.WriteFirmware("s.bin", 2048)
	h.MustCLI("release", "push", fw, "--name", "s-fw", "--version", "1.1.0", "--hardware", "pump-s")
	fleet, devs := enrollTagged(t, h, "pump-s", "safety", 1)
	deadline := time.Now().Add(8 * time.Second).UTC().Truncate(time.Second) // room for the create and start on a loaded machine
	id := h.CreateRollout("--release", "s-fw@1.1.0", "--cohort", "hardware=pump-s", "--waves", "100%", "--deadline", deadline.Format(time.RFC3339))
	h.MustCLI("rollout", "start", id)
	c, err := deviceClient(fleet, devs[0])
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sawOptional := false
	for ctx.Err() == nil {
		asked := time.Now()
		upd, err := c.Check(ctx)
		answered := time.Now()
		if err != nil {
			t.Fatal(err)
		}
		if upd == nil {
			time.Sleep(50 * time.Millisecond) // the controller has not started the wave yet
			continue
		}
		if !upd.Deadline.Equal(deadline) {
			t.Fatalf("update deadline %v, want %v", upd.Deadline, deadline)
		}
		if !upd.Required {
			// The server and the test share the clock: asked after the
			// deadline, the answer must say required.
			if !asked.Before(deadline) {
				t.Fatalf("update still optional when asked at %v, after the deadline %v", asked, deadline)
			}
			sawOptional = true
			time.Sleep(100 * time.Millisecond)
			continue
		}
		if !sawOptional || answered.Before(deadline) {
			t.Fatalf("the update was required before the deadline %v (answered %v, optional seen %v)", deadline, answered, sawOptional)
		}
		return
	}
	t.Fatal("the update never became required")
}
