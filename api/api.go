// Package api holds the request and response types of tufota's HTTP API
// (/api/v1/): what goes over the wire, as JSON. It is a leaf: it imports
// only the root package and the standard library, so integrators, the
// typed client (apiclient) and the edge mirror can use it without pulling
// in server, signer or storage code.
//
// Requests the server decodes as they are (AssignRequest, CohortRequest,
// PushRequest, ...) are defined here and aliased by the server and the
// signer. Responses that the server builds from its domain types
// (rollout.Device, signer.Release, ...) have wire twins here with the same
// JSON; TestWireTwins in apiclient checks that every twin round-trips
// what the server writes.
package api

import (
	"time"

	"github.com/tufota/tufota"
)

// ErrorBody is the JSON body of every error response.
type ErrorBody struct {
	Error struct {
		Code    tufota.Code `json:"code"`
		Message string      `json:"message"`
	} `json:"error"`
}

// Principal is GET /api/v1/whoami: who the token is. The server writes
// it without JSON tags, so the keys are the field names.
type Principal struct {
	Name     string
	Role     string
	TokenID  string
	DeviceID string
	Scope    string `json:",omitempty"`
	UserID   string `json:",omitempty"`
	User     string `json:",omitempty"`
}

// CreateTokenRequest is the body of POST /api/v1/tokens.
type CreateTokenRequest struct {
	Name     string `json:"name"`
	Role     string `json:"role"`
	DeviceID string `json:"device_id,omitempty"`
	// User is the id or name of the user the token belongs to; empty: the
	// caller's own user. The role must be one of the user's. A device token
	// belongs to its device and names no user.
	User string `json:"user,omitempty"`
	// Expires is a Go duration ("2160h"); empty means the server default.
	Expires string `json:"expires,omitempty"`
}

// CreateTokenResponse carries the secret, shown once.
type CreateTokenResponse struct {
	Token  string `json:"token"`
	Detail Token  `json:"detail"`
}

// Token describes a stored token; it never holds the secret.
type Token struct {
	ID         string     `json:"id"`
	Name       string     `json:"name"`
	Role       string     `json:"role"`
	DeviceID   string     `json:"device_id,omitempty"`
	CreatedAt  time.Time  `json:"created_at"`
	CreatedBy  string     `json:"created_by"`
	ExpiresAt  *time.Time `json:"expires_at,omitempty"`
	RevokedAt  *time.Time `json:"revoked_at,omitempty"`
	LastUsedAt *time.Time `json:"last_used_at,omitempty"`
	OwnerID    string     `json:"owner_id,omitempty"` // the user it belongs to; empty for a device
	Owner      string     `json:"owner,omitempty"`    // that user's name
}

// User is a person (or a pipeline) with roles; API tokens belong to one.
type User struct {
	ID         string     `json:"id"`
	Name       string     `json:"name"`
	Issuer     string     `json:"issuer"`
	Subject    string     `json:"subject"`
	Roles      []string   `json:"roles"`
	CreatedAt  time.Time  `json:"created_at"`
	CreatedBy  string     `json:"created_by"`
	Disabled   bool       `json:"disabled"`
	DisabledAt *time.Time `json:"disabled_at,omitempty"`
	DisabledBy string     `json:"disabled_by,omitempty"`
}

// CreateUserRequest is the body of POST /api/v1/users: a local user (a
// person or a pipeline without an identity provider).
type CreateUserRequest struct {
	Name  string   `json:"name"`
	Roles []string `json:"roles"`
}

// DisableUserResponse is the answer of POST /api/v1/users/{id}/disable.
type DisableUserResponse struct {
	User          User  `json:"user"`
	RevokedTokens int64 `json:"revoked_tokens"`
}

// CheckpointResponse carries a signed checkpoint note.
type CheckpointResponse struct {
	Checkpoint  string `json:"checkpoint"`
	VerifierKey string `json:"verifier_key"`
}

// AuditFilter selects audit entries for GET /api/v1/audit; zero fields
// do not filter. Since and Until are RFC 3339 times or durations back
// from now ("24h"), as the server parses them.
type AuditFilter struct {
	Since, Until          string
	Actor, Action, Object string
	Limit                 int
}

// AuditEntry is one record of the audit log.
type AuditEntry struct {
	Seq     int64             `json:"seq"`
	Time    time.Time         `json:"time"`
	Actor   string            `json:"actor"`
	Role    string            `json:"role"`
	Source  string            `json:"source"`
	Action  string            `json:"action"`
	Object  string            `json:"object"`
	Outcome string            `json:"outcome"`
	Details map[string]string `json:"details"`
	Hash    string            `json:"hash"`
}

// AuditCheckpoint is the head of the log a report was checked against.
// Hash is base64, as in the signed note.
type AuditCheckpoint struct {
	Origin string `json:"origin"`
	Size   int64  `json:"size"`
	Hash   []byte `json:"hash"`
}

// AuditReport is GET /api/v1/audit/verify: the outcome of verifying the
// hash chain and the checkpoints.
type AuditReport struct {
	Origin      string          `json:"origin"`
	VerifierKey string          `json:"verifier_key"`
	FirstSeq    int64           `json:"first_seq"`
	Size        int64           `json:"size"`
	Entries     int64           `json:"entries"`
	Checkpoints int             `json:"checkpoints"`
	Head        AuditCheckpoint `json:"head"`
	OK          bool            `json:"ok"`
	BrokenSeq   int64           `json:"broken_seq"`
	Problem     string          `json:"problem,omitempty"`
}

// RoleStatus is one top-level TUF role's metadata as the server sees it.
type RoleStatus struct {
	Role string `json:"role"`
	// Online roles (snapshot, timestamp) are re-signed by the server
	// before they expire; offline roles (root, targets) need their key
	// holders.
	Online    bool      `json:"online"`
	Expires   time.Time `json:"expires"`
	ExpiresIn string    `json:"expires_in"`
	Warning   string    `json:"warning,omitempty"`
}

// Status is GET /api/v1/status: the repository's expiry picture and this
// replica's role, what `tufota status` prints.
type Status struct {
	Time     time.Time    `json:"time"`
	Replica  string       `json:"replica,omitempty"`
	Leader   string       `json:"leader_role,omitempty"`
	Roles    []RoleStatus `json:"roles"`
	Warnings []string     `json:"warnings"`
}

// Readiness is the body of /readyz: "ok" or "unavailable", each
// dependency's check ("ok" or the error), and, with leader election, this
// replica's role ("leader" or "follower") and ID.
type Readiness struct {
	Status  string            `json:"status"`
	Checks  map[string]string `json:"checks"`
	Role    string            `json:"role,omitempty"`
	Replica string            `json:"replica,omitempty"`
	// LeaseError is the last failed attempt to take or renew the leader
	// lease, if the last attempt failed.
	LeaseError string `json:"lease_error,omitempty"`
}

// FleetRow is one line of the fleet report: the "outdated firmware" list a
// risk assessment needs.
type FleetRow struct {
	DeviceID string `json:"device_id"`
	Hardware string `json:"hardware"`
	Version  string `json:"version"`
	// Newest is the newest published release for the device's hardware.
	Newest string `json:"newest,omitempty"`
	// Behind counts published releases for the hardware above Version.
	Behind              int        `json:"behind"`
	LastUpdate          *time.Time `json:"last_update,omitempty"`
	DaysSinceLastUpdate *int       `json:"days_since_last_update,omitempty"`
	LastSeen            *time.Time `json:"last_seen,omitempty"`
	FailedUpdates       int        `json:"failed_updates"`
	// LastDownload ("delta" or "full") and LastDownloadBytes: how the
	// device's latest reported download in a rollout came.
	LastDownload      string `json:"last_download,omitempty"`
	LastDownloadBytes int64  `json:"last_download_bytes,omitempty"`
}
