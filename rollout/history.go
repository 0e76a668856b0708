package rollout

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"
)

// DeviceOutcome is one device's story in a rollout.
type DeviceOutcome struct {
	DeviceID string      `json:"device_id"`
	Wave     int         `json:"wave"` // 1-based
	State    DeviceState `json:"state"`
	// Silent is set for a device that accepted the release and has not
	// reported for longer than the device timeout; it counts as failed.
	Silent bool `json:"silent,omitempty"`
	// DeferredSince is the device's first deferral in the rollout, and
	// DeferredUntil, for a device in state deferred, what it asked for
	// (its reason is in Message).
	DeferredSince   *time.Time `json:"deferred_since,omitempty"`
	DeferredUntil   *time.Time `json:"deferred_until,omitempty"`
	ErrorCode       string     `json:"error_code,omitempty"`
	Message         string     `json:"message,omitempty"`
	PreviousVersion string     `json:"previous_version,omitempty"`
	OfferedAt       time.Time  `json:"offered_at"`
	UpdatedAt       time.Time  `json:"updated_at"`
	InstalledAt     *time.Time `json:"installed_at,omitempty"`
	// Download is how the image came ("delta" or "full"), as the device
	// reported it; DownloadBytes the bytes it transferred.
	Download      string `json:"download,omitempty"`
	DownloadBytes int64  `json:"download_bytes,omitempty"`
}

// Milestone is when a share of the rollout's cohort ran the release.
type Milestone struct {
	Percent int `json:"percent"`
	// Devices is how many devices make up Percent of the cohort.
	Devices int `json:"devices"`
	// ReachedAt is when the Devices-th device confirmed the release; nil
	// while the milestone is not reached.
	ReachedAt *time.Time `json:"reached_at,omitempty"`
	// Elapsed is the time from History.Since to ReachedAt.
	Elapsed time.Duration `json:"-"`
}

// MarshalJSON adds elapsed as text ("1h2m3s") and in seconds.
func (m Milestone) MarshalJSON() ([]byte, error) {
	type plain Milestone
	out := struct {
		plain
		Elapsed        string  `json:"elapsed,omitempty"`
		ElapsedSeconds float64 `json:"elapsed_seconds,omitempty"`
	}{plain: plain(m)}
	if m.ReachedAt != nil {
		out.Elapsed, out.ElapsedSeconds = m.Elapsed.String(), m.Elapsed.Seconds()
	}
	return json.Marshal(out)
}

// UnmarshalJSON reads what MarshalJSON writes.
func (m *Milestone) UnmarshalJSON(b []byte) error {
	type plain Milestone
	var in struct {
		plain
		Elapsed string `json:"elapsed"`
	}
	if err := json.Unmarshal(b, &in); err != nil {
		return err
	}
	*m = Milestone(in.plain)
	if in.Elapsed != "" {
		d, err := time.ParseDuration(in.Elapsed)
		if err != nil {
			return fmt.Errorf("milestone elapsed %q: %w", in.Elapsed, err)
		}
		m.Elapsed = d
	}
	return nil
}

// History is a rollout's story: its transitions with who and why, each
// wave's progress, every device's outcome, and how long it took from the
// release's publication (or, when that is unknown, the rollout's start) to
// 50%, 90% and 100% of the cohort running the release.
type History struct {
	Rollout Rollout         `json:"rollout"`
	Events  []Event         `json:"events"`
	Waves   []WaveStatus    `json:"waves"`
	Devices []DeviceOutcome `json:"devices"`
	// Since is the moment the milestones count from; SinceWhat says which
	// ("release published" or "rollout started").
	Since      *time.Time  `json:"since,omitempty"`
	SinceWhat  string      `json:"since_what,omitempty"`
	Milestones []Milestone `json:"milestones"`
}

// History returns a rollout's history; ENotFound if there is none.
func (s *Service) History(ctx context.Context, id string) (History, error) {
	r, err := s.rollout(ctx, s.db, id)
	if err != nil {
		return History{}, err
	}
	events, err := s.events(ctx, r.ID)
	if err != nil {
		return History{}, err
	}
	devices, err := s.allDevices(ctx)
	if err != nil {
		return History{}, err
	}
	now := s.clock()
	m, err := s.measure(ctx, &r, devices, now)
	if err != nil {
		return History{}, err
	}
	h := History{Rollout: r, Events: events, Waves: m.waves(&r)}
	var installed []time.Time
	for _, id := range sortedKeys(m.statuses) {
		st := m.statuses[id]
		h.Devices = append(h.Devices, DeviceOutcome{
			DeviceID: id, Wave: st.Wave + 1, State: st.State, Silent: m.silent[id], ErrorCode: st.ErrorCode, Message: st.Message,
			PreviousVersion: st.previousVersion, OfferedAt: st.offeredAt, UpdatedAt: st.updatedAt, InstalledAt: timePtr(st.installedAt),
			DeferredSince: timePtr(st.deferredSince), DeferredUntil: timePtr(st.deferral().Until),
			Download: st.download, DownloadBytes: st.downloadBytes,
		})
		if !st.installedAt.IsZero() && (st.State == StatusInstalled || st.State == StatusReverted) {
			installed = append(installed, st.installedAt)
		}
	}
	slices.SortFunc(installed, time.Time.Compare)
	switch {
	case r.ReleasePublishedAt != nil:
		h.Since, h.SinceWhat = r.ReleasePublishedAt, "release published"
	case r.StartedAt != nil:
		h.Since, h.SinceWhat = r.StartedAt, "rollout started"
	}
	cohort := m.health.Cohort
	for _, pct := range []int{50, 90, 100} {
		ms := Milestone{Percent: pct, Devices: (pct*cohort + 99) / 100}
		if ms.Devices > 0 && len(installed) >= ms.Devices {
			at := installed[ms.Devices-1]
			ms.ReachedAt = &at
			if h.Since != nil {
				ms.Elapsed = at.Sub(*h.Since)
			}
		}
		h.Milestones = append(h.Milestones, ms)
	}
	return h, nil
}

// Events returns a rollout's recorded transitions in order; ENotFound for
// an unknown rollout.
func (s *Service) Events(ctx context.Context, id string) ([]Event, error) {
	if _, err := s.rollout(ctx, s.db, id); err != nil {
		return nil, err
	}
	return s.events(ctx, id)
}

func (s *Service) events(ctx context.Context, id string) ([]Event, error) {
	rows, err := s.db.Query(ctx, `SELECT seq, time, actor, kind, reason, details FROM rollout_events WHERE rollout_id = ? ORDER BY seq`, id)
	if err != nil {
		return nil, fmt.Errorf("events of rollout %s: %w", id, err)
	}
	defer rows.Close()
	var out []Event
	for rows.Next() {
		e := Event{RolloutID: id}
		var (
			t       int64
			details string
		)
		if err := rows.Scan(&e.Seq, &t, &e.Actor, &e.Kind, &e.Reason, &details); err != nil {
			return nil, fmt.Errorf("events of rollout %s: %w", id, err)
		}
		e.Time = fromNanos(t)
		if err := json.Unmarshal([]byte(details), &e.Details); err != nil {
			return nil, fmt.Errorf("events of rollout %s: details: %w", id, err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("events of rollout %s: %w", id, err)
	}
	return out, nil
}
