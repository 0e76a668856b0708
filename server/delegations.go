package server

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/tufota/tufota/signer"
)

// addDelegation delegates a product line's target paths to a new
// targets role with its own keys and threshold (admin only: it changes the
// top-level targets metadata).
func (s *Server) addDelegation(c echo.Context) error {
	var req signer.DelegationRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	object := "delegation/" + req.Name
	ids := make([]string, 0, len(req.Keys))
	for _, k := range req.Keys {
		if k == nil {
			continue
		}
		if id, err := k.ID(); err == nil {
			ids = append(ids, id)
		}
	}
	details := map[string]string{"paths": strings.Join(req.Paths, ","), "threshold": strconv.Itoa(req.Threshold), "keyids": strings.Join(ids, ",")}
	auditObject(c, object, details)
	d, err := s.cfg.Releases.AddDelegation(c.Request().Context(), req)
	if err != nil {
		return err
	}
	details["targets_version"] = strconv.FormatInt(d.TargetsVersion, 10)
	auditObject(c, object, details)
	s.log.Info("delegation added", "role", d.Name, "paths", d.Paths, "threshold", d.Threshold, "targets_version", d.TargetsVersion)
	return c.JSON(http.StatusCreated, d)
}

// listDelegations lists the delegated targets roles in search order.
func (s *Server) listDelegations(c echo.Context) error {
	ds, err := s.cfg.Releases.Delegations(c.Request().Context())
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, ds)
}
