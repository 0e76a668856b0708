package ui

import (
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/audit"
	"github.com/tufota/tufota/rollout"
	"github.com/tufota/tufota/signer"
)

// releaseRow is one release as the releases page shows it.
type releaseRow struct {
	signer.Release
	Collected, Needed, Threshold int
	SBOMLink                     string
}

func (u *UI) releases(c echo.Context) error {
	rels, err := u.cfg.Releases.List(c.Request().Context())
	if err != nil {
		return err
	}
	rows := make([]releaseRow, 0, len(rels))
	for _, r := range rels {
		row := releaseRow{Release: r}
		if r.Signing != nil {
			row.Collected, row.Needed, row.Threshold = len(r.Signing.Signatures), r.Signing.Needed, r.Signing.Threshold
		}
		if r.SBOM != nil && u.cfg.SBOM != nil && u.may(session(c).Principal.Role, actTarget) {
			row.SBOMLink = "/ui/sbom/" + url.PathEscape(r.Name) + "/" + url.PathEscape(r.Version)
		}
		rows = append(rows, row)
	}
	return u.render(c, http.StatusOK, "releases", pageData{Title: "Releases", Data: rows})
}

// sbom serves a release's SBOM through the server's blob store.
func (u *UI) sbom(c echo.Context) error {
	rels, err := u.cfg.Releases.List(c.Request().Context())
	if err != nil {
		return err
	}
	i := slices.IndexFunc(rels, func(r signer.Release) bool { return r.Name == c.Param("name") && r.Version == c.Param("version") })
	if i < 0 || rels[i].SBOM == nil || u.cfg.SBOM == nil {
		return u.renderError(c, http.StatusNotFound, tufota.Errorf(tufota.ENotFound, "no SBOM for %s@%s", c.Param("name"), c.Param("version")))
	}
	return u.cfg.SBOM(c, rels[i].SBOM.Path)
}

func (u *UI) rolloutsPage(c echo.Context) error {
	rs, err := u.cfg.Rollouts.Rollouts(c.Request().Context())
	if err != nil {
		return err
	}
	return u.render(c, http.StatusOK, "rollouts", pageData{Title: "Rollouts", Data: rs})
}

// actionButton is one action a rollout's state allows.
type actionButton struct {
	Action, Label string
	Danger        bool
}

// rolloutView is the rollout page's data.
type rolloutView struct {
	Status  rollout.Status
	Chart   chart
	History *rollout.History
	Actions []actionButton
}

// buttons lists the actions the rollout's state allows, for a role that may
// act; none for one that may not.
func (u *UI) buttons(st rollout.Status, mayAct bool) []actionButton {
	if !mayAct {
		return nil
	}
	all := []struct {
		cmd    rollout.Command
		label  string
		danger bool
	}{
		{rollout.CmdApprove, "Approve next wave", false},
		{rollout.CmdPause, "Pause", false},
		{rollout.CmdResume, "Resume", false},
		{rollout.CmdAbort, "Abort", true},
	}
	var out []actionButton
	for _, a := range all {
		if _, err := rollout.Transition(st.State, a.cmd); err == nil {
			out = append(out, actionButton{Action: string(a.cmd), Label: a.label, Danger: a.danger})
		}
	}
	return out
}

func (u *UI) rolloutPage(c echo.Context) error {
	ctx := c.Request().Context()
	st, err := u.cfg.Rollouts.Status(ctx, c.Param("id"))
	if tufota.ErrorCode(err) == tufota.ENotFound {
		return u.renderError(c, http.StatusNotFound, err)
	}
	if err != nil {
		return err
	}
	role := session(c).Principal.Role
	v := rolloutView{Status: st, Chart: newChart(st), Actions: u.buttons(st, u.may(role, actAct))}
	if u.may(role, actHistory) {
		h, err := u.cfg.Rollouts.History(ctx, st.ID)
		if err != nil {
			return err
		}
		v.History = &h
	}
	return u.render(c, http.StatusOK, "rollout", pageData{Title: "Rollout " + st.ID, Flash: c.QueryParam("done"), Data: v})
}

// rolloutAction runs approve, pause, resume or abort for the session's
// principal, through the rollout service as the API does, and audits it
// under the API's action name.
func (u *UI) rolloutAction(c echo.Context) error {
	id, action := c.Param("id"), c.Param("action")
	p := session(c).Principal
	actor := p.Person() // the two-person rule compares users, not token names
	reason := c.Request().PostFormValue("reason")
	ctx := c.Request().Context()
	var err error
	switch action {
	case "approve":
		err = u.cfg.Rollouts.Approve(ctx, id, actor, reason)
	case "pause":
		err = u.cfg.Rollouts.Pause(ctx, id, actor, reason)
	case "resume":
		err = u.cfg.Rollouts.Resume(ctx, id, actor, reason)
	case "abort":
		err = u.cfg.Rollouts.Abort(ctx, id, actor, reason)
	default:
		err = tufota.Errorf(tufota.ENotFound, "unknown rollout action %q: want approve, pause, resume or abort", action)
	}
	e := audit.Entry{Actor: p.Name, Role: string(p.Role), Action: actAct, Object: "rollout/" + id,
		Outcome: audit.OutcomeOK, Details: map[string]string{"action": action, "reason": reason}}
	if err != nil {
		e.Outcome = outcomeOf(err)
		e.Details["error"], e.Details["code"] = truncate(err.Error(), 512), string(tufota.ErrorCode(err))
	}
	u.record(c, e)
	if err != nil {
		return u.renderError(c, statusOf(err), err)
	}
	return c.Redirect(http.StatusSeeOther, "/ui/rollouts/"+url.PathEscape(id)+"?done="+url.QueryEscape(action))
}

func outcomeOf(err error) string {
	switch tufota.ErrorCode(err) {
	case tufota.EForbidden, tufota.EUnauthorized:
		return audit.OutcomeDenied
	case tufota.EInternal, tufota.EUnavailable, tufota.ENoSpace:
		return audit.OutcomeError
	}
	return audit.OutcomeFailed
}

// statusOf maps an error code to the status the error page answers with.
func statusOf(err error) int {
	switch tufota.ErrorCode(err) {
	case tufota.EInvalid:
		return http.StatusBadRequest
	case tufota.ENotFound:
		return http.StatusNotFound
	case tufota.EConflict:
		return http.StatusConflict
	case tufota.EForbidden:
		return http.StatusForbidden
	case tufota.EUnauthorized:
		return http.StatusUnauthorized
	}
	return http.StatusInternalServerError
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// deviceQuery is the devices page's filter.
type deviceQuery struct {
	Cohort  string
	Version string
	// SeenWithin keeps devices seen within it, NotSeenFor those not seen
	// for at least as long (never seen counts as not seen).
	SeenWithin, NotSeenFor string
	seenWithin, notSeenFor time.Duration
}

// parseDeviceQuery reads the devices page's filter from the query string.
// Every value is bounded and checked: a bad one is EInvalid.
func parseDeviceQuery(q url.Values) (deviceQuery, error) {
	d := deviceQuery{Cohort: q.Get("cohort"), Version: q.Get("version"), SeenWithin: q.Get("seen_within"), NotSeenFor: q.Get("not_seen_for")}
	for name, v := range map[string]string{"cohort": d.Cohort, "version": d.Version} {
		if len(v) > 128 || strings.ContainsFunc(v, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			return deviceQuery{}, tufota.Errorf(tufota.EInvalid, "%s: at most 128 printable characters", name)
		}
	}
	var err error
	if d.seenWithin, err = parseAge("seen_within", d.SeenWithin); err != nil {
		return deviceQuery{}, err
	}
	if d.notSeenFor, err = parseAge("not_seen_for", d.NotSeenFor); err != nil {
		return deviceQuery{}, err
	}
	return d, nil
}

// parseAge parses a positive duration of at most ten years; empty is 0.
func parseAge(name, v string) (time.Duration, error) {
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 || d > 10*365*24*time.Hour {
		return 0, tufota.Errorf(tufota.EInvalid, "%s %q: want a duration such as 24h", name, truncate(v, 64))
	}
	return d, nil
}

// devicesView is the devices page's data.
type devicesView struct {
	Query   deviceQuery
	Cohorts []rollout.Cohort
	Devices []rollout.Device
	// Outdated is the fleet report's rows for the shown devices that run
	// an older release than the newest for their hardware.
	Outdated []FleetRow
	Now      time.Time
}

func (u *UI) devices(c echo.Context) error {
	ctx := c.Request().Context()
	q, err := parseDeviceQuery(c.QueryParams())
	if err != nil {
		return u.renderError(c, http.StatusBadRequest, err)
	}
	cohorts, err := u.cfg.Rollouts.Cohorts(ctx)
	if err != nil {
		return err
	}
	f := rollout.DeviceFilter{}
	if q.Cohort != "" {
		co, err := u.cfg.Rollouts.Cohort(ctx, q.Cohort)
		if err != nil {
			return u.renderError(c, statusOf(err), err)
		}
		f.Selector = co.Selector
	}
	devs, err := u.cfg.Rollouts.Devices(ctx, f)
	if err != nil {
		return err
	}
	now := u.now()
	shown := devs[:0:0]
	ids := map[string]bool{}
	for _, d := range devs {
		if q.Version != "" && d.Version != q.Version {
			continue
		}
		if q.seenWithin > 0 && (d.LastSeen.IsZero() || now.Sub(d.LastSeen) > q.seenWithin) {
			continue
		}
		if q.notSeenFor > 0 && !d.LastSeen.IsZero() && now.Sub(d.LastSeen) < q.notSeenFor {
			continue
		}
		shown = append(shown, d)
		ids[d.ID] = true
	}
	fleet, err := u.cfg.Fleet(ctx)
	if err != nil {
		return err
	}
	var outdated []FleetRow
	for _, r := range fleet {
		if ids[r.DeviceID] && r.Behind > 0 {
			outdated = append(outdated, r)
		}
	}
	return u.render(c, http.StatusOK, "devices", pageData{Title: "Devices", Data: devicesView{Query: q, Cohorts: cohorts, Devices: shown, Outdated: outdated, Now: now}})
}

// auditQuery is the audit page's filter, as typed.
type auditQuery struct {
	Actor, Action, Object, Since, Until string
	Limit                               int
}

// parseAuditQuery reads the audit page's filter: exact actor, action and
// object, since and until as RFC 3339 times or durations back from now,
// and a limit of 1 to 1000 (default 200). A bad value is EInvalid.
func parseAuditQuery(q url.Values, now time.Time) (auditQuery, audit.Filter, error) {
	a := auditQuery{Actor: q.Get("actor"), Action: q.Get("action"), Object: q.Get("object"), Since: q.Get("since"), Until: q.Get("until"), Limit: 200}
	for name, v := range map[string]string{"actor": a.Actor, "action": a.Action, "object": a.Object} {
		if len(v) > 256 || strings.ContainsFunc(v, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			return a, audit.Filter{}, tufota.Errorf(tufota.EInvalid, "%s: at most 256 printable characters", name)
		}
	}
	f := audit.Filter{Actor: a.Actor, Action: a.Action, Object: a.Object, Reverse: true}
	var err error
	if f.Since, err = parseWhen("since", a.Since, now); err != nil {
		return a, audit.Filter{}, err
	}
	if f.Until, err = parseWhen("until", a.Until, now); err != nil {
		return a, audit.Filter{}, err
	}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 1000 {
			return a, audit.Filter{}, tufota.Errorf(tufota.EInvalid, "limit %q: want 1 to 1000", truncate(l, 16))
		}
		a.Limit = n
	}
	f.Limit = a.Limit
	return a, f, nil
}

// parseWhen parses an RFC 3339 time or a positive duration back from now;
// empty is the zero time.
func parseWhen(name, v string, now time.Time) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t, nil
	}
	d, err := parseAge(name, v)
	if err != nil {
		return time.Time{}, tufota.Errorf(tufota.EInvalid, "%s %q: want an RFC 3339 time or a duration such as 24h", name, truncate(v, 64))
	}
	return now.Add(-d), nil
}

// auditView is the audit page's data.
type auditView struct {
	Query     auditQuery
	Entries   []audit.Entry
	MayVerify bool
	Verified  *verifyResult
	// VerifyAction is the verify form's target, keeping the page's filter.
	VerifyAction string
}

// verifyResult is a chain verification as the audit page shows it.
type verifyResult struct {
	Report     audit.Report
	Checkpoint string
	Err        string
}

func (u *UI) auditPage(c echo.Context) error {
	return u.showAudit(c, nil)
}

func (u *UI) showAudit(c echo.Context, vr *verifyResult) error {
	q, f, err := parseAuditQuery(c.QueryParams(), u.now())
	if err != nil {
		return u.renderError(c, http.StatusBadRequest, err)
	}
	entries, err := u.cfg.Audit.List(c.Request().Context(), f)
	if err != nil {
		return err
	}
	v := auditView{Query: q, Entries: entries, MayVerify: u.may(session(c).Principal.Role, actVerify), Verified: vr, VerifyAction: "/ui/audit/verify"}
	if qs := c.QueryParams().Encode(); qs != "" {
		v.VerifyAction += "?" + qs
	}
	return u.render(c, http.StatusOK, "audit", pageData{Title: "Audit log", Data: v})
}

// verify checks the whole audit chain against its signed checkpoints and
// shows the result with the latest checkpoint. The verification is
// audited, as a reviewer's check is part of the record.
func (u *UI) verify(c echo.Context) error {
	rep, err := u.cfg.Audit.Verify(c.Request().Context())
	vr := &verifyResult{Report: rep}
	if rep.Checkpoints > 0 {
		vr.Checkpoint = rep.Head.Text()
	}
	var ve *audit.VerifyError
	if err != nil && !errors.As(err, &ve) && rep.Problem == "" {
		vr.Err = err.Error()
	}
	p := session(c).Principal
	e := audit.Entry{Actor: p.Name, Role: string(p.Role), Action: actVerify, Object: "audit/log", Outcome: audit.OutcomeOK,
		Details: map[string]string{"ok": strconv.FormatBool(rep.OK), "size": strconv.FormatInt(rep.Size, 10)}}
	if !rep.OK {
		e.Outcome = audit.OutcomeFailed
		e.Details["problem"] = truncate(rep.Problem+vr.Err, 512)
	}
	u.record(c, e)
	return u.showAudit(c, vr)
}

// expiryRow is a role or delegation with its expiry and warning.
type expiryRow struct {
	Name      string
	Keys      []string
	Threshold int
	Paths     []string
	Expires   *time.Time
	ExpiresIn string
	Warning   string
	Pending   string
}

// keysView is the keys page's data.
type keysView struct {
	Metadata    []RoleExpiry
	RootVersion int64
	RootRoles   []signer.RootRole
	RootPending bool
	Delegations []expiryRow
	Warnings    []string
}

func (u *UI) expiryWarning(what string, t *time.Time, now time.Time) string {
	switch {
	case t == nil:
		return ""
	case !t.After(now):
		return what + " has expired"
	case t.Sub(now) < u.cfg.ExpiryWarning:
		return what + " expires in " + humanDuration(t.Sub(now))
	}
	return ""
}

func (u *UI) keys(c echo.Context) error {
	ctx := c.Request().Context()
	role := session(c).Principal.Role
	now := u.now()
	var v keysView
	if u.may(role, actStatus) {
		exp, err := u.cfg.Expiries(ctx)
		if err != nil {
			return err
		}
		v.Metadata = exp
		for _, e := range exp {
			if e.Warning != "" {
				v.Warnings = append(v.Warnings, e.Warning)
			}
		}
	}
	ri, err := u.cfg.Releases.RootInfo(ctx)
	if err != nil {
		return err
	}
	v.RootVersion, v.RootRoles, v.RootPending = ri.Current.Version, ri.Current.Roles, ri.Pending != nil
	if u.may(role, actDelegates) {
		ds, err := u.cfg.Releases.Delegations(ctx)
		if err != nil {
			return err
		}
		for _, d := range ds {
			row := expiryRow{Name: d.Name, Keys: d.KeyIDs, Threshold: d.Threshold, Paths: d.Paths, Expires: d.Expires, Pending: d.Pending}
			if d.Expires != nil {
				row.ExpiresIn = humanDuration(d.Expires.Sub(now))
			}
			if row.Warning = u.expiryWarning("delegation "+d.Name, d.Expires, now); row.Warning != "" {
				v.Warnings = append(v.Warnings, row.Warning)
			}
			v.Delegations = append(v.Delegations, row)
		}
	}
	return u.render(c, http.StatusOK, "keys", pageData{Title: "Keys, roles and delegations", Data: v})
}
