package access

import (
	"context"
	"fmt"

	"github.com/tufota/tufota/storage"
)

// RevokeDevice revokes every live device token bound to deviceID (compared
// without regard to case, as device IDs are) and returns how many it
// revoked. The server calls it when a device is first registered, so that
// a token issued earlier for that ID while no such device existed does not
// become the new device's credential. q may be nil (the store's database)
// or a transaction.
//
// Like Revoke, it bumps the tokens generation in the same transaction, so
// that no server keeps accepting a revoked token from its cache: this one
// drops its cached tokens when the transaction commits, other replicas at
// their next poll.
func (t *Tokens) RevokeDevice(ctx context.Context, q storage.Querier, deviceID string) (int64, error) {
	if tx, ok := q.(*storage.Tx); ok {
		return t.revokeDevice(ctx, tx, deviceID)
	}
	var n int64
	err := t.db.Tx(ctx, func(tx *storage.Tx) error {
		var err error
		n, err = t.revokeDevice(ctx, tx, deviceID)
		return err
	})
	return n, err
}

func (t *Tokens) revokeDevice(ctx context.Context, tx *storage.Tx, deviceID string) (int64, error) {
	res, err := tx.Exec(ctx, `UPDATE tokens SET revoked_at = ? WHERE role = ? AND lower(device_id) = lower(?) AND revoked_at IS NULL`,
		t.now().UTC().UnixNano(), string(RoleDevice), deviceID)
	if err != nil {
		return 0, fmt.Errorf("revoke tokens of device %s: %w", deviceID, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("revoke tokens of device %s: %w", deviceID, err)
	}
	if n == 0 {
		return 0, nil
	}
	if _, err := t.db.Bump(ctx, tx, storage.GenTokens); err != nil {
		return 0, fmt.Errorf("revoke tokens of device %s: %w", deviceID, err)
	}
	tx.OnCommit(t.cache.dropAll)
	return n, nil
}
