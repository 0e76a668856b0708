// Package delta makes and applies binary deltas between firmware images.
//
// A delta turns an old image (the one a device runs) into a new one (the
// release it should install). The format is bsdiff's (Colin Percival's
// BSDIFF40 algorithm: control records of "add", "copy" and "seek", a
// bytewise difference against the old image, and extra bytes), with two
// changes that let a device apply it from a single stream in constant
// memory using only the standard library:
//
//   - the control, difference and extra data are interleaved record by
//     record in one DEFLATE stream (compress/flate), instead of three
//     bzip2 streams that must be read side by side;
//   - runs of zero bytes in the difference (the bytes that did not change,
//     most of any small-change delta) are coded as a length, so DEFLATE's
//     32 KiB window is not what limits the size of a small-change delta.
//
// Layout of a delta:
//
//	magic     "TUFDLT1\n"            8 bytes
//	old size  uint64, big endian
//	new size  uint64, big endian
//	old hash  SHA-256 of the old image, 32 bytes
//	new hash  SHA-256 of the new image, 32 bytes
//	body      DEFLATE stream of records until new size bytes are produced:
//	          uvarint add, uvarint copy, varint seek,
//	          add bytes as (uvarint zeros, uvarint n, n difference bytes)…,
//	          copy extra bytes
//
// Apply reads the old image by random access (io.ReaderAt), writes the new
// image strictly in order to an io.Writer and holds only fixed-size buffers,
// sized from a memory bound that the device sets. It checks the result
// against the length and SHA-256 the caller expects (a signed TUF target),
// so a delta can never make a device accept bytes the signed metadata does
// not name. Apply imports only the standard library and tufota's error
// vocabulary, so the device client can use it.
//
// Make needs both images in memory and a suffix array of the old image built
// with the standard library's SA-IS (index/suffixarray): about 9 bytes per
// byte of the old image plus the new image.
package delta

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"io"

	"github.com/tufota/tufota"
)

// Magic opens every delta.
const Magic = "TUFDLT1\n"

// HeaderSize is the length of a delta's uncompressed header.
const HeaderSize = len(Magic) + 8 + 8 + sha256.Size + sha256.Size

// Sentinel errors. Every error Apply returns wraps one of them (or the
// context's error, or the output writer's), so callers can tell a bad delta
// from a delta for another image and from a limit.
var (
	// ErrCorrupt: the delta is malformed, truncated or does not produce
	// the image it claims (a tampered or damaged delta). Code EInvalid.
	ErrCorrupt = errors.New("delta: corrupt")
	// ErrBaseMismatch: the delta was made from another old image than the
	// one given. Code EConflict.
	ErrBaseMismatch = errors.New("delta: made for another base image")
	// ErrResultMismatch: the delta produces another image than the one the
	// caller expects. Code EConflict.
	ErrResultMismatch = errors.New("delta: result is not the expected image")
	// ErrMemoryBound: the memory bound is too small to apply any delta.
	// Code ETooLarge.
	ErrMemoryBound = errors.New("delta: memory bound too small")
)

// Header is a delta's uncompressed header.
type Header struct {
	OldSize   int64
	NewSize   int64
	OldSHA256 [sha256.Size]byte
	NewSHA256 [sha256.Size]byte
}

// maxImage bounds image sizes a header may name (1 TiB), so sizes fit int64
// arithmetic with room to spare.
const maxImage = 1 << 40

func (h Header) marshal() []byte {
	b := make([]byte, 0, HeaderSize)
	b = append(b, Magic...)
	b = binary.BigEndian.AppendUint64(b, uint64(h.OldSize))
	b = binary.BigEndian.AppendUint64(b, uint64(h.NewSize))
	b = append(b, h.OldSHA256[:]...)
	b = append(b, h.NewSHA256[:]...)
	return b
}

// ReadHeader reads and checks a delta's header from r. It fails with an
// error wrapping ErrCorrupt if the header is short or malformed.
func ReadHeader(r io.Reader) (Header, error) {
	var b [HeaderSize]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return Header{}, corrupt("header truncated")
		}
		return Header{}, tufota.Errorf(tufota.EUnavailable, "delta: read header: %w", err)
	}
	if string(b[:len(Magic)]) != Magic {
		return Header{}, corrupt("not a tufota delta (bad magic)")
	}
	p := b[len(Magic):]
	oldSize, newSize := binary.BigEndian.Uint64(p), binary.BigEndian.Uint64(p[8:])
	if oldSize > maxImage || newSize > maxImage {
		return Header{}, corrupt("image size in header out of range")
	}
	h := Header{OldSize: int64(oldSize), NewSize: int64(newSize)}
	copy(h.OldSHA256[:], p[16:])
	copy(h.NewSHA256[:], p[16+sha256.Size:])
	return h, nil
}

func corrupt(format string, args ...any) error {
	return tufota.Errorf(tufota.EInvalid, "%w: "+format, append([]any{ErrCorrupt}, args...)...)
}
