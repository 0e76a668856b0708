package main

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tufota/tufota/backup"
	"github.com/tufota/tufota/storage"
)

// TestBackupRunsRestoresCheck makes the source state inconsistent the way
// two servers on one data directory did (a release the database calls
// published that the signed metadata lacks): backup, which used to succeed
// on it and leave a backup that restore refuses, now runs restore's check
// and fails, naming the release, and removes the backup. A consistent
// repository backs up with the check's report.
func TestBackupRunsRestoresCheck(t *testing.T) {
	h := startHarness(t)
	p, _ := h.writeFirmware("fw.bin", 4<<10)
	h.mustCLI("release", "push", p, "--name", "pump-fw", "--version", "1.0.0", "--hardware", "pump-a")

	good := filepath.Join(t.TempDir(), "good")
	var br backup.DirResult
	if err := json.Unmarshal([]byte(h.mustCLI("backup", "--dir", h.dir, "--to", good, "-o", "json")), &br); err != nil {
		t.Fatal(err)
	}
	if br.Check.Repository.Releases != 1 || !br.Check.Audit.OK || br.Check.Audit.Entries == 0 {
		t.Fatalf("backup check = %+v, want 1 release and a verified audit log", br.Check)
	}

	ctx := context.Background()
	db, err := storage.OpenDB(ctx, "sqlite:"+filepath.Join(h.dir, "tufota.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(ctx, `INSERT INTO releases (name, version, target_path, length, sha256, sha512, hardware, custom, state, created_at, created_by)
		SELECT 'ghost-fw', version, 'ghost-fw/' || version || '/fw.bin', length, sha256, sha512, hardware, custom, state, created_at, created_by
		FROM releases WHERE name = 'pump-fw'`); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(t.TempDir(), "bad")
	_, err = h.runCLI("backup", "--dir", h.dir, "--to", bad)
	if err == nil || !strings.Contains(err.Error(), "ghost-fw/1.0.0/fw.bin") || !strings.Contains(err.Error(), "not in the signed metadata") {
		t.Fatalf("backup of an inconsistent repository: %v, want restore's refusal naming ghost-fw/1.0.0/fw.bin", err)
	}
	if _, err := os.Stat(bad); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the failed backup %s is still there (%v)", bad, err)
	}
}
