package access

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/internal/testenv"
	"github.com/tufota/tufota/storage"
)

// replicaDBs opens two handles on one state database: what two server
// replicas share. SQLite always; PostgreSQL when the integration
// environment provides it.
func replicaDBs(t *testing.T) map[string][2]*storage.DB {
	t.Helper()
	ctx := t.Context()
	open := func(url string) *storage.DB {
		db, err := storage.OpenDB(ctx, url)
		if err != nil {
			t.Fatalf("open %s: %v", url, err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	}
	sqlite := "sqlite:" + filepath.Join(t.TempDir(), "state.db")
	out := map[string][2]*storage.DB{"sqlite": {open(sqlite), open(sqlite)}}
	if !testing.Short() {
		pg := testenv.Postgres(t)
		out["postgres"] = [2]*storage.DB{open(pg), open(pg)}
	}
	return out
}

// A token revoked through one replica is refused by another that had it
// verified in memory, once that replica has polled the tokens generation
// (Run does it every poll interval: the stated bound), and at once by the
// replica that revoked it.
func TestRevocationReachesOtherReplica(t *testing.T) {
	for name, dbs := range replicaDBs(t) {
		t.Run(name, func(t *testing.T) {
			ctx := t.Context()
			a, b := NewTokens(dbs[0], nil), NewTokens(dbs[1], nil)
			if err := b.Sync(ctx); err != nil {
				t.Fatal(err)
			}
			secret, tok, err := a.Create(ctx, nil, NewToken{Name: "dev-1", Role: RoleDevice, DeviceID: "dev-1"}, "admin")
			if err != nil {
				t.Fatal(err)
			}
			other, _, err := a.Create(ctx, nil, NewToken{Name: "dev-2", Role: RoleDevice, DeviceID: "dev-2"}, "admin")
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range []string{secret, other} {
				if _, err := b.Authenticate(ctx, s); err != nil {
					t.Fatalf("replica b: %v", err)
				}
			}
			// Served from memory now: deleting the row would not be seen.
			if _, err := dbs[0].Exec(ctx, `UPDATE tokens SET name = 'renamed' WHERE id = ?`, tok.ID); err != nil {
				t.Fatal(err)
			}
			if p, err := b.Authenticate(ctx, secret); err != nil || p.Name != "dev-1" {
				t.Fatalf("replica b before any poll: %+v, %v (want the cached dev-1)", p, err)
			}

			if _, err := a.Revoke(ctx, tok.ID); err != nil {
				t.Fatal(err)
			}
			if _, err := a.Authenticate(ctx, secret); err == nil || !strings.Contains(err.Error(), "revoked") {
				t.Fatalf("replica a after its own revocation: %v, want revoked", err)
			}
			if err := b.Sync(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := b.Authenticate(ctx, secret); !errors.Is(err, tufota.ErrUnauthorized) || !strings.Contains(err.Error(), "revoked") {
				t.Fatalf("replica b after one poll: %v, want revoked", err)
			}
			if _, err := b.Authenticate(ctx, other); err != nil {
				t.Fatalf("replica b, an unrevoked token after the poll: %v", err)
			}
		})
	}
}

// Run polls: a revocation elsewhere is refused without anyone calling Sync.
func TestRunPollsRevocations(t *testing.T) {
	dbs := replicaDBs(t)["sqlite"]
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	a, b := NewTokens(dbs[0], nil), NewTokens(dbs[1], nil)
	done := make(chan struct{})
	go func() { defer close(done); b.Run(ctx, 5*time.Millisecond, time.Hour, nil) }()
	secret, tok, err := a.Create(ctx, nil, NewToken{Name: "ci", Role: RoleReleaseEngineer}, "admin")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Authenticate(ctx, secret); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Revoke(ctx, tok.ID); err != nil {
		t.Fatal(err)
	}
	for {
		_, err := b.Authenticate(ctx, secret)
		if err != nil && strings.Contains(err.Error(), "revoked") {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal("replica b never refused the revoked token")
		case <-time.After(2 * time.Millisecond):
		}
	}
	cancel()
	<-done
}

// Authenticate writes nothing; the last use is written by a flush, at most
// one write per token per flush, newer-wins across replicas, and List
// shows it at once.
func TestLastUsedCoalesced(t *testing.T) {
	dbs := replicaDBs(t)["sqlite"]
	ctx := t.Context()
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	a, b := NewTokens(dbs[0], clock), NewTokens(dbs[1], clock)
	secret, tok, err := a.Create(ctx, nil, NewToken{Name: "ops", Role: RoleOperator}, "admin")
	if err != nil {
		t.Fatal(err)
	}
	stored := func() sql64 {
		t.Helper()
		var v sql64
		if err := dbs[0].QueryRow(ctx, `SELECT last_used_at FROM tokens WHERE id = ?`, tok.ID).Scan(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	for range 3 {
		if _, err := a.Authenticate(ctx, secret); err != nil {
			t.Fatal(err)
		}
	}
	if v := stored(); v.Valid {
		t.Fatalf("last_used_at = %d before a flush: Authenticate wrote to the database", v.Int64)
	}
	later := now.Add(time.Minute)
	now = later
	if _, err := b.Authenticate(ctx, secret); err != nil {
		t.Fatal(err)
	}
	now = later.Add(-30 * time.Second) // a replica with an older time flushes last
	if _, err := a.Authenticate(ctx, secret); err != nil {
		t.Fatal(err)
	}
	if err := b.FlushLastUsed(ctx); err != nil {
		t.Fatal(err)
	}
	if err := a.FlushLastUsed(ctx); err != nil {
		t.Fatal(err)
	}
	if v := stored(); !v.Valid || v.Int64 != later.UnixNano() {
		t.Fatalf("last_used_at = %+v, want the newest use %d", v, later.UnixNano())
	}
	now = later.Add(time.Hour)
	if _, err := a.Authenticate(ctx, secret); err != nil {
		t.Fatal(err)
	}
	toks, err := a.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(toks) != 1 || toks[0].LastUsedAt == nil || !toks[0].LastUsedAt.Equal(now) {
		t.Fatalf("List = %+v, want last used %v", toks, now)
	}
}

// A token row read before a revocation is not cached after it.
func TestCacheEpochRefusesStaleFill(t *testing.T) {
	c := newTokenCache(4)
	ep := c.epoch()
	c.revoked("abc", 1)
	c.put("abc", cachedToken{hash: "h"}, ep)
	if _, ok := c.get("abc"); ok {
		t.Fatal("a row read before the revocation was cached after it")
	}
	for i, id := range []string{"a", "b", "c", "d", "e", "f"} {
		c.put(id, cachedToken{hash: id}, c.epoch())
		if n := len(c.m); n > 4 || n != min(i+1, 4) {
			t.Fatalf("cache holds %d entries after %d puts, bound 4", n, i+1)
		}
	}
}

type sql64 = sql.NullInt64

// RevokeDevice, like Revoke, reaches a token already verified in memory.
func TestRevokeDeviceDropsCachedTokens(t *testing.T) {
	dbs := replicaDBs(t)["sqlite"]
	ctx := t.Context()
	a := NewTokens(dbs[0], nil)
	secret, _, err := a.Create(ctx, nil, NewToken{Name: "dev-9", Role: RoleDevice, DeviceID: "dev-9"}, "admin")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Authenticate(ctx, secret); err != nil {
		t.Fatal(err)
	}
	if n, err := a.RevokeDevice(ctx, nil, "DEV-9"); err != nil || n != 1 {
		t.Fatalf("RevokeDevice = %d, %v; want 1", n, err)
	}
	if _, err := a.Authenticate(ctx, secret); err == nil || !strings.Contains(err.Error(), "revoked") {
		t.Fatalf("a device token revoked by RevokeDevice: %v, want revoked", err)
	}
}
