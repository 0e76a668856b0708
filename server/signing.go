package server

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/tufota/tufota/signer"
)

// releaseSigning answers the signing payload of a pending release: the
// canonical targets metadata to sign and who has signed so far.
func (s *Server) releaseSigning(c echo.Context) error {
	p, err := s.cfg.Releases.ReleasePayload(s.signerAudit(c), c.Param("name"), c.Param("version")) // a stale payload is rebuilt, audited
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, p)
}

// signRelease takes one signature over a pending release's payload; the
// release is published when the targets threshold is met.
func (s *Server) signRelease(c echo.Context) error {
	name, version := c.Param("name"), c.Param("version")
	var up signer.SignatureUpload
	if err := decodeJSON(c, &up); err != nil {
		return err
	}
	object := "release/" + name + "@" + version
	auditObject(c, object, map[string]string{"keyid": up.KeyID, "payload_sha256": up.PayloadSHA256})
	st, err := s.cfg.Releases.SignRelease(s.signerAudit(c), name, version, up, principal(c).Person())
	if err != nil {
		return err
	}
	d := map[string]string{"keyid": up.KeyID, "payload_sha256": up.PayloadSHA256, "targets_version": strconv.FormatInt(st.Version, 10),
		"signatures": strconv.Itoa(len(st.Signatures)), "needed": strconv.Itoa(st.Needed)}
	auditObject(c, object, d)
	if st.Published { // audited by the signer in the transaction that records it
		s.log.Info("release published with offline signatures", "release", name+"@"+version, "targets_version", st.Version)
	}
	return c.JSON(http.StatusOK, st)
}

// cancelRelease withdraws a pending release (its payload, signatures, row
// and staged upload); a published release is a conflict.
func (s *Server) cancelRelease(c echo.Context) error {
	name, version := c.Param("name"), c.Param("version")
	auditObject(c, "release/"+name+"@"+version, nil)
	rel, err := s.cfg.Releases.CancelRelease(s.signerAudit(c), name, version)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, rel)
}

func (s *Server) rootShow(c echo.Context) error {
	info, err := s.cfg.Releases.RootInfo(c.Request().Context())
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, info)
}

func (s *Server) rootUpdate(c echo.Context) error {
	var ch signer.RootChange
	if err := decodeJSON(c, &ch); err != nil {
		return err
	}
	auditObject(c, "root", nil)
	p, err := s.cfg.Releases.ProposeRoot(s.signerAudit(c), ch, principal(c).Person())
	if err != nil {
		return err
	}
	auditObject(c, "root/"+strconv.FormatInt(p.Status.Version, 10), map[string]string{"changes": strings.Join(p.Root.Changes, "; "), "payload_sha256": p.PayloadSHA256})
	return c.JSON(http.StatusCreated, p)
}

func (s *Server) rootPayload(c echo.Context) error {
	p, err := s.cfg.Releases.RootPayload(c.Request().Context())
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, p)
}

func (s *Server) rootSign(c echo.Context) error {
	var up signer.SignatureUpload
	if err := decodeJSON(c, &up); err != nil {
		return err
	}
	auditObject(c, "root", map[string]string{"keyid": up.KeyID, "payload_sha256": up.PayloadSHA256})
	st, err := s.cfg.Releases.SignRoot(s.signerAudit(c), up, principal(c).Person())
	if err != nil {
		return err
	}
	object := "root/" + strconv.FormatInt(st.Version, 10)
	auditObject(c, object, map[string]string{"keyid": up.KeyID, "payload_sha256": up.PayloadSHA256,
		"needed_new": strconv.Itoa(st.Needed), "needed_old": strconv.Itoa(st.OldNeeded)})
	if st.Published { // audited by the signer in the transaction that records it
		s.log.Warn("new root metadata published", "root_version", st.Version)
	}
	return c.JSON(http.StatusOK, st)
}

func (s *Server) rootCancel(c echo.Context) error {
	auditObject(c, "root", nil)
	if err := s.cfg.Releases.CancelRoot(s.signerAudit(c)); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}
