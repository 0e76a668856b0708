package server

import (
	"errors"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/signer"
)

// pushRelease takes a multipart/form-data body whose first part, "release",
// is the JSON signer.PushRequest and whose second part, "file", streams the
// firmware image. Nothing is buffered whole.
func (s *Server) pushRelease(c echo.Context) error {
	req := c.Request()
	mt, _, err := mime.ParseMediaType(req.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/form-data" {
		return badRequest("Content-Type must be multipart/form-data with parts \"release\" (JSON) then \"file\"")
	}
	req.Body = http.MaxBytesReader(c.Response(), req.Body, s.cfg.MaxUploadBytes+maxJSONBody+64<<10)
	mr, err := req.MultipartReader()
	if err != nil {
		return badRequest("multipart body: %v", err)
	}
	part, err := mr.NextPart()
	if err != nil {
		return badRequest("multipart body: want a \"release\" part first: %v", err)
	}
	if part.FormName() != "release" {
		return badRequest("multipart body: first part is %q, want \"release\"", part.FormName())
	}
	var push signer.PushRequest
	if err := decodeStrict(io.LimitReader(part, maxJSONBody), &push); err != nil {
		return err
	}
	file, err := mr.NextPart()
	if err != nil {
		return badRequest("multipart body: want a \"file\" part after \"release\": %v", err)
	}
	if file.FormName() != "file" {
		return badRequest("multipart body: second part is %q, want \"file\"", file.FormName())
	}
	if push.File == "" {
		push.File = file.FileName()
	}
	auditObject(c, "release/"+push.Name+"@"+push.Version, map[string]string{"file": push.File})
	rel, err := s.cfg.Releases.Push(req.Context(), push, file, s.cfg.MaxUploadBytes, principal(c).Name)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return tufota.Errorf(tufota.ETooLarge, "upload larger than %d bytes", s.cfg.MaxUploadBytes)
		}
		return err
	}
	if rel.Signing != nil {
		auditObject(c, "release/"+rel.Name+"@"+rel.Version, map[string]string{
			"target": rel.TargetPath, "sha256": rel.SHA256, "length": strconv.FormatInt(rel.Length, 10), "state": rel.State,
			"targets_version": strconv.FormatInt(rel.Signing.Version, 10), "signatures_needed": strconv.Itoa(rel.Signing.Needed),
		})
		s.log.Info("release pending offline signatures", "actor", principal(c).Name, "release", rel.Name+"@"+rel.Version, "needed", rel.Signing.Needed)
		return c.JSON(http.StatusAccepted, rel)
	}
	auditObject(c, "release/"+rel.Name+"@"+rel.Version, map[string]string{
		"target": rel.TargetPath, "sha256": rel.SHA256, "length": strconv.FormatInt(rel.Length, 10),
		"targets_version": strconv.FormatInt(rel.TargetsVersion, 10), "signed_with": "targets,snapshot,timestamp",
	})
	s.log.Info("release published", "actor", principal(c).Name, "release", rel.Name+"@"+rel.Version, "target", rel.TargetPath, "targets_version", rel.TargetsVersion)
	return c.JSON(http.StatusCreated, rel)
}

func (s *Server) listReleases(c echo.Context) error {
	rels, err := s.cfg.Releases.List(c.Request().Context())
	if err != nil {
		return err
	}
	if rels == nil {
		rels = []signer.Release{}
	}
	return c.JSON(http.StatusOK, rels)
}

func (s *Server) getRelease(c echo.Context) error {
	rel, err := s.cfg.Releases.Get(c.Request().Context(), c.Param("name"), c.Param("version"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, rel)
}

// splitRef splits NAME@VERSION.
func splitRef(ref string) (name, version string, err error) {
	name, version, ok := strings.Cut(ref, "@")
	if !ok || name == "" || version == "" {
		return "", "", tufota.Errorf(tufota.EInvalid, "release %q: want NAME@VERSION", ref)
	}
	return name, version, nil
}
