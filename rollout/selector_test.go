package rollout

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/tufota/tufota"
)

func TestParseSelector(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in    string
		want  []Term
		canon string
	}{
		{"hardware=pump-b,site in (north,south),tag:icu,region!=eu", []Term{
			{Key: "hardware", Op: OpEq, Values: []string{"pump-b"}},
			{Key: "site", Op: OpIn, Values: []string{"north", "south"}},
			{Op: OpTag, Values: []string{"icu"}},
			{Key: "region", Op: OpNe, Values: []string{"eu"}},
		}, "hardware=pump-b,site in (north,south),tag:icu,region!=eu"},
		{" hardware = pump-b , site in ( north , south, north ) ", []Term{
			{Key: "hardware", Op: OpEq, Values: []string{"pump-b"}},
			{Key: "site", Op: OpIn, Values: []string{"north", "south"}},
		}, "hardware=pump-b,site in (north,south)"},
		{"site notin (east),!tag:loaner,ward,!decommissioned", []Term{
			{Key: "site", Op: OpNotIn, Values: []string{"east"}},
			{Op: OpNoTag, Values: []string{"loaner"}},
			{Key: "ward", Op: OpExists},
			{Key: "decommissioned", Op: OpAbsent},
		}, "site notin (east),!tag:loaner,ward,!decommissioned"},
		{"version<2.0.0,version>=1.2.0-rc.1", []Term{
			{Key: "version", Op: OpLt, Values: []string{"2.0.0"}},
			{Key: "version", Op: OpGe, Values: []string{"1.2.0-rc.1"}},
		}, "version<2.0.0,version>=1.2.0-rc.1"},
		{"version<=1.0.0,version>0.9.0", []Term{
			{Key: "version", Op: OpLe, Values: []string{"1.0.0"}},
			{Key: "version", Op: OpGt, Values: []string{"0.9.0"}},
		}, "version<=1.0.0,version>0.9.0"},
		{"*", nil, "*"},
		{"id=pump-0001", []Term{{Key: "id", Op: OpEq, Values: []string{"pump-0001"}}}, "id=pump-0001"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			s, err := ParseSelector(tt.in)
			if err != nil {
				t.Fatalf("ParseSelector(%q): %v", tt.in, err)
			}
			if !reflect.DeepEqual(s.Terms, tt.want) {
				t.Fatalf("terms = %#v, want %#v", s.Terms, tt.want)
			}
			if got := s.String(); got != tt.canon {
				t.Fatalf("String() = %q, want %q", got, tt.canon)
			}
		})
	}
}

func TestParseSelectorErrors(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"", "selector is empty"},
		{"  ", "selector is empty"},
		{"hardware=", `term 1 ("hardware="): hardware value is empty`},
		{"=pump", "attribute name is empty"},
		{"hardware==pump", "use = for equality"},
		{"hardware=pump,,site=a", `term 2 (""): empty term`},
		{"hardware=pump,", "empty term"},
		{"Site=north", "only lower-case letters"},
		{"site in (north", "'(' is never closed"},
		{"site in north)", "')' without '('"},
		{"site in ((a))", "nested '('"},
		{"site in ()", "empty set"},
		{"site in (a,,b)", "site value is empty"},
		{"site within (a)", "want KEY in (A,B) or KEY notin (A,B)"},
		{"site in (a) x", "text after ')'"},
		{"site=a b", `contains " "`},
		{"site=a;b", `contains ";"`},
		{"site=\x00", "byte 0x00"},
		{"site!a", "unknown operator"},
		{"site<3", "works only on key version"},
		{"version<banana", "not a semantic version"},
		{"tag:", "tag value is empty"},
		{"tag=icu", "select tags with tag:NAME"},
		{"tags in (a)", "select tags with tag:NAME"},
		{"*,site=a", "cannot be combined"},
		{"site north", "want KEY=VALUE"},
		{strings.Repeat("a=b,", 65) + "a=b", "at most 64"},
		{strings.Repeat("x", 5000), "longer than 4096"},
		{"s=" + strings.Repeat("v", 200), "longer than 128"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			s, err := ParseSelector(tt.in)
			if err == nil {
				t.Fatalf("ParseSelector(%q) = %v, want error containing %q", tt.in, s, tt.want)
			}
			if !errors.Is(err, tufota.ErrInvalid) {
				t.Errorf("error %v is not EInvalid", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %q, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestSelectorMatch(t *testing.T) {
	t.Parallel()
	pumpNorthICU := Device{ID: "p1", Hardware: "pump-b", Version: "1.4.0",
		Attrs: map[string]string{"site": "north", "region": "us"}, Tags: []string{"icu", "loaner"}}
	pumpEU := Device{ID: "p2", Hardware: "pump-b", Version: "2.0.0",
		Attrs: map[string]string{"site": "south", "region": "eu"}, Tags: []string{"icu"}}
	monitor := Device{ID: "m1", Hardware: "monitor-a", Attrs: map[string]string{"site": "north"}}
	bare := Device{ID: "b1", Hardware: "pump-b"}
	tests := []struct {
		sel  string
		dev  Device
		want bool
	}{
		{"hardware=pump-b,site in (north,south),tag:icu,region!=eu", pumpNorthICU, true},
		{"hardware=pump-b,site in (north,south),tag:icu,region!=eu", pumpEU, false},
		{"hardware=pump-b,site in (north,south),tag:icu,region!=eu", monitor, false},
		{"hardware=pump-b,site in (north,south),tag:icu,region!=eu", bare, false},
		{"region!=eu", bare, true},     // absent differs
		{"site notin (x)", bare, true}, // absent is not in
		{"site in (north)", bare, false},
		{"site", bare, false},
		{"!site", bare, true},
		{"!site", monitor, false},
		{"!tag:loaner", pumpNorthICU, false},
		{"!tag:loaner", pumpEU, true},
		{"version<2.0.0", pumpNorthICU, true},
		{"version<2.0.0", pumpEU, false},
		{"version<=2.0.0", pumpEU, true},
		{"version>1.4.0", pumpNorthICU, false},
		{"version>=1.4.0", pumpNorthICU, true},
		{"version>1.0.0", monitor, false}, // unknown version never compares
		{"version<9.0.0", monitor, false},
		{"id=m1", monitor, true},
		{"id in (p1,p2)", monitor, false},
		{"*", bare, true},
	}
	for _, tt := range tests {
		s, err := ParseSelector(tt.sel)
		if err != nil {
			t.Fatal(err)
		}
		if got := s.Match(tt.dev); got != tt.want {
			t.Errorf("%q.Match(%s) = %v, want %v", tt.sel, tt.dev.ID, got, tt.want)
		}
	}
}

func TestDeviceValidate(t *testing.T) {
	t.Parallel()
	ok := Device{ID: "pump-1", Hardware: "pump-b", Version: "1.0.0", Attrs: map[string]string{"site": "north"}, Tags: []string{"icu"}}
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid device: %v", err)
	}
	tests := []struct {
		mod  func(*Device)
		want string
	}{
		{func(d *Device) { d.ID = "" }, "device ID is empty"},
		{func(d *Device) { d.ID = "a/b" }, "device ID"},
		{func(d *Device) { d.Hardware = "" }, "hardware is empty"},
		{func(d *Device) { d.Version = "v1" }, "not a semantic version"},
		{func(d *Device) { d.Attrs = map[string]string{"hardware": "x"} }, "reserved"},
		{func(d *Device) { d.Attrs = map[string]string{"Site": "x"} }, "lower-case"},
		{func(d *Device) { d.Attrs = map[string]string{"site": "a b"} }, `contains " "`},
		{func(d *Device) { d.Attrs = map[string]string{"site": ""} }, "empty"},
		{func(d *Device) { d.Tags = []string{"a,b"} }, `contains ","`},
	}
	for _, tt := range tests {
		d := ok
		d.Attrs = map[string]string{"site": "north"}
		tt.mod(&d)
		err := d.Validate()
		if err == nil || !errors.Is(err, tufota.ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Validate() = %v, want EInvalid containing %q", err, tt.want)
		}
	}
}

func FuzzParseSelector(f *testing.F) {
	for _, s := range []string{
		"hardware=pump-b,site in (north,south),tag:icu,region!=eu",
		"site notin (east),!tag:loaner,ward,!decommissioned",
		"version<2.0.0", "*", "a in (b", "!", "!tag:", "x==y", "a<=b",
	} {
		f.Add(s)
	}
	dev := Device{ID: "d", Hardware: "pump-b", Version: "1.0.0", Attrs: map[string]string{"site": "north"}, Tags: []string{"icu"}}
	f.Fuzz(func(t *testing.T, s string) {
		sel, err := ParseSelector(s)
		if err != nil {
			if !errors.Is(err, tufota.ErrInvalid) {
				t.Fatalf("error %v is not EInvalid", err)
			}
			return
		}
		canon := sel.String()
		again, err := ParseSelector(canon)
		if err != nil {
			t.Fatalf("canonical form %q of %q does not parse: %v", canon, s, err)
		}
		if again.String() != canon || !reflect.DeepEqual(again.Terms, sel.Terms) {
			t.Fatalf("round trip %q -> %q -> %q", s, canon, again.String())
		}
		if sel.Match(dev) != again.Match(dev) {
			t.Fatalf("%q and its canonical form %q disagree", s, canon)
		}
	})
}
