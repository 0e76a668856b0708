package server

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/api"
	"github.com/tufota/tufota/audit"
	"github.com/tufota/tufota/storage"
)

// parseTimeParam parses an RFC 3339 time or a duration back from now
// ("24h" means since 24 hours ago); empty is the zero time.
func (s *Server) parseTimeParam(name, v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(v); err == nil && d > 0 {
		return s.now().Add(-d), nil
	}
	return time.Time{}, tufota.Errorf(tufota.EInvalid, "%s %q: want an RFC 3339 time or a duration such as 24h", name, v)
}

func (s *Server) auditList(c echo.Context) error {
	q := c.QueryParams()
	var f audit.Filter
	var err error
	if f.Since, err = s.parseTimeParam("since", q.Get("since")); err != nil {
		return err
	}
	if f.Until, err = s.parseTimeParam("until", q.Get("until")); err != nil {
		return err
	}
	f.Actor, f.Action, f.Object = q.Get("actor"), q.Get("action"), q.Get("object")
	f.Limit = 1000
	if l := q.Get("limit"); l != "" {
		if f.Limit, err = strconv.Atoi(l); err != nil || f.Limit < 1 || f.Limit > 100000 {
			return tufota.Errorf(tufota.EInvalid, "limit %q: want 1 to 100000", l)
		}
	}
	entries, err := s.cfg.Audit.List(c.Request().Context(), f)
	if err != nil {
		return err
	}
	if entries == nil {
		entries = []audit.Entry{}
	}
	return c.JSON(http.StatusOK, entries)
}

func (s *Server) auditExport(c echo.Context) error {
	q := c.QueryParams()
	format := q.Get("format")
	if format == "" {
		format = "json"
	}
	if format != "json" && format != "csv" {
		return tufota.Errorf(tufota.EInvalid, "format %q: want json or csv", format)
	}
	since, err := s.parseTimeParam("since", q.Get("since"))
	if err != nil {
		return err
	}
	until, err := s.parseTimeParam("until", q.Get("until"))
	if err != nil {
		return err
	}
	ct := "application/json"
	if format == "csv" {
		ct = "text/csv"
	}
	c.Response().Header().Set("Content-Type", ct)
	c.Response().WriteHeader(http.StatusOK)
	return s.cfg.Audit.Export(c.Request().Context(), c.Response(), format, since, until)
}

// CheckpointResponse carries a signed checkpoint note.
type CheckpointResponse = api.CheckpointResponse

func (s *Server) auditCheckpoint(c echo.Context) error {
	auditObject(c, "audit/checkpoint", nil)
	// A new checkpoint and its entry commit together; when the log has not
	// grown, nothing is stored and the middleware records the request.
	msg, err := s.cfg.Audit.CheckpointWith(c.Request().Context(), func(ctx context.Context, tx *storage.Tx) error {
		if err := s.auditIn(ctx, tx, c, "audit.checkpoint", "audit/checkpoint", nil, nil); err != nil {
			return err
		}
		tx.OnCommit(func() { c.Set(auditPartKey, true) })
		return nil
	})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, CheckpointResponse{Checkpoint: string(msg), VerifierKey: s.cfg.Audit.VerifierKey()})
}

func (s *Server) auditVerify(c echo.Context) error {
	rep, err := s.cfg.Audit.Verify(c.Request().Context())
	if err != nil && !rep.OK && rep.Problem == "" {
		return err
	}
	return c.JSON(http.StatusOK, rep)
}
