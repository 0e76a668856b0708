package rollout

import (
	"sync"
	"testing"

	"github.com/tufota/tufota"
)

func TestDeviceIDCaseVariants(t *testing.T) {
	t.Parallel()
	testDeviceIDCaseVariants(t, sqliteDB)
}

// testDeviceIDCaseVariants registers case variants of one device ID, one
// after the other and then all at once: exactly one of them is registered,
// the others are conflicts; the registered ID itself still re-registers.
func testDeviceIDCaseVariants(t *testing.T, open dbOpener) {
	e := newEnv(t, open)
	ctx := t.Context()
	if err := e.svc.RegisterDevice(ctx, Device{ID: "dev1", Hardware: "pump-b"}, "alice"); err != nil {
		t.Fatal(err)
	}
	wantCode(t, e.svc.RegisterDevice(ctx, Device{ID: "DEV1", Hardware: "pump-b"}, "mallory"), tufota.EConflict, "dev1")
	if err := e.svc.RegisterDevice(ctx, Device{ID: "dev1", Hardware: "pump-c"}, "alice"); err != nil {
		t.Fatalf("re-register dev1: %v", err)
	}

	variants := []string{"race-a", "RACE-A", "Race-A", "rAcE-a", "RACE-a", "race-A", "rACE-A", "Race-a"}
	errs := make([]error, len(variants))
	var wg sync.WaitGroup
	for i, id := range variants {
		wg.Go(func() { errs[i] = e.svc.RegisterDevice(ctx, Device{ID: id, Hardware: "pump-b"}, "alice") })
	}
	wg.Wait()
	ok := 0
	for i, err := range errs {
		switch {
		case err == nil:
			ok++
		case tufota.ErrorCode(err) != tufota.EConflict:
			t.Errorf("register %s: %v, want success or a conflict", variants[i], err)
		}
	}
	if ok != 1 {
		t.Errorf("%d case variants of race-a registered at once, want exactly 1 (errors %v)", ok, errs)
	}
}
