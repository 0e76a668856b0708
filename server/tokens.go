package server

import (
	"context"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/access"
	"github.com/tufota/tufota/api"
	"github.com/tufota/tufota/storage"
)

// CreateTokenRequest is the body of POST /api/v1/tokens.
type CreateTokenRequest = api.CreateTokenRequest

// CreateTokenResponse carries the secret, shown once.
type CreateTokenResponse struct {
	Token  string       `json:"token"`
	Detail access.Token `json:"detail"`
}

// defaultTokenTTL applies when a request names no lifetime.
const defaultTokenTTL = 90 * 24 * time.Hour

func (s *Server) createToken(c echo.Context) error {
	var req CreateTokenRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	role, err := access.ParseRole(req.Role)
	if err != nil {
		return err
	}
	ttl := defaultTokenTTL
	if req.Expires != "" {
		if ttl, err = time.ParseDuration(req.Expires); err != nil || ttl <= 0 {
			return tufota.Errorf(tufota.EInvalid, "expires %q: want a positive duration such as 2160h", req.Expires)
		}
	}
	if role == access.RoleDevice && req.DeviceID != "" {
		// A device token acts as its device: issue one only for a
		// registered device, or it would become the credential of
		// whatever device is enrolled under that ID later.
		if _, err := s.cfg.Rollouts.Device(c.Request().Context(), req.DeviceID); err != nil {
			if tufota.ErrorCode(err) == tufota.ENotFound {
				return tufota.Errorf(tufota.EInvalid, "device %q is not registered: register it first (tufota device register), which issues its token", req.DeviceID)
			}
			return err
		}
	}
	owner := req.User
	if owner == "" && role != access.RoleDevice {
		if owner = principal(c).UserID; owner == "" {
			return tufota.Errorf(tufota.EInvalid, "name the user the token belongs to (user)")
		}
	}
	// The token and its audit entry commit together.
	ctx := context.WithoutCancel(c.Request().Context())
	var (
		secret string
		tok    access.Token
	)
	err = s.cfg.DB.Tx(ctx, func(tx *storage.Tx) error {
		var err error
		if secret, tok, err = s.cfg.Tokens.Create(ctx, tx, access.NewToken{Name: req.Name, Role: role, DeviceID: req.DeviceID, TTL: ttl, Owner: owner}, principal(c).Name); err != nil {
			return err
		}
		details := map[string]string{"name": tok.Name, "role": string(tok.Role), "device": tok.DeviceID, "owner": tok.Owner}
		if tok.ExpiresAt != nil {
			details["expires"] = tok.ExpiresAt.UTC().Format(time.RFC3339)
		}
		auditObject(c, "token/"+tok.ID, details)
		return s.auditIn(ctx, tx, c, "token.create", "token/"+tok.ID, details, nil)
	})
	if err != nil {
		return err // nothing was created; the middleware audits the failure
	}
	c.Set(auditDoneKey, true)
	s.log.Info("token created", "actor", principal(c).Name, "token", tok.ID, "name", tok.Name, "role", tok.Role)
	return c.JSON(http.StatusCreated, CreateTokenResponse{Token: secret, Detail: tok})
}

func (s *Server) listTokens(c echo.Context) error {
	toks, err := s.cfg.Tokens.List(c.Request().Context())
	if err != nil {
		return err
	}
	if toks == nil {
		toks = []access.Token{}
	}
	return c.JSON(http.StatusOK, toks)
}

func (s *Server) revokeToken(c echo.Context) error {
	auditObject(c, "token/"+c.Param("id"), nil)
	// The revocation and its audit entry commit together.
	ctx := context.WithoutCancel(c.Request().Context())
	if err := s.cfg.Tokens.FlushLastUsed(ctx); err != nil {
		return err
	}
	var tok access.Token
	err := s.cfg.DB.Tx(ctx, func(tx *storage.Tx) error {
		var err error
		if tok, err = s.cfg.Tokens.RevokeIn(ctx, tx, c.Param("id")); err != nil {
			return err
		}
		details := map[string]string{"name": tok.Name, "role": string(tok.Role)}
		auditObject(c, "token/"+tok.ID, details)
		return s.auditIn(ctx, tx, c, "token.revoke", "token/"+tok.ID, details, nil)
	})
	if err != nil {
		return err // nothing was revoked; the middleware audits the failure
	}
	c.Set(auditDoneKey, true)
	s.log.Info("token revoked", "actor", principal(c).Name, "token", tok.ID, "name", tok.Name)
	return c.JSON(http.StatusOK, tok)
}

func (s *Server) whoami(c echo.Context) error {
	return c.JSON(http.StatusOK, principal(c))
}
