package apiclient

import (
	"context"
	"encoding/json"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"strconv"

	"github.com/tufota/tufota/api"
)

// get and post are Do with out typed; they keep the methods one line.
func get[T any](ctx context.Context, c *Client, path string) (T, error) {
	var out T
	err := c.Do(ctx, http.MethodGet, path, nil, &out)
	return out, err
}

func send[T any](ctx context.Context, c *Client, method, path string, in any) (T, error) {
	var out T
	err := c.Do(ctx, method, path, in, &out)
	return out, err
}

func esc(s string) string { return url.PathEscape(s) }

func releasePath(name, version string) string {
	return "/api/v1/releases/" + esc(name) + "/" + esc(version)
}

// Whoami returns the principal the token authenticates.
func (c *Client) Whoami(ctx context.Context) (api.Principal, error) {
	return get[api.Principal](ctx, c, "/api/v1/whoami")
}

// Push describes one release upload: the release's JSON part, an optional
// SBOM and the image, read once from File and streamed.
type Push struct {
	Release  api.PushRequest
	SBOM     []byte // optional; bounded by the server (signer.MaxSBOMBytes)
	SBOMName string // the SBOM part's file name, e.g. "sbom.cdx.json"
	VEX      []byte // optional shipped CycloneDX VEX; bounded by the server (signer.MaxVEXBytes)
	VEXName  string // the VEX part's file name
	File     io.Reader
}

// PushRelease uploads a release as multipart/form-data ("release", then
// "sbom" and "vex" when given, then "file"), streaming File through a pipe: memory
// use does not grow with the image. The answer is the release, published
// (State "published") or waiting for offline signatures ("pending").
func (c *Client) PushRelease(ctx context.Context, p Push) (api.Release, error) {
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	go func() {
		pw.CloseWithError(writePush(mw, p))
	}()
	var rel api.Release
	resp, err := c.send(ctx, http.MethodPost, "/api/v1/releases", pr, mw.FormDataContentType())
	_ = pr.CloseWithError(io.ErrClosedPipe) // stops the writer if the server answered early
	if err != nil {
		return rel, err
	}
	defer resp.Body.Close()
	return rel, decodeInto(resp, "POST /api/v1/releases", &rel)
}

func writePush(mw *multipart.Writer, p Push) error {
	part, err := mw.CreateFormField("release")
	if err != nil {
		return err
	}
	if err := writeJSON(part, p.Release); err != nil {
		return err
	}
	if p.SBOM != nil {
		sp, err := mw.CreateFormFile("sbom", p.SBOMName)
		if err != nil {
			return err
		}
		if _, err := sp.Write(p.SBOM); err != nil {
			return err
		}
	}
	if p.VEX != nil {
		vp, err := mw.CreateFormFile("vex", p.VEXName)
		if err != nil {
			return err
		}
		if _, err := vp.Write(p.VEX); err != nil {
			return err
		}
	}
	fp, err := mw.CreateFormFile("file", p.Release.File)
	if err != nil {
		return err
	}
	if _, err := io.Copy(fp, p.File); err != nil {
		return err
	}
	return mw.Close()
}

// ListReleases lists releases, newest first.
func (c *Client) ListReleases(ctx context.Context) ([]api.Release, error) {
	return get[[]api.Release](ctx, c, "/api/v1/releases")
}

// Release returns one release.
func (c *Client) Release(ctx context.Context, name, version string) (api.Release, error) {
	return get[api.Release](ctx, c, releasePath(name, version))
}

// ReleaseSigning returns a pending release's signing payload.
func (c *Client) ReleaseSigning(ctx context.Context, name, version string) (api.SigningPayload, error) {
	return get[api.SigningPayload](ctx, c, releasePath(name, version)+"/signing")
}

// SignRelease uploads one signature over a pending release's payload.
func (c *Client) SignRelease(ctx context.Context, name, version string, up api.SignatureUpload) (api.SigningStatus, error) {
	return send[api.SigningStatus](ctx, c, http.MethodPost, releasePath(name, version)+"/signatures", up)
}

// CancelRelease withdraws a pending release and returns it.
func (c *Client) CancelRelease(ctx context.Context, name, version string) (api.Release, error) {
	return send[api.Release](ctx, c, http.MethodDelete, releasePath(name, version), nil)
}

// AddDelegation adds a delegated targets role; with offline targets keys
// the answer carries the signing status of the change.
func (c *Client) AddDelegation(ctx context.Context, req api.DelegationRequest) (api.Delegation, error) {
	return send[api.Delegation](ctx, c, http.MethodPost, "/api/v1/delegations", req)
}

// ListDelegations lists the delegated roles in search order.
func (c *Client) ListDelegations(ctx context.Context) ([]api.Delegation, error) {
	return get[[]api.Delegation](ctx, c, "/api/v1/delegations")
}

// UpdateDelegation changes a delegated role's keys or threshold.
func (c *Client) UpdateDelegation(ctx context.Context, name string, ch api.DelegationChange) (api.Delegation, error) {
	return send[api.Delegation](ctx, c, http.MethodPatch, "/api/v1/delegations/"+esc(name), ch)
}

// RemoveDelegation removes a delegated role.
func (c *Client) RemoveDelegation(ctx context.Context, name string) (api.Delegation, error) {
	return send[api.Delegation](ctx, c, http.MethodPost, "/api/v1/delegations/"+esc(name)+"/remove", nil)
}

// RenewDelegation proposes a delegated role's next metadata version with a
// new expiry, for its key holders to sign.
func (c *Client) RenewDelegation(ctx context.Context, name string) (api.Delegation, error) {
	return send[api.Delegation](ctx, c, http.MethodPost, "/api/v1/delegations/"+esc(name)+"/renew", nil)
}

// DelegationSigning returns a pending delegation change's signing payload.
func (c *Client) DelegationSigning(ctx context.Context, name string) (api.SigningPayload, error) {
	return get[api.SigningPayload](ctx, c, "/api/v1/delegations/"+esc(name)+"/signing")
}

// SignDelegation uploads one signature over a pending delegation change.
func (c *Client) SignDelegation(ctx context.Context, name string, up api.SignatureUpload) (api.SigningStatus, error) {
	return send[api.SigningStatus](ctx, c, http.MethodPost, "/api/v1/delegations/"+esc(name)+"/signatures", up)
}

// CancelDelegation withdraws a pending delegation change.
func (c *Client) CancelDelegation(ctx context.Context, name string) error {
	return c.Do(ctx, http.MethodDelete, "/api/v1/delegations/"+esc(name), nil, nil)
}

// CreateToken makes an API token; the answer holds the secret, once.
func (c *Client) CreateToken(ctx context.Context, req api.CreateTokenRequest) (api.CreateTokenResponse, error) {
	return send[api.CreateTokenResponse](ctx, c, http.MethodPost, "/api/v1/tokens", req)
}

// ListTokens lists tokens (never their secrets).
func (c *Client) ListTokens(ctx context.Context) ([]api.Token, error) {
	return get[[]api.Token](ctx, c, "/api/v1/tokens")
}

// RevokeToken revokes a token and returns it.
func (c *Client) RevokeToken(ctx context.Context, id string) (api.Token, error) {
	return send[api.Token](ctx, c, http.MethodDelete, "/api/v1/tokens/"+esc(id), nil)
}

// AuditList lists audit entries that match f.
func (c *Client) AuditList(ctx context.Context, f api.AuditFilter) ([]api.AuditEntry, error) {
	q := url.Values{}
	for k, v := range map[string]string{"since": f.Since, "until": f.Until, "actor": f.Actor, "action": f.Action, "object": f.Object} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if f.Limit > 0 {
		q.Set("limit", strconv.Itoa(f.Limit))
	}
	return get[[]api.AuditEntry](ctx, c, "/api/v1/audit?"+q.Encode())
}

// AuditExport streams the audit log to w as "json" or "csv"; since and
// until bound it when not empty.
func (c *Client) AuditExport(ctx context.Context, format, since, until string, w io.Writer) error {
	q := url.Values{}
	for k, v := range map[string]string{"format": format, "since": since, "until": until} {
		if v != "" {
			q.Set(k, v)
		}
	}
	return c.stream(ctx, http.MethodGet, "/api/v1/audit/export?"+q.Encode(), w)
}

// AuditVerify has the server verify its audit log.
func (c *Client) AuditVerify(ctx context.Context) (api.AuditReport, error) {
	return get[api.AuditReport](ctx, c, "/api/v1/audit/verify")
}

// AuditCheckpoint has the server sign a checkpoint of its audit log.
func (c *Client) AuditCheckpoint(ctx context.Context) (api.CheckpointResponse, error) {
	return send[api.CheckpointResponse](ctx, c, http.MethodPost, "/api/v1/audit/checkpoint", nil)
}

// RegisterDevice registers a device; the answer holds its token, once.
func (c *Client) RegisterDevice(ctx context.Context, req api.RegisterDeviceRequest) (api.DeviceTokenResponse, error) {
	return send[api.DeviceTokenResponse](ctx, c, http.MethodPost, "/api/v1/devices", req)
}

// ListDevices lists devices.
func (c *Client) ListDevices(ctx context.Context) ([]api.Device, error) {
	return get[[]api.Device](ctx, c, "/api/v1/devices")
}

// Device returns one device.
func (c *Client) Device(ctx context.Context, id string) (api.Device, error) {
	return get[api.Device](ctx, c, "/api/v1/devices/"+esc(id))
}

// AssignDevice assigns one release to one device and returns the device.
func (c *Client) AssignDevice(ctx context.Context, id string, req api.AssignRequest) (api.Device, error) {
	return send[api.Device](ctx, c, http.MethodPost, "/api/v1/devices/"+esc(id)+"/assign", req)
}

// CreateEnrollToken makes an enrollment token; the answer holds the
// secret, once.
func (c *Client) CreateEnrollToken(ctx context.Context, req api.EnrollTokenRequest) (api.EnrollTokenResponse, error) {
	return send[api.EnrollTokenResponse](ctx, c, http.MethodPost, "/api/v1/enroll-tokens", req)
}

// Enroll enrolls a device with the Client's enrollment token; the answer
// holds the device's own token, once.
func (c *Client) Enroll(ctx context.Context, req api.EnrollRequest) (api.DeviceTokenResponse, error) {
	return send[api.DeviceTokenResponse](ctx, c, http.MethodPost, "/api/v1/device/enroll", req)
}

// FleetReport returns the outdated-firmware report, one row per device.
func (c *Client) FleetReport(ctx context.Context) ([]api.FleetRow, error) {
	return get[[]api.FleetRow](ctx, c, "/api/v1/fleet/report")
}

// Status returns the repository's expiry picture and the replica's role.
func (c *Client) Status(ctx context.Context) (api.Status, error) {
	return get[api.Status](ctx, c, "/api/v1/status")
}

// CreateCohort makes a named device selector.
func (c *Client) CreateCohort(ctx context.Context, req api.CohortRequest) (api.Cohort, error) {
	return send[api.Cohort](ctx, c, http.MethodPost, "/api/v1/cohorts", req)
}

// ListCohorts lists cohorts.
func (c *Client) ListCohorts(ctx context.Context) ([]api.Cohort, error) {
	return get[[]api.Cohort](ctx, c, "/api/v1/cohorts")
}

// Cohort returns one cohort.
func (c *Client) Cohort(ctx context.Context, name string) (api.Cohort, error) {
	return get[api.Cohort](ctx, c, "/api/v1/cohorts/"+esc(name))
}

// CreateRollout makes a rollout (in state draft, or scheduled).
func (c *Client) CreateRollout(ctx context.Context, spec api.RolloutSpec) (api.Rollout, error) {
	return send[api.Rollout](ctx, c, http.MethodPost, "/api/v1/rollouts", spec)
}

// ListRollouts lists rollouts.
func (c *Client) ListRollouts(ctx context.Context) ([]api.Rollout, error) {
	return get[[]api.Rollout](ctx, c, "/api/v1/rollouts")
}

// Rollout returns a rollout's status: waves, health, what comes next.
func (c *Client) Rollout(ctx context.Context, id string) (api.RolloutStatus, error) {
	return get[api.RolloutStatus](ctx, c, "/api/v1/rollouts/"+esc(id))
}

// RolloutHistory returns a rollout's events, waves, device outcomes and
// milestones.
func (c *Client) RolloutHistory(ctx context.Context, id string) (api.RolloutHistory, error) {
	return get[api.RolloutHistory](ctx, c, "/api/v1/rollouts/"+esc(id)+"/history")
}

// RolloutAction runs start, pause, resume, approve, abort or rollback on
// a rollout and returns its status after.
func (c *Client) RolloutAction(ctx context.Context, id, action string, req api.ActionRequest) (api.RolloutStatus, error) {
	return send[api.RolloutStatus](ctx, c, http.MethodPost, "/api/v1/rollouts/"+esc(id)+"/"+esc(action), req)
}

// DeviceUpdate asks, as a device of the given hardware running version,
// what it should run. The bool is false when the server has nothing for
// it (204).
func (c *Client) DeviceUpdate(ctx context.Context, hardware, version string) (api.UpdateResponse, bool, error) {
	var u api.UpdateResponse
	q := url.Values{"hardware": {hardware}, "version": {version}}
	resp, err := c.send(ctx, http.MethodGet, "/api/v1/device/update?"+q.Encode(), nil, "")
	if err != nil {
		return u, false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNoContent {
		return u, false, nil
	}
	return u, true, decodeInto(resp, "GET /api/v1/device/update", &u)
}

// DeviceStatus reports, as a device, the state of an update.
func (c *Client) DeviceStatus(ctx context.Context, r api.StatusReport) error {
	return c.Do(ctx, http.MethodPost, "/api/v1/device/status", r, nil)
}

// Root returns the current root and any pending root change.
func (c *Client) Root(ctx context.Context) (api.RootInfo, error) {
	return get[api.RootInfo](ctx, c, "/api/v1/root")
}

// UpdateRoot proposes a new root and returns its signing payload.
func (c *Client) UpdateRoot(ctx context.Context, ch api.RootChange) (api.SigningPayload, error) {
	return send[api.SigningPayload](ctx, c, http.MethodPost, "/api/v1/root", ch)
}

// RootPending returns the pending root's signing payload.
func (c *Client) RootPending(ctx context.Context) (api.SigningPayload, error) {
	return get[api.SigningPayload](ctx, c, "/api/v1/root/pending")
}

// CancelRoot withdraws the pending root.
func (c *Client) CancelRoot(ctx context.Context) error {
	return c.Do(ctx, http.MethodDelete, "/api/v1/root/pending", nil, nil)
}

// SignRoot uploads one signature over the pending root.
func (c *Client) SignRoot(ctx context.Context, up api.SignatureUpload) (api.SigningStatus, error) {
	return send[api.SigningStatus](ctx, c, http.MethodPost, "/api/v1/root/signatures", up)
}

// OpenAPI returns the server's OpenAPI document (GET /api/v1/openapi.json).
func (c *Client) OpenAPI(ctx context.Context) (json.RawMessage, error) {
	return get[json.RawMessage](ctx, c, "/api/v1/openapi.json")
}

// ImportVulnerabilities sends OSV records and CycloneDX VEX documents: a
// zip ("application/zip") or one JSON file ("application/json"), streamed
// from body. The server checks every file first; one bad file imports
// nothing, and the error names every bad file.
func (c *Client) ImportVulnerabilities(ctx context.Context, body io.Reader, contentType string) (api.VulnImportResult, error) {
	var res api.VulnImportResult
	const path = "/api/v1/vulnerabilities/import"
	resp, err := c.send(ctx, http.MethodPost, path, body, contentType)
	if err != nil {
		return res, err
	}
	defer resp.Body.Close()
	return res, decodeInto(resp, "POST "+path, &res)
}

// Vulnerabilities reports, per advisory, the affected releases, the
// devices running them and the first fixing release. id (any alias) and
// release (NAME@VERSION) filter when not empty.
func (c *Client) Vulnerabilities(ctx context.Context, id, release string) ([]api.VulnReport, error) {
	q := url.Values{}
	if id != "" {
		q.Set("id", id)
	}
	if release != "" {
		q.Set("release", release)
	}
	path := "/api/v1/vulnerabilities"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	return get[[]api.VulnReport](ctx, c, path)
}

func pinPath(kind, name string) string { return "/api/v1/pins/" + esc(kind) + "/" + esc(name) }

// Pins lists the pins that keep cohorts and devices on validated lines.
func (c *Client) Pins(ctx context.Context) ([]api.Pin, error) {
	return get[[]api.Pin](ctx, c, "/api/v1/pins")
}

// SetPin pins a saved cohort (kind "cohort") or one device ("device") to
// a version line; setting it again replaces it.
func (c *Client) SetPin(ctx context.Context, kind, name string, req api.PinRequest) (api.Pin, error) {
	return send[api.Pin](ctx, c, http.MethodPut, pinPath(kind, name), req)
}

// RemovePin removes a pin.
func (c *Client) RemovePin(ctx context.Context, kind, name string) error {
	return c.Do(ctx, http.MethodDelete, pinPath(kind, name), nil, nil)
}

// PlanRollout is the dry run of a draft rollout: which devices fall into
// each wave, and which would not be offered the release.
func (c *Client) PlanRollout(ctx context.Context, id string) (api.DryRun, error) {
	return get[api.DryRun](ctx, c, "/api/v1/rollouts/plan?rollout="+url.QueryEscape(id))
}

// PlanSpec is the dry run of a rollout not created yet: counts per wave
// only, since which devices depends on the ID the rollout gets.
func (c *Client) PlanSpec(ctx context.Context, spec api.RolloutSpec) (api.DryRun, error) {
	return send[api.DryRun](ctx, c, http.MethodPost, "/api/v1/rollouts/plan", spec)
}

// CreateUser creates a local user with roles.
func (c *Client) CreateUser(ctx context.Context, req api.CreateUserRequest) (api.User, error) {
	return send[api.User](ctx, c, http.MethodPost, "/api/v1/users", req)
}

// ListUsers lists the users.
func (c *Client) ListUsers(ctx context.Context) ([]api.User, error) {
	return get[[]api.User](ctx, c, "/api/v1/users")
}

// DisableUser disables a user (by id or name) and revokes every token of
// theirs in the same transaction.
func (c *Client) DisableUser(ctx context.Context, user string) (api.DisableUserResponse, error) {
	return send[api.DisableUserResponse](ctx, c, http.MethodPost, "/api/v1/users/"+esc(user)+"/disable", nil)
}
