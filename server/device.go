package server

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/api"
	"github.com/tufota/tufota/rollout"
	"github.com/tufota/tufota/storage"
)

// UpdateResponse answers a device's "what should I run?".
type UpdateResponse = api.UpdateResponse

// StatusReport is the body of POST /api/v1/device/status.
type StatusReport = api.StatusReport

// ownDevice checks that a device principal asks about itself.
func ownDevice(c echo.Context, id string) error {
	p := principal(c)
	if id != "" && id != p.DeviceID {
		return tufota.Errorf(tufota.EForbidden, "device %s may not act for device %s", p.DeviceID, id)
	}
	return nil
}

func (s *Server) deviceUpdate(c echo.Context) error {
	q := c.QueryParams()
	if err := ownDevice(c, q.Get("device_id")); err != nil {
		return err
	}
	a, err := s.cfg.Rollouts.Assignment(c.Request().Context(), rollout.Query{
		DeviceID: principal(c).DeviceID, Hardware: q.Get("hardware"), Version: q.Get("version"),
	})
	if err != nil {
		return err
	}
	if a == nil {
		return c.NoContent(http.StatusNoContent)
	}
	return c.JSON(http.StatusOK, UpdateResponse{Target: a.Target, Name: a.Name, Version: a.Version, RolloutID: a.RolloutID,
		Required: a.Required, Deadline: a.Deadline})
}

// deviceStatus records a device's status report and its audit entry in
// one transaction, shared with the reports that arrive meanwhile (group
// commit): the 204 means both are durable.
func (s *Server) deviceStatus(c echo.Context) error {
	var r StatusReport
	if err := decodeJSON(c, &r); err != nil {
		return err
	}
	p := principal(c)
	object := "device/" + p.DeviceID
	details := map[string]string{
		"target": r.Target, "version": r.Version, "state": r.State, "error_code": r.ErrorCode, "rollout": r.RolloutID,
	}
	if r.Download != "" {
		details["download"], details["bytes"] = r.Download, strconv.FormatInt(r.Bytes, 10)
	}
	if r.DeferUntil != nil {
		details["defer_until"] = r.DeferUntil.UTC().Format(time.RFC3339)
		details["reason"] = r.Message
	}
	auditObject(c, object, details)
	if err := ownDevice(c, r.DeviceID); err != nil {
		return err
	}
	// A verification failure may be an attack on the device: alert even if
	// the report itself is refused below.
	s.cfg.Alerts.DeviceReport(p.DeviceID, r.State, r.ErrorCode, r.Target, r.Message)
	report := rollout.Report{
		Target: r.Target, Version: r.Version, State: rollout.DeviceState(r.State),
		ErrorCode: r.ErrorCode, Message: r.Message, RolloutID: r.RolloutID, DeferUntil: r.DeferUntil,
		Download: r.Download, Bytes: r.Bytes,
	}
	ctx := context.WithoutCancel(c.Request().Context())
	var (
		after     func()
		reportErr error
	)
	err := s.reports.Do(c.Request().Context(), func(tx *storage.Tx) error {
		reportErr = tx.Savepoint(ctx, func(tx *storage.Tx) error {
			var err error
			after, err = s.cfg.Rollouts.ReportIn(ctx, tx, p.DeviceID, report)
			return err
		})
		return s.auditIn(ctx, tx, c, "device.report", object, details, reportErr)
	})
	if err != nil {
		return err // nothing was recorded; the middleware audits the failure
	}
	c.Set(auditDoneKey, true)
	if reportErr != nil {
		return reportErr
	}
	after()
	return c.NoContent(http.StatusNoContent)
}
