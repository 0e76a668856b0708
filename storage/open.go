package storage

import (
	"context"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/tufota/tufota"
)

// BlobsOption adjusts OpenBlobs.
type BlobsOption func(*S3Config)

// WithS3Credentials gives the static credentials of an s3:// store (cmd
// passes AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY).
func WithS3Credentials(accessKey, secretKey string) BlobsOption {
	return func(c *S3Config) { c.AccessKey, c.SecretKey = accessKey, secretKey }
}

// WithS3CredentialsFile names an AWS shared credentials file and profile,
// used when no static credentials are given.
func WithS3CredentialsFile(path, profile string) BlobsOption {
	return func(c *S3Config) { c.CredentialsFile, c.Profile = path, profile }
}

// WithCreateBucket makes OpenBlobs create a missing bucket (tufota init).
func WithCreateBucket() BlobsOption {
	return func(c *S3Config) { c.CreateBucket = true }
}

// OpenBlobs opens the blob store named by rawURL:
//
//   - "" : a File store in dataDir;
//   - "file:DIR": a File store in DIR (relative to dataDir unless absolute);
//   - "s3://BUCKET/PREFIX?endpoint=HOST:PORT&region=R&secure=true|false&sse=s3|kms:KEYID":
//     an S3 store (secure defaults to true; endpoint to s3.amazonaws.com).
//
// The returned store has a Close method (it implements io.Closer); call it
// when done. Errors: tufota.ErrInvalid for a malformed URL or unknown
// parameter, and NewFile's or NewS3's errors.
func OpenBlobs(ctx context.Context, rawURL, dataDir string, opts ...BlobsOption) (Blobs, error) {
	switch {
	case rawURL == "":
		if dataDir == "" {
			return nil, tufota.Errorf(tufota.EInvalid, "open blob store: no URL and no data directory")
		}
		return NewFile(dataDir)
	case strings.HasPrefix(rawURL, "file:"):
		dir := strings.TrimPrefix(strings.TrimPrefix(rawURL, "file:"), "//")
		if dir == "" {
			return nil, tufota.Errorf(tufota.EInvalid, "open blob store %q: empty directory", rawURL)
		}
		if !filepath.IsAbs(dir) && dataDir != "" {
			dir = filepath.Join(dataDir, dir)
		}
		return NewFile(dir)
	case strings.HasPrefix(rawURL, "s3://"):
		cfg, err := ParseS3URL(rawURL)
		if err != nil {
			return nil, err
		}
		for _, o := range opts {
			o(&cfg)
		}
		return NewS3(ctx, cfg)
	default:
		return nil, tufota.Errorf(tufota.EInvalid, "open blob store %q: want file:DIR or s3://BUCKET/PREFIX?endpoint=...", rawURL)
	}
}

// ParseS3URL parses "s3://BUCKET/PREFIX?endpoint=HOST:PORT&region=..&secure=true|false&sse=.."
// into an S3Config without credentials. Unknown parameters are refused.
func ParseS3URL(rawURL string) (S3Config, error) {
	u, err := url.Parse(rawURL)
	if err != nil || u.Scheme != "s3" || u.Host == "" {
		return S3Config{}, tufota.Errorf(tufota.EInvalid, "s3 URL %q: want s3://BUCKET/PREFIX?endpoint=HOST:PORT", rawURL)
	}
	if u.User != nil {
		return S3Config{}, tufota.Errorf(tufota.EInvalid, "s3 URL: credentials do not belong in the URL; use the environment")
	}
	cfg := S3Config{Bucket: u.Host, Prefix: strings.Trim(u.Path, "/"), Endpoint: "s3.amazonaws.com", Secure: true}
	for k, vs := range u.Query() {
		v := vs[len(vs)-1]
		switch k {
		case "endpoint":
			cfg.Endpoint = v
		case "region":
			cfg.Region = v
		case "secure":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return S3Config{}, tufota.Errorf(tufota.EInvalid, "s3 URL %q: secure=%q is not true or false", rawURL, v)
			}
			cfg.Secure = b
		case "sse":
			cfg.SSE = v
		case "part_size":
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				return S3Config{}, tufota.Errorf(tufota.EInvalid, "s3 URL %q: part_size=%q is not a byte count", rawURL, v)
			}
			cfg.PartSize = n
		default:
			return S3Config{}, tufota.Errorf(tufota.EInvalid, "s3 URL %q: unknown parameter %q (want endpoint, region, secure, sse, part_size)", rawURL, k)
		}
	}
	if cfg.Prefix != "" {
		if err := ValidKey(cfg.Prefix); err != nil {
			return S3Config{}, tufota.Errorf(tufota.EInvalid, "s3 URL %q: prefix: %w", rawURL, err)
		}
	}
	if _, err := parseSSE(cfg.SSE); err != nil {
		return S3Config{}, err
	}
	return cfg, nil
}
