package signer

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/storage"
)

func custom(t *testing.T, name, version string) json.RawMessage {
	t.Helper()
	c, err := tufota.MarshalCustom(tufota.TargetCustom{Name: name, Version: version, Hardware: []string{"pump-v2"}})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestEndToEndStockUpdater initialises a repository, publishes two targets
// in two releases and checks that go-tuf's stock updater verifies the
// metadata and downloads both targets byte for byte, on the file store
// (with Move) and on an in-memory store (copy + delete).
func TestEndToEndStockUpdater(t *testing.T) {
	t.Parallel()
	stores := map[string]func(t *testing.T) storage.Blobs{
		"file":   func(t *testing.T) storage.Blobs { return newFileBlobs(t) },
		"memory": func(t *testing.T) storage.Blobs { return newMemBlobs() },
	}
	for name, newStore := range stores {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			blobs := newStore(t)
			clock := &fixedClock{t: testEpoch}
			repo := NewRepository(blobs, WithNow(clock.Now))
			keys := newTestKeys(t, 3, 2)
			root, err := repo.Init(ctx, keys.roleKeys(2, 2))
			if err != nil {
				t.Fatalf("Init: %v", err)
			}
			ts := serveBlobs(t, blobs)

			// An empty repository verifies.
			up := stockUpdater(t, ts, root, clock.Now())
			if err := up.Refresh(); err != nil {
				t.Fatalf("stock updater on empty repository: %v", err)
			}

			img1 := bytes.Repeat([]byte("firmware one "), 1000)
			img2 := []byte("firmware two\x00\x01\x02")
			p1 := tufota.TargetPath("pump", "1.0.0", "pump.bin")
			p2 := tufota.TargetPath("pump", "1.1.0+build.7", "pump.bin")

			v, err := repo.Publish(ctx, keys.signers(), Target{Path: p1, Staged: stage(t, repo, img1), Custom: custom(t, "pump", "1.0.0")})
			if err != nil {
				t.Fatalf("Publish 1: %v", err)
			}
			if v != 2 {
				t.Fatalf("targets version = %d, want 2", v)
			}
			clock.Set(testEpoch.Add(1))
			v, err = repo.Publish(ctx, keys.signers(), Target{Path: p2, Staged: stage(t, repo, img2), Custom: custom(t, "pump", "1.1.0+build.7")})
			if err != nil {
				t.Fatalf("Publish 2: %v", err)
			}
			if v != 3 {
				t.Fatalf("targets version = %d, want 3", v)
			}

			for path, want := range map[string][]byte{p1: img1, p2: img2} {
				got, err := fetchTarget(t, ts, root, clock.Now(), path)
				if err != nil {
					t.Fatalf("stock updater %s: %v", path, err)
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("target %s: got %d bytes, want %d", path, len(got), len(want))
				}
			}

			// The custom metadata is signed into the target.
			tm, err := repo.Targets(ctx)
			if err != nil {
				t.Fatalf("Targets: %v", err)
			}
			tf := tm.Signed.Targets[p2]
			if tf == nil || tf.Custom == nil {
				t.Fatalf("target %s has no custom metadata", p2)
			}
			c, err := tufota.UnmarshalCustom(*tf.Custom)
			if err != nil || c.Version != "1.1.0+build.7" {
				t.Fatalf("custom = %+v, %v", c, err)
			}

			// Nothing is left in staging.
			left, err := blobs.List(ctx, StagingPrefix)
			if err != nil || len(left) != 0 {
				t.Fatalf("staging after publish = %v, %v; want empty", left, err)
			}
			// Layout: versioned files and hash-prefixed targets.
			for _, key := range []string{
				"metadata/1.root.json", "metadata/1.targets.json", "metadata/2.targets.json",
				"metadata/3.targets.json", "metadata/3.snapshot.json", "metadata/timestamp.json",
				TargetBlobKey(p1, tm.Signed.Targets[p1].Hashes["sha256"].String()),
			} {
				if _, err := blobs.Stat(ctx, key); err != nil {
					t.Errorf("Stat(%s): %v", key, err)
				}
			}
		})
	}
}

func TestInitRefusesExistingRepository(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	repo := NewRepository(newMemBlobs())
	keys := newTestKeys(t, 1, 1)
	if _, err := repo.Init(ctx, keys.roleKeys(1, 1)); err != nil {
		t.Fatalf("Init: %v", err)
	}
	_, err := repo.Init(ctx, keys.roleKeys(1, 1))
	wantCode(t, err, tufota.EConflict)
}

func TestInitBadKeys(t *testing.T) {
	t.Parallel()
	k := newTestKeys(t, 2, 2)
	tests := []struct {
		name string
		keys RoleKeys
	}{
		{"no root keys", RoleKeys{Targets: k.targets, Snapshot: k.snapshot, Timestamp: k.timestamp}},
		{"no targets keys", RoleKeys{Root: k.root, Snapshot: k.snapshot, Timestamp: k.timestamp}},
		{"root threshold above keys", RoleKeys{Root: k.root, RootThreshold: 3, Targets: k.targets, Snapshot: k.snapshot, Timestamp: k.timestamp}},
		{"negative threshold", RoleKeys{Root: k.root, Targets: k.targets, TargetsThreshold: -1, Snapshot: k.snapshot, Timestamp: k.timestamp}},
		{"duplicate root key", RoleKeys{Root: append(k.root[:1:1], k.root[0]), Targets: k.targets, Snapshot: k.snapshot, Timestamp: k.timestamp}},
		{"no snapshot key", RoleKeys{Root: k.root, Targets: k.targets, Timestamp: k.timestamp}},
		{"no timestamp key", RoleKeys{Root: k.root, Targets: k.targets, Snapshot: k.snapshot}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			blobs := newMemBlobs()
			_, err := NewRepository(blobs).Init(context.Background(), tt.keys)
			wantCode(t, err, tufota.EInvalid)
			if n := len(snapshotBlobs(t, blobs)); n != 0 {
				t.Fatalf("%d blobs written by a failed Init", n)
			}
		})
	}
}

func TestRootAndExpiries(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	exp := Expiry{Root: 100 * time.Hour, Targets: 50 * time.Hour, Snapshot: 10 * time.Hour, Timestamp: time.Hour}
	repo := NewRepository(newMemBlobs(), WithNow(func() time.Time { return testEpoch }), WithExpiry(exp))

	if _, err := repo.Root(ctx); tufota.ErrorCode(err) != tufota.ENotFound {
		t.Fatalf("Root before Init: err = %v, want not_found", err)
	}
	if _, err := repo.Expiries(ctx); tufota.ErrorCode(err) != tufota.ENotFound {
		t.Fatalf("Expiries before Init: err = %v, want not_found", err)
	}
	keys := newTestKeys(t, 1, 1)
	rootJSON, err := repo.Init(ctx, keys.roleKeys(1, 1))
	if err != nil {
		t.Fatalf("Init: %v", err)
	}
	got, err := repo.Root(ctx)
	if err != nil || !bytes.Equal(got, rootJSON) {
		t.Fatalf("Root = %d bytes, %v; want the bytes Init returned", len(got), err)
	}
	root, err := new(metadata.Metadata[metadata.RootType]).FromBytes(rootJSON)
	if err != nil {
		t.Fatal(err)
	}
	if !root.Signed.ConsistentSnapshot {
		t.Fatal("consistent_snapshot = false, want true")
	}

	exps, err := repo.Expiries(ctx)
	if err != nil {
		t.Fatalf("Expiries: %v", err)
	}
	want := map[string]time.Time{
		"root":      testEpoch.Add(exp.Root),
		"targets":   testEpoch.Add(exp.Targets),
		"snapshot":  testEpoch.Add(exp.Snapshot),
		"timestamp": testEpoch.Add(exp.Timestamp),
	}
	for role, w := range want {
		if !exps[role].Equal(w) {
			t.Errorf("expiry of %s = %v, want %v", role, exps[role], w)
		}
	}
	if len(exps) != len(want) {
		t.Errorf("Expiries has %d roles, want %d", len(exps), len(want))
	}
}
