// Package rollout takes one signed release to one cohort of devices in
// waves, stops by itself when devices fail, and keeps the story of who did
// what and which device ran which firmware when.
//
// The package is built in two layers. The first is pure and has no I/O:
// wave plans (ParseWaves, Sizes), deterministic wave membership (Bucket,
// Cutoff), device selectors (ParseSelector), maintenance windows
// (ParseWindow) and the rollout state machine (Decide for the controller,
// Transition for people). The second, Service, keeps devices, cohorts,
// rollouts and device reports in the state database (storage.DB) and runs
// the controller loop, which only calls Decide and persists what it says.
//
// Errors are *tufota.Error values with a code: EInvalid for bad input,
// ENotFound, EConflict for an action the rollout's state forbids or a
// device claimed by another rollout, EForbidden for an approval by the
// rollout's creator.
package rollout
