// Package access authenticates callers and names what they may do: API
// tokens for people (random, stored only as hashes, expiring, revocable) and
// devices, and the roles that routes are checked against.
//
// A token reads "tft_<id>_<secret>". The id finds the row; the secret's
// SHA-256 is compared with the stored hash in constant time. The secret
// itself is never stored and is shown once, when the token is created.
package access

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/internal/seen"
	"github.com/tufota/tufota/storage"
)

// Role is what a principal may do.
type Role string

// Roles. Every route in the server names the roles it admits.
const (
	RoleAdmin           Role = "admin"            // users, tokens, keys, configuration
	RoleReleaseEngineer Role = "release-engineer" // push and sign releases
	RoleOperator        Role = "operator"         // devices, cohorts, rollouts, approvals
	RoleAuditor         Role = "auditor"          // read everything, change nothing
	RoleDevice          Role = "device"           // its own assignment and status only
	RoleEnroll          Role = "enroll"           // enrolls new devices in bulk, nothing else
)

// Roles lists every role, in the order they are documented.
var Roles = []Role{RoleAdmin, RoleReleaseEngineer, RoleOperator, RoleAuditor, RoleDevice, RoleEnroll}

// ParseRole returns the role named s, or an EInvalid error listing the roles.
func ParseRole(s string) (Role, error) {
	for _, r := range Roles {
		if string(r) == s {
			return r, nil
		}
	}
	return "", tufota.Errorf(tufota.EInvalid, "unknown role %q (want admin, release-engineer, operator, auditor, device or enroll)", s)
}

// Principal is an authenticated caller.
type Principal struct {
	Name     string // the token's name: a person, a pipeline or a device ID
	Role     Role
	TokenID  string
	DeviceID string // set for device principals
	// Scope is what an enrollment token enrolls devices with (JSON).
	Scope string `json:",omitempty"`
	// UserID and User are the id and name of the user the token belongs
	// to (empty for a device). The two-person rule compares these, never
	// token names: see Person.
	UserID string `json:",omitempty"`
	User   string `json:",omitempty"`
}

// Person names the person behind the principal for the two-person rule and
// for who created, approved or signed something: the user's name (user
// names are unique), or the token's name for a principal without a user
// (a device).
func (p Principal) Person() string {
	if p.User != "" {
		return p.User
	}
	return p.Name
}

// Token describes a stored token; it never holds the secret.
type Token struct {
	ID         string     `json:"id"`
	Name       string     `json:"name"`
	Role       Role       `json:"role"`
	DeviceID   string     `json:"device_id,omitempty"`
	OwnerID    string     `json:"owner_id,omitempty"` // the user it belongs to; empty for a device
	Owner      string     `json:"owner,omitempty"`    // that user's name
	CreatedAt  time.Time  `json:"created_at"`
	CreatedBy  string     `json:"created_by"`
	ExpiresAt  *time.Time `json:"expires_at,omitempty"`
	RevokedAt  *time.Time `json:"revoked_at,omitempty"`
	LastUsedAt *time.Time `json:"last_used_at,omitempty"`
}

// Tokens stores and checks API tokens in the state database. It is safe for
// concurrent use.
type Tokens struct {
	db    *storage.DB
	now   func() time.Time
	cache *tokenCache
	used  *seen.Times
}

// NewTokens returns a token store on db. now may be nil (time.Now).
func NewTokens(db *storage.DB, now func() time.Time) *Tokens {
	if now == nil {
		now = time.Now
	}
	t := &Tokens{db: db, now: now, cache: newTokenCache(DefaultCacheSize)}
	t.used = seen.New(t.storeLastUsed, nil)
	return t
}

const (
	tokenPrefix = "tft_"
	idBytes     = 8  // 64-bit public id, hex
	secretBytes = 32 // 256-bit secret
)

// NewToken is the input to Create.
type NewToken struct {
	Name     string
	Role     Role
	DeviceID string        // required for RoleDevice, refused otherwise
	TTL      time.Duration // 0: the role's DefaultLifetime; at most its MaxLifetime
	Scope    string        // JSON scope of an enrollment token
	// Owner is the id or name of the user a person's token belongs to; the
	// token's role must be one of the user's (EForbidden). Empty: the local
	// user named after the token, created with Role if there is none.
	// Device tokens belong to their device and take no owner.
	Owner string
}

// Create makes a token and returns its secret, which is not stored and cannot
// be recovered. actor is recorded as the creator. Every token expires: a
// lifetime above the role's MaxLifetime fails with EInvalid.
func (t *Tokens) Create(ctx context.Context, q storage.Querier, n NewToken, actor string) (secret string, tok Token, err error) {
	if q == nil {
		q = t.db
	}
	if err := tufota.ValidateName("token name", n.Name); err != nil {
		return "", Token{}, err
	}
	if _, err := ParseRole(string(n.Role)); err != nil {
		return "", Token{}, err
	}
	switch {
	case n.Role == RoleDevice && n.DeviceID == "":
		return "", Token{}, tufota.Errorf(tufota.EInvalid, "a device token needs a device ID")
	case n.Role != RoleDevice && n.DeviceID != "":
		return "", Token{}, tufota.Errorf(tufota.EInvalid, "only device tokens carry a device ID")
	}
	if n.TTL, err = checkLifetime(n.Role, n.TTL); err != nil {
		return "", Token{}, err
	}
	var owner sql.NullString
	if n.Role == RoleDevice {
		if n.Owner != "" {
			return "", Token{}, tufota.Errorf(tufota.EInvalid, "a device token belongs to its device, not to a user")
		}
	} else {
		u, err := t.ownerFor(ctx, q, n.Owner, n.Name, n.Role, actor)
		if err != nil {
			return "", Token{}, err
		}
		tok.OwnerID, tok.Owner = u.ID, u.Name
		owner = sql.NullString{String: u.ID, Valid: true}
	}
	id, err := randomHex(idBytes)
	if err != nil {
		return "", Token{}, err
	}
	raw := make([]byte, secretBytes)
	if _, err := rand.Read(raw); err != nil {
		return "", Token{}, fmt.Errorf("create token: %w", err)
	}
	sec := base64.RawURLEncoding.EncodeToString(raw)
	now := t.now().UTC()
	tok = Token{ID: id, Name: n.Name, Role: n.Role, DeviceID: n.DeviceID, OwnerID: tok.OwnerID, Owner: tok.Owner, CreatedAt: now, CreatedBy: actor}
	var expires sql.NullInt64
	if n.TTL > 0 {
		e := now.Add(n.TTL)
		tok.ExpiresAt = &e
		expires = sql.NullInt64{Int64: e.UnixNano(), Valid: true}
	}
	var device, scope sql.NullString
	if n.DeviceID != "" {
		device = sql.NullString{String: n.DeviceID, Valid: true}
	}
	if n.Scope != "" {
		scope = sql.NullString{String: n.Scope, Valid: true}
	}
	_, err = q.Exec(ctx, `INSERT INTO tokens (id, name, role, hash, created_at, created_by, expires_at, device_id, scope, owner)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		id, n.Name, string(n.Role), hashSecret(sec), now.UnixNano(), actor, expires, device, scope, owner)
	if err != nil {
		return "", Token{}, fmt.Errorf("create token %q: %w", n.Name, err)
	}
	return tokenPrefix + id + "_" + sec, tok, nil
}

// Authenticate returns the principal a token secret belongs to. Unknown,
// malformed, expired and revoked tokens fail with EUnauthorized and a message
// that says which (the id part is public, so naming the reason leaks nothing).
//
// A token seen before is checked from memory (the secret's hash compared in
// constant time with the stored one, expiry against the clock), so that a
// device poll reads and writes nothing in the database; its last use is
// coalesced and written by Run at most once per flush interval. A
// revocation on this server takes effect at once; one on another replica
// within the poll interval of Run (see Revoke).
func (t *Tokens) Authenticate(ctx context.Context, token string) (Principal, error) {
	id, sec, ok := splitToken(token)
	if !ok {
		return Principal{}, tufota.Errorf(tufota.EUnauthorized, "malformed token: want tft_<id>_<secret>")
	}
	sum := hashSecret(sec)
	e, ok := t.cache.get(id)
	if !ok {
		var err error
		if e, err = t.load(ctx, id); err != nil {
			if tufota.ErrorCode(err) == tufota.EUnauthorized {
				// Compare anyway so that unknown ids cost the same as known ones.
				subtle.ConstantTimeCompare([]byte(sum), []byte(hashSecret("")))
			}
			return Principal{}, err
		}
	}
	if subtle.ConstantTimeCompare([]byte(sum), []byte(e.hash)) != 1 {
		return Principal{}, tufota.Errorf(tufota.EUnauthorized, "unknown token")
	}
	now := t.now()
	if e.revoked {
		return Principal{}, tufota.Errorf(tufota.EUnauthorized, "token %s was revoked", id)
	}
	if e.expires != 0 && !now.Before(time.Unix(0, e.expires)) {
		return Principal{}, tufota.Errorf(tufota.EUnauthorized, "token %s expired at %s", id, time.Unix(0, e.expires).UTC().Format(time.RFC3339))
	}
	t.used.Touch(id, now)
	return e.principal, nil
}

// load reads token id from the database into the cache.
func (t *Tokens) load(ctx context.Context, id string) (cachedToken, error) {
	epoch := t.cache.epoch()
	var (
		name, role, hash string
		expires, revoked sql.NullInt64
		device, scope    sql.NullString
		owner, user      sql.NullString
		disabled         sql.NullInt64
	)
	err := t.db.QueryRow(ctx, `SELECT t.name, t.role, t.hash, t.expires_at, t.revoked_at, t.device_id, t.scope, t.owner, u.name, u.disabled_at
		FROM tokens t LEFT JOIN users u ON u.id = t.owner WHERE t.id = ?`, id).
		Scan(&name, &role, &hash, &expires, &revoked, &device, &scope, &owner, &user, &disabled)
	if errors.Is(err, tufota.ErrNotFound) {
		return cachedToken{}, tufota.Errorf(tufota.EUnauthorized, "unknown token")
	}
	if err != nil {
		return cachedToken{}, fmt.Errorf("authenticate: %w", err)
	}
	e := cachedToken{
		hash:      hash,
		expires:   expires.Int64,
		revoked:   revoked.Valid || disabled.Valid, // a disabled user's tokens were revoked with it
		principal: Principal{Name: name, Role: Role(role), TokenID: id, DeviceID: device.String, Scope: scope.String, UserID: owner.String, User: user.String},
	}
	t.cache.put(id, e, epoch)
	return e, nil
}

// List returns every token, newest first.
func (t *Tokens) List(ctx context.Context) ([]Token, error) {
	if err := t.used.Flush(ctx); err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	return t.list(ctx, t.db)
}

// list reads every token through q, newest first.
func (t *Tokens) list(ctx context.Context, q storage.Querier) ([]Token, error) {
	rows, err := q.Query(ctx, `SELECT t.id, t.name, t.role, t.device_id, t.created_at, t.created_by, t.expires_at, t.revoked_at, t.last_used_at, t.owner, u.name
		FROM tokens t LEFT JOIN users u ON u.id = t.owner ORDER BY t.created_at DESC, t.id`)
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	defer rows.Close()
	var out []Token
	for rows.Next() {
		var (
			tok                        Token
			role                       string
			device, owner, user        sql.NullString
			created                    int64
			expires, revoked, lastUsed sql.NullInt64
		)
		if err := rows.Scan(&tok.ID, &tok.Name, &role, &device, &created, &tok.CreatedBy, &expires, &revoked, &lastUsed, &owner, &user); err != nil {
			return nil, fmt.Errorf("list tokens: %w", err)
		}
		tok.Role, tok.DeviceID, tok.OwnerID, tok.Owner = Role(role), device.String, owner.String, user.String
		tok.CreatedAt = time.Unix(0, created).UTC()
		tok.ExpiresAt, tok.RevokedAt, tok.LastUsedAt = nanoTime(expires), nanoTime(revoked), nanoTime(lastUsed)
		out = append(out, tok)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	return out, nil
}

// Revoke revokes the token with the given id (or name, if exactly one live
// token has it). Revoking an already revoked token is a conflict. This
// server refuses the token from the moment Revoke returns; other replicas
// (sharing the PostgreSQL database) within one poll interval of their Run,
// because the revocation bumps the tokens generation in its transaction.
func (t *Tokens) Revoke(ctx context.Context, idOrName string) (Token, error) {
	if err := t.used.Flush(ctx); err != nil {
		return Token{}, fmt.Errorf("revoke token %s: %w", idOrName, err)
	}
	var tok Token
	err := t.db.Tx(ctx, func(tx *storage.Tx) error {
		var err error
		tok, err = t.RevokeIn(ctx, tx, idOrName)
		return err
	})
	return tok, err
}

// RevokeIn revokes a token as Revoke does, inside tx (the caller's
// transaction, e.g. with the revocation's audit entry): the token is
// refused here once tx commits. Errors as Revoke's.
func (t *Tokens) RevokeIn(ctx context.Context, tx *storage.Tx, idOrName string) (Token, error) {
	toks, err := t.list(ctx, tx)
	if err != nil {
		return Token{}, err
	}
	var match []Token
	for _, tok := range toks {
		if tok.ID == idOrName {
			match = []Token{tok}
			break
		}
		if tok.Name == idOrName && tok.RevokedAt == nil {
			match = append(match, tok)
		}
	}
	switch {
	case len(match) == 0:
		return Token{}, tufota.Errorf(tufota.ENotFound, "no token with id or name %q", idOrName)
	case len(match) > 1:
		return Token{}, tufota.Errorf(tufota.EConflict, "%d live tokens are named %q; revoke by id", len(match), idOrName)
	case match[0].RevokedAt != nil:
		return Token{}, tufota.Errorf(tufota.EConflict, "token %s is already revoked", match[0].ID)
	}
	now := t.now().UTC()
	if _, err := tx.Exec(ctx, `UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL`, now.UnixNano(), match[0].ID); err != nil {
		return Token{}, fmt.Errorf("revoke token %s: %w", match[0].ID, err)
	}
	g, err := t.db.Bump(ctx, tx, storage.GenTokens)
	if err != nil {
		return Token{}, fmt.Errorf("revoke token %s: %w", match[0].ID, err)
	}
	tx.OnCommit(func() { t.cache.revoked(match[0].ID, g) })
	match[0].RevokedAt = &now
	return match[0], nil
}

// ParseBearer extracts the token from an Authorization header value.
func ParseBearer(header string) (string, error) {
	if header == "" {
		return "", tufota.Errorf(tufota.EUnauthorized, "missing Authorization header: want \"Bearer <token>\"")
	}
	scheme, tok, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" || strings.ContainsAny(tok, " \t") {
		return "", tufota.Errorf(tufota.EUnauthorized, "malformed Authorization header: want \"Bearer <token>\"")
	}
	return tok, nil
}

func splitToken(tok string) (id, secret string, ok bool) {
	rest, ok := strings.CutPrefix(tok, tokenPrefix)
	if !ok {
		return "", "", false
	}
	id, secret, ok = strings.Cut(rest, "_")
	if !ok || len(id) != 2*idBytes || len(secret) != base64.RawURLEncoding.EncodedLen(secretBytes) {
		return "", "", false
	}
	if _, err := hex.DecodeString(id); err != nil {
		return "", "", false
	}
	return id, secret, true
}

func hashSecret(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("random id: %w", err)
	}
	return hex.EncodeToString(b), nil
}

func nanoTime(n sql.NullInt64) *time.Time {
	if !n.Valid {
		return nil
	}
	t := time.Unix(0, n.Int64).UTC()
	return &t
}
