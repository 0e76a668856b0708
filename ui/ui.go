// Package ui is tufota's web dashboard for operators and compliance
// reviewers, served under /ui/ by the server that mounts it. Pages are Go
// html/template pages rendered on the server from templates embedded in
// the binary; a little JavaScript from static files (no inline script, a
// Content-Security-Policy of default-src 'self') draws the live rollout
// chart from server-sent events.
//
// The dashboard reads and acts through the same services as the JSON API
// (rollouts, releases, the audit log, tokens), declared here as small
// interfaces, and takes the roles of every page and action from the
// server's route table (Config.Roles), so that a page admits exactly the
// roles of its API route. A person signs in with an API token, which is
// verified and forgotten: the session, kept in memory behind a random
// cookie, holds only the principal and the token's ID (see sessions.go).
package ui

import (
	"context"
	"embed"
	"errors"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/tufota/tufota/access"
	"github.com/tufota/tufota/audit"
	"github.com/tufota/tufota/rollout"
	"github.com/tufota/tufota/signer"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Rollouts is what the dashboard needs of the rollout service
// (*rollout.Service).
type Rollouts interface {
	Rollouts(ctx context.Context) ([]rollout.Rollout, error)
	Status(ctx context.Context, id string) (rollout.Status, error)
	History(ctx context.Context, id string) (rollout.History, error)
	Devices(ctx context.Context, f rollout.DeviceFilter) ([]rollout.Device, error)
	Cohorts(ctx context.Context) ([]rollout.Cohort, error)
	Cohort(ctx context.Context, name string) (rollout.Cohort, error)
	Pause(ctx context.Context, id, actor, reason string) error
	Resume(ctx context.Context, id, actor, reason string) error
	Approve(ctx context.Context, id, actor, reason string) error
	Abort(ctx context.Context, id, actor, reason string) error
}

// Releases is what the dashboard needs of the signer (*signer.Releases).
type Releases interface {
	List(ctx context.Context) ([]signer.Release, error)
	Delegations(ctx context.Context) ([]signer.Delegation, error)
	RootInfo(ctx context.Context) (signer.RootInfo, error)
}

// Audit is what the dashboard needs of the audit log (*audit.Log).
type Audit interface {
	Append(ctx context.Context, e audit.Entry) (audit.Entry, error)
	List(ctx context.Context, f audit.Filter) ([]audit.Entry, error)
	Verify(ctx context.Context) (audit.Report, error)
}

// Tokens verifies API tokens (*access.Tokens): Authenticate at sign-in,
// Check on every request of a session, so that a session ends when its
// token is revoked or expires.
type Tokens interface {
	Authenticate(ctx context.Context, token string) (access.Principal, error)
	Check(ctx context.Context, tokenID string) error
}

// FleetRow is one line of the outdated-firmware report (the server's
// GET /api/v1/fleet/report).
type FleetRow struct {
	DeviceID            string
	Hardware            string
	Version             string
	Newest              string
	Behind              int
	LastUpdate          *time.Time
	DaysSinceLastUpdate *int
	LastSeen            *time.Time
	FailedUpdates       int
	LastDownload        string
	LastDownloadBytes   int64
}

// RoleExpiry is one TUF role's metadata expiry (the server's
// GET /api/v1/status), with the warning the server raises for it.
type RoleExpiry struct {
	Role      string
	Online    bool
	Expires   time.Time
	ExpiresIn string
	Warning   string
}

// Config is everything the dashboard needs; the server fills it.
type Config struct {
	Rollouts Rollouts
	Releases Releases
	Audit    Audit
	Tokens   Tokens
	// Fleet returns the outdated-firmware report, Expiries the TUF
	// roles' expiries; both are the server's, as its API serves them.
	Fleet    func(ctx context.Context) ([]FleetRow, error)
	Expiries func(ctx context.Context) ([]RoleExpiry, error)
	// SBOM, when set, answers c with the target at path from the
	// repository (a release's SBOM), as /tuf/targets/ serves it.
	SBOM func(c echo.Context, path string) error
	// Roles returns the roles the server's route table admits to an
	// action ("rollout.action", "audit.list"...); nil for an unknown one,
	// which then admits nobody.
	Roles func(action string) []access.Role
	// ExpiryWarning is how close to expiry a delegation or root is
	// flagged (default 30 days).
	ExpiryWarning time.Duration
	// IdleTimeout ends a session unused this long (default 30 minutes);
	// MaxAge ends any session this old (default 12 hours).
	IdleTimeout time.Duration
	MaxAge      time.Duration
	// LiveEvery is how often the live chart's event stream sends the
	// rollout's status (default 2s).
	LiveEvery time.Duration
	Logger    *slog.Logger
	Now       func() time.Time
}

// UI is the mounted dashboard. Create it with New; it is safe for
// concurrent use.
type UI struct {
	cfg      Config
	log      *slog.Logger
	now      func() time.Time
	pages    map[string]*template.Template
	sessions *Sessions
	static   http.Handler
	// done closes at Shutdown: event streams end so that the HTTP server
	// can shut down gracefully.
	done     chan struct{}
	shutdown sync.Once
}

// Shutdown ends the open event streams (the live charts); the browsers
// reconnect to whichever server answers next. Give it to
// http.Server.RegisterOnShutdown. It is safe to call more than once.
func (u *UI) Shutdown() {
	u.shutdown.Do(func() { close(u.done) })
}

// The actions of the server's route table that the dashboard's pages and
// buttons stand for: a page admits the roles of its API route.
const (
	actReleases  = "release.list"
	actRollouts  = "rollout.list"
	actRollout   = "rollout.status"
	actHistory   = "rollout.history"
	actAct       = "rollout.action"
	actDevices   = "device.list"
	actFleet     = "fleet.report"
	actAudit     = "audit.list"
	actVerify    = "audit.verify"
	actRoot      = "root.show"
	actDelegates = "delegation.list"
	actStatus    = "status.read"
	actTarget    = "tuf.target.read"
)

// pageActions are the actions behind the pages; a role admitted to none
// of them may not sign in.
var pageActions = []string{actReleases, actRollouts, actRollout, actDevices, actAudit, actRoot}

// New builds the dashboard. It fails when a service is missing or a
// template does not parse.
func New(cfg Config) (*UI, error) {
	if cfg.Rollouts == nil || cfg.Releases == nil || cfg.Audit == nil || cfg.Tokens == nil || cfg.Roles == nil || cfg.Fleet == nil || cfg.Expiries == nil {
		return nil, errors.New("ui: Rollouts, Releases, Audit, Tokens, Fleet, Expiries and Roles are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.ExpiryWarning <= 0 {
		cfg.ExpiryWarning = 30 * 24 * time.Hour
	}
	if cfg.LiveEvery <= 0 {
		cfg.LiveEvery = 2 * time.Second
	}
	pages, err := parsePages()
	if err != nil {
		return nil, err
	}
	static, err := fs.Sub(staticFS, "static")
	if err != nil {
		return nil, err
	}
	u := &UI{
		cfg: cfg, log: cfg.Logger, now: cfg.Now, pages: pages,
		sessions: NewSessions(cfg.IdleTimeout, cfg.MaxAge, cfg.Now),
		static:   http.StripPrefix("/ui/static/", http.FileServer(http.FS(static))),
		done:     make(chan struct{}),
	}
	return u, nil
}

// may reports whether role may do action, by the server's route table.
func (u *UI) may(role access.Role, action string) bool {
	return slices.Contains(u.cfg.Roles(action), role)
}

// maySignIn reports whether role may see at least one page.
func (u *UI) maySignIn(role access.Role) bool {
	for _, a := range pageActions {
		if u.may(role, a) {
			return true
		}
	}
	return false
}

// Mount registers the dashboard's routes on e under /ui/.
func (u *UI) Mount(e *echo.Echo) {
	g := e.Group("/ui", u.headers)
	g.GET("", redirectTo("/ui/"))
	g.GET("/", u.home)
	g.GET("/static/*", echo.WrapHandler(u.static))
	g.GET("/login", u.loginForm)
	g.POST("/login", u.login)
	g.POST("/logout", u.withSession("", u.logout))
	g.GET("/releases", u.page(actReleases, u.releases))
	g.GET("/sbom/:name/:version", u.page(actTarget, u.sbom))
	g.GET("/rollouts", u.page(actRollouts, u.rolloutsPage))
	g.GET("/rollouts/:id", u.page(actRollout, u.rolloutPage))
	g.GET("/rollouts/:id/live", u.page(actRollout, u.live))
	g.POST("/rollouts/:id/:action", u.withSession(actAct, u.rolloutAction))
	g.GET("/devices", u.page(actDevices, u.devices))
	g.GET("/audit", u.page(actAudit, u.auditPage))
	g.POST("/audit/verify", u.withSession(actVerify, u.verify))
	g.GET("/keys", u.page(actRoot, u.keys))
}

func redirectTo(path string) echo.HandlerFunc {
	return func(c echo.Context) error { return c.Redirect(http.StatusSeeOther, path) }
}

// csp is the dashboard's Content-Security-Policy: its own scripts, styles
// and images only, no inline script or style, no framing, forms only to
// itself.
const csp = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
	"object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// headers sets the dashboard's security headers on every response.
func (u *UI) headers(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Response().Header()
		h.Set("Content-Security-Policy", csp)
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
		return next(c)
	}
}
