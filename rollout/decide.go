package rollout

import (
	"fmt"
	"strings"
	"time"

	"github.com/tufota/tufota"
)

// Phase is the state of a rollout.
type Phase string

// Rollout phases. Scheduled, running, waiting-approval and paused rollouts
// are active: they own their devices. Completed, aborted and rolled-back
// are final.
const (
	Draft           Phase = "draft"
	Scheduled       Phase = "scheduled"
	Running         Phase = "running"
	WaitingApproval Phase = "waiting-approval"
	Paused          Phase = "paused"
	Completed       Phase = "completed"
	Aborted         Phase = "aborted"
	RolledBack      Phase = "rolled-back"
)

// Phases lists every phase.
var Phases = []Phase{Draft, Scheduled, Running, WaitingApproval, Paused, Completed, Aborted, RolledBack}

// Active reports whether a rollout in phase p owns its devices: scheduled,
// running, waiting-approval or paused.
func (p Phase) Active() bool {
	return p == Scheduled || p == Running || p == WaitingApproval || p == Paused
}

// Final reports whether nothing can change a rollout in phase p except a
// rollback of a completed or aborted one.
func (p Phase) Final() bool { return p == Completed || p == Aborted || p == RolledBack }

// State is what Decide needs to know about a rollout.
type State struct {
	Phase Phase
	// Wave is the index (0-based) of the latest started wave, -1 before
	// the first.
	Wave int
	// WaveStartedAt is when the latest wave started.
	WaveStartedAt time.Time
	// StartAt is when a scheduled rollout starts; zero means at once.
	StartAt time.Time
	// Approved records that the approval gate has been passed.
	Approved bool
	// Baseline is the health at the last resume: people who resume a
	// rollout paused by a gate accept the failures seen so far, and the
	// gates then judge only what comes after.
	Baseline Baseline
	Plan     Plan
}

// Baseline is the part of a rollout's health accepted at a resume.
type Baseline struct {
	Reports  int `json:"reports"`
	Failures int `json:"failures"`
}

// Health is the measured state of a rollout's started waves, counted over
// its members: the devices in the cohort that the started waves' cutoffs
// cover, plus every device that was offered the release.
type Health struct {
	// Cohort is the number of devices in the cohort now; it sizes the next
	// wave.
	Cohort int
	// Pinned is how many more devices match the cohort but are kept from
	// the release by a pin: not in Cohort, never offered.
	Pinned int
	// Members is the number of devices in the started waves.
	Members int
	// Offered is how many members were offered the release.
	Offered int
	// Installed members confirmed a good boot of the release.
	Installed int
	// Failed members reported failed or rolled-back.
	Failed int
	// Silent members accepted the release but have not reported for longer
	// than the plan's device timeout, or deferred it past the plan's max
	// deferral; they count as failures.
	Silent int
	// Deferred members said "not now" and their deferral runs (Plan's
	// MaxDeferral): they are neither failed nor silent, and have no
	// outcome yet.
	Deferred int
	// OverDeferred is how many of the Silent members deferred past the
	// plan's max deferral (the others went quiet past the device timeout).
	OverDeferred int
	// WaveMembers is how many members joined in the latest started wave,
	// and WaveReports how many of them have an outcome: a wave may end only
	// when its own devices reported, not on the strength of earlier waves.
	WaveMembers int
	WaveReports int
}

// Reports returns the number of members with an outcome.
func (h Health) Reports() int { return h.Installed + h.Failed + h.Silent }

// Failures returns failed plus silent members.
func (h Health) Failures() int { return h.Failed + h.Silent }

// Action is what Decide tells the controller to do.
type Action string

// Actions.
const (
	Hold         Action = "hold"          // nothing changes
	Start        Action = "start"         // a scheduled rollout starts its first wave
	Advance      Action = "advance"       // the next wave starts
	Pause        Action = "pause"         // a gate broke; people must look
	Abort        Action = "abort"         // a gate broke and the plan says abort
	WaitApproval Action = "wait-approval" // the next wave needs a person's approval
	Complete     Action = "complete"      // the last wave is done
)

// Decision is Decide's answer. For Start and Advance, Wave is the wave that
// starts and Size its planned cumulative size for the cohort of now.
type Decision struct {
	Action Action
	Phase  Phase
	Wave   int
	Size   int
	Reason string
}

// Decide is the rollout controller's state machine, as a pure function of
// the rollout's state, the time and the measured health. It never fails:
// a state it cannot move from yields Hold with the reason.
//
// For a running rollout it checks, in order: the health gates (absolute
// failures, then the failure rate over all reports once MinReports of them
// are in, or all members reported), which pause or abort; a pending
// approval; the soak time; the minimum number of reports from the latest
// wave's own devices; completion of the last wave (every member has an
// outcome); the approval gate; the maintenance window; and then starts the
// next wave.
func Decide(s State, now time.Time, h Health) Decision {
	hold := func(format string, args ...any) Decision {
		return Decision{Action: Hold, Phase: s.Phase, Wave: s.Wave, Reason: fmt.Sprintf(format, args...)}
	}
	p := s.Plan
	n := len(p.Waves)
	switch s.Phase {
	case Draft:
		return hold("draft: nothing happens until someone starts it")
	case Scheduled:
		if now.Before(s.StartAt) {
			return hold("scheduled to start at %s", s.StartAt.UTC().Format(time.RFC3339))
		}
		size := waveSize(p, 0, h.Cohort)
		why := "starting"
		if !s.StartAt.IsZero() {
			why = "start time " + s.StartAt.UTC().Format(time.RFC3339) + " reached"
		}
		return Decision{Action: Start, Phase: Running, Wave: 0, Size: size,
			Reason: fmt.Sprintf("%s: wave 1 of %d (%s, %s) starts", why, n, p.Waves[0], plural(size, "device"))}
	case Running, WaitingApproval:
	case Paused:
		return hold("paused")
	default:
		return hold("%s: final", s.Phase)
	}
	if s.Wave < 0 || s.Wave >= n {
		return hold("running with wave index %d outside the plan's %d waves", s.Wave, n)
	}
	wave := s.Wave + 1 // 1-based, for people

	if d, broke := gates(s, h, wave); broke {
		return d
	}
	if s.Phase == WaitingApproval && !s.Approved {
		return hold("waiting for approval of wave %d", wave+1)
	}
	if left := s.WaveStartedAt.Add(p.Soak).Sub(now); left > 0 {
		return hold("wave %d soaking: %s of %s left", wave, left.Round(time.Second), p.Soak)
	}
	need := min(p.MinReports, h.WaveMembers)
	if h.WaveReports < need {
		return hold("wave %d waiting for reports from its devices: %d of %d needed%s", wave, h.WaveReports, need, deferredNote(h))
	}
	if wave == n {
		if h.Reports() < h.Members {
			return hold("wave %d of %d waiting for %d of %d devices to report%s", wave, n, h.Members-h.Reports(), h.Members, deferredNote(h))
		}
		return Decision{Action: Complete, Phase: Completed, Wave: s.Wave,
			Reason: fmt.Sprintf("wave %d of %d done: %s", wave, n, outcomes(h, p))}
	}
	if p.ApprovalAfterWave == wave && !s.Approved {
		return Decision{Action: WaitApproval, Phase: WaitingApproval, Wave: s.Wave,
			Reason: fmt.Sprintf("wave %d healthy (%s); wave %d needs approval by someone other than the rollout's creator", wave, outcomes(h, p), wave+1)}
	}
	if !p.Window.IsZero() && !p.Window.Contains(now) {
		return hold("wave %d healthy; outside maintenance window %s: wave %d waits until %s",
			wave, p.Window, wave+1, p.Window.Next(now).UTC().Format(time.RFC3339))
	}
	size := waveSize(p, s.Wave+1, h.Cohort)
	return Decision{Action: Advance, Phase: Running, Wave: s.Wave + 1, Size: size,
		Reason: fmt.Sprintf("wave %d healthy after soak %s (%s); wave %d of %d (%s, %s) starts",
			wave, p.Soak, outcomes(h, p), wave+1, n, p.Waves[s.Wave+1], plural(size, "device"))}
}

// gates checks the health gates on what happened since the baseline.
func gates(s State, h Health, wave int) (Decision, bool) {
	p := s.Plan
	reports := max(h.Reports()-s.Baseline.Reports, 0)
	failures := max(h.Failures()-s.Baseline.Failures, 0)
	since := ""
	if s.Baseline != (Baseline{}) {
		since = " since the last resume"
	}
	var why string
	switch {
	case p.MaxFailures != nil && failures > *p.MaxFailures:
		why = fmt.Sprintf("wave %d: %d failures%s%s above max %d", wave, failures, silentNote(h, p), since, *p.MaxFailures)
	default:
		need := min(p.MinReports, max(h.Members-s.Baseline.Reports, 0))
		if reports == 0 || reports < need {
			return Decision{}, false
		}
		rate := float64(failures) / float64(reports)
		if rate <= p.MaxFailureRate {
			return Decision{}, false
		}
		why = fmt.Sprintf("wave %d: failure rate %s (%d of %d reports%s)%s above max %s",
			wave, FormatRate(rate), failures, reports, silentNote(h, p), since, FormatRate(p.MaxFailureRate))
	}
	if p.OnBreach == BreachAbort {
		return Decision{Action: Abort, Phase: Aborted, Wave: s.Wave, Reason: why}, true
	}
	return Decision{Action: Pause, Phase: Paused, Wave: s.Wave, Reason: why}, true
}

func silentNote(h Health, p Plan) string {
	if h.Silent == 0 {
		return ""
	}
	return "; " + silentText(h, p)
}

// silentText says how many members are silent and why.
func silentText(h Health, p Plan) string {
	var parts []string
	if n := h.Silent - h.OverDeferred; n > 0 {
		parts = append(parts, fmt.Sprintf("%d silent past device timeout %s", n, p.DeviceTimeout))
	}
	if h.OverDeferred > 0 {
		parts = append(parts, fmt.Sprintf("%d silent past max deferral %s", h.OverDeferred, p.MaxDeferralOf()))
	}
	return strings.Join(parts, ", ")
}

func deferredNote(h Health) string {
	if h.Deferred == 0 {
		return ""
	}
	return fmt.Sprintf(" (%d deferred)", h.Deferred)
}

func outcomes(h Health, p Plan) string {
	parts := []string{fmt.Sprintf("%d installed", h.Installed), fmt.Sprintf("%d failed", h.Failed)}
	if h.Silent > 0 {
		parts = append(parts, silentText(h, p))
	}
	if h.Deferred > 0 {
		parts = append(parts, fmt.Sprintf("%d deferred", h.Deferred))
	}
	return strings.Join(parts, ", ")
}

// plural returns "1 device", "2 devices".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

func waveSize(p Plan, i, cohort int) int {
	if i < 0 || i >= len(p.Waves) {
		return 0
	}
	return Sizes(p.Waves, cohort)[i]
}

// Command is an action a person takes on a rollout.
type Command string

// Commands.
const (
	CmdStart    Command = "start"
	CmdPause    Command = "pause"
	CmdResume   Command = "resume"
	CmdApprove  Command = "approve"
	CmdAbort    Command = "abort"
	CmdRollback Command = "rollback"
)

// Transition returns the phase a person's command moves a rollout from
// phase from to. Start moves a draft to Scheduled; the service moves it on
// to Running when it has no future start time. Errors are EConflict and
// say why the command does not apply.
func Transition(from Phase, cmd Command) (Phase, error) {
	deny := func(why string) (Phase, error) {
		return from, tufota.Errorf(tufota.EConflict, "cannot %s a %s rollout: %s", cmd, from, why)
	}
	if from == RolledBack {
		return deny("it is rolled back, which is final")
	}
	switch cmd {
	case CmdStart:
		if from == Draft {
			return Scheduled, nil
		}
		return deny("only a draft can be started")
	case CmdPause:
		switch from {
		case Scheduled, Running, WaitingApproval:
			return Paused, nil
		case Paused:
			return deny("it is paused already")
		}
		return deny("only a scheduled, running or waiting rollout can be paused")
	case CmdResume:
		if from == Paused {
			return Running, nil
		}
		return deny("only a paused rollout can be resumed")
	case CmdApprove:
		if from == WaitingApproval {
			return Running, nil
		}
		return deny("it is not waiting for approval")
	case CmdAbort:
		if from == Draft || from.Active() {
			return Aborted, nil
		}
		return deny("it is final already")
	case CmdRollback:
		switch from {
		case Running, WaitingApproval, Paused, Completed, Aborted:
			return RolledBack, nil
		}
		return deny("it never reached a device")
	}
	return from, tufota.Errorf(tufota.EInvalid, "unknown command %q", cmd)
}
