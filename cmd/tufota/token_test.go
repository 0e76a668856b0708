package main

import (
	"errors"
	"testing"
	"time"

	"github.com/tufota/tufota"
)

// TestParseDays checks lifetimes as the CLI reads them; a number of days
// too large for a time.Duration is refused instead of wrapping around
// (213504d used to become a token that expired in 25 minutes).
func TestParseDays(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want time.Duration // 0: refused
	}{
		{"90d", 90 * 24 * time.Hour},
		{"36h", 36 * time.Hour},
		{"30m", 30 * time.Minute},
		{"106751d", 106751 * 24 * time.Hour},
		{"106752d", 0},
		{"213504d", 0},
		{"99999999999999999999d", 0},
		{"0d", 0},
		{"-1d", 0},
		{"-5h", 0},
		{"d", 0},
		{"", 0},
	} {
		got, err := parseDays(tc.in)
		if tc.want == 0 {
			if !errors.Is(err, tufota.ErrInvalid) {
				t.Errorf("parseDays(%q) = %s, %v; want ErrInvalid", tc.in, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("parseDays(%q) = %s, %v; want %s", tc.in, got, err, tc.want)
		}
	}
}
