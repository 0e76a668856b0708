package vuln

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/storage"
)

// Store keeps advisories, VEX statements, release components and findings
// in the state database (tables of migration 0009). Every change recomputes
// the findings in its own transaction. It is safe for concurrent use.
type Store struct {
	db  *storage.DB
	now func() time.Time
}

// NewStore returns a Store on db; now is the clock (nil: time.Now).
func NewStore(db *storage.DB, now func() time.Time) *Store {
	if now == nil {
		now = time.Now
	}
	return &Store{db: db, now: now}
}

// ImportResult says what an import changed.
type ImportResult struct {
	Advisories int `json:"advisories"`
	Withdrawn  int `json:"withdrawn"`
	Statements int `json:"statements"`
	// NewlyAffected are the findings with status affected that the import
	// added (none before it for the advisory, release and component).
	NewlyAffected []Finding `json:"newly_affected"`
}

// Import stores a batch (advisories replace those with the same ID, VEX
// statements those with the same vulnerability, ref and product) and
// recomputes the findings, all inside tx: an error leaves nothing behind.
func (s *Store) Import(ctx context.Context, tx *storage.Tx, b Batch, actor string) (ImportResult, error) {
	if err := tx.LockXact(ctx, findingsLock); err != nil {
		return ImportResult{}, err
	}
	before, err := s.findings(ctx, tx, "")
	if err != nil {
		return ImportResult{}, err
	}
	now := s.now().UnixNano()
	res := ImportResult{Statements: len(b.VEX)}
	for _, a := range b.Advisories {
		rec, err := json.Marshal(a)
		if err != nil {
			return ImportResult{}, fmt.Errorf("import %s: %w", a.ID, err)
		}
		aliases, _ := json.Marshal(nonNil(a.Aliases))
		var wd sql.NullInt64
		if a.Withdrawn != nil {
			wd = sql.NullInt64{Int64: a.Withdrawn.UnixNano(), Valid: true}
			res.Withdrawn++
		} else {
			res.Advisories++
		}
		if _, err := tx.Exec(ctx, `INSERT INTO vuln_advisories (id, aliases, summary, modified, withdrawn, record, imported_at, imported_by)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (id) DO UPDATE SET aliases = excluded.aliases, summary = excluded.summary, modified = excluded.modified,
				withdrawn = excluded.withdrawn, record = excluded.record, imported_at = excluded.imported_at, imported_by = excluded.imported_by`,
			a.ID, string(aliases), truncate(a.Summary, 1024), a.Modified.UnixNano(), wd, string(rec), now, actor); err != nil {
			return ImportResult{}, fmt.Errorf("import %s: %w", a.ID, err)
		}
	}
	for _, v := range b.VEX {
		if _, err := tx.Exec(ctx, `INSERT INTO vuln_vex (vuln_id, ref, product, state, justification, detail, source, imported_at, imported_by)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (vuln_id, ref, product) DO UPDATE SET state = excluded.state, justification = excluded.justification,
				detail = excluded.detail, source = excluded.source, imported_at = excluded.imported_at, imported_by = excluded.imported_by`,
			v.VulnID, v.Ref, v.Product, v.State, v.Justification, v.Detail, truncate(b.sourceOf(v), 256), now, actor); err != nil {
			return ImportResult{}, fmt.Errorf("import VEX %s: %w", v.VulnID, err)
		}
	}
	after, err := s.recompute(ctx, tx)
	if err != nil {
		return ImportResult{}, err
	}
	res.NewlyAffected = newlyAffected(before, after)
	return res, nil
}

// newlyAffected returns the affected findings of after that were not
// affected in before.
func newlyAffected(before, after []Finding) []Finding {
	was := map[string]bool{}
	for _, f := range before {
		if f.Status == StatusAffected {
			was[f.key()] = true
		}
	}
	out := []Finding{}
	for _, f := range after {
		if f.Status == StatusAffected && !was[f.key()] {
			out = append(out, f)
		}
	}
	return out
}

func (f Finding) key() string {
	return f.Advisory + "\x00" + f.Release + "\x00" + f.Component + "\x00" + f.Version
}

// ReleaseSBOM is a release whose SBOM the store should index.
type ReleaseSBOM struct {
	Ref    string // NAME@VERSION
	SHA256 string // of the SBOM
	// Load returns the SBOM document; it is called only for releases the
	// store has not indexed at this SHA256.
	Load func(ctx context.Context) ([]byte, error)
	// VEXSHA256 and LoadVEX, when set, are the CycloneDX VEX document
	// the release ships with (signed with it). Its statements speak for
	// this release only (their product is Ref, whatever the document
	// names) and apply to its findings like imported VEX; an imported
	// statement for the same vulnerability, ref and product wins.
	VEXSHA256 string
	LoadVEX   func(ctx context.Context) ([]byte, error)
}

// indexKey is what vuln_releases.sbom_sha256 holds for r: the SBOM's
// SHA-256, and the shipped VEX's after "+vex:" if it has one, so that a
// change of either re-indexes the release.
func (r ReleaseSBOM) indexKey() string {
	if r.VEXSHA256 == "" {
		return r.SHA256
	}
	return r.SHA256 + "+vex:" + r.VEXSHA256
}

// shippedSource is the vuln_vex source of the statements release ref
// shipped with.
func shippedSource(ref string) string { return "release:" + ref }

// SyncReleases brings the indexed releases in line with rels: new ones
// (or ones whose SBOM changed) are indexed, ones no longer listed dropped,
// and the findings recomputed when anything changed, in one transaction.
// It returns whether anything changed.
func (s *Store) SyncReleases(ctx context.Context, rels []ReleaseSBOM) (bool, error) {
	have := map[string]string{}
	rows, err := s.db.Query(ctx, `SELECT release, sbom_sha256 FROM vuln_releases`)
	if err != nil {
		return false, fmt.Errorf("vuln: list indexed releases: %w", err)
	}
	for rows.Next() {
		var r, sum string
		if err := rows.Scan(&r, &sum); err != nil {
			rows.Close()
			return false, fmt.Errorf("vuln: list indexed releases: %w", err)
		}
		have[r] = sum
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return false, fmt.Errorf("vuln: list indexed releases: %w", err)
	}
	type indexed struct {
		ref, sum string
		cs       []Component
		vex      []Statement
	}
	var add []indexed
	keep := map[string]bool{}
	for _, r := range rels {
		keep[r.Ref] = true
		if have[r.Ref] == r.indexKey() {
			continue
		}
		doc, err := r.Load(ctx)
		if err != nil {
			return false, fmt.Errorf("vuln: SBOM of %s: %w", r.Ref, err)
		}
		cs, err := Components(doc)
		if err != nil {
			return false, fmt.Errorf("vuln: SBOM of %s: %w", r.Ref, err)
		}
		var vex []Statement
		if r.LoadVEX != nil {
			doc, err := r.LoadVEX(ctx)
			if err != nil {
				return false, fmt.Errorf("vuln: VEX of %s: %w", r.Ref, err)
			}
			if vex, err = ParseVEX(doc); err != nil {
				return false, fmt.Errorf("vuln: VEX of %s: %w", r.Ref, err)
			}
		}
		add = append(add, indexed{r.Ref, r.indexKey(), cs, vex})
	}
	var drop []string
	for r := range have {
		if !keep[r] {
			drop = append(drop, r)
		}
	}
	if len(add) == 0 && len(drop) == 0 {
		return false, nil
	}
	err = s.db.Tx(ctx, func(tx *storage.Tx) error {
		// Concurrent syncs (two reports right after a publish) wait here;
		// the later one replaces what the earlier one indexed.
		if err := tx.LockXact(ctx, findingsLock); err != nil {
			return err
		}
		for _, r := range append(drop, refs(add, func(i indexed) string { return i.ref })...) {
			if _, err := tx.Exec(ctx, `DELETE FROM vuln_components WHERE release = ?`, r); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `DELETE FROM vuln_releases WHERE release = ?`, r); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `DELETE FROM vuln_vex WHERE source = ?`, shippedSource(r)); err != nil {
				return err
			}
		}
		for _, a := range add {
			if _, err := tx.Exec(ctx, `INSERT INTO vuln_releases (release, sbom_sha256, indexed_at) VALUES (?, ?, ?)`, a.ref, a.sum, s.now().UnixNano()); err != nil {
				return err
			}
			for _, c := range a.cs {
				if _, err := tx.Exec(ctx, `INSERT INTO vuln_components (release, purl, name, version, ecosystem) VALUES (?, ?, ?, ?, ?)`,
					a.ref, c.Purl, c.Name, c.Version, c.Ecosystem); err != nil {
					return err
				}
			}
			for _, v := range a.vex {
				if _, err := tx.Exec(ctx, `INSERT INTO vuln_vex (vuln_id, ref, product, state, justification, detail, source, imported_at, imported_by)
					VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (vuln_id, ref, product) DO NOTHING`,
					v.VulnID, v.Ref, a.ref, v.State, v.Justification, v.Detail, shippedSource(a.ref), s.now().UnixNano(), "system"); err != nil {
					return err
				}
			}
		}
		_, err := s.recompute(ctx, tx)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("vuln: index releases: %w", err)
	}
	return true, nil
}

func refs[T any](xs []T, f func(T) string) []string {
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = f(x)
	}
	return out
}

// findingsLock serialises the transactions that rewrite the findings
// (on PostgreSQL; SQLite serialises writers anyway).
const findingsLock = "vuln.findings"

// recompute replaces the findings with Match over what is stored.
func (s *Store) recompute(ctx context.Context, tx *storage.Tx) ([]Finding, error) {
	if err := tx.LockXact(ctx, findingsLock); err != nil {
		return nil, err
	}
	advs, err := s.advisories(ctx, tx)
	if err != nil {
		return nil, err
	}
	vex, err := s.statements(ctx, tx)
	if err != nil {
		return nil, err
	}
	rels, err := s.releases(ctx, tx)
	if err != nil {
		return nil, err
	}
	fs := Match(advs, vex, rels)
	if _, err := tx.Exec(ctx, `DELETE FROM vuln_findings`); err != nil {
		return nil, fmt.Errorf("vuln: recompute: %w", err)
	}
	for _, f := range fs {
		if _, err := tx.Exec(ctx, `INSERT INTO vuln_findings (advisory, release, component, version, status, justification, fixed_in)
			VALUES (?, ?, ?, ?, ?, ?, ?)`, f.Advisory, f.Release, f.Component, f.Version, f.Status, f.Justification, f.FixedIn); err != nil {
			return nil, fmt.Errorf("vuln: recompute: %w", err)
		}
	}
	return fs, nil
}

func (s *Store) advisories(ctx context.Context, q storage.Querier) ([]Advisory, error) {
	rows, err := q.Query(ctx, `SELECT record FROM vuln_advisories ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("vuln: advisories: %w", err)
	}
	defer rows.Close()
	var out []Advisory
	for rows.Next() {
		var rec string
		if err := rows.Scan(&rec); err != nil {
			return nil, fmt.Errorf("vuln: advisories: %w", err)
		}
		var a Advisory
		if err := json.Unmarshal([]byte(rec), &a); err != nil {
			return nil, fmt.Errorf("vuln: advisory record: %w", err)
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

func (s *Store) statements(ctx context.Context, q storage.Querier) ([]Statement, error) {
	rows, err := q.Query(ctx, `SELECT vuln_id, ref, product, state, justification, detail FROM vuln_vex ORDER BY vuln_id, ref, product`)
	if err != nil {
		return nil, fmt.Errorf("vuln: VEX: %w", err)
	}
	defer rows.Close()
	var out []Statement
	for rows.Next() {
		var v Statement
		if err := rows.Scan(&v.VulnID, &v.Ref, &v.Product, &v.State, &v.Justification, &v.Detail); err != nil {
			return nil, fmt.Errorf("vuln: VEX: %w", err)
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

func (s *Store) releases(ctx context.Context, q storage.Querier) ([]Release, error) {
	rows, err := q.Query(ctx, `SELECT release, purl, name, version FROM vuln_components ORDER BY release, purl, name, version`)
	if err != nil {
		return nil, fmt.Errorf("vuln: components: %w", err)
	}
	defer rows.Close()
	var out []Release
	for rows.Next() {
		var ref string
		var c Component
		if err := rows.Scan(&ref, &c.Purl, &c.Name, &c.Version); err != nil {
			return nil, fmt.Errorf("vuln: components: %w", err)
		}
		if len(out) == 0 || out[len(out)-1].Ref != ref {
			out = append(out, Release{Ref: ref})
		}
		r := &out[len(out)-1]
		r.Components = append(r.Components, component(c))
	}
	return out, rows.Err()
}

// Findings returns the stored findings, by advisory, release and
// component; with id set, those of the alias group that has id among its
// IDs (ENotFound when no stored advisory has it). Aliases and summaries
// are filled in from the advisories.
func (s *Store) Findings(ctx context.Context, id string) ([]Finding, error) {
	return s.findings(ctx, s.db, id)
}

func (s *Store) findings(ctx context.Context, q storage.Querier, id string) ([]Finding, error) {
	advs, err := s.advisories(ctx, q)
	if err != nil {
		return nil, err
	}
	groups := map[string]Group{}
	want := ""
	for _, g := range Groups(advs) {
		groups[g.ID] = g
		if id != "" && slices.Contains(g.IDs, id) {
			want = g.ID
		}
	}
	if id != "" && want == "" {
		known := false
		for _, a := range advs {
			known = known || a.ID == id || slices.Contains(a.Aliases, id)
		}
		if !known {
			return nil, tufota.Errorf(tufota.ENotFound, "no advisory %q has been imported", truncate(id, 64))
		}
		return []Finding{}, nil // withdrawn
	}
	rows, err := q.Query(ctx, `SELECT advisory, release, component, version, status, justification, fixed_in FROM vuln_findings
		ORDER BY advisory, release, component, version`)
	if err != nil {
		return nil, fmt.Errorf("vuln: findings: %w", err)
	}
	defer rows.Close()
	out := []Finding{}
	for rows.Next() {
		var f Finding
		if err := rows.Scan(&f.Advisory, &f.Release, &f.Component, &f.Version, &f.Status, &f.Justification, &f.FixedIn); err != nil {
			return nil, fmt.Errorf("vuln: findings: %w", err)
		}
		if want != "" && f.Advisory != want {
			continue
		}
		if g, ok := groups[f.Advisory]; ok {
			f.Aliases, f.Summary = without(g.IDs, g.ID), g.Summary
		}
		out = append(out, f)
	}
	return out, rows.Err()
}

// Indexed returns the releases whose SBOMs the store has indexed.
func (s *Store) Indexed(ctx context.Context) (map[string]bool, error) {
	rows, err := s.db.Query(ctx, `SELECT release FROM vuln_releases`)
	if err != nil {
		return nil, fmt.Errorf("vuln: indexed releases: %w", err)
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var r string
		if err := rows.Scan(&r); err != nil {
			return nil, err
		}
		out[r] = true
	}
	return out, rows.Err()
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
