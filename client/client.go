// Package client is tufota's embeddable device library. It has two layers.
//
// Repository is a TUF client for any repository that follows the TUF
// specification, tufota's or not: OpenRepository from a trusted root,
// Refresh (root rotation, timestamp, snapshot, targets, with the client
// workflow's rollback, freeze and mix-and-match checks, expiry decided
// against an injectable clock), look a Target up (delegated roles searched
// in order), and Download it, streamed to disk through the signed hashes
// and verified before it appears. It works with and without consistent
// snapshots, with targets hashed by sha256, sha512 or both, and with target
// paths with or without a directory. See ExampleRepository.
//
// Client is tufota's device API on top of it: Check asks a tufota server
// what the device should run and verifies the answer against the
// server's repository (and the device's hardware and version policy),
// Download fetches it, Report queues status reports, and MarkInstalled
// keeps the anti-rollback state. A refusal on verification grounds is
// reported to the server too.
//
// The server is not trusted: a compromised server can hold an update back,
// but it cannot make a device accept an image that the TUF metadata did not
// sign, one built for other hardware, or an older version (unless the
// signed target explicitly allows the downgrade from the exact version the
// device runs). Every refusal is an error of one of the exported classes
// (ErrNotSigned, ErrWrongHardware, ErrNotNewer, ErrLengthMismatch,
// ErrHashMismatch, ErrMetadata, ErrServer, ErrUnreachable), matched with
// errors.Is.
//
// The package imports only the standard library, go-tuf v2 and tufota's
// root package; it uses no cgo and reads no environment variables.
package client

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/tufota/tufota"
)

// Error classes. Every error the client returns for a refused update or a
// failed exchange wraps exactly one of them; test with errors.Is.
var (
	// ErrNotSigned: the server offered a target that the verified TUF
	// metadata does not contain, or whose signed tufota metadata does not
	// match the offer.
	ErrNotSigned = errors.New("target not signed")
	// ErrWrongHardware: the signed target does not list the device's
	// hardware ID.
	ErrWrongHardware = errors.New("target built for other hardware")
	// ErrNotNewer: the signed target is not newer than the installed
	// version, and does not allow a downgrade from it.
	ErrNotNewer = errors.New("target not newer than installed version")
	// ErrLengthMismatch: the downloaded image is shorter or longer than the
	// signed length.
	ErrLengthMismatch = errors.New("target length mismatch")
	// ErrHashMismatch: the downloaded image's hashes differ from the signed
	// ones.
	ErrHashMismatch = errors.New("target hash mismatch")
	// ErrMetadata: TUF metadata failed verification or could not be loaded
	// (expired, rolled back, bad signature or threshold, missing or
	// oversized file...). The go-tuf error stays in the chain for errors.As.
	ErrMetadata = errors.New("TUF metadata refused")
	// ErrServer: the server answered something the protocol does not
	// allow: an unexpected status, a malformed body. Use errors.As with
	// *ServerError for the status, the error code and Retry-After.
	ErrServer = errors.New("unexpected server answer")
	// ErrUnreachable: the request did not get an answer (connection
	// refused or reset, timeout). Retrying later may help.
	ErrUnreachable = errors.New("server unreachable")
)

// ServerError describes an unexpected HTTP answer. It matches ErrServer.
type ServerError struct {
	Op         string        // what the client was doing
	Status     int           // HTTP status code
	Code       string        // tufota error code from the body, if any
	Message    string        // message from the body, if any
	RetryAfter time.Duration // from a Retry-After header, or 0
}

func (e *ServerError) Error() string {
	s := fmt.Sprintf("%s: server answered %d %s", e.Op, e.Status, http.StatusText(e.Status))
	if e.Code != "" || e.Message != "" {
		s += fmt.Sprintf(" (%s: %s)", e.Code, e.Message)
	}
	return s
}

// Is makes a *ServerError match ErrServer.
func (e *ServerError) Is(target error) bool { return target == ErrServer }

// Config configures a Client. ServerURL, TrustedRoot, StateDir, DeviceID
// and HardwareID are required.
type Config struct {
	// ServerURL is the tufota server's base URL, e.g. https://ota.example.
	ServerURL string
	// TrustedRoot is the root.json the device shipped with: the trust
	// anchor. Once a newer root has been verified, the one persisted in
	// StateDir/metadata takes its place.
	TrustedRoot []byte
	// StateDir holds the client's state: the TUF metadata cache and the
	// record of the installed version. It is created if missing.
	StateDir string
	// DeviceID and Token identify and authenticate the device.
	DeviceID, Token string
	// HardwareID is the device's hardware model; a target must list it.
	HardwareID string
	// CurrentVersion is the semantic version the device runs now. When
	// empty, the version recorded in StateDir by MarkInstalled is used; when
	// that is missing too, the device is treated as having no firmware and
	// any signed version is newer.
	CurrentVersion string
	// TargetsURL, when set, is where target bytes are downloaded from
	// instead of the server: a bucket or CDN that serves the repository's
	// blob keys, so a target is fetched from
	// TargetsURL/targets/<dir>/<sha256>.<name>. Metadata and the device API
	// stay on ServerURL. The bytes are verified against the signed length
	// and hashes exactly as when they come from the server, and the device
	// token is never sent there. A missing key must answer 404 (see
	// docs/operations.md for the bucket policy).
	TargetsURL string
	// HTTPClient makes every request. When nil, the client builds its own
	// with connect, TLS and response-header timeouts (never
	// http.DefaultClient).
	HTTPClient *http.Client
	// Logger receives the client's logs; nil discards them.
	Logger *slog.Logger

	// RequestTimeout bounds each metadata and API request, and each silent
	// stretch of a target download (no byte for this long fails the
	// attempt). Default 30s.
	RequestTimeout time.Duration
	// Retry bounds retries of requests that got no answer or a temporary
	// failure; the zero value means the defaults (see RetryPolicy).
	Retry RetryPolicy
	// Now is the clock TUF metadata expiry is decided against; nil means
	// time.Now. Devices with a trusted real-time clock leave it nil.
	Now func() time.Time
	// Delta, when set, makes Download try a delta from the installed image
	// first (delta.go); nil downloads full images only.
	Delta *DeltaConfig
}

// Client checks for, downloads and reports firmware updates for one device.
// It is safe for concurrent use; Check calls are serialised because they
// share the metadata cache.
type Client struct {
	transport
	cfg     Config
	base    *url.URL
	targets *url.URL    // TargetsURL, or nil to download from the server
	repo    *Repository // the server's TUF repository under /tuf

	checkMu sync.Mutex // serialises Check (shared metadata cache)
	queueMu sync.Mutex // serialises the report queue

	mu           sync.Mutex
	current      string     // installed version, "" when none
	lastDownload DeltaStats // what the last Download did
}

// New validates cfg and returns a Client. It creates StateDir and its
// metadata directory. It fails with an error wrapping tufota.ErrInvalid when
// a required field is missing or malformed.
func New(cfg Config) (*Client, error) {
	bad := func(format string, args ...any) (*Client, error) {
		return nil, tufota.Errorf(tufota.EInvalid, "client config: "+format, args...)
	}
	u, err := url.Parse(cfg.ServerURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return bad("server URL %q must be an absolute http(s) URL", cfg.ServerURL)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	var targets *url.URL
	if cfg.TargetsURL != "" {
		targets, err = url.Parse(cfg.TargetsURL)
		if err != nil || (targets.Scheme != "http" && targets.Scheme != "https") || targets.Host == "" || targets.RawQuery != "" || targets.Fragment != "" {
			return bad("targets URL %q must be an absolute http(s) URL without query", cfg.TargetsURL)
		}
		targets.Path = strings.TrimSuffix(targets.Path, "/")
		targets.RawPath = ""
	}
	if len(cfg.TrustedRoot) == 0 {
		return bad("trusted root is empty")
	}
	if cfg.StateDir == "" {
		return bad("state dir is empty")
	}
	if err := tufota.ValidateName("device ID", cfg.DeviceID); err != nil {
		return bad("%v", err)
	}
	if err := tufota.ValidateName("hardware ID", cfg.HardwareID); err != nil {
		return bad("%v", err)
	}
	if cfg.CurrentVersion != "" {
		if _, err := tufota.ParseVersion(cfg.CurrentVersion); err != nil {
			return bad("current version: %v", err)
		}
	}
	if err := os.MkdirAll(filepath.Join(cfg.StateDir, metadataDir), 0o700); err != nil {
		return nil, fmt.Errorf("client: create state dir: %w", err)
	}
	c := &Client{
		transport: newTransport(cfg.HTTPClient, cfg.RequestTimeout, cfg.Retry, cfg.Logger),
		cfg:       cfg,
		base:      u,
		targets:   targets,
		current:   cfg.CurrentVersion,
	}
	targetsBase, toServer := c.targetURL("")
	c.repo, err = openRepository(RepositoryConfig{
		TrustedRoot: cfg.TrustedRoot,
		MetadataURL: c.url("/tuf"),
		TargetsURL:  strings.TrimSuffix(targetsBase, "/"),
		MetadataDir: filepath.Join(cfg.StateDir, metadataDir),
		Now:         cfg.Now,
	}, c.transport, c.authorize, toServer)
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	if c.current == "" {
		st, err := readInstalled(cfg.StateDir)
		if err != nil {
			return nil, fmt.Errorf("client: %w", err)
		}
		c.current = st.Version
	}
	return c, nil
}

// CurrentVersion returns the version the client considers installed: the
// configured one, or the one last recorded by MarkInstalled. It is "" on a
// device with no firmware recorded.
func (c *Client) CurrentVersion() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.current
}

// transport is what every request of the package runs on: one
// http.Client, the per-request timeout, the retry policy and the logger.
type transport struct {
	http        *http.Client
	timeout     time.Duration
	retryPolicy RetryPolicy
	log         *slog.Logger
}

func newTransport(hc *http.Client, timeout time.Duration, retry RetryPolicy, log *slog.Logger) transport {
	t := transport{http: hc, timeout: timeout, retryPolicy: retry.withDefaults(), log: log}
	if t.http == nil {
		t.http = defaultHTTPClient()
	}
	if t.log == nil {
		t.log = slog.New(slog.DiscardHandler)
	}
	if t.timeout <= 0 {
		t.timeout = 30 * time.Second
	}
	return t
}

func defaultHTTPClient() *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			DialContext:           (&net.Dialer{Timeout: 15 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			TLSHandshakeTimeout:   15 * time.Second,
			ResponseHeaderTimeout: 30 * time.Second,
			IdleConnTimeout:       90 * time.Second,
			MaxIdleConns:          4,
			ForceAttemptHTTP2:     true,
		},
	}
}

// targetURL returns where the bytes of target file p (the
// consistent-snapshot name below targets/) are downloaded from, and whether
// the request goes to the server (and carries the device token).
func (c *Client) targetURL(p string) (string, bool) {
	if c.targets == nil {
		return c.url("/tuf/targets/" + p), true
	}
	u := *c.targets
	u.Path = c.targets.Path + "/targets/" + p
	return u.String(), false
}

// url returns the server URL joined with an escaped path.
func (c *Client) url(p string) string {
	u := *c.base
	u.Path = c.base.Path + p
	u.RawPath = ""
	return u.String()
}
