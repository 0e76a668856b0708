package tufota

import (
	"encoding/json"
	"fmt"
	"slices"
)

// CustomKey is the key under a TUF target's "custom" object that holds
// tufota's TargetCustom.
const CustomKey = "tufota"

// TargetCustom is the release information tufota signs into each firmware
// target's custom metadata. Devices decide what they may install from it, so
// it is only trusted after TUF verification.
type TargetCustom struct {
	Name     string   `json:"name"`
	Version  string   `json:"version"`
	Hardware []string `json:"hardware"`
	Notes    string   `json:"notes,omitempty"`
	// AllowDowngradeFrom lists the exact versions a device may leave for
	// this (older) release: the signed permission a rollback needs.
	AllowDowngradeFrom []string `json:"allow_downgrade_from,omitempty"`
}

// SupportsHardware reports whether hw is in the target's hardware list.
func (t TargetCustom) SupportsHardware(hw string) bool {
	return slices.Contains(t.Hardware, hw)
}

// MarshalCustom returns the JSON for a TUF target's custom field:
// {"tufota": t}.
func MarshalCustom(t TargetCustom) (json.RawMessage, error) {
	b, err := json.Marshal(map[string]TargetCustom{CustomKey: t})
	if err != nil {
		return nil, fmt.Errorf("marshal target custom: %w", err)
	}
	return b, nil
}

// UnmarshalCustom extracts TargetCustom from a TUF target's custom field.
// It fails with EInvalid if the field is missing or malformed.
func UnmarshalCustom(raw []byte) (TargetCustom, error) {
	var wrapper map[string]json.RawMessage
	if len(raw) == 0 {
		return TargetCustom{}, Errorf(EInvalid, "target has no custom metadata")
	}
	if err := json.Unmarshal(raw, &wrapper); err != nil {
		return TargetCustom{}, Errorf(EInvalid, "target custom metadata: %v", err)
	}
	inner, ok := wrapper[CustomKey]
	if !ok {
		return TargetCustom{}, Errorf(EInvalid, "target custom metadata has no %q object", CustomKey)
	}
	var t TargetCustom
	if err := json.Unmarshal(inner, &t); err != nil {
		return TargetCustom{}, Errorf(EInvalid, "target custom metadata: %v", err)
	}
	if err := ValidateName("release name", t.Name); err != nil {
		return TargetCustom{}, err
	}
	if _, err := ParseVersion(t.Version); err != nil {
		return TargetCustom{}, err
	}
	return t, nil
}

// TargetPath returns the TUF target path of a release's file:
// NAME/VERSION/FILE.
func TargetPath(name, version, file string) string {
	return name + "/" + version + "/" + file
}
