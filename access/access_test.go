package access

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/storage"
)

func TestTokens(t *testing.T) {
	ctx := context.Background()
	db, err := storage.OpenDB(ctx, "sqlite:"+filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	toks := NewTokens(db, func() time.Time { return now })

	secret, tok, err := toks.Create(ctx, nil, NewToken{Name: "alice", Role: RoleReleaseEngineer, TTL: time.Hour}, "admin")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(secret, "tft_"+tok.ID+"_") || len(secret) < 4+16+1+43 {
		t.Fatalf("secret %q does not look like tft_<id>_<256-bit secret>", secret)
	}
	var stored string
	if err := db.QueryRow(ctx, `SELECT hash FROM tokens WHERE id = ?`, tok.ID).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(secret, stored) || stored == secret[len(secret)-43:] {
		t.Fatal("the token secret is stored in plain text")
	}
	p, err := toks.Authenticate(ctx, secret)
	if err != nil || p.Name != "alice" || p.Role != RoleReleaseEngineer {
		t.Fatalf("Authenticate = %+v, %v", p, err)
	}

	now = now.Add(time.Hour)
	if _, err := toks.Authenticate(ctx, secret); !errors.Is(err, tufota.ErrUnauthorized) || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("expired token: %v", err)
	}

	s2, t2, err := toks.Create(ctx, nil, NewToken{Name: "bob", Role: RoleAuditor}, "admin")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := toks.Revoke(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	if _, err := toks.Authenticate(ctx, s2); err == nil || !strings.Contains(err.Error(), "revoked") {
		t.Fatalf("revoked token: %v", err)
	}
	if _, err := toks.Revoke(ctx, t2.ID); !errors.Is(err, tufota.ErrConflict) {
		t.Fatalf("second revoke: %v, want conflict", err)
	}

	for _, bad := range []NewToken{
		{Name: "x", Role: "root"},
		{Name: "../x", Role: RoleAdmin},
		{Name: "d", Role: RoleDevice},
		{Name: "d", Role: RoleAdmin, DeviceID: "dev-1"},
		{Name: "x", Role: RoleAdmin, TTL: -time.Second},
	} {
		if _, _, err := toks.Create(ctx, nil, bad, "admin"); !errors.Is(err, tufota.ErrInvalid) {
			t.Errorf("Create(%+v) = %v, want ErrInvalid", bad, err)
		}
	}
}

func TestParseBearer(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"Bearer abc", "abc"}, {"bearer abc", "abc"}, {"", ""}, {"Basic abc", ""}, {"Bearer ", ""}, {"Bearer a b", ""},
	} {
		got, err := ParseBearer(tc.in)
		if got != tc.want || (tc.want == "") != (err != nil) {
			t.Errorf("ParseBearer(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

// FuzzAuthenticateParse checks that no token string panics the parser and
// that only well-formed ones split.
func FuzzAuthenticateParse(f *testing.F) {
	f.Add("tft_0123456789abcdef_" + strings.Repeat("A", 43))
	f.Add("tft__")
	f.Fuzz(func(t *testing.T, s string) {
		id, sec, ok := splitToken(s)
		if ok && (len(id) != 16 || len(sec) != 43 || s != "tft_"+id+"_"+sec) {
			t.Fatalf("splitToken(%q) = %q, %q", s, id, sec)
		}
	})
}
