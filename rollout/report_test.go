package rollout

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/tufota/tufota"
)

func TestParseRelease(t *testing.T) {
	t.Parallel()
	name, version, err := ParseRelease("pump-fw@1.4.0-rc.1+b7")
	if err != nil || name != "pump-fw" || version != "1.4.0-rc.1+b7" {
		t.Fatalf("ParseRelease = %q, %q, %v", name, version, err)
	}
	for in, want := range map[string]string{
		"pump-fw":       "want NAME@VERSION",
		"@1.0.0":        "release name is empty",
		"pump-fw@":      "not a semantic version",
		"pump-fw@v1":    "not a semantic version",
		"../x@1.0.0":    "release name",
		"a@b@1.0.0":     "not a semantic version",
		"pump fw@1.0.0": "release name",
	} {
		if _, _, err := ParseRelease(in); err == nil || !errors.Is(err, tufota.ErrInvalid) || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseRelease(%q) = %v, want EInvalid containing %q", in, err, want)
		}
	}
}

// FuzzReport feeds untrusted device report fields through validation: a
// report either fails with EInvalid or comes out with a bounded, valid
// UTF-8 message and a state devices may report.
func FuzzReport(f *testing.F) {
	f.Add("pump-fw/1.1.0/fw.bin", "1.1.0", "installed", "", "", "ro-1")
	f.Add("x", "", "failed", "hash_mismatch", strings.Repeat("é", 700), "")
	f.Add("", "v1", "exploded", "a b", "\xff\xfe", "../x")
	f.Add("t", "1.0.0", "failed", "", strings.Repeat("a\xff", 1000), "")
	f.Fuzz(func(t *testing.T, target, version, state, code, message, rollout string) {
		r := Report{Target: target, Version: version, State: DeviceState(state), ErrorCode: code, Message: message, RolloutID: rollout}
		if err := r.validate(); err != nil {
			if !errors.Is(err, tufota.ErrInvalid) {
				t.Fatalf("error %v is not EInvalid", err)
			}
			return
		}
		if len(r.Message) > maxMessage || !utf8.ValidString(r.Message) {
			t.Fatalf("message of %d bytes, valid UTF-8 %v", len(r.Message), utf8.ValidString(r.Message))
		}
		if !final(r.State) && r.State != StatusDownloading && r.State != StatusDownloaded && r.State != StatusInstalling {
			t.Fatalf("state %q accepted", r.State)
		}
		if r.State == StatusReverted || r.State == StatusOffered {
			t.Fatalf("server-only state %q accepted from a device", r.State)
		}
	})
}
