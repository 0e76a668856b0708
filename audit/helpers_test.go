package audit

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/tufota/tufota/storage"
)

// testOrigin is the log origin (and key name) used by the tests.
const testOrigin = "tufota.test/audit"

// testKey returns a fixed Ed25519 key, so golden exports are stable
// (Ed25519 signatures are deterministic).
func testKey(seed byte) ed25519.PrivateKey {
	s := make([]byte, ed25519.SeedSize)
	for i := range s {
		s[i] = seed + byte(i)
	}
	return ed25519.NewKeyFromSeed(s)
}

func testSigner(t testing.TB, seed byte) *NoteSigner {
	t.Helper()
	s, err := NewNoteSigner(testOrigin, testKey(seed))
	if err != nil {
		t.Fatalf("NewNoteSigner: %v", err)
	}
	return s
}

// fakeClock starts at a fixed time and advances one second per reading.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2025, 3, 14, 9, 26, 53, 589793238, time.UTC)}
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(time.Second)
	return c.t
}

func openTestDB(t testing.TB, url string) *storage.DB {
	t.Helper()
	ctx := context.Background()
	db, err := storage.OpenDB(ctx, url)
	if err != nil {
		t.Fatalf("OpenDB: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func sqliteURL(t testing.TB) string {
	t.Helper()
	return "sqlite:" + filepath.Join(t.TempDir(), "state.db")
}

// newTestLog opens a fresh SQLite database with a log on it, a fixed key
// and a fake clock.
func newTestLog(t testing.TB, opts ...Option) (*Log, *storage.DB) {
	t.Helper()
	db := openTestDB(t, sqliteURL(t))
	return newLogOn(t, db, opts...), db
}

func newLogOn(t testing.TB, db *storage.DB, opts ...Option) *Log {
	t.Helper()
	opts = append([]Option{WithNow(newFakeClock().now), WithLogger(slog.New(slog.DiscardHandler))}, opts...)
	l, err := New(context.Background(), db, testSigner(t, 1), opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return l
}

// sampleEntry returns the i-th entry of a small, varied workload.
func sampleEntry(i int) Entry {
	actors := []string{"alice", "bob", "pump-0042", "system"}
	roles := []string{"admin", "release-engineer", "device", "system"}
	actions := []string{"token.create", "release.publish", "device.status", "timestamp.refresh", "rollout.pause"}
	outcomes := []string{OutcomeOK, OutcomeOK, OutcomeDenied, OutcomeFailed, OutcomeError}
	e := Entry{
		Actor:   actors[i%len(actors)],
		Role:    roles[i%len(roles)],
		Source:  fmt.Sprintf("192.0.2.%d:443", i%250),
		Action:  actions[i%len(actions)],
		Object:  fmt.Sprintf("rollout/r-%d", i%3),
		Outcome: outcomes[i%len(outcomes)],
	}
	if i%2 == 0 {
		e.Details = map[string]string{"n": fmt.Sprint(i), "reason": "wave 2 failure rate 7% > 5%"}
	}
	return e
}

func appendN(t testing.TB, l *Log, from, n int) []Entry {
	t.Helper()
	var out []Entry
	for i := from; i < from+n; i++ {
		e, err := l.Append(context.Background(), sampleEntry(i))
		if err != nil {
			t.Fatalf("Append(%d): %v", i, err)
		}
		out = append(out, e)
	}
	return out
}

func mustCheckpoint(t testing.TB, l *Log) []byte {
	t.Helper()
	msg, err := l.Checkpoint(context.Background())
	if err != nil {
		t.Fatalf("Checkpoint: %v", err)
	}
	return msg
}
