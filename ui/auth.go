package ui

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/audit"
)

const (
	sessionKey = "tufota.ui.session"
	// maxForm bounds a form body: the forms carry a token, a CSRF token
	// and a reason.
	maxForm = 8 << 10
)

// Audit actions of the dashboard's own events; its rollout actions and
// chain verification are audited under the API's action names.
const (
	ActionSignIn  = "ui.signin"
	ActionSignOut = "ui.signout"
	ActionCSRF    = "ui.csrf"
)

// session returns the session of c (set by withSession).
func session(c echo.Context) Session {
	se, _ := c.Get(sessionKey).(Session)
	return se
}

// record appends e to the audit log with the request's source; a failed
// append is logged loudly, like the server's.
func (u *UI) record(c echo.Context, e audit.Entry) {
	e.Source = c.RealIP()
	if e.Details == nil {
		e.Details = map[string]string{}
	}
	e.Details["via"] = "ui"
	ctx, cancel := context.WithTimeout(context.WithoutCancel(c.Request().Context()), 10*time.Second)
	defer cancel()
	if _, err := u.cfg.Audit.Append(ctx, audit.Escape(e)); err != nil {
		u.log.Error("AUDIT APPEND FAILED", slog.String("action", e.Action), slog.String("actor", e.Actor), slog.Any("err", err))
	}
}

// refuse answers 403 with a page saying why, and audits the refusal.
func (u *UI) refuse(c echo.Context, action, reason string) error {
	se := session(c)
	actor, role := se.Principal.Name, string(se.Principal.Role)
	if actor == "" {
		actor = "anonymous"
	}
	u.record(c, audit.Entry{Actor: actor, Role: role, Action: action, Object: c.Request().URL.Path,
		Outcome: audit.OutcomeDenied, Details: map[string]string{"reason": reason, "method": c.Request().Method}})
	u.log.Warn("ui: refused", "actor", actor, "role", role, "action", action, "path", c.Request().URL.Path, "reason", reason)
	return u.render(c, http.StatusForbidden, "error", pageData{Title: "Refused", Error: reason})
}

// page wraps a GET handler: it needs a session whose role may do action.
func (u *UI) page(action string, h echo.HandlerFunc) echo.HandlerFunc {
	return u.withSession(action, h)
}

// withSession admits a request with a live session, whose token is still
// valid and whose role the route table admits to action ("" admits every
// signed-in role). A state-changing request (POST) must carry the
// session's CSRF token. A GET without a session is sent to the sign-in
// page; a POST without one, or without the CSRF token or the role, is
// refused (403) and audited.
func (u *UI) withSession(action string, h echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		req := c.Request()
		post := req.Method == http.MethodPost
		var se Session
		ok := false
		if ck, err := req.Cookie(SessionCookie); err == nil {
			se, ok = u.sessions.Get(ck.Value)
			if ok {
				if err := u.cfg.Tokens.Check(req.Context(), se.Principal.TokenID); err != nil {
					u.sessions.Delete(ck.Value)
					if tufota.ErrorCode(err) != tufota.EUnauthorized {
						return u.shown(c, err)
					}
					ok = false
				}
			}
		}
		if !ok {
			if post {
				return u.refuse(c, nonEmpty(action, "ui.post"), "no session: sign in first")
			}
			return c.Redirect(http.StatusSeeOther, "/ui/login?next="+url.QueryEscape(req.URL.RequestURI()))
		}
		c.Set(sessionKey, se)
		if post {
			req.Body = http.MaxBytesReader(c.Response(), req.Body, maxForm)
			if !validCSRF(se.CSRF, req.PostFormValue("csrf")) {
				return u.refuse(c, ActionCSRF, "missing or wrong CSRF token")
			}
		}
		if action != "" && !u.may(se.Principal.Role, action) {
			return u.refuse(c, action, "role "+string(se.Principal.Role)+" may not "+action)
		}
		return u.shown(c, h(c))
	}
}

// shown turns a handler's error into an error page (the message of an
// internal error stays in the log).
func (u *UI) shown(c echo.Context, err error) error {
	if err == nil || c.Response().Committed {
		return err
	}
	status := statusOf(err)
	if status == http.StatusInternalServerError {
		u.log.Error("ui: request failed", "path", c.Request().URL.Path, "err", err)
		return u.renderError(c, status, errors.New("internal error; the server log has the details"))
	}
	return u.renderError(c, status, err)
}

func nonEmpty(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// safeNext returns next if it is a path of the dashboard, else /ui/: the
// sign-in form does not redirect elsewhere.
func safeNext(next string) string {
	if !strings.HasPrefix(next, "/ui/") || strings.HasPrefix(next, "//") || strings.ContainsAny(next, "\\\r\n") {
		return "/ui/"
	}
	return next
}

func (u *UI) home(c echo.Context) error {
	return c.Redirect(http.StatusSeeOther, "/ui/rollouts")
}

func (u *UI) secureCookie(name, value string, maxAge int) *http.Cookie {
	return &http.Cookie{Name: name, Value: value, Path: "/", MaxAge: maxAge,
		HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode}
}

// loginForm shows the sign-in form with a fresh double-submit CSRF token
// in a cookie and the form.
func (u *UI) loginForm(c echo.Context) error {
	tok := randomToken()
	c.SetCookie(u.secureCookie(loginCookie, tok, 600))
	return u.render(c, http.StatusOK, "login", pageData{Title: "Sign in", CSRF: tok, Next: safeNext(c.QueryParam("next"))})
}

// login verifies the API token with the token store the API uses, and on
// success replaces any session the browser had with a new one (a new
// random ID: no fixation). The token is not kept. Every outcome is
// audited.
func (u *UI) login(c echo.Context) error {
	req := c.Request()
	req.Body = http.MaxBytesReader(c.Response(), req.Body, maxForm)
	ck, err := req.Cookie(loginCookie)
	if err != nil || !validCSRF(ck.Value, req.PostFormValue("csrf")) {
		return u.refuse(c, ActionSignIn, "sign-in form without its CSRF token")
	}
	next := safeNext(req.PostFormValue("next"))
	fail := func(reason, shown string) error {
		u.record(c, audit.Entry{Actor: "anonymous", Action: ActionSignIn, Object: "ui/session",
			Outcome: audit.OutcomeDenied, Details: map[string]string{"reason": reason}})
		tok := randomToken()
		c.SetCookie(u.secureCookie(loginCookie, tok, 600))
		return u.render(c, http.StatusUnauthorized, "login", pageData{Title: "Sign in", CSRF: tok, Next: next, Error: shown})
	}
	p, err := u.cfg.Tokens.Authenticate(req.Context(), strings.TrimSpace(req.PostFormValue("token")))
	if err != nil {
		if tufota.ErrorCode(err) != tufota.EUnauthorized {
			return u.shown(c, err)
		}
		return fail(err.Error(), "That token was not accepted.")
	}
	if !u.maySignIn(p.Role) {
		return fail("role "+string(p.Role)+" may not use the dashboard", "Tokens of role "+string(p.Role)+" cannot sign in to the dashboard.")
	}
	if old, err := req.Cookie(SessionCookie); err == nil {
		u.sessions.Delete(old.Value)
	}
	id, se := u.sessions.Create(p)
	c.SetCookie(u.secureCookie(SessionCookie, id, int(u.sessions.max/time.Second)))
	c.SetCookie(u.secureCookie(loginCookie, "", -1))
	c.Set(sessionKey, *se)
	u.record(c, audit.Entry{Actor: p.Name, Role: string(p.Role), Action: ActionSignIn, Object: "ui/session",
		Outcome: audit.OutcomeOK, Details: map[string]string{"token_id": p.TokenID}})
	return c.Redirect(http.StatusSeeOther, next)
}

// logout ends the session and clears its cookie.
func (u *UI) logout(c echo.Context) error {
	se := session(c)
	if ck, err := c.Request().Cookie(SessionCookie); err == nil {
		u.sessions.Delete(ck.Value)
	}
	c.SetCookie(u.secureCookie(SessionCookie, "", -1))
	u.record(c, audit.Entry{Actor: se.Principal.Name, Role: string(se.Principal.Role), Action: ActionSignOut, Object: "ui/session", Outcome: audit.OutcomeOK})
	return c.Redirect(http.StatusSeeOther, "/ui/login")
}
