package server

import (
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/api"
)

// statusOf is the one table from error code to HTTP status.
var statusOf = map[tufota.Code]int{
	tufota.EInvalid:      http.StatusBadRequest,
	tufota.EUnauthorized: http.StatusUnauthorized,
	tufota.EForbidden:    http.StatusForbidden,
	tufota.ENotFound:     http.StatusNotFound,
	tufota.EConflict:     http.StatusConflict,
	tufota.ETooLarge:     http.StatusRequestEntityTooLarge,
	tufota.EUnavailable:  http.StatusServiceUnavailable,
	tufota.ENoSpace:      http.StatusInsufficientStorage,
	tufota.EInternal:     http.StatusInternalServerError,
}

// codeOf is the reverse, for errors echo raises itself (unknown routes,
// oversized bodies).
func codeOf(status int) tufota.Code {
	for c, s := range statusOf {
		if s == status {
			return c
		}
	}
	if status >= 500 {
		return tufota.EInternal
	}
	return tufota.EInvalid
}

// ErrorBody is the JSON body of every error response.
type ErrorBody = api.ErrorBody

// retryAfterSeconds is what 503 answers tell clients to wait.
const retryAfterSeconds = 5

func (s *Server) handleError(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	var (
		code   tufota.Code
		msg    string
		status int
	)
	err = noSpace(err)
	var he *echo.HTTPError
	switch {
	case errors.As(err, &he) && tufota.ErrorCode(err) == tufota.EInternal:
		status = he.Code
		code = codeOf(status)
		msg = http.StatusText(status)
		if m, ok := he.Message.(string); ok {
			msg = m
		}
		if status == http.StatusRequestEntityTooLarge {
			msg = "request body too large"
		}
	default:
		code = tufota.ErrorCode(err)
		status = statusOf[code]
		msg = err.Error()
	}
	if code == tufota.EInternal {
		s.log.Error("internal error", slog.String("method", c.Request().Method), slog.String("path", c.Request().URL.Path), slog.Any("err", err))
		msg = "internal error; see the server log"
	}
	if code == tufota.ENoSpace {
		s.log.Error("storage full", slog.String("method", c.Request().Method), slog.String("path", c.Request().URL.Path), slog.Any("err", err))
		msg = noSpaceMessage(msg)
	}
	if code == tufota.EUnavailable {
		s.log.Warn("dependency unavailable", slog.String("method", c.Request().Method), slog.String("path", c.Request().URL.Path), slog.Any("err", err))
		msg = unavailableMessage(msg)
		c.Response().Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds))
	}
	var body ErrorBody
	body.Error.Code, body.Error.Message = code, msg
	if c.Request().Method == http.MethodHead {
		_ = c.NoContent(status)
		return
	}
	_ = c.JSON(status, body)
}

// unavailableMessage is what a 503 tells the caller: which dependency is
// down, never the driver's own text (it can carry internal endpoints, upload
// IDs and object keys, which go to the server log instead).
func unavailableMessage(msg string) string {
	switch {
	case strings.Contains(msg, "storage unavailable: database"):
		return "storage unavailable: database; retry later"
	case strings.Contains(msg, "storage unavailable"):
		return "storage unavailable: blob store; retry later"
	default:
		return "service unavailable; retry later"
	}
}
