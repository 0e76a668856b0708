package server

import (
	"context"
	"encoding/json"
	"maps"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/access"
	"github.com/tufota/tufota/api"
	"github.com/tufota/tufota/rollout"
	"github.com/tufota/tufota/signer"
	"github.com/tufota/tufota/storage"
)

// ReleaseLookup lets the rollout service find releases in rels.
func ReleaseLookup(rels *signer.Releases) rollout.ReleaseLookup {
	return rollout.ReleaseFunc(func(ctx context.Context, name, version string) (rollout.ReleaseRef, error) {
		r, err := rels.Get(ctx, name, version)
		if err != nil {
			return rollout.ReleaseRef{}, err
		}
		ref := rollout.ReleaseRef{Name: r.Name, Version: r.Version, TargetPath: r.TargetPath, Hardware: r.Hardware, AllowDowngradeFrom: r.AllowDowngradeFrom}
		if r.State == signer.StatePublished && r.PublishedAt != nil {
			ref.PublishedAt = *r.PublishedAt
		}
		return ref, nil
	})
}

// RegisterDeviceRequest is the body of POST /api/v1/devices.
type RegisterDeviceRequest struct {
	rollout.Device
	// TokenExpires is the device token's lifetime ("8760h"); default 1 year.
	TokenExpires string `json:"token_expires,omitempty"`
}

// DeviceTokenResponse carries a device's token, shown once.
type DeviceTokenResponse struct {
	Device rollout.Device `json:"device"`
	Token  string         `json:"token"`
}

const defaultDeviceTokenTTL = 365 * 24 * time.Hour

func (s *Server) registerDevice(c echo.Context) error {
	var req RegisterDeviceRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	ttl := defaultDeviceTokenTTL
	if req.TokenExpires != "" {
		d, err := time.ParseDuration(req.TokenExpires)
		if err != nil || d <= 0 {
			return tufota.Errorf(tufota.EInvalid, "token_expires %q: want a positive duration such as 8760h", req.TokenExpires)
		}
		ttl = d
	}
	auditObject(c, "device/"+req.ID, map[string]string{"hardware": req.Hardware})
	return s.enrollDevice(c, req.Device, ttl, principal(c).Name, "device.register", false)
}

// enrollDevice registers d, issues its token and appends the route's audit
// entry (action) in one transaction, shared with the enrollments that
// arrive meanwhile (group commit): the 201 means all three are durable, and
// a failure leaves none of them (the route's middleware then audits the
// failure). A device registered for the first time gets only this token:
// any token issued for its ID before it existed is revoked. With onlyNew, a
// device that is already registered is refused (EConflict), checked in the
// same transaction.
func (s *Server) enrollDevice(c echo.Context, d rollout.Device, ttl time.Duration, actor, action string, onlyNew bool) error {
	ctx := context.WithoutCancel(c.Request().Context())
	var (
		dev     rollout.Device
		isNew   bool
		secret  string
		revoked int64
	)
	err := s.enrolls.Do(c.Request().Context(), func(tx *storage.Tx) error {
		var err error
		if dev, isNew, err = s.cfg.Rollouts.RegisterDeviceIn(ctx, tx, d, actor); err != nil {
			return err
		}
		if onlyNew && !isNew {
			return tufota.Errorf(tufota.EConflict, "device %s is already registered; an enrollment token cannot re-enroll it", d.ID)
		}
		revoked = 0
		if isNew {
			// RevokeDevice moves the tokens generation in tx: this server
			// drops its verified tokens when tx commits, others at their
			// next poll.
			if revoked, err = s.cfg.Tokens.RevokeDevice(ctx, tx, d.ID); err != nil {
				return err
			}
		}
		if secret, _, err = s.cfg.Tokens.Create(ctx, tx, access.NewToken{Name: d.ID, Role: access.RoleDevice, DeviceID: d.ID, TTL: ttl}, actor); err != nil {
			return err
		}
		details, _ := c.Get(auditDetailsKey).(map[string]string)
		details = maps.Clone(details)
		if details == nil {
			details = map[string]string{}
		}
		if revoked > 0 {
			details["revoked_prior_tokens"] = strconv.FormatInt(revoked, 10)
		}
		object := stringOf(c.Get(auditObjectKey))
		if object == "" {
			object = "device/" + d.ID
		}
		return s.auditIn(ctx, tx, c, action, object, details, nil)
	})
	if err != nil {
		return err // nothing was recorded; the middleware audits the failure
	}
	c.Set(auditDoneKey, true)
	if revoked > 0 {
		s.log.Warn("revoked device tokens issued before the device existed", "device", d.ID, "tokens", revoked)
	}
	if !isNew {
		// A re-registered device: read it with its current last-seen time.
		var err error
		if dev, err = s.cfg.Rollouts.Device(ctx, d.ID); err != nil {
			return err
		}
	}
	return c.JSON(http.StatusCreated, DeviceTokenResponse{Device: dev, Token: secret})
}

// EnrollScope is what an enrollment token enrolls devices with.
type EnrollScope = api.EnrollScope

// EnrollTokenRequest is the body of POST /api/v1/enroll-tokens.
type EnrollTokenRequest = api.EnrollTokenRequest

// EnrollTokenResponse carries the enrollment token, shown once.
type EnrollTokenResponse struct {
	EnrollToken string       `json:"enroll_token"`
	Detail      access.Token `json:"detail"`
}

func (s *Server) createEnrollToken(c echo.Context) error {
	var req EnrollTokenRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	// Validate the scope as a device would be validated.
	probe := rollout.Device{ID: "probe", Hardware: req.Hardware, Attrs: req.Attrs, Tags: req.Tags}
	if err := probe.Validate(); err != nil {
		return err
	}
	ttl := 24 * time.Hour
	if req.Expires != "" {
		d, err := time.ParseDuration(req.Expires)
		if err != nil || d <= 0 {
			return tufota.Errorf(tufota.EInvalid, "expires %q: want a positive duration such as 24h", req.Expires)
		}
		ttl = d
	}
	if req.Name == "" {
		req.Name = "enroll-" + req.Hardware
	}
	scope, _ := json.Marshal(req.EnrollScope)
	// The token and its audit entry commit together.
	ctx := context.WithoutCancel(c.Request().Context())
	var (
		secret string
		tok    access.Token
	)
	err := s.cfg.DB.Tx(ctx, func(tx *storage.Tx) error {
		var err error
		if secret, tok, err = s.cfg.Tokens.Create(ctx, tx, access.NewToken{Name: req.Name, Role: access.RoleEnroll, TTL: ttl, Scope: string(scope)}, principal(c).Name); err != nil {
			return err
		}
		details := map[string]string{"role": "enroll", "hardware": req.Hardware}
		auditObject(c, "token/"+tok.ID, details)
		return s.auditIn(ctx, tx, c, "token.create", "token/"+tok.ID, details, nil)
	})
	if err != nil {
		return err // nothing was created; the middleware audits the failure
	}
	c.Set(auditDoneKey, true)
	return c.JSON(http.StatusCreated, EnrollTokenResponse{EnrollToken: secret, Detail: tok})
}

// EnrollRequest is a device enrolling itself with an enrollment token.
type EnrollRequest = api.EnrollRequest

func (s *Server) enroll(c echo.Context) error {
	var req EnrollRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	var scope EnrollScope
	if err := json.Unmarshal([]byte(principal(c).Scope), &scope); err != nil {
		return tufota.Errorf(tufota.EForbidden, "enrollment token has no valid scope")
	}
	auditObject(c, "device/"+req.DeviceID, map[string]string{"hardware": scope.Hardware, "enrolled_with": principal(c).TokenID})
	// enrollDevice refuses a registered device in its transaction; this
	// read refuses the common case before any write.
	if _, err := s.cfg.Rollouts.Device(c.Request().Context(), req.DeviceID); err == nil {
		return tufota.Errorf(tufota.EConflict, "device %s is already registered; an enrollment token cannot re-enroll it", req.DeviceID)
	}
	d := rollout.Device{ID: req.DeviceID, Hardware: scope.Hardware, Version: req.Version, Attrs: scope.Attrs, Tags: scope.Tags}
	return s.enrollDevice(c, d, defaultDeviceTokenTTL, principal(c).Name, "device.enroll", true)
}

func (s *Server) listDevices(c echo.Context) error {
	devs, err := s.cfg.Rollouts.Devices(c.Request().Context(), rollout.DeviceFilter{})
	if err != nil {
		return err
	}
	if devs == nil {
		devs = []rollout.Device{}
	}
	return c.JSON(http.StatusOK, devs)
}

func (s *Server) getDevice(c echo.Context) error {
	d, err := s.cfg.Rollouts.Device(c.Request().Context(), c.Param("id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, d)
}

// AssignRequest assigns one release to one device.
type AssignRequest = api.AssignRequest

func (s *Server) assignDevice(c echo.Context) error {
	var req AssignRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	name, version, err := splitRef(req.Release)
	if err != nil {
		return err
	}
	object, details := "device/"+c.Param("id"), map[string]string{"release": req.Release, "reason": req.Reason}
	auditObject(c, object, details)
	// The assignment and its audit entry commit together.
	ctx := context.WithoutCancel(c.Request().Context())
	if err := s.cfg.Rollouts.AssignDeviceWith(ctx, c.Param("id"), name, version, principal(c).Name, s.routeAuditIn(c, "device.assign", object, details)); err != nil {
		return err // nothing was assigned; the middleware audits the failure
	}
	c.Set(auditDoneKey, true)
	return s.getDevice(c)
}

// CohortRequest is the body of POST /api/v1/cohorts.
type CohortRequest = api.CohortRequest

func (s *Server) createCohort(c echo.Context) error {
	var req CohortRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	object, details := "cohort/"+req.Name, map[string]string{"selector": req.Selector}
	auditObject(c, object, details)
	// The cohort and its audit entry commit together.
	ctx := context.WithoutCancel(c.Request().Context())
	co, err := s.cfg.Rollouts.CreateCohortWith(ctx, req.Name, req.Selector, principal(c).Name, s.routeAuditIn(c, "cohort.create", object, details))
	if err != nil {
		return err // nothing was saved; the middleware audits the failure
	}
	c.Set(auditDoneKey, true)
	return c.JSON(http.StatusCreated, co)
}

func (s *Server) listCohorts(c echo.Context) error {
	cos, err := s.cfg.Rollouts.Cohorts(c.Request().Context())
	if err != nil {
		return err
	}
	if cos == nil {
		cos = []rollout.Cohort{}
	}
	return c.JSON(http.StatusOK, cos)
}

func (s *Server) getCohort(c echo.Context) error {
	co, err := s.cfg.Rollouts.Cohort(c.Request().Context(), c.Param("name"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, co)
}

func (s *Server) createRollout(c echo.Context) error {
	var spec rollout.Spec
	if err := decodeJSON(c, &spec); err != nil {
		return err
	}
	details := map[string]string{"release": spec.Release, "cohort": spec.Cohort, "waves": spec.Waves}
	auditObject(c, "rollout/new", details)
	// The rollout and its audit entry commit together.
	ctx := context.WithoutCancel(c.Request().Context())
	r, err := s.cfg.Rollouts.CreateRolloutWith(ctx, spec, principal(c).Person(), func(ctx context.Context, tx *storage.Tx, r rollout.Rollout) error {
		return s.auditIn(ctx, tx, c, "rollout.create", "rollout/"+r.ID, details, nil)
	})
	if err != nil {
		return err // nothing was created; the middleware audits the failure
	}
	c.Set(auditDoneKey, true)
	auditObject(c, "rollout/"+r.ID, details)
	return c.JSON(http.StatusCreated, r)
}

func (s *Server) listRollouts(c echo.Context) error {
	rs, err := s.cfg.Rollouts.Rollouts(c.Request().Context())
	if err != nil {
		return err
	}
	if rs == nil {
		rs = []rollout.Rollout{}
	}
	return c.JSON(http.StatusOK, rs)
}

func (s *Server) rolloutStatus(c echo.Context) error {
	st, err := s.cfg.Rollouts.Status(c.Request().Context(), c.Param("id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, st)
}

func (s *Server) rolloutHistory(c echo.Context) error {
	h, err := s.cfg.Rollouts.History(c.Request().Context(), c.Param("id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, h)
}

// ActionRequest is the body of a rollout action: why.
type ActionRequest = api.ActionRequest

// rolloutAction runs start, pause, resume, approve, abort or rollback.
func (s *Server) rolloutAction(c echo.Context) error {
	var req ActionRequest
	if c.Request().ContentLength != 0 {
		if err := decodeJSON(c, &req); err != nil {
			return err
		}
	}
	id, action, actor := c.Param("id"), c.Param("action"), principal(c).Person() // the two-person rule compares users
	object, details := "rollout/"+id, map[string]string{"action": action, "reason": req.Reason, "to": req.To}
	auditObject(c, object, details)
	// The change and its audit entry commit together.
	ctx := context.WithoutCancel(c.Request().Context())
	in := s.routeAuditIn(c, "rollout.action", object, details)
	var err error
	switch action {
	case "start", "pause", "resume", "approve", "abort":
		err = s.cfg.Rollouts.Command(ctx, id, rollout.Command(action), actor, req.Reason, in)
	case "rollback":
		err = s.cfg.Rollouts.RollbackWith(ctx, id, req.To, actor, req.Reason, in)
	default:
		return tufota.Errorf(tufota.ENotFound, "unknown rollout action %q: want start, pause, resume, approve, abort or rollback", action)
	}
	if err != nil {
		return err // nothing changed; the middleware audits the failure
	}
	c.Set(auditDoneKey, true)
	return s.rolloutStatus(c)
}
