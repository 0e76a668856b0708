// Package tufota holds the vocabulary shared by tufota's packages: error
// codes, the custom metadata tufota attaches to TUF targets, name validation
// and semantic version comparison. It imports only the standard library, so
// the device client can use it without pulling in any server code.
package tufota

import (
	"errors"
	"fmt"
)

// Code classifies an error by what the caller can do about it. The HTTP layer
// maps each code to one status in one table.
type Code string

// Error codes.
const (
	EInternal     Code = "internal"     // a bug or an unexpected failure; details are logged, not shown
	EInvalid      Code = "invalid"      // the request is malformed or breaks a rule
	ENotFound     Code = "not_found"    // the object does not exist
	EConflict     Code = "conflict"     // the object exists already, or the state forbids the change
	EUnauthorized Code = "unauthorized" // no valid credentials
	EForbidden    Code = "forbidden"    // valid credentials, not allowed
	ETooLarge     Code = "too_large"    // the body or upload exceeds a limit
	EUnavailable  Code = "unavailable"  // a dependency (storage, database) is down; retry later
	ENoSpace      Code = "no_space"     // the blob store or the database is full; retrying does not help until space is freed
)

// Sentinel errors for errors.Is. Any *Error with the same code matches them.
var (
	ErrNotFound     = &Error{Code: ENotFound}
	ErrInvalid      = &Error{Code: EInvalid}
	ErrConflict     = &Error{Code: EConflict}
	ErrUnauthorized = &Error{Code: EUnauthorized}
	ErrForbidden    = &Error{Code: EForbidden}
	ErrTooLarge     = &Error{Code: ETooLarge}
	ErrUnavailable  = &Error{Code: EUnavailable}
	ErrNoSpace      = &Error{Code: ENoSpace}
)

// Error is tufota's error type: a code, a message a caller can act on, and
// an optional cause kept for errors.Is/As and logs.
type Error struct {
	Code    Code
	Message string
	Err     error
}

// Errorf returns an *Error with the code and a formatted message. A %w verb
// in format keeps the wrapped error as the cause.
func Errorf(code Code, format string, args ...any) error {
	wrapped := fmt.Errorf(format, args...)
	return &Error{Code: code, Message: wrapped.Error(), Err: errors.Unwrap(wrapped)}
}

// Error returns the message, or the code when there is no message.
func (e *Error) Error() string {
	switch {
	case e.Message != "":
		return e.Message
	case e.Err != nil:
		return e.Err.Error()
	default:
		return string(e.Code)
	}
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// Is reports whether target is a sentinel *Error (no message, no cause) with
// the same code.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Message == "" && t.Err == nil && t.Code == e.Code
}

// ErrorCode returns the code of the first *Error in err's chain, or EInternal.
func ErrorCode(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return EInternal
}
