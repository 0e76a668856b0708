// Package delta_test runs delta updates end to end: a real tufota server
// (HTTP API, TUF repository on the file blob store, SQLite state, the
// background delta worker's pass) and the real device client with the A/B
// installer.
package delta_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/tufota/tufota/access"
	"github.com/tufota/tufota/api"
	"github.com/tufota/tufota/apiclient"
	"github.com/tufota/tufota/audit"
	"github.com/tufota/tufota/client"
	"github.com/tufota/tufota/delta"
	"github.com/tufota/tufota/rollout"
	"github.com/tufota/tufota/server"
	"github.com/tufota/tufota/signer"
	"github.com/tufota/tufota/storage"
)

type env struct {
	t        *testing.T
	srv      *server.Server
	http     *httptest.Server
	blobs    storage.Blobs
	db       *storage.DB
	repo     *signer.Repository
	releases *signer.Releases
	signers  signer.Signers
	tokens   *access.Tokens
	rollouts *rollout.Service
	admin    string
	root     []byte
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	pass := []byte("test passphrase")
	key := func(name string) signature.SignerVerifier {
		sv, err := signer.GenerateFileKey(filepath.Join(dir, name+".key"), "ed25519", pass)
		if err != nil {
			t.Fatal(err)
		}
		return sv
	}
	root, targets, snapshot, timestamp := key("root"), key("targets"), key("snapshot"), key("timestamp")
	blobs, err := storage.NewFile(filepath.Join(dir, "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	db, err := storage.OpenDB(ctx, "sqlite:"+filepath.Join(dir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	repo := signer.NewRepository(blobs)
	rootJSON, err := repo.Init(ctx, signer.RoleKeys{
		Root: []signature.SignerVerifier{root}, RootThreshold: 1,
		Targets: []signature.SignerVerifier{targets}, TargetsThreshold: 1,
		Snapshot: snapshot, Timestamp: timestamp,
	})
	if err != nil {
		t.Fatal(err)
	}
	signers := signer.Signers{Targets: []signature.Signer{targets}, Snapshot: snapshot, Timestamp: timestamp}
	tokens := access.NewTokens(db, nil)
	ns, err := audit.NewNoteSigner("tufota.test/audit", key("audit").(crypto.Signer))
	if err != nil {
		t.Fatal(err)
	}
	alog, err := audit.New(ctx, db, ns)
	if err != nil {
		t.Fatal(err)
	}
	releases := signer.NewReleases(db, repo, signers)
	rollouts := rollout.NewService(db, server.ReleaseLookup(releases))
	srv, err := server.New(server.Config{Blobs: blobs, DB: db, Repo: repo, Releases: releases, Tokens: tokens, Audit: alog, Rollouts: rollouts,
		MaxUploadBytes: 64 << 20, Deltas: server.DeltaConfig{MaxBases: 1}})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, srv: srv, blobs: blobs, db: db, repo: repo, releases: releases, signers: signers, tokens: tokens, rollouts: rollouts, root: rootJSON}
	e.admin, _, err = tokens.Create(ctx, nil, access.NewToken{Name: "admin", Role: access.RoleAdmin}, "test")
	if err != nil {
		t.Fatal(err)
	}
	e.http = httptest.NewServer(srv.Handler())
	t.Cleanup(e.http.Close)
	return e
}

// push uploads a release through the API.
func (e *env) push(name, version string, image []byte) {
	e.t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	rel, _ := json.Marshal(signer.PushRequest{Name: name, Version: version, Hardware: []string{"pump-a"}, File: "fw.bin"})
	p, _ := mw.CreateFormField("release")
	p.Write(rel)
	f, _ := mw.CreateFormFile("file", "fw.bin")
	f.Write(image)
	mw.Close()
	req, _ := http.NewRequest(http.MethodPost, e.http.URL+"/api/v1/releases", &body)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Authorization", "Bearer "+e.admin)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusCreated && res.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(res.Body)
		e.t.Fatalf("push %s@%s: %d %s", name, version, res.StatusCode, b)
	}
}

// show is the release show API answer.
type show struct {
	TargetPath string         `json:"target_path"`
	Length     int64          `json:"length"`
	SHA256     string         `json:"sha256"`
	Deltas     []signer.Delta `json:"deltas"`
}

func (e *env) show(name, version string) show {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, e.http.URL+"/api/v1/releases/"+name+"/"+version, nil)
	req.Header.Set("Authorization", "Bearer "+e.admin)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	var s show
	if res.StatusCode != http.StatusOK {
		e.t.Fatalf("release show %s@%s: %d", name, version, res.StatusCode)
	}
	if err := json.NewDecoder(res.Body).Decode(&s); err != nil {
		e.t.Fatal(err)
	}
	return s
}

// countingTransport counts the bytes of target downloads.
type countingTransport struct {
	mu    sync.Mutex
	bytes map[string]int64 // by URL path
}

func (c *countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	res, err := http.DefaultTransport.RoundTrip(req)
	if err != nil || !strings.Contains(req.URL.Path, "/tuf/targets/") {
		return res, err
	}
	res.Body = &countingBody{ReadCloser: res.Body, c: c, path: req.URL.Path}
	return res, nil
}

type countingBody struct {
	io.ReadCloser
	c    *countingTransport
	path string
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.c.mu.Lock()
	b.c.bytes[b.path] += int64(n)
	b.c.mu.Unlock()
	return n, err
}

func (c *countingTransport) total() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	var n int64
	for _, v := range c.bytes {
		n += v
	}
	return n
}

type device struct {
	id     string
	ab     *client.ABInstaller
	client *client.Client
	net    *countingTransport
	dir    string
}

// newDevice registers a device running image as NAME@1.0.0, installed
// in its A/B slots, with a client that uses deltas.
func (e *env) newDevice(id, name string, image []byte, memory int64) *device {
	e.t.Helper()
	ctx := context.Background()
	if err := e.rollouts.RegisterDevice(ctx, rollout.Device{ID: id, Hardware: "pump-a", Version: "1.0.0"}, "test"); err != nil {
		e.t.Fatal(err)
	}
	token, _, err := e.tokens.Create(ctx, nil, access.NewToken{Name: "device-" + id, Role: access.RoleDevice, DeviceID: id}, "test")
	if err != nil {
		e.t.Fatal(err)
	}
	d := &device{id: id, dir: e.t.TempDir(), net: &countingTransport{bytes: map[string]int64{}}}
	d.ab = &client.ABInstaller{Dir: filepath.Join(d.dir, "slots")}
	img := filepath.Join(d.dir, "factory.img")
	if err := os.WriteFile(img, image, 0o600); err != nil {
		e.t.Fatal(err)
	}
	sum := sha256.Sum256(image)
	if err := d.ab.Install(ctx, img, &client.Update{Target: name + "/1.0.0/fw.bin", Version: "1.0.0", Length: int64(len(image)),
		Hashes: map[string]string{"sha256": hex.EncodeToString(sum[:])}}); err != nil {
		e.t.Fatal(err)
	}
	d.client, err = client.New(client.Config{
		ServerURL: e.http.URL, TrustedRoot: e.root, StateDir: filepath.Join(d.dir, "state"), DeviceID: id, Token: token,
		HardwareID: "pump-a", CurrentVersion: "1.0.0", HTTPClient: &http.Client{Transport: d.net},
		Delta: &client.DeltaConfig{Base: d.ab.DeltaBase, Memory: memory},
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return d
}

// update runs the device's update cycle to the assigned release: check,
// download, install, boot, confirm. It returns the download's stats.
func (e *env) update(d *device, name, version string) client.DeltaStats {
	e.t.Helper()
	ctx := context.Background()
	if err := e.rollouts.AssignDevice(ctx, d.id, name, version, "test"); err != nil {
		e.t.Fatal(err)
	}
	upd, err := d.client.Check(ctx)
	if err != nil || upd == nil {
		e.t.Fatalf("%s: Check = %v, %v", d.id, upd, err)
	}
	dst := filepath.Join(d.dir, "download.img")
	if err := d.client.Download(ctx, upd, dst); err != nil {
		e.t.Fatalf("%s: Download: %v", d.id, err)
	}
	stats := d.client.LastDownload()
	if err := d.ab.Install(ctx, dst, upd); err != nil {
		e.t.Fatalf("%s: Install: %v", d.id, err)
	}
	boot, err := d.ab.Boot(ctx)
	if err != nil || !boot.Trial || boot.Record.Version != version {
		e.t.Fatalf("%s: Boot = %+v, %v; want a trial of %s", d.id, boot, err, version)
	}
	if err := d.ab.Confirm(ctx); err != nil {
		e.t.Fatal(err)
	}
	return stats
}

// slotImage returns the device's running image after Boot verified it.
func (d *device) slotImage(t *testing.T) []byte {
	t.Helper()
	boot, err := d.ab.Boot(context.Background())
	if err != nil {
		t.Fatalf("Boot: %v", err)
	}
	b, err := os.ReadFile(boot.Image)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// errorCodes returns the error codes of the device's status reports.
func (e *env) errorCodes(id string) []string {
	e.t.Helper()
	rows, err := e.db.Query(context.Background(), `SELECT error_code FROM status_reports WHERE device_id = ? AND error_code <> ''`, id)
	if err != nil {
		e.t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var c string
		if err := rows.Scan(&c); err != nil {
			e.t.Fatal(err)
		}
		out = append(out, c)
	}
	return out
}

// image returns a firmware-like image: words from a small vocabulary,
// zero padding and random data, so that it compresses like code.
func image(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 7))
	words := make([][]byte, 256)
	for i := range words {
		words[i] = make([]byte, 4+r.IntN(12))
		for j := range words[i] {
			words[i][j] = byte(r.Uint32())
		}
	}
	b := make([]byte, 0, n+64)
	for len(b) < n {
		switch r.IntN(12) {
		case 0:
			b = append(b, make([]byte, r.IntN(100))...)
		case 1:
			for range r.IntN(32) {
				b = append(b, byte(r.Uint32()))
			}
		default:
			b = append(b, words[r.IntN(len(words))]...)
		}
	}
	return b[:n]
}

// pointRelease changes a few places of old and inserts a block.
func pointRelease(old []byte) []byte {
	n := slices.Clone(old)
	copy(n[len(n)/3:], "version 1.1.0 (build 4242)")
	copy(n[len(n)/2:], "fixed the infusion-rate rounding bug")
	return slices.Concat(n[:len(n)*3/4], image(99, 2000), n[len(n)*3/4:])
}

func TestDeltaUpdateEndToEnd(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	const size = 1 << 20
	products := []string{"pump-ok", "pump-tampered", "pump-otherbase", "pump-result", "pump-memory", "pump-nodelta"}
	v1, v11 := map[string][]byte{}, map[string][]byte{}
	for i, p := range products {
		v1[p] = image(uint64(i), size)
		v11[p] = pointRelease(v1[p])
		if p == "pump-nodelta" {
			// Unrelated random bytes: the delta is as large as the image.
			v11[p] = make([]byte, size)
			r := rand.NewChaCha8([32]byte{byte(i)})
			r.Read(v11[p])
		}
		e.push(p, "1.0.0", v1[p])
		e.push(p, "1.1.0", v11[p])
	}
	// pump-result: before the server makes its delta, a delta is signed
	// at its path whose bytes make another image than the signed 1.1.0
	// (its custom metadata is right: only applying it shows the lie).
	var wrong bytes.Buffer
	if err := delta.MakeBytes(ctx, v1["pump-result"], image(1234, size), &wrong); err != nil {
		t.Fatal(err)
	}
	e.publishDelta("pump-result", wrong.Bytes())

	// The server's background worker pass makes the deltas.
	if n := e.srv.DeltasOnce(ctx); n != len(products) {
		t.Fatalf("DeltasOnce made %d deltas, want %d", n, len(products))
	}
	s := e.show("pump-ok", "1.1.0")
	if len(s.Deltas) != 1 || s.Deltas[0].State != signer.DeltaPublished || s.Deltas[0].BaseVersion != "1.0.0" {
		t.Fatalf("release show deltas = %+v, want one published from 1.0.0", s.Deltas)
	}
	d0 := s.Deltas[0]
	t.Logf("release show: delta %s %d bytes for a %d-byte image (%.2f %%), made in %d ms", d0.TargetPath, d0.Length, d0.FullLength, 100*float64(d0.Length)/float64(d0.FullLength), d0.CreateMillis)

	if nd := e.show("pump-nodelta", "1.1.0").Deltas; len(nd) != 1 || nd[0].State != signer.DeltaTooLarge {
		t.Fatalf("pump-nodelta deltas = %+v, want one too_large", nd)
	}

	// pump-tampered: the delta's bytes in the blob store are altered
	// after signing.
	e.tamper(e.show("pump-tampered", "1.1.0").Deltas[0])

	// Each outcome is in the audit log.
	var audited int
	if err := e.db.QueryRow(ctx, `SELECT COUNT(*) FROM audit_entries WHERE action = 'release.delta'`).Scan(&audited); err != nil || audited != len(products) {
		t.Fatalf("%d release.delta audit entries (%v), want %d", audited, err, len(products))
	}

	tests := []struct {
		product   string
		installed []byte // the device's 1.0.0 image
		memory    int64  // the device's memory bound for applying
		code      string // the fallback's report code; "" for a delta install
	}{
		{"pump-ok", v1["pump-ok"], 1 << 20, ""},
		{"pump-tampered", v1["pump-tampered"], 1 << 20, client.CodeDeltaCorrupt},
		// A device whose 1.0.0 is not the published 1.0.0 image.
		{"pump-otherbase", image(777, size), 1 << 20, client.CodeDeltaBase},
		{"pump-result", v1["pump-result"], 1 << 20, client.CodeDeltaResult},
		{"pump-memory", v1["pump-memory"], delta.MinMemory - 1, client.CodeDeltaMemory},
		// No delta offered: the full image, and nothing to report.
		{"pump-nodelta", v1["pump-nodelta"], 1 << 20, "none"},
	}
	for i, tt := range tests {
		t.Run(tt.product, func(t *testing.T) {
			d := e.newDevice(fmt.Sprintf("dev-%d", i), tt.product, tt.installed, tt.memory)
			stats := e.update(d, tt.product, "1.1.0")
			got := d.slotImage(t)
			if !bytes.Equal(got, v11[tt.product]) {
				t.Fatalf("device runs %d bytes that are not the signed 1.1.0", len(got))
			}
			transferred := d.net.total()
			codes := e.errorCodes(d.id)
			t.Logf("%s: %d bytes transferred for a %d-byte image (delta %q), report codes %v", tt.product, transferred, len(v11[tt.product]), stats.Delta, codes)
			if tt.code == "none" {
				if stats.Delta != "" || stats.Fallback != nil || len(codes) != 0 || transferred < int64(len(v11[tt.product])) {
					t.Fatalf("stats = %+v, codes %v, %d bytes: want a plain full download", stats, codes, transferred)
				}
				return
			}
			if tt.code == "" {
				if stats.Delta == "" || stats.Fallback != nil {
					t.Fatalf("stats = %+v, want a delta install", stats)
				}
				if transferred > int64(len(v11[tt.product]))/20 {
					t.Fatalf("%d bytes transferred, want at most 5 %% of the %d-byte image", transferred, len(v11[tt.product]))
				}
				if len(codes) != 0 {
					t.Fatalf("report codes %v, want none", codes)
				}
				return
			}
			if stats.Delta != "" || client.ErrorCode(stats.Fallback) != tt.code {
				t.Fatalf("stats = %+v (code %s), want a full download after %s", stats, client.ErrorCode(stats.Fallback), tt.code)
			}
			if !slices.Contains(codes, tt.code) {
				t.Fatalf("report codes %v, want %s", codes, tt.code)
			}
			if transferred < int64(len(v11[tt.product])) {
				t.Fatalf("%d bytes transferred, fewer than the full image", transferred)
			}
		})
	}
}

// rolloutUpdate runs the device's update cycle to what its rollout offers,
// with the status reports a device sends: downloaded, then installed
// after the confirmed boot.
func (e *env) rolloutUpdate(d *device, version string) client.DeltaStats {
	e.t.Helper()
	ctx := context.Background()
	upd, err := d.client.Check(ctx)
	if err != nil || upd == nil || upd.RolloutID == "" {
		e.t.Fatalf("%s: Check = %+v, %v; want the rollout's update", d.id, upd, err)
	}
	dst := filepath.Join(d.dir, "download.img")
	if err := d.client.Download(ctx, upd, dst); err != nil {
		e.t.Fatalf("%s: Download: %v", d.id, err)
	}
	if err := d.client.Report(ctx, client.NewReport(upd, client.StateDownloaded, nil)); err != nil {
		e.t.Fatalf("%s: report downloaded: %v", d.id, err)
	}
	if err := d.ab.Install(ctx, dst, upd); err != nil {
		e.t.Fatalf("%s: Install: %v", d.id, err)
	}
	if boot, err := d.ab.Boot(ctx); err != nil || !boot.Trial || boot.Record.Version != version {
		e.t.Fatalf("%s: Boot = %+v, %v; want a trial of %s", d.id, boot, err, version)
	}
	if err := d.ab.Confirm(ctx); err != nil {
		e.t.Fatal(err)
	}
	if err := d.client.Report(ctx, client.NewReport(upd, client.StateInstalled, nil)); err != nil {
		e.t.Fatalf("%s: report installed: %v", d.id, err)
	}
	return d.client.LastDownload()
}

// TestRolloutDeltaBytesPerWave: in a rollout, the devices say how their
// image came, and the rollout's status and history show per wave the
// bytes served as a delta (the device whose image is the delta's base)
// and as full images (the devices that fell back).
func TestRolloutDeltaBytesPerWave(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	const size = 1 << 20
	v1 := image(1, size)
	v11 := pointRelease(v1)
	e.push("pump-wave", "1.0.0", v1)
	e.push("pump-wave", "1.1.0", v11)
	if n := e.srv.DeltasOnce(ctx); n != 1 {
		t.Fatalf("DeltasOnce made %d deltas, want 1", n)
	}
	dl := e.show("pump-wave", "1.1.0").Deltas
	if len(dl) != 1 || dl[0].State != signer.DeltaPublished {
		t.Fatalf("deltas = %+v, want one published", dl)
	}
	onDelta := e.newDevice("dev-delta", "pump-wave", v1, 1<<20)
	otherBase := e.newDevice("dev-otherbase", "pump-wave", image(777, size), 1<<20)
	lowMemory := e.newDevice("dev-memory", "pump-wave", v1, delta.MinMemory-1)

	ac := apiclient.New(e.http.URL, e.admin)
	ro, err := ac.CreateRollout(ctx, api.RolloutSpec{Release: "pump-wave@1.1.0", Cohort: "hardware=pump-a", Waves: "100%"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ac.RolloutAction(ctx, ro.ID, "start", api.ActionRequest{Reason: "test"}); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	for _, d := range []*device{onDelta, otherBase, lowMemory} {
		stats := e.rolloutUpdate(d, "1.1.0")
		want[d.id] = stats.Path()
	}
	if want[onDelta.id] != client.DownloadDelta || want[otherBase.id] != client.DownloadFull || want[lowMemory.id] != client.DownloadFull {
		t.Fatalf("download paths %v, want a delta for %s and full images for the others", want, onDelta.id)
	}

	st, err := ac.Rollout(ctx, ro.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Waves) != 1 {
		t.Fatalf("waves = %+v, want one", st.Waves)
	}
	w := st.Waves[0]
	t.Logf("wave 1: %d bytes as %d deltas, %d bytes as %d full images", w.DeltaBytes, w.DeltaDownloads, w.FullBytes, w.FullDownloads)
	if w.Installed != 3 || w.DeltaDownloads != 1 || w.DeltaBytes != dl[0].Length ||
		w.FullDownloads != 2 || w.FullBytes != 2*int64(len(v11)) {
		t.Fatalf("wave = %+v, want 3 installed, 1 delta of %d bytes, 2 full images of %d bytes", w, dl[0].Length, len(v11))
	}
	h, err := ac.RolloutHistory(ctx, ro.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(h.Waves) != 1 || h.Waves[0].DeltaBytes != w.DeltaBytes || h.Waves[0].FullBytes != w.FullBytes {
		t.Fatalf("history waves = %+v, want the status's %+v", h.Waves, w)
	}
	for _, o := range h.Devices {
		wantBytes := int64(len(v11))
		if o.DeviceID == onDelta.id {
			wantBytes = dl[0].Length
		}
		if o.Download != want[o.DeviceID] || o.DownloadBytes != wantBytes {
			t.Errorf("history of %s: download %q of %d bytes, want %q of %d", o.DeviceID, o.Download, o.DownloadBytes, want[o.DeviceID], wantBytes)
		}
	}
	fleet, err := ac.FleetReport(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(fleet) != 3 {
		t.Fatalf("fleet report = %+v, want 3 devices", fleet)
	}
	for _, r := range fleet {
		wantBytes := int64(len(v11))
		if r.DeviceID == onDelta.id {
			wantBytes = dl[0].Length
		}
		if r.LastDownload != want[r.DeviceID] || r.LastDownloadBytes != wantBytes {
			t.Errorf("fleet report of %s: last download %q of %d bytes, want %q of %d", r.DeviceID, r.LastDownload, r.LastDownloadBytes, want[r.DeviceID], wantBytes)
		}
	}
}

// publishDelta signs patch as NAME's 1.0.0 → 1.1.0 delta target, with
// custom metadata that names the real releases.
func (e *env) publishDelta(name string, patch []byte) {
	e.t.Helper()
	ctx := context.Background()
	base, err := e.releases.Get(ctx, name, "1.0.0")
	if err != nil {
		e.t.Fatal(err)
	}
	res, err := e.releases.Get(ctx, name, "1.1.0")
	if err != nil {
		e.t.Fatal(err)
	}
	custom, err := delta.MarshalCustom(delta.TargetCustom{Format: delta.FormatV1,
		Base:   delta.Ref{Path: base.TargetPath, Version: base.Version, Length: base.Length, Hashes: map[string]string{"sha256": base.SHA256}},
		Result: delta.Ref{Path: res.TargetPath, Version: res.Version, Length: res.Length, Hashes: map[string]string{"sha256": res.SHA256}},
	})
	if err != nil {
		e.t.Fatal(err)
	}
	st, err := e.repo.Stage(ctx, bytes.NewReader(patch), 0)
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.repo.Publish(ctx, e.signers, signer.Target{Path: delta.TargetPath(name, "1.1.0", "1.0.0"), Staged: st, Custom: custom}); err != nil {
		e.t.Fatal(err)
	}
}

// tamper flips a byte of the published delta's blob.
func (e *env) tamper(d signer.Delta) {
	e.t.Helper()
	ctx := context.Background()
	key := signer.TargetBlobKey(d.TargetPath, d.SHA256)
	obj, err := e.blobs.Open(ctx, key)
	if err != nil {
		e.t.Fatal(err)
	}
	b, err := io.ReadAll(obj)
	obj.Close()
	if err != nil {
		e.t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	if _, err := e.blobs.Put(ctx, key, bytes.NewReader(b)); err != nil {
		e.t.Fatal(err)
	}
}
