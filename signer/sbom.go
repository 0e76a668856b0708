package signer

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/api"
)

// Software bills of materials. A release may carry one SBOM (CycloneDX or
// SPDX JSON), published as a companion TUF target of the release in the
// same targets version as the firmware: NAME/VERSION/sbom.cdx.json or
// NAME/VERSION/sbom.spdx.json. Its custom metadata carries no "tufota"
// object (so no device ever takes it for firmware) but a "tufota_sbom_of"
// object naming the release; the firmware target's custom metadata names
// its SBOM under "tufota_sbom" (an SBOM value), so that both are signed
// together.

// SBOM formats, as ValidateSBOM returns them.
const (
	SBOMCycloneDX = "cyclonedx"
	SBOMSPDX      = "spdx"
)

// MaxSBOMBytes bounds one SBOM document.
const MaxSBOMBytes = 10 << 20

// Custom metadata keys of the SBOM targets.
const (
	// CustomSBOMKey, in a firmware target's custom metadata, holds the
	// SBOM value describing the release's SBOM target.
	CustomSBOMKey = "tufota_sbom"
	// CustomSBOMOfKey, in an SBOM target's custom metadata, holds the
	// SBOMOf value naming the release it describes.
	CustomSBOMOfKey = "tufota_sbom_of"
)

// SBOM describes a release's SBOM target.
type SBOM = api.SBOM

// SBOMOf is the custom metadata of an SBOM target: the release it
// describes and that release's firmware target.
type SBOMOf struct {
	Name     string `json:"name"`
	Version  string `json:"version"`
	Format   string `json:"format"`
	Firmware string `json:"firmware"`
}

// SBOMFileName returns the file name of an SBOM target of the given format
// ("sbom.cdx.json" or "sbom.spdx.json"); "" for an unknown format.
func SBOMFileName(format string) string {
	switch format {
	case SBOMCycloneDX:
		return "sbom.cdx.json"
	case SBOMSPDX:
		return "sbom.spdx.json"
	}
	return ""
}

// ValidateSBOM checks that data is one SBOM document in JSON and returns
// its format: SBOMCycloneDX ("bomFormat" "CycloneDX", "specVersion" 1.x,
// "components", if present, an array of objects with a "type" and a
// "name") or SBOMSPDX ("spdxVersion" SPDX-2.x, "SPDXID"
// "SPDXRef-DOCUMENT", "packages", if present, an array of objects with an
// "SPDXID" and a "name"). The document must be exactly one UTF-8 JSON
// object with nothing after it. It checks the envelope a consumer needs to
// recognise the document, not the whole schema.
//
// Errors: more than MaxSBOMBytes is tufota.ETooLarge; anything else wrong
// is tufota.EInvalid naming what is missing or malformed. It is safe for
// concurrent use.
func ValidateSBOM(data []byte) (format string, err error) {
	if len(data) > MaxSBOMBytes {
		return "", tufota.Errorf(tufota.ETooLarge, "SBOM is %d bytes, larger than the limit of %d bytes", len(data), MaxSBOMBytes)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return "", tufota.Errorf(tufota.EInvalid, "SBOM is empty")
	}
	if !utf8.Valid(data) {
		return "", tufota.Errorf(tufota.EInvalid, "SBOM is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	var doc map[string]json.RawMessage
	if err := dec.Decode(&doc); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return "", tufota.Errorf(tufota.EInvalid, "SBOM is a JSON %s, not an object", te.Value)
		}
		return "", tufota.Errorf(tufota.EInvalid, "SBOM is not valid JSON: %v", err)
	}
	if doc == nil {
		return "", tufota.Errorf(tufota.EInvalid, "SBOM is JSON null, not an object")
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return "", tufota.Errorf(tufota.EInvalid, "SBOM has trailing data after the JSON document")
	}
	_, cdx := doc["bomFormat"]
	_, spdx := doc["spdxVersion"]
	switch {
	case cdx && spdx:
		return "", tufota.Errorf(tufota.EInvalid, "SBOM has both \"bomFormat\" (CycloneDX) and \"spdxVersion\" (SPDX); it must be one or the other")
	case cdx:
		return SBOMCycloneDX, validateCycloneDX(doc)
	case spdx:
		return SBOMSPDX, validateSPDX(doc)
	}
	return "", tufota.Errorf(tufota.EInvalid, "SBOM is neither CycloneDX JSON (no \"bomFormat\") nor SPDX JSON (no \"spdxVersion\")")
}

func validateCycloneDX(doc map[string]json.RawMessage) error {
	if f, err := stringField(doc, "bomFormat", "CycloneDX SBOM"); err != nil {
		return err
	} else if f != "CycloneDX" {
		return tufota.Errorf(tufota.EInvalid, "CycloneDX SBOM: \"bomFormat\" is %q, want \"CycloneDX\"", f)
	}
	v, err := stringField(doc, "specVersion", "CycloneDX SBOM")
	if err != nil {
		return err
	}
	if minor, ok := strings.CutPrefix(v, "1."); !ok || !allDigits(minor) {
		return tufota.Errorf(tufota.EInvalid, "CycloneDX SBOM: \"specVersion\" is %q, want 1.x (such as \"1.5\")", v)
	}
	return checkItems(doc, "components", "CycloneDX SBOM", "type", "name")
}

func validateSPDX(doc map[string]json.RawMessage) error {
	v, err := stringField(doc, "spdxVersion", "SPDX SBOM")
	if err != nil {
		return err
	}
	if minor, ok := strings.CutPrefix(v, "SPDX-2."); !ok || !allDigits(minor) {
		return tufota.Errorf(tufota.EInvalid, "SPDX SBOM: \"spdxVersion\" is %q, want SPDX-2.x (such as \"SPDX-2.3\")", v)
	}
	id, err := stringField(doc, "SPDXID", "SPDX SBOM")
	if err != nil {
		return err
	}
	if id != "SPDXRef-DOCUMENT" {
		return tufota.Errorf(tufota.EInvalid, "SPDX SBOM: \"SPDXID\" is %q, want \"SPDXRef-DOCUMENT\"", id)
	}
	return checkItems(doc, "packages", "SPDX SBOM", "SPDXID", "name")
}

// stringField returns the string doc[key]; a missing or non-string field
// is tufota.EInvalid.
func stringField(doc map[string]json.RawMessage, key, what string) (string, error) {
	raw, ok := doc[key]
	if !ok {
		return "", tufota.Errorf(tufota.EInvalid, "%s has no %q", what, key)
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", tufota.Errorf(tufota.EInvalid, "%s: %q is not a string", what, key)
	}
	return s, nil
}

// checkItems checks that doc[key], if present, is an array of objects,
// each with the non-empty string fields required.
func checkItems(doc map[string]json.RawMessage, key, what string, required ...string) error {
	raw, ok := doc[key]
	if !ok {
		return nil
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil || items == nil {
		return tufota.Errorf(tufota.EInvalid, "%s: %q is not an array", what, key)
	}
	for i, it := range items {
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(it, &obj); err != nil || obj == nil {
			return tufota.Errorf(tufota.EInvalid, "%s: %s[%d] is not an object", what, key, i)
		}
		for _, f := range required {
			s, err := stringField(obj, f, "")
			if err != nil || s == "" {
				return tufota.Errorf(tufota.EInvalid, "%s: %s[%d] has no %q string", what, key, i, f)
			}
		}
	}
	return nil
}

func allDigits(s string) bool {
	if s == "" || len(s) > 9 {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
