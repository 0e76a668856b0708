package ui

import (
	"bytes"
	"fmt"
	"html/template"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/tufota/tufota/access"
)

// pageNames are the templates in templates/, each rendered inside
// layout.html.
var pageNames = []string{"login", "error", "releases", "rollouts", "rollout", "devices", "audit", "keys"}

// navItem is one link of the navigation bar.
type navItem struct {
	Path, Label string
	Current     bool
}

// pageData is what every page's template gets.
type pageData struct {
	Title string
	Nav   []navItem
	// User is the signed-in principal; empty on the sign-in page.
	User  access.Principal
	CSRF  string
	Next  string
	Error string
	Flash string
	Data  any
}

var funcs = template.FuncMap{
	"ts": func(t any) string {
		switch v := t.(type) {
		case time.Time:
			if v.IsZero() {
				return "—"
			}
			return v.UTC().Format("2006-01-02 15:04:05Z")
		case *time.Time:
			if v == nil || v.IsZero() {
				return "—"
			}
			return v.UTC().Format("2006-01-02 15:04:05Z")
		}
		return fmt.Sprint(t)
	},
	"iso":  func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	"join": strings.Join,
	"pct":  func(f float64) string { return fmt.Sprintf("%g%%", f*100) },
	"dur":  func(d time.Duration) string { return humanDuration(d) },
}

// parsePages parses every page with the layout.
func parsePages() (map[string]*template.Template, error) {
	out := make(map[string]*template.Template, len(pageNames))
	for _, name := range pageNames {
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("ui: parse template %s: %w", name, err)
		}
		out[name] = t
	}
	return out, nil
}

// nav lists the pages the session's role may see, by the route table.
func (u *UI) nav(role access.Role, current string) []navItem {
	items := []struct{ path, label, action string }{
		{"/ui/rollouts", "Rollouts", actRollouts},
		{"/ui/releases", "Releases", actReleases},
		{"/ui/devices", "Devices", actDevices},
		{"/ui/audit", "Audit log", actAudit},
		{"/ui/keys", "Keys and roles", actRoot},
	}
	var out []navItem
	for _, it := range items {
		if u.may(role, it.action) {
			out = append(out, navItem{Path: it.path, Label: it.label, Current: strings.HasPrefix(current, it.path)})
		}
	}
	return out
}

// render executes page into a buffer first, so that a template error
// answers 500 rather than half a page.
func (u *UI) render(c echo.Context, status int, page string, d pageData) error {
	t, ok := u.pages[page]
	if !ok {
		return fmt.Errorf("ui: no page %q", page)
	}
	se := session(c)
	if se.CSRF != "" {
		d.User, d.CSRF = se.Principal, se.CSRF
		d.Nav = u.nav(se.Principal.Role, c.Request().URL.Path)
	}
	var buf bytes.Buffer
	if err := t.Execute(&buf, d); err != nil {
		return fmt.Errorf("ui: render %s: %w", page, err)
	}
	return c.HTMLBlob(status, buf.Bytes())
}

// renderError shows an error page for err with the status the error's
// code maps to.
func (u *UI) renderError(c echo.Context, status int, err error) error {
	return u.render(c, status, "error", pageData{Title: http.StatusText(status), Error: err.Error()})
}

// humanDuration prints d in days, hours, minutes or seconds.
func humanDuration(d time.Duration) string {
	neg := d < 0
	if neg {
		d = -d
	}
	var s string
	switch {
	case d >= 24*time.Hour:
		s = fmt.Sprintf("%dd %dh", d/(24*time.Hour), (d%(24*time.Hour))/time.Hour)
	case d >= time.Hour:
		s = fmt.Sprintf("%dh %dm", d/time.Hour, (d%time.Hour)/time.Minute)
	case d >= time.Minute:
		s = fmt.Sprintf("%dm %ds", d/time.Minute, (d%time.Minute)/time.Second)
	default:
		s = d.Round(100 * time.Millisecond).String()
	}
	if neg {
		return "-" + s
	}
	return s
}
