package ui

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/tufota/tufota/rollout"
)

// Chart geometry, in SVG user units.
const (
	chartWidth  = 640.0
	chartLabel  = 120.0 // the wave labels' column
	rowHeight   = 34.0
	chartBar    = 22.0
	chartMargin = 8.0
)

// segment is one coloured part of a wave's bar.
type segment struct {
	Class string  `json:"class"` // installed, downloading, failed, silent, deferred, waiting
	Name  string  `json:"name"`
	N     int     `json:"n"`
	X     float64 `json:"x"`
	W     float64 `json:"w"`
}

// chartRow is one wave of the chart.
type chartRow struct {
	Wave        int       `json:"wave"`
	Spec        string    `json:"spec"`
	Started     bool      `json:"started"`
	Size        int       `json:"size"`
	Devices     int       `json:"devices"`
	Offered     int       `json:"offered"`
	Installed   int       `json:"installed"`
	Downloading int       `json:"downloading"`
	Failed      int       `json:"failed"`
	Silent      int       `json:"silent"`
	Deferred    int       `json:"deferred"` // said "not now"; their deferral runs
	Y           float64   `json:"y"`
	Y2          float64   `json:"y2"` // the gate line's lower end
	Segments    []segment `json:"segments"`
	// GateX is where the failure-rate gate stands on this wave's bar: the
	// failed plus silent devices that would break it. -1 without a gate.
	GateX    float64 `json:"gate_x"`
	GateText string  `json:"gate_text"`
}

// chart is the rollout page's per-wave chart, rendered by the template and
// sent again by the live stream.
type chart struct {
	State  rollout.Phase `json:"state"`
	Reason string        `json:"reason"`
	Next   string        `json:"next"`
	Wave   int           `json:"wave"`
	Gate   string        `json:"gate"`
	Width  float64       `json:"width"`
	Label  float64       `json:"label"` // where the bars start
	Span   float64       `json:"span"`  // how wide a bar is
	Height float64       `json:"height"`
	Rows   []chartRow    `json:"rows"`
	Final  bool          `json:"final"`
}

func final(p rollout.Phase) bool {
	return p == rollout.Completed || p == rollout.Aborted || p == rollout.RolledBack
}

// newChart lays out st's waves: each bar spans the wave's devices (its
// planned size before it starts), split into installed, downloading,
// failed, silent, deferred and not yet offered.
func newChart(st rollout.Status) chart {
	p := st.Plan
	ch := chart{State: st.State, Reason: st.Reason, Next: st.Next, Wave: st.Wave, Width: chartWidth, Label: chartLabel, Span: chartWidth - chartLabel - chartMargin, Final: final(st.State)}
	ch.Gate = fmt.Sprintf("gate: at most %g%% failed or silent", p.MaxFailureRate*100)
	if p.MaxFailures != nil {
		ch.Gate += fmt.Sprintf(" and at most %d", *p.MaxFailures)
	}
	ch.Gate += fmt.Sprintf(", judged after %d reports; silent after %s", p.MinReports, humanDuration(p.DeviceTimeout))
	span := chartWidth - chartLabel - chartMargin
	prev := 0
	for i, w := range st.Waves {
		r := chartRow{Wave: w.Number, Spec: w.Spec, Started: w.Started, Size: w.Size, Devices: w.Devices, Offered: w.Offered,
			Installed: w.Installed, Downloading: w.InProgress, Failed: w.Failed, Silent: w.Silent, Deferred: w.Deferred, Y: float64(i)*rowHeight + chartMargin, GateX: -1}
		r.Y2 = r.Y + chartBar + 4
		total := w.Devices
		if !w.Started {
			total = max(w.Size-prev, 0)
		}
		prev = max(prev, w.Size)
		x := chartLabel
		add := func(class, name string, n int) {
			if n <= 0 || total <= 0 {
				return
			}
			wd := span * float64(n) / float64(total)
			r.Segments = append(r.Segments, segment{Class: class, Name: name, N: n, X: round1(x), W: round1(wd)})
			x += wd
		}
		add("installed", "installed", w.Installed)
		add("downloading", "downloading", w.InProgress)
		add("failed", "failed", w.Failed)
		add("silent", "silent", w.Silent)
		add("deferred", "deferred", w.Deferred)
		add("waiting", "not offered yet", total-w.Offered)
		if total > 0 && p.MaxFailureRate > 0 {
			allowed := int(math.Floor(p.MaxFailureRate * float64(total)))
			if p.MaxFailures != nil {
				allowed = min(allowed, *p.MaxFailures)
			}
			r.GateX = round1(chartLabel + span*float64(allowed)/float64(total))
			r.GateText = fmt.Sprintf("gate: %d of %d may fail", allowed, total)
		}
		ch.Rows = append(ch.Rows, r)
	}
	ch.Height = float64(len(ch.Rows))*rowHeight + 2*chartMargin
	return ch
}

func round1(f float64) float64 { return math.Round(f*10) / 10 }

// live streams the rollout's chart as server-sent events ("status"), one
// when it changes and a comment every interval to keep the connection, for
// as long as the session lives; it ends after the rollout's final state.
func (u *UI) live(c echo.Context) error {
	ctx := c.Request().Context()
	id := c.Param("id")
	ck, _ := c.Request().Cookie(SessionCookie)
	w := c.Response()
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	t := time.NewTicker(u.cfg.LiveEvery)
	defer t.Stop()
	var last []byte
	for {
		st, err := u.cfg.Rollouts.Status(ctx, id)
		if err != nil {
			fmt.Fprintf(w, "event: error\ndata: %q\n\n", err.Error())
			w.Flush()
			return nil
		}
		ch := newChart(st)
		b, err := json.Marshal(ch)
		if err != nil {
			return err
		}
		if string(b) != string(last) {
			fmt.Fprintf(w, "event: status\ndata: %s\n\n", b)
			last = b
		} else {
			fmt.Fprint(w, ": keep-alive\n\n")
		}
		w.Flush()
		if ch.Final {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-u.done:
			return nil
		case <-t.C:
		}
		// The stream lasts only as long as its session and token.
		se, ok := u.sessions.Peek(ck.Value)
		if !ok || u.cfg.Tokens.Check(ctx, se.Principal.TokenID) != nil {
			fmt.Fprint(w, "event: signedout\ndata: {}\n\n")
			w.Flush()
			return nil
		}
	}
}
