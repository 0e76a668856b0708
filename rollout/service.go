package rollout

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/storage"
)

// ReleaseRef is what the rollout service needs to know about a release.
type ReleaseRef struct {
	Name       string
	Version    string
	TargetPath string
	Hardware   []string
	// AllowDowngradeFrom lists the versions the release's signed metadata
	// lets a device leave for it (the signed permission a rollback needs).
	AllowDowngradeFrom []string
	// PublishedAt is when the release entered the TUF repository; zero
	// means it is not published yet, and no rollout may take it.
	PublishedAt time.Time
}

// ReleaseLookup finds releases. Release returns an error matching
// tufota.ErrNotFound when there is no such release.
type ReleaseLookup interface {
	Release(ctx context.Context, name, version string) (ReleaseRef, error)
}

// ReleaseFunc adapts a function to ReleaseLookup.
type ReleaseFunc func(ctx context.Context, name, version string) (ReleaseRef, error)

// Release calls f.
func (f ReleaseFunc) Release(ctx context.Context, name, version string) (ReleaseRef, error) {
	return f(ctx, name, version)
}

// Event is one recorded transition of a rollout (or, with an empty
// RolloutID, an assignment of a release to one device).
type Event struct {
	RolloutID string            `json:"rollout_id,omitempty"`
	Seq       int64             `json:"seq,omitempty"`
	Time      time.Time         `json:"time"`
	Actor     string            `json:"actor"`
	Kind      string            `json:"kind"`
	Reason    string            `json:"reason,omitempty"`
	Details   map[string]string `json:"details,omitempty"`
}

// Event kinds.
const (
	EventCreated           = "created"
	EventScheduled         = "scheduled"
	EventStarted           = "started"
	EventWaveStarted       = "wave-started"
	EventPaused            = "paused"
	EventResumed           = "resumed"
	EventApprovalRequested = "approval-requested"
	EventApproved          = "approved"
	EventAborted           = "aborted"
	EventCompleted         = "completed"
	EventRolledBack        = "rolled-back"
	EventDeviceAssigned    = "device-assigned"
	// EventDeviceAssignmentFailed: a device reported failed or rolled-back
	// for a release assigned to it alone; the assignment ends.
	EventDeviceAssignmentFailed = "device-assignment-failed"
)

// ControllerActor is the actor of transitions the controller makes.
const ControllerActor = "controller"

// Service keeps devices, cohorts and rollouts in the state database, answers
// devices' "what should I run?" and records their reports, and runs the
// rollout controller. It is safe for concurrent use, also by several server
// replicas sharing one database; run the controller (Tick, Run) on one
// replica at a time.
type Service struct {
	db       *storage.DB
	releases ReleaseLookup
	now      func() time.Time
	log      *slog.Logger
	newID    func() string
	observer func(context.Context, Event)
	// eventAudit records events in the transaction that makes them.
	eventAudit func(context.Context, *storage.Tx, Event) error
	hot        *hotCache
}

// InTx is work a caller adds to the transaction of a change, after the
// change's own writes (typically the change's audit entry): an error from
// it rolls the change back, and the operation returns it.
type InTx func(ctx context.Context, tx *storage.Tx) error

// Option configures a Service.
type Option func(*Service)

// WithClock sets the clock (time.Now by default).
func WithClock(now func() time.Time) Option { return func(s *Service) { s.now = now } }

// WithLogger sets the logger (slog.Default() by default).
func WithLogger(l *slog.Logger) Option { return func(s *Service) { s.log = l } }

// WithIDs sets the generator of rollout IDs ("ro-" and 12 random hex digits
// by default). IDs must be valid names (tufota.ValidateName) and unique.
func WithIDs(f func() string) Option { return func(s *Service) { s.newID = f } }

// WithObserver sets a function called with every event after it is
// committed. It runs on the caller's goroutine and must not block for
// long. Once AuditEventsIn is set, the events it records in their
// transaction are not given to the observer too.
func WithObserver(f func(context.Context, Event)) Option {
	return func(s *Service) { s.observer = f }
}

// NewService returns a rollout service on db (which must have the
// migrations of this build applied; storage.OpenDB does that), finding
// releases through releases.
func NewService(db *storage.DB, releases ReleaseLookup, opts ...Option) *Service {
	s := &Service{db: db, releases: releases, now: time.Now, log: slog.Default(),
		newID: func() string { return "ro-" + randomHex(6) }}
	for _, o := range opts {
		o(s)
	}
	s.hot = newHotCache(s)
	return s
}

// AuditEventsIn makes f record every event (a transition of a rollout,
// the controller's own included, or an assignment of a release to one
// device) inside the transaction that makes it, after that transaction's
// row writes and before its generation bumps: an error from f rolls the
// change back. Such events are not given to the observer (WithObserver).
// Call it before the service is used; it is not safe to call concurrently
// with the service's other methods.
func (s *Service) AuditEventsIn(f func(ctx context.Context, tx *storage.Tx, e Event) error) {
	s.eventAudit = f
}

// recordEvents gives the events of a change to the event auditor, in the
// change's transaction tx, as its last row writes.
func (s *Service) recordEvents(ctx context.Context, tx *storage.Tx, events ...Event) error {
	if s.eventAudit == nil {
		return nil
	}
	for _, e := range events {
		if err := s.eventAudit(ctx, tx, e); err != nil {
			return fmt.Errorf("record %s event: %w", e.Kind, err)
		}
	}
	return nil
}

// runIn runs in, when there is one, in tx.
func runIn(ctx context.Context, tx *storage.Tx, in InTx) error {
	if in == nil {
		return nil
	}
	return in(ctx, tx)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b)
}

func (s *Service) clock() time.Time { return s.now().UTC() }

func (s *Service) notify(ctx context.Context, events ...Event) {
	for _, e := range events {
		s.log.InfoContext(ctx, "rollout event", "rollout", e.RolloutID, "kind", e.Kind, "actor", e.Actor, "reason", e.Reason)
		if s.observer != nil && s.eventAudit == nil {
			s.observer(ctx, e)
		}
	}
}

// ParseRelease splits "NAME@VERSION" and validates both parts (EInvalid).
func ParseRelease(s string) (name, version string, err error) {
	name, version, ok := strings.Cut(s, "@")
	if !ok {
		return "", "", tufota.Errorf(tufota.EInvalid, "release %q: want NAME@VERSION, e.g. pump-fw@1.4.0", s)
	}
	if err := tufota.ValidateName("release name", name); err != nil {
		return "", "", err
	}
	if _, err := tufota.ParseVersion(version); err != nil {
		return "", "", err
	}
	return name, version, nil
}

func checkActor(actor string) error {
	if strings.TrimSpace(actor) == "" {
		return tufota.Errorf(tufota.EInvalid, "actor is empty: every change is recorded with who made it")
	}
	if len(actor) > 256 {
		return tufota.Errorf(tufota.EInvalid, "actor is longer than 256 characters")
	}
	return nil
}

// nanos and times convert between time.Time and BIGINT columns.
func nanos(t time.Time) int64 { return t.UTC().UnixNano() }

func nullNanos(t time.Time) sql.NullInt64 {
	if t.IsZero() {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: nanos(t), Valid: true}
}

func fromNanos(n int64) time.Time { return time.Unix(0, n).UTC() }

func fromNull(n sql.NullInt64) time.Time {
	if !n.Valid {
		return time.Time{}
	}
	return fromNanos(n.Int64)
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("rollout: marshal %T: %v", v, err)) // only for types that always marshal
	}
	return string(b)
}

// insertEvent appends an event to a rollout's history inside tx. The
// caller has updated the rollout's row in the same transaction, which
// serialises writers of one rollout.
func insertEvent(ctx context.Context, tx storage.Querier, e *Event) error {
	var last int64
	if err := tx.QueryRow(ctx, `SELECT COALESCE(MAX(seq), 0) FROM rollout_events WHERE rollout_id = ?`, e.RolloutID).Scan(&last); err != nil {
		return fmt.Errorf("next event of rollout %s: %w", e.RolloutID, err)
	}
	e.Seq = last + 1
	details := e.Details
	if details == nil {
		details = map[string]string{}
	}
	if _, err := tx.Exec(ctx, `INSERT INTO rollout_events (rollout_id, seq, time, actor, kind, reason, details) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		e.RolloutID, e.Seq, nanos(e.Time), e.Actor, e.Kind, e.Reason, mustJSON(details)); err != nil {
		return fmt.Errorf("record %s event of rollout %s: %w", e.Kind, e.RolloutID, err)
	}
	return nil
}
