package rollout

import (
	"fmt"
	"strconv"
	"strings"
	"time"
	_ "time/tzdata" // windows name IANA zones; do not depend on the host's zoneinfo

	"github.com/tufota/tufota"
)

// Window is a recurring maintenance window, such as "Mon-Fri 01:00-05:00
// Europe/Berlin": the days on which it opens, the local time it opens and
// closes, and the time zone. A window whose end is before its start runs
// overnight: "Fri 22:00-04:00" is open from Friday 22:00 to Saturday 04:00
// (the days name the day a window opens). Daylight saving is handled by
// computing each day's opening and closing in the zone.
//
// A Window is immutable after parsing and safe for concurrent use.
type Window struct {
	days       [7]bool // by time.Weekday
	start, end int     // minutes after midnight; end may be 1440
	loc        *time.Location
}

var dayNames = [7]string{"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"}

// ParseWindow parses "[DAYS] HH:MM-HH:MM [ZONE]". DAYS is a comma list of
// days (Mon, Tue, ... Sun) and ranges (Mon-Fri, Fri-Mon wraps), or "daily";
// without DAYS the window opens every day. ZONE is an IANA time zone name
// (Europe/Berlin); without it the window is in UTC. 24:00 may end a window.
// Errors are EInvalid and say what part is wrong.
func ParseWindow(s string) (Window, error) {
	bad := func(format string, args ...any) (Window, error) {
		return Window{}, tufota.Errorf(tufota.EInvalid, "window %q: %s", s, fmt.Sprintf(format, args...))
	}
	if len(s) > 256 {
		return Window{}, tufota.Errorf(tufota.EInvalid, "window is longer than 256 characters")
	}
	fields := strings.Fields(s)
	if len(fields) == 0 {
		return bad("empty; want e.g. \"Mon-Fri 01:00-05:00 Europe/Berlin\"")
	}
	w := Window{loc: time.UTC}
	i := 0
	if !strings.Contains(fields[0], ":") {
		days, err := parseDays(fields[0])
		if err != nil {
			return bad("%v", err)
		}
		w.days = days
		i++
	} else {
		w.days = [7]bool{true, true, true, true, true, true, true}
	}
	if i >= len(fields) {
		return bad("no time range; want HH:MM-HH:MM")
	}
	from, to, ok := strings.Cut(fields[i], "-")
	if !ok {
		return bad("time range %q: want HH:MM-HH:MM", fields[i])
	}
	var err error
	if w.start, err = parseClock(from, false); err != nil {
		return bad("opening time: %v", err)
	}
	if w.end, err = parseClock(to, true); err != nil {
		return bad("closing time: %v", err)
	}
	if w.start == w.end {
		return bad("opens and closes at %s: the window is empty", from)
	}
	i++
	if i < len(fields) {
		loc, err := loadZone(fields[i])
		if err != nil {
			return bad("%v", err)
		}
		w.loc = loc
		i++
	}
	if i < len(fields) {
		return bad("unexpected %q after the time zone", fields[i])
	}
	return w, nil
}

func parseDays(s string) ([7]bool, error) {
	var days [7]bool
	if strings.EqualFold(s, "daily") {
		return [7]bool{true, true, true, true, true, true, true}, nil
	}
	for _, part := range strings.Split(s, ",") {
		from, to, isRange := strings.Cut(part, "-")
		a, err := parseDay(from)
		if err != nil {
			return days, err
		}
		if !isRange {
			days[a] = true
			continue
		}
		b, err := parseDay(to)
		if err != nil {
			return days, err
		}
		for d := a; ; d = (d + 1) % 7 {
			days[d] = true
			if d == b {
				break
			}
		}
	}
	return days, nil
}

func parseDay(s string) (int, error) {
	for i, n := range dayNames {
		if strings.EqualFold(s, n) {
			return i, nil
		}
	}
	return 0, fmt.Errorf("unknown day %q; want Mon, Tue, Wed, Thu, Fri, Sat, Sun, a range like Mon-Fri, or daily", s)
}

// parseClock parses H:MM or HH:MM into minutes after midnight; 24:00 only
// when end is set.
func parseClock(s string, end bool) (int, error) {
	h, m, ok := strings.Cut(s, ":")
	if !ok || len(h) < 1 || len(h) > 2 || len(m) != 2 || !allDigits(h) || !allDigits(m) {
		return 0, fmt.Errorf("%q: want HH:MM", s)
	}
	hh, _ := strconv.Atoi(h)
	mm, _ := strconv.Atoi(m)
	switch {
	case hh == 24 && mm == 0 && end:
		return 1440, nil
	case hh > 23 || mm > 59:
		return 0, fmt.Errorf("%q is not a time of day", s)
	}
	return hh*60 + mm, nil
}

func loadZone(name string) (*time.Location, error) {
	if len(name) > 64 {
		return nil, fmt.Errorf("time zone name is too long")
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("/_+-", c) >= 0) {
			return nil, fmt.Errorf("unknown time zone %q; want an IANA name such as Europe/Berlin or UTC", name)
		}
	}
	if name == "Local" || strings.Contains(name, "..") || strings.HasPrefix(name, "/") {
		return nil, fmt.Errorf("unknown time zone %q; want an IANA name such as Europe/Berlin or UTC", name)
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, fmt.Errorf("unknown time zone %q; want an IANA name such as Europe/Berlin or UTC", name)
	}
	return loc, nil
}

// overnight reports whether the window closes on the day after it opens.
func (w Window) overnight() bool { return w.end < w.start }

// interval returns the opening and closing of the window that opens on
// the calendar day y-m-d in the window's zone.
func (w Window) interval(y int, m time.Month, d int) (time.Time, time.Time) {
	open := time.Date(y, m, d, w.start/60, w.start%60, 0, 0, w.loc)
	ed := d
	if w.overnight() {
		ed++
	}
	return open, time.Date(y, m, ed, w.end/60, w.end%60, 0, 0, w.loc)
}

// Contains reports whether the window is open at t. The zero Window is
// always open.
func (w Window) Contains(t time.Time) bool {
	if w.loc == nil {
		return true
	}
	lt := t.In(w.loc)
	y, m, d := lt.Date()
	for _, k := range []int{-1, 0} {
		day := time.Date(y, m, d+k, 12, 0, 0, 0, w.loc)
		if !w.days[day.Weekday()] {
			continue
		}
		open, close := w.interval(day.Date())
		if !t.Before(open) && t.Before(close) {
			return true
		}
	}
	return false
}

// Next returns t when the window is open at t, and otherwise the next time
// after t at which it opens. The zero Window returns t.
func (w Window) Next(t time.Time) time.Time {
	if w.loc == nil || w.Contains(t) {
		return t
	}
	lt := t.In(w.loc)
	y, m, d := lt.Date()
	for k := 0; k <= 8; k++ {
		day := time.Date(y, m, d+k, 12, 0, 0, 0, w.loc)
		if !w.days[day.Weekday()] {
			continue
		}
		// A window inside a daylight-saving gap can be empty on that day.
		if open, close := w.interval(day.Date()); open.After(t) && open.Before(close) {
			return open
		}
	}
	return t // unreachable: a parsed window opens at least once a week
}

// Equal reports whether w and o open on the same days at the same local
// times in the same zone.
func (w Window) Equal(o Window) bool {
	if w.loc == nil || o.loc == nil {
		return w.loc == nil && o.loc == nil
	}
	return w.days == o.days && w.start == o.start && w.end == o.end && w.loc.String() == o.loc.String()
}

// IsZero reports whether w is the zero Window (always open).
func (w Window) IsZero() bool { return w.loc == nil }

// Location returns the window's time zone (nil for the zero Window).
func (w Window) Location() *time.Location { return w.loc }

// String returns the window in canonical form: ParseWindow(w.String())
// gives back an equal window. The zero Window is "".
func (w Window) String() string {
	if w.loc == nil {
		return ""
	}
	var b strings.Builder
	if days := formatDays(w.days); days != "" {
		b.WriteString(days)
		b.WriteByte(' ')
	}
	fmt.Fprintf(&b, "%02d:%02d-%02d:%02d %s", w.start/60, w.start%60, w.end/60, w.end%60, w.loc)
	return b.String()
}

// formatDays lists days Monday first, runs of two or more as ranges; every
// day is "".
func formatDays(days [7]bool) string {
	order := [7]int{1, 2, 3, 4, 5, 6, 0}
	all := true
	for _, on := range days {
		all = all && on
	}
	if all {
		return ""
	}
	var parts []string
	for i := 0; i < 7; {
		if !days[order[i]] {
			i++
			continue
		}
		j := i
		for j+1 < 7 && days[order[j+1]] {
			j++
		}
		if j > i {
			parts = append(parts, dayNames[order[i]]+"-"+dayNames[order[j]])
		} else {
			parts = append(parts, dayNames[order[i]])
		}
		i = j + 1
	}
	return strings.Join(parts, ",")
}

// MarshalText implements encoding.TextMarshaler.
func (w Window) MarshalText() ([]byte, error) { return []byte(w.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler; empty text is the
// zero Window.
func (w *Window) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		*w = Window{}
		return nil
	}
	v, err := ParseWindow(string(b))
	if err != nil {
		return err
	}
	*w = v
	return nil
}
