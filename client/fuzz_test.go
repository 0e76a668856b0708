package client_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

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

// FuzzRepositoryTarget replaces the metadata of a delegated role (fetched
// on demand by a look-up), or the top-level targets that delegates to it,
// with arbitrary bytes, and looks up the role's target through the
// Repository API. It must never panic; it may only return the genuine
// target, and anything else is ErrMetadata (or ErrNotSigned when the bytes
// are a validly signed targets file without it: impossible without the
// keys, so also a failure here).
func FuzzRepositoryTarget(f *testing.F) {
	repo, err := repofixtures.New("fuzz-delegated", time.Now().Add(365*24*time.Hour))
	if err != nil {
		f.Fatal(err)
	}
	k, err := repo.NewKey("line")
	if err != nil {
		f.Fatal(err)
	}
	repo.Targets.Signed.Delegations = &metadata.Delegations{Keys: map[string]*metadata.Key{},
		Roles: []metadata.DelegatedRole{{Name: "line", Threshold: 1, Paths: []string{"line/*"}, KeyIDs: []string{}}}}
	if err := repo.Targets.Signed.AddKey(k.Public, "line"); err != nil {
		f.Fatal(err)
	}
	repo.Keys["line"] = []*repofixtures.Key{k}
	repo.Delegated["line"] = metadata.Targets(time.Now().Add(365 * 24 * time.Hour))
	if _, err := repo.AddTarget("line", "line/fw.bin", []byte("line firmware"), nil); err != nil || repo.Publish() != nil {
		f.Fatal(err)
	}
	files := []string{"1.line.json", "1.targets.json"}
	for i, name := range files {
		genuine := repo.File(name)
		f.Add(uint8(i), genuine)
		f.Add(uint8(i), []byte(strings.Replace(string(genuine), `"line/*"`, `"*"`, 1)))
		f.Add(uint8(i), []byte(strings.Replace(string(genuine), `"threshold": 1`, `"threshold": 0`, 1)))
	}
	f.Add(uint8(0), []byte(`{"signed":{"_type":"targets"},"signatures":[]}`))

	f.Fuzz(func(t *testing.T, which uint8, body []byte) {
		tr := &memTransport{repo: repo, replace: files[int(which)%len(files)], body: body}
		r, err := client.OpenRepository(client.RepositoryConfig{
			TrustedRoot: repo.TrustedRoot(), MetadataURL: "http://tuf.invalid/tuf", TargetsURL: "http://tuf.invalid/tuf/targets",
			MetadataDir: t.TempDir(), HTTPClient: &http.Client{Transport: tr}, Retry: client.RetryPolicy{Attempts: 1},
		})
		if err != nil {
			t.Fatal(err)
		}
		tg, err := r.Target(t.Context(), "line/fw.bin")
		if err != nil {
			if !errors.Is(err, client.ErrMetadata) {
				t.Fatalf("Target error = %v, want ErrMetadata", err)
			}
			return
		}
		if tg.Length != int64(len("line firmware")) || len(tg.Hashes) != 2 {
			t.Fatalf("Target accepted tampered metadata: %+v", tg)
		}
	})
}
