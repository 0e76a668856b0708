package apiclient_test

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"testing"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/apiclient"
)

// FuzzDecodeError feeds arbitrary error answers (a server, or whatever
// stands in front of it, is not trusted to send tufota's error body): the
// result is always a *tufota.Error with a code, never a panic, and a
// message no longer than what was read.
func FuzzDecodeError(f *testing.F) {
	f.Add([]byte(`{"error":{"code":"not_found","message":"no such release"}}`), 404)
	f.Add([]byte(`<html>bad gateway</html>`), 502)
	f.Add([]byte(`{"error":{"code":"","message":""}}`), 500)
	f.Add([]byte(`{"error":"flat"}`), 400)
	f.Fuzz(func(t *testing.T, body []byte, status int) {
		if status < 300 || status > 599 {
			status = 500
		}
		resp := &http.Response{StatusCode: status, Status: http.StatusText(status), Body: io.NopCloser(bytes.NewReader(body))}
		err := apiclient.DecodeError(resp)
		var te *tufota.Error
		if !errors.As(err, &te) {
			t.Fatalf("DecodeError = %T %v, want *tufota.Error", err, err)
		}
		if te.Message == "" && te.Code == "" {
			t.Fatalf("DecodeError = %+v: neither code nor message", te)
		}
		if len(te.Message) > 64<<10+64 {
			t.Fatalf("message of %d bytes from a %d-byte body", len(te.Message), len(body))
		}
	})
}
