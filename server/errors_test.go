package server

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/tufota/tufota"
)

// TestUnavailableAnswersHideDriverDetails: a 503 names the dependency and
// says to retry, with Retry-After; the driver's text (internal endpoints,
// upload IDs, object keys) stays in the server log.
func TestUnavailableAnswersHideDriverDetails(t *testing.T) {
	cases := []struct {
		err  error
		want string
	}{
		{tufota.Errorf(tufota.EUnavailable, "storage unavailable: database: query: dial tcp 10.0.0.7:5432: connect: connection refused"), "storage unavailable: database; retry later"},
		{tufota.Errorf(tufota.EUnavailable, `storage unavailable: put "targets/x": Put "http://10.0.0.9:9000/bucket/x?uploadId=abc": EOF`), "storage unavailable: blob store; retry later"},
		{tufota.Errorf(tufota.EUnavailable, "open database %q: locked", "/secret/path"), "service unavailable; retry later"},
	}
	for _, tc := range cases {
		s := &Server{log: slog.New(slog.DiscardHandler)}
		e := echo.New()
		rec := httptest.NewRecorder()
		c := e.NewContext(httptest.NewRequest(http.MethodGet, "/api/v1/releases", nil), rec)
		s.handleError(tc.err, c)
		body := rec.Body.String()
		if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" {
			t.Errorf("%v: status %d, Retry-After %q; want 503 with Retry-After", tc.err, rec.Code, rec.Header().Get("Retry-After"))
		}
		if !strings.Contains(body, tc.want) {
			t.Errorf("%v: body %s, want message %q", tc.err, body, tc.want)
		}
		for _, leak := range []string{"10.0.0", "uploadId", "/secret/path", "targets/x"} {
			if strings.Contains(body, leak) {
				t.Errorf("%v: body %s leaks %q", tc.err, body, leak)
			}
		}
	}
}
