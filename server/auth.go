package server

import (
	"slices"

	"github.com/labstack/echo/v4"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/access"
	"github.com/tufota/tufota/audit"
)

const principalKey = "tufota.principal"

// authorize authenticates the bearer token and admits only the given roles.
// A verified mTLS client certificate identifies a device (its subject
// common name is the device ID) and is preferred over a token. Failures and
// denials are audited.
func (s *Server) authorize(r Route, next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		p, err := s.authenticate(c)
		if err != nil {
			s.log.Warn("authentication failed", "source", c.RealIP(), "path", c.Path(), "err", err)
			s.cfg.Alerts.AuthFailure(c.RealIP(), err.Error())
			s.record(c.Request().Context(), audit.Entry{
				Actor: "anonymous", Source: c.RealIP(), Action: "auth.failure", Object: r.Action,
				Outcome: audit.OutcomeDenied, Details: map[string]string{"reason": err.Error(), "path": c.Request().URL.Path},
			})
			return err
		}
		c.Set(principalKey, p)
		if !slices.Contains(r.Roles, p.Role) {
			s.log.Warn("access denied", "source", c.RealIP(), "actor", p.Name, "role", p.Role, "method", c.Request().Method, "path", c.Path())
			err := tufota.Errorf(tufota.EForbidden, "role %s may not %s %s", p.Role, c.Request().Method, c.Path())
			s.record(c.Request().Context(), audit.Entry{
				Actor: p.Name, Role: string(p.Role), Source: c.RealIP(), Action: r.Action, Object: c.Request().URL.Path,
				Outcome: audit.OutcomeDenied, Details: map[string]string{"reason": err.Error()},
			})
			return err
		}
		return next(c)
	}
}

// authenticate identifies the caller by mTLS certificate or bearer token.
func (s *Server) authenticate(c echo.Context) (access.Principal, error) {
	if cs := c.Request().TLS; cs != nil && len(cs.VerifiedChains) > 0 {
		cert := cs.VerifiedChains[0][0]
		id := cert.Subject.CommonName
		if err := tufota.ValidateName("device ID in client certificate", id); err != nil {
			return access.Principal{}, tufota.Errorf(tufota.EUnauthorized, "client certificate: %v", err)
		}
		return access.Principal{Name: id, Role: access.RoleDevice, DeviceID: id}, nil
	}
	tok, err := access.ParseBearer(c.Request().Header.Get("Authorization"))
	if err != nil {
		return access.Principal{}, err
	}
	return s.cfg.Tokens.Authenticate(c.Request().Context(), tok)
}

// principal returns the authenticated caller of c.
func principal(c echo.Context) access.Principal {
	p, _ := c.Get(principalKey).(access.Principal)
	return p
}
