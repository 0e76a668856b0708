package storage_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"

	"github.com/minio/minio-go/v7"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/internal/testenv"
	"github.com/tufota/tufota/storage"
	"github.com/tufota/tufota/storage/storagetest"
)

// newMinIOBucket makes a fresh bucket on the test MinIO and removes it, with
// its objects, when the test ends. It returns an S3 config for it.
func newMinIOBucket(t *testing.T) storage.S3Config {
	t.Helper()
	endpoint, access, secret := testenv.MinIO(t)
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	cfg := storage.S3Config{
		Endpoint: endpoint, Bucket: "tufota-test-" + hex.EncodeToString(b), Prefix: "some/prefix",
		AccessKey: access, SecretKey: secret, CreateBucket: true,
	}
	ctx := context.Background()
	s, err := storage.NewS3(ctx, cfg)
	if err != nil {
		t.Fatalf("NewS3: %v", err)
	}
	t.Cleanup(func() {
		c := s.Client()
		for oi := range c.ListObjects(ctx, cfg.Bucket, minio.ListObjectsOptions{Recursive: true}) {
			if oi.Err == nil {
				_ = c.RemoveObject(ctx, cfg.Bucket, oi.Key, minio.RemoveObjectOptions{})
			}
		}
		for u := range c.ListIncompleteUploads(ctx, cfg.Bucket, "", true) {
			_ = c.RemoveIncompleteUpload(ctx, cfg.Bucket, u.Key)
		}
		if err := c.RemoveBucket(ctx, cfg.Bucket); err != nil {
			t.Errorf("remove bucket %s: %v", cfg.Bucket, err)
		}
	})
	cfg.CreateBucket = false
	return cfg
}

func TestS3Conformance(t *testing.T) {
	t.Parallel()
	storagetest.RunBlobs(t, func(t *testing.T) storage.Blobs {
		s, err := storage.NewS3(context.Background(), newMinIOBucket(t))
		if err != nil {
			t.Fatalf("NewS3: %v", err)
		}
		return s
	})
}

// TestS3Layout checks where keys land in the bucket and that objects outside
// the store's prefix are invisible to it.
func TestS3Layout(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cfg := newMinIOBucket(t)
	s, err := storage.NewS3(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(ctx, "metadata/1.root.json", strings.NewReader("{}")); err != nil {
		t.Fatal(err)
	}
	c := s.Client()
	if _, err := c.StatObject(ctx, cfg.Bucket, "some/prefix/metadata/1.root.json", minio.StatObjectOptions{}); err != nil {
		t.Fatalf("object not at some/prefix/metadata/1.root.json: %v", err)
	}
	for _, name := range []string{"outside.json", "some/prefixx/y", "some/prefix/dir-marker/"} {
		if _, err := c.PutObject(ctx, cfg.Bucket, name, strings.NewReader("x"), 1, minio.PutObjectOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	infos, err := s.List(ctx, "")
	if err != nil || len(infos) != 1 || infos[0].Key != "metadata/1.root.json" {
		t.Fatalf("List = %+v, %v; want only metadata/1.root.json", infos, err)
	}
}

// TestS3ReadPinnedToVersion checks that an Object opened before an overwrite
// never mixes bytes of two versions when it seeks.
func TestS3ReadPinnedToVersion(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, err := storage.NewS3(ctx, newMinIOBucket(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(ctx, "k", strings.NewReader(strings.Repeat("a", 100))); err != nil {
		t.Fatal(err)
	}
	o, err := s.Open(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	buf := make([]byte, 10)
	if _, err := io.ReadFull(o, buf); err != nil || string(buf) != strings.Repeat("a", 10) {
		t.Fatalf("first read = %q, %v", buf, err)
	}
	if _, err := s.Put(ctx, "k", strings.NewReader(strings.Repeat("b", 100))); err != nil {
		t.Fatal(err)
	}
	if _, err := o.Seek(50, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	n, err := io.ReadFull(o, buf)
	if err == nil && string(buf[:n]) != strings.Repeat("a", 10) {
		t.Fatalf("read after overwrite and seek = %q: bytes of the new version through an old Object", buf[:n])
	}
	if err != nil && !errors.Is(err, tufota.ErrConflict) {
		t.Fatalf("read after overwrite and seek: err = %v, want ErrConflict", err)
	}
}

func TestS3Unavailable(t *testing.T) {
	t.Parallel()
	// A closed port on loopback: connection refused, fast.
	_, err := storage.NewS3(context.Background(), storage.S3Config{Endpoint: "127.0.0.1:1", Bucket: "tufota-bucket", MaxRetries: 1})
	if !errors.Is(err, tufota.ErrUnavailable) {
		t.Fatalf("NewS3 on a dead endpoint: err = %v, want ErrUnavailable", err)
	}
}

func TestS3MissingBucket(t *testing.T) {
	t.Parallel()
	endpoint, access, secret := testenv.MinIO(t)
	_, err := storage.NewS3(context.Background(), storage.S3Config{Endpoint: endpoint, Bucket: "tufota-no-such-bucket",
		AccessKey: access, SecretKey: secret})
	if !errors.Is(err, tufota.ErrNotFound) {
		t.Fatalf("NewS3 on a missing bucket: err = %v, want ErrNotFound", err)
	}
	_, err = storage.NewS3(context.Background(), storage.S3Config{Endpoint: endpoint, Bucket: "tufota-no-such-bucket",
		AccessKey: access, SecretKey: "wrong-secret"})
	if !errors.Is(err, tufota.ErrUnavailable) || !strings.Contains(err.Error(), "credentials") {
		t.Fatalf("NewS3 with a wrong secret: err = %v, want ErrUnavailable about credentials", err)
	}
}

func TestParseS3URL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		url  string
		want storage.S3Config
		err  bool
	}{
		{url: "s3://bkt", want: storage.S3Config{Bucket: "bkt", Endpoint: "s3.amazonaws.com", Secure: true}},
		{url: "s3://bkt/a/b/?endpoint=127.0.0.1:9000&secure=false&region=eu&sse=kms:key-1&part_size=8388608",
			want: storage.S3Config{Bucket: "bkt", Prefix: "a/b", Endpoint: "127.0.0.1:9000", Region: "eu", SSE: "kms:key-1", PartSize: 8 << 20}},
		{url: "s3://bkt?sse=s3", want: storage.S3Config{Bucket: "bkt", Endpoint: "s3.amazonaws.com", Secure: true, SSE: "s3"}},
		{url: "s3://bkt?sse=aes", err: true},
		{url: "s3://bkt?sse=kms:", err: true},
		{url: "s3://bkt?secure=maybe", err: true},
		{url: "s3://bkt?endpont=typo", err: true},
		{url: "s3://bkt/../x", err: true},
		{url: "s3://bkt/a//b", err: true},
		{url: "s3://user:pw@bkt", err: true},
		{url: "s3:///nobucket", err: true},
		{url: "http://bkt", err: true},
	}
	for _, tc := range tests {
		got, err := storage.ParseS3URL(tc.url)
		if tc.err {
			if !errors.Is(err, tufota.ErrInvalid) {
				t.Errorf("ParseS3URL(%q): err = %v, want ErrInvalid", tc.url, err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseS3URL(%q) = %+v, %v; want %+v", tc.url, got, err, tc.want)
		}
	}
}

func TestOpenBlobs(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	for _, u := range []string{"", "file:blobs", "file:" + dir + "/abs"} {
		b, err := storage.OpenBlobs(ctx, u, dir)
		if err != nil {
			t.Fatalf("OpenBlobs(%q): %v", u, err)
		}
		if _, ok := b.(*storage.File); !ok {
			t.Fatalf("OpenBlobs(%q) = %T, want *storage.File", u, b)
		}
		_ = b.(io.Closer).Close()
	}
	for _, u := range []string{"file:", "ftp://x", "s3://b?bogus=1"} {
		if _, err := storage.OpenBlobs(ctx, u, dir); !errors.Is(err, tufota.ErrInvalid) {
			t.Errorf("OpenBlobs(%q): err = %v, want ErrInvalid", u, err)
		}
	}
}

func TestOpenBlobsS3(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	endpoint, access, secret := testenv.MinIO(t)
	cfg := newMinIOBucket(t)
	u := "s3://" + cfg.Bucket + "/pfx?endpoint=" + endpoint + "&secure=false"
	b, err := storage.OpenBlobs(ctx, u, "", storage.WithS3Credentials(access, secret))
	if err != nil {
		t.Fatalf("OpenBlobs(%q): %v", u, err)
	}
	if _, err := b.Put(ctx, "x", strings.NewReader("y")); err != nil {
		t.Fatal(err)
	}
	if _, err := b.(*storage.S3).Client().StatObject(ctx, cfg.Bucket, "pfx/x", minio.StatObjectOptions{}); err != nil {
		t.Fatalf("object not under the URL's prefix: %v", err)
	}
}
