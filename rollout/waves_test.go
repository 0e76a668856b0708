package rollout

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/tufota/tufota"
)

func TestParseWaves(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want []WaveSpec
	}{
		{"1%,10%,50%,100%", []WaveSpec{{BasisPoints: 100}, {BasisPoints: 1000}, {BasisPoints: 5000}, {BasisPoints: 10000}}},
		{"5,50,all", []WaveSpec{{Count: 5}, {Count: 50}, {BasisPoints: 10000}}},
		{" 5 , 50 , ALL ", []WaveSpec{{Count: 5}, {Count: 50}, {BasisPoints: 10000}}},
		{"0.5%,12.25%,all", []WaveSpec{{BasisPoints: 50}, {BasisPoints: 1225}, {BasisPoints: 10000}}},
		{"0.01%", []WaveSpec{{BasisPoints: 1}}},
		{"1.5%", []WaveSpec{{BasisPoints: 150}}},
		{"100%", []WaveSpec{{BasisPoints: 10000}}},
		{"all", []WaveSpec{{BasisPoints: 10000}}},
		{"1", []WaveSpec{{Count: 1}}},
		{"5,100%", []WaveSpec{{Count: 5}, {BasisPoints: 10000}}},
		{"10%,50%", []WaveSpec{{BasisPoints: 1000}, {BasisPoints: 5000}}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			got, err := ParseWaves(tt.in)
			if err != nil {
				t.Fatalf("ParseWaves(%q): %v", tt.in, err)
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("ParseWaves(%q) = %v, want %v", tt.in, got, tt.want)
			}
			again, err := ParseWaves(FormatWaves(got))
			if err != nil || !slices.Equal(again, got) {
				t.Fatalf("round trip of %q via %q = %v, %v", tt.in, FormatWaves(got), again, err)
			}
		})
	}
}

func TestParseWavesErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in, want string
	}{
		{"", "plan is empty"},
		{"   ", "plan is empty"},
		{"10%,5%", "not increasing: wave 2 (5%) is not above wave 1 (10%)"},
		{"10%,10%", "not increasing: wave 2 (10%) is not above wave 1 (10%)"},
		{"5,50,20", "not increasing: wave 3 (20) is not above wave 2 (50)"},
		{"all,5", "wave 2 (5): a plan is either percentages or device counts"},
		{"100%,all", "not increasing: wave 2 (100%) is not above wave 1 (100%)"},
		{"5,10%", "wave 2 (10%): a plan is either percentages or device counts"},
		{"10%,150%", `wave 2 ("150%"): a percentage over 100% is more than the cohort`},
		{"100.01%", "over 100%"},
		{"99999%", "over 100%"},
		{"0%", "must be above 0%"},
		{"0.00%", "must be above 0%"},
		{"-5%", "must be above 0%"},
		{"0", "at least one device"},
		{"-3", "must be above zero"},
		{"1%,,5%", `wave 2 (""): empty`},
		{"1%,", `wave 2 (""): empty`},
		{"abc", `wave 1 ("abc"): not a percentage (10%), a device count (5) or "all"`},
		{"5x", "not a percentage"},
		{"1e3", "not a percentage"},
		{"%", "not a percentage; want e.g. 10%"},
		{"1.%", "not a percentage"},
		{".5%", "not a percentage"},
		{"0.001%", "finer than 0.01%"},
		{"99999999999999999999", "device count too large"},
		{strings.Repeat("1,", 600), "longer than 1024"},
		{strings.Repeat("x", 2000), "longer than 1024"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			got, err := ParseWaves(tt.in)
			if err == nil {
				t.Fatalf("ParseWaves(%q) = %v, want error containing %q", tt.in, got, tt.want)
			}
			if !errors.Is(err, tufota.ErrInvalid) {
				t.Errorf("error %v is not EInvalid", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %q, want it to contain %q", err, tt.want)
			}
		})
	}
	many := strings.TrimSuffix(strings.Repeat("1%,", MaxWaves+1), ",")
	if _, err := ParseWaves(many); err == nil || !strings.Contains(err.Error(), "at most 100") {
		t.Errorf("ParseWaves(%d waves) error = %v, want at most 100", MaxWaves+1, err)
	}
}

func TestSizes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		plan   string
		cohort int
		want   []int
	}{
		{"10%,20%,50%,100%", 10, []int{1, 2, 5, 10}},
		{"1%,10%,50%,100%", 10, []int{1, 1, 5, 10}},
		{"5%,25%,100%", 200, []int{10, 50, 200}},
		{"1%,10%,50%,100%", 1000, []int{10, 100, 500, 1000}},
		{"1%,10%,50%,100%", 1001, []int{11, 101, 501, 1001}},
		{"1%,10%,50%,100%", 1, []int{1, 1, 1, 1}},
		{"1%,10%,50%,100%", 0, []int{0, 0, 0, 0}},
		{"1%,10%", -5, []int{0, 0}},
		{"5,50,all", 200, []int{5, 50, 200}},
		{"5,50,all", 20, []int{5, 20, 20}},
		{"5,50,all", 3, []int{3, 3, 3}},
		{"5,50", 1000, []int{5, 50}},
		{"0.01%,100%", 10001, []int{2, 10001}},
		{"33.33%,66.67%,100%", 3, []int{1, 3, 3}},
		{"50%", 1 << 40, []int{1 << 39}},
	}
	for _, tt := range tests {
		plan, err := ParseWaves(tt.plan)
		if err != nil {
			t.Fatal(err)
		}
		if got := Sizes(plan, tt.cohort); !slices.Equal(got, tt.want) {
			t.Errorf("Sizes(%s, %d) = %v, want %v", tt.plan, tt.cohort, got, tt.want)
		}
	}
}

// TestSizesProperties checks, for many plans and cohorts, that sizes never
// decrease, never exceed the cohort, round percentages up and give every
// wave of a non-empty cohort at least one device.
func TestSizesProperties(t *testing.T) {
	t.Parallel()
	plans := []string{"1%,10%,50%,100%", "0.01%,0.5%,7%,33.33%,99.99%", "5,50,all", "1,2,3,1000", "3%,all", "17"}
	for _, ps := range plans {
		plan, err := ParseWaves(ps)
		if err != nil {
			t.Fatal(err)
		}
		for n := 0; n <= 2500; n++ {
			sizes := Sizes(plan, n)
			for i, sz := range sizes {
				if sz > n || sz < 0 {
					t.Fatalf("Sizes(%s, %d)[%d] = %d outside [0, %d]", ps, n, i, sz, n)
				}
				if n > 0 && sz == 0 {
					t.Fatalf("Sizes(%s, %d)[%d] = 0 for a non-empty cohort", ps, n, i)
				}
				if i > 0 && sz < sizes[i-1] {
					t.Fatalf("Sizes(%s, %d) = %v decreases", ps, n, sizes)
				}
				w := plan[i]
				if w.BasisPoints > 0 {
					// ceil: sz*10000 >= bp*n and (sz-1)*10000 < bp*n, unless clamped.
					if sz*10000 < w.BasisPoints*n || (sz > 1 && (sz-1)*10000 >= w.BasisPoints*n && (i == 0 || sz > sizes[i-1])) {
						t.Fatalf("Sizes(%s, %d)[%d] = %d is not %s rounded up", ps, n, i, sz, w)
					}
				}
			}
		}
	}
}

func TestWaveSpecJSON(t *testing.T) {
	t.Parallel()
	plan, err := ParseWaves("0.5%,10%,all")
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(plan)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(b), `["0.5%","10%","100%"]`; got != want {
		t.Fatalf("json = %s, want %s", got, want)
	}
	var back []WaveSpec
	if err := json.Unmarshal(b, &back); err != nil || !slices.Equal(back, plan) {
		t.Fatalf("unmarshal = %v, %v; want %v", back, err, plan)
	}
	if err := json.Unmarshal([]byte(`["bogus"]`), &back); err == nil {
		t.Fatal("unmarshal of a bad wave succeeded")
	}
}

func FuzzParseWaves(f *testing.F) {
	for _, s := range []string{"1%,10%,50%,100%", "5,50,all", "0.5%", "10%,5%", "1.%", "-1", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		plan, err := ParseWaves(s)
		if err != nil {
			if !errors.Is(err, tufota.ErrInvalid) {
				t.Fatalf("error %v is not EInvalid", err)
			}
			return
		}
		if err := ValidateWaves(plan); err != nil {
			t.Fatalf("ParseWaves(%q) = %v fails ValidateWaves: %v", s, plan, err)
		}
		again, err := ParseWaves(FormatWaves(plan))
		if err != nil || !slices.Equal(again, plan) {
			t.Fatalf("round trip %q -> %q -> %v, %v", s, FormatWaves(plan), again, err)
		}
		for _, n := range []int{0, 1, 7, 100, 12345} {
			sizes := Sizes(plan, n)
			for i := range sizes {
				if sizes[i] > n || (i > 0 && sizes[i] < sizes[i-1]) {
					t.Fatalf("Sizes(%v, %d) = %v", plan, n, sizes)
				}
			}
		}
	})
}
