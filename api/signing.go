package api

import (
	"time"

	"github.com/tufota/tufota"
)

// MaxNotes bounds release notes.
const MaxNotes = 4096

// PushRequest describes a firmware release to push. It is the JSON
// "release" part of POST /api/v1/releases (multipart: "release", then
// optionally "sbom", then "file").
type PushRequest struct {
	Name               string   `json:"name"`
	Version            string   `json:"version"`
	Hardware           []string `json:"hardware"`
	Notes              string   `json:"notes,omitempty"`
	File               string   `json:"file"`
	AllowDowngradeFrom []string `json:"allow_downgrade_from,omitempty"`
}

// Validate checks every field and names the first problem.
func (p PushRequest) Validate() error {
	if err := tufota.ValidateName("release name", p.Name); err != nil {
		return err
	}
	if _, err := tufota.ParseVersion(p.Version); err != nil {
		return err
	}
	if err := tufota.ValidateName("file name", p.File); err != nil {
		return err
	}
	if len(p.Hardware) == 0 {
		return tufota.Errorf(tufota.EInvalid, "release %s@%s names no compatible hardware", p.Name, p.Version)
	}
	seen := map[string]bool{}
	for _, hw := range p.Hardware {
		if err := tufota.ValidateName("hardware ID", hw); err != nil {
			return err
		}
		if seen[hw] {
			return tufota.Errorf(tufota.EInvalid, "hardware ID %q listed twice", hw)
		}
		seen[hw] = true
	}
	for _, v := range p.AllowDowngradeFrom {
		c, err := tufota.CompareVersions(v, p.Version)
		if err != nil {
			return err
		}
		if c <= 0 {
			return tufota.Errorf(tufota.EInvalid, "allow-downgrade-from %s is not above the release version %s", v, p.Version)
		}
	}
	if len(p.Notes) > MaxNotes {
		return tufota.Errorf(tufota.EInvalid, "release notes are longer than %d bytes", MaxNotes)
	}
	return nil
}

// SBOM is a release's software bill of materials, a TUF target of its own.
type SBOM struct {
	Path   string `json:"path"`
	Format string `json:"format"`
	SHA256 string `json:"sha256"`
	Length int64  `json:"length"`
}

// VEX is the CycloneDX VEX document a release ships with, a TUF target of
// its own next to its SBOM.
type VEX struct {
	Path   string `json:"path"`
	SHA256 string `json:"sha256"`
	Length int64  `json:"length"`
}

// Release is a firmware image signed (or to be signed) into the TUF
// targets metadata.
type Release struct {
	Name               string         `json:"name"`
	Version            string         `json:"version"`
	TargetPath         string         `json:"target_path"`
	Length             int64          `json:"length"`
	SHA256             string         `json:"sha256"`
	SHA512             string         `json:"sha512,omitempty"`
	Hardware           []string       `json:"hardware"`
	Notes              string         `json:"notes,omitempty"`
	AllowDowngradeFrom []string       `json:"allow_downgrade_from,omitempty"`
	State              string         `json:"state"` // pending or published
	Role               string         `json:"role"`
	TargetsVersion     int64          `json:"targets_version"`
	CreatedAt          time.Time      `json:"created_at"`
	CreatedBy          string         `json:"created_by"`
	PublishedAt        *time.Time     `json:"published_at,omitempty"`
	SBOM               *SBOM          `json:"sbom,omitempty"`
	VEX                *VEX           `json:"vex,omitempty"`
	Signing            *SigningStatus `json:"signing,omitempty"`
	// Deltas are binary deltas to this release from earlier ones; only
	// GET /api/v1/releases/NAME/VERSION answers them.
	Deltas []Delta `json:"deltas,omitempty"`
}

// Delta is a binary delta from an earlier release of the same product to
// this one, and what became of it: published (a signed target of its
// own), too_large (not offered) or failed (Message says why).
type Delta struct {
	Name         string    `json:"name"`
	BaseVersion  string    `json:"base_version"`
	Version      string    `json:"version"`
	State        string    `json:"state"`
	TargetPath   string    `json:"target_path,omitempty"`
	Length       int64     `json:"length"`
	SHA256       string    `json:"sha256,omitempty"`
	FullLength   int64     `json:"full_length"`
	Message      string    `json:"message,omitempty"`
	CreateMillis int64     `json:"create_ms"`
	CreatedAt    time.Time `json:"created_at"`
}

// Signer is one signature collected for pending metadata.
type Signer struct {
	KeyID    string    `json:"keyid"`
	SignedBy string    `json:"signed_by"`
	SignedAt time.Time `json:"signed_at"`
	Roles    []string  `json:"roles,omitempty"`
}

// SigningStatus is where pending metadata stands: who signed, how many
// signatures are still needed.
type SigningStatus struct {
	Role          string    `json:"role"`
	Version       int64     `json:"version"`
	BaseVersion   int64     `json:"base_version"`
	Threshold     int       `json:"threshold"`
	OldThreshold  int       `json:"old_threshold,omitempty"`
	Signatures    []Signer  `json:"signatures"`
	ServerKeys    []string  `json:"server_keys,omitempty"`
	Needed        int       `json:"needed"`
	OldNeeded     int       `json:"old_needed,omitempty"`
	Keys          []string  `json:"keys"`
	Published     bool      `json:"published"`
	TargetsNeeded int       `json:"targets_needed,omitempty"`
	PayloadSHA256 string    `json:"payload_sha256"`
	Expires       time.Time `json:"expires"`
	CreatedBy     string    `json:"created_by"`
	CreatedAt     time.Time `json:"created_at"`
}

// SignatureUpload is one offline signature over a signing payload.
type SignatureUpload struct {
	KeyID         string `json:"keyid"`
	Sig           string `json:"sig"`
	PayloadSHA256 string `json:"payload_sha256"`
}

// Key is a TUF public key as TUF metadata writes it.
type Key struct {
	Type   string `json:"keytype"`
	Scheme string `json:"scheme"`
	Value  struct {
		Public string `json:"public"`
	} `json:"keyval"`
}

// DelegationRequest is the body of POST /api/v1/delegations: a delegated
// targets role to add.
type DelegationRequest struct {
	Name      string   `json:"name"`
	Paths     []string `json:"paths"`
	Keys      []*Key   `json:"keys"`
	Threshold int      `json:"threshold"`
}

// DelegationChange is the body of PATCH /api/v1/delegations/NAME.
type DelegationChange struct {
	AddKeys    []*Key   `json:"add_keys,omitempty"`
	RevokeKeys []string `json:"revoke_keys,omitempty"`
	Threshold  int      `json:"threshold,omitempty"` // 0: unchanged
}

// Delegation is a delegated targets role.
type Delegation struct {
	Name           string         `json:"name"`
	Paths          []string       `json:"paths"`
	KeyIDs         []string       `json:"keyids"`
	Threshold      int            `json:"threshold"`
	TargetsVersion int64          `json:"targets_version"`
	Version        int64          `json:"version"`
	Expires        *time.Time     `json:"expires,omitempty"`
	Targets        int            `json:"targets"`
	Signing        *SigningStatus `json:"signing,omitempty"`
	Resign         *SigningStatus `json:"resign,omitempty"`
	Pending        string         `json:"pending,omitempty"`
}

// RootRole is one role of a root: threshold and key IDs.
type RootRole struct {
	Role      string   `json:"role"`
	Threshold int      `json:"threshold"`
	Keys      []string `json:"keys"`
}

// RootSummary describes a root, or a pending one and what it changes.
type RootSummary struct {
	Version  int64      `json:"version"`
	Expires  time.Time  `json:"expires"`
	Roles    []RootRole `json:"roles"`
	OldRoles []RootRole `json:"old_roles,omitempty"`
	Changes  []string   `json:"changes,omitempty"`
}

// SigningPayload is GET .../signing and GET /api/v1/root/pending: the
// canonical bytes to sign and what they are.
type SigningPayload struct {
	Role          string             `json:"role"`
	Payload       []byte             `json:"payload"` // canonical JSON, base64 in JSON
	PayloadSHA256 string             `json:"payload_sha256"`
	Release       *Release           `json:"release,omitempty"`
	Delegation    *DelegationRequest `json:"delegation,omitempty"`
	Resign        *SigningPayload    `json:"resign,omitempty"`
	Targets       *SigningPayload    `json:"targets,omitempty"`
	Root          *RootSummary       `json:"root,omitempty"`
	Status        SigningStatus      `json:"status"`
}

// RootInfo is GET /api/v1/root: the current root and any pending change.
type RootInfo struct {
	Current RootSummary     `json:"current"`
	Pending *SigningPayload `json:"pending,omitempty"`
}

// RootKeyAdd adds a key to a root role.
type RootKeyAdd struct {
	Role string `json:"role"`
	Key  *Key   `json:"key"`
	URI  string `json:"uri,omitempty"`
}

// RootKeyRevoke removes a key from a root role.
type RootKeyRevoke struct {
	Role  string `json:"role"`
	KeyID string `json:"keyid"`
}

// RootChange is the body of POST /api/v1/root: a new root to sign.
type RootChange struct {
	AddKeys    []RootKeyAdd    `json:"add_keys,omitempty"`
	RevokeKeys []RootKeyRevoke `json:"revoke_keys,omitempty"`
	Thresholds map[string]int  `json:"thresholds,omitempty"`
	Expires    string          `json:"expires,omitempty"`
}
