package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/tufota/tufota"
)

// Readiness write probes: /readyz writes a few bytes to the blob store
// (and deletes them) and updates one row of the database, so that a full
// disk, a read-only mount or a read-only database makes the replica unready
// instead of failing every upload while it still reports ready.

// probeKeyPrefix is where blob probes are written; nothing else uses it.
const probeKeyPrefix = "health/readyz-"

// probeID names this server's probe blob and row, so that replicas sharing
// the stores do not touch each other's.
var probeID = func() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}()

// probeBlobWrite writes and deletes a small blob.
func (s *Server) probeBlobWrite(ctx context.Context) error {
	key := probeKeyPrefix + probeID
	if _, err := s.cfg.Blobs.Put(ctx, key, strings.NewReader("tufota readiness probe\n")); err != nil {
		return fmt.Errorf("write probe: %w", err)
	}
	if err := s.cfg.Blobs.Delete(context.WithoutCancel(ctx), key); err != nil && !errors.Is(err, tufota.ErrNotFound) {
		return fmt.Errorf("delete probe: %w", err)
	}
	return nil
}

// probeDBWrite upserts this server's row in the settings table. Waiting
// for the write lock past the probe's deadline (a backup dump holds it on
// SQLite) is not a failure: Ping has shown the database answers.
func (s *Server) probeDBWrite(ctx context.Context) error {
	_, err := s.cfg.DB.Exec(ctx, `INSERT INTO settings (key, value, updated_at) VALUES (?, ?, ?)
		ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at`,
		"readyz.probe."+probeID, "ok", s.now().UnixNano())
	if err != nil && errors.Is(err, context.DeadlineExceeded) {
		s.log.Info("readiness: database write probe waited past its deadline (a long transaction holds the lock?)", "err", err)
		return nil
	}
	return err
}

// writeFailure is the readiness check's word for a failed write probe.
func writeFailure(err error) string {
	if errors.Is(noSpace(err), tufota.ErrNoSpace) {
		return "full"
	}
	return "unavailable"
}
