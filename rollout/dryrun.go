package rollout

import (
	"context"
	"slices"
	"time"
)

// maxDryRunList caps each device list of a dry run; the counts are exact.
const maxDryRunList = 1000

// DryRun is what a rollout would do before it starts: which devices its
// cohort holds now and which wave each falls into, and which devices the
// selector matches that it would not offer the release (pinned, already
// on the release or newer, other hardware, owned by another active
// rollout), and whether its maintenance window is open.
type DryRun struct {
	// RolloutID is the draft planned; empty for a spec not yet created,
	// whose wave membership is not known yet (it depends on the rollout's
	// ID): its waves carry sizes only.
	RolloutID string `json:"rollout_id,omitempty"`
	Release   string `json:"release"`
	Selector  string `json:"selector"`
	// Matched is how many registered devices match the selector; Cohort
	// how many of them the rollout would offer the release.
	Matched int          `json:"matched"`
	Cohort  int          `json:"cohort"`
	Waves   []DryRunWave `json:"waves"`
	// The devices the selector matches that the rollout would not offer
	// the release, by reason (lists capped at 1000; counts exact).
	Pinned         DeviceList `json:"pinned"`
	OnRelease      DeviceList `json:"on_release"`
	Newer          DeviceList `json:"newer"`
	OtherHardware  DeviceList `json:"other_hardware"`
	InOtherRollout DeviceList `json:"in_other_rollout"`
	// Window is the plan's maintenance window, empty for none; WindowOpen
	// whether it is open at At, and WindowOpensAt when it next opens if
	// it is closed. Offers and new waves happen only inside it.
	Window        string     `json:"window,omitempty"`
	WindowOpen    bool       `json:"window_open"`
	WindowOpensAt *time.Time `json:"window_opens_at,omitempty"`
	At            time.Time  `json:"at"`
}

// DeviceList is a count of devices and their IDs (capped).
type DeviceList struct {
	Count   int      `json:"count"`
	Devices []string `json:"devices"`
}

func (l *DeviceList) add(id string) {
	l.Count++
	if len(l.Devices) < maxDryRunList {
		l.Devices = append(l.Devices, id)
	}
}

// DryRunWave is one planned wave: Size is cumulative as in the plan, New
// how many devices join in it, Devices which (for a draft: known).
type DryRunWave struct {
	Number  int      `json:"wave"`
	Spec    string   `json:"spec"`
	Size    int      `json:"size"`
	New     int      `json:"new"`
	Devices []string `json:"devices,omitempty"`
}

// PlanWaves returns, for each wave of plan, the devices of cohort that
// would join in it if every wave started with cohort as it is now: the
// same cutoffs the controller freezes as waves start (NextCutoff). A pure
// function of the rollout ID, the plan and the cohort.
func PlanWaves(rolloutID string, plan Plan, cohort []string) [][]string {
	sizes := Sizes(plan.Waves, len(cohort))
	cutoffs := make([]Cutoff, 0, len(plan.Waves))
	prev := Cutoff{}
	for i, w := range plan.Waves {
		prev = NextCutoff(rolloutID, cohort, sizes[i], w.BasisPoints == 10000, prev)
		cutoffs = append(cutoffs, prev)
	}
	out := make([][]string, len(plan.Waves))
	ids := slices.Clone(cohort)
	slices.Sort(ids)
	for _, id := range ids {
		if w := WaveOf(cutoffs, KeyOf(rolloutID, id)); w >= 0 {
			out[w] = append(out[w], id)
		}
	}
	return out
}

// PlanRollout is the dry run of a draft rollout (by ID): its waves with
// the devices in each. Errors: ENotFound for an unknown rollout.
func (s *Service) PlanRollout(ctx context.Context, id string) (DryRun, error) {
	r, err := s.rollout(ctx, s.db, id)
	if err != nil {
		return DryRun{}, err
	}
	return s.dryRun(ctx, &r, true)
}

// PlanSpec is the dry run of a rollout spec before it is created: counts
// per wave (which devices fall into which wave depends on the ID the
// rollout gets). Errors as CreateRollout's for a bad spec, except that an
// empty or overlapping cohort is reported, not refused.
func (s *Service) PlanSpec(ctx context.Context, spec Spec) (DryRun, error) {
	r, _, err := s.draft(ctx, spec, ControllerActor)
	if err != nil {
		return DryRun{}, err
	}
	return s.dryRun(ctx, &r, false)
}

func (s *Service) dryRun(ctx context.Context, r *Rollout, members bool) (DryRun, error) {
	devices, err := s.allDevices(ctx)
	if err != nil {
		return DryRun{}, err
	}
	pins, err := s.activePins(ctx)
	if err != nil {
		return DryRun{}, err
	}
	owned := map[string]bool{}
	active, err := s.activeRollouts(ctx)
	if err != nil {
		return DryRun{}, err
	}
	for i := range active {
		o := &active[i]
		if o.ID == r.ID {
			continue
		}
		statuses, err := s.rolloutStatuses(ctx, o.ID)
		if err != nil {
			return DryRun{}, err
		}
		for _, id := range population(o, devices, statuses, pins) {
			owned[id] = true
		}
	}
	now := s.clock()
	dr := DryRun{RolloutID: r.ID, Release: r.Release, Selector: r.Selector, At: now, Waves: []DryRunWave{}}
	var cohort []string
	for _, d := range devices {
		if !r.selector.Match(d.Device) {
			continue
		}
		dr.Matched++
		_, isPinned := pins.Blocks(&d.Device, r.ReleaseVersion)
		switch {
		case !slices.Contains(r.Hardware, d.Hardware):
			dr.OtherHardware.add(d.ID)
		case d.Version == r.ReleaseVersion:
			dr.OnRelease.add(d.ID)
		case !r.eligible(d.Device):
			dr.Newer.add(d.ID)
		case isPinned:
			dr.Pinned.add(d.ID)
		case owned[d.ID]:
			dr.InOtherRollout.add(d.ID)
		default:
			cohort = append(cohort, d.ID)
		}
	}
	dr.Cohort = len(cohort)
	sizes := Sizes(r.Plan.Waves, len(cohort))
	var waves [][]string
	if members && r.ID != "" {
		waves = PlanWaves(r.ID, r.Plan, cohort)
	}
	prev := 0
	for i, w := range r.Plan.Waves {
		dw := DryRunWave{Number: i + 1, Spec: w.String(), Size: sizes[i], New: sizes[i] - prev}
		if waves != nil {
			dw.New = len(waves[i])
			dw.Devices = waves[i]
			if len(dw.Devices) > maxDryRunList {
				dw.Devices = dw.Devices[:maxDryRunList]
			}
		}
		prev = sizes[i]
		dr.Waves = append(dr.Waves, dw)
	}
	if w := r.Plan.Window; !w.IsZero() {
		dr.Window = w.String()
		dr.WindowOpen = w.Contains(now)
		if !dr.WindowOpen {
			dr.WindowOpensAt = timePtr(w.Next(now).UTC())
		}
	} else {
		dr.WindowOpen = true
	}
	for _, l := range []*DeviceList{&dr.Pinned, &dr.OnRelease, &dr.Newer, &dr.OtherHardware, &dr.InOtherRollout} {
		if l.Devices == nil {
			l.Devices = []string{}
		}
	}
	return dr, nil
}
