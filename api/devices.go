package api

import (
	"encoding/json"
	"time"
)

// Device is a device as the server records it.
type Device struct {
	ID             string            `json:"id"`
	Hardware       string            `json:"hardware"`
	Version        string            `json:"version,omitempty"`
	Attrs          map[string]string `json:"attrs,omitempty"`
	Tags           []string          `json:"tags,omitempty"`
	CurrentRelease string            `json:"current_release,omitempty"`
	TargetRelease  string            `json:"target_release,omitempty"`
	LastSeen       time.Time         `json:"last_seen,omitzero"`
	CreatedAt      time.Time         `json:"created_at,omitzero"`
	CreatedBy      string            `json:"created_by,omitempty"`
}

// RegisterDeviceRequest is the body of POST /api/v1/devices.
type RegisterDeviceRequest struct {
	Device
	// TokenExpires is the device token's lifetime ("8760h"); default 1 year.
	TokenExpires string `json:"token_expires,omitempty"`
}

// DeviceTokenResponse carries a device's token, shown once.
type DeviceTokenResponse struct {
	Device Device `json:"device"`
	Token  string `json:"token"`
}

// EnrollScope is what an enrollment token enrolls devices with.
type EnrollScope struct {
	Hardware string            `json:"hardware"`
	Attrs    map[string]string `json:"attrs,omitempty"`
	Tags     []string          `json:"tags,omitempty"`
}

// EnrollTokenRequest is the body of POST /api/v1/enroll-tokens.
type EnrollTokenRequest struct {
	EnrollScope
	Name    string `json:"name,omitempty"`
	Expires string `json:"expires,omitempty"` // default 24h
}

// EnrollTokenResponse carries the enrollment token, shown once.
type EnrollTokenResponse struct {
	EnrollToken string `json:"enroll_token"`
	Detail      Token  `json:"detail"`
}

// EnrollRequest is a device enrolling itself with an enrollment token.
type EnrollRequest struct {
	DeviceID string `json:"device_id"`
	Version  string `json:"version,omitempty"`
}

// AssignRequest assigns one release to one device.
type AssignRequest struct {
	Release string `json:"release"` // NAME@VERSION
	Reason  string `json:"reason,omitempty"`
}

// CohortRequest is the body of POST /api/v1/cohorts.
type CohortRequest struct {
	Name     string `json:"name"`
	Selector string `json:"selector"`
}

// Cohort is a named device selector and how many devices it matches.
type Cohort struct {
	Name      string    `json:"name"`
	Selector  string    `json:"selector"`
	Devices   int       `json:"devices"`
	CreatedAt time.Time `json:"created_at"`
	CreatedBy string    `json:"created_by"`
}

// UpdateResponse answers a device's "what should I run?".
type UpdateResponse struct {
	Target    string `json:"target"`
	Name      string `json:"name"`
	Version   string `json:"version"`
	RolloutID string `json:"rollout_id,omitempty"`
	// Required: the rollout's deadline has passed, the update is no
	// longer optional. Deadline is the rollout's deadline, if any.
	Required bool       `json:"required,omitempty"`
	Deadline *time.Time `json:"deadline,omitempty"`
}

// StatusReport is the body of POST /api/v1/device/status.
type StatusReport struct {
	DeviceID  string `json:"device_id"`
	Target    string `json:"target"`
	Version   string `json:"version"`
	State     string `json:"state"`
	ErrorCode string `json:"error_code,omitempty"`
	Message   string `json:"message,omitempty"`
	RolloutID string `json:"rollout_id,omitempty"`
	// DeferUntil: for state deferred, until when the device asks to be
	// left alone (the reason is in Message).
	DeferUntil *time.Time `json:"defer_until,omitempty"`
	// Download: for states downloaded and installed, how the image came
	// ("delta" or "full"); Bytes the bytes the device transferred for it.
	Download string `json:"download,omitempty"`
	Bytes    int64  `json:"bytes,omitempty"`
}

// RolloutSpec is the body of POST /api/v1/rollouts.
type RolloutSpec struct {
	Release                   string `json:"release"`
	Cohort                    string `json:"cohort"`
	Waves                     string `json:"waves"`
	Soak                      string `json:"soak,omitempty"`
	MinReports                int    `json:"min_reports,omitempty"`
	MaxFailureRate            string `json:"max_failure_rate,omitempty"`
	MaxFailures               *int   `json:"max_failures,omitempty"`
	DeviceTimeout             string `json:"device_timeout,omitempty"`
	ApprovalRequiredAfterWave int    `json:"approval_required_after_wave,omitempty"`
	Window                    string `json:"window,omitempty"`
	StartAt                   string `json:"start_at,omitempty"`
	OnBreach                  string `json:"on_breach,omitempty"`
	// MaxDeferral is how long a device may defer the update ("72h") before
	// it counts as silent; empty is 24h.
	MaxDeferral string `json:"max_deferral,omitempty"`
	// Priority (0..1000) lets this rollout overlap active ones of another
	// priority: each shared device goes to the higher one.
	Priority int `json:"priority,omitempty"`
	// Deadline (RFC 3339) is when the update turns from optional into
	// required.
	Deadline string `json:"deadline,omitempty"`
}

// ActionRequest is the body of a rollout action: why.
type ActionRequest struct {
	Reason string `json:"reason,omitempty"`
	// To is, for rollback, NAME@VERSION to roll back to (default: each
	// device's previous release).
	To string `json:"to,omitempty"`
}

// Rollout is a rollout's record. Plan is the server's wave plan as it
// writes it (waves, soak, thresholds), kept as JSON.
type Rollout struct {
	ID                 string          `json:"id"`
	Release            string          `json:"release"`
	ReleaseName        string          `json:"release_name"`
	ReleaseVersion     string          `json:"release_version"`
	TargetPath         string          `json:"target_path"`
	Hardware           []string        `json:"hardware"`
	Cohort             string          `json:"cohort,omitempty"`
	Selector           string          `json:"selector"`
	Plan               json.RawMessage `json:"plan"`
	State              string          `json:"state"`
	Wave               int             `json:"wave"`
	WaveStartedAt      *time.Time      `json:"wave_started_at,omitempty"`
	StartAt            *time.Time      `json:"start_at,omitempty"`
	StartedAt          *time.Time      `json:"started_at,omitempty"`
	FinishedAt         *time.Time      `json:"finished_at,omitempty"`
	ApprovedBy         string          `json:"approved_by,omitempty"`
	ApprovedAt         *time.Time      `json:"approved_at,omitempty"`
	Reason             string          `json:"reason,omitempty"`
	RollbackRelease    string          `json:"rollback_release,omitempty"`
	ReleasePublishedAt *time.Time      `json:"release_published_at,omitempty"`
	CreatedBy          string          `json:"created_by"`
	CreatedAt          time.Time       `json:"created_at"`
	UpdatedAt          time.Time       `json:"updated_at"`
	// Warnings, in the answer to a create only, say what people should
	// know before they start it (a cohort mostly pinned outside the
	// release).
	Warnings []string `json:"warnings,omitempty"`
}

// WaveStatus is one wave's counts.
type WaveStatus struct {
	Number     int        `json:"wave"`
	Spec       string     `json:"spec"`
	Size       int        `json:"size"`
	Started    bool       `json:"started"`
	StartedAt  *time.Time `json:"started_at,omitempty"`
	Devices    int        `json:"devices"`
	Offered    int        `json:"offered"`
	Installed  int        `json:"installed"`
	Failed     int        `json:"failed"`
	Silent     int        `json:"silent"`
	Deferred   int        `json:"deferred"`
	InProgress int        `json:"in_progress"`
	// Bytes devices of the wave transferred as deltas and as full images,
	// and how many devices took each path, as the devices report it.
	DeltaBytes     int64 `json:"delta_bytes"`
	FullBytes      int64 `json:"full_bytes"`
	DeltaDownloads int   `json:"delta_downloads"`
	FullDownloads  int   `json:"full_downloads"`
}

// Health is a rollout's counts the gates decide on. The server writes it
// without JSON tags, so the keys are the field names.
type Health struct {
	Cohort       int
	Members      int
	Offered      int
	Installed    int
	Failed       int
	Silent       int
	Pinned       int
	Deferred     int
	OverDeferred int
	WaveMembers  int
	WaveReports  int
}

// RolloutStatus is GET /api/v1/rollouts/ID and the answer to an action.
type RolloutStatus struct {
	Rollout
	Waves  []WaveStatus `json:"waves"`
	Health Health       `json:"health"`
	Next   string       `json:"next"`
	// Pinned are the cohort's devices a pin keeps from the release.
	Pinned []string `json:"pinned,omitempty"`
}

// RolloutEvent is one entry of a rollout's history.
type RolloutEvent struct {
	RolloutID string            `json:"rollout_id,omitempty"`
	Seq       int64             `json:"seq,omitempty"`
	Time      time.Time         `json:"time"`
	Actor     string            `json:"actor"`
	Kind      string            `json:"kind"`
	Reason    string            `json:"reason,omitempty"`
	Details   map[string]string `json:"details,omitempty"`
}

// DeviceOutcome is one device's course in a rollout.
type DeviceOutcome struct {
	DeviceID        string     `json:"device_id"`
	Wave            int        `json:"wave"` // 1-based
	State           string     `json:"state"`
	Silent          bool       `json:"silent,omitempty"`
	ErrorCode       string     `json:"error_code,omitempty"`
	Message         string     `json:"message,omitempty"`
	PreviousVersion string     `json:"previous_version,omitempty"`
	OfferedAt       time.Time  `json:"offered_at"`
	UpdatedAt       time.Time  `json:"updated_at"`
	InstalledAt     *time.Time `json:"installed_at,omitempty"`
	DeferredSince   *time.Time `json:"deferred_since,omitempty"`
	DeferredUntil   *time.Time `json:"deferred_until,omitempty"`
	Download        string     `json:"download,omitempty"`
	DownloadBytes   int64      `json:"download_bytes,omitempty"`
}

// Milestone is when a share of the rollout's devices had installed.
// Elapsed is a Go duration ("1h2m3s") from the start.
type Milestone struct {
	Percent        int        `json:"percent"`
	Devices        int        `json:"devices"`
	ReachedAt      *time.Time `json:"reached_at,omitempty"`
	Elapsed        string     `json:"elapsed,omitempty"`
	ElapsedSeconds float64    `json:"elapsed_seconds,omitempty"`
}

// RolloutHistory is GET /api/v1/rollouts/ID/history.
type RolloutHistory struct {
	Rollout    Rollout         `json:"rollout"`
	Events     []RolloutEvent  `json:"events"`
	Waves      []WaveStatus    `json:"waves"`
	Devices    []DeviceOutcome `json:"devices"`
	Since      *time.Time      `json:"since,omitempty"`
	SinceWhat  string          `json:"since_what,omitempty"`
	Milestones []Milestone     `json:"milestones"`
}

// Pin keeps a saved cohort or one device on a validated version line
// (kind "cohort" or "device"; version 1.4.2, 1.4.* or 1.*).
type Pin struct {
	Kind      string    `json:"kind"`
	Name      string    `json:"name"`
	Version   string    `json:"version"`
	Reason    string    `json:"reason"`
	CreatedBy string    `json:"created_by"`
	CreatedAt time.Time `json:"created_at"`
	// Selector is a cohort pin's selector, as the cohort had it.
	Selector string `json:"selector,omitempty"`
}

// PinRequest is the body of PUT /api/v1/pins/{kind}/{name}.
type PinRequest struct {
	Version string `json:"version"`
	Reason  string `json:"reason"`
}

// DryRun is what a rollout would do before it starts (rollout plan).
type DryRun struct {
	RolloutID      string       `json:"rollout_id,omitempty"`
	Release        string       `json:"release"`
	Selector       string       `json:"selector"`
	Matched        int          `json:"matched"`
	Cohort         int          `json:"cohort"`
	Waves          []DryRunWave `json:"waves"`
	Pinned         DeviceList   `json:"pinned"`
	OnRelease      DeviceList   `json:"on_release"`
	Newer          DeviceList   `json:"newer"`
	OtherHardware  DeviceList   `json:"other_hardware"`
	InOtherRollout DeviceList   `json:"in_other_rollout"`
	Window         string       `json:"window,omitempty"`
	WindowOpen     bool         `json:"window_open"`
	WindowOpensAt  *time.Time   `json:"window_opens_at,omitempty"`
	At             time.Time    `json:"at"`
}

// DeviceList is a count of devices and their IDs (capped).
type DeviceList struct {
	Count   int      `json:"count"`
	Devices []string `json:"devices"`
}

// DryRunWave is one wave of a dry run.
type DryRunWave struct {
	Number  int      `json:"wave"`
	Spec    string   `json:"spec"`
	Size    int      `json:"size"`
	New     int      `json:"new"`
	Devices []string `json:"devices,omitempty"`
}
