package rollout

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/tufota/tufota"
)

func TestVersionPattern(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		pattern string
		allows  []string
		refuses []string
		err     string
	}{
		{pattern: "1.4.*", allows: []string{"1.4.0", "1.4.12", "1.4.3-rc.1", "1.4.1+b7"}, refuses: []string{"1.5.0", "1.40.0", "2.4.0", "14.0.0", ""}},
		{pattern: "1.*", allows: []string{"1.0.0", "1.99.3"}, refuses: []string{"2.0.0", "10.0.0"}},
		{pattern: "1.4.2", allows: []string{"1.4.2"}, refuses: []string{"1.4.3", "1.4.2-rc.1"}},
		{pattern: "", err: "empty"},
		{pattern: "*", err: "at least its major version"},
		{pattern: "1.*.3", err: "* may only be the last component"},
		{pattern: "1.4.2.*", err: "at most two numbers"},
		{pattern: "01.*", err: "leading zeros"},
		{pattern: "a.*", err: "must be a number"},
		{pattern: "1.4", err: "not a semantic version"},
		{pattern: ".*", err: "must be a number"},
	} {
		p, err := ParseVersionPattern(tc.pattern)
		if tc.err != "" {
			if err == nil || !errors.Is(err, tufota.ErrInvalid) || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseVersionPattern(%q) = %v, want EInvalid %q", tc.pattern, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("ParseVersionPattern(%q): %v", tc.pattern, err)
		}
		for _, v := range tc.allows {
			if !p.Allows(v) {
				t.Errorf("%s does not allow %s", tc.pattern, v)
			}
		}
		for _, v := range tc.refuses {
			if p.Allows(v) {
				t.Errorf("%s allows %s", tc.pattern, v)
			}
		}
	}
}

func FuzzParseVersionPattern(f *testing.F) {
	for _, s := range []string{"1.4.*", "1.*", "1.4.2", "*", "1.*.*", "18446744073709551616.*", "1.4.2-rc.1"} {
		f.Add(s, "1.4.2")
	}
	f.Fuzz(func(t *testing.T, pattern, version string) {
		p, err := ParseVersionPattern(pattern)
		if err != nil {
			if !errors.Is(err, tufota.ErrInvalid) {
				t.Fatalf("error %v is not EInvalid", err)
			}
			return
		}
		if p.Allows(version) {
			if _, err := tufota.ParseVersion(version); err != nil {
				t.Fatalf("%q allows %q, which is not a version", pattern, version)
			}
		}
	})
}

func TestPinsBlocks(t *testing.T) {
	t.Parallel()
	ps, err := NewPins([]Pin{
		{Kind: PinCohort, Name: "icu", Version: "1.4.*", Reason: "validated", Selector: "tag:icu"},
		{Kind: PinCohort, Name: "north", Version: "1.*", Reason: "site", Selector: "site=north"},
		{Kind: PinDevice, Name: "pump-7", Version: "1.5.0", Reason: "trial"},
	})
	if err != nil {
		t.Fatal(err)
	}
	icu := Device{ID: "pump-1", Tags: []string{"icu"}, Attrs: map[string]string{"site": "south"}}
	northICU := Device{ID: "pump-2", Tags: []string{"icu"}, Attrs: map[string]string{"site": "north"}}
	free := Device{ID: "pump-3", Attrs: map[string]string{"site": "south"}}
	trial := Device{ID: "pump-7", Tags: []string{"icu"}}
	for _, tc := range []struct {
		d       Device
		version string
		pin     string // name of the blocking pin, "" for none
	}{
		{icu, "1.4.9", ""},
		{icu, "1.5.0", "icu"},
		{northICU, "1.4.1", ""},
		{northICU, "2.0.0", "icu"},
		{free, "9.0.0", ""},
		{trial, "1.5.0", ""},       // its own pin decides alone
		{trial, "1.4.9", "pump-7"}, // even against a cohort pin that would allow it
		{Device{ID: "pump-9", Attrs: map[string]string{"site": "north"}}, "2.0.0", "north"},
	} {
		pin, b := ps.Blocks(&tc.d, tc.version)
		if b != (tc.pin != "") || (b && pin.Name != tc.pin) {
			t.Errorf("Blocks(%s, %s) = %v %q, want %q", tc.d.ID, tc.version, b, pin.Name, tc.pin)
		}
	}
}

// TestPinnedCohortNeverOffered: a pinned cohort is never offered a release
// outside its line; the rollout counts those devices as pinned, not
// pending, completes without them, and warns at create when most of its
// cohort is pinned. Pins are checked, listed and removed.
func TestPinnedCohortNeverOffered(t *testing.T) {
	t.Parallel()
	testPinnedCohortNeverOffered(t, nil)
}

func testPinnedCohortNeverOffered(t *testing.T, open dbOpener) {
	e := newEnv(t, open)
	ctx := t.Context()
	ids := e.fleet(10, func(i int, d *Device) {
		if i < 7 {
			d.Tags = []string{"icu"}
		}
	})
	if _, err := e.svc.CreateCohort(ctx, "icu", "tag:icu", "alice"); err != nil {
		t.Fatal(err)
	}
	// Bad pins.
	for _, tc := range []struct {
		p    Pin
		code tufota.Code
		want string
	}{
		{Pin{Kind: "site", Name: "x", Version: "1.*", Reason: "r"}, tufota.EInvalid, "want cohort or device"},
		{Pin{Kind: PinCohort, Name: "icu", Version: "1.0", Reason: "r"}, tufota.EInvalid, "version pattern"},
		{Pin{Kind: PinCohort, Name: "icu", Version: "1.0.*", Reason: " "}, tufota.EInvalid, "needs a reason"},
		{Pin{Kind: PinCohort, Name: "nope", Version: "1.0.*", Reason: "r"}, tufota.ENotFound, "no cohort nope"},
		{Pin{Kind: PinDevice, Name: "nope", Version: "1.0.*", Reason: "r"}, tufota.ENotFound, "device nope is not registered"},
	} {
		_, err := e.svc.SetPinWith(ctx, tc.p, "it-admin", nil)
		wantCode(t, err, tc.code, tc.want)
	}
	p, err := e.svc.SetPinWith(ctx, Pin{Kind: PinCohort, Name: "icu", Version: "1.0.*", Reason: "validated by site IT"}, "it-admin", nil)
	if err != nil || p.Selector != "tag:icu" || p.CreatedBy != "it-admin" {
		t.Fatalf("SetPin = %+v, %v", p, err)
	}
	spec := canary
	spec.Waves, spec.MinReports, spec.Soak = "50%,100%", 1, ""
	r := e.create(spec, "alice")
	if len(r.Warnings) != 1 || !strings.Contains(r.Warnings[0], "cohort mostly pinned: 7 of 10 devices that could take 1.1.0 are pinned outside it: 7 by pin on cohort icu to 1.0.* (validated by site IT)") {
		t.Fatalf("warnings = %q", r.Warnings)
	}
	if err := e.svc.Start(ctx, r.ID, "alice", ""); err != nil {
		t.Fatal(err)
	}
	s := e.sim(ids, nil)
	st := s.run(r.ID, 0, 10, Completed)
	if st.Health.Cohort != 3 || st.Health.Installed != 3 || st.Health.Pinned != 7 || len(st.Pinned) != 7 {
		t.Fatalf("health %+v pinned %v", st.Health, st.Pinned)
	}
	for id, ro := range s.offered {
		if slices.Contains(st.Pinned, id) {
			t.Errorf("pinned device %s was offered rollout %s", id, ro)
		}
	}
	// A device's own pin overrides its cohort's, and a pinned device is
	// not offered even a release on nobody else's line.
	e.rels.add("pump-fw", "1.2.0", []string{"pump-b"})
	if _, err := e.svc.SetPinWith(ctx, Pin{Kind: PinDevice, Name: ids[0], Version: "1.2.*", Reason: "trial"}, "it-admin", nil); err != nil {
		t.Fatal(err)
	}
	pins, err := e.svc.ListPins(ctx)
	if err != nil || len(pins) != 2 || pins[0].Kind != PinCohort || pins[1].Name != ids[0] {
		t.Fatalf("ListPins = %+v, %v", pins, err)
	}
	spec.Release = "pump-fw@1.2.0"
	r2 := e.create(spec, "alice")
	if len(r2.Warnings) != 1 || !strings.Contains(r2.Warnings[0], "6 of 10") {
		t.Fatalf("warnings = %q", r2.Warnings)
	}
	if err := e.svc.Start(ctx, r2.ID, "alice", ""); err != nil {
		t.Fatal(err)
	}
	st = e.sim(ids, nil).run(r2.ID, 0, 10, Completed)
	if st.Health.Installed != 4 || st.Health.Pinned != 6 || slices.Contains(st.Pinned, ids[0]) {
		t.Fatalf("health %+v pinned %v", st.Health, st.Pinned)
	}
	// Removing the pins: a new rollout reaches everyone.
	wantCode(t, e.svc.RemovePinWith(ctx, PinCohort, "nope", "it-admin", nil), tufota.ENotFound, "no pin on cohort nope")
	if err := e.svc.RemovePinWith(ctx, PinCohort, "icu", "it-admin", nil); err != nil {
		t.Fatal(err)
	}
	e.rels.add("pump-fw", "1.3.0", []string{"pump-b"})
	spec.Release = "pump-fw@1.3.0"
	r3 := e.create(spec, "alice")
	if len(r3.Warnings) != 0 {
		t.Fatalf("warnings = %q", r3.Warnings)
	}
	// The device pin (1.2.*) still holds pump-000 back.
	if err := e.svc.Start(ctx, r3.ID, "alice", ""); err != nil {
		t.Fatal(err)
	}
	st = e.sim(ids, nil).run(r3.ID, 0, 10, Completed)
	if st.Health.Installed != 9 || !slices.Equal(st.Pinned, []string{ids[0]}) {
		t.Fatalf("health %+v pinned %v", st.Health, st.Pinned)
	}
	// A cohort entirely pinned is refused.
	if _, err := e.svc.SetPinWith(ctx, Pin{Kind: PinCohort, Name: "icu", Version: "1.3.*", Reason: "validated"}, "it-admin", nil); err != nil {
		t.Fatal(err)
	}
	e.rels.add("pump-fw", "1.4.0", []string{"pump-b"})
	spec.Release, spec.Cohort = "pump-fw@1.4.0", "icu"
	_, err = e.svc.CreateRollout(ctx, spec, "alice")
	wantCode(t, err, tufota.EInvalid, "empty cohort: cohort icu (tag:icu) has no device that can take pump-fw@1.4.0: 7 of 7 devices that could take 1.4.0 are pinned outside it")
}
