package storage_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/internal/testenv"
	"github.com/tufota/tufota/storage"
)

func randomBucket(prefix string) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// TestLockedS3 writes to a real MinIO bucket with Object Lock: the object
// carries a COMPLIANCE retention, a second write of the key is refused,
// deleting the locked version is refused by S3 itself, and a bucket without
// Object Lock is refused at open. (Locked objects outlive the test: MinIO's
// data directory is thrown away with the test run.)
func TestLockedS3(t *testing.T) {
	endpoint, access, secret := testenv.MinIO(t)
	ctx := context.Background()
	bucket := randomBucket("tufota-lock-")
	u := "s3://" + bucket + "/audit?endpoint=" + endpoint + "&secure=false&object-lock=compliance&retention=1d"
	creds := storage.WithS3Credentials(access, secret)

	if _, err := storage.OpenLockedS3(ctx, u, creds); !errors.Is(err, tufota.ErrNotFound) {
		t.Fatalf("OpenLockedS3 of a missing bucket without create = %v, want not found", err)
	}
	l, err := storage.OpenLockedS3(ctx, u, creds, storage.WithCreateBucket())
	if err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	if _, err := l.Put(ctx, "checkpoints/00000000000000000042.note", strings.NewReader("signed checkpoint")); err != nil {
		t.Fatal(err)
	}
	mc, err := minio.New(endpoint, &minio.Options{Creds: credentials.NewStaticV4(access, secret, "")})
	if err != nil {
		t.Fatal(err)
	}
	obj := "audit/checkpoints/00000000000000000042.note"
	mode, until, err := mc.GetObjectRetention(ctx, bucket, obj, "")
	if err != nil {
		t.Fatal(err)
	}
	if mode == nil || *mode != minio.Compliance || until == nil || until.Before(before.Add(23*time.Hour)) {
		t.Fatalf("retention = %v until %v, want COMPLIANCE for a day", mode, until)
	}
	if _, err := l.Put(ctx, "checkpoints/00000000000000000042.note", strings.NewReader("rewritten")); !errors.Is(err, tufota.ErrConflict) {
		t.Fatalf("second Put = %v, want a conflict", err)
	}
	if err := l.Delete(ctx, "checkpoints/00000000000000000042.note"); !errors.Is(err, tufota.ErrForbidden) {
		t.Fatalf("Delete = %v, want forbidden", err)
	}
	st, err := mc.StatObject(ctx, bucket, obj, minio.StatObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// S3 itself refuses to delete the locked version, even to the root user.
	if err := mc.RemoveObject(ctx, bucket, obj, minio.RemoveObjectOptions{VersionID: st.VersionID}); err == nil {
		t.Fatal("S3 deleted a version under COMPLIANCE retention")
	}
	if err := mc.RemoveObject(ctx, bucket, obj, minio.RemoveObjectOptions{VersionID: st.VersionID, GovernanceBypass: true}); err == nil {
		t.Fatal("S3 deleted a COMPLIANCE version with governance bypass")
	}
	got, err := l.Open(ctx, "checkpoints/00000000000000000042.note")
	if err != nil {
		t.Fatal(err)
	}
	got.Close()

	// A bucket without Object Lock is refused with a clear error.
	plain := randomBucket("tufota-nolock-")
	if err := mc.MakeBucket(ctx, plain, minio.MakeBucketOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = mc.RemoveBucket(context.Background(), plain) })
	_, err = storage.OpenLockedS3(ctx, "s3://"+plain+"?endpoint="+endpoint+"&secure=false&object-lock=compliance", creds)
	if !errors.Is(err, tufota.ErrInvalid) || !strings.Contains(err.Error(), "Object Lock") {
		t.Fatalf("OpenLockedS3 of a bucket without object lock = %v, want EInvalid naming Object Lock", err)
	}
}

func TestLockedS3URL(t *testing.T) {
	t.Parallel()
	for _, u := range []string{
		"s3://b?endpoint=x&object-lock=governance",
		"s3://b?endpoint=x&object-lock=compliance&retention=0d",
		"s3://b?endpoint=x&object-lock=compliance&retention=1h",
		"s3://b?endpoint=x&object-lock=compliance&retention=forever",
		"file:/tmp/x",
	} {
		if _, err := storage.OpenLockedS3(context.Background(), u); !errors.Is(err, tufota.ErrInvalid) {
			t.Errorf("OpenLockedS3(%q) = %v, want EInvalid", u, err)
		}
	}
	if !storage.IsObjectLockURL("s3://b/p?endpoint=x&object-lock=compliance") || storage.IsObjectLockURL("s3://b/p?endpoint=x") {
		t.Error("IsObjectLockURL is wrong")
	}
}
