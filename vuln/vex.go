package vuln

import (
	"bytes"
	"strings"
	"unicode/utf8"

	cdx "github.com/CycloneDX/cyclonedx-go"
	"github.com/package-url/packageurl-go"

	"github.com/tufota/tufota"
)

// VEX states, as tufota stores them (CycloneDX analysis states map onto
// these: resolved → fixed, in_triage → under_investigation, exploitable →
// affected, false_positive → not_affected).
const (
	StatusAffected           = "affected"
	StatusNotAffected        = "not_affected"
	StatusFixed              = "fixed"
	StatusUnderInvestigation = "under_investigation"
)

// Statement is one VEX statement: what the device maker says about one
// vulnerability in one component (a package URL; without a version it
// covers every version), for one release (Product NAME@VERSION) or, when
// Product is empty, for every release.
type Statement struct {
	VulnID        string `json:"vuln_id"`
	Ref           string `json:"ref"`
	Product       string `json:"product,omitempty"`
	State         string `json:"state"`
	Justification string `json:"justification,omitempty"`
	Detail        string `json:"detail,omitempty"`
}

// ParseVEX parses a CycloneDX VEX document (JSON) with cyclonedx-go. Each
// vulnerability needs an ID, an analysis state and "affects" refs that are
// package URLs; not_affected needs a justification. The document's
// metadata.component, when it has a name and a version, names the release
// the statements speak for. Errors are tufota.EInvalid (ETooLarge above
// MaxRecordBytes). It is safe for concurrent use.
func ParseVEX(data []byte) ([]Statement, error) {
	if len(data) > MaxRecordBytes {
		return nil, tufota.Errorf(tufota.ETooLarge, "VEX document is %d bytes, larger than the limit of %d", len(data), MaxRecordBytes)
	}
	if !utf8.Valid(data) {
		return nil, tufota.Errorf(tufota.EInvalid, "VEX document is not valid UTF-8")
	}
	var bom cdx.BOM
	if err := cdx.NewBOMDecoder(bytes.NewReader(data), cdx.BOMFileFormatJSON).Decode(&bom); err != nil {
		return nil, tufota.Errorf(tufota.EInvalid, "VEX document is not CycloneDX JSON: %v", err)
	}
	if bom.BOMFormat != "CycloneDX" {
		return nil, tufota.Errorf(tufota.EInvalid, "VEX document: \"bomFormat\" is %q, want \"CycloneDX\"", truncate(bom.BOMFormat, 32))
	}
	if bom.Vulnerabilities == nil || len(*bom.Vulnerabilities) == 0 {
		return nil, tufota.Errorf(tufota.EInvalid, "VEX document has no \"vulnerabilities\"")
	}
	product := ""
	if m := bom.Metadata; m != nil && m.Component != nil && m.Component.Name != "" && m.Component.Version != "" {
		product = m.Component.Name + "@" + m.Component.Version
	}
	var out []Statement
	for i, v := range *bom.Vulnerabilities {
		if err := checkID(v.ID); err != nil {
			return nil, tufota.Errorf(tufota.EInvalid, "VEX vulnerabilities[%d]: %v", i, err)
		}
		if v.Analysis == nil || v.Analysis.State == "" {
			return nil, tufota.Errorf(tufota.EInvalid, "VEX %s: no analysis state", v.ID)
		}
		st, err := vexState(v.Analysis.State)
		if err != nil {
			return nil, tufota.Errorf(tufota.EInvalid, "VEX %s: %v", v.ID, err)
		}
		just := string(v.Analysis.Justification)
		if st == StatusNotAffected && just == "" && v.Analysis.State != cdx.IASFalsePositive {
			return nil, tufota.Errorf(tufota.EInvalid, "VEX %s: not_affected needs a justification (such as code_not_reachable)", v.ID)
		}
		if v.Affects == nil || len(*v.Affects) == 0 {
			return nil, tufota.Errorf(tufota.EInvalid, "VEX %s: no \"affects\"", v.ID)
		}
		for _, a := range *v.Affects {
			ref, err := normalPurl(a.Ref)
			if err != nil {
				return nil, tufota.Errorf(tufota.EInvalid, "VEX %s: affects ref %q: want a package URL (pkg:...): %v", v.ID, truncate(a.Ref, 64), err)
			}
			out = append(out, Statement{VulnID: v.ID, Ref: ref, Product: product, State: st, Justification: just, Detail: truncate(v.Analysis.Detail, 1024)})
		}
	}
	return out, nil
}

func vexState(s cdx.ImpactAnalysisState) (string, error) {
	switch s {
	case cdx.IASNotAffected, cdx.IASFalsePositive:
		return StatusNotAffected, nil
	case cdx.IASResolved, cdx.IASResolvedWithPedigree:
		return StatusFixed, nil
	case cdx.IASInTriage:
		return StatusUnderInvestigation, nil
	case cdx.IASExploitable:
		return StatusAffected, nil
	}
	return "", tufota.Errorf(tufota.EInvalid, "analysis state %q, want not_affected, resolved, in_triage, exploitable or false_positive", truncate(string(s), 32))
}

// normalPurl parses a package URL and returns it without qualifiers and
// subpath, which do not change what the package is for matching.
func normalPurl(s string) (string, error) {
	if !strings.HasPrefix(s, "pkg:") {
		return "", tufota.Errorf(tufota.EInvalid, "not a package URL")
	}
	p, err := packageurl.FromString(s)
	if err != nil {
		return "", err
	}
	p.Qualifiers = nil
	p.Subpath = ""
	return p.ToString(), nil
}

// key is the identity of a statement in the store.
func (s Statement) key() string { return s.VulnID + "\x00" + s.Ref + "\x00" + s.Product }
