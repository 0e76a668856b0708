package storage

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Savepoint runs fn inside a savepoint of the transaction: if fn fails, what
// it did is rolled back (the rest of the transaction stays) and its error
// is returned. Hooks fn registered (OnCommit, BeforeCommit) stay
// registered; they must tolerate that.
func (t *Tx) Savepoint(ctx context.Context, fn func(tx *Tx) error) error {
	t.savepoints++
	name := fmt.Sprintf("sp_%d", t.savepoints)
	if _, err := t.tx.ExecContext(ctx, "SAVEPOINT "+name); err != nil {
		return t.d.translate("savepoint", err)
	}
	if err := fn(t); err != nil {
		if _, rerr := t.tx.ExecContext(ctx, "ROLLBACK TO SAVEPOINT "+name); rerr != nil {
			return fmt.Errorf("%w (and rolling back to the savepoint failed: %v)", err, t.d.translate("rollback to savepoint", rerr))
		}
		if _, rerr := t.tx.ExecContext(ctx, "RELEASE SAVEPOINT "+name); rerr != nil {
			return fmt.Errorf("%w (and releasing the savepoint failed: %v)", err, t.d.translate("release savepoint", rerr))
		}
		return err
	}
	if _, err := t.tx.ExecContext(ctx, "RELEASE SAVEPOINT "+name); err != nil {
		return t.d.translate("release savepoint", err)
	}
	return nil
}

// Group commits the work of concurrent callers in shared transactions
// (group commit): while one transaction commits, the calls that arrive
// queue up and then share the next one, so that N concurrent writers pay
// for one commit (one fsync, one round of the database's write lock)
// instead of N. Each call's function runs in its own savepoint: a failing
// call is rolled back alone and gets its own error; the others commit.
// A call returns only after its transaction committed (nil) or failed.
// A Group is safe for concurrent use.
type Group struct {
	db      *DB
	max     int
	timeout time.Duration

	mu      sync.Mutex
	queue   []*groupCall
	running bool
}

type groupCall struct {
	ctx  context.Context
	fn   func(tx *Tx) error
	err  error
	done chan struct{}
}

// NewGroup returns a Group on db that puts at most max calls (default 256
// when max <= 0) in one transaction.
func (d *DB) NewGroup(max int) *Group {
	if max <= 0 {
		max = 256
	}
	return &Group{db: d, max: max, timeout: 30 * time.Second}
}

// Do runs fn in a transaction shared with other concurrent calls and
// returns fn's error, or the transaction's when it could not commit. A
// call whose ctx ends before its transaction starts is not run. Once its
// transaction started, Do waits for the outcome even if ctx ends, so that
// nil always means committed.
func (g *Group) Do(ctx context.Context, fn func(tx *Tx) error) error {
	c := &groupCall{ctx: ctx, fn: fn, done: make(chan struct{})}
	g.mu.Lock()
	g.queue = append(g.queue, c)
	lead := !g.running
	g.running = true
	g.mu.Unlock()
	if lead {
		g.commitNext()
		// Hand what queued meanwhile to another goroutine, so that this
		// caller is answered now.
		go g.drain()
	}
	<-c.done
	return c.err
}

// drain commits queued calls until the queue is empty.
func (g *Group) drain() {
	for g.commitNext() {
	}
}

// commitNext commits the next batch; false when there was none (and the
// Group is then idle).
func (g *Group) commitNext() bool {
	g.mu.Lock()
	n := min(len(g.queue), g.max)
	if n == 0 {
		g.running = false
		g.mu.Unlock()
		return false
	}
	batch := g.queue[:n:n]
	g.queue = append([]*groupCall(nil), g.queue[n:]...)
	g.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), g.timeout)
	defer cancel()
	ran := make([]bool, len(batch))
	err := g.db.Tx(ctx, func(tx *Tx) error {
		for i, c := range batch {
			ran[i] = false
			if err := c.ctx.Err(); err != nil {
				c.err = fmt.Errorf("not started: %w", err)
				continue
			}
			ran[i] = true
			c.err = tx.Savepoint(ctx, c.fn)
		}
		return nil
	})
	for i, c := range batch {
		if err != nil && (c.err == nil || ran[i]) {
			c.err = err
		}
		close(c.done)
	}
	return true
}
