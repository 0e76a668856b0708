package tufota

import (
	"errors"
	"strings"
	"testing"
)

func TestParseVersion(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{"1.0.0", true}, {"0.0.1", true}, {"1.2.3-rc.1", true}, {"1.2.3+build.7", true}, {"1.2.3-alpha-1+b", true},
		{"", false}, {"1.0", false}, {"v1.0.0", false}, {"01.0.0", false}, {"1.0.0-01", false},
		{"1.0.0-", false}, {"1.0.0+", false}, {"1..0", false}, {"1.0.0.0", false}, {"1.0.x", false}, {"1.0.0-a..b", false},
	} {
		_, err := ParseVersion(tc.in)
		if (err == nil) != tc.ok {
			t.Errorf("ParseVersion(%q) err = %v, want ok=%v", tc.in, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseVersion(%q) error %v is not ErrInvalid", tc.in, err)
		}
	}
}

func TestCompareVersions(t *testing.T) {
	t.Parallel()
	// Ordered lowest first, from semver.org's precedence example.
	order := []string{"1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2", "1.0.0-beta.11", "1.0.0-rc.1", "1.0.0", "1.0.1", "1.1.0", "2.0.0", "10.0.0"}
	for i := range order {
		for j := range order {
			got, err := CompareVersions(order[i], order[j])
			if err != nil {
				t.Fatal(err)
			}
			want := 0
			if i < j {
				want = -1
			} else if i > j {
				want = 1
			}
			if got != want {
				t.Errorf("CompareVersions(%s, %s) = %d, want %d", order[i], order[j], got, want)
			}
		}
	}
	if c, _ := CompareVersions("1.0.0+a", "1.0.0+b"); c != 0 {
		t.Errorf("build metadata changed precedence: %d", c)
	}
}

func TestValidateName(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in, want string
	}{
		{"pump-fw", ""}, {"a.b_c-1", ""}, {"", "is empty"}, {"..", "must start"}, {"a..b", `must not contain ".."`},
		{"a/b", `contains "/"`}, {`a\b`, `contains "\\"`}, {"a\x00b", "byte 0x00"}, {".hidden", "must start"},
		{strings.Repeat("a", 65), "longer than 64"}, {"ä", "must start"},
	} {
		err := ValidateName("name", tc.in)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("ValidateName(%q) = %v, want ok", tc.in, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("ValidateName(%q) = %v, want an error containing %q", tc.in, err, tc.want)
		}
	}
}

func TestCustomRoundTrip(t *testing.T) {
	t.Parallel()
	in := TargetCustom{Name: "pump-fw", Version: "1.2.0", Hardware: []string{"pump-a"}, AllowDowngradeFrom: []string{"1.3.0"}}
	raw, err := MarshalCustom(in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := UnmarshalCustom(raw)
	if err != nil || out.Name != in.Name || !out.SupportsHardware("pump-a") || out.SupportsHardware("pump-b") {
		t.Fatalf("round trip = %+v, %v", out, err)
	}
	for _, bad := range []string{``, `{}`, `{"tufota":1}`, `{"tufota":{"name":"../x","version":"1.0.0"}}`, `{"tufota":{"name":"x","version":"1"}}`} {
		if _, err := UnmarshalCustom([]byte(bad)); !errors.Is(err, ErrInvalid) {
			t.Errorf("UnmarshalCustom(%s) = %v, want ErrInvalid", bad, err)
		}
	}
}

// FuzzVersion checks that parsing never panics and that comparison is a
// consistent order on whatever parses.
func FuzzVersion(f *testing.F) {
	for _, s := range []string{"1.0.0", "1.0.0-rc.1", "0.0.0+x", "1.0.0-0.a"} {
		f.Add(s, "1.0.0")
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		va, errA := ParseVersion(a)
		vb, errB := ParseVersion(b)
		if errA != nil || errB != nil {
			return
		}
		if va.Compare(vb) != -vb.Compare(va) || va.Compare(va) != 0 {
			t.Fatalf("inconsistent order for %q, %q", a, b)
		}
	})
}

// FuzzName checks that every accepted name is one safe path segment.
func FuzzName(f *testing.F) {
	for _, s := range []string{"pump-fw", "..", "a/b", "a..b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if ValidateName("n", s) != nil {
			return
		}
		if strings.ContainsAny(s, "/\\\x00") || s == "." || strings.Contains(s, "..") || len(s) > MaxNameLen {
			t.Fatalf("accepted unsafe name %q", s)
		}
	})
}
