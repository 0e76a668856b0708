package server

import (
	"errors"
	"io"
	"net/http"
	"net/url"
	"os"
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
	return s.serveMeta(c, name)
}

// WithTargetsURL returns cfg with TargetsURL set to base, after checking
// that base is an absolute http(s) URL without query or fragment (EInvalid
// otherwise). With it, GET and HEAD /tuf/targets/P answer 307 Temporary
// Redirect to base/targets/P, so that devices that follow redirects fetch
// target bytes from the bucket or CDN while metadata stays on tufota. The
// client verifies the bytes against the signed metadata wherever they come
// from. Go's http.Client (and so tufota's client) drops the Authorization
// header when a redirect leaves the server's host, so device tokens do not
// reach the CDN. The bucket must answer 404 for a missing key (S3 answers
// 403 unless anonymous readers may list the bucket; see
// docs/operations.md).
func WithTargetsURL(cfg Config, base string) (Config, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return cfg, tufota.Errorf(tufota.EInvalid, "targets URL %q must be an absolute http(s) URL without query", base)
	}
	cfg.TargetsURL = strings.TrimSuffix(base, "/")
	return cfg, nil
}

func (s *Server) tufTarget(c echo.Context) error {
	p := c.Param("*")
	if err := storage.ValidKey(p); err != nil {
		return tufota.Errorf(tufota.ENotFound, "no target file %q", p)
	}
	if s.cfg.TargetsURL != "" {
		u := strings.TrimSuffix(s.cfg.TargetsURL, "/") + "/targets/" + (&url.URL{Path: p}).EscapedPath()
		return c.Redirect(http.StatusTemporaryRedirect, u)
	}
	c.Response().Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	return s.serveBlob(c, "targets/"+p, "application/octet-stream")
}

// serveBlob streams a blob with Range support (http.ServeContent). A blob
// of the file store is handed to the connection as its *os.File, so that
// plain HTTP sends it with sendfile(2) (TLS copies it through the cipher).
func (s *Server) serveBlob(c echo.Context, key, contentType string) error {
	obj, err := s.cfg.Blobs.Open(c.Request().Context(), key)
	if err != nil {
		if errors.Is(err, tufota.ErrNotFound) {
			return tufota.Errorf(tufota.ENotFound, "no such file %q", strings.TrimPrefix(key, "metadata/"))
		}
		return err
	}
	defer obj.Close()
	var content io.ReadSeeker = obj
	if f, ok := obj.(interface{ OSFile() *os.File }); ok {
		content = f.OSFile()
	}
	c.Response().Header().Set("Content-Type", contentType)
	http.ServeContent(readerFromResponse{c.Response()}, c.Request(), path.Base(key), obj.Info().ModTime, content)
	return nil
}

// readerFromResponse gives echo's response the io.ReaderFrom of the
// net/http response beneath it, which io.Copy (inside http.ServeContent)
// uses to reach the connection's sendfile path.
type readerFromResponse struct{ *echo.Response }

func (w readerFromResponse) ReadFrom(r io.Reader) (int64, error) {
	rf, ok := w.Writer.(io.ReaderFrom)
	if !ok {
		return io.Copy(struct{ io.Writer }{w.Response}, r)
	}
	if !w.Committed {
		w.WriteHeader(http.StatusOK)
	}
	n, err := rf.ReadFrom(r)
	w.Size += n
	return n, err
}
