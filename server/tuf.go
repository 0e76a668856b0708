package server

import (
	"errors"
	"net/http"
	"path"
	"regexp"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/storage"
)

// metadataFile matches the metadata names a TUF client asks for: versioned
// roles (N.root.json, N.targets.json, N.snapshot.json, N.<delegated>.json)
// and timestamp.json.
var metadataFile = regexp.MustCompile(`^(timestamp|root|[1-9][0-9]{0,18}\.[A-Za-z0-9][A-Za-z0-9_-]{0,63})\.json$`)

func (s *Server) tufMetadata(c echo.Context) error {
	name := c.Param("file")
	if !metadataFile.MatchString(name) {
		return tufota.Errorf(tufota.ENotFound, "no metadata file %q", name)
	}
	if name == "timestamp.json" || name == "root.json" {
		c.Response().Header().Set("Cache-Control", "no-cache")
	} else {
		c.Response().Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	}
	return s.serveBlob(c, "metadata/"+name, "application/json")
}

func (s *Server) tufTarget(c echo.Context) error {
	p := c.Param("*")
	if err := storage.ValidKey(p); err != nil {
		return tufota.Errorf(tufota.ENotFound, "no target file %q", p)
	}
	c.Response().Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	return s.serveBlob(c, "targets/"+p, "application/octet-stream")
}

// serveBlob streams a blob with Range support (http.ServeContent).
func (s *Server) serveBlob(c echo.Context, key, contentType string) error {
	obj, err := s.cfg.Blobs.Open(c.Request().Context(), key)
	if err != nil {
		if errors.Is(err, tufota.ErrNotFound) {
			return tufota.Errorf(tufota.ENotFound, "no such file %q", strings.TrimPrefix(key, "metadata/"))
		}
		return err
	}
	defer obj.Close()
	c.Response().Header().Set("Content-Type", contentType)
	http.ServeContent(c.Response(), c.Request(), path.Base(key), obj.Info().ModTime, obj)
	return nil
}
