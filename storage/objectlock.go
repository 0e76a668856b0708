package storage

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/tufota/tufota"
)

// DefaultLockRetention is the retention of a write-once archive whose URL
// names none: six years (2190 days), the HIPAA documentation retention.
const DefaultLockRetention = 2190 * 24 * time.Hour

// LockedS3 is a write-once blob store on an S3 bucket with Object Lock
// enabled: every Put writes a new object version locked in COMPLIANCE mode
// until the retention ends (nobody, not even the bucket's root account,
// can delete or shorten it before then), Put refuses to overwrite an
// existing key, and Delete always refuses. It is meant for audit
// checkpoints and exports.
//
// Errors: Put of an existing key is tufota.ErrConflict; Delete is
// tufota.ErrForbidden; the rest as S3's. A LockedS3 is safe for concurrent
// use by multiple goroutines.
type LockedS3 struct {
	s         *S3
	retention time.Duration
	now       func() time.Time
}

var _ Blobs = (*LockedS3)(nil)

// IsObjectLockURL reports whether rawURL asks for a write-once archive (an
// s3:// URL with an object-lock parameter).
func IsObjectLockURL(rawURL string) bool {
	u, err := url.Parse(rawURL)
	return err == nil && u.Scheme == "s3" && u.Query().Has("object-lock")
}

// OpenLockedS3 opens the write-once archive named by
// "s3://BUCKET/PREFIX?endpoint=...&object-lock=compliance&retention=2190d"
// (every other parameter as in OpenBlobs; retention in days "Nd" or a Go
// duration, default DefaultLockRetention). With WithCreateBucket a missing
// bucket is created with Object Lock enabled. It fails with
// tufota.ErrInvalid for a bad URL or a mode other than compliance, and with
// tufota.ErrInvalid when the bucket exists without Object Lock (which can
// only be enabled when a bucket is created on MinIO, and needs versioning
// on AWS).
func OpenLockedS3(ctx context.Context, rawURL string, opts ...BlobsOption) (*LockedS3, error) {
	u, err := url.Parse(rawURL)
	if err != nil || u.Scheme != "s3" {
		return nil, tufota.Errorf(tufota.EInvalid, "archive URL %q: want s3://BUCKET/PREFIX?endpoint=...&object-lock=compliance&retention=2190d", rawURL)
	}
	q := u.Query()
	if mode := q.Get("object-lock"); !strings.EqualFold(mode, "compliance") {
		return nil, tufota.Errorf(tufota.EInvalid, "archive URL: object-lock=%q: only compliance mode is supported (governance mode can be bypassed)", mode)
	}
	retention := DefaultLockRetention
	if r := q.Get("retention"); r != "" {
		if retention, err = parseRetention(r); err != nil {
			return nil, err
		}
	}
	q.Del("object-lock")
	q.Del("retention")
	u.RawQuery = q.Encode()
	cfg, err := ParseS3URL(u.String())
	if err != nil {
		return nil, err
	}
	for _, o := range opts {
		o(&cfg)
	}
	cfg.ObjectLocking = true // when WithCreateBucket creates it
	s, err := NewS3(ctx, cfg)
	if err != nil {
		return nil, err
	}
	enabled, _, _, _, err := s.client.GetObjectLockConfig(ctx, cfg.Bucket)
	if err != nil && minio.ToErrorResponse(err).Code != "ObjectLockConfigurationNotFoundError" {
		return nil, s3Err("read object lock configuration of bucket", cfg.Bucket, err)
	}
	if enabled != "Enabled" {
		return nil, tufota.Errorf(tufota.EInvalid,
			"archive: bucket %q does not have S3 Object Lock enabled; create it with object locking (aws s3api create-bucket --object-lock-enabled-for-bucket, mc mb --with-lock)", cfg.Bucket)
	}
	return &LockedS3{s: s, retention: retention, now: time.Now}, nil
}

func parseRetention(s string) (time.Duration, error) {
	var d time.Duration
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.ParseInt(n, 10, 64)
		if err != nil || days <= 0 || days > 36500 {
			return 0, tufota.Errorf(tufota.EInvalid, "archive URL: retention=%q: want a number of days such as 2190d", s)
		}
		d = time.Duration(days) * 24 * time.Hour
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil || d <= 0 {
			return 0, tufota.Errorf(tufota.EInvalid, "archive URL: retention=%q: want days (2190d) or a duration", s)
		}
	}
	if d < 24*time.Hour {
		return 0, tufota.Errorf(tufota.EInvalid, "archive URL: retention %s is under one day", d)
	}
	return d, nil
}

// Retention returns how long each written object is locked.
func (l *LockedS3) Retention() time.Duration { return l.retention }

// S3 returns the underlying store.
func (l *LockedS3) S3() *S3 { return l.s }

// Close releases nothing.
func (l *LockedS3) Close() error { return nil }

// Put writes r under key as a new object locked in COMPLIANCE mode until
// now + retention. It refuses (tufota.ErrConflict) a key that exists,
// checked before the upload and again by the conditional write
// (If-None-Match: *) where S3 supports it.
func (l *LockedS3) Put(ctx context.Context, key string, r io.Reader) (int64, error) {
	if err := ValidKey(key); err != nil {
		return 0, fmt.Errorf("archive put %q: %w", key, err)
	}
	if _, err := l.s.Stat(ctx, key); err == nil {
		return 0, tufota.Errorf(tufota.EConflict, "archive put %q: the object exists and the archive is write-once", key)
	} else if tufota.ErrorCode(err) != tufota.ENotFound {
		return 0, err
	}
	opts := minio.PutObjectOptions{
		ContentType:          "application/octet-stream",
		ServerSideEncryption: l.s.sse,
		PartSize:             l.s.partSize,
		Mode:                 minio.Compliance,
		RetainUntilDate:      l.now().Add(l.retention).UTC(),
		SendContentMd5:       true, // S3 requires Content-MD5 (or a checksum) with object lock
	}
	opts.SetMatchETagExcept("*")
	info, err := l.s.client.PutObject(ctx, l.s.bucket, l.s.ObjectName(key), &ctxReader{ctx: ctx, r: r}, -1, opts)
	if err != nil {
		if minio.ToErrorResponse(err).Code == minio.PreconditionFailed {
			return 0, tufota.Errorf(tufota.EConflict, "archive put %q: the object exists and the archive is write-once", key)
		}
		return 0, s3Err("archive put", key, err)
	}
	return info.Size, nil
}

// Open opens the newest version of the blob.
func (l *LockedS3) Open(ctx context.Context, key string) (Object, error) { return l.s.Open(ctx, key) }

// Stat describes the newest version of the blob.
func (l *LockedS3) Stat(ctx context.Context, key string) (Info, error) { return l.s.Stat(ctx, key) }

// List lists the archive's blobs.
func (l *LockedS3) List(ctx context.Context, prefix string) ([]Info, error) {
	return l.s.List(ctx, prefix)
}

// Delete always fails with tufota.ErrForbidden: the archive is write-once.
func (l *LockedS3) Delete(_ context.Context, key string) error {
	return tufota.Errorf(tufota.EForbidden, "archive delete %q: the archive is write-once (S3 Object Lock, compliance mode)", key)
}
