package rollout

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/storage"
)

// Start starts a draft rollout: at once, or at its start time (it is then
// scheduled). The cohort is checked again: it must not be empty or overlap
// another active rollout.
func (s *Service) Start(ctx context.Context, id, actor, reason string) error {
	return s.Command(ctx, id, CmdStart, actor, reason, nil)
}

// Pause stops a scheduled, running or waiting rollout from offering its
// release to more devices and from starting waves.
func (s *Service) Pause(ctx context.Context, id, actor, reason string) error {
	return s.Command(ctx, id, CmdPause, actor, reason, nil)
}

// Resume lets a paused rollout run again (or, if it was paused before it
// started, be scheduled again). The failures counted so far are accepted:
// the health gates judge only the reports that come after.
func (s *Service) Resume(ctx context.Context, id, actor, reason string) error {
	return s.Command(ctx, id, CmdResume, actor, reason, nil)
}

// Approve lets a rollout that waits for approval start its next wave. The
// approver must not be the rollout's creator (EForbidden).
func (s *Service) Approve(ctx context.Context, id, actor, reason string) error {
	return s.Command(ctx, id, CmdApprove, actor, reason, nil)
}

// Abort ends a draft or active rollout. Devices that installed the release
// keep it; use Rollback to take it back.
func (s *Service) Abort(ctx context.Context, id, actor, reason string) error {
	return s.Command(ctx, id, CmdAbort, actor, reason, nil)
}

// Command applies a person's command (CmdStart, CmdPause, CmdResume,
// CmdApprove or CmdAbort) as Start, Pause, Resume, Approve and Abort do,
// and runs in (when not nil) inside the transaction of the change, after
// its writes: the change commits only with what in writes (its audit
// entry), and an error from in leaves the rollout as it was. All commands
// share these errors: EInvalid for an empty actor, ENotFound for an
// unknown rollout, EConflict for a command the rollout's state does not
// allow (Transition's errors); and in's error.
func (s *Service) Command(ctx context.Context, id string, cmd Command, actor, reason string, in InTx) error {
	if err := checkActor(actor); err != nil {
		return err
	}
	if len(reason) > maxMessage {
		return tufota.Errorf(tufota.EInvalid, "reason is longer than %d bytes", maxMessage)
	}
	for attempt := 0; ; attempt++ {
		events, err := s.commandOnce(ctx, id, actor, reason, cmd, in)
		if errors.Is(err, errChanged) && attempt < 5 {
			continue // the controller moved it meanwhile; judge again
		}
		if err != nil {
			return err
		}
		s.notify(ctx, events...)
		return nil
	}
}

func (s *Service) commandOnce(ctx context.Context, id, actor, reason string, cmd Command, in InTx) ([]Event, error) {
	r, err := s.rollout(ctx, s.db, id)
	if err != nil {
		return nil, err
	}
	to, err := Transition(r.State, cmd)
	if err != nil {
		return nil, tufota.Errorf(tufota.EConflict, "rollout %s: %v", r.ID, err)
	}
	now := s.clock()
	said := func(what string) string {
		if reason != "" {
			return what + ": " + reason
		}
		return what
	}
	next := r
	next.State, next.UpdatedAt = to, now
	ev := Event{RolloutID: r.ID, Time: now, Actor: actor, Details: map[string]string{}}
	switch cmd {
	case CmdStart:
		devices, err := s.allDevices(ctx)
		if err != nil {
			return nil, err
		}
		if _, err := s.checkCohort(ctx, &r, devices); err != nil {
			return nil, tufota.Errorf(tufota.ErrorCode(err), "start rollout %s: %v", r.ID, err)
		}
		st := r.state()
		st.Phase = Scheduled
		m, err := s.measure(ctx, &r, devices, now)
		if err != nil {
			return nil, err
		}
		d := Decide(st, now, m.health)
		if d.Action == Start {
			r.State = Scheduled
			d.Reason = said(fmt.Sprintf("%s started it: wave 1 of %d (%s, %s) starts", actor, len(r.Plan.Waves), r.Plan.Waves[0], plural(d.Size, "device")))
			return s.apply(ctx, &r, d, m, now, actor, nil, in)
		}
		ev.Kind, next.Reason = EventScheduled, said(fmt.Sprintf("%s scheduled it: %s", actor, d.Reason))
	case CmdPause:
		ev.Kind, next.Reason = EventPaused, said(actor+" paused it")
	case CmdResume:
		devices, err := s.allDevices(ctx)
		if err != nil {
			return nil, err
		}
		m, err := s.measure(ctx, &r, devices, now)
		if err != nil {
			return nil, err
		}
		next.baseline = Baseline{Reports: m.health.Reports(), Failures: m.health.Failures()}
		if len(r.waves) == 0 {
			next.State = Scheduled // paused before its start: the start time still rules
		}
		ev.Kind = EventResumed
		next.Reason = said(fmt.Sprintf("%s resumed it, accepting %d failures in %d reports so far", actor, next.baseline.Failures, next.baseline.Reports))
		ev.Details["accepted_failures"], ev.Details["accepted_reports"] = strconv.Itoa(next.baseline.Failures), strconv.Itoa(next.baseline.Reports)
	case CmdApprove:
		if actor == r.CreatedBy {
			return nil, tufota.Errorf(tufota.EForbidden, "approve rollout %s: %s created it, so someone else must approve it", r.ID, actor)
		}
		next.ApprovedBy, next.ApprovedAt = actor, &now
		ev.Kind = EventApproved
		next.Reason = said(fmt.Sprintf("%s approved wave %d", actor, r.Wave+1))
		ev.Details["wave"] = strconv.Itoa(r.Wave + 1)
	case CmdAbort:
		next.FinishedAt = &now
		ev.Kind, next.Reason = EventAborted, said(actor+" aborted it")
	default:
		return nil, tufota.Errorf(tufota.EInvalid, "command %s is not handled here", cmd)
	}
	ev.Reason = next.Reason
	if err := s.save(ctx, &r, &next, in, &ev); err != nil {
		return nil, err
	}
	return []Event{ev}, nil
}

// Rollback takes a rollout's release back: every device that installed it
// and still runs it is assigned the release it ran before (recorded when it
// was offered). Devices refuse an older release unless its signed metadata
// allows the downgrade from the exact version they run, so each previous
// release must be signed for it; if one is not, nothing changes and the
// error says how to push one (then use RollbackTo). Devices that install
// the release after the rollback are taken back too.
//
// Errors: EInvalid for an empty actor, ENotFound for an unknown rollout,
// EConflict when the rollout cannot be rolled back (never started, or
// rolled back already) or a previous release is not signed for it.
func (s *Service) Rollback(ctx context.Context, id, actor, reason string) error {
	return s.RollbackWith(ctx, id, "", actor, reason, nil)
}

// RollbackTo is Rollback with one release (NAME@VERSION) for every device,
// typically the old image pushed again under a new version and signed to
// allow the downgrade: `tufota release push NAME 1.0.0+rollback.1 FILE
// --allow-downgrade-from 1.1.0`. Errors as Rollback's, plus ENotFound for an
// unknown release and EInvalid for one that does not allow the downgrade.
func (s *Service) RollbackTo(ctx context.Context, id, release, actor, reason string) error {
	if _, _, err := ParseRelease(release); err != nil {
		return err
	}
	return s.RollbackWith(ctx, id, release, actor, reason, nil)
}

// RollbackWith is RollbackTo with release to (Rollback when to is empty),
// running in (when not nil) inside the transaction of the rollback, after
// its writes: the rollback and the devices' new assignments commit only
// with what in writes (its audit entry). Errors as RollbackTo's, and in's.
func (s *Service) RollbackWith(ctx context.Context, id, to, actor, reason string, in InTx) error {
	if err := checkActor(actor); err != nil {
		return err
	}
	if to != "" {
		if _, _, err := ParseRelease(to); err != nil {
			return err
		}
	}
	for attempt := 0; ; attempt++ {
		events, err := s.rollbackOnce(ctx, id, to, actor, reason, in)
		if errors.Is(err, errChanged) && attempt < 5 {
			continue
		}
		if err != nil {
			return err
		}
		s.notify(ctx, events...)
		return nil
	}
}

// rollbackTarget is the release one device is taken back to.
type rollbackTarget struct {
	ref  string // NAME@VERSION
	path string
}

func (s *Service) rollbackOnce(ctx context.Context, id, to, actor, reason string, in InTx) ([]Event, error) {
	r, err := s.rollout(ctx, s.db, id)
	if err != nil {
		return nil, err
	}
	if _, err := Transition(r.State, CmdRollback); err != nil {
		return nil, tufota.Errorf(tufota.EConflict, "rollout %s: %v", r.ID, err)
	}
	statuses, err := s.rolloutStatuses(ctx, r.ID)
	if err != nil {
		return nil, err
	}
	devices, err := s.allDevices(ctx)
	if err != nil {
		return nil, err
	}
	byID := map[string]deviceRow{}
	for _, d := range devices {
		byID[d.ID] = d
	}
	// The devices that took the release and still run it.
	var took []string
	for _, id := range sortedKeys(statuses) {
		if d, ok := byID[id]; ok && statuses[id].State == StatusInstalled && d.Version == r.ReleaseVersion {
			took = append(took, id)
		}
	}
	now := s.clock()
	targets := map[string]rollbackTarget{}
	var problems []string
	code := tufota.EConflict
	cache := map[string]lookup{}
	for _, id := range took {
		t, err := s.rollbackTargetOf(ctx, &r, to, byID[id], statuses[id], cache)
		if err != nil {
			if len(problems) == 0 {
				code = tufota.ErrorCode(err)
			}
			problems = append(problems, err.Error())
			continue
		}
		targets[id] = t
	}
	if len(problems) > 0 {
		slices.Sort(problems)
		problems = slices.Compact(problems)
		return nil, tufota.Errorf(code, "roll back rollout %s: %s", r.ID, strings.Join(problems, "; "))
	}
	next := r
	next.State, next.UpdatedAt, next.FinishedAt = RolledBack, now, &now
	next.RollbackRelease = to
	if to == "" {
		next.RollbackRelease = "previous"
	}
	what := "each device's previous release"
	if to != "" {
		what = to
	}
	next.Reason = fmt.Sprintf("%s rolled it back: %d devices running %s are assigned %s", actor, len(took), r.Release, what)
	if reason != "" {
		next.Reason += ": " + reason
	}
	ev := Event{RolloutID: r.ID, Time: now, Actor: actor, Kind: EventRolledBack, Reason: next.Reason,
		Details: map[string]string{"devices": strconv.Itoa(len(took)), "to": next.RollbackRelease}}
	err = s.db.Tx(ctx, func(tx *storage.Tx) error {
		if err := s.update(ctx, tx, r.revision, &next); err != nil {
			return err
		}
		for _, id := range took {
			t := targets[id]
			if _, err := tx.Exec(ctx, `UPDATE devices SET target_release = ?, target_path = ?, target_rollout = ?, target_by = ?, target_at = ?, updated_at = ?
				WHERE id = ?`, t.ref, t.path, r.ID, actor, nanos(now), nanos(now), id); err != nil {
				return fmt.Errorf("assign %s to device %s: %w", t.ref, id, err)
			}
			if err := s.deviceChanged(ctx, tx, id); err != nil {
				return err
			}
		}
		if err := insertEvent(ctx, tx, &ev); err != nil {
			return err
		}
		if err := s.recordEvents(ctx, tx, ev); err != nil {
			return err
		}
		return runIn(ctx, tx, in)
	})
	if err != nil {
		return nil, err
	}
	return []Event{ev}, nil
}

// lookup is a remembered release lookup.
type lookup struct {
	rel ReleaseRef
	err error
}

// rollbackTargetOf returns the release device d goes back to. cache
// remembers the releases looked up, by NAME@VERSION.
func (s *Service) rollbackTargetOf(ctx context.Context, r *Rollout, to string, d deviceRow, st statusRow, cache map[string]lookup) (rollbackTarget, error) {
	ref := to
	if ref == "" {
		ref = st.previousRelease
		if ref == "" && st.previousVersion != "" {
			ref = r.ReleaseName + "@" + st.previousVersion
		}
		if ref == "" {
			return rollbackTarget{}, tufota.Errorf(tufota.EConflict, "device %s: its previous version is unknown; name a release with rollback --to NAME@VERSION", d.ID)
		}
	}
	name, version, err := ParseRelease(ref)
	if err != nil {
		return rollbackTarget{}, err
	}
	got, seen := cache[ref]
	if !seen {
		got.rel, got.err = s.lookupRelease(ctx, name, version)
		cache[ref] = got
	}
	rel, err := got.rel, got.err
	if err != nil {
		return rollbackTarget{}, err
	}
	if !slices.Contains(rel.AllowDowngradeFrom, r.ReleaseVersion) {
		code := tufota.EConflict // the recorded previous release cannot be used
		if to != "" {
			code = tufota.EInvalid // the named release cannot be used
		}
		return rollbackTarget{}, tufota.Errorf(code, "devices would refuse %s: its signed metadata does not allow a downgrade from %s; push the old image as a release signed for it, e.g. tufota release push %s %s+rollback.1 FILE --allow-downgrade-from %s, then roll back with --to %s@%s+rollback.1",
			ref, r.ReleaseVersion, name, version, r.ReleaseVersion, name, version)
	}
	if !slices.Contains(rel.Hardware, d.Hardware) {
		return rollbackTarget{}, tufota.Errorf(tufota.EInvalid, "device %s: %s does not support its hardware %s", d.ID, ref, d.Hardware)
	}
	return rollbackTarget{ref: ref, path: rel.TargetPath}, nil
}

// assignRollback takes back a device that installed a rolled-back
// rollout's release after the rollback.
func (s *Service) assignRollback(ctx context.Context, tx *storage.Tx, r *Rollout, deviceID string, st statusRow, now time.Time) ([]Event, error) {
	d, err := s.device(ctx, tx, deviceID)
	if err != nil {
		return nil, err
	}
	d.Version = r.ReleaseVersion
	to := r.RollbackRelease
	if to == "previous" {
		to = ""
	}
	t, err := s.rollbackTargetOf(ctx, r, to, d, st, map[string]lookup{})
	if err != nil {
		// The report itself is true; record it, and say why the device
		// stays on the release.
		s.log.WarnContext(ctx, "device installed a rolled-back release and cannot be taken back", "rollout", r.ID, "device", deviceID, "err", err)
		return nil, nil
	}
	if _, err := tx.Exec(ctx, `UPDATE devices SET target_release = ?, target_path = ?, target_rollout = ?, target_by = ?, target_at = ?, updated_at = ?
		WHERE id = ?`, t.ref, t.path, r.ID, ControllerActor, nanos(now), nanos(now), deviceID); err != nil {
		return nil, fmt.Errorf("assign %s to device %s: %w", t.ref, deviceID, err)
	}
	if err := s.deviceChanged(ctx, tx, deviceID); err != nil {
		return nil, err
	}
	return []Event{{Time: now, Actor: ControllerActor, Kind: EventDeviceAssigned,
		Reason:  fmt.Sprintf("device %s installed %s after rollout %s was rolled back; assigned %s", deviceID, r.Release, r.ID, t.ref),
		Details: map[string]string{"device": deviceID, "release": t.ref, "target": t.path, "rollout": r.ID}}}, nil
}
