package server

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"
)

// maxRanges is the most byte ranges one request may ask for. A device
// resuming a download asks for one; http.ServeContent answers many small
// ranges with a multipart body whose part headers dwarf the bytes asked
// for (4,000 one-byte ranges of a 4 KiB target came back as 140 times the
// file).
const maxRanges = 8

// limitRanges refuses a request whose Range header lists more than
// maxRanges ranges with 416 Range Not Satisfiable, before any handler
// reads a byte.
func limitRanges(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if n := countRanges(c.Request().Header.Values("Range")); n > maxRanges {
			return echo.NewHTTPError(http.StatusRequestedRangeNotSatisfiable,
				fmt.Sprintf("Range asks for %d ranges; at most %d are served per request", n, maxRanges))
		}
		return next(c)
	}
}

// countRanges counts the comma-separated range specs of Range headers.
func countRanges(vals []string) int {
	n := 0
	for _, v := range vals {
		n += strings.Count(v, ",") + 1
	}
	return n
}
