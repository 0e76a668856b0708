package rollout

import (
	"time"

	"github.com/tufota/tufota"
)

// DefaultMaxDeferral is how long a device may defer a rollout's update
// ("not now": therapy in progress, on battery) when the plan does not say.
const DefaultMaxDeferral = 24 * time.Hour

// maxMaxDeferral bounds a plan's max deferral (a year), far beyond any
// clinical need, so that sums of times cannot overflow.
const maxMaxDeferral = 366 * 24 * time.Hour

// Deferral is a device's "not now" in a rollout: it first deferred at
// Since (kept across later deferrals of the same rollout, so the plan's
// max deferral bounds the whole delay, not each request) and asked to be
// left alone until Until. The zero value is no deferral.
type Deferral struct {
	Since time.Time
	Until time.Time
}

// IsZero reports whether d is no deferral.
func (d Deferral) IsZero() bool { return d.Since.IsZero() }

// Liveness is what the controller makes of an offered device that has no
// outcome yet.
type Liveness string

// Livenesses.
const (
	// Live: the device is working on the update (or has not started).
	Live Liveness = "live"
	// Deferred: the device said "not now" and its deferral runs.
	Deferred Liveness = "deferred"
	// Silent: the device went without a report past the device timeout,
	// or deferred past the plan's max deferral; it counts as failed.
	Silent Liveness = "silent"
)

// MaxDeferralOf returns the plan's max deferral, DefaultMaxDeferral when
// the plan does not set one.
func (p Plan) MaxDeferralOf() time.Duration {
	if p.MaxDeferral > 0 {
		return p.MaxDeferral
	}
	return DefaultMaxDeferral
}

// LivenessOf judges an offered device without an outcome, as a pure
// function of the plan, the time of its last report (or of the offer),
// its deferral (zero unless its state is deferred) and now.
//
// A device that is not deferred is silent once DeviceTimeout has passed
// since lastReport. A deferred device is never silent before its deferral
// ends at the earlier of Until and Since+MaxDeferral; from Since+MaxDeferral
// on it is silent at once; when it asked for less (Until), the device
// timeout runs from Until.
func LivenessOf(p Plan, lastReport time.Time, d Deferral, now time.Time) Liveness {
	if d.IsZero() {
		if !now.Before(lastReport.Add(p.DeviceTimeout)) {
			return Silent
		}
		return Live
	}
	limit := d.Since.Add(p.MaxDeferralOf())
	if !now.Before(limit) {
		return Silent
	}
	end := d.Until
	if end.After(limit) {
		end = limit
	}
	if now.Before(end) {
		return Deferred
	}
	if !now.Before(end.Add(p.DeviceTimeout)) {
		return Silent
	}
	return Live
}

// validateMaxDeferral checks a plan's max deferral; errors are EInvalid.
func validateMaxDeferral(d time.Duration) error {
	if d < 0 {
		return tufota.Errorf(tufota.EInvalid, "max deferral %s is negative", d)
	}
	if d > maxMaxDeferral {
		return tufota.Errorf(tufota.EInvalid, "max deferral %s is longer than a year", d)
	}
	return nil
}
