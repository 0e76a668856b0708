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
func (t *Tokens) RevokeDevice(ctx context.Context, q storage.Querier, deviceID string) (int64, error) {
	if q == nil {
		q = t.db
	}
	res, err := q.Exec(ctx, `UPDATE tokens SET revoked_at = ? WHERE role = ? AND lower(device_id) = lower(?) AND revoked_at IS NULL`,
		t.now().UTC().UnixNano(), string(RoleDevice), deviceID)
	if err != nil {
		return 0, fmt.Errorf("revoke tokens of device %s: %w", deviceID, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("revoke tokens of device %s: %w", deviceID, err)
	}
	return n, nil
}
