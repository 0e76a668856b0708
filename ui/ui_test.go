package ui

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/access"
	"github.com/tufota/tufota/audit"
	"github.com/tufota/tufota/rollout"
	"github.com/tufota/tufota/signer"
)

// fakes: in-memory services with the dashboard's interfaces.

type fakeRollouts struct {
	mu       sync.Mutex
	st       rollout.Status
	commands []string
}

func (f *fakeRollouts) Rollouts(context.Context) ([]rollout.Rollout, error) {
	return []rollout.Rollout{f.st.Rollout}, nil
}
func (f *fakeRollouts) Status(_ context.Context, id string) (rollout.Status, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if id != f.st.ID {
		return rollout.Status{}, tufota.Errorf(tufota.ENotFound, "no rollout %s", id)
	}
	return f.st, nil
}
func (f *fakeRollouts) History(context.Context, string) (rollout.History, error) {
	return rollout.History{Rollout: f.st.Rollout, Events: []rollout.Event{{Time: time.Unix(100, 0), Actor: "alice", Kind: rollout.EventStarted, Reason: "go"}}}, nil
}
func (f *fakeRollouts) Devices(context.Context, rollout.DeviceFilter) ([]rollout.Device, error) {
	return []rollout.Device{{ID: "pump-1", Hardware: "pump-a", Version: "1.0.0"}}, nil
}
func (f *fakeRollouts) Cohorts(context.Context) ([]rollout.Cohort, error) {
	return []rollout.Cohort{{Name: "icu", Selector: "tag:icu", Devices: 1}}, nil
}
func (f *fakeRollouts) Cohort(_ context.Context, name string) (rollout.Cohort, error) {
	return rollout.Cohort{Name: name, Selector: "tag:icu"}, nil
}
func (f *fakeRollouts) cmd(name, id, actor string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.commands = append(f.commands, name+" "+id+" by "+actor)
	return nil
}
func (f *fakeRollouts) Pause(_ context.Context, id, actor, _ string) error {
	return f.cmd("pause", id, actor)
}
func (f *fakeRollouts) Resume(_ context.Context, id, actor, _ string) error {
	return f.cmd("resume", id, actor)
}
func (f *fakeRollouts) Approve(_ context.Context, id, actor, _ string) error {
	return f.cmd("approve", id, actor)
}
func (f *fakeRollouts) Abort(_ context.Context, id, actor, _ string) error {
	return f.cmd("abort", id, actor)
}

type fakeReleases struct{ rels []signer.Release }

func (f fakeReleases) List(context.Context) ([]signer.Release, error) { return f.rels, nil }
func (f fakeReleases) Delegations(context.Context) ([]signer.Delegation, error) {
	soon := time.Date(2026, 1, 10, 0, 0, 0, 0, time.UTC)
	return []signer.Delegation{{Name: "pumps", Paths: []string{"pump-fw/*"}, KeyIDs: []string{"k1"}, Threshold: 1, Expires: &soon}}, nil
}
func (f fakeReleases) RootInfo(context.Context) (signer.RootInfo, error) {
	return signer.RootInfo{Current: signer.RootSummary{Version: 1, Roles: []signer.RootRole{{Role: "root", Threshold: 1, Keys: []string{"r1"}}}}}, nil
}

type fakeAudit struct {
	mu      sync.Mutex
	entries []audit.Entry
}

func (f *fakeAudit) Append(_ context.Context, e audit.Entry) (audit.Entry, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	e.Seq = int64(len(f.entries))
	f.entries = append(f.entries, e)
	return e, nil
}
func (f *fakeAudit) List(context.Context, audit.Filter) ([]audit.Entry, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.entries), nil
}
func (f *fakeAudit) Verify(context.Context) (audit.Report, error) {
	return audit.Report{OK: true, Size: 3, Entries: 3, Checkpoints: 1, Head: audit.Checkpoint{Origin: "tufota.test/audit", Size: 3}}, nil
}
func (f *fakeAudit) last() audit.Entry {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.entries) == 0 {
		return audit.Entry{}
	}
	return f.entries[len(f.entries)-1]
}

type fakeTokens struct {
	mu      sync.Mutex
	byToken map[string]access.Principal
	revoked map[string]bool
}

func (f *fakeTokens) Authenticate(_ context.Context, tok string) (access.Principal, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p, ok := f.byToken[tok]
	if !ok || f.revoked[p.TokenID] {
		return access.Principal{}, tufota.Errorf(tufota.EUnauthorized, "unknown token")
	}
	return p, nil
}
func (f *fakeTokens) Check(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.revoked[id] {
		return tufota.Errorf(tufota.EUnauthorized, "token %s was revoked", id)
	}
	return nil
}

// testRoles is a route table in miniature, as the server's routeRoles
// makes it.
func testRoles(action string) []access.Role {
	people := []access.Role{access.RoleAdmin, access.RoleReleaseEngineer, access.RoleOperator, access.RoleAuditor}
	switch action {
	case actAct:
		return []access.Role{access.RoleAdmin, access.RoleOperator}
	case actAudit, actVerify:
		return []access.Role{access.RoleAdmin, access.RoleAuditor}
	case actReleases, actRollouts, actRollout, actHistory, actDevices, actFleet, actRoot, actDelegates, actStatus:
		return people
	}
	return nil
}

type harness struct {
	t        *testing.T
	e        *echo.Echo
	ui       *UI
	rollouts *fakeRollouts
	audit    *fakeAudit
	tokens   *fakeTokens
	now      time.Time
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	h := &harness{t: t, now: time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)}
	h.rollouts = &fakeRollouts{st: rollout.Status{
		Rollout: rollout.Rollout{ID: "r-1", Release: "pump-fw@1.1.0", Cohort: "icu", State: rollout.WaitingApproval, Wave: 1, CreatedBy: "alice",
			Reason: "wave 1 done; waiting for approval", Plan: rollout.Plan{MaxFailureRate: 0.1, MinReports: 1}},
		Waves: []rollout.WaveStatus{{Number: 1, Spec: "10%", Size: 1, Started: true, Devices: 1, Offered: 1, Installed: 1}, {Number: 2, Spec: "100%", Size: 10}},
	}}
	h.audit = &fakeAudit{}
	h.tokens = &fakeTokens{byToken: map[string]access.Principal{}, revoked: map[string]bool{}}
	for _, r := range []access.Role{access.RoleAdmin, access.RoleOperator, access.RoleAuditor, access.RoleReleaseEngineer, access.RoleDevice} {
		h.tokens.byToken["tok-"+string(r)] = access.Principal{Name: "p-" + string(r), Role: r, TokenID: "id-" + string(r)}
	}
	rels := fakeReleases{rels: []signer.Release{{Name: "pump-fw", Version: "1.1.0<script>alert(1)</script>", SHA256: strings.Repeat("ab", 32), Hardware: []string{"pump-a"}, Role: "targets", State: signer.StatePublished}}}
	u, err := New(Config{
		Rollouts: h.rollouts, Releases: rels, Audit: h.audit, Tokens: h.tokens, Roles: testRoles,
		Fleet: func(context.Context) ([]FleetRow, error) {
			return []FleetRow{{DeviceID: "pump-1", Hardware: "pump-a", Version: "1.0.0", Newest: "pump-fw@1.1.0", Behind: 1}}, nil
		},
		Expiries: func(context.Context) ([]RoleExpiry, error) {
			return []RoleExpiry{{Role: "root", Expires: h.now.Add(24 * time.Hour), Warning: "root metadata expires in 1d 0h"}}, nil
		},
		Now:       func() time.Time { return h.now },
		LiveEvery: 10 * time.Millisecond,
		Logger:    slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	h.ui = u
	h.e = echo.New()
	u.Mount(h.e)
	return h
}

// do sends a request with the given cookies and form.
func (h *harness) do(method, path string, form url.Values, cookies ...*http.Cookie) *httptest.ResponseRecorder {
	h.t.Helper()
	var body *strings.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	} else {
		body = strings.NewReader("")
	}
	req := httptest.NewRequest(method, path, body)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for _, c := range cookies {
		req.AddCookie(c)
	}
	rec := httptest.NewRecorder()
	h.e.ServeHTTP(rec, req)
	return rec
}

func cookieOf(rec *httptest.ResponseRecorder, name string) *http.Cookie {
	for _, c := range rec.Result().Cookies() {
		if c.Name == name {
			return c
		}
	}
	return nil
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// signIn signs in with the token of role and returns the session cookie
// and the session's CSRF token.
func (h *harness) signIn(role access.Role) (*http.Cookie, string) {
	h.t.Helper()
	form := h.do(http.MethodGet, "/ui/login", nil)
	lc := cookieOf(form, loginCookie)
	m := csrfField.FindStringSubmatch(form.Body.String())
	if lc == nil || m == nil {
		h.t.Fatalf("sign-in form: no login cookie or CSRF field")
	}
	rec := h.do(http.MethodPost, "/ui/login", url.Values{"token": {"tok-" + string(role)}, "csrf": {m[1]}}, lc)
	if rec.Code != http.StatusSeeOther {
		h.t.Fatalf("sign in as %s: status = %d, want 303; body %s", role, rec.Code, rec.Body)
	}
	sc := cookieOf(rec, SessionCookie)
	if sc == nil {
		h.t.Fatalf("sign in: no session cookie")
	}
	page := h.do(http.MethodGet, "/ui/rollouts", nil, sc)
	m = csrfField.FindStringSubmatch(page.Body.String())
	if m == nil {
		h.t.Fatalf("no CSRF token on the rollouts page: %s", page.Body)
	}
	return sc, m[1]
}

func TestSessionCookieIsHostOnlySecureStrict(t *testing.T) {
	h := newHarness(t)
	form := h.do(http.MethodGet, "/ui/login", nil)
	lc := cookieOf(form, loginCookie)
	m := csrfField.FindStringSubmatch(form.Body.String())
	rec := h.do(http.MethodPost, "/ui/login", url.Values{"token": {"tok-operator"}, "csrf": {m[1]}}, lc)
	c := cookieOf(rec, SessionCookie)
	if c == nil {
		t.Fatal("no session cookie")
	}
	if !c.HttpOnly || !c.Secure || c.SameSite != http.SameSiteStrictMode || c.Path != "/" || c.Domain != "" {
		t.Errorf("cookie = %+v, want HttpOnly, Secure, SameSite=Strict, Path=/, no Domain", c)
	}
	if _, ok := parseID(c.Value); !ok {
		t.Errorf("cookie value %q is not a 256-bit ID", c.Value)
	}
	if strings.Contains(c.Value, "tok-operator") {
		t.Error("the cookie carries the token")
	}
	if e := h.audit.last(); e.Action != ActionSignIn || e.Outcome != audit.OutcomeOK || e.Actor != "p-operator" {
		t.Errorf("audit = %+v, want a successful ui.signin by p-operator", e)
	}
	for _, hdr := range []string{"Content-Security-Policy", "X-Frame-Options"} {
		if rec.Header().Get(hdr) == "" {
			t.Errorf("no %s header", hdr)
		}
	}
	if csp := rec.Header().Get("Content-Security-Policy"); strings.Contains(csp, "unsafe-inline") || !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("CSP = %q", csp)
	}
}

func TestSignInRefusals(t *testing.T) {
	tests := []struct {
		name      string
		token     string
		csrf      bool
		want      int
		wantAudit string
	}{
		{"unknown token", "tok-nobody", true, http.StatusUnauthorized, "unknown token"},
		{"device token", "tok-device", true, http.StatusUnauthorized, "may not use the dashboard"},
		{"no CSRF token", "tok-admin", false, http.StatusForbidden, "CSRF"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			form := h.do(http.MethodGet, "/ui/login", nil)
			lc := cookieOf(form, loginCookie)
			v := url.Values{"token": {tt.token}}
			if tt.csrf {
				v.Set("csrf", csrfField.FindStringSubmatch(form.Body.String())[1])
			}
			rec := h.do(http.MethodPost, "/ui/login", v, lc)
			if rec.Code != tt.want {
				t.Fatalf("status = %d, want %d", rec.Code, tt.want)
			}
			if cookieOf(rec, SessionCookie) != nil {
				t.Error("a refused sign-in set a session cookie")
			}
			e := h.audit.last()
			if e.Action != ActionSignIn || e.Outcome != audit.OutcomeDenied || !strings.Contains(e.Details["reason"], tt.wantAudit) {
				t.Errorf("audit = %+v, want a denied ui.signin mentioning %q", e, tt.wantAudit)
			}
			if h.ui.sessions.Len() != 0 {
				t.Errorf("%d sessions after a refused sign-in", h.ui.sessions.Len())
			}
		})
	}
}

// TestSignInReplacesSession: a session ID planted before sign-in is not
// the one after it (session fixation).
func TestSignInReplacesSession(t *testing.T) {
	h := newHarness(t)
	old, _ := h.signIn(access.RoleAuditor)
	form := h.do(http.MethodGet, "/ui/login", nil, old)
	lc := cookieOf(form, loginCookie)
	m := csrfField.FindStringSubmatch(form.Body.String())
	rec := h.do(http.MethodPost, "/ui/login", url.Values{"token": {"tok-operator"}, "csrf": {m[len(m)-1]}}, lc, old)
	nc := cookieOf(rec, SessionCookie)
	if nc == nil || nc.Value == old.Value {
		t.Fatalf("sign-in kept the old session ID")
	}
	if got := h.do(http.MethodGet, "/ui/rollouts", nil, old); got.Code != http.StatusSeeOther {
		t.Errorf("old session still admitted: status %d", got.Code)
	}
}

func TestRolesAndCSRF(t *testing.T) {
	tests := []struct {
		name      string
		role      access.Role
		method    string
		path      string
		csrf      string // "ok", "none", "wrong"
		want      int
		wantAudit string // action of the audit entry written, "" for none
		wantCmd   bool
	}{
		{"operator approves", access.RoleOperator, http.MethodPost, "/ui/rollouts/r-1/approve", "ok", http.StatusSeeOther, actAct, true},
		{"admin pauses", access.RoleAdmin, http.MethodPost, "/ui/rollouts/r-1/pause", "ok", http.StatusSeeOther, actAct, true},
		{"auditor may not act", access.RoleAuditor, http.MethodPost, "/ui/rollouts/r-1/approve", "ok", http.StatusForbidden, actAct, false},
		{"release engineer may not act", access.RoleReleaseEngineer, http.MethodPost, "/ui/rollouts/r-1/abort", "ok", http.StatusForbidden, actAct, false},
		{"no CSRF token", access.RoleOperator, http.MethodPost, "/ui/rollouts/r-1/approve", "none", http.StatusForbidden, ActionCSRF, false},
		{"wrong CSRF token", access.RoleOperator, http.MethodPost, "/ui/rollouts/r-1/approve", "wrong", http.StatusForbidden, ActionCSRF, false},
		{"no session", "", http.MethodPost, "/ui/rollouts/r-1/approve", "none", http.StatusForbidden, actAct, false},
		{"unknown action", access.RoleOperator, http.MethodPost, "/ui/rollouts/r-1/explode", "ok", http.StatusNotFound, actAct, false},
		{"operator may not read audit", access.RoleOperator, http.MethodGet, "/ui/audit", "", http.StatusForbidden, actAudit, false},
		{"auditor reads audit", access.RoleAuditor, http.MethodGet, "/ui/audit", "", http.StatusOK, "", false},
		{"auditor verifies", access.RoleAuditor, http.MethodPost, "/ui/audit/verify", "ok", http.StatusOK, actVerify, false},
		{"operator may not verify", access.RoleOperator, http.MethodPost, "/ui/audit/verify", "ok", http.StatusForbidden, actVerify, false},
		{"no session GET redirects", "", http.MethodGet, "/ui/releases", "", http.StatusSeeOther, "", false},
		{"sign out", access.RoleOperator, http.MethodPost, "/ui/logout", "ok", http.StatusSeeOther, ActionSignOut, false},
		{"sign out without CSRF", access.RoleOperator, http.MethodPost, "/ui/logout", "none", http.StatusForbidden, ActionCSRF, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			var cookies []*http.Cookie
			csrf := ""
			if tt.role != "" {
				sc, tok := h.signIn(tt.role)
				cookies, csrf = append(cookies, sc), tok
			}
			before := len(h.audit.entries)
			var form url.Values
			if tt.method == http.MethodPost {
				form = url.Values{"reason": {"test"}}
				switch tt.csrf {
				case "ok":
					form.Set("csrf", csrf)
				case "wrong":
					form.Set("csrf", randomToken())
				}
			}
			rec := h.do(tt.method, tt.path, form, cookies...)
			if rec.Code != tt.want {
				t.Fatalf("status = %d, want %d; body %s", rec.Code, tt.want, rec.Body)
			}
			if got := len(h.rollouts.commands) > 0; got != tt.wantCmd {
				t.Errorf("command run = %v, want %v (%v)", got, tt.wantCmd, h.rollouts.commands)
			}
			if tt.wantAudit == "" {
				if len(h.audit.entries) != before {
					t.Errorf("audit entries written: %+v", h.audit.entries[before:])
				}
				return
			}
			e := h.audit.last()
			if len(h.audit.entries) == before || e.Action != tt.wantAudit {
				t.Fatalf("audit = %+v, want action %s", e, tt.wantAudit)
			}
			wantOutcome := audit.OutcomeOK
			switch {
			case tt.want == http.StatusForbidden:
				wantOutcome = audit.OutcomeDenied
			case tt.want >= 400:
				wantOutcome = audit.OutcomeFailed
			}
			if e.Outcome != wantOutcome || e.Details["via"] != "ui" {
				t.Errorf("audit = %+v, want outcome %s via ui", e, wantOutcome)
			}
		})
	}
}

func TestRevokedTokenEndsSession(t *testing.T) {
	h := newHarness(t)
	sc, _ := h.signIn(access.RoleOperator)
	if rec := h.do(http.MethodGet, "/ui/rollouts", nil, sc); rec.Code != http.StatusOK {
		t.Fatalf("before revocation: status %d", rec.Code)
	}
	h.tokens.mu.Lock()
	h.tokens.revoked["id-operator"] = true
	h.tokens.mu.Unlock()
	if rec := h.do(http.MethodGet, "/ui/rollouts", nil, sc); rec.Code != http.StatusSeeOther {
		t.Errorf("after revocation: status %d, want 303 to sign-in", rec.Code)
	}
}

func TestSessionExpiry(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	p := access.Principal{Name: "alice", Role: access.RoleOperator, TokenID: "t1"}
	tests := []struct {
		name  string
		steps []time.Duration // uses, each after the previous
		alive bool
	}{
		{"fresh", nil, true},
		{"used within idle", []time.Duration{20 * time.Minute, 20 * time.Minute, 20 * time.Minute}, true},
		{"idle too long", []time.Duration{31 * time.Minute}, false},
		{"past max age though active", []time.Duration{25 * time.Minute, 25 * time.Minute, 25 * time.Minute, 25 * time.Minute, 25 * time.Minute}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			s := NewSessions(30*time.Minute, 2*time.Hour, clock)
			id, se := s.Create(p)
			if se.CSRF == "" || se.CSRF == id {
				t.Fatalf("CSRF token %q", se.CSRF)
			}
			ok := true
			for _, d := range tt.steps {
				now = now.Add(d)
				_, ok = s.Get(id)
			}
			if ok != tt.alive {
				t.Errorf("alive = %v, want %v", ok, tt.alive)
			}
		})
	}
}

func TestPeekDoesNotExtend(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s := NewSessions(30*time.Minute, 0, func() time.Time { return now })
	id, _ := s.Create(access.Principal{Name: "a", Role: access.RoleAuditor})
	now = now.Add(20 * time.Minute)
	if _, ok := s.Peek(id); !ok {
		t.Fatal("Peek: session gone")
	}
	now = now.Add(15 * time.Minute)
	if _, ok := s.Get(id); ok {
		t.Error("Peek kept the session alive")
	}
}

func TestParseID(t *testing.T) {
	good := randomToken()
	tests := []struct {
		in string
		ok bool
	}{
		{good, true},
		{"", false},
		{good[:42], false},
		{good + "A", false},
		{strings.Repeat("!", 43), false},
		{strings.Repeat("A", 42) + "B", false}, // non-canonical trailing bits
	}
	for _, tt := range tests {
		if _, ok := parseID(tt.in); ok != tt.ok {
			t.Errorf("parseID(%q) ok = %v, want %v", tt.in, ok, tt.ok)
		}
	}
}

func TestValidCSRF(t *testing.T) {
	tok := randomToken()
	tests := []struct {
		want, got string
		ok        bool
	}{
		{tok, tok, true},
		{tok, "", false},
		{"", "", false},
		{tok, tok[:10], false},
		{tok, randomToken(), false},
	}
	for _, tt := range tests {
		if got := validCSRF(tt.want, tt.got); got != tt.ok {
			t.Errorf("validCSRF(%q, %q) = %v, want %v", tt.want, tt.got, got, tt.ok)
		}
	}
}

// TestPages renders every page for a role and checks what it must and must
// not show: action buttons only for roles that may act, escaping of what
// the services return, navigation by role.
func TestPages(t *testing.T) {
	tests := []struct {
		role    access.Role
		path    string
		want    []string
		notWant []string
	}{
		{access.RoleOperator, "/ui/rollouts/r-1", []string{`action="/ui/rollouts/r-1/approve"`, `action="/ui/rollouts/r-1/pause"`, `action="/ui/rollouts/r-1/abort"`, "waiting for approval", `id="chart"`, "Wave 1 (10%)", "gate: 0 of 1 may fail", `<th scope="col">Deferred</th>`, `<span class="key deferred"></span>deferred`}, []string{`/resume"`, `href="/ui/audit"`}},
		{access.RoleAuditor, "/ui/rollouts/r-1", []string{`id="chart"`, "History", `href="/ui/audit"`}, []string{`/approve"`, `/pause"`, `/abort"`, `id="actions"`}},
		{access.RoleAdmin, "/ui/releases", []string{"1.1.0&lt;script&gt;", strings.Repeat("ab", 32), "targets"}, []string{"<script>alert"}},
		{access.RoleOperator, "/ui/devices", []string{"pump-1", "pump-fw@1.1.0", `<option value="icu"`}, nil},
		{access.RoleAuditor, "/ui/audit", []string{`action="/ui/audit/verify"`, "ui.signin"}, nil},
		{access.RoleReleaseEngineer, "/ui/keys", []string{"delegation pumps expires in 8d 12h", "root metadata expires in 1d 0h", "pump-fw/*"}, nil},
		{access.RoleOperator, "/ui/rollouts", []string{`href="/ui/rollouts/r-1"`, "waiting-approval"}, nil},
	}
	for _, tt := range tests {
		t.Run(string(tt.role)+tt.path, func(t *testing.T) {
			h := newHarness(t)
			sc, _ := h.signIn(tt.role)
			rec := h.do(http.MethodGet, tt.path, nil, sc)
			if rec.Code != http.StatusOK {
				t.Fatalf("status = %d; body %s", rec.Code, rec.Body)
			}
			body := rec.Body.String()
			for _, w := range tt.want {
				if !strings.Contains(body, w) {
					t.Errorf("page lacks %q", w)
				}
			}
			for _, w := range tt.notWant {
				if strings.Contains(body, w) {
					t.Errorf("page shows %q", w)
				}
			}
			if strings.Contains(body, "<script>") || strings.Contains(body, " style=") || strings.Contains(body, "onclick") {
				t.Error("page has inline script or style")
			}
		})
	}
}

func TestVerifyShowsCheckpoint(t *testing.T) {
	h := newHarness(t)
	sc, csrf := h.signIn(access.RoleAuditor)
	rec := h.do(http.MethodPost, "/ui/audit/verify", url.Values{"csrf": {csrf}}, sc)
	body := rec.Body.String()
	for _, w := range []string{"Verified: 3 entries", "tufota.test/audit\n3\n"} {
		if !strings.Contains(body, w) {
			t.Errorf("verify page lacks %q", w)
		}
	}
}

func TestParseQueries(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		query   string
		wantErr bool
		check   func(audit.Filter) bool
	}{
		{"", false, func(f audit.Filter) bool { return f.Limit == 200 && f.Reverse && f.Since.IsZero() }},
		{"since=24h&actor=alice", false, func(f audit.Filter) bool { return f.Since.Equal(now.Add(-24*time.Hour)) && f.Actor == "alice" }},
		{"since=2026-01-01T00:00:00Z", false, func(f audit.Filter) bool { return f.Since.Hour() == 0 }},
		{"limit=5", false, func(f audit.Filter) bool { return f.Limit == 5 }},
		{"limit=0", true, nil},
		{"limit=1001", true, nil},
		{"since=-1h", true, nil},
		{"since=yesterday", true, nil},
		{"actor=%00x", true, nil},
		{"object=" + strings.Repeat("x", 257), true, nil},
	}
	for _, tt := range tests {
		q, _ := url.ParseQuery(tt.query)
		_, f, err := parseAuditQuery(q, now)
		if (err != nil) != tt.wantErr {
			t.Errorf("parseAuditQuery(%q) err = %v, want error %v", tt.query, err, tt.wantErr)
			continue
		}
		if err != nil {
			if tufota.ErrorCode(err) != tufota.EInvalid {
				t.Errorf("parseAuditQuery(%q) code = %s, want EInvalid", tt.query, tufota.ErrorCode(err))
			}
			continue
		}
		if !tt.check(f) {
			t.Errorf("parseAuditQuery(%q) = %+v", tt.query, f)
		}
	}
	devTests := []struct {
		query   string
		wantErr bool
	}{
		{"cohort=icu&version=1.0.0&seen_within=24h", false},
		{"not_seen_for=168h", false},
		{"seen_within=0s", true},
		{"seen_within=100000h", true},
		{"version=%7f", true},
	}
	for _, tt := range devTests {
		q, _ := url.ParseQuery(tt.query)
		if _, err := parseDeviceQuery(q); (err != nil) != tt.wantErr {
			t.Errorf("parseDeviceQuery(%q) err = %v, want error %v", tt.query, err, tt.wantErr)
		}
	}
}

func TestSafeNext(t *testing.T) {
	tests := map[string]string{
		"/ui/audit?actor=x": "/ui/audit?actor=x",
		"":                  "/ui/",
		"https://evil/":     "/ui/",
		"//evil/ui/":        "/ui/",
		"/ui/\\evil":        "/ui/",
		"/api/v1/tokens":    "/ui/",
	}
	for in, want := range tests {
		if got := safeNext(in); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestChart(t *testing.T) {
	five := 5
	st := rollout.Status{Rollout: rollout.Rollout{State: rollout.Running, Plan: rollout.Plan{MaxFailureRate: 0.2, MaxFailures: &five}},
		Waves: []rollout.WaveStatus{
			{Number: 1, Spec: "10%", Size: 10, Started: true, Devices: 10, Offered: 10, Installed: 5, InProgress: 2, Failed: 1, Silent: 1, Deferred: 1},
			{Number: 2, Spec: "100%", Size: 100},
		}}
	ch := newChart(st)
	if len(ch.Rows) != 2 {
		t.Fatalf("rows = %d", len(ch.Rows))
	}
	r := ch.Rows[0]
	var sum float64
	classes := []string{}
	for _, s := range r.Segments {
		sum += s.W
		classes = append(classes, s.Class)
	}
	if want := []string{"installed", "downloading", "failed", "silent", "deferred"}; !slices.Equal(classes, want) {
		t.Errorf("segments = %v, want %v", classes, want)
	}
	if d := r.Segments[len(r.Segments)-1]; r.Deferred != 1 || d.N != 1 || d.Name != "deferred" {
		t.Errorf("deferred: row %d, segment %+v; want 1", r.Deferred, d)
	}
	if span := chartWidth - chartLabel - chartMargin; sum < span-1 || sum > span+1 {
		t.Errorf("segments span %v, want %v", sum, span)
	}
	if r.GateText != "gate: 2 of 10 may fail" {
		t.Errorf("gate = %q", r.GateText)
	}
	// Wave 2 has not started: 90 devices planned, none offered.
	if w := ch.Rows[1]; len(w.Segments) != 1 || w.Segments[0].Class != "waiting" || w.Segments[0].N != 90 || w.GateText != "gate: 5 of 90 may fail" {
		t.Errorf("wave 2 = %+v", w)
	}
}
