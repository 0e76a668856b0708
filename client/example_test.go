package client_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"time"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/client"
	repofixtures "github.com/tufota/tufota/repo-fixtures"
)

// Example embeds the client in a device program: check, download, install,
// report. exampleServer stands in for a tufota server.
func Example() {
	serverURL, trustedRoot, dir := exampleServer()
	defer os.RemoveAll(dir)
	ctx := context.Background()

	c, err := client.New(client.Config{
		ServerURL: serverURL, TrustedRoot: trustedRoot, StateDir: filepath.Join(dir, "state"),
		DeviceID: "pump-0001", Token: "device-token", HardwareID: "pump-a", CurrentVersion: "1.0.0",
	})
	if err != nil {
		log.Fatal(err)
	}
	upd, err := c.Check(ctx) // verified against signed TUF metadata
	if err != nil || upd == nil {
		log.Fatalf("no update: %v", err)
	}
	img := filepath.Join(dir, "download.bin")
	if err := c.Download(ctx, upd, img); err != nil { // resumable, length- and hash-checked
		c.Report(ctx, client.NewReport(upd, client.StateFailed, err))
		log.Fatal(err)
	}
	inst := &client.FileInstaller{Path: filepath.Join(dir, "firmware.bin")}
	if err := inst.Install(ctx, img, upd); err != nil {
		c.Report(ctx, client.NewReport(upd, client.StateFailed, err))
		log.Fatal(err)
	}
	c.MarkInstalled(ctx, upd) // anti-rollback state
	c.Report(ctx, client.NewReport(upd, client.StateInstalled, nil))
	fmt.Println("installed", upd.Name, upd.Version)
	// Output: installed pumpfw 1.2.0
}

// ExampleABInstaller shows the start-up path of a device with two slots:
// boot, health-check a trial, confirm or roll back.
func ExampleABInstaller() {
	dir, _ := os.MkdirTemp("", "ab-example")
	defer os.RemoveAll(dir)
	ctx := context.Background()
	ab := &client.ABInstaller{Dir: dir, MaxBoots: 3}
	for _, v := range []string{"1.0.0", "1.1.0"} { // factory image, then an update
		path, upd := exampleImage(dir, v)
		if err := ab.Install(ctx, path, upd); err != nil {
			log.Fatal(err)
		}
	}

	res, err := ab.Boot(ctx) // at every start
	if err != nil {
		log.Fatal(err)
	}
	healthy := true // the device's own health check of res.Image
	if res.Trial && healthy {
		ab.Confirm(ctx)
	} else if res.Trial {
		ab.Rollback(ctx)
	}
	fmt.Println("booted", res.Record.Version, "trial:", res.Trial)
	// Output: booted 1.1.0 trial: true
}

func exampleImage(dir, version string) (string, *client.Update) {
	data := []byte("image " + version)
	p := filepath.Join(dir, version+".bin")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		log.Fatal(err)
	}
	sum, _ := repofixtures.Hashes(data)
	return p, &client.Update{Target: "fw/" + version + "/fw.bin", Version: version,
		Length: int64(len(data)), Hashes: map[string]string{"sha256": sum}}
}

// exampleServer starts a minimal tufota server that offers pumpfw 1.2.0.
// It returns its URL, the trusted root and a scratch directory for the
// caller to remove.
func exampleServer() (url string, root []byte, dir string) {
	repo, err := repofixtures.New("example", time.Now().Add(time.Hour))
	if err != nil {
		log.Fatal(err)
	}
	target, err := repo.AddRelease(tufota.TargetCustom{Name: "pumpfw", Version: "1.2.0", Hardware: []string{"pump-a"}}, "fw.bin", []byte("firmware 1.2.0"))
	if err != nil || repo.Publish() != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/tuf/", repo.Handler("/tuf/"))
	mux.HandleFunc("GET /api/v1/device/update", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]string{"target": target, "name": "pumpfw", "version": "1.2.0"})
	})
	mux.HandleFunc("POST /api/v1/device/status", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	})
	dir, err = os.MkdirTemp("", "client-example")
	if err != nil {
		log.Fatal(err)
	}
	return httptest.NewServer(mux).URL, repo.TrustedRoot(), dir
}

// ExampleRepository reads any TUF repository: refresh from the trusted
// root, look a target up, download it verified. exampleRepository serves a
// repository built with go-tuf's metadata package.
func ExampleRepository() {
	metaURL, targetsURL, root, dir := exampleRepository()
	defer os.RemoveAll(dir)
	ctx := context.Background()

	repo, err := client.OpenRepository(client.RepositoryConfig{
		TrustedRoot: root, MetadataURL: metaURL, TargetsURL: targetsURL,
		MetadataDir: filepath.Join(dir, "tuf"),
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := repo.Refresh(ctx); err != nil { // root, timestamp, snapshot, targets
		log.Fatal(err)
	}
	t, err := repo.Target(ctx, "greeting.txt") // delegations searched in order
	if err != nil {
		log.Fatal(err)
	}
	dst := filepath.Join(dir, "greeting.txt")
	if err := repo.Download(ctx, t, dst); err != nil { // length and hashes checked
		log.Fatal(err)
	}
	b, _ := os.ReadFile(dst)
	fmt.Printf("%s: %s (%d bytes)\n", t.Path, b, t.Length)
	// Output: greeting.txt: hello (5 bytes)
}

// exampleRepository serves a consistent-snapshot TUF repository holding
// the top-level target greeting.txt, built by repofixtures with go-tuf's
// metadata package. It returns the metadata and targets URLs, the
// trusted root and a scratch directory for the caller to remove.
func exampleRepository() (metaURL, targetsURL string, root []byte, dir string) {
	repo, err := repofixtures.New("example-repository", time.Now().Add(time.Hour))
	if err != nil {
		log.Fatal(err)
	}
	if _, err := repo.AddTarget("targets", "greeting.txt", []byte("hello"), nil); err != nil || repo.Publish() != nil {
		log.Fatal(err)
	}
	srv := httptest.NewServer(repo.Handler("/tuf/"))
	if dir, err = os.MkdirTemp("", "repository-example"); err != nil {
		log.Fatal(err)
	}
	return srv.URL + "/tuf", srv.URL + "/tuf/targets", repo.TrustedRoot(), dir
}
