package delta

import (
	"bytes"
	"compress/flate"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"index/suffixarray"
	"io"
	"sync"

	"github.com/tufota/tufota"
)

// DefaultMaxImage bounds the images Make accepts when MakeOptions.MaxImage
// is zero: Make holds both images and a 4-byte-per-byte suffix array.
const DefaultMaxImage = 1 << 30

// MakeOptions tunes Make. The zero value is valid.
type MakeOptions struct {
	// MaxImage is the largest old or new image Make accepts, in bytes.
	MaxImage int64
	// Workers is how many goroutines search matches, each over its own
	// part of the new image (default 1). More workers make the delta
	// faster on more cores, a little larger (no match crosses a part
	// boundary), and hold up to one new image more of records.
	Workers int
}

// Make writes to w a delta that turns old (oldSize bytes) into new (newSize
// bytes). It reads both images whole into memory and builds a suffix array
// of the old image with index/suffixarray (SA-IS, linear time), then runs
// bsdiff's match search; memory is about 9 bytes per old byte plus the new
// image. It fails with ETooLarge if an image exceeds the MaxImage bound, and
// returns the context's error if ctx ends first.
func Make(ctx context.Context, old io.ReaderAt, oldSize int64, new io.ReaderAt, newSize int64, w io.Writer, opt MakeOptions) error {
	limit := opt.MaxImage
	if limit == 0 {
		limit = DefaultMaxImage
	}
	if oldSize < 0 || newSize < 0 || oldSize > limit || newSize > limit {
		return tufota.Errorf(tufota.ETooLarge, "delta: images of %d and %d bytes, limit %d", oldSize, newSize, limit)
	}
	ob, err := readAll(old, oldSize)
	if err != nil {
		return fmt.Errorf("delta: read old image: %w", err)
	}
	nb, err := readAll(new, newSize)
	if err != nil {
		return fmt.Errorf("delta: read new image: %w", err)
	}
	return makeBytes(ctx, ob, nb, w, opt.Workers)
}

// MakeBytes is Make for images already in memory, with one worker.
func MakeBytes(ctx context.Context, old, new []byte, w io.Writer) error {
	return makeBytes(ctx, old, new, w, 1)
}

func makeBytes(ctx context.Context, old, new []byte, w io.Writer, workers int) error {
	h := Header{OldSize: int64(len(old)), NewSize: int64(len(new)), OldSHA256: sha256.Sum256(old), NewSHA256: sha256.Sum256(new)}
	e, err := newEncoder(w, h)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	sa, err := suffixArray(old)
	if err != nil {
		return err
	}
	if err := bsdiffParallel(ctx, newIndex(sa, old), old, new, e, workers); err != nil {
		return err
	}
	return e.close()
}

// minPart is the smallest part of the new image worth a worker of its own.
const minPart = 1 << 20

// bsdiffParallel runs bsdiff over workers parts of new at once, each into
// a buffer of raw records whose old position starts at 0, then writes the
// parts in order to e, each after a record that seeks the old position
// back to 0.
func bsdiffParallel(ctx context.Context, ix *index, old, new []byte, e *encoder, workers int) error {
	workers = max(1, min(workers, len(new)/minPart))
	if workers == 1 {
		return bsdiff(ctx, ix, old, new, e)
	}
	parts := make([]struct {
		buf bytes.Buffer
		enc *encoder
		err error
	}, workers)
	var wg sync.WaitGroup
	for i := range parts {
		p := &parts[i]
		p.enc = &encoder{out: &p.buf}
		lo, hi := len(new)*i/workers, len(new)*(i+1)/workers
		wg.Go(func() { p.err = bsdiff(ctx, ix, old, new[lo:hi], p.enc) })
	}
	wg.Wait()
	for i := range parts {
		p := &parts[i]
		if p.err != nil {
			return p.err
		}
		if p.enc.err != nil {
			return fmt.Errorf("delta: write: %w", p.enc.err)
		}
		if e.oldPos != 0 {
			e.control(0, 0, -e.oldPos)
		}
		e.write(p.buf.Bytes())
		e.oldPos = p.enc.oldPos
		p.buf = bytes.Buffer{}
	}
	return nil
}

func readAll(r io.ReaderAt, n int64) ([]byte, error) {
	b := make([]byte, n)
	if _, err := io.ReadFull(io.NewSectionReader(r, 0, n), b); err != nil {
		return nil, err
	}
	return b, nil
}

// suffixArray returns the suffix array of data, built by the standard
// library's SA-IS (index/suffixarray.New) and read back from the index's
// serialised form, the only way the package exposes it: a 10-byte varint
// length, the data, then chunks of a 10-byte varint chunk size followed by
// uvarint entries.
func suffixArray(data []byte) ([]int32, error) {
	if len(data) > 1<<31-1 {
		return nil, tufota.Errorf(tufota.ETooLarge, "delta: old image of %d bytes is over 2 GiB", len(data))
	}
	sa := &saWriter{sa: make([]int32, 0, len(data)), dataLeft: -1}
	if err := suffixarray.New(data).Write(sa); err != nil {
		return nil, err
	}
	if sa.err != nil {
		return nil, sa.err
	}
	if len(sa.sa) != len(data) || len(sa.pending) != 0 {
		return nil, fmt.Errorf("delta: suffix array has %d of %d entries", len(sa.sa), len(data))
	}
	return sa.sa, nil
}

// saWriter parses suffixarray.Index.Write's output.
type saWriter struct {
	sa       []int32
	dataLeft int64 // -1 until the length is read
	pending  []byte
	err      error
}

func (s *saWriter) Write(p []byte) (int, error) {
	n := len(p)
	if s.err != nil {
		return 0, s.err
	}
	s.pending = append(s.pending, p...)
	for {
		switch {
		case s.dataLeft < 0:
			if len(s.pending) < binary.MaxVarintLen64 {
				return n, nil
			}
			v, _ := binary.Varint(s.pending[:binary.MaxVarintLen64])
			s.dataLeft = v
			s.pending = s.pending[binary.MaxVarintLen64:]
		case s.dataLeft > 0:
			k := min(s.dataLeft, int64(len(s.pending)))
			s.dataLeft -= k
			s.pending = s.pending[k:]
			if s.dataLeft > 0 {
				s.pending = s.pending[:0]
				return n, nil
			}
		default:
			if len(s.pending) < binary.MaxVarintLen64 {
				s.compact()
				return n, nil
			}
			size, _ := binary.Varint(s.pending[:binary.MaxVarintLen64])
			if size < binary.MaxVarintLen64 {
				s.err = fmt.Errorf("delta: suffix array chunk of %d bytes", size)
				return 0, s.err
			}
			if int64(len(s.pending)) < size {
				s.compact()
				return n, nil
			}
			c := s.pending[binary.MaxVarintLen64:size]
			for len(c) > 0 {
				v, k := binary.Uvarint(c)
				if k <= 0 {
					s.err = fmt.Errorf("delta: bad suffix array entry")
					return 0, s.err
				}
				s.sa = append(s.sa, int32(v))
				c = c[k:]
			}
			s.pending = s.pending[size:]
		}
	}
}

func (s *saWriter) compact() {
	s.pending = append([]byte(nil), s.pending...)
}

// encoder writes a delta: the header, then records into a DEFLATE stream.
type encoder struct {
	fw     *flate.Writer // nil for a segment encoder
	out    io.Writer     // fw, or a segment's buffer
	oldPos int64         // the applier's old position after the records so far
	vbuf   [binary.MaxVarintLen64]byte
	err    error
}

func newEncoder(w io.Writer, h Header) (*encoder, error) {
	if _, err := w.Write(h.marshal()); err != nil {
		return nil, fmt.Errorf("delta: write header: %w", err)
	}
	fw, err := flate.NewWriter(w, flate.DefaultCompression)
	if err != nil {
		return nil, err
	}
	return &encoder{fw: fw, out: fw}, nil
}

func (e *encoder) write(b []byte) {
	if e.err == nil {
		_, e.err = e.out.Write(b)
	}
}

func (e *encoder) uvarint(v uint64) { e.write(e.vbuf[:binary.PutUvarint(e.vbuf[:], v)]) }
func (e *encoder) varint(v int64)   { e.write(e.vbuf[:binary.PutVarint(e.vbuf[:], v)]) }

// control starts a record: add bytes of difference follow (through
// addZeros and addDiff), then copy extra bytes (through extra), then the
// old position moves by seek.
func (e *encoder) control(add, cp, seek int64) {
	e.oldPos += add + seek
	e.uvarint(uint64(add))
	e.uvarint(uint64(cp))
	e.varint(seek)
}

// diffRun codes one run of the difference: zeros unchanged bytes, then
// the difference bytes d.
func (e *encoder) diffRun(zeros int64, d []byte) {
	e.uvarint(uint64(zeros))
	e.uvarint(uint64(len(d)))
	e.write(d)
}

// minZeroRun is the shortest run of zero difference bytes coded as a
// length; shorter runs stay in the difference bytes.
const minZeroRun = 8

// diff codes the difference d (new minus old bytes) as zero runs and
// difference runs.
func (e *encoder) diff(d []byte) {
	for len(d) > 0 {
		z := 0
		for z < len(d) && d[z] == 0 {
			z++
		}
		// The difference run ends where minZeroRun zeros (or the end) begin.
		end := z
		for end < len(d) {
			if d[end] != 0 {
				end++
				continue
			}
			r := end
			for r < len(d) && d[r] == 0 {
				r++
			}
			if r-end >= minZeroRun || r == len(d) {
				break
			}
			end = r
		}
		e.diffRun(int64(z), d[z:end])
		d = d[end:]
	}
}

func (e *encoder) extra(b []byte) { e.write(b) }

func (e *encoder) close() error {
	if e.err != nil {
		return fmt.Errorf("delta: write: %w", e.err)
	}
	if err := e.fw.Close(); err != nil {
		return fmt.Errorf("delta: write: %w", err)
	}
	return nil
}

// bsdiff is Colin Percival's bsdiff 4 match search over the suffix array
// of old, writing records to e.
func bsdiff(ctx context.Context, ix *index, old, new []byte, e *encoder) error {
	oldSize, newSize := len(old), len(new)
	var scan, pos, length, lastScan, lastPos, lastOffset int
	dbuf := make([]byte, 0, 64<<10)
	for scan < newSize {
		if err := ctx.Err(); err != nil {
			return err
		}
		oldScore := 0
		scan += length
		scsc := scan
		for ; scan < newSize; scan++ {
			if scan&(1<<20-1) == 0 && ctx.Err() != nil {
				return ctx.Err()
			}
			pos, length = ix.search(old, new[scan:])
			for ; scsc < scan+length; scsc++ {
				if scsc+lastOffset < oldSize && old[scsc+lastOffset] == new[scsc] {
					oldScore++
				}
			}
			if (length == oldScore && length != 0) || length > oldScore+8 {
				break
			}
			if scan+lastOffset < oldSize && old[scan+lastOffset] == new[scan] {
				oldScore--
			}
		}
		if length == oldScore && scan != newSize {
			continue
		}
		// Extend the previous match forwards and this one backwards.
		s, sf, lenf := 0, 0, 0
		for i := 0; lastScan+i < scan && lastPos+i < oldSize; {
			if old[lastPos+i] == new[lastScan+i] {
				s++
			}
			i++
			if s*2-i > sf*2-lenf {
				sf, lenf = s, i
			}
		}
		lenb := 0
		if scan < newSize {
			s, sb := 0, 0
			for i := 1; scan >= lastScan+i && pos >= i; i++ {
				if old[pos-i] == new[scan-i] {
					s++
				}
				if s*2-i > sb*2-lenb {
					sb, lenb = s, i
				}
			}
		}
		if lastScan+lenf > scan-lenb {
			overlap := (lastScan + lenf) - (scan - lenb)
			s, ss, lens := 0, 0, 0
			for i := 0; i < overlap; i++ {
				if new[lastScan+lenf-overlap+i] == old[lastPos+lenf-overlap+i] {
					s++
				}
				if new[scan-lenb+i] == old[pos-lenb+i] {
					s--
				}
				if s > ss {
					ss, lens = s, i+1
				}
			}
			lenf += lens - overlap
			lenb -= lens
		}
		extraLen := (scan - lenb) - (lastScan + lenf)
		seek := (pos - lenb) - (lastPos + lenf)
		if lenf == 0 && extraLen == 0 && seek == 0 {
			// A record without effect; the applier refuses those.
			lastScan, lastPos, lastOffset = scan-lenb, pos-lenb, pos-scan
			continue
		}
		e.control(int64(lenf), int64(extraLen), int64(seek))
		for done := 0; done < lenf; {
			k := min(lenf-done, cap(dbuf))
			dbuf = dbuf[:k]
			for i := range k {
				dbuf[i] = new[lastScan+done+i] - old[lastPos+done+i]
			}
			e.diff(dbuf)
			done += k
		}
		e.extra(new[lastScan+lenf : scan-lenb])
		if e.err != nil {
			return fmt.Errorf("delta: write: %w", e.err)
		}
		lastScan, lastPos, lastOffset = scan-lenb, pos-lenb, pos-scan
	}
	return nil
}

// index is the old image's suffix array with the start of each two-byte
// prefix's range in it, so that a search starts in the range of its
// target's first two bytes instead of the whole array.
type index struct {
	sa     []int32
	bucket []int32 // bucket[k] is the first entry whose prefix key is >= k; len 65537
}

// prefixKey is the two-byte key of the suffix at p: a one-byte suffix
// sorts first among those starting with its byte.
func prefixKey(old []byte, p int) int {
	if p+1 < len(old) {
		return int(old[p])<<8 | int(old[p+1])
	}
	return int(old[p]) << 8
}

func newIndex(sa []int32, old []byte) *index {
	ix := &index{sa: sa, bucket: make([]int32, 1<<16+1)}
	k := 0
	for i, p := range sa {
		for key := prefixKey(old, int(p)); k <= key; k++ {
			ix.bucket[k] = int32(i)
		}
	}
	for ; k <= 1<<16; k++ {
		ix.bucket[k] = int32(len(sa))
	}
	return ix
}

// search returns the position in old and the length of the longest prefix
// of target that occurs in old, by binary search over the suffix array.
func (ix *index) search(old, target []byte) (pos, n int) {
	sa := ix.sa
	if len(sa) == 0 {
		return 0, 0
	}
	st, en := 0, len(sa)-1
	if len(target) >= 2 {
		k := int(target[0])<<8 | int(target[1])
		if lo, hi := int(ix.bucket[k]), int(ix.bucket[k+1]); hi > lo {
			st, en = lo, hi-1
		}
	}
	for en-st >= 2 {
		x := st + (en-st)/2
		p := int(sa[x])
		if bytes.Compare(old[p:min(len(old), p+len(target))], target) < 0 {
			st = x
		} else {
			en = x
		}
	}
	x, y := matchLen(old[sa[st]:], target), matchLen(old[sa[en]:], target)
	if x > y {
		return int(sa[st]), x
	}
	return int(sa[en]), y
}

func matchLen(a, b []byte) int {
	n := min(len(a), len(b))
	for i := range n {
		if a[i] != b[i] {
			return i
		}
	}
	return n
}
