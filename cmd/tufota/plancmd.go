package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/api"
	"github.com/tufota/tufota/apiclient"
)

// maxPlanListed is how many device IDs a table line of rollout plan shows.
const maxPlanListed = 8

func (a *app) rolloutPlanCommand() *cobra.Command {
	var spec api.RolloutSpec
	cmd := &cobra.Command{
		Use:   "plan [ID] | plan --release NAME@VERSION --cohort SEL --waves PLAN [--window W]",
		Short: "Dry run: which devices fall into each wave, which are pinned, already on the release, outside the window",
		Long: `Show what a rollout would do before it starts. For a draft (by ID): how
many and which devices fall into each wave (the same devices the waves then
offer, if the fleet does not change). For a spec not created yet: the counts
per wave (which devices depends on the ID the rollout gets). Both list the
devices the selector matches that would not be offered the release: pinned
outside it, already on it or newer, other hardware, or in another active
rollout; and whether the maintenance window is open now.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			bySpec := spec.Release != "" || spec.Cohort != "" || spec.Waves != ""
			switch {
			case len(args) > 1:
				return tufota.Errorf(tufota.EInvalid, "rollout plan: at most one rollout ID")
			case len(args) == 1 && bySpec:
				return tufota.Errorf(tufota.EInvalid, "rollout plan: give a rollout ID or --release/--cohort/--waves, not both")
			case len(args) == 0 && !bySpec:
				return tufota.Errorf(tufota.EInvalid, "rollout plan: give a draft rollout's ID, or --release, --cohort and --waves")
			}
			return printCall(a, cmd, func(ctx context.Context, c *apiclient.Client) (api.DryRun, error) {
				if len(args) == 1 {
					return c.PlanRollout(ctx, args[0])
				}
				return c.PlanSpec(ctx, spec)
			}, printDryRun)
		},
	}
	f := cmd.Flags()
	f.StringVar(&spec.Release, "release", "", "NAME@VERSION of a published release")
	f.StringVar(&spec.Cohort, "cohort", "", "saved cohort name or a selector")
	f.StringVar(&spec.Waves, "waves", "", "wave plan: percentages (1%,10%,100%) or counts (5,50,all)")
	f.StringVar(&spec.Window, "window", "", "maintenance window, e.g. 'Mon-Fri 01:00-05:00 Europe/Berlin'")
	return cmd
}

func listed(ids []string, count int) string {
	if count == 0 {
		return "-"
	}
	shown := ids[:min(len(ids), maxPlanListed)]
	s := strings.Join(shown, ", ")
	if count > len(shown) {
		s += fmt.Sprintf(", ... (%d more)", count-len(shown))
	}
	return s
}

func printDryRun(w io.Writer, dr api.DryRun) {
	what := "spec (not created; wave membership depends on the rollout's ID)"
	if dr.RolloutID != "" {
		what = "rollout " + dr.RolloutID
	}
	fmt.Fprintf(w, "Plan of %s: %s to %s\n", what, dr.Release, dr.Selector)
	fmt.Fprintf(w, "%d devices match the selector; %d would be offered the release.\n\n", dr.Matched, dr.Cohort)
	row(w, "WAVE", "PLAN", "SIZE", "NEW", "DEVICES")
	for _, wv := range dr.Waves {
		devices := "-"
		if wv.Devices != nil || dr.RolloutID != "" {
			devices = listed(wv.Devices, wv.New)
		}
		row(w, wv.Number, wv.Spec, wv.Size, wv.New, devices)
	}
	fmt.Fprintln(w)
	row(w, "NOT OFFERED", "DEVICES", "WHICH")
	for _, l := range []struct {
		why  string
		list api.DeviceList
	}{
		{"pinned outside the release", dr.Pinned},
		{"already on the release", dr.OnRelease},
		{"on a newer version", dr.Newer},
		{"other hardware", dr.OtherHardware},
		{"in another active rollout", dr.InOtherRollout},
	} {
		row(w, l.why, l.list.Count, listed(l.list.Devices, l.list.Count))
	}
	fmt.Fprintln(w)
	switch {
	case dr.Window == "":
		fmt.Fprintln(w, "Window: none (offers at any time)")
	case dr.WindowOpen:
		fmt.Fprintf(w, "Window: %s, open now\n", dr.Window)
	default:
		fmt.Fprintf(w, "Window: %s, closed now; opens %s\n", dr.Window, dr.WindowOpensAt.UTC().Format(time.RFC3339))
	}
}
