package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/tufota/tufota/api"
)

// TestPrintWaveDownloads: status and history show per wave the bytes
// served as deltas and as full images, with the devices of each.
func TestPrintWaveDownloads(t *testing.T) {
	t.Parallel()
	waves := []api.WaveStatus{
		{Number: 1, Spec: "10%", DeltaBytes: 1650, DeltaDownloads: 1, FullBytes: 2101152, FullDownloads: 2},
		{Number: 2, Spec: "100%"},
	}
	var st, hi bytes.Buffer
	printStatus(&st, api.RolloutStatus{Waves: waves})
	printHistory(&hi, api.RolloutHistory{Waves: waves, Devices: []api.DeviceOutcome{{DeviceID: "pump-1", Download: "delta", DownloadBytes: 1650}}})
	for name, out := range map[string]string{"status": st.String(), "history": hi.String()} {
		for _, want := range []string{"DELTA", "FULL", "1650 B (1)", "2101152 B (2)"} {
			if !strings.Contains(out, want) {
				t.Errorf("%s output lacks %q:\n%s", name, want, out)
			}
		}
	}
	if !strings.Contains(hi.String(), "delta 1650 B") {
		t.Errorf("history lacks the device's download:\n%s", hi.String())
	}
}
