package client_test

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tufota/tufota/client"
)

// imageHandler serves one image with HTTP Range support, counts the body
// bytes it writes, and cuts the connection of successive requests at the
// given absolute offsets (a dying network or a killed device).
type imageHandler struct {
	data        []byte
	ignoreRange bool  // answer 200 with the whole image to Range requests
	badRange    bool  // answer 206 with a Content-Range that starts elsewhere
	stallAt     int64 // if > 0, stop sending at this offset and hang until the client leaves
	mu          sync.Mutex
	cuts        []int64 // cut offsets, used in order
	served      int64   // body bytes written
	requests    int
	ranges      []string // Range headers seen
}

func (h *imageHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	h.requests++
	h.ranges = append(h.ranges, r.Header.Get("Range"))
	start := int64(0)
	if rg := r.Header.Get("Range"); rg != "" && !h.ignoreRange {
		n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimPrefix(rg, "bytes="), "-"), 10, 64)
		if err != nil || n < 0 || n >= int64(len(h.data)) {
			h.mu.Unlock()
			w.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
			return
		}
		start = n
	}
	end := int64(len(h.data))
	for len(h.cuts) > 0 && h.cuts[0] <= start {
		h.cuts = h.cuts[1:]
	}
	cut := end
	if len(h.cuts) > 0 {
		cut, h.cuts = h.cuts[0], h.cuts[1:]
	}
	if h.stallAt > 0 && h.stallAt >= start && h.stallAt < cut {
		cut = h.stallAt
	}
	h.served += cut - start
	stall := h.stallAt > 0 && cut == h.stallAt
	h.mu.Unlock()

	w.Header().Set("Content-Length", strconv.FormatInt(end-start, 10))
	if start > 0 || h.badRange {
		s := start
		if h.badRange {
			s = start + 1
		}
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", s, end-1, end))
		w.WriteHeader(http.StatusPartialContent)
	}
	w.Write(h.data[start:cut])
	w.(http.Flusher).Flush()
	if stall {
		<-r.Context().Done()
		return
	}
	if cut < end {
		panic(http.ErrAbortHandler) // drop the connection mid-body
	}
}

func (h *imageHandler) stats() (served int64, requests int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.served, h.requests
}

// randomCuts returns n distinct sorted offsets in (0, size).
func randomCuts(n int, size int64, seed uint64) []int64 {
	r := rand.New(rand.NewPCG(seed, seed))
	set := map[int64]bool{}
	for len(set) < n {
		set[1+r.Int64N(size-1)] = true
	}
	cuts := make([]int64, 0, n)
	for c := range set {
		cuts = append(cuts, c)
	}
	slices.Sort(cuts)
	return cuts
}

// downloadSetup publishes an image of size bytes, serves it through an
// imageHandler and returns a checked Update.
func downloadSetup(t *testing.T, size int) (*server, *imageHandler, *client.Update) {
	t.Helper()
	s := newServer(t)
	target, data := s.release(release("1.2.0"), size)
	s.offerTarget(target)
	h := &imageHandler{data: data}
	s.handle("/tuf/"+s.targetFile(target, data), h)
	upd, err := s.client(t, nil).Check(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return s, h, upd
}

func TestKillAndResume(t *testing.T) {
	t.Parallel()
	const size = 1 << 20
	s, h, upd := downloadSetup(t, size)
	h.cuts = randomCuts(20, size, 1)
	cuts := slices.Clone(h.cuts)
	state := t.TempDir()
	dst := filepath.Join(t.TempDir(), "fw.bin")

	// Each attempt is a fresh client on the same state (a restarted device)
	// with retries off, so every cut ends a Download call.
	for i, cut := range cuts {
		c := s.client(t, func(cfg *client.Config) {
			cfg.StateDir = state
			cfg.Retry.Attempts = 1
		})
		err := c.Download(t.Context(), upd, dst)
		if !errors.Is(err, client.ErrUnreachable) {
			t.Fatalf("download %d: error = %v, want ErrUnreachable", i, err)
		}
		st, err := os.Stat(client.PartialPath(c, upd))
		if err != nil || st.Size() != cut {
			t.Fatalf("download %d: .part = %v, %v; want %d bytes", i, st, err, cut)
		}
		assertNoFile(t, dst)
	}
	c := s.client(t, func(cfg *client.Config) { cfg.StateDir = state; cfg.Retry.Attempts = 1 })
	if err := c.Download(t.Context(), upd, dst); err != nil {
		t.Fatalf("final download: %v", err)
	}
	got, err := os.ReadFile(dst)
	if err != nil || !bytes.Equal(got, h.data) {
		t.Fatalf("final file differs from the image (err %v)", err)
	}
	assertNoFile(t, client.PartialPath(c, upd))
	served, requests := h.stats()
	if requests != len(cuts)+1 {
		t.Fatalf("%d requests, want %d", requests, len(cuts)+1)
	}
	if extra := served - size; extra*100 > size {
		t.Fatalf("served %d bytes for a %d-byte image: %d extra, over 1%%", served, size, extra)
	}
	for i, rg := range h.ranges[1:] {
		if want := fmt.Sprintf("bytes=%d-", cuts[i]); rg != want {
			t.Fatalf("request %d Range = %q, want %q", i+1, rg, want)
		}
	}
}

func TestResumeWithinOneCallByRetrying(t *testing.T) {
	t.Parallel()
	const size = 300_000
	s, h, upd := downloadSetup(t, size)
	h.cuts = randomCuts(10, size, 2)
	c := s.client(t, func(cfg *client.Config) { cfg.Retry.Attempts = 11 })
	dst := filepath.Join(t.TempDir(), "fw.bin")
	if err := c.Download(t.Context(), upd, dst); err != nil {
		t.Fatalf("Download: %v", err)
	}
	if served, requests := h.stats(); served != size || requests != 11 {
		t.Fatalf("served %d bytes in %d requests, want %d in 11", served, requests, size)
	}
}

func TestRetryCapStopsDownload(t *testing.T) {
	t.Parallel()
	const size = 100_000
	s, h, upd := downloadSetup(t, size)
	h.cuts = randomCuts(10, size, 3)
	c := s.client(t, func(cfg *client.Config) { cfg.Retry.Attempts = 3 })
	dst := filepath.Join(t.TempDir(), "fw.bin")
	if err := c.Download(t.Context(), upd, dst); !errors.Is(err, client.ErrUnreachable) {
		t.Fatalf("Download error = %v, want ErrUnreachable", err)
	}
	if _, requests := h.stats(); requests != 3 {
		t.Fatalf("%d requests, want the cap of 3", requests)
	}
}

func TestServerIgnoringRangeStartsOver(t *testing.T) {
	t.Parallel()
	const size = 100_000
	s, h, upd := downloadSetup(t, size)
	h.ignoreRange = true
	h.cuts = []int64{40_000}
	c := s.client(t, nil)
	dst := filepath.Join(t.TempDir(), "fw.bin")
	if err := c.Download(t.Context(), upd, dst); err != nil {
		t.Fatalf("Download: %v", err)
	}
	got, _ := os.ReadFile(dst)
	if !bytes.Equal(got, h.data) {
		t.Fatal("file differs from the image")
	}
	if served, _ := h.stats(); served != 40_000+size {
		t.Fatalf("served %d, want %d", served, 40_000+size)
	}
}

func TestWrongContentRangeRefused(t *testing.T) {
	t.Parallel()
	const size = 100_000
	s, h, upd := downloadSetup(t, size)
	h.cuts = []int64{50_000}
	dst := filepath.Join(t.TempDir(), "fw.bin")
	state := t.TempDir()
	c := s.client(t, func(cfg *client.Config) { cfg.StateDir = state; cfg.Retry.Attempts = 1 })
	if err := c.Download(t.Context(), upd, dst); !errors.Is(err, client.ErrUnreachable) {
		t.Fatalf("first Download = %v, want ErrUnreachable", err)
	}
	h.mu.Lock()
	h.badRange = true
	h.mu.Unlock()
	var se *client.ServerError
	if err := c.Download(t.Context(), upd, dst); !errors.As(err, &se) || se.Status != http.StatusPartialContent {
		t.Fatalf("Download with a wrong Content-Range = %v, want ServerError 206", err)
	}
	if st, err := os.Stat(client.PartialPath(c, upd)); err != nil || st.Size() != 50_000 {
		t.Fatalf(".part after refused range = %v, %v; want 50000 bytes kept", st, err)
	}
}

func TestCorruptPartialFileStartsOverOnce(t *testing.T) {
	t.Parallel()
	const size = 100_000
	s, h, upd := downloadSetup(t, size)
	h.cuts = []int64{60_000}
	dst := filepath.Join(t.TempDir(), "fw.bin")
	c := s.client(t, func(cfg *client.Config) { cfg.Retry.Attempts = 1 })
	if err := c.Download(t.Context(), upd, dst); !errors.Is(err, client.ErrUnreachable) {
		t.Fatalf("first Download = %v, want ErrUnreachable", err)
	}
	// A power cut left zeros at the end of the unsynced .part file.
	f, err := os.OpenFile(client.PartialPath(c, upd), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt(make([]byte, 100), 59_900)
	f.Close()
	if err := c.Download(t.Context(), upd, dst); err != nil {
		t.Fatalf("Download after corruption: %v", err)
	}
	got, _ := os.ReadFile(dst)
	if !bytes.Equal(got, h.data) {
		t.Fatal("file differs from the image")
	}
	if served, requests := h.stats(); served != 60_000+40_000+size || requests != 3 {
		t.Fatalf("served %d in %d requests, want %d in 3", served, requests, 60_000+40_000+size)
	}
}

func TestOverlongPartialStartsOver(t *testing.T) {
	t.Parallel()
	const size = 50_000
	s, h, upd := downloadSetup(t, size)
	dst := filepath.Join(t.TempDir(), "fw.bin")
	c := s.client(t, nil)
	if err := os.WriteFile(client.PartialPath(c, upd), bytes.Repeat([]byte("old"), size), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := c.Download(t.Context(), upd, dst); err != nil {
		t.Fatalf("Download: %v", err)
	}
	if served, requests := h.stats(); served != size || requests != 1 || h.ranges[0] != "" {
		t.Fatalf("served %d in %d requests (ranges %q), want one full fetch", served, requests, h.ranges)
	}
}

// TestPartialLivesInStateDir: the partial file of an interrupted download
// is in the state dir, and nothing but the verified file ever appears in
// the destination's directory.
func TestPartialLivesInStateDir(t *testing.T) {
	t.Parallel()
	const size = 100_000
	s, h, upd := downloadSetup(t, size)
	h.cuts = []int64{40_000}
	dstDir := t.TempDir()
	dst := filepath.Join(dstDir, "fw.bin")
	c := s.client(t, func(cfg *client.Config) { cfg.Retry.Attempts = 1 })
	if err := c.Download(t.Context(), upd, dst); !errors.Is(err, client.ErrUnreachable) {
		t.Fatalf("first Download = %v, want ErrUnreachable", err)
	}
	if entries, _ := os.ReadDir(dstDir); len(entries) != 0 {
		t.Fatalf("destination dir holds %v after an interrupted download, want nothing", entries)
	}
	if st, err := os.Stat(client.PartialPath(c, upd)); err != nil || st.Size() != 40_000 {
		t.Fatalf("partial file = %v, %v; want 40000 bytes", st, err)
	}
	if err := c.Download(t.Context(), upd, dst); err != nil {
		t.Fatalf("resumed Download: %v", err)
	}
	if entries, _ := os.ReadDir(dstDir); len(entries) != 1 {
		t.Fatalf("destination dir holds %v, want only fw.bin", entries)
	}
}

// TestVerifiedDestinationNotFetchedAgain: a file at the destination that
// matches the signed length and hashes is kept without a request; one that
// does not is replaced.
func TestVerifiedDestinationNotFetchedAgain(t *testing.T) {
	t.Parallel()
	const size = 70_000
	s, h, upd := downloadSetup(t, size)
	c := s.client(t, nil)
	dst := filepath.Join(t.TempDir(), "fw.bin")
	for i, tt := range []struct {
		name     string
		before   []byte // file at dst before the call, nil for none
		requests int    // total requests after the call
	}{
		{"absent", nil, 1},
		{"verified", h.data, 1},
		{"same length, other bytes", bytes.Repeat([]byte{'x'}, size), 2},
		{"truncated", h.data[:size-1], 3},
	} {
		if tt.before != nil {
			if err := os.WriteFile(dst, tt.before, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		if err := c.Download(t.Context(), upd, dst); err != nil {
			t.Fatalf("%d %s: Download: %v", i, tt.name, err)
		}
		if _, requests := h.stats(); requests != tt.requests {
			t.Fatalf("%d %s: %d requests in all, want %d", i, tt.name, requests, tt.requests)
		}
		if got, _ := os.ReadFile(dst); !bytes.Equal(got, h.data) {
			t.Fatalf("%d %s: destination differs from the image", i, tt.name)
		}
	}
}

func TestStalledTransferTimesOut(t *testing.T) {
	t.Parallel()
	const size = 100_000
	s, h, upd := downloadSetup(t, size)
	h.stallAt = 30_000
	c := s.client(t, func(cfg *client.Config) {
		cfg.RequestTimeout = 100 * time.Millisecond
		cfg.Retry.Attempts = 2
	})
	dst := filepath.Join(t.TempDir(), "fw.bin")
	err := c.Download(t.Context(), upd, dst)
	if !errors.Is(err, client.ErrUnreachable) || !strings.Contains(err.Error(), "stalled") {
		t.Fatalf("Download error = %v, want a stalled ErrUnreachable", err)
	}
	// The second attempt resumed where the first stalled, and stalled again
	// at once (stallAt is an absolute offset).
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.ranges) != 2 || h.ranges[1] != "bytes=30000-" {
		t.Fatalf("ranges = %q, want a resume at 30000", h.ranges)
	}
}
