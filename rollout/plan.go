package rollout

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/tufota/tufota"
)

// DefaultDeviceTimeout is how long a device that accepted an update may
// stay silent before it counts as failed, when a plan does not say.
const DefaultDeviceTimeout = 2 * time.Hour

// Breach actions: what a rollout does when a health gate fails.
const (
	BreachPause = "pause"
	BreachAbort = "abort"
)

// Plan is how a rollout proceeds: its waves and the gates between them.
// The zero values of Soak, Window and ApprovalAfterWave mean no soak, no
// window and no approval; MaxFailures nil means no absolute cap.
type Plan struct {
	Waves []WaveSpec
	// Soak is how long a wave runs before the next may start.
	Soak time.Duration
	// MinReports is how many devices must report an outcome (installed,
	// failed, rolled back, or silent past DeviceTimeout) before a wave may
	// end and before the failure rate is judged. A wave with fewer devices
	// needs all of them.
	MinReports int
	// MaxFailureRate is the highest tolerated share of failures among the
	// outcomes, 0..1 (0.05 is 5%). The gate breaks when the rate is above it.
	MaxFailureRate float64
	// MaxFailures, when set, is the highest tolerated number of failures;
	// the gate breaks at MaxFailures+1, whatever the number of reports.
	MaxFailures *int
	// DeviceTimeout is how long a device that was offered the release may
	// go without a report before it counts as failed (silent).
	DeviceTimeout time.Duration
	// ApprovalAfterWave, when above zero, holds the rollout after that wave
	// (1-based) until a person other than its creator approves.
	ApprovalAfterWave int
	// Window, when set, limits offers to devices and the start of new waves
	// to the window's hours.
	Window Window
	// OnBreach is BreachPause (the default when empty) or BreachAbort.
	OnBreach string
	// MaxDeferral is how long a device may defer the update ("not now")
	// before it counts as silent; zero means DefaultMaxDeferral. While a
	// device's deferral runs, DeviceTimeout does not.
	MaxDeferral time.Duration
	// Priority orders overlapping rollouts: a device in the cohorts of
	// several active rollouts belongs to the one with the highest priority
	// (then the earliest created). Two active rollouts with the same
	// priority may not overlap.
	Priority int
	// Deadline, when set, is when the update becomes required: before it
	// the device is offered the release as optional (it may defer), from
	// it on as required (a safety fix).
	Deadline time.Time
}

// Required reports whether an offer at now is required: the plan has a
// deadline and now is at or after it.
func (p Plan) Required(now time.Time) bool {
	return !p.Deadline.IsZero() && !now.Before(p.Deadline)
}

// maxPriority bounds a rollout's priority.
const maxPriority = 1000

// Validate checks the plan; errors are EInvalid.
func (p Plan) Validate() error {
	if err := ValidateWaves(p.Waves); err != nil {
		return err
	}
	switch {
	case p.Soak < 0:
		return tufota.Errorf(tufota.EInvalid, "soak %s is negative", p.Soak)
	case p.MinReports < 1:
		return tufota.Errorf(tufota.EInvalid, "min reports %d: a wave must wait for at least one report", p.MinReports)
	case p.MaxFailureRate < 0 || p.MaxFailureRate > 1 || p.MaxFailureRate != p.MaxFailureRate:
		return tufota.Errorf(tufota.EInvalid, "max failure rate %s is not between 0%% and 100%%", FormatRate(p.MaxFailureRate))
	case p.MaxFailures != nil && *p.MaxFailures < 0:
		return tufota.Errorf(tufota.EInvalid, "max failures %d is negative", *p.MaxFailures)
	case p.DeviceTimeout <= 0:
		return tufota.Errorf(tufota.EInvalid, "device timeout %s must be above zero", p.DeviceTimeout)
	case p.ApprovalAfterWave < 0:
		return tufota.Errorf(tufota.EInvalid, "approval after wave %d is negative", p.ApprovalAfterWave)
	case p.ApprovalAfterWave >= len(p.Waves):
		return tufota.Errorf(tufota.EInvalid, "approval after wave %d: the plan has %d waves, so no wave follows it", p.ApprovalAfterWave, len(p.Waves))
	case p.OnBreach != "" && p.OnBreach != BreachPause && p.OnBreach != BreachAbort:
		return tufota.Errorf(tufota.EInvalid, "on breach %q: want pause or abort", p.OnBreach)
	}
	if p.Priority < 0 || p.Priority > maxPriority {
		return tufota.Errorf(tufota.EInvalid, "priority %d is not between 0 and %d", p.Priority, maxPriority)
	}
	return validateMaxDeferral(p.MaxDeferral)
}

// ParseRate parses a percentage such as "5%" or "0.5%" into a fraction
// (0.05, 0.005). Errors are EInvalid.
func ParseRate(s string) (float64, error) {
	t := strings.TrimSpace(s)
	num, ok := strings.CutSuffix(t, "%")
	if !ok {
		return 0, tufota.Errorf(tufota.EInvalid, "failure rate %q: write a percentage, e.g. 5%%", s)
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
	if err != nil || v != v {
		return 0, tufota.Errorf(tufota.EInvalid, "failure rate %q is not a percentage, e.g. 5%%", s)
	}
	if v < 0 || v > 100 {
		return 0, tufota.Errorf(tufota.EInvalid, "failure rate %q is not between 0%% and 100%%", s)
	}
	return v / 100, nil
}

// FormatRate formats a fraction as a percentage with one decimal: "5.0%".
func FormatRate(r float64) string { return fmt.Sprintf("%.1f%%", r*100) }

type planJSON struct {
	Waves             []WaveSpec `json:"waves"`
	Soak              string     `json:"soak"`
	MinReports        int        `json:"min_reports"`
	MaxFailureRate    float64    `json:"max_failure_rate"`
	MaxFailures       *int       `json:"max_failures,omitempty"`
	DeviceTimeout     string     `json:"device_timeout"`
	ApprovalAfterWave int        `json:"approval_after_wave,omitempty"`
	Window            Window     `json:"window,omitzero"`
	OnBreach          string     `json:"on_breach,omitempty"`
	MaxDeferral       string     `json:"max_deferral,omitempty"`
	Priority          int        `json:"priority,omitempty"`
	Deadline          *time.Time `json:"deadline,omitempty"`
}

// MarshalJSON writes durations as Go duration strings ("30m0s") and waves
// and the window in their text form.
func (p Plan) MarshalJSON() ([]byte, error) {
	return json.Marshal(planJSON{
		Waves: p.Waves, Soak: p.Soak.String(), MinReports: p.MinReports,
		MaxFailureRate: p.MaxFailureRate, MaxFailures: p.MaxFailures,
		DeviceTimeout: p.DeviceTimeout.String(), ApprovalAfterWave: p.ApprovalAfterWave,
		Window: p.Window, OnBreach: p.OnBreach, MaxDeferral: durationOrEmpty(p.MaxDeferral), Priority: p.Priority, Deadline: timePtr(p.Deadline),
	})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (p *Plan) UnmarshalJSON(b []byte) error {
	var j planJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	soak, err := parseDuration("soak", j.Soak)
	if err != nil {
		return err
	}
	timeout, err := parseDuration("device timeout", j.DeviceTimeout)
	if err != nil {
		return err
	}
	maxDeferral, err := parseDuration("max deferral", j.MaxDeferral)
	if err != nil {
		return err
	}
	*p = Plan{
		Waves: j.Waves, Soak: soak, MinReports: j.MinReports, MaxFailureRate: j.MaxFailureRate,
		MaxFailures: j.MaxFailures, DeviceTimeout: timeout, ApprovalAfterWave: j.ApprovalAfterWave,
		Window: j.Window, OnBreach: j.OnBreach, MaxDeferral: maxDeferral, Priority: j.Priority,
	}
	if j.Deadline != nil {
		p.Deadline = j.Deadline.UTC()
	}
	return nil
}

func durationOrEmpty(d time.Duration) string {
	if d == 0 {
		return ""
	}
	return d.String()
}

func parseDuration(what, s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, tufota.Errorf(tufota.EInvalid, "%s %q is not a duration such as 30m or 2h", what, s)
	}
	return d, nil
}
