package server

import (
	"slices"

	"github.com/labstack/echo/v4"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/access"
)

const principalKey = "tufota.principal"

// authorize authenticates the bearer token and admits only the given roles.
func (s *Server) authorize(roles []access.Role, next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		tok, err := access.ParseBearer(c.Request().Header.Get("Authorization"))
		if err != nil {
			s.log.Warn("authentication failed", "source", c.RealIP(), "path", c.Path(), "err", err)
			return err
		}
		p, err := s.cfg.Tokens.Authenticate(c.Request().Context(), tok)
		if err != nil {
			s.log.Warn("authentication failed", "source", c.RealIP(), "path", c.Path(), "err", err)
			return err
		}
		if !slices.Contains(roles, p.Role) {
			s.log.Warn("access denied", "source", c.RealIP(), "actor", p.Name, "role", p.Role, "method", c.Request().Method, "path", c.Path())
			return tufota.Errorf(tufota.EForbidden, "role %s may not %s %s", p.Role, c.Request().Method, c.Path())
		}
		c.Set(principalKey, p)
		return next(c)
	}
}

// principal returns the authenticated caller of c.
func principal(c echo.Context) access.Principal {
	p, _ := c.Get(principalKey).(access.Principal)
	return p
}
