package client

import (
	"errors"
	"io"
	"sync"
	"sync/atomic"
)

// The pipeline's buffers: teeCopy holds at most pipeChunks of pipeChunkSize
// bytes, whatever the length of the stream.
const (
	pipeChunkSize = 256 << 10
	pipeChunks    = 4
)

type chunk struct {
	b    []byte
	n    int
	refs atomic.Int32
}

// teeCopy copies src to every sink, like io.Copy to an io.MultiWriter, but
// with each sink in its own goroutine: while one chunk is written to disk
// it is hashed by each signed algorithm, and the next chunk is read. Every
// sink sees the same bytes in the same order. It returns the number of
// bytes read from src and given to every sink, the first sink error, and
// the read error (nil at EOF). After a sink fails, teeCopy stops reading
// and returns once every sink has finished the chunks it had.
func teeCopy(src io.Reader, sinks []io.Writer) (n int64, sinkErr, readErr error) {
	if len(sinks) == 1 {
		w := &errWriter{w: sinks[0]}
		n, err := io.Copy(w, src)
		if w.err != nil {
			return n, w.err, nil
		}
		return n, nil, err
	}
	free := make(chan *chunk, pipeChunks)
	for range pipeChunks {
		free <- &chunk{b: make([]byte, pipeChunkSize)}
	}
	var failed atomic.Bool
	errs := make([]error, len(sinks))
	queues := make([]chan *chunk, len(sinks))
	var wg sync.WaitGroup
	for i, s := range sinks {
		q := make(chan *chunk, pipeChunks)
		queues[i] = q
		wg.Go(func() {
			for c := range q {
				if errs[i] == nil {
					if _, err := s.Write(c.b[:c.n]); err != nil {
						errs[i] = err
						failed.Store(true)
					}
				}
				if c.refs.Add(-1) == 0 {
					free <- c
				}
			}
		})
	}
	for !failed.Load() {
		c := <-free
		m, err := fill(src, c.b)
		if m > 0 {
			n += int64(m)
			c.n = m
			c.refs.Store(int32(len(sinks)))
			for _, q := range queues {
				q <- c
			}
		} else {
			free <- c
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			readErr = err
			break
		}
	}
	for _, q := range queues {
		close(q)
	}
	wg.Wait()
	return n, errors.Join(errs...), readErr
}

// fill reads from src until b is full, src ends (io.EOF, also returned
// with a partly filled b) or fails.
func fill(src io.Reader, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := src.Read(b[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// errWriter remembers the error of its writer, so a failed copy can tell a
// disk error from a network one.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(b []byte) (int, error) {
	n, err := e.w.Write(b)
	if err != nil {
		e.err = err
	}
	return n, err
}
