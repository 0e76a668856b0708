package report

import (
	"bytes"
	"encoding/csv"
	"testing"
	"time"

	"github.com/tufota/tufota/api"
)

// TestHistoryCSVDefusesFormulas: free text a person typed (actor, reason)
// that a spreadsheet would run as a formula is quoted; everything else
// stands as it is.
func TestHistoryCSVDefusesFormulas(t *testing.T) {
	at := time.Date(2026, 12, 6, 20, 0, 0, 0, time.UTC)
	inst := at.Add(time.Minute)
	h := api.RolloutHistory{
		Events:  []api.RolloutEvent{{Time: at, Actor: "=HYPERLINK(\"x\")", Kind: "paused", Reason: "+1 failed"}, {Time: at, Actor: "ops", Kind: "started", Reason: "canary"}},
		Devices: []api.DeviceOutcome{{DeviceID: "d1", Wave: 1, State: "installed", OfferedAt: at, InstalledAt: &inst}},
	}
	var b bytes.Buffer
	if err := HistoryCSV(&b, h); err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(&b).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 4 {
		t.Fatalf("%d records, want a header, 2 events and 1 device", len(recs))
	}
	for _, tc := range []struct {
		row, col int
		want     string
	}{
		{1, 2, "'=HYPERLINK(\"x\")"}, {1, 4, "'+1 failed"}, {2, 2, "ops"}, {2, 4, "canary"},
		{3, 0, "device"}, {3, 5, "d1"}, {3, 7, "installed"}, {3, 10, "2026-12-06T20:01:00Z"},
	} {
		if got := recs[tc.row][tc.col]; got != tc.want {
			t.Errorf("record %d field %d = %q, want %q", tc.row, tc.col, got, tc.want)
		}
	}
}

func TestFleetCSVAndFormatting(t *testing.T) {
	days := 3
	seen := time.Date(2026, 12, 6, 20, 0, 0, 0, time.FixedZone("CET", 3600))
	var b bytes.Buffer
	if err := FleetCSV(&b, []api.FleetRow{{DeviceID: "d1", Hardware: "pump-a", Version: "1.0.0", Newest: "1.1.0", Behind: 1, DaysSinceLastUpdate: &days, LastSeen: &seen}, {DeviceID: "d2"}}); err != nil {
		t.Fatal(err)
	}
	want := "device_id,hardware,version,newest,behind,days_since_last_update,last_seen,failed_updates\n" +
		"d1,pump-a,1.0.0,1.1.0,1,3,2026-12-06T19:00:00Z,0\n" +
		"d2,,,,0,,-,0\n"
	if b.String() != want {
		t.Errorf("fleet CSV:\n%s\nwant:\n%s", b.String(), want)
	}
	for n, s := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 3 << 20: "3.0 MiB"} {
		if got := Bytes(n); got != s {
			t.Errorf("Bytes(%d) = %q, want %q", n, got, s)
		}
	}
}
