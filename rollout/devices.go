package rollout

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/storage"
)

// deviceRegisterLockKey is the PostgreSQL advisory lock that serialises
// device registrations (an arbitrary constant, distinct from the others).
const deviceRegisterLockKey int64 = 0x74756674_64657631 // "tuftdev1"

// RegisterDevice adds a device, or updates the hardware, version,
// attributes and tags of a registered one (what it runs and what it was
// assigned are kept). Errors: EInvalid for a bad device or actor;
// EConflict when the ID differs only in case from a registered one.
func (s *Service) RegisterDevice(ctx context.Context, d Device, actor string) error {
	if err := checkRegistration(d, actor); err != nil {
		return err
	}
	var inTx bool
	err := s.db.Tx(ctx, func(tx *storage.Tx) error {
		_, _, err := s.RegisterDeviceIn(ctx, tx, d, actor)
		inTx = err != nil
		return err
	})
	if err != nil && !inTx {
		return fmt.Errorf("register device %s: %w", d.ID, err)
	}
	return err
}

// RegisterDeviceIn registers d as RegisterDevice does, inside tx (the
// caller's transaction, e.g. one enrollment with its token and audit entry,
// shared with others), and returns the stored device and whether it is new
// (no device had its ID before). The device's cached copy is dropped when
// tx commits; if the caller rolls tx (or its savepoint) back, that drop is
// harmless. The stored last-seen time may lag by the coalescing interval.
// Errors as RegisterDevice's.
func (s *Service) RegisterDeviceIn(ctx context.Context, tx *storage.Tx, d Device, actor string) (dev Device, isNew bool, err error) {
	if err := checkRegistration(d, actor); err != nil {
		return Device{}, false, err
	}
	now := nanos(s.clock())
	// Device IDs are unique without regard to case: DEV1 beside dev1
	// would be two devices that people, certificates and tools take
	// for one. On PostgreSQL (READ COMMITTED) registrations take a
	// transaction lock so that two case variants registered at once
	// cannot both pass the check; SQLite transactions are serialised.
	if s.db.Dialect() == storage.DialectPostgres {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(?)`, deviceRegisterLockKey); err != nil {
			return Device{}, false, fmt.Errorf("register device %s: %w", d.ID, err)
		}
	}
	var other string
	err = tx.QueryRow(ctx, `SELECT id FROM devices WHERE lower(id) = lower(?) AND id <> ? LIMIT 1`, d.ID, d.ID).Scan(&other)
	switch {
	case err == nil:
		return Device{}, false, fmt.Errorf("register device %s: %w", d.ID,
			tufota.Errorf(tufota.EConflict, "device %s is already registered as %s; device IDs are compared without regard to case", d.ID, other))
	case !errors.Is(err, tufota.ErrNotFound):
		return Device{}, false, fmt.Errorf("register device %s: %w", d.ID, err)
	}
	var one int
	switch err := tx.QueryRow(ctx, `SELECT 1 FROM devices WHERE id = ?`, d.ID).Scan(&one); {
	case errors.Is(err, tufota.ErrNotFound):
		isNew = true
	case err != nil:
		return Device{}, false, fmt.Errorf("register device %s: %w", d.ID, err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO devices (id, hardware, current_version, attrs, created_at, created_by, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET hardware = excluded.hardware, current_version = excluded.current_version,
			attrs = excluded.attrs, updated_at = excluded.updated_at`,
		d.ID, d.Hardware, d.Version, encodeAttrs(d), now, actor, now); err != nil {
		return Device{}, false, fmt.Errorf("register device %s: %w", d.ID, err)
	}
	if err := s.deviceChanged(ctx, tx, d.ID); err != nil {
		return Device{}, false, fmt.Errorf("register device %s: %w", d.ID, err)
	}
	r, err := s.device(ctx, tx, d.ID)
	if err != nil {
		return Device{}, false, fmt.Errorf("register device %s: %w", d.ID, err)
	}
	return r.Device, isNew, nil
}

func checkRegistration(d Device, actor string) error {
	if err := checkActor(actor); err != nil {
		return err
	}
	return d.Validate()
}

// encodeAttrs stores attributes and tags as one JSON object; "tags" is a
// reserved attribute name, so the two never collide.
func encodeAttrs(d Device) string {
	m := make(map[string]any, len(d.Attrs)+1)
	for k, v := range d.Attrs {
		m[k] = v
	}
	if len(d.Tags) > 0 {
		tags := slices.Clone(d.Tags)
		slices.Sort(tags)
		m["tags"] = slices.Compact(tags)
	}
	return mustJSON(m)
}

func decodeAttrs(s string, d *Device) error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		return fmt.Errorf("device %s attrs: %w", d.ID, err)
	}
	for k, raw := range m {
		if k == "tags" {
			if err := json.Unmarshal(raw, &d.Tags); err != nil {
				return fmt.Errorf("device %s tags: %w", d.ID, err)
			}
			continue
		}
		var v string
		if err := json.Unmarshal(raw, &v); err != nil {
			return fmt.Errorf("device %s attribute %s: %w", d.ID, k, err)
		}
		if d.Attrs == nil {
			d.Attrs = map[string]string{}
		}
		d.Attrs[k] = v
	}
	return nil
}

// deviceRow is a device with the columns the API does not show.
type deviceRow struct {
	Device
	targetPath, targetRollout string
}

const deviceColumns = `id, hardware, current_version, current_release, attrs, last_seen, target_release, target_path,
	target_rollout, created_at, created_by`

func scanDevice(sc interface{ Scan(...any) error }) (deviceRow, error) {
	var (
		r        deviceRow
		attrs    string
		lastSeen sql.NullInt64
		created  int64
	)
	if err := sc.Scan(&r.ID, &r.Hardware, &r.Version, &r.CurrentRelease, &attrs, &lastSeen, &r.TargetRelease,
		&r.targetPath, &r.targetRollout, &created, &r.CreatedBy); err != nil {
		return deviceRow{}, err
	}
	if err := decodeAttrs(attrs, &r.Device); err != nil {
		return deviceRow{}, err
	}
	r.LastSeen, r.CreatedAt = fromNull(lastSeen), fromNanos(created)
	return r, nil
}

func (s *Service) device(ctx context.Context, q storage.Querier, id string) (deviceRow, error) {
	r, err := scanDevice(q.QueryRow(ctx, `SELECT `+deviceColumns+` FROM devices WHERE id = ?`, id))
	if errors.Is(err, tufota.ErrNotFound) {
		return deviceRow{}, tufota.Errorf(tufota.ENotFound, "device %s is not registered", id)
	}
	if err != nil {
		return deviceRow{}, fmt.Errorf("get device %s: %w", id, err)
	}
	return r, nil
}

// Device returns a registered device; ENotFound if there is none.
func (s *Service) Device(ctx context.Context, id string) (Device, error) {
	if err := s.flushSeen(ctx); err != nil {
		return Device{}, err
	}
	r, err := s.device(ctx, s.db, id)
	return r.Device, err
}

// DeviceFilter selects devices for Devices.
type DeviceFilter struct {
	// Selector, when set, is a selector (ParseSelector) the devices match.
	Selector string
	// Limit, when above zero, caps the number of devices returned.
	Limit int
}

// Devices returns the registered devices that match the filter, by ID.
// A bad selector is EInvalid.
func (s *Service) Devices(ctx context.Context, f DeviceFilter) ([]Device, error) {
	sel := Selector{}
	if f.Selector != "" {
		var err error
		if sel, err = ParseSelector(f.Selector); err != nil {
			return nil, err
		}
	}
	rows, err := s.allDevices(ctx)
	if err != nil {
		return nil, err
	}
	var out []Device
	for _, r := range rows {
		if sel.Match(r.Device) {
			out = append(out, r.Device)
			if f.Limit > 0 && len(out) == f.Limit {
				break
			}
		}
	}
	return out, nil
}

func (s *Service) allDevices(ctx context.Context) ([]deviceRow, error) {
	if err := s.flushSeen(ctx); err != nil {
		return nil, err
	}
	rows, err := s.db.Query(ctx, `SELECT `+deviceColumns+` FROM devices ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("list devices: %w", err)
	}
	defer rows.Close()
	var out []deviceRow
	for rows.Next() {
		r, err := scanDevice(rows)
		if err != nil {
			return nil, fmt.Errorf("list devices: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list devices: %w", err)
	}
	return out, nil
}

// Query is a device's "what should I run?": its ID and, optionally, the
// hardware and version it reports (the device is the authority on what it
// runs; a reported hardware must match the registered one).
type Query struct {
	DeviceID string
	Hardware string
	Version  string
}

// Assignment is the answer to a device's query.
type Assignment struct {
	Target    string `json:"target"`
	Name      string `json:"name"`
	Version   string `json:"version"`
	RolloutID string `json:"rollout_id,omitempty"`
	// Required is set from the rollout's deadline on: the update is no
	// longer optional. Deadline is that deadline, when the rollout has one.
	Required bool       `json:"required,omitempty"`
	Deadline *time.Time `json:"deadline,omitempty"`
}

// Assignment answers a device's "what should I run?" and records that the
// device asked (last seen, and the version it reports). It returns nil when
// there is nothing to do. A release reaches a device only through a
// release assigned to it alone (AssignDevice, a rollback) or through the
// one active rollout that owns the device: the active rollout of the
// highest priority, then the earliest created, whose cohort the device is
// in and whose pins allow its release. A running rollout offers its
// release only to devices its started waves cover, only inside its
// maintenance window, and never again to a device that failed; a paused or
// scheduled rollout offers nothing.
//
// Errors: ENotFound for an unregistered device, EInvalid for a malformed
// version, EConflict when the reported hardware is not the registered one.
func (s *Service) Assignment(ctx context.Context, q Query) (*Assignment, error) {
	if q.Version != "" {
		if _, err := tufota.ParseVersion(q.Version); err != nil {
			return nil, err
		}
	}
	e, err := s.cachedDevice(ctx, q.DeviceID)
	if err != nil {
		return nil, err
	}
	d := e.row
	if q.Hardware != "" && q.Hardware != d.Hardware {
		return nil, tufota.Errorf(tufota.EConflict, "device %s is registered as hardware %s but reports %s", d.ID, d.Hardware, q.Hardware)
	}
	now := s.clock()
	s.hot.seen.Touch(d.ID, now)
	if q.Version != "" && q.Version != d.Version {
		if err := s.runsVersion(ctx, &d, q.Version, now); err != nil {
			return nil, err
		}
	}

	// A release assigned to this device alone comes first.
	if d.targetPath != "" {
		_, version, _ := ParseRelease(d.TargetRelease)
		if d.Version != version {
			return &Assignment{Target: d.targetPath, Name: releaseName(d.TargetRelease), Version: version, RolloutID: d.targetRollout}, nil
		}
		// The device runs it (it said so without a report): done.
		err := s.db.Tx(ctx, func(tx *storage.Tx) error {
			if _, err := tx.Exec(ctx, `UPDATE devices SET current_release = ?, target_release = '', target_path = '', target_rollout = '',
			updated_at = ? WHERE id = ? AND target_path = ?`, d.TargetRelease, nanos(now), d.ID, d.targetPath); err != nil {
				return err
			}
			return s.deviceChanged(ctx, tx, d.ID)
		})
		if err != nil {
			return nil, fmt.Errorf("device %s reached %s: %w", d.ID, d.TargetRelease, err)
		}
	}

	view, err := s.activeView(ctx)
	if err != nil {
		return nil, err
	}
	active := view.rollouts
	for i := range active {
		r := &active[i]
		st, offered := e.statuses[r.ID]
		// A pinned device is offered nothing outside its validated line.
		if _, pinned := view.pins.Blocks(&d.Device, r.ReleaseVersion); pinned {
			if offered {
				return nil, nil // pinned after the offer: owned, but no more
			}
			continue
		}
		if !offered {
			if !r.eligible(d.Device) {
				continue
			}
			// The first active rollout (by priority, then age) that wants
			// the device owns it.
			return s.offer(ctx, r, d, now)
		}
		// Offered before: re-offer while it is in progress.
		if r.State != Running && r.State != WaitingApproval {
			return nil, nil
		}
		if final(st.State) || d.Version == r.ReleaseVersion {
			return nil, nil
		}
		return r.assignment(now), nil
	}
	return nil, nil
}

func releaseName(nameAtVersion string) string {
	name, _, _ := strings.Cut(nameAtVersion, "@")
	return name
}

// runsVersion records that the device runs version, which is not the
// version on record: the device is the authority on what it runs. The
// release name is forgotten unless it still matches.
func (s *Service) runsVersion(ctx context.Context, d *deviceRow, version string, now time.Time) error {
	current := d.CurrentRelease
	if !strings.HasSuffix(current, "@"+version) {
		current = ""
	}
	t := nanos(now)
	err := s.db.Tx(ctx, func(tx *storage.Tx) error {
		if _, err := tx.Exec(ctx, `UPDATE devices SET last_seen = ?, current_version = ?, current_release = ?, updated_at = ? WHERE id = ?`,
			t, version, current, t, d.ID); err != nil {
			return err
		}
		return s.deviceChanged(ctx, tx, d.ID)
	})
	if err != nil {
		return fmt.Errorf("device %s runs %s: %w", d.ID, version, err)
	}
	d.Version, d.CurrentRelease = version, current
	return nil
}

// offer offers r's release to d if r is running, its window is open and
// its started waves cover d.
func (s *Service) offer(ctx context.Context, r *Rollout, d deviceRow, now time.Time) (*Assignment, error) {
	if r.State != Running && r.State != WaitingApproval {
		return nil, nil
	}
	if !r.Plan.Window.IsZero() && !r.Plan.Window.Contains(now) {
		return nil, nil
	}
	wave := WaveOf(r.cutoffs(), KeyOf(r.ID, d.ID))
	if wave < 0 {
		return nil, nil
	}
	t := nanos(now)
	inserted := false
	err := s.db.Tx(ctx, func(tx *storage.Tx) error {
		// Insert only if the rollout has not changed since it was read: a
		// pause or an abort between the read and now wins.
		res, err := tx.Exec(ctx, `INSERT INTO device_status (rollout_id, device_id, state, wave, offered_at, updated_at, previous_release, previous_version)
		SELECT ?, ?, ?, CAST(? AS BIGINT), CAST(? AS BIGINT), CAST(? AS BIGINT), ?, ?
		WHERE EXISTS (SELECT 1 FROM rollouts WHERE id = ? AND revision = CAST(? AS BIGINT))`,
			r.ID, d.ID, string(StatusOffered), wave, t, t, d.CurrentRelease, d.Version, r.ID, r.revision)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			return err // the rollout changed; the device asks again later
		}
		inserted = true
		return s.deviceChanged(ctx, tx, d.ID)
	})
	switch {
	case errors.Is(err, tufota.ErrConflict):
		// Another replica offered it at the same moment.
		s.hot.dropDevice(d.ID)
		return r.assignment(now), nil
	case err != nil:
		return nil, fmt.Errorf("offer %s to device %s: %w", r.ID, d.ID, err)
	case !inserted:
		s.hot.dropView() // our view of the rollout is stale
		return nil, nil
	}
	return r.assignment(now), nil
}

func (r *Rollout) assignment(now time.Time) *Assignment {
	a := &Assignment{Target: r.TargetPath, Name: r.ReleaseName, Version: r.ReleaseVersion, RolloutID: r.ID,
		Required: r.Plan.Required(now)}
	if !r.Plan.Deadline.IsZero() {
		// Only then: timePtr would move its argument to the heap on every
		// poll, deadline or not.
		deadline := r.Plan.Deadline
		a.Deadline = &deadline
	}
	return a
}

// eligible reports whether d belongs in r's cohort now: the selector
// matches, the release supports its hardware, and it does not run the
// release or a newer version already.
func (r *Rollout) eligible(d Device) bool {
	if !slices.Contains(r.Hardware, d.Hardware) || !r.selector.Match(d) {
		return false
	}
	if d.Version == "" {
		return true
	}
	if d.Version == r.ReleaseVersion {
		return false
	}
	if r.releaseVer == nil { // a Rollout not made by scanRollout
		c, err := tufota.CompareVersions(d.Version, r.ReleaseVersion)
		return err == nil && c < 0
	}
	v, err := tufota.ParseVersion(d.Version)
	return err == nil && v.Compare(*r.releaseVer) < 0
}

// DeviceState is a device's state in a rollout.
type DeviceState string

// Device states: the ones devices report, and three of the server's own.
const (
	StatusOffered     DeviceState = "offered" // the release was offered; no report yet
	StatusDownloading DeviceState = "downloading"
	StatusDownloaded  DeviceState = "downloaded"
	StatusInstalling  DeviceState = "installing"
	StatusInstalled   DeviceState = "installed" // confirmed good boot
	StatusFailed      DeviceState = "failed"
	StatusRolledBack  DeviceState = "rolled-back" // the device reverted by itself
	StatusReverted    DeviceState = "reverted"    // installed, then taken back by a rollout rollback
	// StatusDeferred: the device said "not now" (Report.DeferUntil, the
	// reason in Message); not an outcome.
	StatusDeferred DeviceState = "deferred"
)

// reportable are the states a device may report.
var reportable = []DeviceState{StatusDownloading, StatusDownloaded, StatusInstalling, StatusInstalled, StatusFailed, StatusRolledBack, StatusDeferred}

// final reports whether a device state is an outcome.
func final(st DeviceState) bool {
	return st == StatusInstalled || st == StatusFailed || st == StatusRolledBack || st == StatusReverted
}

// Report is a device's status report.
type Report struct {
	Target    string      `json:"target"`
	Version   string      `json:"version"`
	State     DeviceState `json:"state"`
	ErrorCode string      `json:"error_code,omitempty"`
	Message   string      `json:"message,omitempty"`
	RolloutID string      `json:"rollout_id,omitempty"`
	// DeferUntil is, for state deferred (and only for it), until when the
	// device asks to be left alone.
	DeferUntil *time.Time `json:"defer_until,omitempty"`
	// Download is, for states downloaded and installed, how the image
	// came: DownloadDelta or DownloadFull ("" if the device does not say);
	// Bytes the bytes the device transferred for it.
	Download string `json:"download,omitempty"`
	Bytes    int64  `json:"bytes,omitempty"`
}

// Download paths a device reports.
const (
	DownloadDelta = "delta"
	DownloadFull  = "full"
)

const maxMessage = 1024

func (r *Report) validate() error {
	if !slices.Contains(reportable, r.State) {
		return tufota.Errorf(tufota.EInvalid, "state %q: want downloading, downloaded, installing, installed, failed, rolled-back or deferred", r.State)
	}
	switch {
	case r.State == StatusDeferred && (r.DeferUntil == nil || r.DeferUntil.IsZero()):
		return tufota.Errorf(tufota.EInvalid, "state deferred needs defer_until: the time until which the device asks to be left alone")
	case r.State == StatusDeferred && strings.TrimSpace(r.Message) == "":
		return tufota.Errorf(tufota.EInvalid, "state deferred needs a message: why the device defers (e.g. therapy in progress)")
	case r.State != StatusDeferred && r.DeferUntil != nil:
		return tufota.Errorf(tufota.EInvalid, "defer_until is only for state deferred, not %s", r.State)
	case r.Download != "" && r.Download != DownloadDelta && r.Download != DownloadFull:
		return tufota.Errorf(tufota.EInvalid, "download %q: want delta or full", r.Download)
	case r.Bytes < 0:
		return tufota.Errorf(tufota.EInvalid, "bytes %d: must not be negative", r.Bytes)
	case r.Bytes > 0 && r.Download == "":
		return tufota.Errorf(tufota.EInvalid, "bytes without download: say delta or full")
	case r.Download != "" && r.State != StatusDownloaded && r.State != StatusInstalled:
		return tufota.Errorf(tufota.EInvalid, "download is only for states downloaded and installed, not %s", r.State)
	}
	if r.Version != "" {
		if _, err := tufota.ParseVersion(r.Version); err != nil {
			return err
		}
	}
	if len(r.Target) > 1024 {
		return tufota.Errorf(tufota.EInvalid, "target is longer than 1024 bytes")
	}
	if r.RolloutID != "" {
		if err := tufota.ValidateName("rollout ID", r.RolloutID); err != nil {
			return err
		}
	}
	if r.ErrorCode != "" {
		if err := tufota.ValidateName("error code", r.ErrorCode); err != nil {
			return err
		}
	}
	r.Message = strings.ToValidUTF8(r.Message, "\uFFFD")
	if len(r.Message) > maxMessage {
		cut := maxMessage
		for cut > 0 && !utf8.RuneStart(r.Message[cut]) {
			cut--
		}
		r.Message = r.Message[:cut]
	}
	return nil
}

// Report records a device's status report: always in the report history,
// and in the device's progress in the rollout the report is about (the
// RolloutID it names, or the rollout whose release it names). installed
// means a confirmed good boot: the device's current version becomes the
// release's. A device's outcome in a rollout is final once failed or
// rolled back; an installed device may still report that it rolled back.
//
// Errors: EInvalid for a bad report, ENotFound for an unregistered device,
// EConflict for a report on a rollout that never offered the device the
// release or that contradicts a final outcome.
func (s *Service) Report(ctx context.Context, deviceID string, r Report) error {
	var after func()
	err := s.db.Tx(ctx, func(tx *storage.Tx) error {
		var err error
		after, err = s.ReportIn(ctx, tx, deviceID, r)
		return err
	})
	if err != nil {
		return err
	}
	after()
	return nil
}

// ReportIn records a device's status report as Report does, inside tx (the
// caller's transaction, e.g. one shared by concurrent reports with their
// audit entries). after must be called once tx has committed: it tells the
// observer of the events the report caused. Errors as Report's.
func (s *Service) ReportIn(ctx context.Context, tx *storage.Tx, deviceID string, r Report) (after func(), err error) {
	if err := r.validate(); err != nil {
		return nil, err
	}
	var events []Event
	c := s.changes(ctx, tx)
	_, had := c.devices[deviceID]
	err = s.report(ctx, tx, deviceID, r, &events)
	if err == nil {
		err = s.recordEvents(ctx, tx, events...)
	}
	if err != nil {
		if !had {
			// The caller rolls this report back (its savepoint): the device
			// row is not to be stamped after the generations are locked.
			delete(c.devices, deviceID)
		}
		return nil, err
	}
	return func() { s.notify(ctx, events...) }, nil
}

func (s *Service) report(ctx context.Context, tx *storage.Tx, deviceID string, r Report, events *[]Event) error {
	d, err := s.device(ctx, tx, deviceID)
	if err != nil {
		return err
	}
	now := s.clock()
	ro, st, err := s.reportSubject(ctx, tx, d, &r)
	if err != nil {
		return err
	}
	var until sql.NullInt64
	if r.DeferUntil != nil {
		// Kept within [now, now+a year]: a device's clock may be off, and
		// a time beyond year 2262 does not fit in nanoseconds.
		u := *r.DeferUntil
		if u.Before(now) {
			u = now
		}
		u = minTime(u, now.Add(maxMaxDeferral))
		r.DeferUntil = &u
		until = nullNanos(u)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO status_reports (id, device_id, rollout_id, target, version, state, error_code, message, time, deferred_until)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, randomHex(16), d.ID, r.RolloutID, r.Target, r.Version, string(r.State),
		r.ErrorCode, r.Message, nanos(now), until); err != nil {
		return fmt.Errorf("record report of device %s: %w", d.ID, err)
	}
	t := nanos(now)
	if _, err := tx.Exec(ctx, `UPDATE devices SET last_seen = ? WHERE id = ?`, t, d.ID); err != nil {
		return fmt.Errorf("device %s seen: %w", d.ID, err)
	}
	if err := s.deviceChanged(ctx, tx, d.ID); err != nil {
		return err
	}

	// A report on a release assigned to this device alone (or by a
	// rollback).
	if d.targetPath != "" && r.Target == d.targetPath {
		if r.State == StatusInstalled {
			_, version, _ := ParseRelease(d.TargetRelease)
			if _, err := tx.Exec(ctx, `UPDATE devices SET current_version = ?, current_release = ?, target_release = '', target_path = '',
				target_rollout = '', updated_at = ? WHERE id = ?`, version, d.TargetRelease, t, d.ID); err != nil {
				return fmt.Errorf("device %s installed %s: %w", d.ID, d.TargetRelease, err)
			}
			if d.targetRollout != "" {
				if _, err := tx.Exec(ctx, `UPDATE device_status SET state = ?, updated_at = ? WHERE rollout_id = ? AND device_id = ?`,
					string(StatusReverted), t, d.targetRollout, d.ID); err != nil {
					return fmt.Errorf("device %s reverted: %w", d.ID, err)
				}
			}
		}
		if r.State == StatusFailed || r.State == StatusRolledBack {
			// Do not make the device try again at every poll: the
			// assignment ends, and people are told.
			if _, err := tx.Exec(ctx, `UPDATE devices SET target_release = '', target_path = '', target_rollout = '', updated_at = ? WHERE id = ?`,
				t, d.ID); err != nil {
				return fmt.Errorf("device %s failed %s: %w", d.ID, d.TargetRelease, err)
			}
			*events = append(*events, Event{RolloutID: "", Time: now, Actor: d.ID, Kind: EventDeviceAssignmentFailed,
				Reason:  fmt.Sprintf("device %s reported %s for %s (%s): the assignment ends", d.ID, r.State, d.TargetRelease, orNone(r.ErrorCode)),
				Details: map[string]string{"device": d.ID, "release": d.TargetRelease, "rollout": d.targetRollout, "error_code": r.ErrorCode, "message": r.Message}})
		}
		return nil
	}
	if ro == nil {
		return nil // history only: a report on nothing tufota assigned
	}
	if st.State == r.State {
		if _, err := tx.Exec(ctx, `UPDATE device_status SET updated_at = ?, error_code = ?, message = ?, deferred_until = ? WHERE rollout_id = ? AND device_id = ?`,
			t, r.ErrorCode, r.Message, until, ro.ID, d.ID); err != nil {
			return err
		}
		return recordDownload(ctx, tx, ro.ID, d.ID, r)
	}
	switch {
	case st.State == StatusInstalled && (r.State == StatusFailed || r.State == StatusRolledBack):
	case final(st.State):
		return tufota.Errorf(tufota.EConflict, "device %s: its outcome in rollout %s is %s, which is final; cannot become %s", d.ID, ro.ID, st.State, r.State)
	}
	installedAt := st.installedAt
	if r.State == StatusInstalled {
		installedAt = now
	}
	// The first deferral in the rollout starts the max-deferral clock;
	// later ones keep it.
	since := st.deferredSince
	if r.State == StatusDeferred && since.IsZero() {
		since = now
	}
	if _, err := tx.Exec(ctx, `UPDATE device_status SET state = ?, error_code = ?, message = ?, updated_at = ?, installed_at = ?,
		deferred_since = ?, deferred_until = ?
		WHERE rollout_id = ? AND device_id = ?`, string(r.State), r.ErrorCode, r.Message, t, nullNanos(installedAt),
		nullNanos(since), until, ro.ID, d.ID); err != nil {
		return fmt.Errorf("device %s status in rollout %s: %w", d.ID, ro.ID, err)
	}
	if err := recordDownload(ctx, tx, ro.ID, d.ID, r); err != nil {
		return err
	}
	switch r.State {
	case StatusInstalled:
		if _, err := tx.Exec(ctx, `UPDATE devices SET current_version = ?, current_release = ?, updated_at = ? WHERE id = ?`,
			ro.ReleaseVersion, ro.Release, t, d.ID); err != nil {
			return fmt.Errorf("device %s installed %s: %w", d.ID, ro.Release, err)
		}
		// Installed after its rollout was rolled back: take it back too.
		if ro.State == RolledBack {
			ev, err := s.assignRollback(ctx, tx, ro, d.ID, st, now)
			if err != nil {
				return err
			}
			*events = append(*events, ev...)
		}
	case StatusRolledBack:
		if st.previousVersion != "" && d.Version == ro.ReleaseVersion {
			if _, err := tx.Exec(ctx, `UPDATE devices SET current_version = ?, current_release = ?, updated_at = ? WHERE id = ?`,
				st.previousVersion, st.previousRelease, t, d.ID); err != nil {
				return fmt.Errorf("device %s rolled back: %w", d.ID, err)
			}
		}
	}
	return nil
}

// recordDownload keeps how the device's image came (delta or full, and
// the bytes), when the report says it; a later report that does not say
// it (installed after a reboot) keeps what an earlier one said.
func recordDownload(ctx context.Context, tx *storage.Tx, rolloutID, deviceID string, r Report) error {
	if r.Download == "" {
		return nil
	}
	if _, err := tx.Exec(ctx, `UPDATE device_status SET download = ?, download_bytes = ? WHERE rollout_id = ? AND device_id = ?`,
		r.Download, r.Bytes, rolloutID, deviceID); err != nil {
		return fmt.Errorf("device %s download in rollout %s: %w", deviceID, rolloutID, err)
	}
	return nil
}

// reportSubject finds the rollout and status row a report is about. It
// fills r.RolloutID when the report names only the target.
func (s *Service) reportSubject(ctx context.Context, q storage.Querier, d deviceRow, r *Report) (*Rollout, statusRow, error) {
	if r.RolloutID != "" {
		if d.targetPath != "" && r.Target == d.targetPath && r.RolloutID == d.targetRollout {
			return nil, statusRow{}, nil
		}
		ro, err := s.rollout(ctx, q, r.RolloutID)
		if errors.Is(err, tufota.ErrNotFound) {
			return nil, statusRow{}, tufota.Errorf(tufota.EConflict, "device %s reports on rollout %s, which does not exist", d.ID, r.RolloutID)
		}
		if err != nil {
			return nil, statusRow{}, err
		}
		st, err := s.status(ctx, q, ro.ID, d.ID)
		if errors.Is(err, tufota.ErrNotFound) {
			return nil, statusRow{}, tufota.Errorf(tufota.EConflict, "device %s reports on rollout %s, which never offered it %s", d.ID, ro.ID, ro.Release)
		}
		if err != nil {
			return nil, statusRow{}, err
		}
		if r.Target != "" && r.Target != ro.TargetPath {
			if ro.State == RolledBack {
				return nil, statusRow{}, nil // about the rollback's release: history only
			}
			return nil, statusRow{}, tufota.Errorf(tufota.EConflict, "device %s reports target %s on rollout %s, which offered %s", d.ID, r.Target, ro.ID, ro.TargetPath)
		}
		return &ro, st, nil
	}
	if r.Target == "" || (d.targetPath != "" && r.Target == d.targetPath) {
		return nil, statusRow{}, nil
	}
	// The latest rollout that offered this device this target.
	var id string
	err := q.QueryRow(ctx, `SELECT s.rollout_id FROM device_status s JOIN rollouts r ON r.id = s.rollout_id
		WHERE s.device_id = ? AND r.target_path = ? ORDER BY s.offered_at DESC LIMIT 1`, d.ID, r.Target).Scan(&id)
	if errors.Is(err, tufota.ErrNotFound) {
		return nil, statusRow{}, nil
	}
	if err != nil {
		return nil, statusRow{}, fmt.Errorf("find rollout of device %s target %s: %w", d.ID, r.Target, err)
	}
	r.RolloutID = id
	ro, err := s.rollout(ctx, q, id)
	if err != nil {
		return nil, statusRow{}, err
	}
	st, err := s.status(ctx, q, id, d.ID)
	if err != nil {
		return nil, statusRow{}, err
	}
	return &ro, st, nil
}

// AssignDevice assigns one release to one device outside any rollout (a
// service engineer's fix), recorded with the actor. The device must not be
// in an active rollout, the release must be published and support the
// device's hardware, and a release older than what the device runs must be
// signed to allow the downgrade from that exact version.
//
// Errors: EInvalid for bad input or a downgrade the device would refuse,
// ENotFound for an unknown device or release, EConflict when the device is
// in an active rollout or runs the release already.
func (s *Service) AssignDevice(ctx context.Context, deviceID, name, version, actor string) error {
	return s.AssignDeviceWith(ctx, deviceID, name, version, actor, nil)
}

// AssignDeviceWith is AssignDevice that runs in (when not nil) inside the
// transaction of the assignment, after its writes: the assignment takes
// effect only with what in writes (its audit entry). Errors as
// AssignDevice's, and in's.
func (s *Service) AssignDeviceWith(ctx context.Context, deviceID, name, version, actor string, in InTx) error {
	if err := checkActor(actor); err != nil {
		return err
	}
	if err := tufota.ValidateName("release name", name); err != nil {
		return err
	}
	if _, err := tufota.ParseVersion(version); err != nil {
		return err
	}
	d, err := s.device(ctx, s.db, deviceID)
	if err != nil {
		return err
	}
	rel, err := s.lookupRelease(ctx, name, version)
	if err != nil {
		return err
	}
	if !slices.Contains(rel.Hardware, d.Hardware) {
		return tufota.Errorf(tufota.EInvalid, "release %s@%s supports hardware %s, not device %s's %s", name, version, strings.Join(rel.Hardware, ", "), d.ID, d.Hardware)
	}
	if d.Version != "" {
		c, err := tufota.CompareVersions(version, d.Version)
		if err != nil {
			return err
		}
		switch {
		case d.Version == version:
			return tufota.Errorf(tufota.EConflict, "device %s runs %s@%s already", d.ID, name, version)
		case c <= 0 && !slices.Contains(rel.AllowDowngradeFrom, d.Version):
			return tufota.Errorf(tufota.EInvalid, "device %s runs %s; %s@%s is not newer and its signed metadata does not allow a downgrade from %s (push it with --allow-downgrade-from %s)",
				d.ID, d.Version, name, version, d.Version, d.Version)
		}
	}
	if owner, err := s.activeOwner(ctx, d.ID); err != nil {
		return err
	} else if owner != "" {
		return tufota.Errorf(tufota.EConflict, "device %s is in active rollout %s; pause and finish, abort or roll it back first", d.ID, owner)
	}
	now := s.clock()
	ref := name + "@" + version
	ev := Event{Time: now, Actor: actor, Kind: EventDeviceAssigned,
		Reason:  fmt.Sprintf("%s assigned %s to device %s (was running %s)", actor, ref, d.ID, orUnknown(d.Version)),
		Details: map[string]string{"device": d.ID, "release": ref, "target": rel.TargetPath, "previous_version": d.Version}}
	err = s.db.Tx(ctx, func(tx *storage.Tx) error {
		if _, err := tx.Exec(ctx, `UPDATE devices SET target_release = ?, target_path = ?, target_rollout = '', target_by = ?, target_at = ?, updated_at = ? WHERE id = ?`,
			ref, rel.TargetPath, actor, nanos(now), nanos(now), d.ID); err != nil {
			return err
		}
		if err := s.deviceChanged(ctx, tx, d.ID); err != nil {
			return err
		}
		if err := s.recordEvents(ctx, tx, ev); err != nil {
			return err
		}
		return runIn(ctx, tx, in)
	})
	if err != nil {
		return fmt.Errorf("assign %s to device %s: %w", ref, d.ID, err)
	}
	s.notify(ctx, ev)
	return nil
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func orNone(code string) string {
	if code == "" {
		return "no error code"
	}
	return code
}

func orUnknown(v string) string {
	if v == "" {
		return "an unknown version"
	}
	return v
}

// activeOwner returns the active rollout the device has a status row in,
// or "".
func (s *Service) activeOwner(ctx context.Context, deviceID string) (string, error) {
	var id string
	err := s.db.QueryRow(ctx, `SELECT r.id FROM device_status s JOIN rollouts r ON r.id = s.rollout_id
		WHERE s.device_id = ? AND r.state IN (?, ?, ?, ?) ORDER BY r.created_at LIMIT 1`,
		append([]any{deviceID}, activeStates...)...).Scan(&id)
	if errors.Is(err, tufota.ErrNotFound) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("active rollout of device %s: %w", deviceID, err)
	}
	return id, nil
}

func (s *Service) lookupRelease(ctx context.Context, name, version string) (ReleaseRef, error) {
	rel, err := s.releases.Release(ctx, name, version)
	if errors.Is(err, tufota.ErrNotFound) {
		return ReleaseRef{}, tufota.Errorf(tufota.ENotFound, "unknown release %s@%s: push it first (tufota release push)", name, version)
	}
	if err != nil {
		return ReleaseRef{}, fmt.Errorf("look up release %s@%s: %w", name, version, err)
	}
	if rel.PublishedAt.IsZero() {
		return ReleaseRef{}, tufota.Errorf(tufota.EConflict, "release %s@%s is not published yet: devices could not verify it", name, version)
	}
	return rel, nil
}

// statusRow is a device's row in device_status.
type statusRow struct {
	RolloutID, DeviceID              string
	State                            DeviceState
	ErrorCode, Message               string
	Wave                             int
	offeredAt, updatedAt             time.Time
	installedAt                      time.Time
	previousRelease, previousVersion string
	// deferredSince is the device's first deferral in the rollout (zero if
	// none), deferredUntil what its latest deferral asked for (zero unless
	// its state is deferred).
	deferredSince, deferredUntil time.Time
	// download is how the image came ("delta", "full" or "" if not
	// reported), downloadBytes the bytes the device transferred.
	download      string
	downloadBytes int64
}

// deferral returns the row's running deferral: zero unless its state is
// deferred.
func (r statusRow) deferral() Deferral {
	if r.State != StatusDeferred || r.deferredSince.IsZero() {
		return Deferral{}
	}
	return Deferral{Since: r.deferredSince, Until: r.deferredUntil}
}

const statusColumns = `rollout_id, device_id, state, error_code, message, wave, offered_at, updated_at, installed_at, previous_release, previous_version,
	deferred_since, deferred_until, download, download_bytes`

func scanStatus(sc interface{ Scan(...any) error }) (statusRow, error) {
	var (
		r                statusRow
		state            string
		wave             int64
		offered, updated int64
		installed        sql.NullInt64
		since, until     sql.NullInt64
	)
	if err := sc.Scan(&r.RolloutID, &r.DeviceID, &state, &r.ErrorCode, &r.Message, &wave, &offered, &updated, &installed,
		&r.previousRelease, &r.previousVersion, &since, &until, &r.download, &r.downloadBytes); err != nil {
		return statusRow{}, err
	}
	r.State, r.Wave = DeviceState(state), int(wave)
	r.offeredAt, r.updatedAt, r.installedAt = fromNanos(offered), fromNanos(updated), fromNull(installed)
	r.deferredSince, r.deferredUntil = fromNull(since), fromNull(until)
	return r, nil
}

func (s *Service) status(ctx context.Context, q storage.Querier, rolloutID, deviceID string) (statusRow, error) {
	return scanStatus(q.QueryRow(ctx, `SELECT `+statusColumns+` FROM device_status WHERE rollout_id = ? AND device_id = ?`, rolloutID, deviceID))
}

// deviceStatuses returns the device's rows by rollout.
func (s *Service) deviceStatuses(ctx context.Context, deviceID string) (map[string]statusRow, error) {
	return s.statusRows(ctx, `WHERE device_id = ?`, deviceID, func(r statusRow) string { return r.RolloutID })
}

// rolloutStatuses returns a rollout's rows by device.
func (s *Service) rolloutStatuses(ctx context.Context, rolloutID string) (map[string]statusRow, error) {
	return s.statusRows(ctx, `WHERE rollout_id = ?`, rolloutID, func(r statusRow) string { return r.DeviceID })
}

func (s *Service) statusRows(ctx context.Context, where, arg string, key func(statusRow) string) (map[string]statusRow, error) {
	rows, err := s.db.Query(ctx, `SELECT `+statusColumns+` FROM device_status `+where, arg)
	if err != nil {
		return nil, fmt.Errorf("device status: %w", err)
	}
	defer rows.Close()
	out := map[string]statusRow{}
	for rows.Next() {
		r, err := scanStatus(rows)
		if err != nil {
			return nil, fmt.Errorf("device status: %w", err)
		}
		out[key(r)] = r
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("device status: %w", err)
	}
	return out, nil
}

// sortedKeys returns m's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	keys := slices.Collect(maps.Keys(m))
	sort.Strings(keys)
	return keys
}
