package client_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tufota/tufota/client"
	repofixtures "github.com/tufota/tufota/repo-fixtures"
)

// memTransport serves a repository and an update offer from memory, so a
// fuzz iteration needs no sockets.
type memTransport struct {
	repo    *repofixtures.Repo
	replace string // metadata file to answer with body instead
	body    []byte
	offer   string
}

func (m *memTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	rec := httptest.NewRecorder()
	switch {
	case req.URL.Path == "/api/v1/device/update":
		rec.WriteString(m.offer)
	case req.URL.Path == "/api/v1/device/status":
		rec.WriteHeader(http.StatusNoContent)
	case req.URL.Path == "/tuf/"+m.replace:
		rec.Write(m.body)
	default:
		m.repo.Handler("/tuf/").ServeHTTP(rec, req)
	}
	res := rec.Result()
	res.Request = req
	return res, nil
}

// FuzzMetadata replaces one metadata file the client fetches (2.root.json,
// timestamp.json, 1.snapshot.json or 1.targets.json) with arbitrary bytes.
// The client must never panic; it may only accept bytes that still verify,
// and then must return exactly the genuine update; anything else is
// ErrMetadata.
func FuzzMetadata(f *testing.F) {
	repo, err := repofixtures.New("fuzz", time.Now().Add(365*24*time.Hour))
	if err != nil {
		f.Fatal(err)
	}
	target, err := repo.AddRelease(release("1.2.0"), "fw.bin", []byte("firmware"))
	if err != nil || repo.Publish() != nil {
		f.Fatal(err)
	}
	files := []string{"2.root.json", "timestamp.json", "1.snapshot.json", "1.targets.json"}
	for i, name := range files {
		genuine := repo.File(name)
		if genuine == nil {
			genuine = repo.File("1.root.json")
		}
		f.Add(uint8(i), genuine)
		f.Add(uint8(i), []byte(strings.Replace(string(genuine), `"version": 1`, `"version": 2`, 1)))
	}
	f.Add(uint8(1), []byte(`{"signed":{},"signatures":[]}`))
	f.Add(uint8(2), []byte(`{`))
	offer := `{"target":"` + target + `","name":"pumpfw","version":"1.2.0"}`

	f.Fuzz(func(t *testing.T, which uint8, body []byte) {
		tr := &memTransport{repo: repo, replace: files[int(which)%len(files)], body: body, offer: offer}
		c, err := client.New(client.Config{
			ServerURL: "http://tufota.invalid", TrustedRoot: repo.TrustedRoot(), StateDir: t.TempDir(),
			DeviceID: testDevice, HardwareID: testHardware, CurrentVersion: "1.0.0",
			HTTPClient: &http.Client{Transport: tr}, Retry: client.RetryPolicy{Attempts: 1},
		})
		if err != nil {
			t.Fatal(err)
		}
		upd, err := c.Check(t.Context())
		if err != nil {
			if !errors.Is(err, client.ErrMetadata) {
				t.Fatalf("Check error = %v, want ErrMetadata", err)
			}
			return
		}
		if upd.Target != target || upd.Version != "1.2.0" || upd.Length != int64(len("firmware")) {
			t.Fatalf("Check accepted tampered metadata: %+v", upd)
		}
	})
}
