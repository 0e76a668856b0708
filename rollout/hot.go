package rollout

import (
	"cmp"
	"context"
	"fmt"
	"hash/maphash"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/tufota/tufota/internal/seen"
	"github.com/tufota/tufota/storage"
)

// The device poll's hot path. A poll reads what it needs from memory: the
// active rollouts (one view, rebuilt after any rollout changes) and the
// polling device's row and rollout statuses (cached per device, dropped when
// the device changes). It writes nothing unless the poll changes state (the
// first offer of a release, a version the device runs that the server did
// not know). The device's last-seen time is coalesced in memory and written
// in batches.
//
// Every write to a rollout bumps the rollouts generation, and every write
// to a device row or its statuses bumps the devices generation and stamps
// the row (devices.change_gen), in the transaction of the write. This
// server drops its copies when the transaction commits; other replicas
// notice within the poll interval of RunCaches.

// DefaultCachePoll and DefaultSeenFlush are RunCaches' default intervals.
const (
	DefaultCachePoll = time.Second
	DefaultSeenFlush = 10 * time.Second
	// maxCachedDevices bounds the device cache; past it an arbitrary entry
	// of the shard makes room.
	maxCachedDevices = 1 << 21
	deviceShards     = 64
)

// deviceEntry is a cached device and its statuses by rollout. Entries are
// never modified once cached; a change replaces or drops them.
type deviceEntry struct {
	row      deviceRow
	statuses map[string]statusRow
}

type deviceShard struct {
	mu sync.RWMutex
	ep uint64
	m  map[string]*deviceEntry
}

// activeView is the active rollouts in ownership order (created_at, id)
// and the pins (which change the rollouts generation too).
type activeView struct {
	rollouts []Rollout
	pins     Pins
}

type hotCache struct {
	seed   maphash.Seed
	shards [deviceShards]deviceShard

	viewMu sync.Mutex // serialises storing and dropping the view
	viewEp atomic.Uint64
	view   atomic.Pointer[activeView]
	viewSF singleflight.Group // one rebuild for concurrent polls

	seen *seen.Times
}

func newHotCache(s *Service) *hotCache {
	h := &hotCache{seed: maphash.MakeSeed()}
	for i := range h.shards {
		h.shards[i].m = map[string]*deviceEntry{}
	}
	h.seen = seen.New(func(ctx context.Context, batch map[string]int64) error {
		if err := seen.Store(ctx, s.db, batch, `UPDATE devices SET last_seen = ? WHERE id = ? AND (last_seen IS NULL OR last_seen < ?)`); err != nil {
			return fmt.Errorf("store device last-seen times: %w", err)
		}
		return nil
	}, s.log)
	return h
}

func (h *hotCache) shard(id string) *deviceShard {
	return &h.shards[maphash.String(h.seed, id)%deviceShards]
}

// dropDevice forgets device id (after it changed).
func (h *hotCache) dropDevice(id string) {
	sh := h.shard(id)
	sh.mu.Lock()
	delete(sh.m, id)
	sh.ep++
	sh.mu.Unlock()
}

// dropAllDevices forgets every device.
func (h *hotCache) dropAllDevices() {
	for i := range h.shards {
		sh := &h.shards[i]
		sh.mu.Lock()
		sh.m = map[string]*deviceEntry{}
		sh.ep++
		sh.mu.Unlock()
	}
}

// dropView forgets the active rollouts (after one changed).
func (h *hotCache) dropView() {
	h.viewMu.Lock()
	h.viewEp.Add(1)
	h.view.Store(nil)
	h.viewMu.Unlock()
}

// cachedDevice returns device id and its statuses, from memory or read
// from the database (and then cached, unless it changed meanwhile).
func (s *Service) cachedDevice(ctx context.Context, id string) (*deviceEntry, error) {
	sh := s.hot.shard(id)
	sh.mu.RLock()
	e, ok := sh.m[id]
	ep := sh.ep
	sh.mu.RUnlock()
	if ok {
		return e, nil
	}
	row, err := s.device(ctx, s.db, id)
	if err != nil {
		return nil, err
	}
	statuses, err := s.deviceStatuses(ctx, id)
	if err != nil {
		return nil, err
	}
	e = &deviceEntry{row: row, statuses: statuses}
	sh.mu.Lock()
	if sh.ep == ep {
		if len(sh.m) >= maxCachedDevices/deviceShards {
			for k := range sh.m {
				delete(sh.m, k)
				break
			}
		}
		sh.m[id] = e
	}
	sh.mu.Unlock()
	return e, nil
}

// activeRollouts returns the active rollouts in ownership order, from
// memory or rebuilt from the database. The caller must not modify them.
func (s *Service) activeRollouts(ctx context.Context) ([]Rollout, error) {
	v, err := s.activeView(ctx)
	if err != nil {
		return nil, err
	}
	return v.rollouts, nil
}

// activePins returns the pins, from memory or rebuilt with the view.
func (s *Service) activePins(ctx context.Context) (Pins, error) {
	v, err := s.activeView(ctx)
	if err != nil {
		return Pins{}, err
	}
	return v.pins, nil
}

func (s *Service) activeView(ctx context.Context) (*activeView, error) {
	h := s.hot
	if v := h.view.Load(); v != nil {
		return v, nil
	}
	v, err, _ := h.viewSF.Do("", func() (any, error) {
		ep := h.viewEp.Load()
		ctx := context.WithoutCancel(ctx)
		active, err := s.rollouts(ctx, `WHERE state IN (?, ?, ?, ?) ORDER BY created_at, id`, activeStates...)
		if err != nil {
			return nil, err
		}
		list, err := s.readPins(ctx, s.db)
		if err != nil {
			return nil, err
		}
		pins, err := NewPins(list)
		if err != nil {
			return nil, err
		}
		// Ownership: the highest priority first, then the earliest.
		slices.SortStableFunc(active, func(a, b Rollout) int { return cmp.Compare(b.Plan.Priority, a.Plan.Priority) })
		v := &activeView{rollouts: active, pins: pins}
		h.viewMu.Lock()
		if h.viewEp.Load() == ep {
			h.view.Store(v)
		}
		h.viewMu.Unlock()
		return v, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*activeView), nil
}

// txChanges is what a transaction changed, for the bumps before its commit.
type txChanges struct {
	rollouts bool
	devices  map[string]struct{}
}

type txChangesKey struct{}

// changes returns tx's record of changes; the first call registers the
// hook that bumps the generations just before tx commits: rollouts before
// devices, after every other row lock of the transaction (storage.DB.Bump).
func (s *Service) changes(ctx context.Context, tx *storage.Tx) *txChanges {
	if v, ok := tx.Value(txChangesKey{}).(*txChanges); ok {
		return v
	}
	c := &txChanges{devices: map[string]struct{}{}}
	tx.SetValue(txChangesKey{}, c)
	tx.BeforeCommit(func() error {
		if c.rollouts {
			if _, err := s.db.Bump(ctx, tx, storage.GenRollouts); err != nil {
				return err
			}
		}
		if len(c.devices) == 0 {
			return nil
		}
		g, err := s.db.Bump(ctx, tx, storage.GenDevices)
		if err != nil {
			return err
		}
		for id := range c.devices {
			if _, err := tx.Exec(ctx, `UPDATE devices SET change_gen = ? WHERE id = ?`, g, id); err != nil {
				return fmt.Errorf("device %s changed: %w", id, err)
			}
		}
		return nil
	})
	return c
}

// deviceChanged records in tx that device id (its row or statuses)
// changed: the row is locked now; just before tx commits, the devices
// generation moves and stamps every device the transaction changed; this
// server's copies are dropped once tx commits.
func (s *Service) deviceChanged(ctx context.Context, tx *storage.Tx, id string) error {
	if _, err := tx.Exec(ctx, `UPDATE devices SET change_gen = change_gen WHERE id = ?`, id); err != nil {
		return fmt.Errorf("device %s changed: %w", id, err)
	}
	c := s.changes(ctx, tx)
	if _, ok := c.devices[id]; !ok {
		c.devices[id] = struct{}{}
		tx.OnCommit(func() { s.hot.dropDevice(id) })
	}
	return nil
}

// rolloutChanged records in tx that a rollout was created or changed: just
// before tx commits the rollouts generation moves, and this server rebuilds
// its view of the active rollouts once tx commits.
func (s *Service) rolloutChanged(ctx context.Context, tx *storage.Tx) error {
	c := s.changes(ctx, tx)
	if !c.rollouts {
		c.rollouts = true
		tx.OnCommit(s.hot.dropView)
	}
	return nil
}

// flushSeen writes the coalesced last-seen times, so that a read of the
// devices table that shows them is current.
func (s *Service) flushSeen(ctx context.Context) error {
	if err := s.hot.seen.Flush(ctx); err != nil {
		return fmt.Errorf("devices: %w", err)
	}
	return nil
}

// RunCaches keeps this server's hot-path caches in step with the database
// until ctx ends: every poll it reads the rollouts and devices generations
// and drops what another replica changed; every flush it writes the
// coalesced device last-seen times (and once more when ctx ends, so that a
// graceful shutdown loses none). poll and flush <= 0 take the defaults.
// Run it on every replica, not only the leader.
func (s *Service) RunCaches(ctx context.Context, poll, flush time.Duration) {
	if poll <= 0 {
		poll = DefaultCachePoll
	}
	if flush <= 0 {
		flush = DefaultSeenFlush
	}
	var wg sync.WaitGroup
	wg.Add(3)
	go func() {
		defer wg.Done()
		s.hot.seen.Run(ctx, flush)
	}()
	go func() {
		defer wg.Done()
		_ = s.db.Watch(ctx, storage.GenRollouts, poll, s.log, func(_, _ int64) { s.hot.dropView() })
	}()
	go func() {
		defer wg.Done()
		_ = s.db.Watch(ctx, storage.GenDevices, poll, s.log, func(from, _ int64) {
			if err := s.dropChangedDevices(ctx, from); err != nil && ctx.Err() == nil {
				s.log.WarnContext(ctx, "drop changed devices: dropping every cached device", "err", err)
				s.hot.dropAllDevices()
			}
		})
	}()
	wg.Wait()
}

// dropChangedDevices drops the cached devices changed after generation
// from (all of them when from is unknown, -1).
func (s *Service) dropChangedDevices(ctx context.Context, from int64) error {
	if from < 0 {
		s.hot.dropAllDevices()
		return nil
	}
	rows, err := s.db.Query(ctx, `SELECT id FROM devices WHERE change_gen > ?`, from)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return err
		}
		s.hot.dropDevice(id)
	}
	return rows.Err()
}
