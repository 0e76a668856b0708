package rollout

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/storage"
)

// Pin kinds: what a pin holds on a validated line.
const (
	PinCohort = "cohort"
	PinDevice = "device"
)

// Pin keeps a saved cohort or one device on a validated firmware line
// (hospital IT validated 1.4.x): no rollout offers it a release whose
// version is outside Version. A device's own pin decides alone; otherwise
// every cohort pin whose cohort matches the device must allow the version.
type Pin struct {
	Kind      string    `json:"kind"`
	Name      string    `json:"name"`
	Version   string    `json:"version"`
	Reason    string    `json:"reason"`
	CreatedBy string    `json:"created_by"`
	CreatedAt time.Time `json:"created_at"`
	// Selector is the pinned cohort's selector (cohort pins only).
	Selector string `json:"selector,omitempty"`
}

// VersionPattern is a pinned line: an exact version ("1.4.2") or a
// prefix of numeric components ending in * ("1.4.*", "1.*"), which allows
// every version (pre-releases included) with those components.
type VersionPattern struct {
	exact  string
	prefix []uint64
}

const maxPinReason = 512

// ParseVersionPattern parses a pinned line; errors are EInvalid.
func ParseVersionPattern(s string) (VersionPattern, error) {
	bad := func(why string) (VersionPattern, error) {
		return VersionPattern{}, tufota.Errorf(tufota.EInvalid, "version pattern %q: %s; write an exact version (1.4.2) or a line such as 1.4.* or 1.*", s, why)
	}
	if s == "" {
		return bad("empty")
	}
	if len(s) > tufota.MaxNameLen {
		return bad("too long")
	}
	if s == "*" {
		return bad("a line names at least its major version")
	}
	head, ok := strings.CutSuffix(s, ".*")
	if !ok {
		if strings.Contains(s, "*") {
			return bad("* may only be the last component")
		}
		if _, err := tufota.ParseVersion(s); err != nil {
			return bad("not a semantic version")
		}
		return VersionPattern{exact: s}, nil
	}
	parts := strings.Split(head, ".")
	if len(parts) > 2 {
		return bad("a line has at most two numbers before *")
	}
	p := VersionPattern{}
	for _, part := range parts {
		if part == "" || (len(part) > 1 && part[0] == '0') {
			return bad("each component must be a number without leading zeros")
		}
		n, err := strconv.ParseUint(part, 10, 64)
		if err != nil {
			return bad("each component must be a number")
		}
		p.prefix = append(p.prefix, n)
	}
	return p, nil
}

// Allows reports whether version is on the line.
func (p VersionPattern) Allows(version string) bool {
	if p.exact != "" {
		return version == p.exact
	}
	v, err := tufota.ParseVersion(version)
	if err != nil {
		return false
	}
	have := []uint64{v.Major, v.Minor, v.Patch}
	return len(p.prefix) > 0 && slices.Equal(have[:len(p.prefix)], p.prefix)
}

// Pins is the set of pins as the controller uses them.
type Pins struct {
	devices map[string]pinRule
	cohorts []pinRule
}

type pinRule struct {
	pin     Pin
	pattern VersionPattern
	sel     Selector
}

// NewPins builds the set from pins (cohort pins carry their selector).
// A pin that does not parse is an error (stored pins always parse).
func NewPins(pins []Pin) (Pins, error) {
	ps := Pins{devices: map[string]pinRule{}}
	for _, p := range pins {
		pat, err := ParseVersionPattern(p.Version)
		if err != nil {
			return Pins{}, fmt.Errorf("pin %s %s: %w", p.Kind, p.Name, err)
		}
		rule := pinRule{pin: p, pattern: pat}
		switch p.Kind {
		case PinDevice:
			ps.devices[p.Name] = rule
		case PinCohort:
			if rule.sel, err = ParseSelector(p.Selector); err != nil {
				return Pins{}, fmt.Errorf("pin cohort %s: %w", p.Name, err)
			}
			ps.cohorts = append(ps.cohorts, rule)
		default:
			return Pins{}, fmt.Errorf("pin %q %s: unknown kind", p.Kind, p.Name)
		}
	}
	slices.SortFunc(ps.cohorts, func(a, b pinRule) int { return strings.Compare(a.pin.Name, b.pin.Name) })
	return ps, nil
}

// Blocks returns the pin that keeps d from version, if one does: d's own
// pin when it has one, else the first (by cohort name) cohort pin that
// matches d and does not allow version.
func (ps Pins) Blocks(d *Device, version string) (Pin, bool) {
	if r, ok := ps.devices[d.ID]; ok {
		return r.pin, !r.pattern.Allows(version)
	}
	for _, r := range ps.cohorts {
		if r.sel.Match(*d) && !r.pattern.Allows(version) {
			return r.pin, true
		}
	}
	return Pin{}, false
}

// Len returns the number of pins.
func (ps Pins) Len() int { return len(ps.devices) + len(ps.cohorts) }

// checkPin validates a pin request; errors are EInvalid.
func checkPin(p *Pin) error {
	switch p.Kind {
	case PinCohort:
		if err := tufota.ValidateName("cohort name", p.Name); err != nil {
			return err
		}
	case PinDevice:
		if err := tufota.ValidateName("device ID", p.Name); err != nil {
			return err
		}
	default:
		return tufota.Errorf(tufota.EInvalid, "pin kind %q: want cohort or device", p.Kind)
	}
	if _, err := ParseVersionPattern(p.Version); err != nil {
		return err
	}
	p.Reason = strings.TrimSpace(strings.ToValidUTF8(p.Reason, "\uFFFD"))
	switch {
	case p.Reason == "":
		return tufota.Errorf(tufota.EInvalid, "a pin needs a reason (e.g. \"validated by site IT\")")
	case utf8.RuneCountInString(p.Reason) > maxPinReason:
		return tufota.Errorf(tufota.EInvalid, "pin reason is longer than %d characters", maxPinReason)
	}
	return nil
}

// SetPinWith pins a saved cohort or a device to a version line (replacing
// its pin, if any) and runs in (when not nil) in the same transaction,
// after the write: the pin takes effect only with what in writes (its
// audit entry). It returns the pin as stored. Errors: EInvalid for a bad
// pin or actor, ENotFound for an unknown cohort or device, and in's.
func (s *Service) SetPinWith(ctx context.Context, p Pin, actor string, in InTx) (Pin, error) {
	if err := checkActor(actor); err != nil {
		return Pin{}, err
	}
	if err := checkPin(&p); err != nil {
		return Pin{}, err
	}
	p.CreatedBy, p.CreatedAt = actor, s.clock()
	err := s.db.Tx(ctx, func(tx *storage.Tx) error {
		var err error
		switch p.Kind {
		case PinCohort:
			err = tx.QueryRow(ctx, `SELECT selector FROM cohorts WHERE name = ?`, p.Name).Scan(&p.Selector)
			if errors.Is(err, tufota.ErrNotFound) {
				return tufota.Errorf(tufota.ENotFound, "no cohort %s: save it first (tufota cohort create)", p.Name)
			}
		case PinDevice:
			var one int
			err = tx.QueryRow(ctx, `SELECT 1 FROM devices WHERE id = ?`, p.Name).Scan(&one)
			if errors.Is(err, tufota.ErrNotFound) {
				return tufota.Errorf(tufota.ENotFound, "device %s is not registered", p.Name)
			}
		}
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO pins (kind, name, version, reason, created_by, created_at) VALUES (?, ?, ?, ?, ?, ?)
			ON CONFLICT (kind, name) DO UPDATE SET version = excluded.version, reason = excluded.reason,
				created_by = excluded.created_by, created_at = excluded.created_at`,
			p.Kind, p.Name, p.Version, p.Reason, actor, nanos(p.CreatedAt)); err != nil {
			return err
		}
		// Pins are part of the active-rollout view every poll reads.
		if err := s.rolloutChanged(ctx, tx); err != nil {
			return err
		}
		return runIn(ctx, tx, in)
	})
	if err != nil {
		return Pin{}, fmt.Errorf("pin %s %s: %w", p.Kind, p.Name, err)
	}
	return p, nil
}

// RemovePinWith removes a pin, with in (when not nil) in the same
// transaction. Errors: EInvalid for a bad kind, ENotFound when there is no
// such pin, and in's.
func (s *Service) RemovePinWith(ctx context.Context, kind, name, actor string, in InTx) error {
	if err := checkActor(actor); err != nil {
		return err
	}
	if kind != PinCohort && kind != PinDevice {
		return tufota.Errorf(tufota.EInvalid, "pin kind %q: want cohort or device", kind)
	}
	err := s.db.Tx(ctx, func(tx *storage.Tx) error {
		res, err := tx.Exec(ctx, `DELETE FROM pins WHERE kind = ? AND name = ?`, kind, name)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return tufota.Errorf(tufota.ENotFound, "no pin on %s %s", kind, name)
		}
		if err := s.rolloutChanged(ctx, tx); err != nil {
			return err
		}
		return runIn(ctx, tx, in)
	})
	if err != nil {
		return fmt.Errorf("remove pin %s %s: %w", kind, name, err)
	}
	return nil
}

// ListPins returns every pin, cohort pins first, by name.
func (s *Service) ListPins(ctx context.Context) ([]Pin, error) {
	return s.readPins(ctx, s.db)
}

func (s *Service) readPins(ctx context.Context, q storage.Querier) ([]Pin, error) {
	rows, err := q.Query(ctx, `SELECT p.kind, p.name, p.version, p.reason, p.created_by, p.created_at, COALESCE(c.selector, '')
		FROM pins p LEFT JOIN cohorts c ON p.kind = 'cohort' AND c.name = p.name ORDER BY p.kind, p.name`)
	if err != nil {
		return nil, fmt.Errorf("list pins: %w", err)
	}
	defer rows.Close()
	var out []Pin
	for rows.Next() {
		var (
			p       Pin
			created int64
		)
		if err := rows.Scan(&p.Kind, &p.Name, &p.Version, &p.Reason, &p.CreatedBy, &created, &p.Selector); err != nil {
			return nil, fmt.Errorf("list pins: %w", err)
		}
		p.CreatedAt = fromNanos(created)
		if p.Kind == PinCohort && p.Selector == "" {
			continue // its cohort is gone: it pins nothing
		}
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list pins: %w", err)
	}
	return out, nil
}
