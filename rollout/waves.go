package rollout

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/tufota/tufota"
)

// MaxWaves is the largest number of waves a plan may have.
const MaxWaves = 100

// maxPlanLen bounds the text ParseWaves reads.
const maxPlanLen = 1024

// WaveSpec is one wave of a plan: the cumulative share of the cohort that
// runs the release once the wave has started. Exactly one of BasisPoints
// (a percentage in hundredths of a percent, 1..10000) and Count (an
// absolute number of devices) is set; "all" is 10000 basis points.
//
// A WaveSpec marshals to and from its text form ("1%", "0.5%", "5", "all"),
// so a plan stored as JSON reads like the flag that made it.
type WaveSpec struct {
	BasisPoints int
	Count       int
}

// String returns the wave as ParseWaves accepts it.
func (w WaveSpec) String() string {
	switch {
	case w.Count > 0:
		return strconv.Itoa(w.Count)
	case w.BasisPoints == 10000:
		return "100%"
	case w.BasisPoints%100 == 0:
		return strconv.Itoa(w.BasisPoints/100) + "%"
	default:
		return strings.TrimRight(fmt.Sprintf("%d.%02d", w.BasisPoints/100, w.BasisPoints%100), "0") + "%"
	}
}

// MarshalText implements encoding.TextMarshaler.
func (w WaveSpec) MarshalText() ([]byte, error) { return []byte(w.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler with parseWave's rules.
func (w *WaveSpec) UnmarshalText(b []byte) error {
	v, err := parseWave(1, string(b))
	if err != nil {
		return err
	}
	*w = v
	return nil
}

// ParseWaves parses a comma-separated wave plan: cumulative percentages of
// the cohort ("1%,10%,50%,100%", up to two decimals: "0.5%"), cumulative
// device counts ("5,50,all"), where "all" is the whole cohort and may end
// either kind. Waves must strictly increase. Percentages and counts cannot
// be mixed, because whether "50,10%" increases would depend on the size of
// the cohort. A plan need not reach the whole cohort.
//
// Every error is EInvalid and names the wave at fault.
func ParseWaves(s string) ([]WaveSpec, error) {
	if len(s) > maxPlanLen {
		return nil, tufota.Errorf(tufota.EInvalid, "waves: plan is longer than %d characters", maxPlanLen)
	}
	if strings.TrimSpace(s) == "" {
		return nil, tufota.Errorf(tufota.EInvalid, "waves: plan is empty; want e.g. 1%%,10%%,50%%,100%% or 5,50,all")
	}
	parts := strings.Split(s, ",")
	if len(parts) > MaxWaves {
		return nil, tufota.Errorf(tufota.EInvalid, "waves: %d waves, at most %d allowed", len(parts), MaxWaves)
	}
	plan := make([]WaveSpec, 0, len(parts))
	for i, p := range parts {
		w, err := parseWave(i+1, p)
		if err != nil {
			return nil, err
		}
		plan = append(plan, w)
	}
	if err := ValidateWaves(plan); err != nil {
		return nil, err
	}
	return plan, nil
}

// ValidateWaves checks a plan that did not come from ParseWaves (a stored or
// hand-built one) with the same rules.
func ValidateWaves(plan []WaveSpec) error {
	if len(plan) == 0 {
		return tufota.Errorf(tufota.EInvalid, "waves: plan is empty; want e.g. 1%%,10%%,50%%,100%% or 5,50,all")
	}
	if len(plan) > MaxWaves {
		return tufota.Errorf(tufota.EInvalid, "waves: %d waves, at most %d allowed", len(plan), MaxWaves)
	}
	counts, percents := false, false
	for i, w := range plan {
		n := i + 1
		switch {
		case w.Count > 0 && w.BasisPoints != 0, w.Count < 0, w.BasisPoints < 0,
			w.Count == 0 && w.BasisPoints == 0, w.BasisPoints > 10000:
			return tufota.Errorf(tufota.EInvalid, "waves: wave %d is invalid (%d devices, %d basis points)", n, w.Count, w.BasisPoints)
		case w.Count > 0:
			counts = true
		case w.BasisPoints < 10000 || i < len(plan)-1:
			percents = true
		}
		if counts && percents {
			return tufota.Errorf(tufota.EInvalid, "waves: wave %d (%s): a plan is either percentages or device counts, not both (\"all\" may end either)", n, w)
		}
		if i == 0 {
			continue
		}
		prev := plan[i-1]
		if !waveAbove(w, prev) {
			return tufota.Errorf(tufota.EInvalid, "waves: not increasing: wave %d (%s) is not above wave %d (%s)", n, w, n-1, prev)
		}
	}
	return nil
}

// waveAbove reports whether w covers strictly more than prev. "all" is
// above every count; plans never mix counts and percentages otherwise.
func waveAbove(w, prev WaveSpec) bool {
	switch {
	case prev.Count > 0 && w.Count > 0:
		return w.Count > prev.Count
	case prev.Count > 0:
		return w.BasisPoints == 10000
	case w.Count > 0:
		return false
	default:
		return w.BasisPoints > prev.BasisPoints
	}
}

func parseWave(n int, raw string) (WaveSpec, error) {
	s := strings.TrimSpace(raw)
	bad := func(why string) (WaveSpec, error) {
		return WaveSpec{}, tufota.Errorf(tufota.EInvalid, "waves: wave %d (%q): %s", n, s, why)
	}
	switch {
	case s == "":
		return bad("empty; want a percentage (10%), a device count (5) or \"all\"")
	case strings.EqualFold(s, "all"):
		return WaveSpec{BasisPoints: 10000}, nil
	case strings.HasSuffix(s, "%"):
		num := strings.TrimSpace(strings.TrimSuffix(s, "%"))
		bp, err := parseBasisPoints(num)
		if err != nil {
			return bad(err.Error())
		}
		switch {
		case bp == 0:
			return bad("a wave must be above 0%")
		case bp > 10000:
			return bad("a percentage over 100% is more than the cohort")
		}
		return WaveSpec{BasisPoints: bp}, nil
	}
	if strings.HasPrefix(s, "-") {
		return bad("a wave must be above zero")
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return bad("not a percentage (10%), a device count (5) or \"all\"")
		}
	}
	c, err := strconv.Atoi(s)
	switch {
	case err != nil || c > 1_000_000_000:
		return bad("device count too large")
	case c == 0:
		return bad("a wave must have at least one device")
	}
	return WaveSpec{Count: c}, nil
}

// parseBasisPoints parses "12", "12.5" or "0.05" into hundredths of a percent.
func parseBasisPoints(num string) (int, error) {
	if strings.HasPrefix(num, "-") {
		return 0, fmt.Errorf("a wave must be above 0%%")
	}
	whole, frac, hasFrac := strings.Cut(num, ".")
	if whole == "" || !allDigits(whole) || (hasFrac && (frac == "" || !allDigits(frac))) {
		return 0, fmt.Errorf("not a percentage; want e.g. 10%% or 0.5%%")
	}
	if len(frac) > 2 {
		return 0, fmt.Errorf("finer than 0.01%%")
	}
	if len(whole) > 4 {
		return 0, fmt.Errorf("a percentage over 100%% is more than the cohort")
	}
	w, _ := strconv.Atoi(whole)
	f := 0
	if frac != "" {
		f, _ = strconv.Atoi(frac)
		if len(frac) == 1 {
			f *= 10
		}
	}
	return w*100 + f, nil
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// FormatWaves returns the plan as ParseWaves accepts it.
func FormatWaves(plan []WaveSpec) string {
	parts := make([]string, len(plan))
	for i, w := range plan {
		parts[i] = w.String()
	}
	return strings.Join(parts, ",")
}

// Sizes returns the cumulative number of devices in each wave of plan for a
// cohort of cohortSize devices. Percentages round up, so every wave of a
// non-empty cohort has at least one device; no wave exceeds the cohort; the
// sizes never decrease (consecutive waves can be equal in a small cohort).
// A negative cohortSize counts as zero.
func Sizes(plan []WaveSpec, cohortSize int) []int {
	if cohortSize < 0 {
		cohortSize = 0
	}
	out := make([]int, len(plan))
	prev := 0
	for i, w := range plan {
		var n int
		if w.Count > 0 {
			n = min(w.Count, cohortSize)
		} else {
			// ceil(bp * size / 10000), split so that it cannot overflow.
			q, r := cohortSize/10000, cohortSize%10000
			n = min(w.BasisPoints*q+(w.BasisPoints*r+9999)/10000, cohortSize)
		}
		n = max(n, prev)
		out[i] = n
		prev = n
	}
	return out
}
