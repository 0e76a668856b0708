package rollout

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"testing"
)

func TestBucket(t *testing.T) {
	t.Parallel()
	// Independent computation of the documented formula.
	h := sha256.Sum256([]byte("r-1\x00pump-0001"))
	want := int(binary.BigEndian.Uint64(h[:8]) % 10000)
	if got := Bucket("r-1", "pump-0001"); got != want {
		t.Fatalf("Bucket = %d, want %d", got, want)
	}
	if again := Bucket("r-1", "pump-0001"); again != want {
		t.Fatal("Bucket is not deterministic")
	}
	// The separator keeps ("ab","c") and ("a","bc") apart.
	if Bucket("ab", "c") == Bucket("a", "bc") && KeyOf("ab", "c") == KeyOf("a", "bc") {
		t.Fatal("rollout and device IDs run together")
	}
	// Buckets spread: 20000 devices over 10 deciles, each within 15% of even.
	var deciles [10]int
	for i := range 20000 {
		b := Bucket("r-spread", fmt.Sprintf("dev-%d", i))
		if b < 0 || b >= Buckets {
			t.Fatalf("bucket %d out of range", b)
		}
		deciles[b/1000]++
	}
	for i, c := range deciles {
		if c < 1700 || c > 2300 {
			t.Errorf("decile %d has %d of 20000 devices, want about 2000", i, c)
		}
	}
	// Different rollouts order the same fleet differently.
	same := 0
	for i := range 1000 {
		id := fmt.Sprintf("dev-%d", i)
		if Bucket("r-a", id) == Bucket("r-b", id) {
			same++
		}
	}
	if same > 10 {
		t.Errorf("%d of 1000 devices share a bucket across two rollouts", same)
	}
}

func cohortOf(prefix string, n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("%s-%04d", prefix, i)
	}
	return ids
}

func covered(rollout string, ids []string, c Cutoff) map[string]bool {
	in := map[string]bool{}
	for _, id := range ids {
		if c.Covers(KeyOf(rollout, id)) {
			in[id] = true
		}
	}
	return in
}

// TestCutoffsExactAndMonotonic freezes the cutoffs of a plan wave by wave
// and checks that each wave holds exactly its planned size and every device
// of a wave stays in every later wave.
func TestCutoffsExactAndMonotonic(t *testing.T) {
	t.Parallel()
	plans := []string{"10%,20%,50%,100%", "1%,10%,50%,100%", "5%,25%,100%", "5,50,all", "3,7,40"}
	for _, ps := range plans {
		plan, err := ParseWaves(ps)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range []int{0, 1, 2, 10, 37, 200, 1000} {
			ids := cohortOf("d", n)
			sizes := Sizes(plan, n)
			var cutoffs []Cutoff
			prev := Cutoff{}
			var prevIn map[string]bool
			for i, w := range plan {
				c := NextCutoff("r-"+ps, ids, sizes[i], w.BasisPoints == 10000, prev)
				cutoffs = append(cutoffs, c)
				in := covered("r-"+ps, ids, c)
				if len(in) != sizes[i] {
					t.Fatalf("plan %s cohort %d wave %d holds %d devices, want %d", ps, n, i+1, len(in), sizes[i])
				}
				for id := range prevIn {
					if !in[id] {
						t.Fatalf("plan %s cohort %d: %s left wave %d for wave %d", ps, n, id, i, i+1)
					}
				}
				if !c.atLeast(prev) {
					t.Fatalf("cutoff of wave %d is below wave %d's", i+1, i)
				}
				prev, prevIn = c, in
			}
			// WaveOf agrees with coverage: a device's first wave covers it
			// and no earlier one does.
			for _, id := range ids {
				k := KeyOf("r-"+ps, id)
				w := WaveOf(cutoffs, k)
				for j, c := range cutoffs {
					if c.Covers(k) != (w >= 0 && j >= w) {
						t.Fatalf("device %s: WaveOf = %d but cutoff %d covers = %v", id, w, j, c.Covers(k))
					}
				}
			}
		}
	}
}

// TestCutoffsCohortChanges lets devices join and leave between waves, at
// random, and checks that no device ever leaves the waves it was in and that
// each wave, when it starts, covers at least its planned share of the
// cohort of that moment.
func TestCutoffsCohortChanges(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	plan, err := ParseWaves("2%,10%,30%,60%,100%")
	if err != nil {
		t.Fatal(err)
	}
	for trial := range 50 {
		rid := fmt.Sprintf("r-%d", trial)
		cohort := map[string]bool{}
		next := 0
		add := func(k int) {
			for range k {
				cohort[fmt.Sprintf("dev-%05d", next)] = true
				next++
			}
		}
		add(100 + rng.IntN(300))
		everIn := map[string]int{} // device -> first wave that covered it
		prev := Cutoff{}
		for i, w := range plan {
			// Churn: some devices leave, some join.
			for id := range cohort {
				if rng.IntN(20) == 0 {
					delete(cohort, id)
				}
			}
			add(rng.IntN(40))
			ids := make([]string, 0, len(cohort))
			for id := range cohort {
				ids = append(ids, id)
			}
			size := Sizes(plan, len(ids))[i]
			c := NextCutoff(rid, ids, size, w.BasisPoints == 10000, prev)
			in := covered(rid, ids, c)
			if len(in) < size {
				t.Fatalf("trial %d wave %d covers %d of a cohort of %d, want at least %d", trial, i+1, len(in), len(ids), size)
			}
			for id, first := range everIn {
				if !c.Covers(KeyOf(rid, id)) {
					t.Fatalf("trial %d: %s was in wave %d but is not covered by wave %d", trial, id, first+1, i+1)
				}
			}
			for id := range in {
				if _, ok := everIn[id]; !ok {
					everIn[id] = i
				}
			}
			prev = c
		}
	}
}

// TestJoinMidRollout: a device that joins the cohort after a wave started
// falls into its bucket: it is in the current wave when the frozen cutoff
// covers its key, and otherwise waits for the first later wave that does.
func TestJoinMidRollout(t *testing.T) {
	t.Parallel()
	const rid = "r-join"
	plan, _ := ParseWaves("10%,50%,100%")
	ids := cohortOf("d", 100)
	sizes := Sizes(plan, len(ids))
	c1 := NextCutoff(rid, ids, sizes[0], false, Cutoff{})
	// Find a newcomer below the cutoff and one above.
	var low, high string
	for i := 0; low == "" || high == ""; i++ {
		id := fmt.Sprintf("new-%d", i)
		if c1.Covers(KeyOf(rid, id)) {
			if low == "" {
				low = id
			}
		} else if high == "" {
			high = id
		}
	}
	cutoffs := []Cutoff{c1}
	if got := WaveOf(cutoffs, KeyOf(rid, low)); got != 0 {
		t.Fatalf("newcomer %s (bucket %d) is in wave %d, want 0 (cutoff %+v)", low, Bucket(rid, low), got, *c1.Last)
	}
	if got := WaveOf(cutoffs, KeyOf(rid, high)); got != -1 {
		t.Fatalf("newcomer %s (bucket %d) is in wave %d, want none yet", high, Bucket(rid, high), got)
	}
	// The cohort grew by the two newcomers; wave 2 and 3 cover as planned.
	ids = append(ids, low, high)
	sizes = Sizes(plan, len(ids))
	c2 := NextCutoff(rid, ids, sizes[1], false, c1)
	c3 := NextCutoff(rid, ids, sizes[2], true, c2)
	cutoffs = append(cutoffs, c2, c3)
	if got := WaveOf(cutoffs, KeyOf(rid, low)); got != 0 {
		t.Fatalf("newcomer %s moved to wave %d", low, got)
	}
	if got := WaveOf(cutoffs, KeyOf(rid, high)); got < 1 {
		t.Fatalf("newcomer %s is in wave %d, want 1 or 2", high, got)
	}
	if n := len(covered(rid, ids, c2)); n != sizes[1] {
		t.Fatalf("wave 2 covers %d, want %d", n, sizes[1])
	}
	// The last wave (100%) covers everyone, also devices that join after it.
	if !c3.Covers(KeyOf(rid, "joined-after-the-end")) {
		t.Fatal("100% wave does not cover a late joiner")
	}
}

func TestCutoffZero(t *testing.T) {
	t.Parallel()
	if (Cutoff{}).Covers(Key{Bucket: 0, Device: ""}) {
		t.Fatal("zero cutoff covers a device")
	}
	if got := NextCutoff("r", nil, 5, false, Cutoff{}); got.All || got.Last != nil {
		t.Fatalf("cutoff of an empty cohort = %+v, want zero", got)
	}
	if got := WaveOf(nil, KeyOf("r", "d")); got != -1 {
		t.Fatalf("WaveOf(no waves) = %d", got)
	}
}
