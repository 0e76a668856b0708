package server

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/tufota/tufota/access"
)

// Route is one endpoint and the roles it admits. Public routes admit anyone;
// every other route authenticates the caller and checks its role before the
// handler runs.
type Route struct {
	Method string
	Path   string
	Roles  []access.Role
	Public bool
	// Action names the route in the audit log, e.g. "release.push".
	Action  string
	handler echo.HandlerFunc
}

var (
	everyone = access.Roles
	people   = []access.Role{access.RoleAdmin, access.RoleReleaseEngineer, access.RoleOperator, access.RoleAuditor}
	admin    = []access.Role{access.RoleAdmin}
	// adminRO admits auditors beside admins, for reading only: an
	// auditor is read-only, so no route that changes state lists it
	// (TestAuditorIsReadOnly).
	adminRO  = []access.Role{access.RoleAdmin, access.RoleAuditor}
	pushers  = []access.Role{access.RoleAdmin, access.RoleReleaseEngineer}
	device   = []access.Role{access.RoleDevice}
	enroller = []access.Role{access.RoleEnroll}
	operator = []access.Role{access.RoleAdmin, access.RoleOperator}
	// readers may see the TUF repository: people and devices, not
	// enrollment tokens.
	readers = []access.Role{access.RoleAdmin, access.RoleReleaseEngineer, access.RoleOperator, access.RoleAuditor, access.RoleDevice}
)

// Routes lists every route the server serves. It is the one place where
// access rules live; tests walk it route by route and role by role.
func (s *Server) Routes() []Route {
	return []Route{
		{Method: http.MethodGet, Path: "/healthz", Public: true, Action: "health.check", handler: s.healthz},
		{Method: http.MethodGet, Path: "/readyz", Public: true, Action: "health.ready", handler: s.readyz},

		// The TUF repository: signed metadata and firmware, for devices and people.
		{Method: http.MethodGet, Path: "/tuf/:file", Roles: readers, Action: "tuf.metadata.read", handler: s.tufMetadata},
		{Method: http.MethodHead, Path: "/tuf/:file", Roles: readers, Action: "tuf.metadata.read", handler: s.tufMetadata},
		{Method: http.MethodGet, Path: "/tuf/targets/*", Roles: readers, Action: "tuf.target.read", handler: s.tufTarget},
		{Method: http.MethodHead, Path: "/tuf/targets/*", Roles: readers, Action: "tuf.target.read", handler: s.tufTarget},

		{Method: http.MethodGet, Path: "/api/v1/whoami", Roles: everyone, Action: "auth.whoami", handler: s.whoami},
		{Method: http.MethodGet, Path: "/api/v1/openapi.json", Roles: everyone, Action: "api.openapi", handler: s.openAPI},

		{Method: http.MethodPost, Path: "/api/v1/releases", Roles: pushers, Action: "release.push", handler: s.pushRelease},
		{Method: http.MethodGet, Path: "/api/v1/releases", Roles: people, Action: "release.list", handler: s.listReleases},
		{Method: http.MethodGet, Path: "/api/v1/releases/:name/:version", Roles: people, Action: "release.show", handler: s.getRelease},

		{Method: http.MethodPost, Path: "/api/v1/delegations", Roles: admin, Action: "delegation.add", handler: s.addDelegation},
		{Method: http.MethodGet, Path: "/api/v1/delegations", Roles: people, Action: "delegation.list", handler: s.listDelegations},
		{Method: http.MethodPatch, Path: "/api/v1/delegations/:name", Roles: admin, Action: "delegation.update", handler: s.updateDelegation},
		{Method: http.MethodPost, Path: "/api/v1/delegations/:name/remove", Roles: admin, Action: "delegation.remove", handler: s.removeDelegation},
		{Method: http.MethodPost, Path: "/api/v1/delegations/:name/renew", Roles: pushers, Action: "delegation.renew", handler: s.renewDelegation},

		{Method: http.MethodPost, Path: "/api/v1/tokens", Roles: admin, Action: "token.create", handler: s.createToken},
		{Method: http.MethodGet, Path: "/api/v1/tokens", Roles: adminRO, Action: "token.list", handler: s.listTokens},
		{Method: http.MethodDelete, Path: "/api/v1/tokens/:id", Roles: admin, Action: "token.revoke", handler: s.revokeToken},

		{Method: http.MethodPost, Path: "/api/v1/users", Roles: admin, Action: "user.create", handler: s.createUser},
		{Method: http.MethodGet, Path: "/api/v1/users", Roles: adminRO, Action: "user.list", handler: s.listUsers},
		{Method: http.MethodPost, Path: "/api/v1/users/:id/disable", Roles: admin, Action: "user.disable", handler: s.disableUser},

		{Method: http.MethodGet, Path: "/api/v1/audit", Roles: adminRO, Action: "audit.list", handler: s.auditList},
		{Method: http.MethodGet, Path: "/api/v1/audit/export", Roles: adminRO, Action: "audit.export", handler: s.auditExport},
		{Method: http.MethodGet, Path: "/api/v1/audit/verify", Roles: adminRO, Action: "audit.verify", handler: s.auditVerify},
		{Method: http.MethodPost, Path: "/api/v1/audit/checkpoint", Roles: admin, Action: "audit.checkpoint", handler: s.auditCheckpoint},

		{Method: http.MethodPost, Path: "/api/v1/devices", Roles: operator, Action: "device.register", handler: s.registerDevice},
		{Method: http.MethodGet, Path: "/api/v1/devices", Roles: people, Action: "device.list", handler: s.listDevices},
		{Method: http.MethodGet, Path: "/api/v1/devices/:id", Roles: people, Action: "device.show", handler: s.getDevice},
		{Method: http.MethodPost, Path: "/api/v1/devices/:id/assign", Roles: operator, Action: "device.assign", handler: s.assignDevice},
		{Method: http.MethodPost, Path: "/api/v1/enroll-tokens", Roles: operator, Action: "token.create", handler: s.createEnrollToken},
		{Method: http.MethodPost, Path: "/api/v1/device/enroll", Roles: enroller, Action: "device.enroll", handler: s.enroll},
		{Method: http.MethodGet, Path: "/api/v1/fleet/report", Roles: people, Action: "fleet.report", handler: s.fleetReport},
		{Method: http.MethodPost, Path: "/api/v1/vulnerabilities/import", Roles: pushers, Action: "vuln.import", handler: s.importVulnerabilities},
		{Method: http.MethodGet, Path: "/api/v1/vulnerabilities", Roles: people, Action: "vuln.list", handler: s.listVulnerabilities},
		{Method: http.MethodGet, Path: "/api/v1/status", Roles: people, Action: "status.read", handler: s.getStatus},
		{Method: http.MethodGet, Path: "/metrics", Roles: people, Action: "metrics.read", handler: echo.WrapHandler(newMetricsHandler(s))},
		{Method: http.MethodGet, Path: "/debug/pprof/*", Roles: admin, Action: "debug.pprof", handler: s.pprofHandler()},

		{Method: http.MethodPost, Path: "/api/v1/cohorts", Roles: operator, Action: "cohort.create", handler: s.createCohort},
		{Method: http.MethodGet, Path: "/api/v1/cohorts", Roles: people, Action: "cohort.list", handler: s.listCohorts},
		{Method: http.MethodGet, Path: "/api/v1/cohorts/:name", Roles: people, Action: "cohort.show", handler: s.getCohort},

		{Method: http.MethodGet, Path: "/api/v1/pins", Roles: people, Action: "pin.list", handler: s.listPins},
		{Method: http.MethodPut, Path: "/api/v1/pins/:kind/:name", Roles: operator, Action: "pin.set", handler: s.setPin},
		{Method: http.MethodDelete, Path: "/api/v1/pins/:kind/:name", Roles: operator, Action: "pin.remove", handler: s.removePin},

		{Method: http.MethodPost, Path: "/api/v1/rollouts", Roles: operator, Action: "rollout.create", handler: s.createRollout},
		{Method: http.MethodGet, Path: "/api/v1/rollouts", Roles: people, Action: "rollout.list", handler: s.listRollouts},
		{Method: http.MethodGet, Path: "/api/v1/rollouts/plan", Roles: people, Action: "rollout.plan", handler: s.planRollout},
		{Method: http.MethodPost, Path: "/api/v1/rollouts/plan", Roles: operator, Action: "rollout.plan", handler: s.planSpec},
		{Method: http.MethodGet, Path: "/api/v1/rollouts/:id", Roles: people, Action: "rollout.status", handler: s.rolloutStatus},
		{Method: http.MethodGet, Path: "/api/v1/rollouts/:id/history", Roles: people, Action: "rollout.history", handler: s.rolloutHistory},
		{Method: http.MethodPost, Path: "/api/v1/rollouts/:id/:action", Roles: operator, Action: "rollout.action", handler: s.rolloutAction},

		{Method: http.MethodGet, Path: "/api/v1/device/update", Roles: device, Action: "device.check", handler: s.deviceUpdate},
		{Method: http.MethodPost, Path: "/api/v1/device/status", Roles: device, Action: "device.report", handler: s.deviceStatus},

		// Signing where the key is: pending releases and root changes
		// gather offline signatures. Keep these last: the route matrix
		// test rotates the root of its server to reach them.
		{Method: http.MethodGet, Path: "/api/v1/releases/:name/:version/signing", Roles: pushers, Action: "release.payload", handler: s.releaseSigning},
		{Method: http.MethodPost, Path: "/api/v1/releases/:name/:version/signatures", Roles: pushers, Action: "release.sign", handler: s.signRelease},
		{Method: http.MethodDelete, Path: "/api/v1/releases/:name/:version", Roles: pushers, Action: "release.cancel", handler: s.cancelRelease},
		{Method: http.MethodGet, Path: "/api/v1/delegations/:name/signing", Roles: pushers, Action: "delegation.payload", handler: s.delegationSigning},
		{Method: http.MethodPost, Path: "/api/v1/delegations/:name/signatures", Roles: pushers, Action: "delegation.sign", handler: s.signDelegation},
		{Method: http.MethodDelete, Path: "/api/v1/delegations/:name", Roles: admin, Action: "delegation.cancel", handler: s.cancelDelegation},
		{Method: http.MethodGet, Path: "/api/v1/root", Roles: people, Action: "root.show", handler: s.rootShow},
		{Method: http.MethodPost, Path: "/api/v1/root", Roles: admin, Action: "root.update", handler: s.rootUpdate},
		{Method: http.MethodGet, Path: "/api/v1/root/pending", Roles: admin, Action: "root.payload", handler: s.rootPayload},
		{Method: http.MethodDelete, Path: "/api/v1/root/pending", Roles: admin, Action: "root.cancel", handler: s.rootCancel},
		{Method: http.MethodPost, Path: "/api/v1/root/signatures", Roles: admin, Action: "root.sign", handler: s.rootSign},
	}
}

func (s *Server) register(e *echo.Echo) {
	for _, r := range s.Routes() {
		h := r.handler
		if !r.Public {
			h = s.authorize(r, s.audited(r, h))
		}
		e.Add(r.Method, r.Path, h)
	}
}
