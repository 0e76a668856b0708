package access

import (
	"context"
	"time"

	"github.com/tufota/tufota"
)

// Check reports whether the token with this ID may still be used: it
// exists, is not revoked and has not expired. It answers from the same
// cache as Authenticate (a revocation on this server is seen at once, one
// on another replica within the poll interval of Run) and needs no secret,
// so that a web session, which keeps only the token's ID, ends when its
// token does. Errors are EUnauthorized for a token that may not be used,
// and the database's error otherwise.
func (t *Tokens) Check(ctx context.Context, id string) error {
	e, ok := t.cache.get(id)
	if !ok {
		var err error
		if e, err = t.load(ctx, id); err != nil {
			return err
		}
	}
	if e.revoked {
		return tufota.Errorf(tufota.EUnauthorized, "token %s was revoked", id)
	}
	if e.expires != 0 && !t.now().Before(time.Unix(0, e.expires)) {
		return tufota.Errorf(tufota.EUnauthorized, "token %s expired", id)
	}
	return nil
}
