package audit

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/tufota/tufota/audit"
	"github.com/tufota/tufota/e2e"
	"github.com/tufota/tufota/internal/testenv"
)

// TestServerArchivesCheckpointsOnObjectLock: `tufota server --audit-archive`
// writes every signed audit checkpoint to an S3 Object Lock bucket in
// compliance mode, retained for the audit retention (six years by default);
// a retention below six years, or an archive that would keep records for
// less than --audit-retention, is refused before the server starts.
func TestServerArchivesCheckpointsOnObjectLock(t *testing.T) {
	endpoint, access, secret := testenv.MinIO(t)
	env := map[string]string{"AWS_ACCESS_KEY_ID": access, "AWS_SECRET_ACCESS_KEY": secret}
	const bucket = "tufota-audit-archive"
	archive := "s3://" + bucket + "/ckpt?endpoint=" + endpoint + "&secure=false&object-lock=compliance"
	start := time.Now()
	h := e2e.StartFull(t, env, nil, "--audit-archive", archive)

	mc, err := minio.New(endpoint, &minio.Options{Creds: credentials.NewStaticV4(access, secret, "")})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// init signed the first checkpoint; the leader archives it when its
	// checkpoint job starts.
	var key string
	for key == "" {
		for obj := range mc.ListObjects(ctx, bucket, minio.ListObjectsOptions{Prefix: "ckpt/checkpoints/", Recursive: true}) {
			if obj.Err != nil {
				t.Fatalf("list archive: %v", obj.Err)
			}
			key = obj.Key
		}
		if key == "" {
			select {
			case <-ctx.Done():
				t.Fatal("no checkpoint reached the archive within 30s")
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	mode, until, err := mc.GetObjectRetention(ctx, bucket, key, "")
	if err != nil || mode == nil || *mode != minio.Compliance || until == nil {
		t.Fatalf("retention of %s = %v %v, %v; want COMPLIANCE", key, mode, until, err)
	}
	if min := start.Add(audit.DefaultRetention - time.Hour); until.Before(min) {
		t.Errorf("%s retained until %s, want at least the audit retention (%s from now)", key, until, audit.DefaultRetention)
	}
	obj, err := mc.GetObject(ctx, bucket, key, minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	note, err := io.ReadAll(obj)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(note), "\n\n— ") {
		t.Errorf("archived checkpoint %s is not a signed note:\n%s", key, note)
	}

	for _, tc := range []struct {
		name  string
		flags []string
		want  string
	}{
		{"retention under six years", []string{"--audit-retention", "8760h"}, "six-year"},
		{"archive kept shorter than the audit retention", []string{"--audit-archive", archive + "&retention=30d"}, "shorter than --audit-retention"},
		{"archive without object lock", []string{"--audit-archive", "file:/tmp/x"}, "not write-once storage"},
	} {
		args := append([]string{"server", "--dir", h.Dir, "--addr", "127.0.0.1:0", "--insecure-http"}, tc.flags...)
		if _, err := h.RunCLI(args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: server %v: %v, want an error containing %q", tc.name, tc.flags, err, tc.want)
		}
	}
}
