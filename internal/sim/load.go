package sim

import (
	"bytes"
	"container/heap"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tufota/tufota/api"
	"github.com/tufota/tufota/rollout"
)

// Stats counts what a simulated fleet did, from the wire: every device
// poll with its latency and answer, every status report sent and whether
// the server acknowledged it (2xx), every failed request by kind, and each
// device's last known state per rollout (offered when a poll offered it,
// then the state of each acknowledged report). It is safe for concurrent
// use; a nil *Stats counts nothing.
type Stats struct {
	mu         sync.Mutex
	pollStatus map[int]int
	polls      []pollSample
	start      time.Time // when polling began (Begin); zero: the first poll
	lastOffer  time.Time // the last poll answered with an offer
	lastAck    time.Time // the last report the server acknowledged
	requests   int
	errs       map[string]int // "poll http_5xx", "report timeout", "cycle check", ...
	sent       map[string]int // report state → reports sent (first attempts and retries)
	acked      map[string]int // report state → reports the server acknowledged
	last       map[string]state
	late       int // polls that started more than one interval late
	maxLag     time.Duration
}

// pollSample is one poll: when it started (since Stats.start) and how
// long its answer took.
type pollSample struct {
	at, took time.Duration
}

// state is a device's last known state in one rollout.
type state struct {
	Rollout, State string
}

// maxLatencySamples bounds the polls kept for percentiles (16 bytes each):
// 10,000 devices every 5 s for half an hour.
const maxLatencySamples = 3_600_000

func NewStats() *Stats {
	return &Stats{pollStatus: map[int]int{}, errs: map[string]int{}, sent: map[string]int{}, acked: map[string]int{}, last: map[string]state{}}
}

// Begin marks the start of polling: poll times count from here.
func (s *Stats) Begin(t time.Time) {
	if s == nil {
		return
	}
	s.mu.Lock()
	s.start = t
	s.mu.Unlock()
}

func (s *Stats) addErr(kind string) {
	s.mu.Lock()
	s.errs[kind]++
	s.mu.Unlock()
}

// cycle counts a device cycle's error by the step that failed; a simulated
// install failure is an outcome, not an error.
func (s *Stats) cycle(err error) {
	if s == nil || err == nil || errors.Is(err, ErrSimulated) {
		return
	}
	step, _, ok := strings.Cut(err.Error(), ":")
	if !ok || strings.ContainsAny(step, " ") {
		step = "other"
	}
	s.addErr("cycle " + step)
}

// lag records how late a poll started against its schedule.
func (s *Stats) lag(d, every time.Duration) {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.maxLag = max(s.maxLag, d)
	if d > every {
		s.late++
	}
}

// CountRequests wraps rt so that every request the devices make is counted
// in s.
func (s *Stats) CountRequests(rt http.RoundTripper) http.RoundTripper {
	return &countingTransport{base: rt, stats: s}
}

type countingTransport struct {
	base  http.RoundTripper
	stats *Stats
}

// RoundTrip sends req unchanged. It reads a copy of a status report's body
// (GetBody) and the body of an offer (at most 64 KiB, handed on in a new
// Body) to know which device, state and rollout they name.
func (t *countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	op := "tuf"
	switch p := req.URL.Path; {
	case strings.HasSuffix(p, "/api/v1/device/update"):
		op = "poll"
	case strings.HasSuffix(p, "/api/v1/device/status"):
		op = "report"
	case strings.Contains(p, "/tuf/targets/"):
		op = "target"
	}
	var rep struct {
		DeviceID  string `json:"device_id"`
		State     string `json:"state"`
		RolloutID string `json:"rollout_id"`
	}
	if op == "report" && req.GetBody != nil {
		if b, err := req.GetBody(); err == nil {
			_ = json.NewDecoder(io.LimitReader(b, 64<<10)).Decode(&rep)
			_ = b.Close()
		}
	}
	start := time.Now()
	res, err := t.base.RoundTrip(req)
	took := time.Since(start)
	s := t.stats
	kind := ""
	switch {
	case err != nil:
		kind = transportErrKind(err)
	case res.StatusCode >= 500:
		kind = "http_5xx"
	case res.StatusCode == http.StatusTooManyRequests:
		kind = "http_429"
	case res.StatusCode == http.StatusNotFound && op == "tuf" && strings.HasSuffix(req.URL.Path, ".root.json"):
		// A TUF client asks for the next root version until the server
		// has none: the end of the chain, not an error.
	case res.StatusCode >= 400:
		kind = "http_4xx"
	}
	var offer struct {
		RolloutID string `json:"rollout_id"`
	}
	if op == "poll" && err == nil && res.StatusCode == http.StatusOK {
		body, rerr := io.ReadAll(io.LimitReader(res.Body, 64<<10))
		_ = res.Body.Close()
		res.Body = io.NopCloser(bytes.NewReader(body))
		if rerr != nil {
			kind = "read_answer"
		} else {
			_ = json.Unmarshal(body, &offer)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.start.IsZero() {
		s.start = start
	}
	s.requests++
	if kind != "" {
		s.errs[op+" "+kind]++
	}
	switch op {
	case "poll":
		if err == nil {
			s.pollStatus[res.StatusCode]++
			if len(s.polls) < maxLatencySamples {
				s.polls = append(s.polls, pollSample{at: start.Sub(s.start), took: took})
			}
			if res.StatusCode == http.StatusOK {
				s.lastOffer = start.Add(took)
			}
			dev := req.URL.Query().Get("device_id")
			if offer.RolloutID != "" && dev != "" {
				if cur, ok := s.last[dev]; !ok || cur.Rollout != offer.RolloutID {
					s.last[dev] = state{Rollout: offer.RolloutID, State: string(rollout.StatusOffered)}
				}
			}
		}
	case "report":
		s.sent[rep.State]++
		if err == nil && res.StatusCode/100 == 2 {
			s.acked[rep.State]++
			s.lastAck = start.Add(took)
			if rep.DeviceID != "" && rep.RolloutID != "" {
				s.last[rep.DeviceID] = state{Rollout: rep.RolloutID, State: rep.State}
			}
		}
	}
	return res, err
}

// transportErrKind names a request that got no answer.
func transportErrKind(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "conn_refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "conn_reset"
	case errors.Is(err, syscall.EADDRNOTAVAIL), errors.Is(err, syscall.EMFILE):
		return "no_socket"
	}
	return "transport"
}

// Load is how a fleet polls in RunLoad.
type Load struct {
	// Every is each device's poll interval; Jitter (0 to 1) spreads each
	// interval uniformly over Every × (1 ± Jitter), and the first poll of
	// each device falls uniformly within the first interval.
	Every  time.Duration
	Jitter float64
	// Duration is how long polls are started; polls running at its end
	// finish.
	Duration time.Duration
	// Workers bounds the polls in flight.
	Workers int
	Seed    uint64
}

// due is one device's next poll.
type due struct {
	at time.Time
	i  int
}

type dueHeap []due

func (h dueHeap) Len() int           { return len(h) }
func (h dueHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h dueHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *dueHeap) Push(x any)        { *h = append(*h, x.(due)) }
func (h *dueHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// RunLoad polls every device on its own jittered schedule for l.Duration,
// with at most l.Workers polls in flight (a device is polled by one worker
// at a time), and returns the last result of each device in device order.
// It returns early, with what it has, when ctx ends.
func (f *Fleet) RunLoad(ctx context.Context, devs []*Device, l Load) []Result {
	if l.Workers < 1 {
		l.Workers = 1
	}
	rng := mrand.New(mrand.NewPCG(l.Seed, 0x6c6f6164)) // #nosec G404 -- a repeatable schedule, not a secret
	interval := func() time.Duration {
		j := (2*rng.Float64() - 1) * l.Jitter
		return time.Duration(float64(l.Every) * (1 + j))
	}
	start := time.Now()
	end := start.Add(l.Duration)
	h := make(dueHeap, len(devs))
	for i := range devs {
		h[i] = due{at: start.Add(time.Duration(rng.Float64() * float64(l.Every))), i: i}
	}
	heap.Init(&h)

	out := make([]Result, len(devs))
	for i, d := range devs {
		out[i] = Result{ID: d.ID, Hardware: d.Hardware, Version: d.Version, Status: "not-polled"}
	}
	jobs := make(chan due)
	// Every device is in exactly one place (the heap, jobs, a worker or
	// done), so done never fills and a worker never blocks on it.
	done := make(chan due, len(devs))
	var wg sync.WaitGroup
	for range l.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				f.Stats.lag(time.Since(j.at), l.Every)
				out[j.i] = devs[j.i].pollOnce(ctx, f)
				done <- j
			}
		}()
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
dispatch:
	for {
		if h.Len() > 0 {
			timer.Reset(time.Until(h[0].at))
		}
		select {
		case <-ctx.Done():
			break dispatch
		case j := <-done:
			timer.Stop()
			j.at = j.at.Add(interval())
			if now := time.Now(); j.at.Before(now) {
				j.at = now // a poll that overran its interval: the next starts now
			}
			heap.Push(&h, j)
		case now := <-timer.C:
			if !now.Before(end) {
				break dispatch
			}
			for h.Len() > 0 && !h[0].at.After(now) {
				j := heap.Pop(&h).(due)
				select {
				case jobs <- j:
				case <-ctx.Done():
					break dispatch
				}
			}
		}
		if !time.Now().Before(end) {
			break
		}
	}
	close(jobs)
	wg.Wait()
	return out
}

// FlushReports delivers every report still queued on a device (with the
// client's retries), at most workers at a time, and returns how many stay
// undelivered.
func FlushReports(ctx context.Context, devs []*Device, workers int) int {
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		pending int
	)
	sem := make(chan struct{}, max(workers, 1))
	for _, d := range devs {
		if d.client == nil {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			_ = d.client.Flush(ctx)
			n, err := d.client.Pending()
			if err != nil {
				n = 1
			}
			mu.Lock()
			pending += n
			mu.Unlock()
		}()
	}
	wg.Wait()
	return pending
}

// Summary is what `tufota sim` prints at the end, and what bench/fleet
// records.
type Summary struct {
	Devices         int            `json:"devices"`
	EnrollSeconds   float64        `json:"enroll_seconds"`
	EnrollPerSecond float64        `json:"enroll_per_second"`
	RunSeconds      float64        `json:"run_seconds"`
	Polls           int            `json:"polls"`
	PollsPerSecond  float64        `json:"polls_per_second"`
	PollStatus      map[string]int `json:"poll_status"`
	PollP50Ms       float64        `json:"poll_p50_ms"`
	PollP99Ms       float64        `json:"poll_p99_ms"`
	PollMaxMs       float64        `json:"poll_max_ms"`
	// Rollout and After split the polls: those that started until the
	// last report was acknowledged (while devices updated), and those that
	// started after it (every device answered "nothing to do").
	Rollout      *Phase         `json:"during_updates,omitempty"`
	After        *Phase         `json:"after_updates,omitempty"`
	LatePolls    int            `json:"late_polls"`
	MaxLagMs     float64        `json:"max_lag_ms"`
	Requests     int            `json:"requests"`
	Errors       map[string]int `json:"errors"`
	ErrorCount   int            `json:"error_count"`
	ReportsSent  map[string]int `json:"reports_sent"`
	ReportsAcked map[string]int `json:"reports_acknowledged"`
	// Unacknowledged reports were still queued on devices after the final
	// flush.
	Unacknowledged int `json:"unacknowledged_reports"`
	// Compared says whether the server's counts were read (it needs an
	// API token that may read rollouts and the fleet report).
	Compared bool `json:"compared"`
	// Rollouts are the rollouts that offered the devices something (and
	// --rollout): each one's state and devices per state as the simulator
	// saw them and as the server has them.
	Rollouts []RolloutCheck `json:"rollouts,omitempty"`
	// Versions counts the simulated devices per firmware version, as the
	// simulator and the server's fleet report have them.
	Versions *Compare `json:"versions,omitempty"`
	// Lost counts devices whose last acknowledged state (or version) the
	// server does not have.
	Lost       int      `json:"lost_reports"`
	Mismatches []string `json:"mismatches,omitempty"`
	OK         bool     `json:"ok"`
}

// Phase is the polls of one stretch of the run.
type Phase struct {
	Seconds        float64 `json:"seconds"`
	Polls          int     `json:"polls"`
	PollsPerSecond float64 `json:"polls_per_second"`
	P50Ms          float64 `json:"poll_p50_ms"`
	P99Ms          float64 `json:"poll_p99_ms"`
	MaxMs          float64 `json:"poll_max_ms"`
}

// phase summarizes the polls that started within [from, to).
func phase(polls []pollSample, from, to time.Duration) *Phase {
	var lat []time.Duration
	for _, p := range polls {
		if p.at >= from && p.at < to {
			lat = append(lat, p.took)
		}
	}
	if len(lat) == 0 || to <= from {
		return nil
	}
	slices.Sort(lat)
	ph := &Phase{Seconds: math.Round((to-from).Seconds()*10) / 10, Polls: len(lat),
		P50Ms: ms(percentile(lat, 0.50)), P99Ms: ms(percentile(lat, 0.99)), MaxMs: ms(lat[len(lat)-1])}
	ph.PollsPerSecond = math.Round(float64(len(lat))/(to-from).Seconds()*10) / 10
	return ph
}

// RolloutCheck compares devices per state in one rollout.
type RolloutCheck struct {
	ID    string `json:"id"`
	State string `json:"state"`
	// WavesStarted counts the waves the rollout started.
	WavesStarted int `json:"waves_started"`
	Waves        int `json:"waves"`
	Compare
}

// Compare is one count per key by the simulator and by the server.
type Compare struct {
	Sim    map[string]int `json:"sim"`
	Server map[string]int `json:"server"`
}

// Summarize fills the simulator's own counts.
func (s *Stats) Summarize(devices int, enroll, run time.Duration) Summary {
	s.mu.Lock()
	defer s.mu.Unlock()
	sum := Summary{
		Devices: devices, EnrollSeconds: enroll.Seconds(), RunSeconds: run.Seconds(),
		PollStatus: map[string]int{}, Errors: maps.Clone(s.errs), ReportsSent: maps.Clone(s.sent), ReportsAcked: maps.Clone(s.acked),
		Requests: s.requests, LatePolls: s.late, MaxLagMs: ms(s.maxLag),
	}
	if enroll > 0 {
		sum.EnrollPerSecond = float64(devices) / enroll.Seconds()
	}
	for code, n := range s.pollStatus {
		sum.PollStatus[fmt.Sprint(code)] = n
		sum.Polls += n
	}
	if run > 0 {
		sum.PollsPerSecond = float64(sum.Polls) / run.Seconds()
	}
	lat := make([]time.Duration, len(s.polls))
	for i, p := range s.polls {
		lat[i] = p.took
	}
	slices.Sort(lat)
	if !s.lastAck.IsZero() && run > 0 {
		split := s.lastAck.Sub(s.start)
		sum.Rollout = phase(s.polls, 0, split)
		sum.After = phase(s.polls, split, run)
	}
	sum.PollP50Ms, sum.PollP99Ms = ms(percentile(lat, 0.50)), ms(percentile(lat, 0.99))
	if len(lat) > 0 {
		sum.PollMaxMs = ms(lat[len(lat)-1])
	}
	for _, n := range s.errs {
		sum.ErrorCount += n
	}
	return sum
}

// rolloutsSeen returns the rollouts that offered a device something, or
// that a device reported on, sorted.
func (s *Stats) rolloutsSeen() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := map[string]bool{}
	for _, st := range s.last {
		seen[st.Rollout] = true
	}
	out := make([]string, 0, len(seen))
	for id := range seen {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}

// lastStates returns each device's last known state in rollout id.
func (s *Stats) lastStates(id string) map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]string{}
	for dev, st := range s.last {
		if st.Rollout == id {
			out[dev] = st.State
		}
	}
	return out
}

func ms(d time.Duration) float64 { return math.Round(float64(d)/1e4) / 100 }

// percentile returns the q-quantile (nearest rank) of sorted, 0 when empty.
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	k := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(k, 0), len(sorted)-1)]
}

// compareStates compares the simulator's last acknowledged state of each
// device in a rollout with the server's outcomes (rollout history), for
// the devices in ours (the simulator's devices). It returns devices per
// state on each side and one line per device that differs, sorted.
func compareStates(ours map[string]bool, sim map[string]string, srv []api.DeviceOutcome) (Compare, []string) {
	c := Compare{Sim: map[string]int{}, Server: map[string]int{}}
	server := map[string]string{}
	for _, o := range srv {
		if ours[o.DeviceID] {
			server[o.DeviceID] = string(o.State)
			c.Server[string(o.State)]++
		}
	}
	var diff []string
	for dev, st := range sim {
		c.Sim[st]++
		if got, ok := server[dev]; !ok {
			diff = append(diff, fmt.Sprintf("device %s: simulator %s, server has no outcome", dev, st))
		} else if got != st {
			diff = append(diff, fmt.Sprintf("device %s: simulator %s, server %s", dev, st, got))
		}
	}
	for dev, st := range server {
		if _, ok := sim[dev]; !ok {
			diff = append(diff, fmt.Sprintf("device %s: simulator none, server %s", dev, st))
		}
	}
	sort.Strings(diff)
	return c, diff
}

// compareVersions compares what each simulated device runs with the
// server's fleet report.
func compareVersions(devs []*Device, fleet []api.FleetRow) (Compare, []string) {
	c := Compare{Sim: map[string]int{}, Server: map[string]int{}}
	server := map[string]string{}
	for _, r := range fleet {
		server[r.DeviceID] = r.Version
	}
	var diff []string
	for _, d := range devs {
		c.Sim[d.Version]++
		got, ok := server[d.ID]
		if !ok {
			diff = append(diff, fmt.Sprintf("device %s: not in the fleet report", d.ID))
			continue
		}
		c.Server[got]++
		if got != d.Version {
			diff = append(diff, fmt.Sprintf("device %s: runs %s, fleet report says %s", d.ID, d.Version, got))
		}
	}
	sort.Strings(diff)
	return c, diff
}

// Judge sets Lost, Mismatches (at most 20 lines, and a count of the rest)
// and OK: no error, no unacknowledged report, no difference.
func (sum *Summary) Judge(diffs []string) {
	sum.Lost = len(diffs)
	if len(diffs) > 20 {
		diffs = append(diffs[:20:20], fmt.Sprintf("... and %d more", len(diffs)-20))
	}
	sum.Mismatches = diffs
	sum.OK = sum.ErrorCount == 0 && sum.Unacknowledged == 0 && sum.Lost == 0
}

// DeviceTransport is the one transport all simulated devices share:
// keep-alive connections to the server, at most conns of them.
func DeviceTransport(hc *http.Client, conns int) *http.Transport {
	tr := hc.Transport.(*http.Transport).Clone()
	tr.ResponseHeaderTimeout = 30 * time.Second
	tr.MaxConnsPerHost = conns
	tr.MaxIdleConnsPerHost = conns
	tr.MaxIdleConns = conns
	tr.IdleConnTimeout = 90 * time.Second
	return tr
}

// SetLast records st as device's last acknowledged state in rollout
// rolloutID, as an acknowledged report would: for checking what a run's
// comparison with the server finds when the two disagree.
func (s *Stats) SetLast(device, rolloutID, st string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.last[device] = state{Rollout: rolloutID, State: st}
}
