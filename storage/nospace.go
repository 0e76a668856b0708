package storage

import (
	"errors"
	"syscall"

	"github.com/tufota/tufota"
)

// IsNoSpace reports whether err says that a file system is out of space or
// over a quota (ENOSPC, EDQUOT).
func IsNoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// fileWriteErr translates an error writing a blob's temporary file:
// tufota.ENoSpace when the disk is full, else tufota.EUnavailable.
func fileWriteErr(op string, err error) error {
	if IsNoSpace(err) {
		return tufota.Errorf(tufota.ENoSpace, "storage full: blob store: put: %s: %w", op, err)
	}
	return tufota.Errorf(tufota.EUnavailable, "storage unavailable: blob store: put: %s: %w", op, err)
}
