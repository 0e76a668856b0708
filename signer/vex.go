package signer

import (
	"encoding/json"
	"fmt"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/api"
	"github.com/tufota/tufota/vuln"
)

// Shipped VEX. A release may carry one CycloneDX VEX document, the device
// maker's statements about vulnerabilities in its components, published
// like its SBOM as a companion TUF target in the same targets version:
// NAME/VERSION/vex.cdx.json. Its custom metadata carries no "tufota"
// object but a "tufota_vex_of" object naming the release; the firmware
// target's custom metadata names it under "tufota_vex" (a VEX value), so
// that a device or auditor verifies the statements with the firmware.

// MaxVEXBytes bounds one shipped VEX document (the limit of one record
// the vuln package parses).
const MaxVEXBytes = vuln.MaxRecordBytes

// VEXFileName is the file name of a release's VEX target.
const VEXFileName = "vex.cdx.json"

// Custom metadata keys of the VEX targets.
const (
	// CustomVEXKey, in a firmware target's custom metadata, holds the VEX
	// value describing the release's VEX target.
	CustomVEXKey = "tufota_vex"
	// CustomVEXOfKey, in a VEX target's custom metadata, holds the VEXOf
	// value naming the release it speaks for.
	CustomVEXOfKey = "tufota_vex_of"
)

// VEX describes a release's VEX target.
type VEX = api.VEX

// VEXOf is the custom metadata of a VEX target.
type VEXOf struct {
	Name     string `json:"name"`
	Version  string `json:"version"`
	Firmware string `json:"firmware"`
}

// ValidateVEX checks data with vuln.ParseVEX: a CycloneDX VEX document
// whose every statement has an ID, an analysis state and package URL
// refs. Errors: more than MaxVEXBytes is tufota.ETooLarge, anything else
// wrong tufota.EInvalid. It is safe for concurrent use.
func ValidateVEX(data []byte) error {
	if len(data) > MaxVEXBytes {
		return tufota.Errorf(tufota.ETooLarge, "VEX document is %d bytes, larger than the limit of %d bytes", len(data), MaxVEXBytes)
	}
	_, err := vuln.ParseVEX(data)
	return err
}

// vexOfCustom returns the VEX a firmware target's custom metadata names,
// or nil.
func vexOfCustom(custom []byte) *VEX {
	var c map[string]json.RawMessage
	if json.Unmarshal(custom, &c) != nil || c[CustomVEXKey] == nil {
		return nil
	}
	var v VEX
	if json.Unmarshal(c[CustomVEXKey], &v) != nil || v.Path == "" {
		return nil
	}
	return &v
}

func vexCustom(name, version, firmware string) (json.RawMessage, error) {
	b, err := json.Marshal(map[string]VEXOf{CustomVEXOfKey: {Name: name, Version: version, Firmware: firmware}})
	if err != nil {
		return nil, fmt.Errorf("marshal VEX target custom: %w", err)
	}
	return b, nil
}
