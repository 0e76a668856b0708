package sim

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tufota/tufota/api"
	"github.com/tufota/tufota/rollout"
)

func TestPercentile(t *testing.T) {
	t.Parallel()
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = i + 1
	}
	tests := []struct {
		name   string
		sorted []time.Duration
		q      float64
		want   time.Duration
	}{
		{"empty", nil, 0.99, 0},
		{"one", ms(7), 0.5, 7 * time.Millisecond},
		{"median of four", ms(1, 2, 3, 4), 0.5, 2 * time.Millisecond},
		{"p99 of 1..100", ms(hundred...), 0.99, 99 * time.Millisecond},
		{"p100", ms(1, 2, 3), 1, 3 * time.Millisecond},
	}
	for _, tc := range tests {
		if got := percentile(tc.sorted, tc.q); got != tc.want {
			t.Errorf("%s: percentile(%v) = %v, want %v", tc.name, tc.q, got, tc.want)
		}
	}
}

func TestCompareStates(t *testing.T) {
	t.Parallel()
	ours := map[string]bool{"a": true, "b": true, "c": true, "d": true}
	srv := []api.DeviceOutcome{
		{DeviceID: "a", State: string(rollout.StatusInstalled)},
		{DeviceID: "b", State: string(rollout.StatusDownloading)}, // a lost installed report
		{DeviceID: "d", State: string(rollout.StatusFailed)},      // the simulator never saw d's
		{DeviceID: "other", State: string(rollout.StatusInstalled)},
	}
	sim := map[string]string{"a": "installed", "b": "installed", "c": "offered"}
	c, diff := compareStates(ours, sim, srv)
	want := []string{
		"device b: simulator installed, server downloading",
		"device c: simulator offered, server has no outcome",
		"device d: simulator none, server failed",
	}
	if strings.Join(diff, "\n") != strings.Join(want, "\n") {
		t.Errorf("differences:\n%s\nwant:\n%s", strings.Join(diff, "\n"), strings.Join(want, "\n"))
	}
	if c.Sim["installed"] != 2 || c.Sim["offered"] != 1 || c.Server["installed"] != 1 || c.Server["downloading"] != 1 || c.Server["failed"] != 1 {
		t.Errorf("counts = %+v; want the other fleet's device left out", c)
	}
	if _, diff := compareStates(ours, map[string]string{"a": "installed"}, srv[:1]); len(diff) != 0 {
		t.Errorf("equal sides: differences %v", diff)
	}
}

func TestCompareVersions(t *testing.T) {
	t.Parallel()
	devs := []*Device{{ID: "a", Version: "2.0.0"}, {ID: "b", Version: "2.0.0"}, {ID: "c", Version: "1.0.0"}}
	fleet := []api.FleetRow{{DeviceID: "a", Version: "2.0.0"}, {DeviceID: "b", Version: "1.0.0"}}
	c, diff := compareVersions(devs, fleet)
	if len(diff) != 2 || !strings.Contains(diff[0], "device b: runs 2.0.0, fleet report says 1.0.0") || !strings.Contains(diff[1], "device c: not in the fleet report") {
		t.Errorf("differences = %q", diff)
	}
	if c.Sim["2.0.0"] != 2 || c.Server["2.0.0"] != 1 || c.Server["1.0.0"] != 1 {
		t.Errorf("counts = %+v", c)
	}
}

func TestJudge(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		sum    Summary
		diffs  []string
		wantOK bool
	}{
		{"clean", Summary{}, nil, true},
		{"an error", Summary{ErrorCount: 1}, nil, false},
		{"an unacknowledged report", Summary{Unacknowledged: 1}, nil, false},
		{"a difference", Summary{}, []string{"device x: simulator installed, server downloading"}, false},
	}
	for _, tc := range tests {
		tc.sum.Judge(tc.diffs)
		if tc.sum.OK != tc.wantOK || tc.sum.Lost != len(tc.diffs) {
			t.Errorf("%s: OK = %v, Lost = %d; want %v, %d", tc.name, tc.sum.OK, tc.sum.Lost, tc.wantOK, len(tc.diffs))
		}
	}
	many := make([]string, 25)
	for i := range many {
		many[i] = fmt.Sprintf("device %02d", i)
	}
	var s Summary
	s.Judge(many)
	if s.Lost != 25 || len(s.Mismatches) != 21 || s.Mismatches[20] != "... and 5 more" {
		t.Errorf("25 differences: Lost %d, %d lines, last %q", s.Lost, len(s.Mismatches), s.Mismatches[len(s.Mismatches)-1])
	}
}

// TestCountingTransport sends the requests a device sends through the
// counting transport to a real HTTP server: offers, acknowledged and
// refused reports, the end of the root chain, failed requests.
func TestCountingTransport(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/api/v1/device/update" && r.URL.Query().Get("device_id") == "dev-1":
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"target":"fw/2.0.0/fw.bin","name":"fw","version":"2.0.0","rollout_id":"ro-1"}`)
		case r.URL.Path == "/api/v1/device/update":
			w.WriteHeader(http.StatusNoContent)
		case r.URL.Path == "/api/v1/device/status":
			b, _ := io.ReadAll(r.Body)
			if strings.Contains(string(b), `"installed"`) {
				http.Error(w, "boom", http.StatusInternalServerError)
				return
			}
			w.WriteHeader(http.StatusNoContent)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	stats := NewStats()
	hc := &http.Client{Transport: stats.CountRequests(http.DefaultTransport)}
	get := func(path string) string {
		t.Helper()
		res, err := hc.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return string(b)
	}
	report := func(body string) {
		t.Helper()
		res, err := hc.Post(srv.URL+"/api/v1/device/status", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode == http.StatusNoContent && len(b) != 0 {
			t.Fatalf("report answer body %q", b)
		}
	}
	if body := get("/api/v1/device/update?device_id=dev-1"); !strings.Contains(body, `"rollout_id":"ro-1"`) {
		t.Fatalf("the offer's body did not reach the caller: %q", body)
	}
	get("/api/v1/device/update?device_id=dev-2")
	if got := stats.lastStates("ro-1"); got["dev-1"] != "offered" || len(got) != 1 {
		t.Fatalf("after the offer: last states %v, want dev-1 offered", got)
	}
	report(`{"device_id":"dev-1","state":"downloading","rollout_id":"ro-1"}`)
	report(`{"device_id":"dev-1","state":"installed","rollout_id":"ro-1"}`) // refused: 500
	get("/tuf/2.root.json")                                                 // the end of the root chain
	get("/tuf/snapshot.json")                                               // a real 404
	if got := stats.lastStates("ro-1"); got["dev-1"] != "downloading" {
		t.Errorf("last state of dev-1 = %q, want downloading (the installed report was refused)", got["dev-1"])
	}
	sum := stats.Summarize(2, time.Second, time.Second)
	if sum.Polls != 2 || sum.PollStatus["200"] != 1 || sum.PollStatus["204"] != 1 {
		t.Errorf("polls = %d %v, want one 200 and one 204", sum.Polls, sum.PollStatus)
	}
	if sum.ReportsSent["installed"] != 1 || sum.ReportsAcked["installed"] != 0 || sum.ReportsAcked["downloading"] != 1 {
		t.Errorf("reports sent %v, acknowledged %v", sum.ReportsSent, sum.ReportsAcked)
	}
	if sum.ErrorCount != 2 || sum.Errors["report http_5xx"] != 1 || sum.Errors["tuf http_4xx"] != 1 {
		t.Errorf("errors = %d %v; want one report http_5xx and one tuf http_4xx (not the root probe)", sum.ErrorCount, sum.Errors)
	}
	if got := stats.rolloutsSeen(); len(got) != 1 || got[0] != "ro-1" {
		t.Errorf("rollouts seen = %v", got)
	}

	srv.Close()
	if _, err := hc.Get(srv.URL + "/api/v1/device/update?device_id=dev-2"); err == nil {
		t.Fatal("a request to a closed server succeeded")
	}
	if sum := stats.Summarize(2, time.Second, time.Second); sum.Errors["poll conn_refused"] != 1 {
		t.Errorf("errors after the server went away = %v, want poll conn_refused 1", sum.Errors)
	}
}

func TestPhase(t *testing.T) {
	t.Parallel()
	s := func(at, took int) pollSample {
		return pollSample{at: time.Duration(at) * time.Second, took: time.Duration(took) * time.Millisecond}
	}
	polls := []pollSample{s(0, 900), s(1, 800), s(2, 1000), s(5, 1), s(6, 2), s(9, 3)}
	during := phase(polls, 0, 5*time.Second)
	after := phase(polls, 5*time.Second, 10*time.Second)
	if during == nil || during.Polls != 3 || during.P50Ms != 900 || during.MaxMs != 1000 || during.PollsPerSecond != 0.6 {
		t.Errorf("during = %+v; want 3 polls, p50 900 ms, max 1000 ms, 0.6/s", during)
	}
	if after == nil || after.Polls != 3 || after.P99Ms != 3 || after.Seconds != 5 {
		t.Errorf("after = %+v; want 3 polls, p99 3 ms over 5 s", after)
	}
	if p := phase(polls, 20*time.Second, 30*time.Second); p != nil {
		t.Errorf("an empty stretch = %+v, want nil", p)
	}
}
