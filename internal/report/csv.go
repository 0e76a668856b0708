// Package report renders what the management API answers as the files
// people take elsewhere: CSV for spreadsheets and compliance records, with
// free text defused against formula injection.
package report

import (
	"encoding/csv"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/tufota/tufota/api"
)

// HistoryCSV writes a rollout's events and device outcomes as CSV, one
// record a line ("event" or "device"), free text defused (csvSafe). A
// deferring device's until-time is in deferred_until and its reason in the
// reason column.
func HistoryCSV(out io.Writer, h api.RolloutHistory) error {
	w := csv.NewWriter(out)
	_ = w.Write([]string{"record", "time", "actor", "kind", "reason", "device", "wave", "state", "error_code", "previous_version", "installed_at", "deferred_until"})
	for _, e := range h.Events {
		_ = w.Write([]string{"event", e.Time.UTC().Format(time.RFC3339Nano), csvSafe(e.Actor), e.Kind, csvSafe(e.Reason), "", "", "", "", "", "", ""})
	}
	for _, d := range h.Devices {
		inst := ""
		if d.InstalledAt != nil {
			inst = d.InstalledAt.UTC().Format(time.RFC3339Nano)
		}
		until, reason := "", ""
		if d.DeferredUntil != nil {
			until, reason = d.DeferredUntil.UTC().Format(time.RFC3339Nano), csvSafe(d.Message)
		}
		_ = w.Write([]string{"device", d.OfferedAt.UTC().Format(time.RFC3339Nano), "", "", reason, d.DeviceID, strconv.Itoa(d.Wave), string(d.State), d.ErrorCode, d.PreviousVersion, inst, until})
	}
	w.Flush()
	return w.Error()
}

// FleetCSV writes the fleet report as CSV, one device a line.
func FleetCSV(out io.Writer, rows []api.FleetRow) error {
	w := csv.NewWriter(out)
	_ = w.Write([]string{"device_id", "hardware", "version", "newest", "behind", "days_since_last_update", "last_seen", "failed_updates"})
	for _, r := range rows {
		days := ""
		if r.DaysSinceLastUpdate != nil {
			days = strconv.Itoa(*r.DaysSinceLastUpdate)
		}
		_ = w.Write([]string{r.DeviceID, r.Hardware, r.Version, r.Newest, strconv.Itoa(r.Behind), days, Time(r.LastSeen), strconv.Itoa(r.FailedUpdates)})
	}
	w.Flush()
	return w.Error()
}

// csvSafe defuses spreadsheet formulas in free text.
func csvSafe(s string) string {
	if s != "" && (s[0] == '=' || s[0] == '+' || s[0] == '-' || s[0] == '@') {
		return "'" + s
	}
	return s
}

// Time is t in UTC as RFC 3339, or "-" when there is none.
func Time(t *time.Time) string {
	if t == nil || t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

// Bytes is n in binary units: "512 B", "1.5 MiB".
func Bytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// VulnCSV writes the vulnerability report as CSV: one record per
// advisory, release, component and device running it (a release no
// device runs has one record with an empty device), with the first
// release of the product that fixes the advisory; free text defused.
func VulnCSV(out io.Writer, reps []api.VulnReport) error {
	w := csv.NewWriter(out)
	_ = w.Write([]string{"advisory", "aliases", "release", "status", "component", "version", "fixed_in", "device", "first_fix"})
	for _, r := range reps {
		fix := map[string]string{}
		for _, f := range r.Fixes {
			fix[f.Product] = f.Release
		}
		for _, e := range r.Releases {
			product, _, _ := strings.Cut(e.Release, "@")
			devs := e.Devices
			if len(devs) == 0 {
				devs = []string{""}
			}
			for _, c := range e.Components {
				for _, d := range devs {
					_ = w.Write([]string{r.Advisory, strings.Join(r.Aliases, " "), e.Release, c.Status, csvSafe(c.Component), csvSafe(c.Version), csvSafe(c.FixedIn), csvSafe(d), fix[product]})
				}
			}
		}
	}
	w.Flush()
	return w.Error()
}
