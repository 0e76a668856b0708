package delta

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/tufota/tufota"
)

func randBytes(seed uint64, n int) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)})
	r.Read(b)
	return b
}

// firmwareLike returns n bytes with the structure of a program image:
// repeated code-like words, some zero padding and some random data.
func firmwareLike(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	words := make([][]byte, 64)
	for i := range words {
		words[i] = randBytes(seed+uint64(i)+100, 4+r.IntN(12))
	}
	b := make([]byte, 0, n)
	for len(b) < n {
		switch r.IntN(10) {
		case 0:
			b = append(b, make([]byte, r.IntN(200))...)
		case 1:
			b = append(b, randBytes(r.Uint64(), r.IntN(64))...)
		default:
			b = append(b, words[r.IntN(len(words))]...)
		}
	}
	return b[:n]
}

func makeDelta(t testing.TB, old, new []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := MakeBytes(context.Background(), old, new, &buf); err != nil {
		t.Fatalf("MakeBytes: %v", err)
	}
	return buf.Bytes()
}

func expect(old, new []byte) Expect {
	os, ns := sha256.Sum256(old), sha256.Sum256(new)
	return Expect{OldSize: int64(len(old)), OldSHA256: os[:], NewSize: int64(len(new)), NewSHA256: ns[:]}
}

func apply(old, patch []byte, want Expect, lim Limits) ([]byte, error) {
	var out bytes.Buffer
	err := Apply(context.Background(), bytes.NewReader(old), bytes.NewReader(patch), &out, want, lim)
	return out.Bytes(), err
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	base := firmwareLike(1, 1<<20)
	small := slices.Clone(base)
	copy(small[500_000:], "a one-line change")
	inserted := slices.Concat(base[:300_000], []byte("inserted block of new code"), base[300_000:700_000], base[700_100:])
	tests := []struct {
		name     string
		old, new []byte
		maxDelta int // the delta must not be larger
	}{
		{"empty to empty", nil, nil, HeaderSize + 16},
		{"empty to data", nil, []byte("hello, firmware"), HeaderSize + 64},
		{"data to empty", base, nil, HeaderSize + 16},
		{"identical", base, base, HeaderSize + 64},
		{"small change", base, small, HeaderSize + 200},
		{"insert and delete", base, inserted, HeaderSize + 400},
		{"unrelated random", randBytes(2, 100_000), randBytes(3, 120_000), HeaderSize + 121_000},
		{"one byte", []byte{1}, []byte{2}, HeaderSize + 32},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			patch := makeDelta(t, tt.old, tt.new)
			if len(patch) > tt.maxDelta {
				t.Errorf("delta is %d bytes, want at most %d", len(patch), tt.maxDelta)
			}
			got, err := apply(tt.old, patch, expect(tt.old, tt.new), Limits{Memory: MinMemory})
			if err != nil {
				t.Fatalf("Apply: %v", err)
			}
			if !bytes.Equal(got, tt.new) {
				t.Fatalf("Apply produced %d bytes, not the new image (%d bytes)", len(got), len(tt.new))
			}
		})
	}
}

func TestApplyRefuses(t *testing.T) {
	t.Parallel()
	old := firmwareLike(4, 200_000)
	new := slices.Clone(old)
	copy(new[1000:], "changed")
	new = append(new, randBytes(5, 3000)...)
	patch := makeDelta(t, old, new)
	other := firmwareLike(6, 200_000)
	good := expect(old, new)
	flip := func(i int) []byte { p := slices.Clone(patch); p[i] ^= 0x40; return p }

	tests := []struct {
		name  string
		old   []byte
		patch []byte
		want  Expect
		lim   Limits
		is    error
		code  tufota.Code
	}{
		{"empty patch", old, nil, good, Limits{}, ErrCorrupt, tufota.EInvalid},
		{"bad magic", old, flip(0), good, Limits{}, ErrCorrupt, tufota.EInvalid},
		{"truncated header", old, patch[:HeaderSize-1], good, Limits{}, ErrCorrupt, tufota.EInvalid},
		{"truncated body", old, patch[:HeaderSize+(len(patch)-HeaderSize)/2], good, Limits{}, ErrCorrupt, tufota.EInvalid},
		{"body cut by one byte", old, patch[:len(patch)-1], good, Limits{}, ErrCorrupt, tufota.EInvalid},
		{"no body", old, patch[:HeaderSize], good, Limits{}, ErrCorrupt, tufota.EInvalid},
		{"trailing data", old, append(slices.Clone(patch), 0), good, Limits{}, ErrCorrupt, tufota.EInvalid},
		{"header names another base", old, flip(HeaderSize - 2*sha256.Size), good, Limits{}, ErrBaseMismatch, tufota.EConflict},
		{"header names another result", old, flip(HeaderSize - 1), good, Limits{}, ErrResultMismatch, tufota.EConflict},
		{"old size differs", old[:len(old)-1], patch, Expect{OldSize: int64(len(old) - 1), NewSize: good.NewSize, NewSHA256: good.NewSHA256}, Limits{}, ErrBaseMismatch, tufota.EConflict},
		{"expected base differs", old, patch, expect(other, new), Limits{}, ErrBaseMismatch, tufota.EConflict},
		{"expected result differs", old, patch, expect(old, old), Limits{}, ErrResultMismatch, tufota.EConflict},
		// The header matches the base, but the bytes are another image's:
		// only the result hash can catch it.
		{"applied to other bytes of the same size", other, patch, Expect{OldSize: good.OldSize, NewSize: good.NewSize, NewSHA256: good.NewSHA256}, Limits{}, ErrResultMismatch, tufota.EConflict},
		{"memory bound too small", old, patch, good, Limits{Memory: MinMemory - 1}, ErrMemoryBound, tufota.ETooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := apply(tt.old, tt.patch, tt.want, tt.lim)
			if !errors.Is(err, tt.is) {
				t.Fatalf("Apply = %v, want %v", err, tt.is)
			}
			if got := tufota.ErrorCode(err); got != tt.code {
				t.Fatalf("code = %s, want %s (%v)", got, tt.code, err)
			}
		})
	}
}

// TestApplyRefusesEveryCorruption flips a bit of each byte of a small delta
// in turn: Apply must fail or (a flip in DEFLATE padding or an unused code
// length changes nothing) produce exactly the new image, never another one.
// Flips in the header always fail.
func TestApplyRefusesEveryCorruption(t *testing.T) {
	t.Parallel()
	old := firmwareLike(7, 20_000)
	new := slices.Clone(old)
	copy(new[5000:], "patched")
	patch := makeDelta(t, old, new)
	refused := 0
	for i := range patch {
		p := slices.Clone(patch)
		p[i] ^= 0x01
		got, err := apply(old, p, expect(old, new), Limits{})
		switch {
		case err != nil:
			refused++
		case i < HeaderSize:
			t.Fatalf("flipping header byte %d: Apply succeeded", i)
		case !bytes.Equal(got, new):
			t.Fatalf("flipping byte %d: Apply succeeded with another image", i)
		}
	}
	if refused < len(patch)*9/10 {
		t.Fatalf("only %d of %d flips refused", refused, len(patch))
	}
}

type failingReader struct{ r io.Reader }

var errLink = errors.New("link down")

func (f *failingReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if err == io.EOF {
		return n, errLink
	}
	return n, err
}

func TestApplyReportsTransportErrors(t *testing.T) {
	t.Parallel()
	old := firmwareLike(8, 50_000)
	new := slices.Concat(old, []byte("more"))
	patch := makeDelta(t, old, new)
	r := &failingReader{r: bytes.NewReader(patch[:len(patch)/2])}
	err := Apply(context.Background(), bytes.NewReader(old), r, io.Discard, expect(old, new), Limits{})
	if !errors.Is(err, errLink) || tufota.ErrorCode(err) != tufota.EUnavailable {
		t.Fatalf("Apply = %v (code %s), want the transport error with code unavailable", err, tufota.ErrorCode(err))
	}
}

func TestApplyCanceled(t *testing.T) {
	t.Parallel()
	old := firmwareLike(9, 50_000)
	patch := makeDelta(t, old, old)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := Apply(ctx, bytes.NewReader(old), bytes.NewReader(patch), io.Discard, expect(old, old), Limits{})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Apply = %v, want context.Canceled", err)
	}
}

// TestSuffixArray checks the suffix array read back from index/suffixarray
// against a sort of all suffixes.
func TestSuffixArray(t *testing.T) {
	t.Parallel()
	for _, data := range [][]byte{nil, []byte("a"), []byte("banana"), bytes.Repeat([]byte("ab"), 5000), firmwareLike(10, 40_000)} {
		got, err := suffixArray(data)
		if err != nil {
			t.Fatal(err)
		}
		want := make([]int32, len(data))
		for i := range want {
			want[i] = int32(i)
		}
		slices.SortFunc(want, func(a, b int32) int { return bytes.Compare(data[a:], data[b:]) })
		if !slices.Equal(got, want) {
			t.Fatalf("suffix array of %d bytes differs from the sorted suffixes", len(data))
		}
	}
}

func FuzzApply(f *testing.F) {
	old := firmwareLike(11, 4096)
	new := slices.Clone(old)
	copy(new[100:], "fuzz")
	new = append(new, "tail"...)
	want := expect(old, new)
	f.Add(makeDelta(f, old, new))
	f.Add(makeDelta(f, old, old))
	f.Add([]byte(Magic))
	f.Fuzz(func(t *testing.T, patch []byte) {
		// Any header is accepted as far as the body, to fuzz the records.
		if h, err := ReadHeader(bytes.NewReader(patch)); err == nil {
			w := Expect{OldSize: h.OldSize, NewSize: h.NewSize, NewSHA256: h.NewSHA256[:]}
			if h.OldSize == int64(len(old)) {
				w.OldSHA256 = h.OldSHA256[:]
			}
			var out bytes.Buffer
			err := Apply(context.Background(), bytes.NewReader(old), bytes.NewReader(patch), &out, w, Limits{Memory: MinMemory})
			if err == nil {
				if sum := sha256.Sum256(out.Bytes()); int64(out.Len()) != h.NewSize || sum != h.NewSHA256 {
					t.Fatalf("Apply succeeded with %d bytes that do not match the header", out.Len())
				}
			}
		}
		got, err := apply(old, patch, want, Limits{Memory: MinMemory})
		if err == nil && !bytes.Equal(got, new) {
			t.Fatalf("Apply succeeded with another image")
		}
	})
}

func TestMakeLimits(t *testing.T) {
	t.Parallel()
	old := firmwareLike(12, 10_000)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := MakeBytes(ctx, old, old, io.Discard); !errors.Is(err, context.Canceled) {
		t.Fatalf("MakeBytes with a canceled context = %v, want context.Canceled", err)
	}
	err := Make(context.Background(), bytes.NewReader(old), int64(len(old)), bytes.NewReader(old), int64(len(old)), io.Discard, MakeOptions{MaxImage: 9_999})
	if tufota.ErrorCode(err) != tufota.ETooLarge {
		t.Fatalf("Make over MaxImage = %v, want code too_large", err)
	}
	var buf bytes.Buffer
	if err := Make(context.Background(), bytes.NewReader(old), int64(len(old)), bytes.NewReader(old[:5000]), 5000, &buf, MakeOptions{}); err != nil {
		t.Fatalf("Make: %v", err)
	}
	if got, err := apply(old, buf.Bytes(), expect(old, old[:5000]), Limits{}); err != nil || !bytes.Equal(got, old[:5000]) {
		t.Fatalf("Apply of Make's delta: %v", err)
	}
}

// TestMakeWorkers: a delta made by several workers, each over its own part
// of the new image, applies to the same image and stays small.
func TestMakeWorkers(t *testing.T) {
	t.Parallel()
	old := firmwareLike(13, 3<<20+12345)
	new := slices.Clone(old)
	for _, at := range []int{1000, 1 << 20, 2<<20 + 7, 3 << 20} {
		copy(new[at:], "changed here")
	}
	new = slices.Concat(new[:1500000], randBytes(14, 5000), new[1500000:])
	for _, workers := range []int{1, 2, 3} {
		var buf bytes.Buffer
		err := Make(context.Background(), bytes.NewReader(old), int64(len(old)), bytes.NewReader(new), int64(len(new)), &buf, MakeOptions{Workers: workers})
		if err != nil {
			t.Fatalf("Make with %d workers: %v", workers, err)
		}
		got, err := apply(old, buf.Bytes(), expect(old, new), Limits{})
		if err != nil || !bytes.Equal(got, new) {
			t.Fatalf("Apply of a %d-worker delta: %v", workers, err)
		}
		if buf.Len() > HeaderSize+6000 {
			t.Errorf("%d workers: delta of %d bytes, want at most %d", workers, buf.Len(), HeaderSize+6000)
		}
	}
}
