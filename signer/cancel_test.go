package signer

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/tufota/tufota"
)

// TestCancelRelease: a pending release with one signature is withdrawn:
// its row, payload, signature and staged upload go, the published
// repository does not change, and the same name and version can be pushed
// again. Unknown and published releases are refused.
func TestCancelRelease(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newThresholdEnv(t)
	before := snapshotBlobs(t, e.blobs)
	_, rel := e.push("pump-fw", "1.0.0")
	p := e.payload("pump-fw", "1.0.0")
	if _, err := e.rels.SignRelease(ctx, "pump-fw", "1.0.0", signUpload(t, e.keys.targets[0], p), "alice"); err != nil {
		t.Fatal(err)
	}

	got, err := e.rels.CancelRelease(ctx, "pump-fw", "1.0.0")
	if err != nil || got.TargetPath != rel.TargetPath {
		t.Fatalf("CancelRelease = %+v, %v", got, err)
	}
	if _, err := e.rels.Get(ctx, "pump-fw", "1.0.0"); !errors.Is(err, tufota.ErrNotFound) {
		t.Fatalf("Get after cancel: %v, want not found", err)
	}
	var n int
	if err := e.db.QueryRow(ctx, `SELECT COUNT(*) FROM pending_metadata`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("pending payloads after cancel: %d, %v; want 0", n, err)
	}
	if err := e.db.QueryRow(ctx, `SELECT COUNT(*) FROM pending_signatures`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("pending signatures after cancel: %d, %v; want 0", n, err)
	}
	after := snapshotBlobs(t, e.blobs)
	if len(after) != len(before) {
		t.Fatalf("blobs after cancel: %d, before the push: %d (staged upload left behind?)", len(after), len(before))
	}
	for k, v := range before {
		if !bytes.Equal(after[k], v) {
			t.Fatalf("blob %s changed", k)
		}
	}

	if _, err := e.rels.CancelRelease(ctx, "pump-fw", "1.0.0"); !errors.Is(err, tufota.ErrNotFound) {
		t.Fatalf("second cancel: %v, want not found", err)
	}
	// The version is free again, and a published release cannot be cancelled.
	e.push("pump-fw", "1.0.0")
	p = e.payload("pump-fw", "1.0.0")
	for i, k := range e.keys.targets[:2] {
		if _, err := e.rels.SignRelease(ctx, "pump-fw", "1.0.0", signUpload(t, k, p), []string{"alice", "bob"}[i]); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.rels.CancelRelease(ctx, "pump-fw", "1.0.0"); !errors.Is(err, tufota.ErrConflict) || !strings.Contains(err.Error(), "published") {
		t.Fatalf("cancel of a published release: %v, want a conflict", err)
	}
}

// TestCancelReleaseRecordedWithoutPayload: a pending release that a server
// without payloads for online pushes recorded before it crashed mid-publish
// (its blob already at the target key) survives Reconcile and is cancelled
// with that blob; the same name and version can then be pushed again.
func TestCancelReleaseRecordedWithoutPayload(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newOnlineEnv(t)
	data := []byte("pump firmware 2.0.0")
	sum := sha256Hex(data)
	const path = "pump-fw/2.0.0/fw.bin"
	if _, err := e.db.Exec(ctx, `INSERT INTO releases (name, version, target_path, length, sha256, sha512, hardware, notes, custom, state, role, created_at, created_by)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, "pump-fw", "2.0.0", path, len(data), sum, "", `["hw-a"]`, "", `{}`, StatePending, RoleTargets, testEpoch.UnixNano(), "alice"); err != nil {
		t.Fatal(err)
	}
	key := TargetBlobKey(path, sum)
	if _, err := e.blobs.Put(ctx, key, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	if n, err := e.rels.Reconcile(ctx); err != nil || n != 0 {
		t.Fatalf("Reconcile = %d, %v; want nothing recorded published", n, err)
	}
	if _, err := e.rels.CancelRelease(ctx, "pump-fw", "2.0.0"); err != nil {
		t.Fatalf("CancelRelease: %v", err)
	}
	if _, err := e.blobs.Stat(ctx, key); !errors.Is(err, tufota.ErrNotFound) {
		t.Fatalf("target blob after cancel: %v, want not found", err)
	}
	if _, err := e.rels.Get(ctx, "pump-fw", "2.0.0"); !errors.Is(err, tufota.ErrNotFound) {
		t.Fatalf("Get after cancel: %v, want not found", err)
	}
	if _, again := e.push("pump-fw", "2.0.0"); again.State != StatePublished || !e.live(path) {
		t.Fatalf("push again = %+v, want published", again)
	}
}
