package client

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"hash"
	"io"
	"os"
	"path/filepath"
	"testing"
	"testing/iotest"
)

// TestTeeCopy: every sink gets exactly the source's bytes in order,
// whatever the number of sinks and the source's read sizes; a sink error
// and a read error come back apart (disk or network), with the bytes that
// every sink had.
func TestTeeCopy(t *testing.T) {
	t.Parallel()
	data := make([]byte, 3*pipeChunkSize+12345)
	for i := range data {
		data[i] = byte(i * 7)
	}
	errDisk := errors.New("disk full")
	errNet := errors.New("connection reset")
	for _, tt := range []struct {
		name      string
		src       io.Reader
		sinks     int
		failSink  int // index of a sink that fails after failAfter bytes, -1 for none
		failAfter int
		wantN     int64
		wantSink  error
		wantRead  error
	}{
		{"one sink", bytes.NewReader(data), 1, -1, 0, int64(len(data)), nil, nil},
		{"two sinks", bytes.NewReader(data), 2, -1, 0, int64(len(data)), nil, nil},
		{"three sinks, one-byte reads", iotest.OneByteReader(bytes.NewReader(data[:70_000])), 3, -1, 0, 70_000, nil, nil},
		{"empty source", bytes.NewReader(nil), 3, -1, 0, 0, nil, nil},
		{"read error mid-stream", io.MultiReader(bytes.NewReader(data[:pipeChunkSize+5]), iotest.ErrReader(errNet)), 3, -1, 0, pipeChunkSize + 5, nil, errNet},
		{"read error, one sink", io.MultiReader(bytes.NewReader(data[:1000]), iotest.ErrReader(errNet)), 1, -1, 0, 1000, nil, errNet},
		{"sink error", bytes.NewReader(data), 3, 1, pipeChunkSize, -1, errDisk, nil},
		{"sink error, one sink", bytes.NewReader(data), 1, 0, 1000, -1, errDisk, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			bufs := make([]*bytes.Buffer, tt.sinks)
			sinks := make([]io.Writer, tt.sinks)
			for i := range sinks {
				bufs[i] = &bytes.Buffer{}
				sinks[i] = bufs[i]
				if i == tt.failSink {
					sinks[i] = &failingWriter{w: bufs[i], left: tt.failAfter, err: errDisk}
				}
			}
			n, sinkErr, readErr := teeCopy(tt.src, sinks)
			if !errors.Is(sinkErr, tt.wantSink) || (tt.wantSink == nil) != (sinkErr == nil) {
				t.Fatalf("sink error = %v, want %v", sinkErr, tt.wantSink)
			}
			if !errors.Is(readErr, tt.wantRead) || (tt.wantRead == nil) != (readErr == nil) {
				t.Fatalf("read error = %v, want %v", readErr, tt.wantRead)
			}
			if tt.wantN < 0 {
				return
			}
			if n != tt.wantN {
				t.Fatalf("n = %d, want %d", n, tt.wantN)
			}
			for i, b := range bufs {
				if !bytes.Equal(b.Bytes(), data[:n]) {
					t.Fatalf("sink %d got %d bytes that differ from the source's first %d", i, b.Len(), n)
				}
			}
		})
	}
}

type failingWriter struct {
	w    io.Writer
	left int
	err  error
}

func (f *failingWriter) Write(b []byte) (int, error) {
	if len(b) > f.left {
		n, _ := f.w.Write(b[:f.left])
		f.left = 0
		return n, f.err
	}
	f.left -= len(b)
	return f.w.Write(b)
}

// BenchmarkTeeCopy compares writing a stream to a file while hashing it,
// in series (io.MultiWriter, what the client did before) and through
// teeCopy, with one and with two signed algorithms.
func BenchmarkTeeCopy(b *testing.B) {
	const size = 64 << 20
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(i)
	}
	for _, algs := range [][]func() hash.Hash{{sha256.New}, {sha256.New, sha512.New}} {
		for _, mode := range []string{"serial", "pipeline"} {
			b.Run(mode+"/"+map[int]string{1: "sha256", 2: "sha256+sha512"}[len(algs)], func(b *testing.B) {
				dst := filepath.Join(b.TempDir(), "out")
				b.SetBytes(size)
				for b.Loop() {
					f, err := os.Create(dst)
					if err != nil {
						b.Fatal(err)
					}
					sinks := []io.Writer{f}
					for _, h := range algs {
						sinks = append(sinks, h())
					}
					if mode == "serial" {
						_, err = io.Copy(io.MultiWriter(sinks...), bytes.NewReader(data))
					} else {
						_, err, _ = teeCopy(bytes.NewReader(data), sinks)
					}
					if err != nil {
						b.Fatal(err)
					}
					f.Close()
				}
			})
		}
	}
}
