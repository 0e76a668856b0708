package access

import (
	"strconv"
	"time"

	"github.com/tufota/tufota"
)

// Day is 24 hours, the unit token lifetimes are stated in.
const Day = 24 * time.Hour

// Token lifetimes per role: what a token of the role lives when its creator
// names no lifetime, and the longest it may live. A token never lives
// forever; the longer a bearer secret lives, the longer a leaked copy works.
var lifetimes = map[Role]struct{ def, max time.Duration }{
	RoleAdmin:           {90 * Day, 90 * Day},
	RoleReleaseEngineer: {90 * Day, 365 * Day},
	RoleOperator:        {90 * Day, 365 * Day},
	RoleAuditor:         {90 * Day, 365 * Day},
	RoleDevice:          {365 * Day, 5 * 365 * Day},
	RoleEnroll:          {Day, 30 * Day},
}

// MaxLifetime returns the longest lifetime a token of role may have, or 0
// for an unknown role.
func MaxLifetime(role Role) time.Duration { return lifetimes[role].max }

// DefaultLifetime returns the lifetime a token of role gets when NewToken.TTL
// is 0, or 0 for an unknown role.
func DefaultLifetime(role Role) time.Duration { return lifetimes[role].def }

// checkLifetime returns the lifetime a new token of role gets for ttl: the
// role's default for 0, ttl itself when it is positive and at most the
// role's maximum. Anything else fails with EInvalid naming the maximum.
func checkLifetime(role Role, ttl time.Duration) (time.Duration, error) {
	l, ok := lifetimes[role]
	switch {
	case !ok:
		return 0, tufota.Errorf(tufota.EInvalid, "unknown role %q", role)
	case ttl < 0:
		return 0, tufota.Errorf(tufota.EInvalid, "token lifetime %s is negative", ttl)
	case ttl == 0:
		return l.def, nil
	case ttl > l.max:
		return 0, tufota.Errorf(tufota.EInvalid, "token lifetime %s exceeds the maximum for %s tokens (%s)", days(ttl), role, days(l.max))
	}
	return ttl, nil
}

// days formats d in days when it is a whole number of them ("90d"), else
// as a Go duration.
func days(d time.Duration) string {
	if d%Day == 0 {
		return strconv.FormatInt(int64(d/Day), 10) + "d"
	}
	return d.String()
}
