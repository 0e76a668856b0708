package vuln

import (
	"slices"
	"sort"
	"strings"
)

// Release is a release's identity and the components of its SBOM.
type Release struct {
	Ref        string      `json:"release"` // NAME@VERSION
	Components []Component `json:"components"`
}

// Finding is one advisory (an alias group) found in one component of one
// release, with the VEX status that applies.
type Finding struct {
	Advisory string   `json:"advisory"` // canonical ID of the alias group
	Aliases  []string `json:"aliases,omitempty"`
	Summary  string   `json:"summary,omitempty"`
	Release  string   `json:"release"`
	// Component is the purl, or the name when the SBOM gives none.
	Component     string `json:"component"`
	Version       string `json:"version"`
	Status        string `json:"status"`
	Justification string `json:"justification,omitempty"`
	// FixedIn is the component version that fixes it, when the advisory
	// says.
	FixedIn string `json:"fixed_in,omitempty"`
}

// Group is advisories that name each other as aliases (a CVE, its GHSA and
// its GO- record), merged.
type Group struct {
	ID      string // the CVE ID when there is one, else the smallest ID
	IDs     []string
	Summary string
	Members []Advisory
}

// Groups merges advisories whose IDs or aliases overlap, ignoring
// withdrawn advisories (their aliases do not join groups either). Groups
// come sorted by ID.
func Groups(advs []Advisory) []Group {
	parent := map[string]string{}
	var find func(string) string
	find = func(x string) string {
		if p, ok := parent[x]; ok && p != x {
			r := find(p)
			parent[x] = r
			return r
		}
		parent[x] = x
		return x
	}
	union := func(a, b string) { parent[find(a)] = find(b) }
	var live []Advisory
	for _, a := range advs {
		if a.Withdrawn != nil {
			continue
		}
		live = append(live, a)
		find(a.ID)
		for _, al := range a.Aliases {
			union(al, a.ID)
		}
	}
	byRoot := map[string]*Group{}
	for _, a := range live {
		r := find(a.ID)
		g := byRoot[r]
		if g == nil {
			g = &Group{}
			byRoot[r] = g
		}
		g.Members = append(g.Members, a)
		for _, id := range append([]string{a.ID}, a.Aliases...) {
			if !slices.Contains(g.IDs, id) {
				g.IDs = append(g.IDs, id)
			}
		}
	}
	out := make([]Group, 0, len(byRoot))
	for _, g := range byRoot {
		sort.Strings(g.IDs)
		g.ID = g.IDs[0]
		for _, id := range g.IDs {
			if strings.HasPrefix(id, "CVE-") {
				g.ID = id
				break
			}
		}
		sort.Slice(g.Members, func(i, j int) bool { return g.Members[i].ID < g.Members[j].ID })
		for _, m := range g.Members {
			if m.Summary != "" {
				g.Summary = m.Summary
				break
			}
		}
		out = append(out, *g)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Match returns every finding of the advisories in the releases' components,
// with VEX statements applied: a statement about any ID of the group, for
// the component's purl (with or without version) and for the release or for
// every release, sets the status (not_affected, fixed, under_investigation,
// affected); a release-specific statement wins over a general one, one
// with a version over one without. Withdrawn advisories are ignored.
// Findings come sorted by advisory, release and component. Match is pure.
func Match(advs []Advisory, vex []Statement, rels []Release) []Finding {
	groups := Groups(advs)
	// Index the groups by the packages they name, so that each component
	// meets only the advisories about it (an OSV export holds thousands).
	idx := map[string][]int{}
	add := func(k string, gi int) {
		if l := idx[k]; len(l) == 0 || l[len(l)-1] != gi {
			idx[k] = append(l, gi)
		}
	}
	for gi, g := range groups {
		for _, a := range g.Members {
			for _, af := range a.Affected {
				base, _, _ := strings.Cut(af.Ecosystem, ":")
				add(base+"\x00"+af.Name, gi)
				if af.Purl != "" {
					add("purl\x00"+af.Purl, gi)
				}
			}
		}
	}
	var out []Finding
	for _, rel := range rels {
		for _, c := range rel.Components {
			unversioned, _, _ := strings.Cut(c.Purl, "@")
			cands := append(slices.Clone(idx[c.Ecosystem+"\x00"+c.Package]), idx["purl\x00"+unversioned]...)
			slices.Sort(cands)
			for _, gi := range slices.Compact(cands) {
				g := groups[gi]
				hit, fixed := g.affects(c)
				if !hit {
					continue
				}
				f := Finding{Advisory: g.ID, Aliases: without(g.IDs, g.ID), Summary: g.Summary, Release: rel.Ref,
					Component: c.ID(), Version: c.Version, Status: StatusAffected, FixedIn: fixed}
				if st, ok := applicable(vex, g.IDs, rel.Ref, c); ok {
					f.Status, f.Justification = st.State, st.Justification
				}
				out = append(out, f)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Advisory != b.Advisory {
			return a.Advisory < b.Advisory
		}
		if a.Release != b.Release {
			return a.Release < b.Release
		}
		return a.Component < b.Component
	})
	return out
}

func without(ids []string, id string) []string {
	var out []string
	for _, x := range ids {
		if x != id {
			out = append(out, x)
		}
	}
	return out
}

// applicable picks the most specific VEX statement for the component.
func applicable(vex []Statement, ids []string, rel string, c Component) (Statement, bool) {
	if c.Purl == "" {
		return Statement{}, false
	}
	unversioned, _, _ := strings.Cut(c.Purl, "@")
	best, bestScore := Statement{}, -1
	for _, s := range vex {
		if !slices.Contains(ids, s.VulnID) || (s.Product != "" && s.Product != rel) {
			continue
		}
		score := 0
		switch s.Ref {
		case c.Purl:
			score = 1
		case unversioned:
		default:
			continue
		}
		if s.Product != "" {
			score += 2
		}
		if score > bestScore {
			best, bestScore = s, score
		}
	}
	return best, bestScore >= 0
}

// affects reports whether any member of g affects c, and the version that
// fixes it (the lowest fixed event above c's version), if any.
func (g Group) affects(c Component) (bool, string) {
	if c.Ecosystem == "" {
		return false, ""
	}
	for _, a := range g.Members {
		for _, af := range a.Affected {
			if !samePackage(af, c) {
				continue
			}
			if hit, fixed := affectedVersion(af, osvVersion(c.Ecosystem, c.Version)); hit {
				return true, fixed
			}
		}
	}
	return false, ""
}

func samePackage(af Affected, c Component) bool {
	base, _, _ := strings.Cut(af.Ecosystem, ":")
	if base != c.Ecosystem {
		return false
	}
	if af.Name == c.Package {
		return true
	}
	if af.Purl != "" {
		p, _, _ := strings.Cut(c.Purl, "@")
		return af.Purl == p
	}
	return false
}

// affectedVersion evaluates the OSV rules for one version: listed in
// versions, or inside a range (events sorted by version: introduced opens,
// fixed closes before, last_affected closes after). A version that does not
// parse in the ecosystem is not matched (the SBOM is not the advisory's to
// judge; such components show up in no finding).
func affectedVersion(af Affected, ver string) (bool, string) {
	v, err := parseVersion(af.Ecosystem, ver)
	if err != nil {
		return false, ""
	}
	if slices.Contains(af.Versions, ver) {
		return true, ""
	}
	for _, r := range af.Ranges {
		evs := slices.Clone(r.Events)
		cmp := func(a, b string) int {
			if a == b {
				return 0
			}
			if a == "0" {
				return -1
			}
			if b == "0" {
				return 1
			}
			pa, err := parseVersion(af.Ecosystem, a)
			if err != nil {
				return 0
			}
			n, _ := pa.CompareStr(b)
			return n
		}
		sort.SliceStable(evs, func(i, j int) bool { return cmp(evs[i].version(), evs[j].version()) < 0 })
		in := false
		fixed := ""
		for _, e := range evs {
			switch {
			case e.Introduced != "":
				if e.Introduced == "0" {
					in = true
				} else if n, err := v.CompareStr(e.Introduced); err == nil && n >= 0 {
					in = true
				}
			case e.Fixed != "":
				if n, err := v.CompareStr(e.Fixed); err == nil && n >= 0 {
					in = false
				} else if in && fixed == "" {
					fixed = e.Fixed
				}
			case e.LastAffected != "":
				if n, err := v.CompareStr(e.LastAffected); err == nil && n > 0 {
					in = false
				}
			case e.Limit != "":
				if n, err := v.CompareStr(e.Limit); err == nil && n >= 0 {
					in = false
				}
			}
			if !in && fixed != "" {
				fixed = ""
			}
		}
		if in {
			return true, fixed
		}
	}
	return false, ""
}
