package audit

import (
	"maps"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// MaxFieldBytes is the longest string Escape leaves in an entry's field or
// detail; longer ones are cut (on a character boundary) and marked.
const MaxFieldBytes = 4 << 10

// EscapedKey is the detail Escape adds to an entry it changed: the fields
// it escaped or cut, comma-separated ("object", "actor", "details[name]"),
// so that a reader knows which values are quoted.
const EscapedKey = "audit_escaped"

// Escape returns e made appendable when it records a request that carried
// bytes the log refuses, so that the request is still recorded: a string
// holding a NUL byte or invalid UTF-8 (which Append refuses with EInvalid)
// becomes its Go-quoted form (strconv.Quote: NUL as \x00, invalid bytes as
// \xNN, quotes around it), and a string longer than MaxFieldBytes is cut
// and ends in "…(N bytes)". An empty details key becomes `""`. Every
// changed field is named under EscapedKey. An entry that needs none of this
// is returned as it is. Escape does not modify e's Details map.
func Escape(e Entry) Entry {
	var changed []string
	owned := false // e.Details is a copy Escape may write
	fix := func(name string, s *string) {
		if v, ok := escapeString(*s); ok {
			*s = v
			changed = append(changed, name)
		}
	}
	fix("actor", &e.Actor)
	fix("role", &e.Role)
	fix("source", &e.Source)
	fix("action", &e.Action)
	fix("object", &e.Object)
	fix("outcome", &e.Outcome)
	if len(e.Details) > 0 {
		var d map[string]string
		for _, k := range slices.Sorted(maps.Keys(e.Details)) {
			nk, kok := escapeString(k)
			if k == "" {
				nk, kok = `""`, true
			}
			nv, vok := escapeString(e.Details[k])
			if !kok && !vok {
				continue
			}
			if d == nil {
				d = maps.Clone(e.Details)
			}
			delete(d, k)
			if !kok {
				nk = k
			}
			if !vok {
				nv = e.Details[k]
			}
			d[nk] = nv
			changed = append(changed, "details["+nk+"]")
		}
		if d != nil {
			e.Details, owned = d, true
		}
	}
	if len(changed) == 0 {
		return e
	}
	if !owned {
		e.Details = maps.Clone(e.Details)
	}
	if e.Details == nil {
		e.Details = map[string]string{}
	}
	e.Details[EscapedKey] = strings.Join(changed, ",")
	return e
}

// escapeString returns s quoted when it holds NUL or invalid UTF-8, and cut
// when it is longer than MaxFieldBytes; ok reports whether it changed.
func escapeString(s string) (string, bool) {
	changed := false
	if !utf8.ValidString(s) || strings.IndexByte(s, 0) >= 0 {
		s, changed = strconv.Quote(s), true
	}
	if len(s) > MaxFieldBytes {
		n := len(s)
		cut := MaxFieldBytes
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s, changed = s[:cut]+"…("+strconv.Itoa(n)+" bytes)", true
	}
	return s, changed
}
