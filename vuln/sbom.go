package vuln

import (
	"bytes"
	"encoding/json"
	"strings"

	cdx "github.com/CycloneDX/cyclonedx-go"
	"github.com/package-url/packageurl-go"

	"github.com/tufota/tufota"
)

// Component is one software component a release ships, from its SBOM.
type Component struct {
	Purl    string `json:"purl,omitempty"` // without qualifiers
	Name    string `json:"name"`
	Version string `json:"version"`
	// Ecosystem is the OSV ecosystem of the purl type ("Go" for golang,
	// "Debian" for deb...), "" when there is none (generic components).
	Ecosystem string `json:"ecosystem,omitempty"`
	// Package is the package name in the ecosystem (Go: the module path,
	// "stdlib" for the standard library).
	Package string `json:"package,omitempty"`
}

// Components reads the components of an SBOM: CycloneDX JSON (with
// cyclonedx-go; nested components included) or SPDX 2.x JSON (packages
// with a purl external reference). Errors are tufota.EInvalid.
func Components(sbom []byte) ([]Component, error) {
	kind, err := sbomKind(sbom)
	if err != nil {
		return nil, err
	}
	var out []Component
	if kind == "spdx" {
		var doc struct {
			Packages []struct {
				Name         string `json:"name"`
				VersionInfo  string `json:"versionInfo"`
				ExternalRefs []struct {
					Type    string `json:"referenceType"`
					Locator string `json:"referenceLocator"`
				} `json:"externalRefs"`
			} `json:"packages"`
		}
		if err := json.Unmarshal(sbom, &doc); err != nil {
			return nil, tufota.Errorf(tufota.EInvalid, "SPDX SBOM: %v", err)
		}
		for _, p := range doc.Packages {
			c := Component{Name: p.Name, Version: p.VersionInfo}
			for _, r := range p.ExternalRefs {
				if r.Type == "purl" {
					c.Purl = r.Locator
				}
			}
			out = append(out, component(c))
		}
		return out, nil
	}
	var bom cdx.BOM
	if err := cdx.NewBOMDecoder(bytes.NewReader(sbom), cdx.BOMFileFormatJSON).Decode(&bom); err != nil {
		return nil, tufota.Errorf(tufota.EInvalid, "CycloneDX SBOM: %v", err)
	}
	var walk func([]cdx.Component)
	walk = func(cs []cdx.Component) {
		for _, c := range cs {
			out = append(out, component(Component{Name: c.Name, Version: c.Version, Purl: c.PackageURL}))
			if c.Components != nil {
				walk(*c.Components)
			}
		}
	}
	if bom.Metadata != nil && bom.Metadata.Component != nil {
		walk([]cdx.Component{*bom.Metadata.Component})
	}
	if bom.Components != nil {
		walk(*bom.Components)
	}
	return dedupe(out), nil
}

func sbomKind(b []byte) (string, error) {
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(b, &doc); err != nil || doc == nil {
		return "", tufota.Errorf(tufota.EInvalid, "SBOM is not a JSON object")
	}
	if _, ok := doc["spdxVersion"]; ok {
		return "spdx", nil
	}
	if _, ok := doc["bomFormat"]; ok {
		return "cyclonedx", nil
	}
	return "", tufota.Errorf(tufota.EInvalid, "SBOM is neither CycloneDX nor SPDX JSON")
}

// purlEcosystems maps package URL types to OSV ecosystems.
var purlEcosystems = map[string]string{
	"golang": "Go", "npm": "npm", "pypi": "PyPI", "maven": "Maven", "cargo": "crates.io",
	"gem": "RubyGems", "nuget": "NuGet", "composer": "Packagist", "hex": "Hex", "pub": "Pub",
	"deb": "Debian", "apk": "Alpine", "rpm": "Red Hat", "cran": "CRAN", "swift": "SwiftURL",
}

// component fills in the ecosystem and package name from the purl.
func component(c Component) Component {
	if c.Purl == "" {
		return c
	}
	p, err := packageurl.FromString(c.Purl)
	if err != nil {
		c.Purl = ""
		return c
	}
	if c.Version == "" {
		c.Version = p.Version
	}
	p.Qualifiers, p.Subpath = nil, ""
	c.Purl = p.ToString()
	c.Package = p.Name
	if p.Namespace != "" {
		c.Package = p.Namespace + "/" + p.Name
	}
	switch p.Type {
	case "deb":
		if p.Namespace == "ubuntu" {
			c.Ecosystem = "Ubuntu"
		} else {
			c.Ecosystem = "Debian"
		}
		c.Package = p.Name
	case "apk", "rpm":
		c.Ecosystem = purlEcosystems[p.Type]
		c.Package = p.Name
	case "maven":
		c.Ecosystem = "Maven"
		c.Package = p.Namespace + ":" + p.Name
	case "golang":
		c.Ecosystem = "Go"
		if c.Package == "std" {
			c.Package = "stdlib"
		}
	default:
		c.Ecosystem = purlEcosystems[p.Type]
	}
	return c
}

// osvVersion is a component version as OSV writes it for the ecosystem: Go
// versions without the leading "v" (and the toolchain's "go" prefix).
func osvVersion(ecosystem, v string) string {
	if ecosystem == "Go" {
		v = strings.TrimPrefix(v, "go")
		v = strings.TrimPrefix(v, "v")
	}
	return v
}

func dedupe(cs []Component) []Component {
	seen := map[string]bool{}
	out := cs[:0]
	for _, c := range cs {
		k := c.key()
		if !seen[k] {
			seen[k] = true
			out = append(out, c)
		}
	}
	return out
}

func (c Component) key() string { return c.Purl + "\x00" + c.Name + "\x00" + c.Version }

// ID names the component in findings: its purl, or its name.
func (c Component) ID() string {
	if c.Purl != "" {
		return c.Purl
	}
	return c.Name
}
