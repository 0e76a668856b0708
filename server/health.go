package server

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/tufota/tufota/api"
)

// readyTimeout bounds each dependency check of /readyz, so that a hung
// database or bucket makes the probe fail instead of hang.
const readyTimeout = 2 * time.Second

func (s *Server) healthz(c echo.Context) error {
	return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
}

// Readiness is the body of /readyz: "ok" or "unavailable", each
// dependency's check ("ok" or the error), and, with leader election, this
// replica's role ("leader" or "follower") and ID.
type Readiness = api.Readiness

// readyz reports whether the state database and the blob store answer and
// can write (readyprobe.go; 503 with Retry-After and the failing
// dependency when not: "unavailable", or "full" when it is out of space),
// and this replica's role. The role does not affect readiness: followers serve every
// request.
func (s *Server) readyz(c echo.Context) error {
	ctx, cancel := context.WithTimeout(c.Request().Context(), readyTimeout)
	defer cancel()
	r := Readiness{Status: "ok", Checks: map[string]string{"database": "ok", "storage": "ok"}}
	// The public answer names the failing dependency; the driver's text
	// (endpoints, addresses) goes to the log only.
	if err := s.cfg.DB.Ping(ctx); err != nil {
		s.log.Warn("readiness: database unavailable", "err", err)
		r.Checks["database"], r.Status = "unavailable", "unavailable"
	} else if err := s.probeDBWrite(ctx); err != nil {
		s.log.Warn("readiness: database cannot write", "err", err)
		r.Checks["database"], r.Status = writeFailure(err), "unavailable"
	}
	if _, err := s.cfg.Blobs.Stat(ctx, "metadata/timestamp.json"); err != nil {
		s.log.Warn("readiness: blob store unavailable", "err", err)
		r.Checks["storage"], r.Status = "unavailable", "unavailable"
	} else if err := s.probeBlobWrite(ctx); err != nil {
		s.log.Warn("readiness: blob store cannot write", "err", err)
		r.Checks["storage"], r.Status = writeFailure(err), "unavailable"
	}
	if s.cfg.Elector != nil {
		st := s.cfg.Elector.Status()
		r.Role, r.Replica, r.LeaseError = st.Role, st.Holder, st.Error
	}
	if r.Status != "ok" {
		c.Response().Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds))
		return c.JSON(http.StatusServiceUnavailable, r)
	}
	return c.JSON(http.StatusOK, r)
}
