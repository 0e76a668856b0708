package delta

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/tufota/tufota"
)

// CustomKey is the key under a delta target's TUF "custom" object that
// holds its TargetCustom.
const CustomKey = "tufota_delta"

// FormatV1 names this package's delta format in TargetCustom.Format.
const FormatV1 = "tufdelta1"

// Ref names a firmware target by path, version, length and hashes, as the
// signed targets metadata lists it.
type Ref struct {
	Path    string            `json:"path"`
	Version string            `json:"version"`
	Length  int64             `json:"length"`
	Hashes  map[string]string `json:"hashes"`
}

// TargetCustom is what a delta target's signed custom metadata says: the
// firmware image it applies to (Base) and the one it produces (Result). A
// device uses a delta only if its installed image has Base's length and
// SHA-256, and installs the output only if it matches the Result target's
// own signed length and hashes (not just these copies).
type TargetCustom struct {
	Format string `json:"format"`
	Base   Ref    `json:"base"`
	Result Ref    `json:"result"`
}

// TargetPath returns the TUF target path of the delta that turns release
// NAME@BASE into NAME@VERSION: NAME/VERSION/delta-from-BASE.
func TargetPath(name, version, base string) string {
	return tufota.TargetPath(name, version, "delta-from-"+base)
}

// MarshalCustom returns the JSON for a delta target's custom field:
// {"tufota_delta": c}.
func MarshalCustom(c TargetCustom) (json.RawMessage, error) {
	b, err := json.Marshal(map[string]TargetCustom{CustomKey: c})
	if err != nil {
		return nil, fmt.Errorf("marshal delta custom: %w", err)
	}
	return b, nil
}

// UnmarshalCustom extracts TargetCustom from a delta target's custom field.
// It fails with EInvalid if the field is missing, malformed, of another
// format, or names no SHA-256 for the base or the result.
func UnmarshalCustom(raw []byte) (TargetCustom, error) {
	var wrapper map[string]json.RawMessage
	if err := json.Unmarshal(raw, &wrapper); err != nil {
		return TargetCustom{}, tufota.Errorf(tufota.EInvalid, "delta custom metadata: %v", err)
	}
	inner, ok := wrapper[CustomKey]
	if !ok {
		return TargetCustom{}, tufota.Errorf(tufota.EInvalid, "target custom metadata has no %q object", CustomKey)
	}
	var c TargetCustom
	if err := json.Unmarshal(inner, &c); err != nil {
		return TargetCustom{}, tufota.Errorf(tufota.EInvalid, "delta custom metadata: %v", err)
	}
	if c.Format != FormatV1 {
		return TargetCustom{}, tufota.Errorf(tufota.EInvalid, "delta format %q, this device applies %q", c.Format, FormatV1)
	}
	for _, r := range []Ref{c.Base, c.Result} {
		if r.Path == "" || r.Length < 0 || len(r.Hashes["sha256"]) != 64 || strings.Trim(r.Hashes["sha256"], "0123456789abcdef") != "" {
			return TargetCustom{}, tufota.Errorf(tufota.EInvalid, "delta custom metadata names %q without a length and SHA-256", r.Path)
		}
	}
	return c, nil
}
