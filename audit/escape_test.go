package audit

import (
	"context"
	"strings"
	"testing"
)

// TestEscape checks that Escape makes every refused string appendable,
// marks what it changed, leaves clean entries and the caller's map alone.
func TestEscape(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l, _ := newTestLog(t)
	base := func() Entry {
		return Entry{Actor: "alice", Role: "admin", Source: "127.0.0.1", Action: "release.push", Object: "release/fw@1.0.0", Outcome: OutcomeFailed,
			Details: map[string]string{"code": "invalid"}}
	}
	tests := []struct {
		name    string
		edit    func(e *Entry)
		escaped string            // want Details[EscapedKey]; "" = unchanged
		want    map[string]string // fields to check after Escape
	}{
		{"clean", func(e *Entry) {}, "", map[string]string{"object": "release/fw@1.0.0"}},
		{"NUL in object", func(e *Entry) { e.Object = "release/bad\x00name@1.0.0" }, "object", map[string]string{"object": `"release/bad\x00name@1.0.0"`}},
		{"NUL in actor", func(e *Entry) { e.Actor = "dev\x00" }, "actor", map[string]string{"actor": `"dev\x00"`}},
		{"invalid UTF-8 in a detail", func(e *Entry) { e.Details["file"] = "fw\xff.bin" }, "details[file]", map[string]string{"details[file]": `"fw\xff.bin"`}},
		{"NUL in a detail key", func(e *Entry) { e.Details["k\x00"] = "v" }, `details["k\x00"]`, map[string]string{`details["k\x00"]`: "v"}},
		{"empty detail key", func(e *Entry) { e.Details[""] = "v" }, `details[""]`, map[string]string{`details[""]`: "v"}},
		{"too long", func(e *Entry) { e.Object = strings.Repeat("é", MaxFieldBytes) }, "object", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := base()
			tc.edit(&in)
			before := len(in.Details)
			got := Escape(in)
			if len(in.Details) != before || in.Details[EscapedKey] != "" {
				t.Errorf("Escape modified the caller's details: %v", in.Details)
			}
			if got.Details[EscapedKey] != tc.escaped {
				t.Errorf("%s = %q, want %q", EscapedKey, got.Details[EscapedKey], tc.escaped)
			}
			field := func(name string) string {
				switch {
				case name == "object":
					return got.Object
				case name == "actor":
					return got.Actor
				case strings.HasPrefix(name, "details["):
					return got.Details[strings.TrimSuffix(strings.TrimPrefix(name, "details["), "]")]
				}
				return ""
			}
			for name, want := range tc.want {
				if g := field(name); g != want {
					t.Errorf("%s = %q, want %q", name, g, want)
				}
			}
			if len(got.Object) > MaxFieldBytes+32 {
				t.Errorf("object is %d bytes after Escape", len(got.Object))
			}
			if _, err := l.Append(ctx, got); err != nil {
				t.Errorf("Append(Escape(e)) = %v", err)
			}
		})
	}
}
