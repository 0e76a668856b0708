// Package seen coalesces "last seen" times (a token's last use, a device's
// last poll) in memory, so that a read on the hot path writes nothing: the
// newest time per key waits here and a flusher writes each key at most once
// per interval, in batches, and once more on shutdown.
package seen

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/tufota/tufota/storage"
)

// Times holds the newest pending time per key. The zero value is not
// usable; use New. It is safe for concurrent use.
type Times struct {
	mu      sync.Mutex
	pending map[string]int64
	flush   func(ctx context.Context, batch map[string]int64) error
	log     *slog.Logger
	// flushMu serialises flushes, so that a caller of Flush knows that
	// every time touched before the call is stored when it returns.
	flushMu sync.Mutex
}

// New returns a Times whose Flush hands pending times (UnixNano per key) to
// flush. flush should store, per key, the newer of the stored and the given
// time (several replicas flush the same keys). A batch that fails to flush
// is kept and retried with the next one.
func New(flush func(ctx context.Context, batch map[string]int64) error, log *slog.Logger) *Times {
	if log == nil {
		log = slog.Default()
	}
	return &Times{pending: map[string]int64{}, flush: flush, log: log}
}

// Touch records that key was seen at t. It does no I/O.
func (s *Times) Touch(key string, t time.Time) {
	n := t.UnixNano()
	s.mu.Lock()
	if n > s.pending[key] {
		s.pending[key] = n
	}
	s.mu.Unlock()
}

// Pending returns how many keys wait to be flushed.
func (s *Times) Pending() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.pending)
}

// Flush stores every pending time. On failure the batch is put back (newer
// times touched meanwhile win) and the error returned.
func (s *Times) Flush(ctx context.Context) error {
	s.flushMu.Lock()
	defer s.flushMu.Unlock()
	s.mu.Lock()
	batch := s.pending
	if len(batch) == 0 {
		s.mu.Unlock()
		return nil
	}
	s.pending = make(map[string]int64, len(batch))
	s.mu.Unlock()
	if err := s.flush(ctx, batch); err != nil {
		s.mu.Lock()
		for k, n := range batch {
			if n > s.pending[k] {
				s.pending[k] = n
			}
		}
		s.mu.Unlock()
		return err
	}
	return nil
}

// Run flushes every interval until ctx ends, then flushes once more with a
// fresh context of at most 10 s, so that a graceful shutdown loses nothing.
// Failures are logged.
func (s *Times) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			defer cancel()
			if err := s.Flush(fctx); err != nil {
				s.log.Error("flush last-seen times at shutdown", "err", err)
			}
			return
		case <-t.C:
			if err := s.Flush(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("flush last-seen times", "err", err)
			}
		}
	}
}

// Store runs update (arguments: the time, the key, the time again, so that
// it can keep the newer of the stored and the given time) for every entry
// of batch, in transactions of at most 500 rows so that a large batch does
// not hold SQLite's write lock for long. It is a flush function for New.
func Store(ctx context.Context, db *storage.DB, batch map[string]int64, update string) error {
	keys := make([]string, 0, len(batch))
	for k := range batch {
		keys = append(keys, k)
	}
	slices.Sort(keys) // one lock order for every replica's flush
	for len(keys) > 0 {
		n := min(len(keys), 500)
		chunk := keys[:n]
		keys = keys[n:]
		err := db.Tx(ctx, func(tx *storage.Tx) error {
			for _, k := range chunk {
				if _, err := tx.Exec(ctx, update, batch[k], k, batch[k]); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}
