package server

import (
	"errors"
	"strings"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/storage"
)

// noSpace returns err as a tufota.ENoSpace error when anything in its chain
// says the blob store or the database is full (a storage ENoSpace, however
// it was wrapped since, or a bare ENOSPC/EDQUOT), and err unchanged
// otherwise. A full disk is then answered 507 with its cause instead of a
// 503 that invites a retry or a 500.
func noSpace(err error) error {
	if err == nil || tufota.ErrorCode(err) == tufota.ENoSpace {
		return err
	}
	if errors.Is(err, tufota.ErrNoSpace) || storage.IsNoSpace(err) {
		return &tufota.Error{Code: tufota.ENoSpace, Message: "storage full: " + err.Error(), Err: err}
	}
	return err
}

// noSpaceMessage is what a 507 tells the caller: which store is full and
// what to do, never the driver's text (paths, keys), which is logged.
func noSpaceMessage(msg string) string {
	if strings.Contains(msg, "storage full: database") {
		return "insufficient storage: the database is full; free space on it, then retry"
	}
	return "insufficient storage: the blob store is full; free space on it, then retry"
}
