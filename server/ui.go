package server

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"

	"github.com/labstack/echo/v4"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/access"
	"github.com/tufota/tufota/ui"
)

// mountUI serves the web dashboard under /ui/ from the same services as
// the API. Its pages and actions admit the roles the route table gives
// their API routes (routeRoles), so the two cannot disagree.
func (s *Server) mountUI(e *echo.Echo) error {
	d, err := ui.New(ui.Config{
		Rollouts: s.cfg.Rollouts,
		Releases: s.cfg.Releases,
		Audit:    s.cfg.Audit,
		Tokens:   s.cfg.Tokens,
		Fleet:    s.uiFleet,
		Expiries: s.uiExpiries,
		SBOM: func(c echo.Context, path string) error {
			return s.serveBlob(c, "targets/"+path, "application/json")
		},
		Roles:         routeRoles(s.Routes()),
		ExpiryWarning: s.cfg.OfflineExpiryWarning,
		Logger:        s.log.With("component", "ui"),
		Now:           s.now,
	})
	if err != nil {
		return err
	}
	d.Mount(e)
	s.uiShutdown = d.Shutdown
	return nil
}

// routeRoles returns, for an action of the route table, the roles its
// routes admit; an action on several routes admits only the roles all of
// them admit, and an unknown or public action admits nobody.
func routeRoles(routes []Route) func(action string) []access.Role {
	m := map[string][]access.Role{}
	for _, r := range routes {
		if r.Public {
			continue
		}
		if prev, ok := m[r.Action]; ok {
			m[r.Action] = slices.DeleteFunc(slices.Clone(prev), func(role access.Role) bool { return !slices.Contains(r.Roles, role) })
			continue
		}
		m[r.Action] = slices.Clone(r.Roles)
	}
	return func(action string) []access.Role { return m[action] }
}

// uiFleet reads the fleet report through the API's own handler, so that the
// dashboard's outdated-firmware table is the API's report.
func (s *Server) uiFleet(ctx context.Context) ([]ui.FleetRow, error) {
	req := httptest.NewRequestWithContext(ctx, http.MethodGet, "/api/v1/fleet/report", nil)
	rec := httptest.NewRecorder()
	if err := s.fleetReport(s.echo.NewContext(req, rec)); err != nil {
		return nil, err
	}
	var rows []FleetRow
	if err := json.Unmarshal(rec.Body.Bytes(), &rows); err != nil {
		return nil, tufota.Errorf(tufota.EInternal, "fleet report: %v", err)
	}
	out := make([]ui.FleetRow, len(rows))
	for i, r := range rows {
		out[i] = ui.FleetRow(r)
	}
	return out, nil
}

// uiExpiries is the expiry part of GET /api/v1/status.
func (s *Server) uiExpiries(ctx context.Context) ([]ui.RoleExpiry, error) {
	st, err := s.status(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]ui.RoleExpiry, len(st.Roles))
	for i, r := range st.Roles {
		out[i] = ui.RoleExpiry(r)
	}
	return out, nil
}
