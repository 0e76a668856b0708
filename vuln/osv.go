// Package vuln matches security advisories against the software that
// releases ship and the devices that run them. It imports advisories in the
// OSV schema (one JSON record per file, a directory or zip of them as OSV
// publishes them per ecosystem) and CycloneDX VEX documents from the device
// maker, indexes the components of each release's SBOM (CycloneDX or SPDX
// JSON), and stores which advisory affects which component of which
// release, with VEX applied (Store). Matching itself is the pure function
// Match.
//
// Formats are read with their reference libraries: OSV records with the
// OSV schema's own Go bindings (github.com/ossf/osv-schema/bindings/go),
// CycloneDX SBOMs and VEX with github.com/CycloneDX/cyclonedx-go, package
// URLs with github.com/package-url/packageurl-go, and version ranges per
// ecosystem with osv-scalibr's semantic package (the comparator
// osv-scanner uses), with golang.org/x/mod/semver checking Go versions.
package vuln

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/osv-scalibr/semantic"
	"github.com/ossf/osv-schema/bindings/go/osvschema"
	"golang.org/x/mod/semver"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/tufota/tufota"
)

// MaxRecordBytes bounds one OSV record or VEX document.
const MaxRecordBytes = 4 << 20

// Advisory is one OSV record, reduced to what matching needs.
type Advisory struct {
	ID       string    `json:"id"`
	Aliases  []string  `json:"aliases,omitempty"`
	Summary  string    `json:"summary,omitempty"`
	Modified time.Time `json:"modified"`
	// Withdrawn is set when the advisory was withdrawn: it is kept but
	// never matched.
	Withdrawn *time.Time `json:"withdrawn,omitempty"`
	Affected  []Affected `json:"affected"`
}

// Affected is one package an advisory affects: its versions are those in
// Versions or inside one of Ranges.
type Affected struct {
	Ecosystem string   `json:"ecosystem"` // OSV ecosystem, e.g. "Go", "Debian:12"
	Name      string   `json:"name"`
	Purl      string   `json:"purl,omitempty"`
	Ranges    []Range  `json:"ranges,omitempty"`
	Versions  []string `json:"versions,omitempty"`
}

// Range is an OSV range of type SEMVER or ECOSYSTEM (GIT ranges name
// commits, which an SBOM does not carry, and are dropped at import).
type Range struct {
	Type   string  `json:"type"`
	Events []Event `json:"events"`
}

// Event is one OSV range event; exactly one field is set.
type Event struct {
	Introduced   string `json:"introduced,omitempty"`
	Fixed        string `json:"fixed,omitempty"`
	LastAffected string `json:"last_affected,omitempty"`
	Limit        string `json:"limit,omitempty"`
}

func (e Event) version() string {
	return e.Introduced + e.Fixed + e.LastAffected + e.Limit
}

// ParseOSV parses one OSV JSON record with the OSV schema's bindings and
// checks what matching relies on: an ID, known ecosystems, and versions
// that parse in their ecosystem. Errors are tufota.EInvalid (ETooLarge
// above MaxRecordBytes) and say what is wrong. It is safe for concurrent
// use.
func ParseOSV(data []byte) (Advisory, error) {
	if len(data) > MaxRecordBytes {
		return Advisory{}, tufota.Errorf(tufota.ETooLarge, "OSV record is %d bytes, larger than the limit of %d", len(data), MaxRecordBytes)
	}
	if !utf8.Valid(data) {
		return Advisory{}, tufota.Errorf(tufota.EInvalid, "OSV record is not valid UTF-8")
	}
	var v osvschema.Vulnerability
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(data, &v); err != nil {
		return Advisory{}, tufota.Errorf(tufota.EInvalid, "OSV record is not valid OSV JSON: %v", err)
	}
	if v.GetId() == "" {
		return Advisory{}, tufota.Errorf(tufota.EInvalid, "OSV record has no \"id\"")
	}
	if err := checkID(v.GetId()); err != nil {
		return Advisory{}, err
	}
	a := Advisory{ID: v.GetId(), Summary: v.GetSummary()}
	for _, al := range v.GetAliases() {
		if err := checkID(al); err != nil {
			return Advisory{}, fmt.Errorf("%s: alias: %w", a.ID, err)
		}
		if al != a.ID && !slices.Contains(a.Aliases, al) {
			a.Aliases = append(a.Aliases, al)
		}
	}
	if m := v.GetModified(); m != nil {
		a.Modified = m.AsTime().UTC()
	}
	if w := v.GetWithdrawn(); w != nil {
		t := w.AsTime().UTC()
		a.Withdrawn = &t
	}
	for i, af := range v.GetAffected() {
		p := af.GetPackage()
		out := Affected{Ecosystem: p.GetEcosystem(), Name: p.GetName(), Purl: p.GetPurl(), Versions: af.GetVersions()}
		if out.Ecosystem == "" || out.Name == "" {
			return Advisory{}, tufota.Errorf(tufota.EInvalid, "%s: affected[%d]: package needs an ecosystem and a name", a.ID, i)
		}
		if _, err := semantic.Parse("1", out.Ecosystem); errors.Is(err, semantic.ErrUnsupportedEcosystem) {
			return Advisory{}, tufota.Errorf(tufota.EInvalid, "%s: affected[%d] (%s): unknown ecosystem %q", a.ID, i, truncate(out.Name, 64), truncate(out.Ecosystem, 64))
		}
		for _, ver := range out.Versions {
			if err := checkVersion(out.Ecosystem, ver); err != nil {
				return Advisory{}, fmt.Errorf("%s: affected[%d] (%s %s): versions: %w", a.ID, i, out.Ecosystem, out.Name, err)
			}
		}
		for j, r := range af.GetRanges() {
			typ := r.GetType().String()
			if typ == "GIT" {
				continue
			}
			if typ != "SEMVER" && typ != "ECOSYSTEM" {
				return Advisory{}, tufota.Errorf(tufota.EInvalid, "%s: affected[%d].ranges[%d]: range type %q, want SEMVER, ECOSYSTEM or GIT", a.ID, i, j, typ)
			}
			rg := Range{Type: typ}
			for _, e := range r.GetEvents() {
				ev := Event{Introduced: e.GetIntroduced(), Fixed: e.GetFixed(), LastAffected: e.GetLastAffected(), Limit: e.GetLimit()}
				if ev.version() == "" {
					return Advisory{}, tufota.Errorf(tufota.EInvalid, "%s: affected[%d].ranges[%d]: an event without a version", a.ID, i, j)
				}
				if ev.Introduced != "0" {
					if err := checkVersion(out.Ecosystem, ev.version()); err != nil {
						return Advisory{}, fmt.Errorf("%s: affected[%d].ranges[%d] (%s %s): %w", a.ID, i, j, out.Ecosystem, out.Name, err)
					}
				}
				rg.Events = append(rg.Events, ev)
			}
			if len(rg.Events) == 0 {
				return Advisory{}, tufota.Errorf(tufota.EInvalid, "%s: affected[%d].ranges[%d]: no events", a.ID, i, j)
			}
			out.Ranges = append(out.Ranges, rg)
		}
		a.Affected = append(a.Affected, out)
	}
	return a, nil
}

func checkID(id string) error {
	if len(id) > 128 || strings.ContainsAny(id, " \t\r\n/\\") || id == "" {
		return tufota.Errorf(tufota.EInvalid, "advisory ID %q: want a short ID without spaces or slashes (such as CVE-2023-48795)", truncate(id, 64))
	}
	return nil
}

// checkVersion parses ver in ecosystem: an unknown ecosystem and a version
// that does not parse are EInvalid.
func checkVersion(ecosystem, ver string) error {
	if ver == "" {
		return tufota.Errorf(tufota.EInvalid, "empty version")
	}
	if _, err := parseVersion(ecosystem, ver); err != nil {
		return err
	}
	return nil
}

// parseVersion parses a version of an OSV ecosystem with osv-scalibr's
// semantic package. Go versions (semantic reads them leniently) must also
// be valid semantic versions per golang.org/x/mod/semver.
func parseVersion(ecosystem, ver string) (semantic.Version, error) {
	base, _, _ := strings.Cut(ecosystem, ":")
	if base == "Go" && !semver.IsValid("v"+strings.TrimPrefix(ver, "v")) {
		return nil, tufota.Errorf(tufota.EInvalid, "version %q is not a Go module version", truncate(ver, 64))
	}
	v, err := semantic.Parse(ver, ecosystem)
	switch {
	case errors.Is(err, semantic.ErrUnsupportedEcosystem):
		return nil, tufota.Errorf(tufota.EInvalid, "unknown ecosystem %q", truncate(ecosystem, 64))
	case err != nil:
		return nil, tufota.Errorf(tufota.EInvalid, "version %q does not parse in ecosystem %s: %v", truncate(ver, 64), truncate(ecosystem, 64), err)
	}
	return v, nil
}

// kindOf tells an OSV record ("osv") from a CycloneDX VEX document ("vex") by
// their top-level keys.
func kindOf(data []byte) (string, error) {
	var doc map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil || doc == nil {
		if err == nil {
			err = errors.New("null")
		}
		return "", tufota.Errorf(tufota.EInvalid, "not a JSON object: %v", err)
	}
	if _, ok := doc["bomFormat"]; ok {
		return "vex", nil
	}
	if _, ok := doc["id"]; ok {
		return "osv", nil
	}
	return "", tufota.Errorf(tufota.EInvalid, "neither an OSV record (no \"id\") nor a CycloneDX VEX document (no \"bomFormat\")")
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
