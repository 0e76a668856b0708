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

// TestTokenLifetimes checks every role's stated default and maximum: a
// token never lives forever, the maximum is accepted and one second more is
// refused, and a 100-year enrollment token is refused.
func TestTokenLifetimes(t *testing.T) {
	ctx := context.Background()
	db, err := storage.OpenDB(ctx, "sqlite:"+filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	toks := NewTokens(db, func() time.Time { return now })
	want := map[Role]struct{ def, max time.Duration }{
		RoleAdmin:           {90 * Day, 90 * Day},
		RoleReleaseEngineer: {90 * Day, 365 * Day},
		RoleOperator:        {90 * Day, 365 * Day},
		RoleAuditor:         {90 * Day, 365 * Day},
		RoleDevice:          {365 * Day, 1825 * Day},
		RoleEnroll:          {Day, 30 * Day},
	}
	for _, role := range Roles {
		t.Run(string(role), func(t *testing.T) {
			w, ok := want[role]
			if !ok {
				t.Fatalf("role %s has no stated lifetime in this test", role)
			}
			if got := MaxLifetime(role); got != w.max {
				t.Errorf("MaxLifetime = %s, want %s", got, w.max)
			}
			n := NewToken{Name: "t-" + string(role), Role: role}
			if role == RoleDevice {
				n.DeviceID = "dev-1"
			}
			for _, tc := range []struct {
				ttl, want time.Duration // want 0: refused
			}{
				{0, w.def},
				{time.Minute, time.Minute},
				{w.max, w.max},
				{w.max + time.Second, 0},
				{100 * 365 * Day, 0},
				{-time.Second, 0},
			} {
				n.TTL = tc.ttl
				_, tok, err := toks.Create(ctx, nil, n, "admin")
				if tc.want == 0 {
					if !errors.Is(err, tufota.ErrInvalid) {
						t.Errorf("TTL %s: err = %v, want ErrInvalid", tc.ttl, err)
					} else if tc.ttl > 0 && !strings.Contains(err.Error(), "maximum") {
						t.Errorf("TTL %s: %v, want the error to state the maximum", tc.ttl, err)
					}
					continue
				}
				if err != nil {
					t.Errorf("TTL %s: %v", tc.ttl, err)
					continue
				}
				if tok.ExpiresAt == nil || !tok.ExpiresAt.Equal(now.Add(tc.want)) {
					t.Errorf("TTL %s: expires %v, want %v", tc.ttl, tok.ExpiresAt, now.Add(tc.want))
				}
			}
		})
	}
}
