package rollout

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/tufota/tufota/client"
	"github.com/tufota/tufota/e2e"
	"github.com/tufota/tufota/server"
)

// TestFleetReportEndToEnd builds a small fleet through the real server and
// the real client (one device updated, one that keeps failing, one that never
// called in) and checks every column of `tufota fleet report`, as JSON and as
// CSV: the outdated-firmware list of a risk assessment.
func TestFleetReportEndToEnd(t *testing.T) {
	h := e2e.Start(t)
	ctx := context.Background()
	for _, r := range []struct{ name, version, hw string }{
		{"pump-fw", "1.0.0", "pump-a"},
		{"pump-fw", "1.1.0", "pump-a"},
		{"pump-fw", "1.2.0", "pump-a"},
		{"monitor-fw", "2.0.0", "monitor-x"},
	} {
		fw, _ := h.WriteFirmware(r.name+".bin", 2048)
		h.MustCLI("release", "push", fw, "--name", r.name, "--version", r.version, "--hardware", r.hw)
	}

	// dev-a updates 1.0.0 → 1.2.0 and reports it installed.
	a := h.NewClient(h.URL, "dev-a", "pump-a", "1.0.0")
	h.MustCLI("device", "assign", "dev-a", "pump-fw@1.2.0", "--reason", "fleet report test")
	upd, err := a.Check(ctx)
	if err != nil || upd == nil {
		t.Fatalf("dev-a Check = %+v, %v", upd, err)
	}
	if err := a.Download(ctx, upd, filepath.Join(t.TempDir(), "a.bin")); err != nil {
		t.Fatalf("dev-a Download: %v", err)
	}
	if err := a.Report(ctx, client.NewReport(upd, client.StateInstalled, nil)); err != nil {
		t.Fatalf("dev-a Report: %v", err)
	}

	// dev-b is offered 1.1.0 and fails twice, then rolls back once.
	b := h.NewClient(h.URL, "dev-b", "pump-a", "1.0.0")
	h.MustCLI("device", "assign", "dev-b", "pump-fw@1.1.0", "--reason", "fleet report test")
	if upd, err = b.Check(ctx); err != nil || upd == nil {
		t.Fatalf("dev-b Check = %+v, %v", upd, err)
	}
	for _, st := range []client.State{client.StateFailed, client.StateFailed, client.StateRolledBack} {
		if err := b.Report(ctx, client.NewReport(upd, st, errors.New("flash write failed"))); err != nil {
			t.Fatalf("dev-b Report %s: %v", st, err)
		}
	}

	// dev-m runs the newest monitor firmware and never called in.
	h.RegisterDevice("dev-m", "monitor-x", "2.0.0")

	var rows []server.FleetRow
	if err := json.Unmarshal([]byte(h.MustCLI("fleet", "report", "-o", "json")), &rows); err != nil {
		t.Fatalf("fleet report -o json: %v", err)
	}
	type want struct {
		hw, version, newest string
		behind, failed      int
		seen, updated       bool
	}
	wants := map[string]want{
		"dev-a": {"pump-a", "1.2.0", "pump-fw@1.2.0", 0, 0, true, true},
		"dev-b": {"pump-a", "1.0.0", "pump-fw@1.2.0", 2, 3, true, false},
		"dev-m": {"monitor-x", "2.0.0", "monitor-fw@2.0.0", 0, 0, false, false},
	}
	if len(rows) != len(wants) {
		t.Fatalf("fleet report has %d rows, want %d: %+v", len(rows), len(wants), rows)
	}
	for _, r := range rows {
		w, ok := wants[r.DeviceID]
		if !ok {
			t.Errorf("unexpected device %q in the report", r.DeviceID)
			continue
		}
		got := want{r.Hardware, r.Version, r.Newest, r.Behind, r.FailedUpdates, r.LastSeen != nil, r.LastUpdate != nil}
		if got != w {
			t.Errorf("%s: got %+v, want %+v", r.DeviceID, got, w)
		}
		if w.updated && (r.DaysSinceLastUpdate == nil || *r.DaysSinceLastUpdate != 0) {
			t.Errorf("%s: days since last update = %v, want 0 (updated during this test)", r.DeviceID, r.DaysSinceLastUpdate)
		}
		if !w.updated && r.DaysSinceLastUpdate != nil {
			t.Errorf("%s: days since last update = %d, want none (never updated)", r.DeviceID, *r.DaysSinceLastUpdate)
		}
	}

	// The CSV says the same, one line per device, with a header.
	recs, err := csv.NewReader(strings.NewReader(h.MustCLI("fleet", "report", "--format", "csv"))).ReadAll()
	if err != nil {
		t.Fatalf("fleet report --format csv: %v", err)
	}
	header := []string{"device_id", "hardware", "version", "newest", "behind", "days_since_last_update", "last_seen", "failed_updates"}
	if len(recs) != 1+len(wants) || !reflect.DeepEqual(recs[0], header) {
		t.Fatalf("CSV = %q, want the header %q and %d rows", recs, header, len(wants))
	}
	byID := map[string][]string{}
	for _, r := range recs[1:] {
		byID[r[0]] = r
	}
	if r := byID["dev-b"]; r == nil || r[3] != "pump-fw@1.2.0" || r[4] != "2" || r[5] != "" || r[7] != "3" {
		t.Errorf("CSV row for dev-b = %q, want newest pump-fw@1.2.0, 2 behind, no update, 3 failures", r)
	}
	if r := byID["dev-a"]; r == nil || r[2] != "1.2.0" || r[5] != "0" || r[6] == "-" {
		t.Errorf("CSV row for dev-a = %q, want version 1.2.0, updated 0 days ago, last seen set", r)
	}

	// Bad input: an unknown format is refused with a clear message.
	if _, err := h.RunCLI("fleet", "report", "--format", "xlsx"); err == nil || !strings.Contains(err.Error(), "xlsx") {
		t.Errorf("fleet report --format xlsx: %v, want an error naming the format", err)
	}
}
