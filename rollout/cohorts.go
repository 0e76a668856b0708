package rollout

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/storage"
)

// Cohort is a saved selector, with the number of devices it matches now.
type Cohort struct {
	Name      string    `json:"name"`
	Selector  string    `json:"selector"`
	Devices   int       `json:"devices"`
	CreatedAt time.Time `json:"created_at"`
	CreatedBy string    `json:"created_by"`
}

// CreateCohort saves a selector under a name. Errors: EInvalid for a bad
// name, selector or actor; EConflict when the name is taken.
func (s *Service) CreateCohort(ctx context.Context, name, selector, actor string) (Cohort, error) {
	return s.CreateCohortWith(ctx, name, selector, actor, nil)
}

// CreateCohortWith is CreateCohort that runs in (when not nil) inside the
// transaction that saves the cohort, after its insert: the cohort exists
// only with what in writes (its audit entry). Errors as CreateCohort's,
// and in's.
func (s *Service) CreateCohortWith(ctx context.Context, name, selector, actor string, in InTx) (Cohort, error) {
	if err := checkActor(actor); err != nil {
		return Cohort{}, err
	}
	if err := tufota.ValidateName("cohort name", name); err != nil {
		return Cohort{}, err
	}
	sel, err := ParseSelector(selector)
	if err != nil {
		return Cohort{}, err
	}
	now := s.clock()
	taken := false
	err = s.db.Tx(ctx, func(tx *storage.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO cohorts (name, selector, created_at, created_by) VALUES (?, ?, ?, ?)`,
			name, sel.String(), nanos(now), actor); err != nil {
			taken = errors.Is(err, tufota.ErrConflict)
			return err
		}
		return runIn(ctx, tx, in)
	})
	if taken {
		return Cohort{}, tufota.Errorf(tufota.EConflict, "cohort %s exists already", name)
	}
	if err != nil {
		return Cohort{}, fmt.Errorf("create cohort %s: %w", name, err)
	}
	c := Cohort{Name: name, Selector: sel.String(), CreatedAt: now, CreatedBy: actor}
	devices, err := s.allDevices(ctx)
	if err != nil {
		return Cohort{}, err
	}
	c.Devices = countMatching(sel, devices)
	return c, nil
}

func countMatching(sel Selector, devices []deviceRow) int {
	n := 0
	for _, d := range devices {
		if sel.Match(d.Device) {
			n++
		}
	}
	return n
}

// Cohorts returns every saved cohort by name, with matching device counts.
func (s *Service) Cohorts(ctx context.Context) ([]Cohort, error) {
	rows, err := s.db.Query(ctx, `SELECT name, selector, created_at, created_by FROM cohorts ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list cohorts: %w", err)
	}
	defer rows.Close()
	var out []Cohort
	for rows.Next() {
		var (
			c       Cohort
			created int64
		)
		if err := rows.Scan(&c.Name, &c.Selector, &created, &c.CreatedBy); err != nil {
			return nil, fmt.Errorf("list cohorts: %w", err)
		}
		c.CreatedAt = fromNanos(created)
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list cohorts: %w", err)
	}
	rows.Close()
	devices, err := s.allDevices(ctx)
	if err != nil {
		return nil, err
	}
	for i := range out {
		sel, err := ParseSelector(out[i].Selector)
		if err != nil {
			return nil, fmt.Errorf("cohort %s: stored selector: %w", out[i].Name, err)
		}
		out[i].Devices = countMatching(sel, devices)
	}
	return out, nil
}

// Cohort returns one saved cohort; ENotFound if there is none.
func (s *Service) Cohort(ctx context.Context, name string) (Cohort, error) {
	var (
		c       Cohort
		created int64
	)
	err := s.db.QueryRow(ctx, `SELECT name, selector, created_at, created_by FROM cohorts WHERE name = ?`, name).
		Scan(&c.Name, &c.Selector, &created, &c.CreatedBy)
	if errors.Is(err, tufota.ErrNotFound) {
		return Cohort{}, tufota.Errorf(tufota.ENotFound, "no cohort %s", name)
	}
	if err != nil {
		return Cohort{}, fmt.Errorf("get cohort %s: %w", name, err)
	}
	c.CreatedAt = fromNanos(created)
	sel, err := ParseSelector(c.Selector)
	if err != nil {
		return Cohort{}, fmt.Errorf("cohort %s: stored selector: %w", name, err)
	}
	devices, err := s.allDevices(ctx)
	if err != nil {
		return Cohort{}, err
	}
	c.Devices = countMatching(sel, devices)
	return c, nil
}
