// Package storagetest holds the conformance suites of tufota's storage
// contracts: RunBlobs for every storage.Blobs implementation (the file store
// always, S3 against a real MinIO in the integration suite) and RunDB for
// storage.DB on every SQL dialect (SQLite always, PostgreSQL in the
// integration suite). A backend is correct when it passes its suite.
package storagetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/storage"
)

// RunBlobs runs the blob store conformance suite. newStore must return an
// empty store for the (sub)test it is given and arrange its cleanup; it is
// called once per subtest, possibly from parallel subtests.
func RunBlobs(t *testing.T, newStore func(t *testing.T) storage.Blobs) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, s storage.Blobs)
	}{
		{"RoundTrip", testRoundTrip},
		{"Empty", testEmpty},
		{"Overwrite", testOverwrite},
		{"Atomicity", testAtomicity},
		{"NotFound", testNotFound},
		{"Delete", testDelete},
		{"List", testList},
		{"InvalidKeys", testInvalidKeys},
		{"SeekRange", testSeekRange},
		{"CancelMidPut", testCancelMidPut},
		{"ReaderErrorMidPut", testReaderErrorMidPut},
		{"ConcurrentPuts", testConcurrentPuts},
		{"Move", testMove},
		{"LargeStreamed", testLargeStreamed},
		{"SweepIncomplete", testSweepIncomplete},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, newStore(t))
		})
	}
}

// put stores data under key or fails the test.
func put(t *testing.T, s storage.Blobs, key string, data []byte) {
	t.Helper()
	n, err := s.Put(context.Background(), key, bytes.NewReader(data))
	if err != nil {
		t.Fatalf("Put(%q): %v", key, err)
	}
	if n != int64(len(data)) {
		t.Fatalf("Put(%q) = %d bytes, want %d", key, n, len(data))
	}
}

// get reads the whole blob under key or fails the test.
func get(t *testing.T, s storage.Blobs, key string) []byte {
	t.Helper()
	o, err := s.Open(context.Background(), key)
	if err != nil {
		t.Fatalf("Open(%q): %v", key, err)
	}
	defer o.Close()
	b, err := io.ReadAll(o)
	if err != nil {
		t.Fatalf("read %q: %v", key, err)
	}
	if o.Info().Size != int64(len(b)) {
		t.Fatalf("Open(%q).Info().Size = %d, read %d bytes", key, o.Info().Size, len(b))
	}
	return b
}

func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: err = %v, want %v", what, err, want)
	}
}

func testRoundTrip(t *testing.T, s storage.Blobs) {
	ctx := context.Background()
	data := []byte(`{"signed":{"_type":"root"}}`)
	put(t, s, "metadata/1.root.json", data)
	if got := get(t, s, "metadata/1.root.json"); !bytes.Equal(got, data) {
		t.Fatalf("read back %q, want %q", got, data)
	}
	info, err := s.Stat(ctx, "metadata/1.root.json")
	if err != nil {
		t.Fatalf("Stat: %v", err)
	}
	if info.Key != "metadata/1.root.json" || info.Size != int64(len(data)) || info.ModTime.IsZero() {
		t.Fatalf("Stat = %+v, want key, size %d and a mod time", info, len(data))
	}
	// A key at the top level and one deeply nested.
	put(t, s, "top", []byte("t"))
	put(t, s, "targets/a/b/c/d/0123.fw.bin", []byte("deep"))
	if got := get(t, s, "top"); string(got) != "t" {
		t.Fatalf("top = %q", got)
	}
	if got := get(t, s, "targets/a/b/c/d/0123.fw.bin"); string(got) != "deep" {
		t.Fatalf("deep = %q", got)
	}
}

func testEmpty(t *testing.T, s storage.Blobs) {
	put(t, s, "empty", nil)
	if got := get(t, s, "empty"); len(got) != 0 {
		t.Fatalf("empty blob read back %d bytes", len(got))
	}
	info, err := s.Stat(context.Background(), "empty")
	if err != nil || info.Size != 0 {
		t.Fatalf("Stat(empty) = %+v, %v", info, err)
	}
}

func testOverwrite(t *testing.T, s storage.Blobs) {
	put(t, s, "metadata/timestamp.json", []byte("a much longer first version"))
	put(t, s, "metadata/timestamp.json", []byte("short"))
	if got := get(t, s, "metadata/timestamp.json"); string(got) != "short" {
		t.Fatalf("after overwrite read %q, want %q", got, "short")
	}
	infos, err := s.List(context.Background(), "metadata/")
	if err != nil || len(infos) != 1 || infos[0].Size != 5 {
		t.Fatalf("List after overwrite = %+v, %v; want one 5-byte blob", infos, err)
	}
}

// gatedReader yields first, then signals reached and blocks until release
// is closed, then yields rest.
type gatedReader struct {
	first, rest []byte
	reached     chan struct{}
	release     chan struct{}
	once        sync.Once
}

func (g *gatedReader) Read(p []byte) (int, error) {
	if len(g.first) > 0 {
		n := copy(p, g.first)
		g.first = g.first[n:]
		return n, nil
	}
	g.once.Do(func() {
		close(g.reached)
		<-g.release
	})
	if len(g.rest) == 0 {
		return 0, io.EOF
	}
	n := copy(p, g.rest)
	g.rest = g.rest[n:]
	return n, nil
}

func testAtomicity(t *testing.T, s storage.Blobs) {
	ctx := context.Background()
	const size = 1 << 20
	oldData := bytes.Repeat([]byte("A"), size)
	newData := bytes.Repeat([]byte("B"), size)
	put(t, s, "targets/fw/image.bin", oldData)

	g := &gatedReader{first: newData[:size/2], rest: newData[size/2:],
		reached: make(chan struct{}), release: make(chan struct{})}
	putErr := make(chan error, 1)
	go func() {
		_, err := s.Put(ctx, "targets/fw/image.bin", g)
		putErr <- err
	}()

	// Readers run the whole time the writer writes; every read must be
	// the old blob or the new one, whole.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	bad := make(chan string, 4)
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				o, err := s.Open(ctx, "targets/fw/image.bin")
				if err != nil {
					bad <- fmt.Sprintf("Open during Put: %v", err)
					return
				}
				b, err := io.ReadAll(o)
				_ = o.Close()
				if err != nil {
					bad <- fmt.Sprintf("read during Put: %v", err)
					return
				}
				if !bytes.Equal(b, oldData) && !bytes.Equal(b, newData) {
					bad <- fmt.Sprintf("a reader saw a partial blob: %d bytes", len(b))
					return
				}
			}
		})
	}

	<-g.reached // the writer is half-way and stalled
	if got := get(t, s, "targets/fw/image.bin"); !bytes.Equal(got, oldData) {
		t.Errorf("mid-Put read %d bytes that are not the old blob", len(got))
	}
	if info, err := s.Stat(ctx, "targets/fw/image.bin"); err != nil || info.Size != size {
		t.Errorf("mid-Put Stat = %+v, %v; want the old blob", info, err)
	}
	if infos, err := s.List(ctx, "targets/"); err != nil || len(infos) != 1 {
		t.Errorf("mid-Put List = %+v, %v; want exactly the old blob", infos, err)
	}
	close(g.release)
	if err := <-putErr; err != nil {
		t.Fatalf("slow Put: %v", err)
	}
	close(stop)
	wg.Wait()
	close(bad)
	for msg := range bad {
		t.Error(msg)
	}
	if got := get(t, s, "targets/fw/image.bin"); !bytes.Equal(got, newData) {
		t.Fatalf("after Put read %d bytes that are not the new blob", len(got))
	}
}

func testNotFound(t *testing.T, s storage.Blobs) {
	ctx := context.Background()
	_, err := s.Open(ctx, "metadata/404.json")
	wantErr(t, "Open(missing)", err, tufota.ErrNotFound)
	_, err = s.Stat(ctx, "metadata/404.json")
	wantErr(t, "Stat(missing)", err, tufota.ErrNotFound)
	put(t, s, "dir/blob", []byte("x"))
	// A "directory" is not a blob.
	_, err = s.Open(ctx, "dir")
	wantErr(t, "Open(prefix of a blob)", err, tufota.ErrNotFound)
	_, err = s.Stat(ctx, "dir")
	wantErr(t, "Stat(prefix of a blob)", err, tufota.ErrNotFound)
	// Under a blob, as if it were a directory.
	_, err = s.Open(ctx, "dir/blob/child")
	wantErr(t, "Open(below a blob)", err, tufota.ErrNotFound)
	if m, ok := s.(storage.Mover); ok {
		wantErr(t, "Move(missing)", m.Move(ctx, "nothing/here", "elsewhere"), tufota.ErrNotFound)
	}
}

func testDelete(t *testing.T, s storage.Blobs) {
	ctx := context.Background()
	if err := s.Delete(ctx, "never/existed"); err != nil {
		t.Fatalf("Delete(missing) = %v, want nil", err)
	}
	put(t, s, "a/b", []byte("x"))
	put(t, s, "a/c", []byte("y"))
	if err := s.Delete(ctx, "a/b"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	_, err := s.Stat(ctx, "a/b")
	wantErr(t, "Stat after Delete", err, tufota.ErrNotFound)
	if err := s.Delete(ctx, "a/b"); err != nil {
		t.Fatalf("second Delete = %v, want nil", err)
	}
	if got := get(t, s, "a/c"); string(got) != "y" {
		t.Fatalf("sibling after Delete = %q", got)
	}
	infos, err := s.List(ctx, "")
	if err != nil || len(infos) != 1 || infos[0].Key != "a/c" {
		t.Fatalf("List after Delete = %+v, %v; want [a/c]", infos, err)
	}
}

func testList(t *testing.T, s storage.Blobs) {
	ctx := context.Background()
	keys := []string{
		"metadata/10.targets.json", "metadata/2.targets.json", "metadata/1.root.json",
		"metadata/timestamp.json", "targets/fw/aa.fw.bin", "targets/fw-2/bb.fw.bin",
		"targets/fw/sub/cc.bin", "a-b", "a/b", "a.b", "z",
	}
	for i, k := range keys {
		put(t, s, k, bytes.Repeat([]byte("x"), i))
	}
	tests := []struct {
		prefix string
		want   []string
	}{
		{"", []string{"a-b", "a.b", "a/b", "metadata/1.root.json", "metadata/10.targets.json",
			"metadata/2.targets.json", "metadata/timestamp.json", "targets/fw-2/bb.fw.bin",
			"targets/fw/aa.fw.bin", "targets/fw/sub/cc.bin", "z"}},
		{"metadata/", []string{"metadata/1.root.json", "metadata/10.targets.json",
			"metadata/2.targets.json", "metadata/timestamp.json"}},
		{"metadata/1", []string{"metadata/1.root.json", "metadata/10.targets.json"}},
		{"targets/fw", []string{"targets/fw-2/bb.fw.bin", "targets/fw/aa.fw.bin", "targets/fw/sub/cc.bin"}},
		{"targets/fw/", []string{"targets/fw/aa.fw.bin", "targets/fw/sub/cc.bin"}},
		{"a", []string{"a-b", "a.b", "a/b"}},
		{"a/", []string{"a/b"}},
		{"z", []string{"z"}},
		{"z/", nil},
		{"nothing/", nil},
		{"nothing/deeper/", nil},
		{"metadata/timestamp.json", []string{"metadata/timestamp.json"}},
	}
	sizes := map[string]int64{}
	for i, k := range keys {
		sizes[k] = int64(i)
	}
	for _, tc := range tests {
		infos, err := s.List(ctx, tc.prefix)
		if err != nil {
			t.Errorf("List(%q): %v", tc.prefix, err)
			continue
		}
		var got []string
		for _, in := range infos {
			got = append(got, in.Key)
			if in.Size != sizes[in.Key] {
				t.Errorf("List(%q): %s has size %d, want %d", tc.prefix, in.Key, in.Size, sizes[in.Key])
			}
		}
		if strings.Join(got, ",") != strings.Join(tc.want, ",") {
			t.Errorf("List(%q) = %q, want %q", tc.prefix, got, tc.want)
		}
	}
}

// InvalidKeys are path tricks every store must refuse with ErrInvalid.
var InvalidKeys = []string{
	"", "../x", "x/../../y", "..", ".", "/abs", "/", "a//b", "a/./b", "./a", "a/.",
	"a\\b", "..\\x", "a\x00b", "trailing/", "a/b/", strings.Repeat("k", 1025),
}

func testInvalidKeys(t *testing.T, s storage.Blobs) {
	ctx := context.Background()
	put(t, s, "x", []byte("sentinel"))
	for _, key := range InvalidKeys {
		_, err := s.Put(ctx, key, strings.NewReader("evil"))
		wantErr(t, fmt.Sprintf("Put(%q)", key), err, tufota.ErrInvalid)
		_, err = s.Open(ctx, key)
		wantErr(t, fmt.Sprintf("Open(%q)", key), err, tufota.ErrInvalid)
		_, err = s.Stat(ctx, key)
		wantErr(t, fmt.Sprintf("Stat(%q)", key), err, tufota.ErrInvalid)
		wantErr(t, fmt.Sprintf("Delete(%q)", key), s.Delete(ctx, key), tufota.ErrInvalid)
		if m, ok := s.(storage.Mover); ok {
			wantErr(t, fmt.Sprintf("Move(x, %q)", key), m.Move(ctx, "x", key), tufota.ErrInvalid)
			wantErr(t, fmt.Sprintf("Move(%q, y)", key), m.Move(ctx, key, "y"), tufota.ErrInvalid)
		}
	}
	infos, err := s.List(ctx, "")
	if err != nil || len(infos) != 1 || infos[0].Key != "x" {
		t.Fatalf("List after refused Puts = %+v, %v; want only the sentinel", infos, err)
	}
	if got := get(t, s, "x"); string(got) != "sentinel" {
		t.Fatalf("sentinel = %q", got)
	}
}

func testSeekRange(t *testing.T, s storage.Blobs) {
	data := []byte("0123456789abcdefghijklmnopqrstuvwxyz")
	put(t, s, "targets/range.bin", data)
	o, err := s.Open(context.Background(), "targets/range.bin")
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer o.Close()
	// What http.ServeContent does: find the size, rewind, then seek to a range.
	end, err := o.Seek(0, io.SeekEnd)
	if err != nil || end != int64(len(data)) {
		t.Fatalf("Seek(0, End) = %d, %v; want %d", end, err, len(data))
	}
	if pos, err := o.Seek(0, io.SeekStart); err != nil || pos != 0 {
		t.Fatalf("Seek(0, Start) = %d, %v", pos, err)
	}
	steps := []struct {
		off    int64
		whence int
		pos    int64
		n      int
		want   string
	}{
		{10, io.SeekStart, 10, 5, "abcde"},
		{2, io.SeekCurrent, 17, 3, "hij"},
		{-4, io.SeekEnd, 32, 4, "wxyz"},
		{0, io.SeekStart, 0, 4, "0123"},
		{35, io.SeekStart, 35, 1, "z"},
	}
	for _, st := range steps {
		pos, err := o.Seek(st.off, st.whence)
		if err != nil || pos != st.pos {
			t.Fatalf("Seek(%d, %d) = %d, %v; want %d", st.off, st.whence, pos, err, st.pos)
		}
		buf := make([]byte, st.n)
		if _, err := io.ReadFull(o, buf); err != nil || string(buf) != st.want {
			t.Fatalf("read after Seek(%d, %d) = %q, %v; want %q", st.off, st.whence, buf, err, st.want)
		}
	}
	if _, err := o.Seek(0, io.SeekEnd); err != nil {
		t.Fatal(err)
	}
	if n, err := o.Read(make([]byte, 4)); n != 0 || err != io.EOF {
		t.Fatalf("Read at end = %d, %v; want 0, EOF", n, err)
	}
	if _, err := o.Seek(-1, io.SeekStart); err == nil {
		t.Fatalf("Seek(-1, Start) succeeded")
	}
}

// cancelReader yields chunk after chunk forever; after limit bytes it
// cancels its context.
type cancelReader struct {
	n, limit int64
	cancel   context.CancelFunc
}

func (c *cancelReader) Read(p []byte) (int, error) {
	if c.n >= c.limit {
		c.cancel()
	}
	for i := range p {
		p[i] = byte(c.n + int64(i)) // #nosec G115 -- truncation makes the test pattern
	}
	c.n += int64(len(p))
	return len(p), nil
}

func testCancelMidPut(t *testing.T, s storage.Blobs) {
	put(t, s, "targets/keep.bin", []byte("old"))
	for _, key := range []string{"targets/new.bin", "targets/keep.bin"} {
		ctx, cancel := context.WithCancel(context.Background())
		_, err := s.Put(ctx, key, &cancelReader{limit: 8 << 20, cancel: cancel})
		cancel()
		wantErr(t, fmt.Sprintf("Put(%q) cancelled mid-stream", key), err, context.Canceled)
	}
	ctx := context.Background()
	_, err := s.Stat(ctx, "targets/new.bin")
	wantErr(t, "Stat after cancelled Put", err, tufota.ErrNotFound)
	if got := get(t, s, "targets/keep.bin"); string(got) != "old" {
		t.Fatalf("blob overwritten by a cancelled Put = %d bytes, want the old one", len(got))
	}
	infos, err := s.List(ctx, "")
	if err != nil || len(infos) != 1 {
		t.Fatalf("List after cancelled Puts = %+v, %v; want only targets/keep.bin", infos, err)
	}
	// A context already cancelled stores nothing either.
	dead, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = s.Put(dead, "targets/dead.bin", strings.NewReader("x"))
	wantErr(t, "Put with a cancelled context", err, context.Canceled)
	_, err = s.Stat(ctx, "targets/dead.bin")
	wantErr(t, "Stat after Put with a cancelled context", err, tufota.ErrNotFound)
}

// errReader yields n bytes, then fails.
type errReader struct {
	n   int
	err error
}

func (e *errReader) Read(p []byte) (int, error) {
	if e.n == 0 {
		return 0, e.err
	}
	k := min(len(p), e.n)
	e.n -= k
	return k, nil
}

func testReaderErrorMidPut(t *testing.T, s storage.Blobs) {
	ctx := context.Background()
	boom := errors.New("upload connection reset")
	_, err := s.Put(ctx, "targets/broken.bin", &errReader{n: 3 << 20, err: boom})
	wantErr(t, "Put from a failing reader", err, boom)
	_, err = s.Stat(ctx, "targets/broken.bin")
	wantErr(t, "Stat after failed Put", err, tufota.ErrNotFound)
	if infos, err := s.List(ctx, ""); err != nil || len(infos) != 0 {
		t.Fatalf("List after failed Put = %+v, %v; want nothing", infos, err)
	}
}

func testConcurrentPuts(t *testing.T, s storage.Blobs) {
	ctx := context.Background()
	const n = 16
	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	for i := range n {
		wg.Go(func() {
			key := fmt.Sprintf("metadata/%d.targets.json", i)
			_, err := s.Put(ctx, key, strings.NewReader(key))
			errs <- err
		})
		// Writers racing on one key: the survivor is one of them, whole.
		wg.Go(func() {
			_, err := s.Put(ctx, "metadata/timestamp.json", bytes.NewReader(bytes.Repeat([]byte{byte('a' + i)}, 4096))) // #nosec G115 -- i < 26
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("concurrent Put: %v", err)
		}
	}
	for i := range n {
		key := fmt.Sprintf("metadata/%d.targets.json", i)
		if got := get(t, s, key); string(got) != key {
			t.Fatalf("%s = %q", key, got)
		}
	}
	ts := get(t, s, "metadata/timestamp.json")
	if len(ts) != 4096 || !bytes.Equal(ts, bytes.Repeat(ts[:1], 4096)) {
		t.Fatalf("racing writers left a mixed blob")
	}
}

func testMove(t *testing.T, s storage.Blobs) {
	m, ok := s.(storage.Mover)
	if !ok {
		t.Log("store does not implement storage.Mover; nothing to check")
		return
	}
	ctx := context.Background()
	put(t, s, "staging/upload-1", []byte("firmware"))
	put(t, s, "targets/fw/dest.bin", []byte("old destination"))
	if err := m.Move(ctx, "staging/upload-1", "targets/fw/dest.bin"); err != nil {
		t.Fatalf("Move over an existing blob: %v", err)
	}
	if got := get(t, s, "targets/fw/dest.bin"); string(got) != "firmware" {
		t.Fatalf("moved blob = %q", got)
	}
	_, err := s.Stat(ctx, "staging/upload-1")
	wantErr(t, "Stat(source after Move)", err, tufota.ErrNotFound)
	if err := m.Move(ctx, "targets/fw/dest.bin", "new/dir/name.bin"); err != nil {
		t.Fatalf("Move to a new directory: %v", err)
	}
	if got := get(t, s, "new/dir/name.bin"); string(got) != "firmware" {
		t.Fatalf("moved blob = %q", got)
	}
	if infos, err := s.List(ctx, ""); err != nil || len(infos) != 1 {
		t.Fatalf("List after Moves = %+v, %v; want one blob", infos, err)
	}
}

// LargeSize is the size of the streamed blob of the LargeStreamed test.
const LargeSize = 64 << 20

// patternReader streams size pseudo-random bytes from a fixed seed, so a
// large blob is generated on the fly and never held in memory.
type patternReader struct {
	rng  *rand.ChaCha8
	left int64
}

func newPatternReader(size int64) *patternReader {
	return &patternReader{rng: rand.NewChaCha8([32]byte{'t', 'u', 'f', 'o', 't', 'a'}), left: size}
}

func (p *patternReader) Read(b []byte) (int, error) {
	if p.left == 0 {
		return 0, io.EOF
	}
	if int64(len(b)) > p.left {
		b = b[:p.left]
	}
	n, _ := p.rng.Read(b)
	p.left -= int64(n)
	return n, nil
}

func testLargeStreamed(t *testing.T, s storage.Blobs) {
	ctx := context.Background()
	h := sha256.New()
	n, err := s.Put(ctx, "staging/large.bin", io.TeeReader(newPatternReader(LargeSize), h))
	if err != nil {
		t.Fatalf("Put of a %d-byte stream: %v", LargeSize, err)
	}
	if n != LargeSize {
		t.Fatalf("Put wrote %d bytes, want %d", n, LargeSize)
	}
	want := h.Sum(nil)
	key := "staging/large.bin"
	if m, ok := s.(storage.Mover); ok {
		key = "targets/fw/large.bin"
		if err := m.Move(ctx, "staging/large.bin", key); err != nil {
			t.Fatalf("Move of the large blob: %v", err)
		}
	}
	o, err := s.Open(ctx, key)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer o.Close()
	if o.Info().Size != LargeSize {
		t.Fatalf("Info().Size = %d, want %d", o.Info().Size, LargeSize)
	}
	h2 := sha256.New()
	if _, err := io.Copy(h2, o); err != nil {
		t.Fatalf("read back: %v", err)
	}
	if !bytes.Equal(h2.Sum(nil), want) {
		t.Fatalf("large blob read back with a different sha256")
	}
	// The tail, through Seek, as a Range request would read it.
	if _, err := o.Seek(LargeSize-16, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	tail, err := io.ReadAll(o)
	if err != nil || len(tail) != 16 {
		t.Fatalf("tail = %d bytes, %v", len(tail), err)
	}
	ref := newPatternReader(LargeSize)
	if _, err := io.CopyN(io.Discard, ref, LargeSize-16); err != nil {
		t.Fatal(err)
	}
	wantTail, _ := io.ReadAll(ref)
	if !bytes.Equal(tail, wantTail) {
		t.Fatalf("tail read through Seek differs from what was written")
	}
}

// testSweepIncomplete checks a storage.Sweeper: a sweep never touches a Put
// in progress in this process (even with a bound in the future), nor a
// finished blob, and refuses a prefix that is not a folder. Stores without
// the upgrade skip it.
func testSweepIncomplete(t *testing.T, s storage.Blobs) {
	sw, ok := s.(storage.Sweeper)
	if !ok {
		t.Skip("store does not implement storage.Sweeper")
	}
	ctx := context.Background()
	for _, bad := range []string{"staging", "staging//", "../x/", "a/./b/"} {
		if _, err := sw.SweepIncomplete(ctx, bad, time.Now()); !errors.Is(err, tufota.ErrInvalid) {
			t.Errorf("SweepIncomplete(%q) = %v, want tufota.ErrInvalid", bad, err)
		}
	}
	if n, err := sw.SweepIncomplete(ctx, "nothing-here/", time.Now()); err != nil || n != 0 {
		t.Fatalf("SweepIncomplete of an empty folder = %d, %v; want 0, nil", n, err)
	}
	put(t, s, "staging/done", []byte("finished"))
	// Large enough to be a multipart upload on S3.
	const size = 12 << 20
	data := bytes.Repeat([]byte("0123456789abcdef"), size/16)
	g := &gatedReader{first: data[:size/2+1], rest: data[size/2+1:], reached: make(chan struct{}), release: make(chan struct{})}
	putErr := make(chan error, 1)
	go func() {
		_, err := s.Put(ctx, "staging/live", g)
		putErr <- err
	}()
	<-g.reached
	future := time.Now().Add(24 * time.Hour)
	for range 3 {
		if _, err := sw.SweepIncomplete(ctx, "staging/", future); err != nil {
			t.Fatalf("SweepIncomplete during a Put: %v", err)
		}
		if _, err := sw.SweepIncomplete(ctx, "", future); err != nil {
			t.Fatalf("SweepIncomplete of the whole store during a Put: %v", err)
		}
	}
	close(g.release)
	if err := <-putErr; err != nil {
		t.Fatalf("a Put swept over failed: %v", err)
	}
	if got := get(t, s, "staging/live"); !bytes.Equal(got, data) {
		t.Fatal("a Put swept over stored other bytes")
	}
	if got := get(t, s, "staging/done"); string(got) != "finished" {
		t.Fatalf("a finished blob after sweeps = %q", got)
	}
}
