package client

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/config"
	"github.com/theupdateframework/go-tuf/v2/metadata/updater"

	"github.com/tufota/tufota"
)

// RepositoryConfig configures a Repository. TrustedRoot, MetadataURL and
// MetadataDir are required; TargetsURL is required to download.
type RepositoryConfig struct {
	// TrustedRoot is the root.json the program shipped with: the trust
	// anchor. Once a newer root has been verified, the one persisted in
	// MetadataDir takes its place.
	TrustedRoot []byte
	// MetadataURL is the base URL of the repository's metadata:
	// MetadataURL/timestamp.json, MetadataURL/2.root.json...
	MetadataURL string
	// TargetsURL is the base URL of the target files. A target PATH is
	// fetched from TargetsURL/PATH, or, when the root enables consistent
	// snapshots, from TargetsURL/DIR/HASH.NAME with the hex sha256 of the
	// target (its sha512 when only that is signed).
	TargetsURL string
	// MetadataDir holds the verified metadata cache and, under downloads/,
	// the partial files of interrupted downloads. It is created if
	// missing; give each repository its own.
	MetadataDir string
	// Now is the clock metadata expiry is decided against; nil means
	// time.Now. It is read once per Refresh.
	Now func() time.Time
	// HTTPClient makes every request; nil means a client of the package's
	// own with connect, TLS and response-header timeouts (never
	// http.DefaultClient). Add credentials, if the repository needs any,
	// in its Transport.
	HTTPClient *http.Client
	// RequestTimeout bounds each metadata request and each silent stretch
	// of a target download. Default 30s.
	RequestTimeout time.Duration
	// Retry bounds retries of requests that got no answer or a temporary
	// failure; the zero value means the defaults.
	Retry RetryPolicy
	// Logger receives the repository's logs; nil discards them.
	Logger *slog.Logger
}

// Target is a target file as the verified TUF metadata signs it.
type Target struct {
	// Path is the target path, as listed in targets metadata.
	Path string
	// Length is the signed length in bytes.
	Length int64
	// Hashes are the signed hashes, algorithm to lowercase hex.
	Hashes map[string]string
	// Custom is the target's signed custom metadata, or nil.
	Custom json.RawMessage
}

// Repository is a TUF client for one repository, any repository that
// follows the TUF specification (1.0.x): it refreshes the metadata from a
// trusted root (root rotation, timestamp, snapshot, targets, with every
// rollback, freeze and mix-and-match check of the client workflow, through
// go-tuf v2's updater), looks targets up (delegated roles searched in
// order, fetched on demand) and downloads them to disk, streamed and
// verified.
//
// One Refresh serves any number of Target look-ups until the next Refresh.
// Expiry is decided against RepositoryConfig.Now, read at Refresh: delegated
// metadata fetched by a later Target look-up is checked against the same
// instant.
//
// A Repository is safe for concurrent use: Refresh and Target are
// serialised; downloads run concurrently, each to its own destination
// (two downloads of the same target take turns with its partial file).
type Repository struct {
	t          transport
	cfg        RepositoryConfig
	targets    *url.URL // nil when TargetsURL is empty
	now        func() time.Time
	auth       func(*http.Request) // credentials for metadata requests
	authTarget bool                // send them with target requests too

	mu    sync.Mutex
	up    *updater.Updater // nil before the first successful Refresh
	fetch *metadataFetcher
	// consistent caches the verified root's consistent_snapshot for
	// downloads: 0 unknown (no Refresh yet), 1 on, 2 off.
	consistent atomic.Int32

	partsMu sync.Mutex
	parts   map[string]chan struct{} // partial files being written; closed when done
}

// OpenRepository validates cfg and returns a Repository; it creates
// MetadataDir and makes no request. The trusted root must parse as root
// metadata (its signatures are checked by Refresh). Errors wrap
// tufota.ErrInvalid for a bad configuration.
func OpenRepository(cfg RepositoryConfig) (*Repository, error) {
	return openRepository(cfg, newTransport(cfg.HTTPClient, cfg.RequestTimeout, cfg.Retry, cfg.Logger), nil, false)
}

func openRepository(cfg RepositoryConfig, t transport, auth func(*http.Request), authTarget bool) (*Repository, error) {
	bad := func(format string, args ...any) (*Repository, error) {
		return nil, tufota.Errorf(tufota.EInvalid, "repository config: "+format, args...)
	}
	if err := checkBaseURL(cfg.MetadataURL); err != nil {
		return bad("metadata URL: %v", err)
	}
	var targets *url.URL
	if cfg.TargetsURL != "" {
		if err := checkBaseURL(cfg.TargetsURL); err != nil {
			return bad("targets URL: %v", err)
		}
		targets, _ = url.Parse(strings.TrimSuffix(cfg.TargetsURL, "/"))
		targets.RawPath = ""
	}
	if _, err := metadata.Root().FromBytes(cfg.TrustedRoot); err != nil {
		return bad("trusted root: %v", err)
	}
	if cfg.MetadataDir == "" {
		return bad("metadata dir is empty")
	}
	if err := os.MkdirAll(filepath.Join(cfg.MetadataDir, downloadsDir), 0o700); err != nil {
		return nil, fmt.Errorf("repository: create metadata dir: %w", err)
	}
	cfg.MetadataURL = strings.TrimSuffix(cfg.MetadataURL, "/")
	r := &Repository{t: t, cfg: cfg, targets: targets, now: cfg.Now, auth: auth, authTarget: authTarget, parts: map[string]chan struct{}{}}
	if r.now == nil {
		r.now = time.Now
	}
	r.fetch = &metadataFetcher{t: &r.t, auth: auth}
	return r, nil
}

// downloadsDir is where partial downloads live, under MetadataDir.
const downloadsDir = "downloads"

func checkBaseURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("%q must be an absolute http(s) URL without query", s)
	}
	return nil
}

// Refresh runs the TUF client workflow: from the newer of the persisted and
// the configured root, it walks the root versions, then loads timestamp,
// snapshot and top-level targets metadata, each verified (signatures and
// thresholds, versions never going back, hashes and lengths from the
// referring role, expiry against the configured clock) and persisted in
// MetadataDir. The context bounds every request.
//
// Errors: ErrMetadata when metadata fails verification (the go-tuf error,
// such as *metadata.ErrExpiredMetadata or *metadata.ErrBadVersionNumber,
// stays in the chain), ErrUnreachable or ErrServer when a file cannot be
// fetched. After a failed Refresh, Target refreshes again first.
func (r *Repository) Refresh(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.refresh(ctx)
}

func (r *Repository) refresh(ctx context.Context) error {
	r.up = nil
	dir := r.cfg.MetadataDir
	root := r.cfg.TrustedRoot
	if cached, err := os.ReadFile(filepath.Join(dir, "root.json")); err == nil {
		root = newerRoot(cached, root)
	}
	cfg, err := config.New(r.cfg.MetadataURL, root)
	if err != nil {
		return fmt.Errorf("refresh metadata: updater config: %w", err)
	}
	cfg.LocalMetadataDir = dir
	cfg.LocalTargetsDir = dir // unused: Download fetches targets itself
	cfg.Fetcher = r.fetch
	r.fetch.ctx = ctx
	up, err := updater.New(cfg)
	if err != nil {
		return classifyTUF("load trusted root", err)
	}
	// go-tuf reads the clock once, when the updater is made; this is its
	// documented way to decide expiry against another instant.
	up.UnsafeSetRefTime(r.now().UTC())
	if err := up.Refresh(); err != nil {
		return classifyTUF("refresh metadata", err)
	}
	r.up = up
	if up.GetTrustedMetadataSet().Root.Signed.ConsistentSnapshot {
		r.consistent.Store(1)
	} else {
		r.consistent.Store(2)
	}
	return nil
}

// Target returns the signed description of the target at path, from the
// metadata of the last Refresh (refreshing first if there was none, or if
// the last one failed). Delegated roles are searched in the order the
// delegating role lists them, their metadata fetched and verified on
// demand; the first role whose paths match and that lists the target
// wins, and a terminating delegation ends the search.
//
// Errors: ErrNotSigned when no role that may sign path lists it;
// ErrMetadata, ErrUnreachable or ErrServer as for Refresh.
func (r *Repository) Target(ctx context.Context, targetPath string) (*Target, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.up == nil {
		if err := r.refresh(ctx); err != nil {
			return nil, err
		}
	}
	r.fetch.ctx = ctx
	tf, err := r.up.GetTargetInfo(targetPath)
	if err != nil {
		if err.Error() == fmt.Sprintf("target %s not found", targetPath) {
			return nil, fmt.Errorf("look up target: %w: %q is not in the verified targets metadata", ErrNotSigned, targetPath)
		}
		return nil, classifyTUF("look up target "+targetPath, err)
	}
	t := &Target{Path: tf.Path, Length: tf.Length, Hashes: make(map[string]string, len(tf.Hashes))}
	for alg, h := range tf.Hashes {
		t.Hashes[alg] = hex.EncodeToString(h)
	}
	if tf.Custom != nil {
		t.Custom = append(json.RawMessage(nil), *tf.Custom...)
	}
	return t, nil
}

// consistentSnapshot reports whether target files are named with their
// hash: from the verified root when there is one, else from the newest
// root at hand (a download without a Refresh in this process).
func (r *Repository) consistentSnapshot() bool {
	if c := r.consistent.Load(); c != 0 {
		return c == 1
	}
	root := r.cfg.TrustedRoot
	if cached, err := os.ReadFile(filepath.Join(r.cfg.MetadataDir, "root.json")); err == nil {
		root = newerRoot(cached, root)
	}
	m, err := metadata.Root().FromBytes(root)
	return err == nil && m.Signed.ConsistentSnapshot
}

// targetURL returns where the bytes of t are fetched from.
func (r *Repository) targetURL(t *Target, sum string) (string, error) {
	if r.targets == nil {
		return "", tufota.Errorf(tufota.EInvalid, "download %s: the repository has no targets URL", t.Path)
	}
	if t.Path == "" || strings.HasPrefix(t.Path, "/") {
		return "", fmt.Errorf("download %q: %w: bad target path", t.Path, ErrMetadata)
	}
	remote := t.Path
	if r.consistentSnapshot() {
		dir, base := path.Split(t.Path)
		remote = dir + sum + "." + base
	}
	u := *r.targets
	u.Path = r.targets.Path + "/" + remote
	return u.String(), nil
}

// classifyTUF wraps an error from go-tuf's updater in the client's classes.
func classifyTUF(op string, err error) error {
	var h *metadata.ErrDownloadHTTP
	switch {
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrUnreachable):
		return fmt.Errorf("%s: %w", op, err)
	case errors.As(err, &h) && h.StatusCode != http.StatusNotFound:
		return fmt.Errorf("%s: %w: %w", op, &ServerError{Op: "fetch " + h.URL, Status: h.StatusCode}, err)
	default:
		return fmt.Errorf("%s: %w: %w", op, ErrMetadata, err)
	}
}
