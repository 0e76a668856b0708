// Package server is tufota's HTTP layer (echo v4): it serves the TUF
// repository read-only under /tuf/, the JSON management and device API under
// /api/v1/, and health under /healthz and /readyz. Every route and the roles
// it admits are listed in routes.go; errors map to statuses in errors.go.
// Handlers decode and validate, make one call into the packages below and
// encode the answer.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/tufota/tufota/access"
	"github.com/tufota/tufota/audit"
	"github.com/tufota/tufota/internal/leader"
	"github.com/tufota/tufota/rollout"
	"github.com/tufota/tufota/signer"
	"github.com/tufota/tufota/storage"
)

// Config is everything a Server needs; cmd/tufota fills it from flags.
type Config struct {
	Blobs    storage.Blobs
	DB       *storage.DB
	Repo     *signer.Repository
	Releases *signer.Releases
	Tokens   *access.Tokens
	Rollouts *rollout.Service
	// ControllerEvery is how often the rollout controller evaluates active
	// rollouts (default 10s).
	ControllerEvery time.Duration
	// Audit receives every state change and security event and serves the
	// audit API.
	Audit *audit.Log
	// Alerts receives security alerts; nil disables them.
	Alerts *Alerter
	// OfflineExpiryWarning is how close to expiry root and targets (the
	// offline roles) raise a warning and an alert (default 30 days).
	OfflineExpiryWarning time.Duration
	// CheckpointEvery is how often the audit log is checkpointed when it
	// has grown (default 10m).
	CheckpointEvery time.Duration
	// RefreshEvery is how often the refresher looks at expiry (default 1m);
	// RefreshMargin is how close to expiry a role is re-signed (default 12h).
	RefreshEvery  time.Duration
	RefreshMargin time.Duration
	// Elector, when set, elects one replica among those sharing the
	// database to run the background jobs (refresher, rollout controller,
	// audit checkpoints); /readyz shows its role. Nil runs them here
	// unconditionally (a single server).
	Elector *leader.Elector
	// TargetsURL, when set, makes /tuf/targets/... answer a 307 redirect
	// to TargetsURL/targets/... (a bucket or CDN serving the blob store's
	// keys) instead of streaming the bytes; see WithTargetsURL in tuf.go.
	TargetsURL string
	// RequireSBOM refuses a release push without an SBOM part (EInvalid),
	// before anything is staged.
	RequireSBOM bool
	// TrustedProxies are the reverse proxies whose X-Forwarded-For names
	// the client; from anyone else the header is ignored and the source of
	// a request is its peer address (clientip.go).
	TrustedProxies []netip.Prefix
	// MaxUploadBytes bounds one firmware image (default 2 GiB).
	MaxUploadBytes int64
	// Deltas configures the background delta worker (deltas.go); the zero
	// value makes no deltas.
	Deltas DeltaConfig
	// CachePoll is how often the hot-path caches (verified tokens,
	// devices, active rollouts) look for changes made by other replicas:
	// the bound on how long a token revoked elsewhere is still accepted
	// here (default 1s). SeenFlush is how often coalesced token last-use
	// and device last-seen times are written (default 10s).
	CachePoll time.Duration
	SeenFlush time.Duration
	Logger    *slog.Logger
	Now       func() time.Time
}

// Server serves one tufota repository. Create it with New.
type Server struct {
	cfg  Config
	log  *slog.Logger
	now  func() time.Time
	echo *echo.Echo
	meta *metaCache // TUF metadata served from memory
	// reports commits device status reports with their audit entries,
	// concurrent ones in shared transactions.
	reports *storage.Group
	// enrolls commits device enrollments (device row, token, audit entry),
	// concurrent ones in shared transactions.
	enrolls *storage.Group
	// uiShutdown ends the web dashboard's event streams at shutdown (ui.go).
	uiShutdown func()
}

// Default limits.
const (
	DefaultMaxUploadBytes = 2 << 30
	maxJSONBody           = 64 << 10
)

// New builds a Server from cfg.
func New(cfg Config) (*Server, error) {
	switch {
	case cfg.Blobs == nil, cfg.DB == nil, cfg.Repo == nil, cfg.Releases == nil, cfg.Tokens == nil, cfg.Audit == nil, cfg.Rollouts == nil:
		return nil, errors.New("server: Blobs, DB, Repo, Releases, Tokens, Audit and Rollouts are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.RefreshEvery <= 0 {
		cfg.RefreshEvery = time.Minute
	}
	if cfg.RefreshMargin <= 0 {
		cfg.RefreshMargin = 12 * time.Hour
	}
	if cfg.ControllerEvery <= 0 {
		cfg.ControllerEvery = 10 * time.Second
	}
	if cfg.OfflineExpiryWarning <= 0 {
		cfg.OfflineExpiryWarning = 30 * 24 * time.Hour
	}
	if cfg.CheckpointEvery <= 0 {
		cfg.CheckpointEvery = 10 * time.Minute
	}
	if cfg.MaxUploadBytes <= 0 {
		cfg.MaxUploadBytes = DefaultMaxUploadBytes
	}
	s := &Server{cfg: cfg, log: cfg.Logger, now: cfg.Now, meta: newMetaCache(cfg.Blobs, time.Now), reports: cfg.DB.NewGroup(256), enrolls: cfg.DB.NewGroup(256)}
	cfg.Repo.OnMetadataWrite(s.meta.written)
	cfg.Rollouts.AuditEventsIn(s.auditEvent) // every rollout event commits with its audit entry
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = s.handleError
	e.IPExtractor = clientIP(cfg.TrustedProxies)
	e.Use(s.recoverer, s.securityHeaders, limitRanges)
	s.register(e)
	s.echo = e
	if err := s.mountUI(e); err != nil { // the web dashboard, /ui/ (ui.go)
		return nil, err
	}
	return s, nil
}

// Handler returns the HTTP handler.
func (s *Server) Handler() http.Handler { return s.echo }

// Serve serves HTTP (tlsConfig nil) or HTTPS on ln until ctx is done, then
// shuts down gracefully. It also runs the background jobs (refresher,
// rollout controller, audit checkpoints), under Config.Elector when set, and
// stops them before it returns.
func (s *Server) Serve(ctx context.Context, ln net.Listener, tlsConfig *tls.Config) error {
	hs := &http.Server{
		Handler:           s.echo,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		TLSConfig:         tlsConfig,
	}
	if tlsConfig != nil {
		ln = tls.NewListener(ln, tlsConfig)
	}
	hs.RegisterOnShutdown(s.uiShutdown)
	bg, stopBG := context.WithCancel(ctx)
	bgDone := make(chan struct{})
	go func() {
		defer close(bgDone)
		s.runBackground(bg)
	}()
	defer func() {
		stopBG()
		<-bgDone // jobs stopped and the leader lease released before the DB closes
	}()

	// The hot-path caches run on every replica: they learn of changes
	// other replicas make and write coalesced last-use and last-seen
	// times. They stop after the HTTP server, so that their last flush
	// covers every request served.
	hot, stopHot := context.WithCancel(context.WithoutCancel(ctx))
	var hotDone sync.WaitGroup
	hotDone.Add(2)
	go func() { defer hotDone.Done(); s.cfg.Tokens.Run(hot, s.cfg.CachePoll, s.cfg.SeenFlush, s.log) }()
	go func() { defer hotDone.Done(); s.cfg.Rollouts.RunCaches(hot, s.cfg.CachePoll, s.cfg.SeenFlush) }()
	defer func() {
		stopHot()
		hotDone.Wait()
	}()

	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := hs.Shutdown(shutdown); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}

// refreshLoop re-signs timestamp and snapshot before they expire.
func (s *Server) refreshLoop(ctx context.Context) {
	t := time.NewTicker(s.cfg.RefreshEvery)
	defer t.Stop()
	for {
		s.RefreshOnce(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// RefreshOnce re-signs the online roles that expire within the margin and
// logs what it did.
func (s *Server) RefreshOnce(ctx context.Context) {
	if exp, err := s.cfg.Repo.Expiries(ctx); err == nil {
		// Offline roles: root, targets and every delegated role.
		roles := make([]string, 0, len(exp))
		for role := range exp {
			if role != signer.RoleSnapshot && role != signer.RoleTimestamp {
				roles = append(roles, role)
			}
		}
		slices.Sort(roles)
		for _, role := range roles {
			if t := exp[role]; t.Sub(s.now()) < s.cfg.OfflineExpiryWarning {
				s.log.Warn("offline role nears expiry", "role", role, "expires", t)
				s.cfg.Alerts.OfflineRoleExpiring(role, t)
			}
		}
	}
	roles, err := s.cfg.Repo.Refresh(ctx, s.cfg.Releases.Signers(), s.cfg.RefreshMargin)
	if err != nil {
		s.log.Error("refresh online roles", slog.Any("err", err))
		s.record(ctx, audit.Entry{Actor: "system", Role: "system", Action: "tuf.refresh", Object: "metadata/timestamp.json",
			Outcome: audit.OutcomeError, Details: map[string]string{"error": truncate(err.Error(), 512)}})
		return
	}
	if len(roles) > 0 {
		s.log.Info("re-signed online roles before expiry", slog.Any("roles", roles))
		s.record(ctx, audit.Entry{Actor: "system", Role: "system", Action: "tuf.refresh", Object: "metadata/timestamp.json",
			Outcome: audit.OutcomeOK, Details: map[string]string{"roles": strings.Join(roles, ",")}})
	}
}

func (s *Server) recoverer(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) (err error) {
		defer func() {
			if r := recover(); r != nil {
				if r == http.ErrAbortHandler {
					panic(r)
				}
				err = fmt.Errorf("panic in %s %s: %v", c.Request().Method, c.Path(), r)
			}
		}()
		return next(c)
	}
}

func (s *Server) securityHeaders(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Response().Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Cache-Control", "no-store")
		if c.Request().TLS != nil {
			h.Set("Strict-Transport-Security", "max-age=63072000; includeSubDomains")
		}
		return next(c)
	}
}
