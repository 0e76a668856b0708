package replicas

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/tufota/tufota/e2e"
	"github.com/tufota/tufota/internal/testenv"
)

// TestS3AndPostgresEndToEnd initialises a repository straight into a real
// MinIO bucket and a real PostgreSQL database, pushes a release and has a
// device verify and download it: no blob or state on the local disk.
func TestS3AndPostgresEndToEnd(t *testing.T) {
	endpoint, access, secret := testenv.MinIO(t)
	pg := testenv.Postgres(t)
	env := map[string]string{"AWS_ACCESS_KEY_ID": access, "AWS_SECRET_ACCESS_KEY": secret}
	h := e2e.StartFull(t, env, []string{
		"--storage", "s3://tufota-e2e/repo?endpoint=" + endpoint + "&secure=false",
		"--db", pg,
	})
	fw, want := h.WriteFirmware("pump.bin", 6<<20+3) // above the multipart threshold
	h.MustCLI("release", "push", fw, "--name", "pump-fw", "--version", "2.0.0", "--hardware", "pump-a")
	c := h.NewClient(h.URL, "dev-s3", "pump-a", "1.0.0")
	h.MustCLI("device", "assign", "dev-s3", "pump-fw@2.0.0")
	ctx := context.Background()
	upd, err := c.Check(ctx)
	if err != nil || upd == nil {
		t.Fatalf("Check = %+v, %v", upd, err)
	}
	dst := filepath.Join(t.TempDir(), "img")
	if err := c.Download(ctx, upd, dst); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(dst); !bytes.Equal(got, want) {
		t.Fatal("image downloaded from S3 differs")
	}
	for _, local := range []string{"blobs", "tufota.db"} {
		if _, err := os.Stat(filepath.Join(h.Dir, local)); err == nil {
			t.Errorf("%s exists in the data dir; state should be in S3 and PostgreSQL", local)
		}
	}
}
