package storage

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/tufota/tufota"
)

// Generation names: the change counters of the hot-path caches.
const (
	GenTokens   = "tokens"   // a token was revoked (creation needs no notice)
	GenDevices  = "devices"  // a device row or one of its rollout statuses changed
	GenRollouts = "rollouts" // a rollout was created or changed state, wave or plan
)

// Bump increments the change counter name inside q (use the transaction of
// the change it announces) and returns the new value. On PostgreSQL the
// counter's row stays locked until q commits, so bumps of one counter
// commit in counter order: a replica that has seen generation g has seen
// every change numbered g or lower. Because of that lock, bump last in a
// transaction (Tx.BeforeCommit), after every other row it locks, and bump
// several counters in the order of the Gen constants below; otherwise two
// transactions can deadlock.
func (d *DB) Bump(ctx context.Context, q Querier, name string) (int64, error) {
	if err := knownGeneration(name); err != nil {
		return 0, err
	}
	var g int64
	if err := q.QueryRow(ctx, `INSERT INTO generations (name, gen) VALUES (?, 1)
		ON CONFLICT (name) DO UPDATE SET gen = generations.gen + 1 RETURNING gen`, name).Scan(&g); err != nil {
		return 0, fmt.Errorf("bump generation %s: %w", name, err)
	}
	return g, nil
}

// Generation returns the current value of the change counter name (0
// before its first bump).
func (d *DB) Generation(ctx context.Context, name string) (int64, error) {
	if err := knownGeneration(name); err != nil {
		return 0, err
	}
	var g int64
	if err := d.QueryRow(ctx, `SELECT COALESCE(MAX(gen), 0) FROM generations WHERE name = ?`, name).Scan(&g); err != nil {
		return 0, fmt.Errorf("read generation %s: %w", name, err)
	}
	return g, nil
}

func knownGeneration(name string) error {
	switch name {
	case GenTokens, GenDevices, GenRollouts:
		return nil
	}
	return tufota.Errorf(tufota.EInvalid, "unknown change counter %q", name)
}

// Watch calls changed(from, to) whenever the counter name has moved since
// the last poll, polling every interval until ctx ends. from is the value
// seen at the previous poll (the first poll only records the value). A
// failed poll is logged and retried at the next tick; the caller's caches
// then stay as they are, so the staleness bound is interval plus the
// outage. Watch returns ctx.Err().
func (d *DB) Watch(ctx context.Context, name string, interval time.Duration, log *slog.Logger, changed func(from, to int64)) error {
	if log == nil {
		log = slog.Default()
	}
	last, err := d.Generation(ctx, name)
	if err != nil {
		log.WarnContext(ctx, "watch generation", "name", name, "err", err)
		last = -1
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		g, err := d.Generation(ctx, name)
		if err != nil {
			if ctx.Err() == nil {
				log.WarnContext(ctx, "watch generation", "name", name, "err", err)
			}
			continue
		}
		if g != last {
			changed(last, g)
			last = g
		}
	}
}
