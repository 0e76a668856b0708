package sim

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/tufota/tufota/api"
	"github.com/tufota/tufota/apiclient"
)

// CompareWithServer reads each rollout's history and the fleet report and
// fills sum.Rollouts and sum.Versions; it returns the differences.
func CompareWithServer(ctx context.Context, c *apiclient.Client, stats *Stats, devs []*Device, extra []string, sum *Summary) ([]string, error) {
	ours := make(map[string]bool, len(devs))
	for _, d := range devs {
		ours[d.ID] = true
	}
	ids := stats.rolloutsSeen()
	for _, id := range extra {
		if !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	var diffs []string
	for _, id := range ids {
		h, err := c.RolloutHistory(ctx, id)
		if err != nil {
			return nil, fmt.Errorf("rollout %s: %w", id, err)
		}
		rc, d := compareStates(ours, stats.lastStates(id), h.Devices)
		started := 0
		for _, w := range h.Waves {
			if w.Started {
				started++
			}
		}
		sum.Rollouts = append(sum.Rollouts, RolloutCheck{ID: id, State: h.Rollout.State, WavesStarted: started, Waves: len(h.Waves), Compare: rc})
		for _, line := range d {
			diffs = append(diffs, "rollout "+id+": "+line)
		}
	}
	fleet, err := c.FleetReport(ctx)
	if err != nil {
		return nil, fmt.Errorf("fleet report: %w", err)
	}
	vc, d := compareVersions(devs, fleet)
	sum.Versions = &vc
	return append(diffs, d...), nil
}

// EnrollAll enrolls every device with the enrollment token, 16 at a time.
func EnrollAll(ctx context.Context, c *apiclient.Client, devs []*Device) error {
	return EnrollParallel(ctx, c, devs, 16)
}

// EnrollParallel enrolls every device with the enrollment token, at most
// n at a time; the first failure stops the rest and is returned.
func EnrollParallel(ctx context.Context, c *apiclient.Client, devs []*Device, n int) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	jobs := make(chan *Device)
	var wg sync.WaitGroup
	for range max(n, 1) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for d := range jobs {
				res, err := c.Enroll(ctx, api.EnrollRequest{DeviceID: d.ID, Version: d.Version})
				if err != nil {
					cancel(fmt.Errorf("enroll %s: %w", d.ID, err))
					continue
				}
				d.Token = res.Token
			}
		}()
	}
feed:
	for _, d := range devs {
		select {
		case jobs <- d:
		case <-ctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return err
	}
	return nil
}
