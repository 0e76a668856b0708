package server

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tufota/tufota/api"
	"github.com/tufota/tufota/signer"
)

// RoleStatus is one top-level TUF role's metadata as the server sees it.
type RoleStatus = api.RoleStatus

// Status is GET /api/v1/status: the repository's expiry picture and this
// replica's role, what `tufota status` prints.
type Status = api.Status

var roleOrder = []string{signer.RoleRoot, signer.RoleTargets, signer.RoleSnapshot, signer.RoleTimestamp}

// status computes the Status at now. An offline role warns within
// OfflineExpiryWarning of its expiry; an online role warns when it has
// expired (the refresher is not running or cannot sign).
func (s *Server) status(ctx context.Context) (Status, error) {
	now := s.now()
	exp, err := s.cfg.Repo.Expiries(ctx)
	if err != nil {
		return Status{}, err
	}
	st := Status{Time: now.UTC(), Warnings: []string{}}
	if s.cfg.Elector != nil {
		es := s.cfg.Elector.Status()
		st.Replica, st.Leader = es.Holder, es.Role
	}
	order := slices.Clone(roleOrder)
	var delegated []string
	for role := range exp {
		if !slices.Contains(roleOrder, role) {
			delegated = append(delegated, role)
		}
	}
	slices.Sort(delegated)
	for _, role := range append(order, delegated...) {
		t, ok := exp[role]
		if !ok {
			continue
		}
		rs := RoleStatus{Role: role, Online: role == signer.RoleSnapshot || role == signer.RoleTimestamp, Expires: t.UTC(), ExpiresIn: humanDuration(t.Sub(now))}
		switch {
		case !t.After(now):
			rs.Warning = fmt.Sprintf("%s metadata expired %s ago: devices refuse the repository until it is re-signed", role, humanDuration(now.Sub(t)))
		case !rs.Online && t.Sub(now) < s.cfg.OfflineExpiryWarning:
			rs.Warning = fmt.Sprintf("%s metadata expires in %s: gather its key holders to re-sign it (%s)", role, humanDuration(t.Sub(now)), resignHint(role))
		}
		if rs.Warning != "" {
			st.Warnings = append(st.Warnings, rs.Warning)
		}
		st.Roles = append(st.Roles, rs)
	}
	return st, nil
}

// resignHint says how an offline role's metadata gets a new signature.
func resignHint(role string) string {
	switch role {
	case signer.RoleRoot:
		return "tufota root update / root sign"
	case signer.RoleTargets:
		return "tufota release sign"
	default:
		return "delegated role: tufota delegation renew " + role + ", then delegation sign"
	}
}

func (s *Server) getStatus(c echo.Context) error {
	st, err := s.status(c.Request().Context())
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, st)
}

// humanDuration prints d in days and hours ("29d 4h", "3h 12m", "40s").
func humanDuration(d time.Duration) string {
	if d < 0 {
		d = -d
	}
	switch {
	case d >= 24*time.Hour:
		return fmt.Sprintf("%dd %dh", d/(24*time.Hour), (d%(24*time.Hour))/time.Hour)
	case d >= time.Hour:
		return fmt.Sprintf("%dh %dm", d/time.Hour, (d%time.Hour)/time.Minute)
	default:
		return d.Truncate(time.Second).String()
	}
}

// metricsCollector reads the repository's state at scrape time.
type metricsCollector struct {
	s       *Server
	expires *prometheus.Desc
	warning *prometheus.Desc
	leader  *prometheus.Desc
}

func newMetricsHandler(s *Server) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(&metricsCollector{
		s:       s,
		expires: prometheus.NewDesc("tufota_tuf_metadata_expires_timestamp_seconds", "When each TUF role's current metadata expires (unix seconds): the top-level roles and every delegated role with metadata.", []string{"role"}, nil),
		warning: prometheus.NewDesc("tufota_tuf_metadata_expiry_warning", "1 when a role's metadata has expired or, for offline roles (root, targets, delegated roles), expires within the warning period.", []string{"role"}, nil),
		leader:  prometheus.NewDesc("tufota_leader", "1 while this replica holds the leader lease and runs the background jobs.", nil, nil),
	})
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.HTTPErrorOnError})
}

func (m *metricsCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- m.expires
	ch <- m.warning
	ch <- m.leader
}

func (m *metricsCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	st, err := m.s.status(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(m.expires, err)
		return
	}
	sort.Slice(st.Roles, func(i, j int) bool { return st.Roles[i].Role < st.Roles[j].Role })
	for _, r := range st.Roles {
		ch <- prometheus.MustNewConstMetric(m.expires, prometheus.GaugeValue, float64(r.Expires.Unix()), r.Role)
		w := 0.0
		if r.Warning != "" {
			w = 1
		}
		ch <- prometheus.MustNewConstMetric(m.warning, prometheus.GaugeValue, w, r.Role)
	}
	leader := 1.0
	if m.s.cfg.Elector != nil && !m.s.cfg.Elector.IsLeader() {
		leader = 0
	}
	ch <- prometheus.MustNewConstMetric(m.leader, prometheus.GaugeValue, leader)
}
