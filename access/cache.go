package access

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/tufota/tufota/internal/seen"
	"github.com/tufota/tufota/storage"
)

// DefaultCacheSize bounds how many tokens a server keeps verified in
// memory; past it, an arbitrary entry makes room (it is read again from the
// database at its next use).
const DefaultCacheSize = 1 << 17

// Default intervals of Run.
const (
	// DefaultRevocationPoll is how often a replica checks whether a token
	// was revoked on another replica: the bound on how long a revoked token
	// may still be accepted there.
	DefaultRevocationPoll = time.Second
	// DefaultLastUsedFlush is how often coalesced last-use times are
	// written: a token's stored last_used_at is at most this old.
	DefaultLastUsedFlush = 10 * time.Second
)

// cachedToken is what Authenticate needs of a token row.
type cachedToken struct {
	hash      string
	expires   int64 // UnixNano; 0: never
	revoked   bool
	principal Principal
}

// tokenCache is a bounded map of verified token rows. Its epoch moves on
// every invalidation, so that a row read from the database before a
// revocation is not cached after it.
type tokenCache struct {
	mu    sync.RWMutex
	max   int
	m     map[string]cachedToken
	ep    uint64
	gen   int64 // the tokens generation the cache reflects; -1 unknown
	known bool
}

func newTokenCache(max int) *tokenCache {
	return &tokenCache{max: max, m: make(map[string]cachedToken)}
}

func (c *tokenCache) get(id string) (cachedToken, bool) {
	c.mu.RLock()
	e, ok := c.m[id]
	c.mu.RUnlock()
	return e, ok
}

func (c *tokenCache) epoch() uint64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.ep
}

// put caches e unless the cache was invalidated since epoch was read.
func (c *tokenCache) put(id string, e cachedToken, epoch uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ep != epoch {
		return
	}
	if _, ok := c.m[id]; !ok && len(c.m) >= c.max {
		for k := range c.m { // Go's map order is random: a random victim
			delete(c.m, k)
			break
		}
	}
	c.m[id] = e
}

// revoked drops token id after this server revoked it in generation gen.
func (c *tokenCache) revoked(id string, gen int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, id)
	c.ep++
	if c.known && gen == c.gen+1 {
		c.gen = gen // nothing else changed: the rest of the cache stays
	}
}

// dropAll empties the cache (after revocations this server made whose
// token ids it does not list); the next poll re-reads the generation.
func (c *tokenCache) dropAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.m = make(map[string]cachedToken)
	c.ep++
}

// sync makes the cache reflect generation gen: when another replica
// revoked a token since the generation it reflects, everything goes.
func (c *tokenCache) sync(gen int64) (dropped int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.known && gen == c.gen {
		return 0
	}
	dropped = len(c.m)
	if c.known || dropped > 0 {
		c.m = make(map[string]cachedToken)
		c.ep++
	}
	c.gen, c.known = gen, true
	return dropped
}

// Run keeps the cache honest across replicas and stores last-use times,
// until ctx ends: every poll it reads the tokens generation and, if another
// replica revoked a token, empties the cache; every flush it writes the
// coalesced last-use times (and once more when ctx ends). poll and flush
// <= 0 take the defaults. Run returns when ctx ends.
func (t *Tokens) Run(ctx context.Context, poll, flush time.Duration, log *slog.Logger) {
	if poll <= 0 {
		poll = DefaultRevocationPoll
	}
	if flush <= 0 {
		flush = DefaultLastUsedFlush
	}
	if log == nil {
		log = slog.Default()
	}
	if g, err := t.db.Generation(ctx, storage.GenTokens); err == nil {
		t.cache.sync(g)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t.used.Run(ctx, flush)
	}()
	_ = t.db.Watch(ctx, storage.GenTokens, poll, log, func(_, to int64) {
		if n := t.cache.sync(to); n > 0 {
			log.Info("token revoked elsewhere: verified tokens dropped", "count", n, "generation", to)
		}
	})
	wg.Wait()
}

// Sync reads the tokens generation once and empties the cache if a token
// was revoked since (what Run does every poll).
func (t *Tokens) Sync(ctx context.Context) error {
	g, err := t.db.Generation(ctx, storage.GenTokens)
	if err != nil {
		return err
	}
	t.cache.sync(g)
	return nil
}

// FlushLastUsed writes the coalesced last-use times now.
func (t *Tokens) FlushLastUsed(ctx context.Context) error { return t.used.Flush(ctx) }

// storeLastUsed writes a batch of last-use times, newer-wins.
func (t *Tokens) storeLastUsed(ctx context.Context, batch map[string]int64) error {
	if err := seen.Store(ctx, t.db, batch, `UPDATE tokens SET last_used_at = ? WHERE id = ? AND (last_used_at IS NULL OR last_used_at < ?)`); err != nil {
		return fmt.Errorf("store token last-use times: %w", err)
	}
	return nil
}
