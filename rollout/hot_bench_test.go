package rollout

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/storage"
)

// BenchmarkAssignment is P5 of bench/run's table: the cost of answering
// one device's poll once its device and the active rollouts are in memory
// (the steady state of a fleet polling a running rollout), measured over a
// fleet of 1,000,000 devices: ns/op is ns per device. "decision" is the pure
// part (cohort selector, hardware, version order, wave membership:
// eligible + WaveOf(KeyOf)); "poll" is Service.Assignment end to end from
// the caches (SQLite behind them, not touched).
func BenchmarkAssignment(b *testing.B) {
	const fleet = 1_000_000
	ids := make([]string, fleet)
	for i := range ids {
		ids[i] = fmt.Sprintf("pump-%07d", i)
	}
	b.Run("decision", func(b *testing.B) {
		sel, err := ParseSelector("site=north")
		if err != nil {
			b.Fatal(err)
		}
		rv, err := tufota.ParseVersion("1.1.0")
		if err != nil {
			b.Fatal(err)
		}
		r := Rollout{ID: "ro-0123456789ab", ReleaseVersion: "1.1.0", Hardware: []string{"pump-b"}, selector: sel, releaseVer: &rv}
		cut := []Cutoff{{Last: &Key{Bucket: 1000}}, {All: true}} // 10 %, then everyone
		d := Device{Hardware: "pump-b", Version: "1.0.0", Attrs: map[string]string{"site": "north"}}
		offered := 0
		b.ReportAllocs()
		b.ResetTimer()
		for i := range b.N {
			d.ID = ids[i%fleet]
			if r.eligible(d) && WaveOf(cut, KeyOf(r.ID, d.ID)) >= 0 {
				offered++
			}
		}
		if offered == 0 {
			b.Fatal("no device offered")
		}
	})
}

// BenchmarkPollFromMemory: Service.Assignment for devices whose rows and
// statuses are cached, with one running rollout that has offered them its
// release (the re-offer path, the most work a steady poll does).
func BenchmarkPollFromMemory(b *testing.B) {
	db, err := storage.OpenDB(b.Context(), "sqlite:"+filepath.Join(b.TempDir(), "state.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	e := newEnvOn(b, db)
	const n = 2000
	ids := e.fleet(n, nil)
	r, err := e.svc.CreateRollout(b.Context(), Spec{Release: "pump-fw@1.1.0", Cohort: "site=north", Waves: "all"}, "alice")
	if err != nil {
		b.Fatal(err)
	}
	if err := e.svc.Start(b.Context(), r.ID, "alice", ""); err != nil {
		b.Fatal(err)
	}
	for range 2 { // offer, then cache
		for _, id := range ids {
			if _, err := e.svc.Assignment(b.Context(), Query{DeviceID: id}); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		e.clock.Advance(time.Millisecond)
		a, err := e.svc.Assignment(b.Context(), Query{DeviceID: ids[i%n], Version: "1.0.0"})
		if err != nil || a == nil {
			b.Fatalf("poll = %v, %v", a, err)
		}
	}
}
