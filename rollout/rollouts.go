package rollout

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/storage"
)

// Spec is a rollout request, field for field the flags of
// `tufota rollout create`. Text fields are parsed here, so every client
// gets the same errors.
type Spec struct {
	// Release is NAME@VERSION of a published release.
	Release string `json:"release"`
	// Cohort is the name of a saved cohort or a selector
	// ("hardware=pump-b,tag:icu"). A bare name must be a saved cohort.
	Cohort string `json:"cohort"`
	// Waves is the wave plan: "1%,10%,50%,100%" or "5,50,all".
	Waves string `json:"waves"`
	// Soak is how long each wave runs before the next ("30m"); empty is 0.
	Soak string `json:"soak,omitempty"`
	// MinReports is the reports a wave needs before it may end; 0 means 1.
	MinReports int `json:"min_reports,omitempty"`
	// MaxFailureRate is the highest tolerated failure rate ("5%"); empty
	// is 0%: any failure, once MinReports are in, pauses.
	MaxFailureRate string `json:"max_failure_rate,omitempty"`
	// MaxFailures, when set, caps the number of failures.
	MaxFailures *int `json:"max_failures,omitempty"`
	// DeviceTimeout is how long a device that accepted the release may stay
	// silent before it counts as failed ("2h"); empty is 2h.
	DeviceTimeout string `json:"device_timeout,omitempty"`
	// ApprovalRequiredAfterWave, when above zero, holds the rollout after
	// that wave until someone other than its creator approves.
	ApprovalRequiredAfterWave int `json:"approval_required_after_wave,omitempty"`
	// Window is a maintenance window ("Mon-Fri 01:00-05:00 Europe/Berlin").
	Window string `json:"window,omitempty"`
	// StartAt is when a started rollout begins (RFC 3339); empty is at once.
	StartAt string `json:"start_at,omitempty"`
	// OnBreach is "pause" (the default) or "abort".
	OnBreach string `json:"on_breach,omitempty"`
	// MaxDeferral is how long a device may defer the update ("72h") before
	// it counts as silent; empty is 24h.
	MaxDeferral string `json:"max_deferral,omitempty"`
	// Priority (0..1000, default 0) lets this rollout overlap active ones
	// of another priority: each shared device goes to the higher one.
	Priority int `json:"priority,omitempty"`
	// Deadline (RFC 3339), when set, is when the update turns from
	// optional into required for the devices it is offered to.
	Deadline string `json:"deadline,omitempty"`
}

// plan turns the spec's text into a validated Plan.
func (sp Spec) plan() (Plan, time.Time, error) {
	var p Plan
	var err error
	if p.Waves, err = ParseWaves(sp.Waves); err != nil {
		return Plan{}, time.Time{}, err
	}
	if p.Soak, err = parseDuration("soak", sp.Soak); err != nil {
		return Plan{}, time.Time{}, err
	}
	p.MinReports = sp.MinReports
	if p.MinReports == 0 {
		p.MinReports = 1
	}
	if sp.MaxFailureRate != "" {
		if p.MaxFailureRate, err = ParseRate(sp.MaxFailureRate); err != nil {
			return Plan{}, time.Time{}, err
		}
	}
	p.MaxFailures = sp.MaxFailures
	p.DeviceTimeout = DefaultDeviceTimeout
	if sp.DeviceTimeout != "" {
		if p.DeviceTimeout, err = parseDuration("device timeout", sp.DeviceTimeout); err != nil {
			return Plan{}, time.Time{}, err
		}
	}
	p.ApprovalAfterWave = sp.ApprovalRequiredAfterWave
	if sp.Window != "" {
		if p.Window, err = ParseWindow(sp.Window); err != nil {
			return Plan{}, time.Time{}, err
		}
	}
	p.OnBreach = sp.OnBreach
	p.Priority = sp.Priority
	if sp.Deadline != "" {
		d, err := time.Parse(time.RFC3339, sp.Deadline)
		if err != nil {
			return Plan{}, time.Time{}, tufota.Errorf(tufota.EInvalid, "deadline %q is not an RFC 3339 time such as 2026-05-01T02:00:00Z", sp.Deadline)
		}
		p.Deadline = d.UTC()
	}
	p.MaxDeferral = DefaultMaxDeferral
	if sp.MaxDeferral != "" {
		if p.MaxDeferral, err = parseDuration("max deferral", sp.MaxDeferral); err != nil {
			return Plan{}, time.Time{}, err
		}
		if p.MaxDeferral <= 0 {
			return Plan{}, time.Time{}, tufota.Errorf(tufota.EInvalid, "max deferral %s must be above zero", sp.MaxDeferral)
		}
	}
	if err := p.Validate(); err != nil {
		return Plan{}, time.Time{}, err
	}
	var startAt time.Time
	if sp.StartAt != "" {
		if startAt, err = time.Parse(time.RFC3339, sp.StartAt); err != nil {
			return Plan{}, time.Time{}, tufota.Errorf(tufota.EInvalid, "start at %q is not an RFC 3339 time such as 2026-05-01T02:00:00Z", sp.StartAt)
		}
	}
	return p, startAt.UTC(), nil
}

// Rollout is one release on its way to one cohort.
type Rollout struct {
	ID             string   `json:"id"`
	Release        string   `json:"release"` // NAME@VERSION
	ReleaseName    string   `json:"release_name"`
	ReleaseVersion string   `json:"release_version"`
	TargetPath     string   `json:"target_path"`
	Hardware       []string `json:"hardware"`
	// Cohort is the saved cohort the rollout was created for, if any;
	// Selector is the selector it uses (the cohort's at creation).
	Cohort   string `json:"cohort,omitempty"`
	Selector string `json:"selector"`
	Plan     Plan   `json:"plan"`
	State    Phase  `json:"state"`
	// Wave is the number (1-based) of the latest started wave, 0 before
	// the start.
	Wave          int        `json:"wave"`
	WaveStartedAt *time.Time `json:"wave_started_at,omitempty"`
	StartAt       *time.Time `json:"start_at,omitempty"`
	StartedAt     *time.Time `json:"started_at,omitempty"`
	FinishedAt    *time.Time `json:"finished_at,omitempty"`
	ApprovedBy    string     `json:"approved_by,omitempty"`
	ApprovedAt    *time.Time `json:"approved_at,omitempty"`
	// Reason is why the rollout last changed state.
	Reason string `json:"reason,omitempty"`
	// RollbackRelease is what a rollback assigned: NAME@VERSION, or
	// "previous" for each device's previous release.
	RollbackRelease    string     `json:"rollback_release,omitempty"`
	ReleasePublishedAt *time.Time `json:"release_published_at,omitempty"`
	CreatedBy          string     `json:"created_by"`
	CreatedAt          time.Time  `json:"created_at"`
	UpdatedAt          time.Time  `json:"updated_at"`
	// Warnings, in the answer to a create only, say what people should
	// know before they start it (a cohort mostly pinned outside the
	// release).
	Warnings []string `json:"warnings,omitempty"`

	selector   Selector
	releaseVer *tufota.Version // ReleaseVersion parsed, when read from the database
	waves      []waveRecord
	baseline   Baseline
	revision   int64
}

// waveRecord is a started wave as stored.
type waveRecord struct {
	StartedAt int64  `json:"started_at"`
	Size      int    `json:"size"`
	Cutoff    Cutoff `json:"cutoff"`
}

func (r *Rollout) cutoffs() []Cutoff {
	out := make([]Cutoff, len(r.waves))
	for i, w := range r.waves {
		out[i] = w.Cutoff
	}
	return out
}

// state returns what Decide needs.
func (r *Rollout) state() State {
	st := State{Phase: r.State, Wave: r.Wave - 1, Approved: r.ApprovedBy != "", Baseline: r.baseline, Plan: r.Plan}
	if r.WaveStartedAt != nil {
		st.WaveStartedAt = *r.WaveStartedAt
	}
	if r.StartAt != nil {
		st.StartAt = *r.StartAt
	}
	return st
}

const rolloutColumns = `id, release_name, release_version, target_path, hardware, release_published_at, cohort, selector, plan, state,
	wave, wave_started_at, waves, start_at, started_at, finished_at, approved_by, approved_at, baseline, reason, rollback_release,
	created_by, created_at, updated_at, revision`

func scanRollout(sc interface{ Scan(...any) error }) (Rollout, error) {
	var (
		r                                                      Rollout
		hardware, plan, state, waves, baseline                 string
		wave                                                   int64
		published, waveStarted, startAt, started, finished, ap sql.NullInt64
		created, updated                                       int64
	)
	if err := sc.Scan(&r.ID, &r.ReleaseName, &r.ReleaseVersion, &r.TargetPath, &hardware, &published, &r.Cohort, &r.Selector, &plan, &state,
		&wave, &waveStarted, &waves, &startAt, &started, &finished, &r.ApprovedBy, &ap, &baseline, &r.Reason, &r.RollbackRelease,
		&r.CreatedBy, &created, &updated, &r.revision); err != nil {
		return Rollout{}, err
	}
	r.Release = r.ReleaseName + "@" + r.ReleaseVersion
	r.State, r.Wave = Phase(state), int(wave)+1
	for _, f := range []struct {
		what string
		raw  string
		dst  any
	}{{"hardware", hardware, &r.Hardware}, {"plan", plan, &r.Plan}, {"waves", waves, &r.waves}, {"baseline", baseline, &r.baseline}} {
		if err := json.Unmarshal([]byte(f.raw), f.dst); err != nil {
			return Rollout{}, fmt.Errorf("rollout %s: stored %s: %w", r.ID, f.what, err)
		}
	}
	sel, err := ParseSelector(r.Selector)
	if err != nil {
		return Rollout{}, fmt.Errorf("rollout %s: stored selector: %w", r.ID, err)
	}
	r.selector = sel
	if v, err := tufota.ParseVersion(r.ReleaseVersion); err == nil {
		r.releaseVer = &v // parsed once: every poll compares against it
	}
	r.ReleasePublishedAt = timePtr(fromNull(published))
	r.WaveStartedAt, r.StartAt = timePtr(fromNull(waveStarted)), timePtr(fromNull(startAt))
	r.StartedAt, r.FinishedAt, r.ApprovedAt = timePtr(fromNull(started)), timePtr(fromNull(finished)), timePtr(fromNull(ap))
	r.CreatedAt, r.UpdatedAt = fromNanos(created), fromNanos(updated)
	return r, nil
}

func (s *Service) rollout(ctx context.Context, q storage.Querier, id string) (Rollout, error) {
	r, err := scanRollout(q.QueryRow(ctx, `SELECT `+rolloutColumns+` FROM rollouts WHERE id = ?`, id))
	if errors.Is(err, tufota.ErrNotFound) {
		return Rollout{}, tufota.Errorf(tufota.ENotFound, "no rollout %s", id)
	}
	if err != nil {
		return Rollout{}, fmt.Errorf("get rollout %s: %w", id, err)
	}
	return r, nil
}

func (s *Service) rollouts(ctx context.Context, where string, args ...any) ([]Rollout, error) {
	rows, err := s.db.Query(ctx, `SELECT `+rolloutColumns+` FROM rollouts `+where, args...)
	if err != nil {
		return nil, fmt.Errorf("list rollouts: %w", err)
	}
	defer rows.Close()
	var out []Rollout
	for rows.Next() {
		r, err := scanRollout(rows)
		if err != nil {
			return nil, fmt.Errorf("list rollouts: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list rollouts: %w", err)
	}
	return out, nil
}

// Rollout returns one rollout; ENotFound if there is none.
func (s *Service) Rollout(ctx context.Context, id string) (Rollout, error) {
	return s.rollout(ctx, s.db, id)
}

// Rollouts returns every rollout, newest first.
func (s *Service) Rollouts(ctx context.Context) ([]Rollout, error) {
	return s.rollouts(ctx, `ORDER BY created_at DESC, id`)
}

// resolveCohort returns the cohort name (if the spec names a saved one)
// and the selector.
func (s *Service) resolveCohort(ctx context.Context, spec string) (string, Selector, error) {
	spec = strings.TrimSpace(spec)
	if spec == "" {
		return "", Selector{}, tufota.Errorf(tufota.EInvalid, "cohort is required: a saved cohort's name or a selector such as hardware=pump-b,tag:icu")
	}
	if tufota.ValidateName("cohort", spec) == nil {
		c, err := s.Cohort(ctx, spec)
		if errors.Is(err, tufota.ErrNotFound) {
			return "", Selector{}, tufota.Errorf(tufota.ENotFound, "no cohort %s (create it with tufota cohort create, or give a selector such as hardware=pump-b)", spec)
		}
		if err != nil {
			return "", Selector{}, err
		}
		sel, err := ParseSelector(c.Selector)
		return c.Name, sel, err
	}
	sel, err := ParseSelector(spec)
	return "", sel, err
}

// CreateRollout creates a draft rollout of spec.Release to spec.Cohort;
// nothing reaches a device until someone starts it.
//
// Errors: EInvalid for a bad spec or an empty cohort (no registered device
// that matches the selector, has a supported hardware and runs an older
// version); ENotFound for an unknown release or cohort; EConflict for an
// unpublished release or a cohort that shares devices with an active
// rollout (the error names it).
func (s *Service) CreateRollout(ctx context.Context, spec Spec, actor string) (Rollout, error) {
	return s.CreateRolloutWith(ctx, spec, actor, nil)
}

// CreateRolloutWith is CreateRollout that runs in (when not nil) inside
// the transaction that creates the rollout, after its writes, with the new
// rollout: the rollout exists only with what in writes (its audit entry).
// Errors as CreateRollout's, and in's.
func (s *Service) CreateRolloutWith(ctx context.Context, spec Spec, actor string, in func(ctx context.Context, tx *storage.Tx, r Rollout) error) (Rollout, error) {
	if err := checkActor(actor); err != nil {
		return Rollout{}, err
	}
	r, rel, err := s.draft(ctx, spec, actor)
	if err != nil {
		return Rollout{}, err
	}
	name, version, plan, cohort, now := r.ReleaseName, r.ReleaseVersion, r.Plan, r.Cohort, r.CreatedAt
	var startAt time.Time
	if r.StartAt != nil {
		startAt = *r.StartAt
	}
	devices, err := s.allDevices(ctx)
	if err != nil {
		return Rollout{}, err
	}
	warnings, err := s.checkCohort(ctx, &r, devices)
	if err != nil {
		return Rollout{}, err
	}
	for attempt := 0; ; attempt++ {
		r.ID = s.newID()
		if err := tufota.ValidateName("rollout ID", r.ID); err != nil {
			return Rollout{}, fmt.Errorf("rollout ID generator: %w", err)
		}
		ev := Event{RolloutID: r.ID, Time: now, Actor: actor, Kind: EventCreated,
			Reason:  fmt.Sprintf("%s to %s in waves %s", r.Release, cohortLabel(r), FormatWaves(plan.Waves)),
			Details: map[string]string{"release": r.Release, "selector": r.Selector, "cohort": cohort, "plan": mustJSON(plan)}}
		taken := false
		err := s.db.Tx(ctx, func(tx *storage.Tx) error {
			if _, err := tx.Exec(ctx, `INSERT INTO rollouts (id, release_name, release_version, target_path, hardware, release_published_at,
				cohort, selector, plan, state, wave, start_at, created_by, created_at, updated_at, revision)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
				r.ID, name, version, r.TargetPath, mustJSON(r.Hardware), nullNanos(rel.PublishedAt), cohort, r.Selector, mustJSON(plan),
				string(Draft), -1, nullNanos(startAt), actor, nanos(now), nanos(now), 1); err != nil {
				taken = errors.Is(err, tufota.ErrConflict)
				return err
			}
			if err := s.rolloutChanged(ctx, tx); err != nil {
				return err
			}
			if err := insertEvent(ctx, tx, &ev); err != nil {
				return err
			}
			if err := s.recordEvents(ctx, tx, ev); err != nil {
				return err
			}
			if in == nil {
				return nil
			}
			created := r
			created.revision = 1
			return in(ctx, tx, created)
		})
		if taken && attempt < 3 {
			continue // ID collision
		}
		if err != nil {
			return Rollout{}, fmt.Errorf("create rollout: %w", err)
		}
		r.revision = 1
		r.Reason = ""
		r.Warnings = warnings
		s.notify(ctx, ev)
		return r, nil
	}
}

// draft makes the rollout spec asks for, without an ID, and returns it
// with its release. Errors as CreateRollout's.
func (s *Service) draft(ctx context.Context, spec Spec, actor string) (Rollout, ReleaseRef, error) {
	name, version, err := ParseRelease(spec.Release)
	if err != nil {
		return Rollout{}, ReleaseRef{}, err
	}
	plan, startAt, err := spec.plan()
	if err != nil {
		return Rollout{}, ReleaseRef{}, err
	}
	cohort, sel, err := s.resolveCohort(ctx, spec.Cohort)
	if err != nil {
		return Rollout{}, ReleaseRef{}, err
	}
	rel, err := s.lookupRelease(ctx, name, version)
	if err != nil {
		return Rollout{}, ReleaseRef{}, err
	}
	now := s.clock()
	r := Rollout{
		Release: name + "@" + version, ReleaseName: name, ReleaseVersion: version, TargetPath: rel.TargetPath,
		Hardware: slices.Clone(rel.Hardware), Cohort: cohort, Selector: sel.String(), Plan: plan, State: Draft,
		StartAt: timePtr(startAt), ReleasePublishedAt: timePtr(rel.PublishedAt.UTC()), CreatedBy: actor, CreatedAt: now, UpdatedAt: now,
		selector: sel,
	}
	if r.Hardware == nil {
		r.Hardware = []string{}
	}
	return r, rel, nil
}

func cohortLabel(r Rollout) string {
	if r.Cohort != "" {
		return "cohort " + r.Cohort + " (" + r.Selector + ")"
	}
	return "devices " + r.Selector
}

// population returns the IDs of the devices in r's cohort now (eligible, or
// offered already) by ID.
// A device the rollout never offered anything and that a pin keeps from
// the release is not in it.
func population(r *Rollout, devices []deviceRow, statuses map[string]statusRow, pins Pins) []string {
	var ids []string
	for _, d := range devices {
		if _, ok := statuses[d.ID]; ok || (r.eligible(d.Device) && !blocked(pins, d.Device, r)) {
			ids = append(ids, d.ID)
		}
	}
	return ids
}

// withoutClaimed drops from pop (r's population) the devices that an
// active rollout of higher priority owns, unless r has an outcome for
// them: they go to the higher one, and r neither sizes on them nor waits.
func (s *Service) withoutClaimed(ctx context.Context, r *Rollout, pop []string, devices []deviceRow, statuses map[string]statusRow, pins Pins) ([]string, error) {
	active, err := s.activeRollouts(ctx)
	if err != nil {
		return nil, err
	}
	claimed := map[string]bool{}
	for i := range active {
		o := &active[i]
		if o.ID == r.ID || o.Plan.Priority <= r.Plan.Priority {
			continue
		}
		theirs, err := s.rolloutStatuses(ctx, o.ID)
		if err != nil {
			return nil, err
		}
		for _, id := range population(o, devices, theirs, pins) {
			claimed[id] = true
		}
	}
	if len(claimed) == 0 {
		return pop, nil
	}
	out := pop[:0:0]
	for _, id := range pop {
		if st, ok := statuses[id]; (ok && final(st.State)) || !claimed[id] {
			out = append(out, id)
		}
	}
	return out, nil
}

func blocked(pins Pins, d Device, r *Rollout) bool {
	_, b := pins.Blocks(&d, r.ReleaseVersion)
	return b
}

// pinnedOut returns the devices of r's cohort that r never offered and
// that a pin keeps from its release, by ID.
func pinnedOut(r *Rollout, devices []deviceRow, statuses map[string]statusRow, pins Pins) []string {
	if pins.Len() == 0 {
		return nil
	}
	var ids []string
	for _, d := range devices {
		if _, ok := statuses[d.ID]; !ok && r.eligible(d.Device) && blocked(pins, d.Device, r) {
			ids = append(ids, d.ID)
		}
	}
	return ids
}

// checkCohort refuses an empty cohort and one that shares devices with
// another active rollout.
func (s *Service) checkCohort(ctx context.Context, r *Rollout, devices []deviceRow) (warnings []string, err error) {
	pins, err := s.activePins(ctx)
	if err != nil {
		return nil, err
	}
	var mine []string
	matched, newer, otherHW := 0, 0, 0
	pinned := map[string]int{} // pin label -> devices it keeps out
	npinned := 0
	for _, d := range devices {
		if !r.selector.Match(d.Device) {
			continue
		}
		matched++
		pin, isPinned := pins.Blocks(&d.Device, r.ReleaseVersion)
		switch {
		case r.eligible(d.Device) && isPinned:
			pinned[pin.Kind+" "+pin.Name+" to "+pin.Version+" ("+pin.Reason+")"]++
			npinned++
		case r.eligible(d.Device):
			mine = append(mine, d.ID)
		case !slices.Contains(r.Hardware, d.Hardware):
			otherHW++
		default:
			newer++
		}
	}
	var pinNote string
	if npinned > 0 {
		labels := sortedKeys(pinned)
		for i, l := range labels {
			labels[i] = fmt.Sprintf("%d by pin on %s", pinned[l], l)
		}
		pinNote = fmt.Sprintf("%d of %d devices that could take %s are pinned outside it: %s", npinned, npinned+len(mine), r.ReleaseVersion, strings.Join(labels, "; "))
	}
	if len(mine) == 0 {
		if npinned > 0 {
			return nil, tufota.Errorf(tufota.EInvalid, "empty cohort: %s has no device that can take %s: %s", cohortLabel(*r), r.Release, pinNote)
		}
		return nil, tufota.Errorf(tufota.EInvalid, "empty cohort: %s has no device that can take %s (%d registered devices match the selector; %d have hardware other than %s, %d run %s or newer)",
			cohortLabel(*r), r.Release, matched, otherHW, strings.Join(r.Hardware, ", "), newer, r.ReleaseVersion)
	}
	if 2*npinned > npinned+len(mine) {
		warnings = append(warnings, "cohort mostly pinned: "+pinNote+"; they show as pinned, not pending, until the pins are removed")
	}
	active, err := s.rollouts(ctx, `WHERE state IN (?, ?, ?, ?) AND id <> ? ORDER BY created_at`, append(slices.Clone(activeStates), r.ID)...)
	if err != nil {
		return nil, err
	}
	for i := range active {
		o := &active[i]
		statuses, err := s.rolloutStatuses(ctx, o.ID)
		if err != nil {
			return nil, err
		}
		theirs := population(o, devices, statuses, pins)
		var both []string
		for _, id := range mine {
			if _, ok := slices.BinarySearch(theirs, id); ok {
				both = append(both, id)
			}
		}
		switch {
		case len(both) == 0:
		case o.Plan.Priority == r.Plan.Priority:
			return nil, tufota.Errorf(tufota.EConflict, "cohort overlaps active rollout %s (%s to %s, %s, priority %d): %d devices in both, e.g. %s; a device is in at most one active rollout of a priority: wait for it to finish, abort it, narrow the selector, or give one a higher --priority",
				o.ID, o.Release, cohortLabel(*o), o.State, o.Plan.Priority, len(both), strings.Join(both[:min(3, len(both))], ", "))
		default:
			to := o.ID
			if r.Plan.Priority > o.Plan.Priority {
				to = "this rollout"
			}
			warnings = append(warnings, fmt.Sprintf("cohort overlaps active rollout %s (%s, priority %d; this one %d): %d devices in both, e.g. %s, go to %s (the higher priority)",
				o.ID, o.Release, o.Plan.Priority, r.Plan.Priority, len(both), strings.Join(both[:min(3, len(both))], ", "), to))
		}
	}
	return warnings, nil
}

// measurement is a rollout's health and membership at one moment.
type measurement struct {
	health     Health
	population []string
	statuses   map[string]statusRow
	// waveOf maps each member to the index of the wave it joined in.
	waveOf map[string]int
	silent map[string]bool
	// deferred marks the members whose deferral runs.
	deferred map[string]bool
	// pinned are the devices of the cohort a pin keeps out.
	pinned []string
}

// measure computes r's health from the devices and its status rows.
func (s *Service) measure(ctx context.Context, r *Rollout, devices []deviceRow, now time.Time) (measurement, error) {
	statuses, err := s.rolloutStatuses(ctx, r.ID)
	if err != nil {
		return measurement{}, err
	}
	pins, err := s.activePins(ctx)
	if err != nil {
		return measurement{}, err
	}
	pop, err := s.withoutClaimed(ctx, r, population(r, devices, statuses, pins), devices, statuses, pins)
	if err != nil {
		return measurement{}, err
	}
	m := measurement{statuses: statuses, population: pop, waveOf: map[string]int{}, silent: map[string]bool{}, deferred: map[string]bool{},
		pinned: pinnedOut(r, devices, statuses, pins)}
	cutoffs := r.cutoffs()
	h := Health{Cohort: len(m.population), Pinned: len(m.pinned)}
	for _, id := range m.population {
		st, offered := statuses[id]
		wave := -1
		if offered {
			wave = st.Wave
		} else {
			wave = WaveOf(cutoffs, KeyOf(r.ID, id))
		}
		if wave < 0 {
			continue
		}
		m.waveOf[id] = wave
		h.Members++
		current := wave == r.Wave-1
		if current {
			h.WaveMembers++
		}
		if !offered {
			continue
		}
		h.Offered++
		switch {
		case st.State == StatusInstalled || st.State == StatusReverted:
			h.Installed++
		case st.State == StatusFailed || st.State == StatusRolledBack:
			h.Failed++
		default:
			switch LivenessOf(r.Plan, st.updatedAt, st.deferral(), now) {
			case Silent:
				h.Silent++
				m.silent[id] = true
				if !st.deferral().IsZero() {
					h.OverDeferred++
				}
			case Deferred:
				h.Deferred++
				m.deferred[id] = true
				continue
			default:
				continue // in progress
			}
		}
		if current {
			h.WaveReports++
		}
	}
	m.health = h
	return m, nil
}

// WaveStatus is one wave's progress. Size is cumulative, like the plan (a
// plan of 10%,20%,50%,100% over 10 devices has sizes 1, 2, 5, 10); the
// device counts are of the devices that joined in this wave, so they add
// up across waves.
type WaveStatus struct {
	Number    int        `json:"wave"`
	Spec      string     `json:"spec"`
	Size      int        `json:"size"`
	Started   bool       `json:"started"`
	StartedAt *time.Time `json:"started_at,omitempty"`
	Devices   int        `json:"devices"`
	Offered   int        `json:"offered"`
	Installed int        `json:"installed"`
	Failed    int        `json:"failed"`
	Silent    int        `json:"silent"`
	// Deferred devices said "not now" and their deferral runs.
	Deferred int `json:"deferred"`
	// InProgress devices were offered the release and have no outcome yet.
	InProgress int `json:"in_progress"`
	// DeltaBytes and FullBytes are the bytes the wave's devices say they
	// transferred for the release as a delta or as the full image (a
	// fallback after a refused delta counts as full), DeltaDownloads and
	// FullDownloads how many devices took each path.
	DeltaBytes     int64 `json:"delta_bytes"`
	FullBytes      int64 `json:"full_bytes"`
	DeltaDownloads int   `json:"delta_downloads"`
	FullDownloads  int   `json:"full_downloads"`
}

func (m measurement) waves(r *Rollout) []WaveStatus {
	out := make([]WaveStatus, len(r.Plan.Waves))
	planned := Sizes(r.Plan.Waves, m.health.Cohort)
	for i, w := range r.Plan.Waves {
		out[i] = WaveStatus{Number: i + 1, Spec: w.String(), Size: planned[i]}
		if i < len(r.waves) {
			out[i].Started = true
			out[i].StartedAt = timePtr(fromNanos(r.waves[i].StartedAt))
		}
	}
	for id, wave := range m.waveOf {
		if wave >= len(out) {
			continue
		}
		w := &out[wave]
		w.Devices++
		st, offered := m.statuses[id]
		if !offered {
			continue
		}
		w.Offered++
		switch st.download {
		case DownloadDelta:
			w.DeltaBytes += st.downloadBytes
			w.DeltaDownloads++
		case DownloadFull:
			w.FullBytes += st.downloadBytes
			w.FullDownloads++
		}
		switch {
		case st.State == StatusInstalled || st.State == StatusReverted:
			w.Installed++
		case st.State == StatusFailed || st.State == StatusRolledBack:
			w.Failed++
		case m.silent[id]:
			w.Silent++
		case m.deferred[id]:
			w.Deferred++
		default:
			w.InProgress++
		}
	}
	// Started waves: the size is what they cover now.
	total := 0
	for i := range out {
		total += out[i].Devices
		if out[i].Started {
			out[i].Size = total
		}
	}
	return out
}

// Status is a rollout with its health, per-wave progress and what the
// controller waits for.
type Status struct {
	Rollout
	Waves  []WaveStatus `json:"waves"`
	Health Health       `json:"health"`
	// Next is what the controller would do now, or what it waits for.
	Next string `json:"next"`
	// Pinned are the devices of the cohort that a pin keeps from the
	// release (never offered it; not pending), by ID.
	Pinned []string `json:"pinned,omitempty"`
}

// Status returns a rollout's progress; ENotFound if there is none.
func (s *Service) Status(ctx context.Context, id string) (Status, error) {
	r, err := s.rollout(ctx, s.db, id)
	if err != nil {
		return Status{}, err
	}
	devices, err := s.allDevices(ctx)
	if err != nil {
		return Status{}, err
	}
	now := s.clock()
	m, err := s.measure(ctx, &r, devices, now)
	if err != nil {
		return Status{}, err
	}
	return Status{Rollout: r, Waves: m.waves(&r), Health: m.health, Next: Decide(r.state(), now, m.health).Reason, Pinned: m.pinned}, nil
}

// Tick runs the controller once: every scheduled, running or waiting
// rollout is measured and given to Decide, and what Decide says is
// persisted with its reason and the actor "controller". A rollout changed
// by someone else meanwhile is left for the next tick. Errors of single
// rollouts are joined; the others still run.
func (s *Service) Tick(ctx context.Context) error {
	active, err := s.rollouts(ctx, `WHERE state IN (?, ?, ?) ORDER BY created_at, id`, string(Scheduled), string(Running), string(WaitingApproval))
	if err != nil || len(active) == 0 {
		return err
	}
	devices, err := s.allDevices(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for i := range active {
		if err := s.evaluate(ctx, &active[i], devices); err != nil {
			errs = append(errs, fmt.Errorf("rollout %s: %w", active[i].ID, err))
		}
	}
	return errors.Join(errs...)
}

func (s *Service) evaluate(ctx context.Context, r *Rollout, devices []deviceRow) error {
	now := s.clock()
	m, err := s.measure(ctx, r, devices, now)
	if err != nil {
		return err
	}
	d := Decide(r.state(), now, m.health)
	if d.Action == Hold {
		return nil
	}
	ev, err := s.apply(ctx, r, d, m, now, ControllerActor, nil, nil)
	if errors.Is(err, errChanged) {
		s.log.InfoContext(ctx, "rollout changed during evaluation; next tick decides", "rollout", r.ID)
		return nil
	}
	if err != nil {
		return err
	}
	s.notify(ctx, ev...)
	return nil
}

// Run calls Tick every interval until ctx ends, logging errors; it returns
// nil when ctx is cancelled. Run it on one replica (the leader).
func (s *Service) Run(ctx context.Context, interval time.Duration) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := s.Tick(ctx); err != nil && ctx.Err() == nil {
			s.log.ErrorContext(ctx, "rollout controller tick", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// activeStates are the active phases as query arguments.
var activeStates = []any{string(Scheduled), string(Running), string(WaitingApproval), string(Paused)}

// errChanged means the rollout's row changed since it was read.
var errChanged = tufota.Errorf(tufota.EConflict, "the rollout changed meanwhile; try again")

var eventOf = map[Action]string{
	Start: EventStarted, Advance: EventWaveStarted, Pause: EventPaused, Abort: EventAborted,
	WaitApproval: EventApprovalRequested, Complete: EventCompleted,
}

// apply persists a decision (and extra, a person's changes to the row) in
// one transaction guarded by the rollout's revision, with the events'
// audit (AuditEventsIn) and in, and returns the recorded events.
func (s *Service) apply(ctx context.Context, r *Rollout, d Decision, m measurement, now time.Time, actor string, extra func(*Rollout), in InTx) ([]Event, error) {
	next := *r
	next.waves = slices.Clone(r.waves)
	next.State, next.Wave, next.Reason, next.UpdatedAt = d.Phase, d.Wave+1, d.Reason, now
	details := map[string]string{
		"cohort": strconv.Itoa(m.health.Cohort), "members": strconv.Itoa(m.health.Members), "offered": strconv.Itoa(m.health.Offered),
		"installed": strconv.Itoa(m.health.Installed), "failed": strconv.Itoa(m.health.Failed), "silent": strconv.Itoa(m.health.Silent),
	}
	switch d.Action {
	case Start, Advance:
		prev := Cutoff{}
		if len(next.waves) > 0 {
			prev = next.waves[len(next.waves)-1].Cutoff
		}
		c := NextCutoff(r.ID, m.population, d.Size, r.Plan.Waves[d.Wave].BasisPoints == 10000, prev)
		next.waves = append(next.waves[:d.Wave], waveRecord{StartedAt: nanos(now), Size: d.Size, Cutoff: c})
		next.WaveStartedAt = &now
		if d.Action == Start {
			next.StartedAt = &now
		}
		details["wave"], details["size"], details["spec"] = strconv.Itoa(d.Wave+1), strconv.Itoa(d.Size), r.Plan.Waves[d.Wave].String()
	case Abort, Complete:
		next.FinishedAt = &now
	}
	if extra != nil {
		extra(&next)
	}
	kind := eventOf[d.Action]
	ev := Event{RolloutID: r.ID, Time: now, Actor: actor, Kind: kind, Reason: d.Reason, Details: details}
	if err := s.save(ctx, r, &next, in, &ev); err != nil {
		return nil, err
	}
	*r = next
	return []Event{ev}, nil
}

// save writes next over r's row if its revision is still r's, and
// records the events (in the rollout's history and, through
// AuditEventsIn, in the audit log), and runs in, in one transaction: the
// rollout row first, the audit entries after it, the generation bump
// last (Tx.BeforeCommit).
func (s *Service) save(ctx context.Context, r, next *Rollout, in InTx, events ...*Event) error {
	return s.db.Tx(ctx, func(tx *storage.Tx) error {
		if err := s.update(ctx, tx, r.revision, next); err != nil {
			return err
		}
		for _, e := range events {
			if err := insertEvent(ctx, tx, e); err != nil {
				return err
			}
		}
		for _, e := range events {
			if err := s.recordEvents(ctx, tx, *e); err != nil {
				return err
			}
		}
		return runIn(ctx, tx, in)
	})
}

func (s *Service) update(ctx context.Context, tx *storage.Tx, revision int64, next *Rollout) error {
	ptr := func(t *time.Time) sql.NullInt64 {
		if t == nil {
			return sql.NullInt64{}
		}
		return nullNanos(*t)
	}
	res, err := tx.Exec(ctx, `UPDATE rollouts SET state = ?, wave = ?, wave_started_at = ?, waves = ?, started_at = ?, finished_at = ?,
		approved_by = ?, approved_at = ?, baseline = ?, reason = ?, rollback_release = ?, updated_at = ?, revision = revision + 1
		WHERE id = ? AND revision = ?`,
		string(next.State), next.Wave-1, ptr(next.WaveStartedAt), mustJSON(next.waves), ptr(next.StartedAt), ptr(next.FinishedAt),
		next.ApprovedBy, ptr(next.ApprovedAt), mustJSON(next.baseline), next.Reason, next.RollbackRelease, nanos(next.UpdatedAt),
		next.ID, revision)
	if err != nil {
		return fmt.Errorf("update rollout %s: %w", next.ID, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("update rollout %s: %w", next.ID, err)
	}
	if n == 0 {
		return errChanged
	}
	if err := s.rolloutChanged(ctx, tx); err != nil {
		return err
	}
	next.revision = revision + 1
	return nil
}
