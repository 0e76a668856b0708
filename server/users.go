package server

import (
	"context"
	"net/http"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/tufota/tufota/access"
	"github.com/tufota/tufota/api"
	"github.com/tufota/tufota/storage"
)

// CreateUserRequest is the body of POST /api/v1/users: a local user (a
// person or a pipeline without an identity provider).
type CreateUserRequest = api.CreateUserRequest

// DisableUserResponse is the answer of POST /api/v1/users/:id/disable.
type DisableUserResponse struct {
	User          access.User `json:"user"`
	RevokedTokens int64       `json:"revoked_tokens"`
}

func (s *Server) createUser(c echo.Context) error {
	var req CreateUserRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	roles := make([]access.Role, 0, len(req.Roles))
	for _, r := range req.Roles {
		role, err := access.ParseRole(r)
		if err != nil {
			return err
		}
		roles = append(roles, role)
	}
	auditObject(c, "user/"+req.Name, map[string]string{"name": req.Name, "roles": strings.Join(req.Roles, ",")})
	// The user and its audit entry commit together.
	ctx := context.WithoutCancel(c.Request().Context())
	var u access.User
	err := s.cfg.DB.Tx(ctx, func(tx *storage.Tx) error {
		var err error
		if u, err = s.cfg.Tokens.CreateUser(ctx, tx, access.NewUser{Name: req.Name, Roles: roles}, principal(c).Person()); err != nil {
			return err
		}
		details := map[string]string{"name": u.Name, "id": u.ID, "issuer": u.Issuer, "roles": rolesString(u.Roles)}
		auditObject(c, "user/"+u.ID, details)
		return s.auditIn(ctx, tx, c, "user.create", "user/"+u.ID, details, nil)
	})
	if err != nil {
		return err // nothing was created; the middleware audits the failure
	}
	c.Set(auditDoneKey, true)
	s.log.Info("user created", "actor", principal(c).Name, "user", u.ID, "name", u.Name, "roles", rolesString(u.Roles))
	return c.JSON(http.StatusCreated, u)
}

func (s *Server) listUsers(c echo.Context) error {
	us, err := s.cfg.Tokens.Users(c.Request().Context())
	if err != nil {
		return err
	}
	if us == nil {
		us = []access.User{}
	}
	return c.JSON(http.StatusOK, us)
}

func (s *Server) disableUser(c echo.Context) error {
	auditObject(c, "user/"+c.Param("id"), nil)
	// The user's disabling, the revocation of their tokens and its audit
	// entry commit together.
	ctx := context.WithoutCancel(c.Request().Context())
	if err := s.cfg.Tokens.FlushLastUsed(ctx); err != nil {
		return err
	}
	var res DisableUserResponse
	err := s.cfg.DB.Tx(ctx, func(tx *storage.Tx) error {
		var err error
		if res.User, res.RevokedTokens, err = s.cfg.Tokens.DisableUserIn(ctx, tx, c.Param("id"), principal(c).Person()); err != nil {
			return err
		}
		details := map[string]string{"name": res.User.Name, "revoked_tokens": strconv.FormatInt(res.RevokedTokens, 10)}
		auditObject(c, "user/"+res.User.ID, details)
		return s.auditIn(ctx, tx, c, "user.disable", "user/"+res.User.ID, details, nil)
	})
	if err != nil {
		return err // nothing changed; the middleware audits the failure
	}
	c.Set(auditDoneKey, true)
	s.log.Info("user disabled", "actor", principal(c).Name, "user", res.User.ID, "name", res.User.Name, "revoked_tokens", res.RevokedTokens)
	return c.JSON(http.StatusOK, res)
}

func rolesString(rs []access.Role) string {
	s := make([]string, len(rs))
	for i, r := range rs {
		s[i] = string(r)
	}
	return strings.Join(s, ",")
}
