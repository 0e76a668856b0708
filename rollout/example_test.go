package rollout_test

import (
	"fmt"
	"time"

	"github.com/tufota/tufota/rollout"
)

func ExampleSizes() {
	plan, _ := rollout.ParseWaves("10%,20%,50%,100%")
	fmt.Println(rollout.Sizes(plan, 10))
	fmt.Println(rollout.Sizes(plan, 1001))
	// Output:
	// [1 2 5 10]
	// [101 201 501 1001]
}

func ExampleParseSelector() {
	sel, _ := rollout.ParseSelector("hardware=pump-b, site in (north,south), tag:icu, region!=eu")
	pump := rollout.Device{ID: "pump-17", Hardware: "pump-b",
		Attrs: map[string]string{"site": "north", "region": "us"}, Tags: []string{"icu"}}
	fmt.Println(sel)
	fmt.Println(sel.Match(pump))
	// Output:
	// hardware=pump-b,site in (north,south),tag:icu,region!=eu
	// true
}

func ExampleWindow() {
	w, _ := rollout.ParseWindow("Fri 22:00-04:00 Europe/Berlin")
	saturday3am := time.Date(2026, 3, 7, 2, 0, 0, 0, time.UTC) // 03:00 in Berlin
	fmt.Println(w.Contains(saturday3am))
	fmt.Println(w.Next(saturday3am.Add(2 * time.Hour)).UTC())
	// Output:
	// true
	// 2026-03-13 21:00:00 +0000 UTC
}

func ExampleDecide() {
	waves, _ := rollout.ParseWaves("5%,25%,100%")
	plan := rollout.Plan{Waves: waves, Soak: 30 * time.Minute, MinReports: 10,
		MaxFailureRate: 0.05, DeviceTimeout: 2 * time.Hour}
	started := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	state := rollout.State{Phase: rollout.Running, Wave: 0, WaveStartedAt: started, Plan: plan}

	healthy := rollout.Health{Cohort: 200, Members: 10, Offered: 10, Installed: 10, WaveMembers: 10, WaveReports: 10}
	d := rollout.Decide(state, started.Add(31*time.Minute), healthy)
	fmt.Println(d.Action, "-", d.Reason)

	failing := rollout.Health{Cohort: 200, Members: 10, Offered: 10, Installed: 5, Failed: 5, WaveMembers: 10, WaveReports: 10}
	d = rollout.Decide(state, started.Add(5*time.Minute), failing)
	fmt.Println(d.Action, "-", d.Reason)
	// Output:
	// advance - wave 1 healthy after soak 30m0s (10 installed, 0 failed); wave 2 of 3 (25%, 50 devices) starts
	// pause - wave 1: failure rate 50.0% (5 of 10 reports) above max 5.0%
}
