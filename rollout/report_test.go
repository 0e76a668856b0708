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
	f.Add("pump-fw/1.1.0/fw.bin", "1.1.0", "installed", "", "", "ro-1", "delta", int64(4096))
	f.Add("x", "", "failed", "hash_mismatch", strings.Repeat("é", 700), "", "", int64(0))
	f.Add("", "v1", "exploded", "a b", "\xff\xfe", "../x", "torrent", int64(-1))
	f.Add("t", "1.0.0", "failed", "", strings.Repeat("a\xff", 1000), "", "full", int64(1))
	f.Fuzz(func(t *testing.T, target, version, state, code, message, rollout, download string, bytes int64) {
		r := Report{Target: target, Version: version, State: DeviceState(state), ErrorCode: code, Message: message, RolloutID: rollout,
			Download: download, Bytes: bytes}
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
		if r.Bytes < 0 || (r.Download != "" && r.Download != DownloadDelta && r.Download != DownloadFull) {
			t.Fatalf("download %q of %d bytes accepted", r.Download, r.Bytes)
		}
	})
}

// TestReportDownloadErrors: a report's download path and bytes are checked
// before anything is recorded.
func TestReportDownloadErrors(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	e.fleet(1, nil)
	for _, tc := range []struct {
		r    Report
		want string
	}{
		{Report{State: StatusInstalled, Download: "torrent", Bytes: 10}, `download "torrent": want delta or full`},
		{Report{State: StatusDownloaded, Download: DownloadDelta, Bytes: -1}, "must not be negative"},
		{Report{State: StatusInstalled, Bytes: 10}, "bytes without download"},
		{Report{State: StatusDownloading, Download: DownloadFull, Bytes: 10}, "only for states downloaded and installed"},
		{Report{State: StatusFailed, Download: DownloadDelta}, "only for states downloaded and installed"},
	} {
		wantCode(t, e.svc.Report(t.Context(), "pump-000", tc.r), "invalid", tc.want)
	}
	for _, r := range []Report{
		{State: StatusDownloaded, Download: DownloadDelta, Bytes: 4096},
		{State: StatusInstalled, Download: DownloadFull},
	} {
		if err := r.validate(); err != nil {
			t.Errorf("validate(%+v) = %v, want nil", r, err)
		}
	}
}

// TestWaveDownloadBytes: the wave's status sums the bytes its devices
// report as deltas and as full images; an installed report that does not
// say how (after a reboot) keeps what the downloaded report said.
func TestWaveDownloadBytes(t *testing.T) {
	t.Parallel()
	testWaveDownloadBytes(t, nil)
}

func testWaveDownloadBytes(t *testing.T, open dbOpener) {
	e := newEnv(t, open)
	ids := e.fleet(3, nil)
	r := e.create(Spec{Release: "pump-fw@1.1.0", Cohort: "hardware=pump-b", Waves: "100%"}, "alice")
	if err := e.svc.Start(t.Context(), r.ID, "alice", "go"); err != nil {
		t.Fatal(err)
	}
	paths := []Report{{Download: DownloadDelta, Bytes: 1650}, {Download: DownloadFull, Bytes: 1 << 20}, {Download: DownloadFull, Bytes: 1 << 20}}
	for i, id := range ids {
		a, err := e.svc.Assignment(t.Context(), Query{DeviceID: id, Hardware: "pump-b", Version: "1.0.0"})
		if err != nil || a == nil {
			t.Fatalf("Assignment(%s) = %v, %v", id, a, err)
		}
		rep := Report{Target: a.Target, Version: a.Version, State: StatusDownloaded, RolloutID: a.RolloutID, Download: paths[i].Download, Bytes: paths[i].Bytes}
		if err := e.svc.Report(t.Context(), id, rep); err != nil {
			t.Fatal(err)
		}
		e.report(id, a, StatusInstalled, "")
	}
	w := e.status(r.ID).Waves[0]
	if w.Installed != 3 || w.DeltaDownloads != 1 || w.DeltaBytes != 1650 || w.FullDownloads != 2 || w.FullBytes != 2<<20 {
		t.Fatalf("wave = %+v, want 3 installed, 1 delta of 1650 bytes, 2 full of %d", w, 2<<20)
	}
	h, err := e.svc.History(t.Context(), r.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range h.Devices {
		if d.Download == "" || d.DownloadBytes == 0 {
			t.Errorf("history of %s: download %q of %d bytes, want what it reported", d.DeviceID, d.Download, d.DownloadBytes)
		}
	}
}
