package server

import (
	_ "embed"
	"net/http"

	"github.com/labstack/echo/v4"
)

// openAPIDocument is the OpenAPI 3.1 description of every route in
// Routes(), kept by hand in openapi.json (a copy lives in
// docs/openapi.json). TestOpenAPICompleteness checks it against the route
// table and TestOpenAPIValidatesTraffic checks real requests and responses
// against it.
//
//go:embed openapi.json
var openAPIDocument []byte

// OpenAPI returns the server's OpenAPI document (JSON). The caller must not
// modify the returned slice.
func OpenAPI() []byte { return openAPIDocument }

// openAPI serves the OpenAPI document at GET /api/v1/openapi.json.
func (s *Server) openAPI(c echo.Context) error {
	return c.Blob(http.StatusOK, "application/json", openAPIDocument)
}
