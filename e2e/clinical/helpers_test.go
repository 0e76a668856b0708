package clinical

import (
	"context"
	"encoding/json"
	"log/slog"
	"testing"
	"time"

	"github.com/tufota/tufota/apiclient"
	"github.com/tufota/tufota/client"
	"github.com/tufota/tufota/e2e"
	"github.com/tufota/tufota/internal/sim"
	"github.com/tufota/tufota/rollout"
	"github.com/tufota/tufota/server"
)

// runFleet polls until the rollout leaves running (or three minutes pass)
// and returns its status and the devices' last results.
func runFleet(t *testing.T, h *e2e.Harness, fleet *sim.Fleet, devs []*sim.Device, id string) (rollout.Status, []sim.Result) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var st rollout.Status
	last := fleet.RunUntil(ctx, devs, 50*time.Millisecond, func(context.Context) bool {
		st = h.RolloutStatus(id)
		return st.State != rollout.Running
	})
	return st, last
}

// enrollFleet enrolls n devices hw-0001.. of hardware hw on 1.0.0.
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
	return newFleet(h), devs
}

// enrollTagged enrolls n devices prefix-0001.. of hardware hw with the
// enrollment attributes attrs.
func enrollTagged(t *testing.T, h *e2e.Harness, hw, prefix string, n int, attrs ...string) (*sim.Fleet, []*sim.Device) {
	t.Helper()
	args := []string{"device", "enroll-token", "--hardware", hw, "--name", "enroll-" + prefix, "-o", "json"}
	for _, a := range attrs {
		args = append(args, "--attr", a)
	}
	var enroll server.EnrollTokenResponse
	if err := json.Unmarshal([]byte(h.MustCLI(args...)), &enroll); err != nil {
		t.Fatal(err)
	}
	devs, err := sim.NewDevices(t.TempDir(), prefix, hw, "1.0.0", n, 0, 0, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.EnrollAll(context.Background(), apiclient.New(h.URL, enroll.EnrollToken, apiclient.WithHTTPClient(h.HC)), devs); err != nil {
		t.Fatal(err)
	}
	return newFleet(h), devs
}

func newFleet(h *e2e.Harness) *sim.Fleet {
	return &sim.Fleet{ServerURL: h.URL, Root: h.Root, HTTP: h.HC, Log: slog.New(slog.DiscardHandler)}
}

// deviceClient is the real device library for d, as the simulator makes
// it, for the steps a test drives by hand (check, defer).
func deviceClient(f *sim.Fleet, d *sim.Device) (*client.Client, error) {
	return client.New(client.Config{
		ServerURL: f.ServerURL, TrustedRoot: f.Root, StateDir: d.StateDir,
		DeviceID: d.ID, Token: d.Token, HardwareID: d.Hardware, CurrentVersion: d.Version,
		HTTPClient: f.HTTP, Logger: f.Log,
	})
}
