package server

import (
	"context"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/api"
	"github.com/tufota/tufota/rollout"
)

// PinRequest is the body of PUT /api/v1/pins/{kind}/{name}: the version
// line (an exact version, or 1.4.* / 1.*) and why.
type PinRequest = api.PinRequest

// setPin pins a cohort or a device to a version line; the pin and its
// audit entry commit together.
func (s *Server) setPin(c echo.Context) error {
	var req PinRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	kind, name := c.Param("kind"), c.Param("name")
	object, details := "pin/"+kind+"/"+name, map[string]string{"version": req.Version, "reason": req.Reason}
	auditObject(c, object, details)
	ctx := context.WithoutCancel(c.Request().Context())
	p, err := s.cfg.Rollouts.SetPinWith(ctx, rollout.Pin{Kind: kind, Name: name, Version: req.Version, Reason: req.Reason},
		principal(c).Name, s.routeAuditIn(c, "pin.set", object, details))
	if err != nil {
		return err // nothing was pinned; the middleware audits the failure
	}
	c.Set(auditDoneKey, true)
	return c.JSON(http.StatusOK, p)
}

// removePin removes a pin with its audit entry.
func (s *Server) removePin(c echo.Context) error {
	kind, name := c.Param("kind"), c.Param("name")
	object := "pin/" + kind + "/" + name
	auditObject(c, object, nil)
	ctx := context.WithoutCancel(c.Request().Context())
	if err := s.cfg.Rollouts.RemovePinWith(ctx, kind, name, principal(c).Name, s.routeAuditIn(c, "pin.remove", object, nil)); err != nil {
		return err
	}
	c.Set(auditDoneKey, true)
	return c.NoContent(http.StatusNoContent)
}

func (s *Server) listPins(c echo.Context) error {
	pins, err := s.cfg.Rollouts.ListPins(c.Request().Context())
	if err != nil {
		return err
	}
	if pins == nil {
		pins = []rollout.Pin{}
	}
	return c.JSON(http.StatusOK, pins)
}

// planRollout is the dry run of a draft rollout:
// GET /api/v1/rollouts/plan?rollout=ID.
func (s *Server) planRollout(c echo.Context) error {
	id := c.QueryParam("rollout")
	if id == "" {
		return tufota.Errorf(tufota.EInvalid, "rollout plan: give ?rollout=ID of a draft, or POST a rollout spec")
	}
	dr, err := s.cfg.Rollouts.PlanRollout(c.Request().Context(), id)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, dr)
}

// planSpec is the dry run of a rollout spec before it is created:
// POST /api/v1/rollouts/plan. It changes nothing.
func (s *Server) planSpec(c echo.Context) error {
	var spec rollout.Spec
	if err := decodeJSON(c, &spec); err != nil {
		return err
	}
	auditObject(c, "rollout/plan", map[string]string{"release": spec.Release, "cohort": spec.Cohort, "waves": spec.Waves})
	dr, err := s.cfg.Rollouts.PlanSpec(c.Request().Context(), spec)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, dr)
}
