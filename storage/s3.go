package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/minio/minio-go/v7/pkg/encrypt"

	"github.com/tufota/tufota"
)

// Defaults of S3Config.
const (
	// DefaultS3PartSize is the part size of multipart uploads: each
	// concurrent Put of a large blob buffers one part in memory, and an
	// object may have at most 10,000 parts (160 GiB at 16 MiB).
	DefaultS3PartSize = 16 << 20
	// s3SmallPut is the size up to which Put buffers the blob and sends it
	// in one PUT request instead of a multipart upload.
	s3SmallPut = 5 << 20
	// DefaultS3Retries is how many times a failing request is tried before
	// the error is returned, so that callers fail fast when S3 is down.
	DefaultS3Retries = 3
)

// S3Config configures an S3 blob store.
type S3Config struct {
	Endpoint  string // host[:port], e.g. "s3.eu-west-1.amazonaws.com" or "127.0.0.1:9000"
	Bucket    string
	Prefix    string // optional key prefix inside the bucket, e.g. "tufota/prod"
	Region    string // optional
	Secure    bool   // HTTPS
	AccessKey string // static credentials; see CredentialsFile for the alternative
	SecretKey string
	// CredentialsFile and Profile name an AWS shared credentials file, read
	// when AccessKey is empty. With neither, requests are anonymous.
	CredentialsFile string
	Profile         string
	// SSE selects server-side encryption at rest: "" (none, or the bucket's
	// default), "s3" (SSE-S3) or "kms:KEYID" (SSE-KMS with that key).
	SSE string
	// CreateBucket creates the bucket when it does not exist (tufota
	// init); otherwise a missing bucket is an error.
	CreateBucket bool
	// ObjectLocking creates the bucket (CreateBucket) with S3 Object Lock
	// enabled (see LockedS3).
	ObjectLocking bool
	// PartSize is the multipart upload part size; 0 means
	// DefaultS3PartSize. At least 5 MiB.
	PartSize uint64
	// MaxRetries is how many times a request is tried; 0 means
	// DefaultS3Retries.
	MaxRetries int
	// Transport overrides the HTTP transport (tests, custom CAs).
	Transport http.RoundTripper
}

// S3 is a blob store in an S3-compatible bucket (AWS S3, MinIO, ...), on
// minio-go. Each key is stored as the object Prefix/key.
//
// Put streams: blobs up to 5 MiB go up in one PUT, larger ones as a
// multipart upload of PartSize parts, so memory stays bounded whatever the
// size. S3 makes an object visible only when its upload completes, so Put is
// atomic; a failed or cancelled multipart upload leaves an invisible
// incomplete upload behind (configure the bucket's lifecycle rule
// AbortIncompleteMultipartUpload to reclaim the space). Move is a
// server-side copy followed by a delete of the source: the destination
// appears atomically, but for a moment both keys exist.
//
// Errors: NoSuchKey is tufota.ErrNotFound; network failures, timeouts, 5xx
// answers, a missing bucket and refused credentials are
// tufota.ErrUnavailable (a missing key also answers 403 AccessDenied when the
// credentials lack s3:ListBucket: grant it so that missing keys are
// reported as such); a blob overwritten while an Object reads it makes the
// read fail with tufota.ErrConflict.
//
// An S3 is safe for concurrent use by multiple goroutines.
type S3 struct {
	client   *minio.Client
	bucket   string
	prefix   string // "" or ending in "/"
	sse      encrypt.ServerSide
	partSize uint64
	// puts counts the Puts in progress per key, whose incomplete uploads
	// SweepIncomplete never aborts.
	mu   sync.Mutex
	puts map[string]int
}

var (
	_ Blobs   = (*S3)(nil)
	_ Mover   = (*S3)(nil)
	_ Sweeper = (*S3)(nil)
)

// NewS3 connects to the bucket described by cfg and checks that it exists
// (creating it if cfg.CreateBucket). It fails with tufota.ErrInvalid for a
// bad configuration, tufota.ErrNotFound for a missing bucket, and
// tufota.ErrUnavailable when S3 cannot be reached.
func NewS3(ctx context.Context, cfg S3Config) (*S3, error) {
	if cfg.Endpoint == "" || cfg.Bucket == "" {
		return nil, tufota.Errorf(tufota.EInvalid, "s3 blob store: endpoint and bucket are required")
	}
	prefix := strings.Trim(cfg.Prefix, "/")
	if prefix != "" {
		if err := ValidKey(prefix); err != nil {
			return nil, tufota.Errorf(tufota.EInvalid, "s3 blob store: prefix: %w", err)
		}
		prefix += "/"
	}
	sse, err := parseSSE(cfg.SSE)
	if err != nil {
		return nil, err
	}
	partSize := cfg.PartSize
	if partSize == 0 {
		partSize = DefaultS3PartSize
	}
	if partSize < 5<<20 {
		return nil, tufota.Errorf(tufota.EInvalid, "s3 blob store: part size %d is below S3's 5 MiB minimum", partSize)
	}
	retries := cfg.MaxRetries
	if retries <= 0 {
		retries = DefaultS3Retries
	}
	var creds *credentials.Credentials
	switch {
	case cfg.AccessKey != "":
		creds = credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, "")
	case cfg.CredentialsFile != "":
		creds = credentials.NewFileAWSCredentials(cfg.CredentialsFile, cfg.Profile)
	default:
		creds = credentials.New(&credentials.Static{}) // anonymous
	}
	transport := cfg.Transport
	if transport == nil {
		tr, err := minio.DefaultTransport(cfg.Secure)
		if err != nil {
			return nil, fmt.Errorf("s3 blob store: %w", err)
		}
		tr.DialContext = (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext
		tr.ResponseHeaderTimeout = 30 * time.Second
		transport = tr
	}
	client, err := minio.New(cfg.Endpoint, &minio.Options{
		Creds:      creds,
		Secure:     cfg.Secure,
		Region:     cfg.Region,
		Transport:  transport,
		MaxRetries: retries,
	})
	if err != nil {
		return nil, tufota.Errorf(tufota.EInvalid, "s3 blob store: %w", err)
	}
	s := &S3{client: client, bucket: cfg.Bucket, prefix: prefix, sse: sse, partSize: partSize, puts: make(map[string]int)}
	exists, err := client.BucketExists(ctx, cfg.Bucket)
	if err != nil {
		return nil, s3Err("check bucket", cfg.Bucket, err)
	}
	if !exists {
		if !cfg.CreateBucket {
			return nil, tufota.Errorf(tufota.ENotFound, "s3 blob store: bucket %q does not exist", cfg.Bucket)
		}
		err := client.MakeBucket(ctx, cfg.Bucket, minio.MakeBucketOptions{Region: cfg.Region, ObjectLocking: cfg.ObjectLocking})
		if err != nil && minio.ToErrorResponse(err).Code != minio.BucketAlreadyOwnedByYou {
			return nil, s3Err("create bucket", cfg.Bucket, err)
		}
	}
	return s, nil
}

func parseSSE(s string) (encrypt.ServerSide, error) {
	switch {
	case s == "":
		return nil, nil
	case s == "s3":
		return encrypt.NewSSE(), nil
	case strings.HasPrefix(s, "kms:") && len(s) > len("kms:"):
		sse, err := encrypt.NewSSEKMS(strings.TrimPrefix(s, "kms:"), nil)
		if err != nil {
			return nil, tufota.Errorf(tufota.EInvalid, "s3 blob store: sse %q: %w", s, err)
		}
		return sse, nil
	default:
		return nil, tufota.Errorf(tufota.EInvalid, `s3 blob store: sse %q: want "", "s3" or "kms:KEYID"`, s)
	}
}

// Bucket returns the bucket name.
func (s *S3) Bucket() string { return s.bucket }

// Client returns the underlying minio-go client, for features beyond Blobs
// (presigned URLs, object lock).
func (s *S3) Client() *minio.Client { return s.client }

// ObjectName returns the object name that key is stored under.
func (s *S3) ObjectName(key string) string { return s.prefix + key }

// Close releases nothing; it exists so that S3 and File close alike.
func (s *S3) Close() error { return nil }

// Put stores r under key: atomically, streaming, honouring ctx.
func (s *S3) Put(ctx context.Context, key string, r io.Reader) (int64, error) {
	if err := ValidKey(key); err != nil {
		return 0, fmt.Errorf("put %q: %w", key, err)
	}
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("put %q: %w", key, err)
	}
	s.mu.Lock()
	s.puts[key]++
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.puts[key]--; s.puts[key] <= 0 {
			delete(s.puts, key)
		}
	}()
	src := &ctxReader{ctx: ctx, r: r}
	head, err := io.ReadAll(io.LimitReader(src, s3SmallPut+1))
	if err != nil {
		return 0, fmt.Errorf("put %q: read source: %w", key, err)
	}
	opts := minio.PutObjectOptions{
		ContentType:          "application/octet-stream",
		ServerSideEncryption: s.sse,
		PartSize:             s.partSize,
	}
	var info minio.UploadInfo
	if len(head) <= s3SmallPut {
		info, err = s.client.PutObject(ctx, s.bucket, s.ObjectName(key), bytes.NewReader(head), int64(len(head)), opts)
	} else {
		body := io.MultiReader(bytes.NewReader(head), src)
		info, err = s.client.PutObject(ctx, s.bucket, s.ObjectName(key), body, -1, opts)
	}
	if err != nil {
		if src.err != nil { // the source failed, not S3
			return 0, fmt.Errorf("put %q: read source: %w", key, src.err)
		}
		return 0, s3Err("put", key, err)
	}
	return info.Size, nil
}

// SweepIncomplete aborts the incomplete multipart uploads under the folder
// prefix ("" for the whole store) initiated before before, except those of
// a Put in progress in this process. AWS S3 lists them by prefix; MinIO
// lists incomplete uploads only for an exact object name, so there it finds
// none, and MinIO's own expiry of stale uploads (api stale_uploads_expiry,
// 24 hours by default) reclaims them instead. On AWS a lifecycle rule
// AbortIncompleteMultipartUpload does the same for uploads of crashed
// processes whatever the prefix.
func (s *S3) SweepIncomplete(ctx context.Context, prefix string, before time.Time) (int, error) {
	if prefix != "" && (!strings.HasSuffix(prefix, "/") || ValidKey(strings.TrimSuffix(prefix, "/")) != nil) {
		return 0, tufota.Errorf(tufota.EInvalid, "sweep %q: want \"\" or a folder ending in \"/\"", prefix)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // stops the listing goroutine if we return early
	removed := 0
	for u := range s.client.ListIncompleteUploads(ctx, s.bucket, s.prefix+prefix, true) {
		if u.Err != nil {
			return removed, s3Err("sweep", prefix, u.Err)
		}
		key := strings.TrimPrefix(u.Key, s.prefix)
		s.mu.Lock()
		live := s.puts[key] > 0
		s.mu.Unlock()
		if live || !u.Initiated.Before(before) {
			continue
		}
		if err := (minio.Core{Client: s.client}).AbortMultipartUpload(ctx, s.bucket, u.Key, u.UploadID); err != nil && minio.ToErrorResponse(err).Code != "NoSuchUpload" {
			return removed, s3Err("sweep", key, err)
		}
		removed++
	}
	if err := ctx.Err(); err != nil {
		return removed, fmt.Errorf("sweep %q: %w", prefix, err)
	}
	return removed, nil
}

// ctxReader fails reads once ctx is done and remembers the source's own
// error, so that Put can tell a failing source from a failing S3.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
	err error
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		c.err = err
		return 0, err
	}
	n, err := c.r.Read(p)
	if err != nil && err != io.EOF {
		c.err = err
	}
	return n, err
}

// s3Object is an open blob: the body of the GET made by Open, streamed as
// it is read. Seek drops the body; the next Read asks for a range of the
// same version (If-Match on the ETag seen at Open), so an Object never mixes
// two versions of a blob: after an overwrite, a read past a Seek fails with
// tufota.ErrConflict instead.
type s3Object struct {
	ctx  context.Context
	s    *S3
	key  string
	etag string
	info Info
	body io.ReadCloser // nil after a Seek, until the next Read
	pos  int64
}

func (o *s3Object) Read(p []byte) (int, error) {
	if o.pos >= o.info.Size {
		return 0, io.EOF
	}
	if o.body == nil {
		opts := minio.GetObjectOptions{}
		if err := opts.SetMatchETag(o.etag); err != nil {
			return 0, s3Err("read", o.key, err)
		}
		if o.pos > 0 {
			if err := opts.SetRange(o.pos, 0); err != nil {
				return 0, s3Err("read", o.key, err)
			}
		}
		body, _, _, err := minio.Core{Client: o.s.client}.GetObject(o.ctx, o.s.bucket, o.s.ObjectName(o.key), opts)
		if err != nil {
			return 0, s3Err("read", o.key, err)
		}
		o.body = body
	}
	n, err := o.body.Read(p)
	o.pos += int64(n)
	switch {
	case err == io.EOF && o.pos < o.info.Size:
		return n, s3Err("read", o.key, io.ErrUnexpectedEOF)
	case err != nil && err != io.EOF:
		return n, s3Err("read", o.key, err)
	}
	return n, err
}

func (o *s3Object) Seek(offset int64, whence int) (int64, error) {
	var pos int64
	switch whence {
	case io.SeekStart:
		pos = offset
	case io.SeekCurrent:
		pos = o.pos + offset
	case io.SeekEnd:
		pos = o.info.Size + offset
	default:
		return o.pos, tufota.Errorf(tufota.EInvalid, "seek %q: bad whence %d", o.key, whence)
	}
	if pos < 0 {
		return o.pos, tufota.Errorf(tufota.EInvalid, "seek %q: negative position %d", o.key, pos)
	}
	if pos != o.pos && o.body != nil {
		_ = o.body.Close()
		o.body = nil
	}
	o.pos = pos
	return pos, nil
}

func (o *s3Object) Close() error {
	if o.body != nil {
		err := o.body.Close()
		o.body = nil
		return err
	}
	return nil
}

func (o *s3Object) Info() Info { return o.info }

// Open opens the blob for reading: it starts the download at once and
// streams it as the Object is read; reads use ctx, so keep ctx alive until
// the Object is closed. The Object seeks with ranged GETs.
func (s *S3) Open(ctx context.Context, key string) (Object, error) {
	if err := ValidKey(key); err != nil {
		return nil, fmt.Errorf("open %q: %w", key, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("open %q: %w", key, err)
	}
	body, oi, _, err := minio.Core{Client: s.client}.GetObject(ctx, s.bucket, s.ObjectName(key), minio.GetObjectOptions{})
	if err != nil {
		return nil, s3Err("open", key, err)
	}
	return &s3Object{ctx: ctx, s: s, key: key, etag: oi.ETag, body: body,
		info: Info{Key: key, Size: oi.Size, ModTime: oi.LastModified}}, nil
}

// Stat describes the blob.
func (s *S3) Stat(ctx context.Context, key string) (Info, error) {
	if err := ValidKey(key); err != nil {
		return Info{}, fmt.Errorf("stat %q: %w", key, err)
	}
	oi, err := s.client.StatObject(ctx, s.bucket, s.ObjectName(key), minio.StatObjectOptions{})
	if err != nil {
		return Info{}, s3Err("stat", key, err)
	}
	return Info{Key: key, Size: oi.Size, ModTime: oi.LastModified}, nil
}

// Delete removes the blob; a missing blob is not an error.
func (s *S3) Delete(ctx context.Context, key string) error {
	if err := ValidKey(key); err != nil {
		return fmt.Errorf("delete %q: %w", key, err)
	}
	err := s.client.RemoveObject(ctx, s.bucket, s.ObjectName(key), minio.RemoveObjectOptions{})
	if err != nil && minio.ToErrorResponse(err).Code != minio.NoSuchKey {
		return s3Err("delete", key, err)
	}
	return nil
}

// List returns the blobs whose keys start with prefix, sorted by key. Objects
// under the store's prefix whose names are not valid keys are skipped.
func (s *S3) List(ctx context.Context, prefix string) ([]Info, error) {
	if i := strings.LastIndexByte(prefix, '/'); i >= 0 {
		if err := ValidKey(prefix[:i]); err != nil {
			return nil, fmt.Errorf("list %q: %w", prefix, err)
		}
	}
	if strings.ContainsAny(prefix, "\\\x00") {
		return nil, tufota.Errorf(tufota.EInvalid, "list %q: prefix contains a backslash or NUL", prefix)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // stops the listing goroutine if we return early
	var out []Info
	for oi := range s.client.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: s.prefix + prefix, Recursive: true}) {
		if oi.Err != nil {
			return nil, s3Err("list", prefix, oi.Err)
		}
		key := strings.TrimPrefix(oi.Key, s.prefix)
		if ValidKey(key) != nil {
			continue
		}
		out = append(out, Info{Key: key, Size: oi.Size, ModTime: oi.LastModified})
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("list %q: %w", prefix, err)
	}
	slices.SortFunc(out, func(a, b Info) int { return strings.Compare(a.Key, b.Key) })
	return out, nil
}

// Move copies the blob server-side to the new key (a multipart copy when
// it is over 5 GiB) and deletes the source.
func (s *S3) Move(ctx context.Context, from, to string) error {
	if err := ValidKey(from); err != nil {
		return fmt.Errorf("move %q: %w", from, err)
	}
	if err := ValidKey(to); err != nil {
		return fmt.Errorf("move to %q: %w", to, err)
	}
	if from == to {
		_, err := s.Stat(ctx, from)
		return err
	}
	dst := minio.CopyDestOptions{Bucket: s.bucket, Object: s.ObjectName(to), Encryption: s.sse}
	src := minio.CopySrcOptions{Bucket: s.bucket, Object: s.ObjectName(from)}
	if _, err := s.client.ComposeObject(ctx, dst, src); err != nil {
		return s3Err("move "+from+" to", to, err)
	}
	if err := s.client.RemoveObject(ctx, s.bucket, s.ObjectName(from), minio.RemoveObjectOptions{}); err != nil {
		return s3Err("move: delete source", from, err)
	}
	return nil
}

// s3Err translates a minio-go error at the store's boundary.
func s3Err(op, key string, err error) error {
	var te *tufota.Error
	switch {
	case errors.As(err, &te):
		return fmt.Errorf("%s %q: %w", op, key, err)
	case errors.Is(err, context.Canceled):
		return fmt.Errorf("%s %q: %w", op, key, err)
	case errors.Is(err, context.DeadlineExceeded):
		return tufota.Errorf(tufota.EUnavailable, "storage unavailable: %s %q: %w", op, key, err)
	}
	resp := minio.ToErrorResponse(err)
	switch resp.Code {
	case minio.NoSuchKey, "NoSuchVersion":
		return tufota.Errorf(tufota.ENotFound, "%s %q: no such blob: %w", op, key, err)
	case minio.PreconditionFailed:
		return tufota.Errorf(tufota.EConflict, "%s %q: the blob changed while it was read: %w", op, key, err)
	case minio.NoSuchBucket:
		return tufota.Errorf(tufota.EUnavailable, "storage unavailable: %s %q: bucket is missing: %w", op, key, err)
	case minio.AccessDenied, "InvalidAccessKeyId", "SignatureDoesNotMatch":
		return tufota.Errorf(tufota.EUnavailable, "storage unavailable: %s %q: credentials refused: %w", op, key, err)
	case "InvalidArgument", "InvalidObjectName", "InvalidBucketName", "KeyTooLongError":
		return tufota.Errorf(tufota.EInvalid, "%s %q: %w", op, key, err)
	case "EntityTooLarge":
		return tufota.Errorf(tufota.ETooLarge, "%s %q: %w", op, key, err)
	case "XMinioStorageFull", "QuotaExceeded":
		return tufota.Errorf(tufota.ENoSpace, "storage full: blob store: %s %q: %w", op, key, err)
	}
	if resp.StatusCode == http.StatusInsufficientStorage {
		return tufota.Errorf(tufota.ENoSpace, "storage full: blob store: %s %q: %w", op, key, err)
	}
	var ne net.Error
	var ue *url.Error
	switch {
	case resp.StatusCode >= 500, resp.Code == "SlowDown", resp.Code == "XMinioServerNotInitialized",
		errors.As(err, &ne), errors.As(err, &ue), errors.Is(err, syscall.ECONNREFUSED),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return tufota.Errorf(tufota.EUnavailable, "storage unavailable: %s %q: %w", op, key, err)
	}
	return fmt.Errorf("%s %q: %w", op, key, err)
}
