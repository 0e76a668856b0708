package delta

import (
	"bufio"
	"bytes"
	"compress/flate"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"

	"github.com/tufota/tufota"
)

// Memory bounds for Apply.
const (
	// MinMemory is the smallest memory bound Apply accepts.
	MinMemory = 256 << 10
	// DefaultMemory is the bound Apply uses when Limits.Memory is zero.
	DefaultMemory = 1 << 20
	// fixedOverhead covers the DEFLATE decompressor (its 32 KiB window and
	// Huffman tables), the read buffers and the hash state.
	fixedOverhead = 128 << 10
	// maxChunk caps each of Apply's two data buffers.
	maxChunk = 1 << 20
	// patchBuffer and bodyBuffer are the read buffers around the delta and
	// around its decompressed body.
	patchBuffer = 16 << 10
	bodyBuffer  = 16 << 10
)

// Limits bounds what Apply may use. The zero value is valid.
type Limits struct {
	// Memory is the most heap, in bytes, that Apply allocates: its two data
	// buffers, the decompressor and the read buffers. Zero means
	// DefaultMemory; a bound below MinMemory fails with ErrMemoryBound. The
	// bound does not depend on the image size: Apply never holds an image.
	Memory int64
}

// chunk returns the size of each data buffer for the bound.
func (l Limits) chunk() (int, error) {
	m := l.Memory
	if m == 0 {
		m = DefaultMemory
	}
	if m < MinMemory {
		return 0, tufota.Errorf(tufota.ETooLarge, "%w: %d bytes, need at least %d", ErrMemoryBound, m, MinMemory)
	}
	return int(min((m-fixedOverhead)/2, maxChunk)), nil
}

// Expect names the images a delta must connect, from signed metadata.
type Expect struct {
	// OldSize is the length of the old image, which Apply reads by ReadAt.
	OldSize int64
	// OldSHA256, if set, is the old image's SHA-256; a delta whose header
	// names another base fails with ErrBaseMismatch. Apply does not hash
	// the old image itself: the caller knows what it runs.
	OldSHA256 []byte
	// NewSize and NewSHA256 are the length and SHA-256 of the image the
	// delta must produce (the signed full target). Both are required.
	NewSize   int64
	NewSHA256 []byte
}

// Apply reads a delta from patch and writes the new image to out, in order,
// reading the old image from old by random access. It returns only after
// the whole delta has been read and the output checked: out has received
// exactly want.NewSize bytes whose SHA-256 is want.NewSHA256, or Apply
// returns an error and what out received must be discarded.
//
// Errors wrap ErrCorrupt (malformed or truncated delta, code EInvalid),
// ErrBaseMismatch (the delta is for another old image, or old is shorter
// than it claims, code EConflict), ErrResultMismatch (the delta produces
// another image, code EConflict), ErrMemoryBound (code ETooLarge), the
// context's error, or the error of patch (code EUnavailable) or out.
// Apply holds at most lim.Memory bytes of buffers, whatever the image size.
func Apply(ctx context.Context, old io.ReaderAt, patch io.Reader, out io.Writer, want Expect, lim Limits) error {
	chunk, err := lim.chunk()
	if err != nil {
		return err
	}
	if want.NewSize < 0 || len(want.NewSHA256) != sha256.Size || want.OldSize < 0 {
		return tufota.Errorf(tufota.EInvalid, "delta: apply needs the expected image's size and SHA-256")
	}
	src := &errReader{r: patch}
	br := bufio.NewReaderSize(src, patchBuffer)
	h, err := ReadHeader(br)
	if err != nil {
		return src.wrap(err)
	}
	if h.OldSize != want.OldSize || (want.OldSHA256 != nil && !bytes.Equal(h.OldSHA256[:], want.OldSHA256)) {
		return tufota.Errorf(tufota.EConflict, "%w: delta base is %d bytes sha256 %x, image is %d bytes", ErrBaseMismatch, h.OldSize, h.OldSHA256, want.OldSize)
	}
	if h.NewSize != want.NewSize || !bytes.Equal(h.NewSHA256[:], want.NewSHA256) {
		return tufota.Errorf(tufota.EConflict, "%w: delta makes %d bytes sha256 %x, want %d bytes sha256 %x", ErrResultMismatch, h.NewSize, h.NewSHA256, want.NewSize, want.NewSHA256)
	}
	fr := flate.NewReader(br)
	defer fr.Close()
	a := &applier{
		ctx:  ctx,
		old:  old,
		body: bufio.NewReaderSize(fr, bodyBuffer),
		out:  out,
		sum:  sha256.New(),
		h:    h,
		dbuf: make([]byte, chunk),
		obuf: make([]byte, chunk),
	}
	if err := a.run(); err != nil {
		return src.wrap(err)
	}
	// The body must end exactly here, and so must the delta.
	if _, err := a.body.ReadByte(); err != io.EOF {
		return src.wrap(bodyErr(err, "data after the last record"))
	}
	if _, err := br.ReadByte(); err != io.EOF {
		return src.wrap(bodyErr(err, "data after the compressed body"))
	}
	if got := a.sum.Sum(nil); !bytes.Equal(got, want.NewSHA256) {
		return tufota.Errorf(tufota.EConflict, "%w: produced sha256 %x, want %x", ErrResultMismatch, got, want.NewSHA256)
	}
	return nil
}

type applier struct {
	ctx     context.Context
	old     io.ReaderAt
	body    *bufio.Reader
	out     io.Writer
	sum     hash.Hash
	h       Header
	written int64
	oldPos  int64
	dbuf    []byte
	obuf    []byte
}

func (a *applier) run() error {
	for a.written < a.h.NewSize {
		if err := a.ctx.Err(); err != nil {
			return err
		}
		add, err := a.uvarint("add length")
		if err != nil {
			return err
		}
		cp, err := a.uvarint("copy length")
		if err != nil {
			return err
		}
		seek, err := binary.ReadVarint(a.body)
		if err != nil {
			return bodyErr(err, "seek")
		}
		left := uint64(a.h.NewSize - a.written)
		if add > left || cp > left-add {
			return corrupt("record of %d+%d bytes overruns the image (%d left)", add, cp, left)
		}
		if add == 0 && cp == 0 && seek == 0 {
			return corrupt("empty record")
		}
		if err := a.addPhase(int64(add)); err != nil {
			return err
		}
		if err := a.copyPhase(int64(cp)); err != nil {
			return err
		}
		if seek < -a.oldPos || seek > a.h.OldSize-a.oldPos {
			return corrupt("seek %d from %d leaves the old image (%d bytes)", seek, a.oldPos, a.h.OldSize)
		}
		a.oldPos += seek
	}
	return nil
}

// addPhase produces n bytes as old bytes plus the coded difference.
func (a *applier) addPhase(n int64) error {
	if n > a.h.OldSize-a.oldPos {
		return corrupt("add of %d bytes at %d reads past the old image (%d bytes)", n, a.oldPos, a.h.OldSize)
	}
	for n > 0 {
		zeros, err := a.uvarint("zero run")
		if err != nil {
			return err
		}
		lits, err := a.uvarint("difference run")
		if err != nil {
			return err
		}
		if zeros > uint64(n) || lits > uint64(n)-zeros || zeros+lits == 0 {
			return corrupt("difference runs %d+%d do not fit the add of %d bytes", zeros, lits, n)
		}
		for z := int64(zeros); z > 0; {
			k := int(min(z, int64(len(a.obuf))))
			if err := a.readOld(a.obuf[:k]); err != nil {
				return err
			}
			if err := a.emit(a.obuf[:k]); err != nil {
				return err
			}
			z -= int64(k)
		}
		for l := int64(lits); l > 0; {
			k := int(min(l, int64(len(a.dbuf))))
			if _, err := io.ReadFull(a.body, a.dbuf[:k]); err != nil {
				return bodyErr(err, "difference bytes")
			}
			if err := a.readOld(a.obuf[:k]); err != nil {
				return err
			}
			d, o := a.dbuf[:k], a.obuf[:k]
			for i := range d {
				d[i] += o[i]
			}
			if err := a.emit(d); err != nil {
				return err
			}
			l -= int64(k)
		}
		n -= int64(zeros + lits)
	}
	return nil
}

// copyPhase copies n extra bytes from the delta.
func (a *applier) copyPhase(n int64) error {
	for n > 0 {
		k := int(min(n, int64(len(a.dbuf))))
		if _, err := io.ReadFull(a.body, a.dbuf[:k]); err != nil {
			return bodyErr(err, "extra bytes")
		}
		if err := a.emit(a.dbuf[:k]); err != nil {
			return err
		}
		n -= int64(k)
	}
	return nil
}

// readOld fills b from the old image at the current position and advances.
func (a *applier) readOld(b []byte) error {
	if err := a.ctx.Err(); err != nil {
		return err
	}
	n, err := a.old.ReadAt(b, a.oldPos)
	if n < len(b) {
		if err == nil || err == io.EOF {
			return tufota.Errorf(tufota.EConflict, "%w: old image ends at %d, delta reads %d bytes there", ErrBaseMismatch, a.oldPos+int64(n), len(b))
		}
		return fmt.Errorf("delta: read old image at %d: %w", a.oldPos, err)
	}
	a.oldPos += int64(n)
	return nil
}

func (a *applier) emit(b []byte) error {
	a.sum.Write(b)
	if _, err := a.out.Write(b); err != nil {
		return fmt.Errorf("delta: write new image at %d: %w", a.written, err)
	}
	a.written += int64(len(b))
	return nil
}

func (a *applier) uvarint(what string) (uint64, error) {
	v, err := binary.ReadUvarint(a.body)
	if err != nil {
		return 0, bodyErr(err, what)
	}
	return v, nil
}

// bodyErr classifies an error reading the delta's body.
func bodyErr(err error, what string) error {
	var ce flate.CorruptInputError
	switch {
	case err == nil:
		return corrupt("%s", what)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return corrupt("truncated in %s", what)
	case errors.As(err, &ce):
		return corrupt("compressed body: %v", err)
	case err.Error() == "binary: varint overflows a 64-bit integer":
		return corrupt("%s: %v", what, err)
	}
	return err
}

// errReader remembers the first error of the underlying delta reader that
// is not EOF, so that a failing transport is not reported as a corrupt
// delta.
type errReader struct {
	r   io.Reader
	err error
}

func (e *errReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF && e.err == nil {
		e.err = err
	}
	return n, err
}

func (e *errReader) wrap(err error) error {
	if e.err != nil && !errors.Is(err, e.err) {
		return tufota.Errorf(tufota.EUnavailable, "delta: read delta: %w", e.err)
	}
	if e.err != nil {
		return tufota.Errorf(tufota.EUnavailable, "delta: read delta: %w", err)
	}
	return err
}
