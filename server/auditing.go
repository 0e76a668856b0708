package server

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/audit"
	"github.com/tufota/tufota/rollout"
	"github.com/tufota/tufota/signer"
	"github.com/tufota/tufota/storage"
)

const (
	auditObjectKey  = "tufota.audit.object"
	auditDetailsKey = "tufota.audit.details"
	// auditDoneKey marks a request whose handler wrote its audit entry in
	// the transaction of its change.
	auditDoneKey = "tufota.audit.done"
	// auditPartKey marks a request that committed the entries of its
	// changes in their transactions and may still fail after them (a
	// signer operation): a failure is then recorded too, a success is not.
	auditPartKey = "tufota.audit.part"
)

// auditObject names the object a handler acted on, with optional details,
// for the audit entry the route's middleware writes.
func auditObject(c echo.Context, object string, details map[string]string) {
	c.Set(auditObjectKey, object)
	if details != nil {
		c.Set(auditDetailsKey, details)
	}
}

// audited records the outcome of a route: every call of a state-changing
// route (anything but GET and HEAD), and every denial on any route.
// Authentication failures are recorded by authorize, which knows the reason.
func (s *Server) audited(r Route, next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		err := next(c)
		if done, _ := c.Get(auditDoneKey).(bool); done {
			return err
		}
		if part, _ := c.Get(auditPartKey).(bool); part && err == nil {
			return err
		}
		denied := tufota.ErrorCode(err) == tufota.EForbidden
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			if !denied {
				return err
			}
		}
		if tufota.ErrorCode(err) == tufota.EUnauthorized && c.Get(principalKey) == nil {
			return err // recorded as auth.failure by authorize
		}
		p := principal(c)
		e := audit.Entry{
			Actor:   p.Name,
			Role:    string(p.Role),
			Source:  c.RealIP(),
			Action:  r.Action,
			Object:  stringOf(c.Get(auditObjectKey)),
			Outcome: audit.OutcomeOK,
			Details: map[string]string{},
		}
		if d, ok := c.Get(auditDetailsKey).(map[string]string); ok {
			for k, v := range d {
				e.Details[k] = v
			}
		}
		if p.User != "" {
			e.Details["user"] = p.User // the person behind the token (Actor)
		}
		if e.Object == "" {
			e.Object = c.Request().URL.Path
		}
		if e.Actor == "" {
			e.Actor = "anonymous"
		}
		if err != nil {
			e.Outcome = outcomeOf(err)
			e.Details["error"] = truncate(err.Error(), 512)
			e.Details["code"] = string(tufota.ErrorCode(err))
		}
		s.record(c.Request().Context(), e)
		return err
	}
}

func outcomeOf(err error) string {
	var he *echo.HTTPError
	switch code := tufota.ErrorCode(err); {
	case code == tufota.EForbidden || code == tufota.EUnauthorized:
		return audit.OutcomeDenied
	case errors.As(err, &he) && he.Code < 500:
		return audit.OutcomeFailed
	case code == tufota.EInternal || code == tufota.EUnavailable || code == tufota.ENoSpace:
		return audit.OutcomeError
	default:
		return audit.OutcomeFailed
	}
}

// record appends e to the audit log on its own: for refusals and failures
// (which changed nothing, or only what their own in-transaction entries
// record), reads and actions that change no database state (a timestamp
// refresh). Changes append their entry in their own transaction instead
// (auditIn, auditEvent, signerAudit). A failed append is logged loudly.
func (s *Server) record(ctx context.Context, e audit.Entry) {
	if s.cfg.Audit == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	// A refused request may carry bytes the log refuses (a NUL in a
	// release name or device ID): record it escaped rather than lose it.
	if _, err := s.cfg.Audit.Append(ctx, audit.Escape(e)); err != nil {
		s.log.Error("AUDIT APPEND FAILED", slog.String("action", e.Action), slog.String("actor", e.Actor), slog.String("object", e.Object), slog.Any("err", err))
	}
}

// auditIn appends the audit entry of c's request (action on object, with
// details; outcome from cause, nil for success) inside tx, the transaction
// of the change it records, escaped as record does. The caller marks the
// request audited (auditDoneKey) once tx has committed.
func (s *Server) auditIn(ctx context.Context, tx *storage.Tx, c echo.Context, action, object string, details map[string]string, cause error) error {
	p := principal(c)
	e := audit.Entry{Actor: p.Name, Role: string(p.Role), Source: c.RealIP(), Action: action, Object: object,
		Outcome: audit.OutcomeOK, Details: maps.Clone(details)}
	if e.Details == nil {
		e.Details = map[string]string{}
	}
	if p.User != "" {
		e.Details["user"] = p.User // the person behind the token (Actor)
	}
	if cause != nil {
		e.Outcome = outcomeOf(cause)
		e.Details["error"] = truncate(cause.Error(), 512)
		e.Details["code"] = string(tufota.ErrorCode(cause))
	}
	_, err := s.cfg.Audit.AppendTx(ctx, tx, audit.Escape(e))
	return err
}

// routeAuditIn returns the work that appends the audit entry of c's
// request (action on object, with details, outcome ok) in the transaction
// of its change, for the rollout service's ...With operations. The caller
// marks the request audited (auditDoneKey) once the change has committed.
func (s *Server) routeAuditIn(c echo.Context, action, object string, details map[string]string) rollout.InTx {
	return func(ctx context.Context, tx *storage.Tx) error {
		return s.auditIn(ctx, tx, c, action, object, details, nil)
	}
}

// signerAudit returns the request's context carrying the audit of its
// signer operation (signer.WithAudit): each database change the operation
// makes commits with an entry of the action the signer names (the route's
// action for the change it asked for, "release.publish" and the like for
// what follows from it), with the request's actor, source and object and
// its details added to the route's. Once an entry has committed the
// request counts as audited, unless it fails after all: the route's
// middleware then records the failure.
func (s *Server) signerAudit(c echo.Context) context.Context {
	return signer.WithAudit(c.Request().Context(), func(ctx context.Context, tx *storage.Tx, action string, details map[string]string) error {
		d, _ := c.Get(auditDetailsKey).(map[string]string)
		d = maps.Clone(d)
		if d == nil {
			d = map[string]string{}
		}
		maps.Copy(d, details)
		object := stringOf(c.Get(auditObjectKey))
		if object == "" {
			object = c.Request().URL.Path
		}
		if err := s.auditIn(ctx, tx, c, action, object, d, nil); err != nil {
			return err
		}
		tx.OnCommit(func() { c.Set(auditPartKey, true) })
		return nil
	})
}

// auditEvent appends the audit entry of a rollout event (a person's
// command, the controller's own decision, a device assignment) in tx, the
// transaction that makes the event: the change commits only with its
// entry (rollout.Service.AuditEventsIn). A pause the controller decides
// alerts once tx has committed.
func (s *Server) auditEvent(ctx context.Context, tx *storage.Tx, e rollout.Event) error {
	d := map[string]string{"kind": e.Kind, "reason": e.Reason}
	for k, v := range e.Details {
		d[k] = v
	}
	object := "rollout/" + e.RolloutID
	if e.RolloutID == "" {
		object = "device/" + e.Details["device"]
	}
	role := ""
	if e.Actor == rollout.ControllerActor {
		role = "system"
	}
	if _, err := s.cfg.Audit.AppendTx(ctx, tx, audit.Escape(audit.Entry{Actor: e.Actor, Role: role, Action: "rollout." + e.Kind,
		Object: object, Outcome: audit.OutcomeOK, Details: d})); err != nil {
		return err
	}
	if e.Kind == rollout.EventPaused && e.Actor == rollout.ControllerActor {
		tx.OnCommit(func() { s.cfg.Alerts.RolloutPaused(e.RolloutID, e.Reason) })
	}
	return nil
}

func stringOf(v any) string {
	s, _ := v.(string)
	return s
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// SystemAudit returns the signer audit of changes the server makes on its
// own, with no request behind them (the start-up reconciliation of
// interrupted publishes): each entry, actor and role "system", object the
// release, commits in the transaction of its change, with why in the
// details' "reason".
func SystemAudit(alog *audit.Log, why string) signer.AuditFunc {
	return func(ctx context.Context, tx *storage.Tx, action string, details map[string]string) error {
		d := maps.Clone(details)
		if d == nil {
			d = map[string]string{}
		}
		d["reason"] = why
		object := ""
		if ref := d["release"]; ref != "" {
			object = "release/" + ref
		}
		_, err := alog.AppendTx(ctx, tx, audit.Escape(audit.Entry{Actor: "system", Role: "system", Action: action,
			Object: object, Outcome: audit.OutcomeOK, Details: d}))
		return err
	}
}
