package delta

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"sync"
	"testing"
	"time"
)

// countingReaderAt counts ReadAt calls on the old image.
type countingReaderAt struct {
	r     io.ReaderAt
	calls int
}

func (c *countingReaderAt) ReadAt(p []byte, off int64) (int, error) {
	c.calls++
	return c.r.ReadAt(p, off)
}

// TestApplyLargeImageInBoundedMemory applies a delta of a 256 MiB image
// with a 16 MiB memory bound and measures, in this process, the bytes Apply
// allocates (an upper bound of what it can hold, whatever the GC does) and
// the peak live heap while it runs.
//
// Making a delta of 256 MiB with Make would need about 2.5 GiB and minutes
// of CPU, so the delta is written by the encoder directly for a known
// change: 1 KiB changed at 10 MiB (difference bytes), 64 KiB inserted at
// 100 MiB (extra bytes), 4 KiB deleted at 150 MiB (a seek). Apply cannot
// tell the difference: it is the same format Make writes.
func TestApplyLargeImageInBoundedMemory(t *testing.T) {
	const (
		size   = 256 << 20
		bound  = 16 << 20
		change = 10 << 20
		insert = 100 << 20
		del    = 150 << 20
	)
	dir := t.TempDir()
	oldPath := filepath.Join(dir, "slot-a")
	writeRandomFile(t, oldPath, size)
	oldFile, err := os.Open(oldPath)
	if err != nil {
		t.Fatal(err)
	}
	defer oldFile.Close()

	diff := randBytes(20, 1024)
	for i := range diff {
		diff[i] |= 1 // every byte changes
	}
	extra := randBytes(21, 64<<10)

	// The expected new image, streamed from the old one.
	changed := make([]byte, len(diff))
	if _, err := oldFile.ReadAt(changed, change); err != nil {
		t.Fatal(err)
	}
	for i := range changed {
		changed[i] += diff[i]
	}
	newImage := io.MultiReader(
		io.NewSectionReader(oldFile, 0, change),
		bytes.NewReader(changed),
		io.NewSectionReader(oldFile, change+int64(len(diff)), insert-change-int64(len(diff))),
		bytes.NewReader(extra),
		io.NewSectionReader(oldFile, insert, del-insert),
		io.NewSectionReader(oldFile, del+4096, size-del-4096),
	)
	nh := sha256.New()
	newSize, err := io.Copy(nh, newImage)
	if err != nil {
		t.Fatal(err)
	}
	oh := sha256.New()
	if _, err := io.Copy(oh, io.NewSectionReader(oldFile, 0, size)); err != nil {
		t.Fatal(err)
	}
	h := Header{OldSize: size, NewSize: newSize}
	copy(h.OldSHA256[:], oh.Sum(nil))
	copy(h.NewSHA256[:], nh.Sum(nil))

	var patch bytes.Buffer
	e, err := newEncoder(&patch, h)
	if err != nil {
		t.Fatal(err)
	}
	e.control(insert, int64(len(extra)), 0)
	e.diffRun(change, diff)
	e.diffRun(insert-change-int64(len(diff)), nil)
	e.extra(extra)
	e.control(del-insert, 0, 4096)
	e.diffRun(del-insert, nil)
	e.control(size-del-4096, 0, 0)
	e.diffRun(size-del-4096, nil)
	if err := e.close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("delta of a %d MiB image: %d bytes", size>>20, patch.Len())

	out, err := os.Create(filepath.Join(dir, "slot-b"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	old := &countingReaderAt{r: oldFile}
	want := Expect{OldSize: size, OldSHA256: h.OldSHA256[:], NewSize: newSize, NewSHA256: h.NewSHA256[:]}

	samples := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}, {Name: "/memory/classes/heap/objects:bytes"}}
	runtime.GC()
	metrics.Read(samples)
	allocs0, live0 := samples[0].Value.Uint64(), samples[1].Value.Uint64()
	var (
		peak uint64
		stop = make(chan struct{})
		wg   sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			metrics.Read(s)
			peak = max(peak, s[0].Value.Uint64())
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	err = Apply(context.Background(), old, bytes.NewReader(patch.Bytes()), out, want, Limits{Memory: bound})
	metrics.Read(samples)
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	allocated := samples[0].Value.Uint64() - allocs0
	grew := uint64(0)
	if peak > live0 {
		grew = peak - live0
	}
	t.Logf("Apply allocated %d KiB in total, live heap grew by at most %d KiB, %d ReadAt calls", allocated>>10, grew>>10, old.calls)
	if allocated > bound {
		t.Errorf("Apply allocated %d bytes, over the %d-byte bound", allocated, bound)
	}
	if grew > bound {
		t.Errorf("live heap grew by %d bytes during Apply, over the %d-byte bound", grew, bound)
	}
	if old.calls < size/maxChunk {
		t.Errorf("%d ReadAt calls on the old image, want at least %d (reads by chunk)", old.calls, size/maxChunk)
	}

	// The new slot holds exactly the new image.
	if _, err := out.Seek(0, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	got := sha256.New()
	n, err := io.Copy(got, out)
	if err != nil {
		t.Fatal(err)
	}
	if n != newSize || !bytes.Equal(got.Sum(nil), h.NewSHA256[:]) {
		t.Fatalf("new slot has %d bytes sha256 %x, want %d bytes %x", n, got.Sum(nil), newSize, h.NewSHA256)
	}
}

func writeRandomFile(t *testing.T, path string, size int) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	if _, err := io.CopyN(w, rand.NewChaCha8([32]byte{42}), int64(size)); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}
