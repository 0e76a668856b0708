package rollout

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tufota/tufota"
)

func mustWindow(t testing.TB, s string) Window {
	t.Helper()
	w, err := ParseWindow(s)
	if err != nil {
		t.Fatalf("ParseWindow(%q): %v", s, err)
	}
	return w
}

func at(t testing.TB, zone, s string) time.Time {
	t.Helper()
	loc, err := time.LoadLocation(zone)
	if err != nil {
		t.Fatal(err)
	}
	v, err := time.ParseInLocation("2006-01-02 15:04", s, loc)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestParseWindow(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, canon string }{
		{"Mon-Fri 01:00-05:00 Europe/Berlin", "Mon-Fri 01:00-05:00 Europe/Berlin"},
		{"mon-fri 1:00-5:00 Europe/Berlin", "Mon-Fri 01:00-05:00 Europe/Berlin"},
		{"22:00-04:00", "22:00-04:00 UTC"},
		{"daily 00:00-24:00 UTC", "00:00-24:00 UTC"},
		{"Sat,Sun 10:00-12:00 America/New_York", "Sat-Sun 10:00-12:00 America/New_York"},
		{"Fri-Mon 22:00-04:00", "Mon,Fri-Sun 22:00-04:00 UTC"},
		{"Mon,Wed,Fri 02:30-03:15 Asia/Kolkata", "Mon,Wed,Fri 02:30-03:15 Asia/Kolkata"},
		{"Sun-Sat 09:00-17:00", "09:00-17:00 UTC"},
	}
	for _, tt := range tests {
		w := mustWindow(t, tt.in)
		if got := w.String(); got != tt.canon {
			t.Errorf("ParseWindow(%q).String() = %q, want %q", tt.in, got, tt.canon)
		}
		if again := mustWindow(t, w.String()); !again.Equal(w) {
			t.Errorf("round trip of %q changed the window", tt.in)
		}
	}
}

func TestParseWindowErrors(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"", "empty"},
		{"Mon-Fri", "no time range"},
		{"Mon-Fri 01:00 Europe/Berlin", "want HH:MM-HH:MM"},
		{"Mon-Fri 01:00-05:00 Mars/Olympus", `unknown time zone "Mars/Olympus"`},
		{"Mon-Fri 01:00-05:00 Local", "unknown time zone"},
		{"Mon-Fri 01:00-05:00 ../../etc/passwd", "unknown time zone"},
		{"Mon-Fri 01:00-05:00 /etc/localtime", "unknown time zone"},
		{"Mon-Fri 01:00-05:00 Europe/Berlin extra", `unexpected "extra"`},
		{"Mon-Fry 01:00-05:00", `unknown day "Fry"`},
		{"Mon,,Fri 01:00-05:00", `unknown day ""`},
		{"Mon-Fri 25:00-05:00", "opening time: \"25:00\" is not a time of day"},
		{"Mon-Fri 01:60-05:00", "is not a time of day"},
		{"Mon-Fri 24:00-05:00", "is not a time of day"},
		{"Mon-Fri 1-5", "want HH:MM"},
		{"Mon-Fri 01:00-5", "closing time"},
		{"Mon-Fri 001:00-05:00", "want HH:MM"},
		{"Mon-Fri 03:00-03:00", "the window is empty"},
		{"Mon-Fri -1:00-05:00", "want HH:MM"},
		{strings.Repeat("x", 300), "longer than 256"},
	}
	for _, tt := range tests {
		w, err := ParseWindow(tt.in)
		if err == nil {
			t.Errorf("ParseWindow(%q) = %v, want error containing %q", tt.in, w, tt.want)
			continue
		}
		if !errors.Is(err, tufota.ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseWindow(%q) error = %v, want EInvalid containing %q", tt.in, err, tt.want)
		}
	}
}

func TestWindowContainsNext(t *testing.T) {
	t.Parallel()
	const berlin = "Europe/Berlin"
	weekday := mustWindow(t, "Mon-Fri 01:00-05:00 Europe/Berlin")
	overnight := mustWindow(t, "Fri 22:00-04:00 Europe/Berlin")
	everyNight := mustWindow(t, "22:00-04:00 UTC")
	tests := []struct {
		name     string
		w        Window
		t        time.Time
		contains bool
		next     time.Time
	}{
		// 2026-03-02 is a Monday.
		{"weekday inside", weekday, at(t, berlin, "2026-03-02 03:00"), true, at(t, berlin, "2026-03-02 03:00")},
		{"weekday at opening", weekday, at(t, berlin, "2026-03-02 01:00"), true, at(t, berlin, "2026-03-02 01:00")},
		{"weekday at closing", weekday, at(t, berlin, "2026-03-02 05:00"), false, at(t, berlin, "2026-03-03 01:00")},
		{"weekday before opening", weekday, at(t, berlin, "2026-03-02 00:59"), false, at(t, berlin, "2026-03-02 01:00")},
		{"friday evening waits for monday", weekday, at(t, berlin, "2026-03-06 06:00"), false, at(t, berlin, "2026-03-09 01:00")},
		{"saturday closed", weekday, at(t, berlin, "2026-03-07 02:00"), false, at(t, berlin, "2026-03-09 01:00")},
		{"zone, not UTC, decides", weekday, at(t, "UTC", "2026-03-02 00:30"), true, at(t, "UTC", "2026-03-02 00:30")},
		{"zone, not UTC, decides (closed)", weekday, at(t, "UTC", "2026-03-02 04:30"), false, at(t, berlin, "2026-03-03 01:00")},
		{"overnight friday evening", overnight, at(t, berlin, "2026-03-06 23:00"), true, at(t, berlin, "2026-03-06 23:00")},
		{"overnight runs into saturday", overnight, at(t, berlin, "2026-03-07 03:59"), true, at(t, berlin, "2026-03-07 03:59")},
		{"overnight closes saturday 04:00", overnight, at(t, berlin, "2026-03-07 04:00"), false, at(t, berlin, "2026-03-13 22:00")},
		{"overnight: friday early morning is thursday's night, not listed", overnight, at(t, berlin, "2026-03-06 02:00"), false, at(t, berlin, "2026-03-06 22:00")},
		{"every night after midnight", everyNight, at(t, "UTC", "2026-03-04 01:00"), true, at(t, "UTC", "2026-03-04 01:00")},
		{"every night midday", everyNight, at(t, "UTC", "2026-03-04 12:00"), false, at(t, "UTC", "2026-03-04 22:00")},
		// DST: Berlin springs forward 2026-03-29 02:00 -> 03:00; the
		// window 01:00-05:00 is 3 hours long that night.
		{"spring forward inside", mustWindow(t, "01:00-05:00 Europe/Berlin"), at(t, berlin, "2026-03-29 04:30"), true, at(t, berlin, "2026-03-29 04:30")},
		{"spring forward after", mustWindow(t, "01:00-05:00 Europe/Berlin"), at(t, berlin, "2026-03-29 05:00"), false, at(t, berlin, "2026-03-30 01:00")},
		// Falls back 2026-10-25 03:00 -> 02:00: 01:00-05:00 is 5 hours long.
		{"fall back", mustWindow(t, "01:00-05:00 Europe/Berlin"), time.Date(2026, 10, 25, 3, 30, 0, 0, time.UTC), true, time.Date(2026, 10, 25, 3, 30, 0, 0, time.UTC)},
		{"fall back closes at local 05:00", mustWindow(t, "01:00-05:00 Europe/Berlin"), time.Date(2026, 10, 25, 4, 0, 0, 0, time.UTC), false, at(t, berlin, "2026-10-26 01:00")},
		{"zero window is always open", Window{}, at(t, "UTC", "2026-03-07 12:00"), true, at(t, "UTC", "2026-03-07 12:00")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := tt.w.Contains(tt.t); got != tt.contains {
				t.Errorf("%s.Contains(%s) = %v, want %v", tt.w, tt.t, got, tt.contains)
			}
			if got := tt.w.Next(tt.t); !got.Equal(tt.next) {
				t.Errorf("%s.Next(%s) = %s, want %s", tt.w, tt.t, got, tt.next)
			}
		})
	}
}

// TestWindowNextProperties walks a year minute by minute in 7-minute steps
// and checks that Next is open, not before t, and that the window is closed
// everywhere between t and Next.
func TestWindowNextProperties(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"Mon-Fri 01:00-05:00 Europe/Berlin", "Fri-Mon 22:00-04:00 America/New_York", "Wed 23:59-00:01 Australia/Lord_Howe", "02:00-03:00 Europe/Berlin"} {
		w := mustWindow(t, s)
		start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		for cur := start; cur.Before(start.AddDate(1, 0, 0)); cur = cur.Add(7 * time.Minute) {
			next := w.Next(cur)
			if next.Before(cur) || next.Sub(cur) > 8*24*time.Hour {
				t.Fatalf("%s.Next(%s) = %s", s, cur, next)
			}
			if !w.Contains(next) {
				t.Fatalf("%s.Next(%s) = %s, which is closed", s, cur, next)
			}
			if next.After(cur) && w.Contains(next.Add(-time.Minute)) && next.Sub(cur) >= time.Minute {
				t.Fatalf("%s.Next(%s) = %s, but a minute earlier is open", s, cur, next)
			}
		}
	}
}

func FuzzParseWindow(f *testing.F) {
	for _, s := range []string{"Mon-Fri 01:00-05:00 Europe/Berlin", "22:00-04:00", "daily 00:00-24:00 UTC", "Fri-Mon 1:00-2:00", "x", "Mon 24:00-01:00"} {
		f.Add(s)
	}
	probe := time.Date(2026, 3, 29, 1, 30, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, s string) {
		w, err := ParseWindow(s)
		if err != nil {
			if !errors.Is(err, tufota.ErrInvalid) {
				t.Fatalf("error %v is not EInvalid", err)
			}
			return
		}
		again, err := ParseWindow(w.String())
		if err != nil || !again.Equal(w) {
			t.Fatalf("round trip %q -> %q -> %v, %v", s, w.String(), again, err)
		}
		next := w.Next(probe)
		if next.Before(probe) || !w.Contains(next) {
			t.Fatalf("%s.Next(%s) = %s", w, probe, next)
		}
	})
}
