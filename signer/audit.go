package signer

import (
	"context"

	"github.com/tufota/tufota/storage"
)

// AuditFunc appends the audit entry of a change inside tx, the database
// transaction that records the change: action names what changed
// ("release.push", "release.publish", "delegation.sign", ...), details
// describe it. An error from it rolls the change back, and the operation
// returns it.
type AuditFunc func(ctx context.Context, tx *storage.Tx, action string, details map[string]string) error

type auditKey struct{}

// WithAudit returns a copy of ctx that carries f. The Releases operations
// that change state (Push, CancelRelease, SignRelease, AddDelegation,
// UpdateDelegation, RemoveDelegation, RenewDelegation, SignDelegation,
// CancelDelegation, ProposeRoot, SignRoot, CancelRoot, and ReleasePayload
// and DelegationPayload when they rebuild a stale payload) call f in the
// transaction of each database change they make: a release row and its
// pending payload, a release recorded published or removed after a failed
// publish, a pending payload or signature stored, rebuilt or dropped, a
// root version recorded. Metadata files in
// the blob store cannot share that transaction: they are written before
// the change that records them, so a failed entry leaves at most a
// metadata version that the database does not record yet, which the
// operation's crash recovery (Reconcile, and the re-check of pending
// payloads) settles. An operation that changes only metadata files (a
// delegation published at once with the online targets key) calls f
// never.
func WithAudit(ctx context.Context, f AuditFunc) context.Context {
	return context.WithValue(ctx, auditKey{}, f)
}

// auditAlone appends the audit entry of a change that made no database
// change (metadata files only, already written) in a transaction of its
// own: the change is in place, and an error tells the caller that its
// entry is not.
func (r *Releases) auditAlone(ctx context.Context, action string, details map[string]string) error {
	if f, _ := ctx.Value(auditKey{}).(AuditFunc); f == nil {
		return nil
	}
	return r.db.Tx(context.WithoutCancel(ctx), func(tx *storage.Tx) error { return auditIn(ctx, tx, action, details) })
}

// insertPending records a pending payload in one transaction with its
// audit entry (action, details).
func (r *Releases) insertPending(ctx context.Context, id, role string, base, version int64, md, extra, actor string, now int64, action string, details map[string]string) error {
	return r.db.Tx(ctx, func(tx *storage.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO pending_metadata (id, role, base_version, version, metadata, extra, created_at, created_by, updated_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`, id, role, base, version, md, extra, now, actor, now); err != nil {
			return err
		}
		return auditIn(ctx, tx, action, details)
	})
}

// auditIn runs ctx's AuditFunc, if any, in tx.
func auditIn(ctx context.Context, tx *storage.Tx, action string, details map[string]string) error {
	f, _ := ctx.Value(auditKey{}).(AuditFunc)
	if f == nil {
		return nil
	}
	return f(ctx, tx, action, details)
}
