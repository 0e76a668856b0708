package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/tufota/tufota"
)

// decodeJSON reads one JSON object of at most maxJSONBody bytes into v,
// refusing unknown fields and trailing data.
func decodeJSON(c echo.Context, v any) error {
	r := c.Request()
	if ct := r.Header.Get("Content-Type"); ct != "" && !bytes.HasPrefix([]byte(ct), []byte("application/json")) {
		return tufota.Errorf(tufota.EInvalid, "Content-Type %q: want application/json", ct)
	}
	return decodeStrict(http.MaxBytesReader(c.Response(), r.Body, maxJSONBody), v)
}

// decodeStrict decodes exactly one JSON value from r into v.
func decodeStrict(r io.Reader, v any) error {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return tufota.Errorf(tufota.ETooLarge, "JSON body larger than %d bytes", mbe.Limit)
		}
		if errors.Is(err, io.EOF) {
			return tufota.Errorf(tufota.EInvalid, "empty JSON body")
		}
		return tufota.Errorf(tufota.EInvalid, "invalid JSON body: %v", err)
	}
	if dec.More() {
		return tufota.Errorf(tufota.EInvalid, "invalid JSON body: trailing data after the object")
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return tufota.Errorf(tufota.EInvalid, "invalid JSON body: trailing data after the object")
	}
	return nil
}

func badRequest(format string, args ...any) error {
	return tufota.Errorf(tufota.EInvalid, "%s", fmt.Sprintf(format, args...))
}
