package rollout

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/tufota/tufota"
)

// Device is a registered device: what it is (hardware, attributes, tags),
// what it runs and what it has been told to run.
type Device struct {
	ID       string `json:"id"`
	Hardware string `json:"hardware"`
	// Version is the firmware version the device last said it runs.
	Version string `json:"version,omitempty"`
	// Attrs are free-form attributes: site, region, model, ward...
	// Keys are lower-case [a-z0-9_.-]; "id", "hardware", "version", "tag"
	// and "tags" are reserved.
	Attrs map[string]string `json:"attrs,omitempty"`
	Tags  []string          `json:"tags,omitempty"`
	// CurrentRelease is NAME@VERSION of the release the device runs, when
	// tufota knows it (it installed it through tufota).
	CurrentRelease string `json:"current_release,omitempty"`
	// TargetRelease is NAME@VERSION of a release assigned to this one
	// device (tufota device assign, or a rollback), empty otherwise.
	TargetRelease string    `json:"target_release,omitempty"`
	LastSeen      time.Time `json:"last_seen,omitzero"`
	CreatedAt     time.Time `json:"created_at,omitzero"`
	CreatedBy     string    `json:"created_by,omitempty"`
}

// Attr returns the value a selector sees for key: the ID, hardware and
// version fields for "id", "hardware" and "version", an attribute
// otherwise; ok is false when the device has no such value.
func (d Device) Attr(key string) (string, bool) {
	switch key {
	case "id":
		return d.ID, true
	case "hardware":
		return d.Hardware, d.Hardware != ""
	case "version":
		return d.Version, d.Version != ""
	}
	v, ok := d.Attrs[key]
	return v, ok
}

// HasTag reports whether the device carries tag.
func (d Device) HasTag(tag string) bool { return slices.Contains(d.Tags, tag) }

// Validate checks the device's ID, hardware, version, attribute keys and
// values and tags; errors are EInvalid.
func (d Device) Validate() error {
	if err := tufota.ValidateName("device ID", d.ID); err != nil {
		return err
	}
	if err := tufota.ValidateName("hardware", d.Hardware); err != nil {
		return err
	}
	if d.Version != "" {
		if _, err := tufota.ParseVersion(d.Version); err != nil {
			return err
		}
	}
	if len(d.Attrs) > maxAttrs {
		return tufota.Errorf(tufota.EInvalid, "device %s has %d attributes, at most %d allowed", d.ID, len(d.Attrs), maxAttrs)
	}
	for k, v := range d.Attrs {
		if err := validAttrKey(k); err != nil {
			return err
		}
		if err := validValue("attribute "+k, v); err != nil {
			return err
		}
	}
	if len(d.Tags) > maxAttrs {
		return tufota.Errorf(tufota.EInvalid, "device %s has %d tags, at most %d allowed", d.ID, len(d.Tags), maxAttrs)
	}
	for _, t := range d.Tags {
		if err := validValue("tag", t); err != nil {
			return err
		}
	}
	return nil
}

const (
	maxAttrs       = 64
	maxValueLen    = 128
	maxSelectorLen = 4096
	maxTerms       = 64
	maxSetValues   = 256
)

var reservedKeys = []string{"id", "hardware", "version", "tag", "tags"}

func validAttrKey(k string) error {
	if err := validKey(k); err != nil {
		return err
	}
	if slices.Contains(reservedKeys, k) {
		return tufota.Errorf(tufota.EInvalid, "attribute %q is reserved (id, hardware, version, tag and tags are device fields)", k)
	}
	return nil
}

// selectorKey checks a key used in a selector term.
func selectorKey(k string) error {
	if k == "tag" || k == "tags" {
		return tufota.Errorf(tufota.EInvalid, "select tags with tag:NAME or !tag:NAME")
	}
	return validKey(k)
}

func validKey(k string) error {
	if k == "" {
		return tufota.Errorf(tufota.EInvalid, "attribute name is empty")
	}
	if len(k) > 64 {
		return tufota.Errorf(tufota.EInvalid, "attribute name %.20q... is longer than 64 characters", k)
	}
	for i := 0; i < len(k); i++ {
		if !isKeyByte(k[i]) {
			return tufota.Errorf(tufota.EInvalid, "attribute name %q: only lower-case letters, digits, '_', '.' and '-' are allowed", k)
		}
	}
	return nil
}

func isKeyByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-'
}

// isValueByte reports whether c may appear in a selector value: letters,
// digits and . _ - + : / @ (enough for versions, sites and tags).
func isValueByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		strings.IndexByte("._-+:/@", c) >= 0
}

func validValue(what, v string) error {
	if v == "" {
		return tufota.Errorf(tufota.EInvalid, "%s value is empty", what)
	}
	if len(v) > maxValueLen {
		return tufota.Errorf(tufota.EInvalid, "%s value %.20q... is longer than %d characters", what, v, maxValueLen)
	}
	for i := 0; i < len(v); i++ {
		if !isValueByte(v[i]) {
			return tufota.Errorf(tufota.EInvalid, "%s value %q contains %s; allowed are letters, digits and . _ - + : / @", what, v, describe(v[i]))
		}
	}
	return nil
}

func describe(c byte) string {
	if c < 0x20 || c >= 0x7f {
		return fmt.Sprintf("byte 0x%02x", c)
	}
	return fmt.Sprintf("%q", string(c))
}

// Op is a selector term's operator.
type Op string

// Selector operators.
const (
	OpEq     Op = "="      // key=value
	OpNe     Op = "!="     // key!=value (also true when the device lacks key)
	OpIn     Op = "in"     // key in (a,b)
	OpNotIn  Op = "notin"  // key notin (a,b) (also true when the device lacks key)
	OpExists Op = "exists" // key
	OpAbsent Op = "!"      // !key
	OpTag    Op = "tag"    // tag:value
	OpNoTag  Op = "!tag"   // !tag:value
	OpLt     Op = "<"      // version<1.2.0 (semantic version order; version only)
	OpLe     Op = "<="     // version<=1.2.0
	OpGt     Op = ">"      // version>1.2.0
	OpGe     Op = ">="     // version>=1.2.0
)

// Term is one condition of a selector.
type Term struct {
	Key    string   `json:"key,omitempty"`
	Op     Op       `json:"op"`
	Values []string `json:"values,omitempty"`
}

// Selector picks devices by their attributes: a conjunction of terms. The
// zero Selector (and "*") matches every device. Selectors are immutable
// values, safe for concurrent use.
type Selector struct {
	Terms []Term
}

// ParseSelector parses a comma-separated list of terms, all of which must
// hold:
//
//	hardware=pump-b          key equals value
//	region!=eu               key differs (or is absent)
//	site in (north,south)    key is one of the values
//	site notin (east)        key is none of the values (or is absent)
//	tag:icu   !tag:icu       the device has / lacks a tag
//	ward      !ward          the device has / lacks an attribute
//	version<2.0.0            semantic version order: < <= > >= (key version only)
//	*                        every device (alone)
//
// Keys are id, hardware, version or attribute names ([a-z0-9_.-]); values
// are letters, digits and . _ - + : / @. Errors are EInvalid and say where
// the selector went wrong.
func ParseSelector(s string) (Selector, error) {
	if len(s) > maxSelectorLen {
		return Selector{}, tufota.Errorf(tufota.EInvalid, "selector is longer than %d characters", maxSelectorLen)
	}
	if strings.TrimSpace(s) == "" {
		return Selector{}, tufota.Errorf(tufota.EInvalid, "selector is empty; want e.g. hardware=pump-b,site in (north,south),tag:icu (or * for every device)")
	}
	if strings.TrimSpace(s) == "*" {
		return Selector{}, nil
	}
	parts, err := splitTerms(s)
	if err != nil {
		return Selector{}, err
	}
	if len(parts) > maxTerms {
		return Selector{}, tufota.Errorf(tufota.EInvalid, "selector has %d terms, at most %d allowed", len(parts), maxTerms)
	}
	sel := Selector{Terms: make([]Term, 0, len(parts))}
	for i, p := range parts {
		t, err := parseTerm(p)
		if err != nil {
			return Selector{}, tufota.Errorf(tufota.EInvalid, "selector term %d (%q): %v", i+1, strings.TrimSpace(p), err)
		}
		sel.Terms = append(sel.Terms, t)
	}
	return sel, nil
}

// splitTerms splits on commas outside parentheses.
func splitTerms(s string) ([]string, error) {
	var parts []string
	depth, start := 0, 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '(':
			depth++
			if depth > 1 {
				return nil, tufota.Errorf(tufota.EInvalid, "selector: nested '(' at byte %d", i)
			}
		case ')':
			depth--
			if depth < 0 {
				return nil, tufota.Errorf(tufota.EInvalid, "selector: ')' without '(' at byte %d", i)
			}
		case ',':
			if depth == 0 {
				parts = append(parts, s[start:i])
				start = i + 1
			}
		}
	}
	if depth != 0 {
		return nil, tufota.Errorf(tufota.EInvalid, "selector: '(' is never closed")
	}
	return append(parts, s[start:]), nil
}

func parseTerm(raw string) (Term, error) {
	p := strings.TrimSpace(raw)
	if p == "" {
		return Term{}, fmt.Errorf("empty term (two commas in a row, or a trailing comma?)")
	}
	if p == "*" {
		return Term{}, fmt.Errorf("* selects every device and cannot be combined with other terms")
	}
	// tag:value and !tag:value
	neg := strings.HasPrefix(p, "!")
	body := strings.TrimSpace(strings.TrimPrefix(p, "!"))
	if v, ok := strings.CutPrefix(body, "tag:"); ok {
		if err := validValue("tag", v); err != nil {
			return Term{}, err
		}
		op := OpTag
		if neg {
			op = OpNoTag
		}
		return Term{Op: op, Values: []string{v}}, nil
	}
	// key operators, longest first.
	if i := strings.IndexAny(p, "=!<>"); i >= 0 && !(neg && i == 0) {
		key := strings.TrimSpace(p[:i])
		rest := p[i:]
		var op Op
		for _, o := range []Op{OpNe, OpLe, OpGe, OpEq, OpLt, OpGt} {
			if strings.HasPrefix(rest, string(o)) {
				op = o
				break
			}
		}
		if op == "" {
			return Term{}, fmt.Errorf("unknown operator; want =, !=, in, notin, <, <=, >, >=")
		}
		if strings.HasPrefix(rest, "==") {
			return Term{}, fmt.Errorf("use = for equality, not ==")
		}
		val := strings.TrimSpace(rest[len(op):])
		if err := selectorKey(key); err != nil {
			return Term{}, err
		}
		if err := validValue(key, val); err != nil {
			return Term{}, err
		}
		switch op {
		case OpLt, OpLe, OpGt, OpGe:
			if key != "version" {
				return Term{}, fmt.Errorf("%s compares semantic versions and works only on key version", op)
			}
			if _, err := tufota.ParseVersion(val); err != nil {
				return Term{}, err
			}
		}
		return Term{Key: key, Op: op, Values: []string{val}}, nil
	}
	// key in (...), key notin (...)
	if i := strings.IndexByte(p, '('); i >= 0 {
		head := strings.Fields(p[:i])
		if len(head) != 2 || (head[1] != "in" && head[1] != "notin") {
			return Term{}, fmt.Errorf("want KEY in (A,B) or KEY notin (A,B)")
		}
		key := head[0]
		if err := selectorKey(key); err != nil {
			return Term{}, err
		}
		if !strings.HasSuffix(p, ")") {
			return Term{}, fmt.Errorf("text after ')'")
		}
		inner := p[i+1 : len(p)-1]
		if strings.TrimSpace(inner) == "" {
			return Term{}, fmt.Errorf("empty set ()")
		}
		raw := strings.Split(inner, ",")
		if len(raw) > maxSetValues {
			return Term{}, fmt.Errorf("%d values, at most %d allowed", len(raw), maxSetValues)
		}
		vals := make([]string, 0, len(raw))
		for _, v := range raw {
			v = strings.TrimSpace(v)
			if err := validValue(key, v); err != nil {
				return Term{}, err
			}
			if !slices.Contains(vals, v) {
				vals = append(vals, v)
			}
		}
		op := OpIn
		if head[1] == "notin" {
			op = OpNotIn
		}
		return Term{Key: key, Op: op, Values: vals}, nil
	}
	if strings.ContainsAny(p, ") \t") {
		return Term{}, fmt.Errorf("want KEY=VALUE, KEY!=VALUE, KEY in (A,B), tag:NAME or KEY")
	}
	// key, !key
	if err := selectorKey(body); err != nil {
		return Term{}, err
	}
	if neg {
		return Term{Key: body, Op: OpAbsent}, nil
	}
	return Term{Key: body, Op: OpExists}, nil
}

// Match reports whether the device satisfies every term.
func (s Selector) Match(d Device) bool {
	for _, t := range s.Terms {
		if !t.match(d) {
			return false
		}
	}
	return true
}

func (t Term) match(d Device) bool {
	switch t.Op {
	case OpTag:
		return d.HasTag(t.Values[0])
	case OpNoTag:
		return !d.HasTag(t.Values[0])
	}
	v, ok := d.Attr(t.Key)
	switch t.Op {
	case OpEq:
		return ok && v == t.Values[0]
	case OpNe:
		return !ok || v != t.Values[0]
	case OpIn:
		return ok && slices.Contains(t.Values, v)
	case OpNotIn:
		return !ok || !slices.Contains(t.Values, v)
	case OpExists:
		return ok
	case OpAbsent:
		return !ok
	case OpLt, OpLe, OpGt, OpGe:
		if !ok {
			return false
		}
		c, err := tufota.CompareVersions(v, t.Values[0])
		if err != nil {
			return false
		}
		switch t.Op {
		case OpLt:
			return c < 0
		case OpLe:
			return c <= 0
		case OpGt:
			return c > 0
		default:
			return c >= 0
		}
	}
	return false
}

// String returns the selector in canonical form; ParseSelector(s.String())
// gives back an equal selector.
func (s Selector) String() string {
	if len(s.Terms) == 0 {
		return "*"
	}
	parts := make([]string, len(s.Terms))
	for i, t := range s.Terms {
		parts[i] = t.String()
	}
	return strings.Join(parts, ",")
}

// String returns the term as ParseSelector reads it.
func (t Term) String() string {
	switch t.Op {
	case OpTag:
		return "tag:" + t.Values[0]
	case OpNoTag:
		return "!tag:" + t.Values[0]
	case OpExists:
		return t.Key
	case OpAbsent:
		return "!" + t.Key
	case OpIn, OpNotIn:
		return t.Key + " " + string(t.Op) + " (" + strings.Join(t.Values, ",") + ")"
	}
	return t.Key + string(t.Op) + t.Values[0]
}
