package server

import (
	"net/http"
	"net/http/pprof" // #nosec G108 -- served only on the admin route below, never on http.DefaultServeMux

	"github.com/labstack/echo/v4"

	"github.com/tufota/tufota/audit"
)

// pprofHandler serves Go's runtime profiles under /debug/pprof/ (index,
// heap, goroutine, allocs, block, mutex, profile for CPU, trace). The
// route admits only admins, and every read is audited: profiles reveal
// memory contents.
func (s *Server) pprofHandler() echo.HandlerFunc {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return func(c echo.Context) error {
		p := principal(c)
		s.record(c.Request().Context(), audit.Entry{Actor: p.Name, Role: string(p.Role), Source: c.RealIP(), Action: "debug.pprof",
			Object: c.Request().URL.Path, Outcome: audit.OutcomeOK})
		mux.ServeHTTP(c.Response(), c.Request())
		return nil
	}
}
