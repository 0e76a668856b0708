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
	d, err := s.cfg.Releases.AddDelegation(s.signerAudit(c), req, principal(c).Name)
	if err != nil {
		return err
	}
	details["targets_version"] = strconv.FormatInt(d.TargetsVersion, 10)
	if d.Signing != nil {
		details["needed"] = strconv.Itoa(d.Signing.Needed)
		auditObject(c, object, details)
		s.log.Info("delegation waits for targets signatures", "role", d.Name, "targets_version", d.TargetsVersion, "needed", d.Signing.Needed)
		return c.JSON(http.StatusAccepted, d)
	}
	auditObject(c, object, details)
	s.log.Info("delegation added", "role", d.Name, "paths", d.Paths, "threshold", d.Threshold, "targets_version", d.TargetsVersion)
	return c.JSON(http.StatusCreated, d)
}

// updateDelegation adds and revokes a delegated role's keys and changes
// its threshold (admin only).
func (s *Server) updateDelegation(c echo.Context) error {
	name := c.Param("name")
	var ch signer.DelegationChange
	if err := decodeJSON(c, &ch); err != nil {
		return err
	}
	object := "delegation/" + name
	var added []string
	for _, k := range ch.AddKeys {
		if k == nil {
			continue
		}
		if id, err := k.ID(); err == nil {
			added = append(added, id)
		}
	}
	details := map[string]string{"add_keys": strings.Join(added, ","), "revoke_keys": strings.Join(ch.RevokeKeys, ","), "threshold": strconv.Itoa(ch.Threshold)}
	auditObject(c, object, details)
	d, err := s.cfg.Releases.UpdateDelegation(s.signerAudit(c), name, ch, principal(c).Name)
	if err != nil {
		return err
	}
	details["targets_version"] = strconv.FormatInt(d.TargetsVersion, 10)
	auditObject(c, object, details)
	if d.Signing != nil {
		s.log.Info("delegation change waits for signatures", "role", name, "targets_version", d.TargetsVersion, "resign", d.Resign != nil)
		return c.JSON(http.StatusAccepted, d)
	}
	s.log.Info("delegation updated", "role", name, "keys", len(d.KeyIDs), "threshold", d.Threshold, "targets_version", d.TargetsVersion)
	return c.JSON(http.StatusOK, d)
}

// removeDelegation removes a delegation that has no releases (admin
// only: it changes the top-level targets metadata).
func (s *Server) removeDelegation(c echo.Context) error {
	name := c.Param("name")
	object := "delegation/" + name
	auditObject(c, object, nil)
	d, err := s.cfg.Releases.RemoveDelegation(s.signerAudit(c), name, principal(c).Name)
	if err != nil {
		return err
	}
	auditObject(c, object, map[string]string{"targets_version": strconv.FormatInt(d.TargetsVersion, 10)})
	if d.Signing != nil {
		return c.JSON(http.StatusAccepted, d)
	}
	s.log.Info("delegation removed", "role", name, "targets_version", d.TargetsVersion)
	return c.JSON(http.StatusOK, d)
}

// renewDelegation proposes the next version of a delegated role's
// metadata, same targets, new expiry, for the role's key holders to sign.
func (s *Server) renewDelegation(c echo.Context) error {
	name := c.Param("name")
	object := "delegation/" + name
	auditObject(c, object, nil)
	d, err := s.cfg.Releases.RenewDelegation(s.signerAudit(c), name, principal(c).Name)
	if err != nil {
		return err
	}
	auditObject(c, object, map[string]string{"renewal_version": strconv.FormatInt(d.Signing.Version, 10), "needed": strconv.Itoa(d.Signing.Needed)})
	return c.JSON(http.StatusAccepted, d)
}

// delegationSigning answers the signing payload of a pending delegation
// (the next top-level targets metadata, which adds it) or of a pending
// renewal (the role's next metadata).
func (s *Server) delegationSigning(c echo.Context) error {
	p, err := s.cfg.Releases.DelegationPayload(s.signerAudit(c), c.Param("name")) // a stale payload is rebuilt, audited
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, p)
}

// signDelegation takes one targets signature over a pending delegation's
// payload; it is published when the targets threshold is met.
func (s *Server) signDelegation(c echo.Context) error {
	name := c.Param("name")
	var up signer.SignatureUpload
	if err := decodeJSON(c, &up); err != nil {
		return err
	}
	object := "delegation/" + name
	auditObject(c, object, map[string]string{"keyid": up.KeyID, "payload_sha256": up.PayloadSHA256})
	st, err := s.cfg.Releases.SignDelegation(s.signerAudit(c), name, up, principal(c).Name)
	if err != nil {
		return err
	}
	auditObject(c, object, map[string]string{"keyid": up.KeyID, "payload_sha256": up.PayloadSHA256, "targets_version": strconv.FormatInt(st.Version, 10),
		"signatures": strconv.Itoa(len(st.Signatures)), "needed": strconv.Itoa(st.Needed)})
	if st.Published { // audited by the signer in the transaction that records it
		s.log.Info("delegation published with offline signatures", "role", name, "targets_version", st.Version)
	}
	return c.JSON(http.StatusOK, st)
}

// cancelDelegation withdraws a pending delegation.
func (s *Server) cancelDelegation(c echo.Context) error {
	name := c.Param("name")
	auditObject(c, "delegation/"+name, nil)
	if err := s.cfg.Releases.CancelDelegation(s.signerAudit(c), name); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

// listDelegations lists the delegated targets roles in search order.
func (s *Server) listDelegations(c echo.Context) error {
	ds, err := s.cfg.Releases.Delegations(c.Request().Context())
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, ds)
}
