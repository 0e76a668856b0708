// Package audit is tufota's tamper-evident audit log: an append-only
// Merkle-tree log (RFC 6962, as golang.org/x/mod/sumdb/tlog implements it)
// of every state change and security event, kept in the state database, with
// checkpoints signed in the C2SP signed-note format
// (golang.org/x/mod/sumdb/note, https://c2sp.org/tlog-checkpoint).
//
// Each Entry is one leaf of the tree. Its leaf hash is
//
//	SHA-256(0x00 || canonical JSON of the entry)
//
// (tlog.RecordHash), where the canonical JSON is described at
// CanonicalJSON. Interior nodes are SHA-256(0x01 || left || right)
// (tlog.NodeHash). A checkpoint is a signed note whose text is
//
//	<origin>\n<tree size>\n<base64 root hash>\n
//
// and whose signature is an Ed25519 signed-note signature by the log's key.
// A reviewer can therefore check, with the log's public (verifier) key only:
// that every entry is unchanged since it was checkpointed (Verify,
// VerifyExport), that one entry is in a signed tree (VerifyInclusion), and
// that a newer export extends an older one (VerifyConsistency).
//
// The log never updates or deletes a row: there is no such path in this
// package. Retention is at least DefaultRetention (six years, HIPAA's
// documentation retention); pruning is not implemented, so nothing is ever
// removed by tufota.
package audit

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/tufota/tufota"
	"golang.org/x/mod/sumdb/tlog"
)

// DefaultRetention is how long audit entries are kept at least: six years,
// the HIPAA documentation retention period (45 CFR 164.316(b)(2)(i)). tufota
// does not prune the audit log at all; export before any manual archiving.
const DefaultRetention = 6 * 366 * 24 * time.Hour

// MaxEntrySize is the largest canonical encoding of one entry accepted by
// Append, in bytes.
const MaxEntrySize = 64 << 10

// Outcomes of an audited action.
const (
	OutcomeOK     = "ok"     // the action succeeded
	OutcomeDenied = "denied" // authentication or authorization refused it
	OutcomeFailed = "failed" // the action was attempted and failed (bad input, conflict, gate breach)
	OutcomeError  = "error"  // an internal or dependency error stopped it
)

// Entry is one audit record. Append assigns Seq, Time and Hash; the caller
// fills in the rest.
type Entry struct {
	// Seq is the entry's position in the log, from 0: the tlog record index.
	Seq int64 `json:"seq"`
	// Time is when the log recorded the entry (the log's clock, UTC).
	Time time.Time `json:"time"`
	// Actor is who acted: a token name, a device ID, "system".
	Actor string `json:"actor"`
	// Role is the actor's role (admin, release-engineer, operator, auditor,
	// device, system) or empty when unknown (a failed login).
	Role string `json:"role"`
	// Source is where the request came from (a remote address), or empty
	// for internal jobs.
	Source string `json:"source"`
	// Action names what was done, such as "release.publish".
	Action string `json:"action"`
	// Object names what it was done to, such as "rollout/r-42".
	Object string `json:"object"`
	// Outcome is one of OutcomeOK, OutcomeDenied, OutcomeFailed, OutcomeError.
	Outcome string `json:"outcome"`
	// Details holds further facts (reasons, versions, error codes).
	Details map[string]string `json:"details"`
	// Hash is the hex leaf hash, tlog.RecordHash(CanonicalJSON(e)).
	Hash string `json:"hash"`
}

// canonicalEntry fixes the field order of the canonical encoding.
type canonicalEntry struct {
	Seq     int64             `json:"seq"`
	Time    string            `json:"time"`
	Actor   string            `json:"actor"`
	Role    string            `json:"role"`
	Source  string            `json:"source"`
	Action  string            `json:"action"`
	Object  string            `json:"object"`
	Outcome string            `json:"outcome"`
	Details map[string]string `json:"details"`
}

// formatTime is the canonical time text: RFC 3339 in UTC with as many
// fractional-second digits as needed (time.RFC3339Nano).
func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// CanonicalJSON returns the bytes the leaf hash of e is computed over: one
// JSON object with exactly these members in this order and no whitespace,
//
//	{"seq":N,"time":T,"actor":S,"role":S,"source":S,"action":S,"object":S,"outcome":S,"details":{...}}
//
// where T is e.Time in UTC formatted with time.RFC3339Nano (trailing zeros
// of the fraction dropped, "Z" suffix), details is always an object ({} when
// empty) with its members sorted by key bytewise, and strings are encoded as
// Go's encoding/json does with HTML escaping off: '"' and '\\' escaped,
// \n \r \t \b \f as two-character escapes, other control characters and
// U+2028/U+2029 as \u00XX / \u2028 / \u2029 (lowercase hex), everything else
// literal UTF-8. Hash is not part of it. CanonicalJSON fails (EInvalid) when
// a string is not valid UTF-8 or contains NUL, when e.Time cannot be stored
// as int64 Unix nanoseconds, and (ETooLarge) when the encoding exceeds
// MaxEntrySize.
func CanonicalJSON(e Entry) ([]byte, error) {
	if err := checkStrings(e); err != nil {
		return nil, err
	}
	if !timeStorable(e.Time) {
		return nil, tufota.Errorf(tufota.EInvalid, "audit entry time %s is outside the storable range", e.Time)
	}
	d := e.Details
	if d == nil {
		d = map[string]string{}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	err := enc.Encode(canonicalEntry{
		Seq: e.Seq, Time: formatTime(e.Time), Actor: e.Actor, Role: e.Role, Source: e.Source,
		Action: e.Action, Object: e.Object, Outcome: e.Outcome, Details: d,
	})
	if err != nil {
		return nil, fmt.Errorf("encode audit entry: %w", err)
	}
	b := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	if len(b) > MaxEntrySize {
		return nil, tufota.Errorf(tufota.ETooLarge, "audit entry is %d bytes encoded, more than %d", len(b), MaxEntrySize)
	}
	return b, nil
}

// LeafHash returns the entry's RFC 6962 leaf hash, tlog.RecordHash of
// CanonicalJSON(e). Errors are CanonicalJSON's.
func LeafHash(e Entry) (tlog.Hash, error) {
	b, err := CanonicalJSON(e)
	if err != nil {
		return tlog.Hash{}, err
	}
	return tlog.RecordHash(b), nil
}

// checkStrings refuses invalid UTF-8 (encoding/json would silently replace
// it, so two different entries could share a leaf) and NUL (PostgreSQL TEXT
// cannot hold it).
func checkStrings(e Entry) error {
	check := func(field, s string) error {
		if !utf8.ValidString(s) {
			return tufota.Errorf(tufota.EInvalid, "audit entry %s is not valid UTF-8", field)
		}
		if strings.IndexByte(s, 0) >= 0 {
			return tufota.Errorf(tufota.EInvalid, "audit entry %s contains a NUL byte", field)
		}
		return nil
	}
	for _, f := range [...]struct{ name, value string }{
		{"actor", e.Actor}, {"role", e.Role}, {"source", e.Source}, {"action", e.Action},
		{"object", e.Object}, {"outcome", e.Outcome},
	} {
		if err := check(f.name, f.value); err != nil {
			return err
		}
	}
	for _, k := range slices.Sorted(maps.Keys(e.Details)) {
		if err := check("details key", k); err != nil {
			return err
		}
		if err := check("details["+k+"]", e.Details[k]); err != nil {
			return err
		}
	}
	return nil
}

// validateNew checks the caller-supplied fields of an entry to append.
func validateNew(e Entry) error {
	switch {
	case e.Actor == "":
		return tufota.Errorf(tufota.EInvalid, "audit entry has no actor")
	case e.Action == "":
		return tufota.Errorf(tufota.EInvalid, "audit entry has no action")
	}
	switch e.Outcome {
	case OutcomeOK, OutcomeDenied, OutcomeFailed, OutcomeError:
	default:
		return tufota.Errorf(tufota.EInvalid, "audit entry outcome %q is not one of ok, denied, failed, error", e.Outcome)
	}
	for k := range e.Details {
		if k == "" {
			return tufota.Errorf(tufota.EInvalid, "audit entry has an empty details key")
		}
	}
	return nil
}

// timeStorable reports whether t fits in int64 Unix nanoseconds.
func timeStorable(t time.Time) bool {
	return !t.Before(time.Unix(0, -1<<63)) && !t.After(time.Unix(0, 1<<63-1))
}
