package server

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/tufota/tufota"
)

// UpdateResponse answers a device's "what should I run?".
type UpdateResponse struct {
	Target    string `json:"target"`
	Name      string `json:"name"`
	Version   string `json:"version"`
	RolloutID string `json:"rollout_id,omitempty"`
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
}

// deviceStates are the states a device may report.
var deviceStates = map[string]bool{
	"downloading": true, "downloaded": true, "installing": true,
	"installed": true, "failed": true, "rolled-back": true,
}

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
	hw, version := q.Get("hardware"), q.Get("version")
	if err := tufota.ValidateName("hardware", hw); err != nil {
		return err
	}
	if _, err := tufota.ParseVersion(version); err != nil {
		return err
	}
	rel, err := s.cfg.Releases.Latest(c.Request().Context(), hw, version)
	if err != nil {
		return err
	}
	if rel == nil {
		return c.NoContent(http.StatusNoContent)
	}
	return c.JSON(http.StatusOK, UpdateResponse{Target: rel.TargetPath, Name: rel.Name, Version: rel.Version})
}

func (s *Server) deviceStatus(c echo.Context) error {
	var r StatusReport
	if err := decodeJSON(c, &r); err != nil {
		return err
	}
	auditObject(c, "device/"+principal(c).DeviceID, map[string]string{
		"target": r.Target, "version": r.Version, "state": r.State, "error_code": r.ErrorCode, "rollout": r.RolloutID,
	})
	if err := ownDevice(c, r.DeviceID); err != nil {
		return err
	}
	if !deviceStates[r.State] {
		return tufota.Errorf(tufota.EInvalid, "state %q: want downloading, downloaded, installing, installed, failed or rolled-back", r.State)
	}
	s.log.Info("device status", "device", principal(c).DeviceID, "target", r.Target, "version", r.Version, "state", r.State, "error_code", r.ErrorCode)
	return c.NoContent(http.StatusNoContent)
}
