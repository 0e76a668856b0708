package client

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/tufota/tufota"
)

// FuzzParseOffer feeds arbitrary bodies to the parser of the device
// endpoint's answer: it must never panic, must accept only well-formed
// NAME/VERSION/FILE targets that agree with name and version, and must
// refuse everything else with ErrServer.
func FuzzParseOffer(f *testing.F) {
	for _, seed := range []string{
		`{"target":"pumpfw/1.2.0/fw.bin","name":"pumpfw","version":"1.2.0","rollout_id":"r-1"}`,
		`{"target":"pumpfw/1.2.0/fw.bin","name":"pumpfw","version":"1.2.0"}`,
		`{"target":"../../etc/passwd","name":"..","version":"1.0.0"}`,
		`{"target":"a/1.0.0-rc.1+b/f.bin","name":"a","version":"1.0.0-rc.1+b"}`,
		`{"target":"a/b/c/d","name":"a","version":"b"}`,
		`{"target":null}`, `[]`, `null`, ``, `{"target":"a/1.0.0/f","name":"a","version":"1.0.0","x":{}}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		o, err := parseOffer(body)
		if err != nil {
			if o != nil || !errors.Is(err, ErrServer) {
				t.Fatalf("parseOffer = %+v, %v; want nil and ErrServer", o, err)
			}
			return
		}
		parts := strings.Split(o.Target, "/")
		if len(parts) != 3 || parts[0] != o.Name || parts[1] != o.Version {
			t.Fatalf("accepted inconsistent offer %+v", o)
		}
		if tufota.ValidateName("name", parts[0]) != nil || tufota.ValidateName("file", parts[2]) != nil {
			t.Fatalf("accepted unsafe path segments in %q", o.Target)
		}
		if _, err := tufota.ParseVersion(parts[1]); err != nil {
			t.Fatalf("accepted bad version in %q", o.Target)
		}
	})
}

// FuzzServerError feeds arbitrary error bodies and Retry-After headers.
func FuzzServerError(f *testing.F) {
	f.Add(`{"error":{"code":"unavailable","message":"storage unavailable"}}`, "3", 503)
	f.Add(`{"error":"x"}`, "Wed, 21 Oct 2015 07:28:00 GMT", 500)
	f.Add(strings.Repeat("{", 10000), "-1", 404)
	f.Fuzz(func(t *testing.T, body, retryAfter string, status int) {
		res := &http.Response{StatusCode: status, Header: http.Header{"Retry-After": {retryAfter}}, Body: io.NopCloser(strings.NewReader(body))}
		err := serverError("op", res)
		var se *ServerError
		if !errors.As(err, &se) || !errors.Is(err, ErrServer) {
			t.Fatalf("serverError = %v, want a *ServerError", err)
		}
		if se.RetryAfter < 0 || len(se.Code) > 67 || len(se.Message) > 515 {
			t.Fatalf("unbounded or negative fields: %+v", se)
		}
		_ = se.Error()
	})
}

// FuzzContentRange feeds arbitrary Content-Range headers.
func FuzzContentRange(f *testing.F) {
	for _, s := range []string{"bytes 0-99/100", "bytes 50-99/*", "bytes -1-2/3", "bytes 99999999999999999999-1/2", "items 1-2/3", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		start, ok := contentRangeStart(v)
		if ok && (start < 0 || !strings.HasPrefix(v, "bytes ")) {
			t.Fatalf("contentRangeStart(%q) = %d, true", v, start)
		}
	})
}

// FuzzReadInstalled feeds arbitrary installed-state files (local, but a
// torn or corrupted file must be an error, not a panic or a bad version).
func FuzzReadInstalled(f *testing.F) {
	f.Add([]byte(`{"target":"a/1.0.0/f","version":"1.0.0"}`))
	f.Add([]byte(`{"version":"v1"}`))
	f.Add([]byte(`{"vers`))
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		if err := writeFileAtomic(dir+"/"+installedFile, data); err != nil {
			t.Fatal(err)
		}
		st, err := readInstalled(dir)
		if err == nil && st.Version != "" {
			if _, perr := tufota.ParseVersion(st.Version); perr != nil {
				t.Fatalf("accepted bad version %q", st.Version)
			}
		}
	})
}
