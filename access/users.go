package access

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/storage"
)

// IssuerLocal is the issuer of users tufota keeps itself (no identity
// provider): their subject is their name.
const IssuerLocal = "local"

// User is a person (or a pipeline acting as one). Every person's API token
// belongs to a user and carries at most the user's roles; the two-person
// rule compares users, never token names.
type User struct {
	ID         string     `json:"id"`
	Name       string     `json:"name"`
	Issuer     string     `json:"issuer"`
	Subject    string     `json:"subject"`
	Roles      []Role     `json:"roles"`
	CreatedAt  time.Time  `json:"created_at"`
	CreatedBy  string     `json:"created_by"`
	Disabled   bool       `json:"disabled"`
	DisabledAt *time.Time `json:"disabled_at,omitempty"`
	DisabledBy string     `json:"disabled_by,omitempty"`
}

// Has reports whether u holds role r.
func (u User) Has(r Role) bool { return slices.Contains(u.Roles, r) }

// NewUser is the input to CreateUser.
type NewUser struct {
	Name    string
	Issuer  string // empty: IssuerLocal
	Subject string // empty for a local user: its name
	Roles   []Role
}

// CreateUser adds a user inside q (nil: the store's database), recorded as
// created by actor. The name must be a valid name and unique (EConflict);
// roles must be known and person roles (device is not one, EInvalid).
func (t *Tokens) CreateUser(ctx context.Context, q storage.Querier, n NewUser, actor string) (User, error) {
	if q == nil {
		q = t.db
	}
	if err := tufota.ValidateName("user name", n.Name); err != nil {
		return User{}, err
	}
	if n.Issuer == "" {
		n.Issuer = IssuerLocal
	}
	if n.Subject == "" {
		if n.Issuer != IssuerLocal {
			return User{}, tufota.Errorf(tufota.EInvalid, "user %q of issuer %q needs a subject", n.Name, n.Issuer)
		}
		n.Subject = n.Name
	}
	if len(n.Roles) == 0 {
		return User{}, tufota.Errorf(tufota.EInvalid, "user %q needs at least one role", n.Name)
	}
	var roles []Role
	for _, r := range n.Roles {
		if _, err := ParseRole(string(r)); err != nil {
			return User{}, err
		}
		if r == RoleDevice {
			return User{}, tufota.Errorf(tufota.EInvalid, "role device is a device's, not a user's")
		}
		if !slices.Contains(roles, r) {
			roles = append(roles, r)
		}
	}
	if _, err := t.userBy(ctx, q, "name", n.Name); err == nil {
		return User{}, tufota.Errorf(tufota.EConflict, "user %q exists already", n.Name)
	} else if tufota.ErrorCode(err) != tufota.ENotFound {
		return User{}, err
	}
	id, err := randomHex(idBytes)
	if err != nil {
		return User{}, err
	}
	now := t.now().UTC()
	if _, err := q.Exec(ctx, `INSERT INTO users (id, name, issuer, subject, created_at, created_by) VALUES (?, ?, ?, ?, ?, ?)`,
		id, n.Name, n.Issuer, n.Subject, now.UnixNano(), actor); err != nil {
		if errors.Is(err, tufota.ErrConflict) {
			return User{}, tufota.Errorf(tufota.EConflict, "user %q (%s %s) exists already", n.Name, n.Issuer, n.Subject)
		}
		return User{}, fmt.Errorf("create user %q: %w", n.Name, err)
	}
	for _, r := range roles {
		if _, err := q.Exec(ctx, `INSERT INTO user_roles (user_id, role) VALUES (?, ?)`, id, string(r)); err != nil {
			return User{}, fmt.Errorf("create user %q: %w", n.Name, err)
		}
	}
	return User{ID: id, Name: n.Name, Issuer: n.Issuer, Subject: n.Subject, Roles: roles, CreatedAt: now, CreatedBy: actor}, nil
}

// User returns the user with the given id or name (ENotFound).
func (t *Tokens) User(ctx context.Context, q storage.Querier, idOrName string) (User, error) {
	if q == nil {
		q = t.db
	}
	u, err := t.userBy(ctx, q, "id", idOrName)
	if tufota.ErrorCode(err) == tufota.ENotFound {
		u, err = t.userBy(ctx, q, "name", idOrName)
	}
	if tufota.ErrorCode(err) == tufota.ENotFound {
		return User{}, tufota.Errorf(tufota.ENotFound, "no user with id or name %q", idOrName)
	}
	return u, err
}

// userBy reads one user by column col ("id" or "name").
func (t *Tokens) userBy(ctx context.Context, q storage.Querier, col, v string) (User, error) {
	us, err := t.users(ctx, q, "WHERE "+col+" = ?", v)
	if err != nil {
		return User{}, err
	}
	if len(us) == 0 {
		return User{}, tufota.Errorf(tufota.ENotFound, "no user with %s %q", col, v)
	}
	return us[0], nil
}

// Users returns every user, by name.
func (t *Tokens) Users(ctx context.Context) ([]User, error) { return t.users(ctx, t.db, "") }

func (t *Tokens) users(ctx context.Context, q storage.Querier, where string, args ...any) ([]User, error) {
	rows, err := q.Query(ctx, `SELECT id, name, issuer, subject, created_at, created_by, disabled_at, disabled_by FROM users `+where+` ORDER BY name`, args...)
	if err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	var out []User
	for rows.Next() {
		var (
			u        User
			created  int64
			disabled sql.NullInt64
			by       sql.NullString
		)
		if err := rows.Scan(&u.ID, &u.Name, &u.Issuer, &u.Subject, &created, &u.CreatedBy, &disabled, &by); err != nil {
			rows.Close()
			return nil, fmt.Errorf("list users: %w", err)
		}
		u.CreatedAt, u.DisabledAt, u.DisabledBy = time.Unix(0, created).UTC(), nanoTime(disabled), by.String
		u.Disabled = disabled.Valid
		out = append(out, u)
	}
	err = rows.Err()
	rows.Close()
	if err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	for i := range out {
		if out[i].Roles, err = userRoles(ctx, q, out[i].ID); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func userRoles(ctx context.Context, q storage.Querier, id string) ([]Role, error) {
	rows, err := q.Query(ctx, `SELECT role FROM user_roles WHERE user_id = ?`, id)
	if err != nil {
		return nil, fmt.Errorf("roles of user %s: %w", id, err)
	}
	defer rows.Close()
	roles := []Role{}
	for rows.Next() {
		var r string
		if err := rows.Scan(&r); err != nil {
			return nil, fmt.Errorf("roles of user %s: %w", id, err)
		}
		roles = append(roles, Role(r))
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("roles of user %s: %w", id, err)
	}
	slices.SortFunc(roles, func(a, b Role) int { return slices.Index(Roles, a) - slices.Index(Roles, b) })
	return roles, nil
}

// DisableUserIn disables the user with the given id or name inside tx (the
// caller's transaction, with its audit entry) and revokes every live token
// of theirs in it: once tx commits, this server refuses them at once (its
// verified-token cache is emptied), other replicas within one poll of Run
// (the tokens generation is bumped). It returns the user and how many
// tokens it revoked. Disabling a disabled user is a conflict.
func (t *Tokens) DisableUserIn(ctx context.Context, tx *storage.Tx, idOrName, actor string) (User, int64, error) {
	u, err := t.User(ctx, tx, idOrName)
	if err != nil {
		return User{}, 0, err
	}
	if u.Disabled {
		return User{}, 0, tufota.Errorf(tufota.EConflict, "user %s is already disabled", u.Name)
	}
	now := t.now().UTC()
	if _, err := tx.Exec(ctx, `UPDATE users SET disabled_at = ?, disabled_by = ? WHERE id = ?`, now.UnixNano(), actor, u.ID); err != nil {
		return User{}, 0, fmt.Errorf("disable user %s: %w", u.Name, err)
	}
	res, err := tx.Exec(ctx, `UPDATE tokens SET revoked_at = ? WHERE owner = ? AND revoked_at IS NULL`, now.UnixNano(), u.ID)
	if err != nil {
		return User{}, 0, fmt.Errorf("disable user %s: %w", u.Name, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return User{}, 0, fmt.Errorf("disable user %s: %w", u.Name, err)
	}
	if _, err := t.db.Bump(ctx, tx, storage.GenTokens); err != nil {
		return User{}, 0, fmt.Errorf("disable user %s: %w", u.Name, err)
	}
	tx.OnCommit(t.cache.dropAll)
	u.Disabled, u.DisabledAt, u.DisabledBy = true, &now, actor
	return u, n, nil
}

// ownerFor resolves the owner of a new person's token: the user owner (id
// or name), which must be enabled and hold role; or, when owner is empty,
// the local user named after the token, created holding role if there is
// none (what migration 0011 did for the tokens made before users existed).
func (t *Tokens) ownerFor(ctx context.Context, q storage.Querier, owner, name string, role Role, actor string) (User, error) {
	var (
		u   User
		err error
	)
	if owner != "" {
		u, err = t.User(ctx, q, owner)
	} else if u, err = t.userBy(ctx, q, "name", name); tufota.ErrorCode(err) == tufota.ENotFound {
		return t.CreateUser(ctx, q, NewUser{Name: name, Roles: []Role{role}}, actor)
	}
	if err != nil {
		return User{}, err
	}
	if u.Disabled {
		return User{}, tufota.Errorf(tufota.EForbidden, "user %s is disabled: no token can be made for them", u.Name)
	}
	if !u.Has(role) {
		return User{}, tufota.Errorf(tufota.EForbidden, "user %s does not hold role %s (their roles: %s): a token carries at most its owner's roles", u.Name, role, joinRoles(u.Roles))
	}
	return u, nil
}

func joinRoles(rs []Role) string {
	s := make([]string, len(rs))
	for i, r := range rs {
		s[i] = string(r)
	}
	return strings.Join(s, ", ")
}
