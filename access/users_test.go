package access

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/storage"
)

func openUsersDB(t *testing.T) (*storage.DB, *Tokens) {
	t.Helper()
	db, err := storage.OpenDB(context.Background(), "sqlite:"+filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db, NewTokens(db, nil)
}

func wantCode(t *testing.T, err error, code tufota.Code, msg string) {
	t.Helper()
	if tufota.ErrorCode(err) != code || !strings.Contains(err.Error(), msg) {
		t.Fatalf("error = %v (%s), want %s containing %q", err, tufota.ErrorCode(err), code, msg)
	}
}

// TestTokenCarriesAtMostItsOwnersRoles: a person's token belongs to a user
// and is refused a role the user lacks; device tokens take no owner.
func TestTokenCarriesAtMostItsOwnersRoles(t *testing.T) {
	ctx := context.Background()
	_, toks := openUsersDB(t)
	alice, err := toks.CreateUser(ctx, nil, NewUser{Name: "alice", Roles: []Role{RoleOperator, RoleAuditor, RoleOperator}}, "admin")
	if err != nil {
		t.Fatal(err)
	}
	if alice.Issuer != IssuerLocal || alice.Subject != "alice" || len(alice.Roles) != 2 {
		t.Fatalf("user = %+v", alice)
	}
	for _, tc := range []struct {
		name string
		n    NewToken
		code tufota.Code
		msg  string
	}{
		{"role the owner lacks", NewToken{Name: "a1", Role: RoleAdmin, Owner: "alice"}, tufota.EForbidden, "user alice does not hold role admin"},
		{"unknown owner", NewToken{Name: "a2", Role: RoleOperator, Owner: "mallory"}, tufota.ENotFound, `no user with id or name "mallory"`},
		{"device token with owner", NewToken{Name: "d", Role: RoleDevice, DeviceID: "d", Owner: "alice"}, tufota.EInvalid, "belongs to its device"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := toks.Create(ctx, nil, tc.n, "admin")
			wantCode(t, err, tc.code, tc.msg)
		})
	}
	for _, owner := range []string{"alice", alice.ID} {
		sec, tok, err := toks.Create(ctx, nil, NewToken{Name: "alice-" + owner[:3], Role: RoleOperator, Owner: owner}, "admin")
		if err != nil {
			t.Fatal(err)
		}
		if tok.OwnerID != alice.ID || tok.Owner != "alice" {
			t.Fatalf("token owner = %q %q, want alice %s", tok.Owner, tok.OwnerID, alice.ID)
		}
		p, err := toks.Authenticate(ctx, sec)
		if err != nil || p.UserID != alice.ID || p.User != "alice" || p.Person() != "alice" {
			t.Fatalf("principal = %+v, %v", p, err)
		}
	}
	// Without an owner: the local user named after the token.
	if _, tok, err := toks.Create(ctx, nil, NewToken{Name: "ci", Role: RoleReleaseEngineer}, "admin"); err != nil || tok.Owner != "ci" {
		t.Fatalf("ownerless token: %+v, %v", tok, err)
	}
	_, _, err = toks.Create(ctx, nil, NewToken{Name: "alice", Role: RoleAdmin}, "admin")
	wantCode(t, err, tufota.EForbidden, "user alice does not hold role admin")
	for _, tc := range []struct {
		name string
		n    NewUser
		code tufota.Code
	}{
		{"duplicate", NewUser{Name: "alice", Roles: []Role{RoleOperator}}, tufota.EConflict},
		{"no roles", NewUser{Name: "bob"}, tufota.EInvalid},
		{"device role", NewUser{Name: "bob", Roles: []Role{RoleDevice}}, tufota.EInvalid},
		{"unknown role", NewUser{Name: "bob", Roles: []Role{"wizard"}}, tufota.EInvalid},
		{"bad name", NewUser{Name: "../bob", Roles: []Role{RoleOperator}}, tufota.EInvalid},
		{"idp user without subject", NewUser{Name: "bob", Issuer: "https://idp.example", Roles: []Role{RoleOperator}}, tufota.EInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := toks.CreateUser(ctx, nil, tc.n, "admin")
			if tufota.ErrorCode(err) != tc.code {
				t.Fatalf("error = %v, want %s", err, tc.code)
			}
		})
	}
}

// TestDisableUserRevokesTheirTokensAtOnce: disabling a user revokes every
// token of theirs in the transaction; this server refuses them at once,
// although they were verified (cached) before; other users' tokens work.
func TestDisableUserRevokesTheirTokensAtOnce(t *testing.T) {
	ctx := context.Background()
	db, toks := openUsersDB(t)
	for _, name := range []string{"alice", "bob"} {
		if _, err := toks.CreateUser(ctx, nil, NewUser{Name: name, Roles: []Role{RoleOperator}}, "admin"); err != nil {
			t.Fatal(err)
		}
	}
	var alices []string
	for _, name := range []string{"alice-laptop", "alice-ci"} {
		sec, _, err := toks.Create(ctx, nil, NewToken{Name: name, Role: RoleOperator, Owner: "alice"}, "admin")
		if err != nil {
			t.Fatal(err)
		}
		alices = append(alices, sec)
	}
	bob, _, err := toks.Create(ctx, nil, NewToken{Name: "bob", Role: RoleOperator, Owner: "bob"}, "admin")
	if err != nil {
		t.Fatal(err)
	}
	for _, sec := range append(alices, bob) {
		if _, err := toks.Authenticate(ctx, sec); err != nil {
			t.Fatal(err)
		}
	}
	var n int64
	if err := db.Tx(ctx, func(tx *storage.Tx) error {
		var err error
		_, n, err = toks.DisableUserIn(ctx, tx, "alice", "admin")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Fatalf("revoked %d tokens, want 2", n)
	}
	for _, sec := range alices {
		_, err := toks.Authenticate(ctx, sec)
		wantCode(t, err, tufota.EUnauthorized, "was revoked")
	}
	if _, err := toks.Authenticate(ctx, bob); err != nil {
		t.Fatalf("bob's token after alice was disabled: %v", err)
	}
	if g, err := db.Generation(ctx, storage.GenTokens); err != nil || g == 0 {
		t.Fatalf("tokens generation = %d, %v: other replicas would not learn of it", g, err)
	}
	err = db.Tx(ctx, func(tx *storage.Tx) error { _, _, err := toks.DisableUserIn(ctx, tx, "alice", "admin"); return err })
	wantCode(t, err, tufota.EConflict, "already disabled")
	_, _, err = toks.Create(ctx, nil, NewToken{Name: "alice-new", Role: RoleOperator, Owner: "alice"}, "admin")
	wantCode(t, err, tufota.EForbidden, "disabled")
	us, err := toks.Users(ctx)
	if err != nil || len(us) != 2 || !us[0].Disabled || us[0].DisabledBy != "admin" || us[1].Disabled {
		t.Fatalf("users = %+v, %v", us, err)
	}
}

// TestMigrationMakesUsersOfTokenNames runs the data part of migration
// 0011 on tokens made before users existed: each distinct name of a
// person's token becomes a local user holding its live tokens' roles and
// owning them; device tokens stay without an owner.
func TestMigrationMakesUsersOfTokenNames(t *testing.T) {
	ctx := context.Background()
	db, toks := openUsersDB(t)
	admin, _, err := toks.Create(ctx, nil, NewToken{Name: "admin", Role: RoleAdmin}, "tufota-init")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []NewToken{{Name: "ops", Role: RoleOperator}, {Name: "ops2", Role: RoleAuditor}, {Name: "pump-1", Role: RoleDevice, DeviceID: "pump-1"}} {
		if _, _, err := toks.Create(ctx, nil, n, "admin"); err != nil {
			t.Fatal(err)
		}
	}
	// Undo what Create did since 0011, and give "ops" a second token with another role.
	for _, q := range []string{
		`UPDATE tokens SET owner = NULL`, `DELETE FROM user_roles`, `DELETE FROM users`,
		`UPDATE tokens SET name = 'ops' WHERE name = 'ops2'`,
	} {
		if _, err := db.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	ms, err := storage.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	var sql string
	for _, m := range ms {
		if m.Name == "users" {
			sql = m.SQL[strings.Index(m.SQL, "INSERT INTO users"):]
		}
	}
	if sql == "" {
		t.Fatal("no users migration with its INSERT INTO users")
	}
	for _, stmt := range strings.Split(sql, ";") {
		if strings.TrimSpace(stmt) == "" {
			continue
		}
		if _, err := db.Exec(ctx, stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	fresh := NewTokens(db, nil) // nothing cached from before
	p, err := fresh.Authenticate(ctx, admin)
	if err != nil || p.User != "admin" || p.UserID != "local-admin" {
		t.Fatalf("init admin token after the migration: %+v, %v", p, err)
	}
	us, err := fresh.Users(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, u := range us {
		got[u.Name] = joinRoles(u.Roles)
	}
	if len(got) != 2 || got["admin"] != "admin" || got["ops"] != "operator, auditor" {
		t.Fatalf("users after the migration = %v", got)
	}
	list, err := fresh.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, tok := range list {
		if want := map[bool]string{true: "", false: tok.Name}[tok.Role == RoleDevice]; tok.Owner != want {
			t.Errorf("token %s (%s): owner %q, want %q", tok.Name, tok.Role, tok.Owner, want)
		}
	}
}

// TestDisableUserReachesOtherReplica: a user disabled through one replica
// has their tokens refused by another that had them verified in memory,
// once it has polled the tokens generation (SQLite and PostgreSQL).
func TestDisableUserReachesOtherReplica(t *testing.T) {
	for name, dbs := range replicaDBs(t) {
		t.Run(name, func(t *testing.T) {
			ctx := t.Context()
			a, b := NewTokens(dbs[0], nil), NewTokens(dbs[1], nil)
			if _, err := a.CreateUser(ctx, nil, NewUser{Name: "dana-" + name, Roles: []Role{RoleOperator}}, "admin"); err != nil {
				t.Fatal(err)
			}
			sec, _, err := a.Create(ctx, nil, NewToken{Name: "dana-laptop-" + name, Role: RoleOperator, Owner: "dana-" + name}, "admin")
			if err != nil {
				t.Fatal(err)
			}
			if err := b.Sync(ctx); err != nil {
				t.Fatal(err)
			}
			if p, err := b.Authenticate(ctx, sec); err != nil || p.User != "dana-"+name {
				t.Fatalf("before: %+v, %v", p, err)
			}
			if err := dbs[0].Tx(ctx, func(tx *storage.Tx) error {
				_, _, err := a.DisableUserIn(ctx, tx, "dana-"+name, "admin")
				return err
			}); err != nil {
				t.Fatal(err)
			}
			if _, err := a.Authenticate(ctx, sec); tufota.ErrorCode(err) != tufota.EUnauthorized {
				t.Fatalf("on the replica that disabled the user: %v, want unauthorized", err)
			}
			if err := b.Sync(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := b.Authenticate(ctx, sec); tufota.ErrorCode(err) != tufota.EUnauthorized {
				t.Fatalf("on the other replica after its poll: %v, want unauthorized", err)
			}
		})
	}
}
