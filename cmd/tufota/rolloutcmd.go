package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tufota/tufota/api"
	"github.com/tufota/tufota/apiclient"
	"github.com/tufota/tufota/internal/report"
)

func (a *app) rolloutCommand() *cobra.Command {
	cmd := group("rollout", "Take a release to a cohort in canary waves", a.rolloutCreateCommand(), a.rolloutListCommand(), a.rolloutStatusCommand(), a.rolloutHistoryCommand(), a.rolloutPlanCommand())
	for _, action := range []struct{ name, short string }{
		{"start", "Start a draft rollout (or schedule it, with --start-at)"},
		{"pause", "Pause a running rollout"},
		{"resume", "Resume a paused rollout"},
		{"approve", "Approve the next wave (by someone other than the creator)"},
		{"abort", "Abort a rollout: no device is offered the release any more"},
		{"rollback", "Assign the previous release to the devices that took this one"},
	} {
		cmd.AddCommand(a.rolloutActionCommand(action.name, action.short))
	}
	return cmd
}

func (a *app) rolloutCreateCommand() *cobra.Command {
	var spec api.RolloutSpec
	var maxFailures int
	cmd := &cobra.Command{
		Use:   "create --release NAME@VERSION --cohort NAME|SELECTOR --waves 1%,10%,50%,100% [flags]",
		Short: "Create a draft rollout",
		Args:  exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if cmd.Flags().Changed("max-failures") {
				spec.MaxFailures = &maxFailures
			}
			return printCall(a, cmd, func(ctx context.Context, c *apiclient.Client) (api.Rollout, error) { return c.CreateRollout(ctx, spec) }, func(w io.Writer, r api.Rollout) {
				fmt.Fprintf(w, "Created rollout %s: %s to %s in waves %s (state %s)\n", r.ID, r.Release, r.Selector, spec.Waves, r.State)
				for _, warn := range r.Warnings {
					fmt.Fprintf(w, "Warning: %s\n", warn)
				}
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&spec.Release, "release", "", "NAME@VERSION of a published release (required)")
	f.StringVar(&spec.Cohort, "cohort", "", "saved cohort name or a selector (required)")
	f.StringVar(&spec.Waves, "waves", "", "wave plan: percentages (1%,10%,100%) or counts (5,50,all) (required)")
	f.StringVar(&spec.Soak, "soak", "", "time each wave runs before the next, e.g. 30m")
	f.IntVar(&spec.MinReports, "min-reports", 0, "reports a wave needs before it may end (default 1)")
	f.StringVar(&spec.MaxFailureRate, "max-failure-rate", "", "pause when a wave's failure rate exceeds this, e.g. 5%")
	f.IntVar(&maxFailures, "max-failures", 0, "pause after this many failures")
	f.StringVar(&spec.DeviceTimeout, "device-timeout", "", "a device silent this long after accepting counts as failed (default 2h)")
	f.IntVar(&spec.ApprovalRequiredAfterWave, "approval-required-after-wave", 0, "hold after this wave until approved by another user")
	f.StringVar(&spec.Window, "window", "", "maintenance window, e.g. 'Mon-Fri 01:00-05:00 Europe/Berlin'")
	f.StringVar(&spec.StartAt, "start-at", "", "start no earlier than this RFC 3339 time")
	f.StringVar(&spec.OnBreach, "on-breach", "", "pause (default) or abort when a health gate fails")
	f.StringVar(&spec.Deadline, "deadline", "", "RFC 3339 time from which the update is required, not optional (e.g. a safety fix)")
	f.IntVar(&spec.Priority, "priority", 0, "0..1000: may overlap active rollouts of another priority; shared devices go to the higher one")
	f.StringVar(&spec.MaxDeferral, "max-deferral", "", "a device may defer (\"not now\") this long before it counts as silent, e.g. 72h (default 24h)")
	for _, n := range []string{"release", "cohort", "waves"} {
		_ = cmd.MarkFlagRequired(n)
	}
	return cmd
}

func (a *app) rolloutActionCommand(action, short string) *cobra.Command {
	var req api.ActionRequest
	cmd := &cobra.Command{
		Use:   action + " ID [--reason TEXT]",
		Short: short,
		Args:  exactArgs(1, "a rollout ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return printCall(a, cmd, func(ctx context.Context, c *apiclient.Client) (api.RolloutStatus, error) {
				return c.RolloutAction(ctx, args[0], action, req)
			}, printStatus)
		},
	}
	cmd.Flags().StringVar(&req.Reason, "reason", "", "why (recorded in the history and the audit log)")
	if action == "rollback" {
		cmd.Flags().StringVar(&req.To, "to", "", "NAME@VERSION to roll back to (default: each device's previous release)")
	}
	return cmd
}

func (a *app) rolloutListCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List rollouts",
		Args:  exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return printCall(a, cmd, func(ctx context.Context, c *apiclient.Client) ([]api.Rollout, error) { return c.ListRollouts(ctx) }, func(w io.Writer, rs []api.Rollout) {
				row(w, "ID", "RELEASE", "COHORT", "STATE", "CREATED BY")
				for _, r := range rs {
					row(w, r.ID, r.Release, r.Selector, r.State, r.CreatedBy)
				}
			})
		},
	}
}

func (a *app) rolloutStatusCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "status ID",
		Short: "Show a rollout's state, waves and health",
		Args:  exactArgs(1, "a rollout ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return printCall(a, cmd, func(ctx context.Context, c *apiclient.Client) (api.RolloutStatus, error) {
				return c.Rollout(ctx, args[0])
			}, printStatus)
		},
	}
}

func printStatus(w io.Writer, st api.RolloutStatus) {
	row(w, "Rollout:", st.ID)
	row(w, "Release:", st.Release)
	row(w, "Cohort:", st.Selector)
	row(w, "State:", st.State)
	row(w, "Next:", dash(st.Next))
	if len(st.Pinned) > 0 {
		row(w, "Pinned:", fmt.Sprintf("%d devices kept from the release by pins (not pending): %s", len(st.Pinned), strings.Join(st.Pinned, ", ")))
	}
	fmt.Fprintln(w)
	row(w, "WAVE", "PLAN", "SIZE", "OFFERED", "INSTALLED", "FAILED", "SILENT", "DEFERRED", "IN PROGRESS", "DELTA", "FULL")
	for _, wv := range st.Waves {
		row(w, wv.Number, wv.Spec, wv.Size, wv.Offered, wv.Installed, wv.Failed, wv.Silent, wv.Deferred, wv.InProgress,
			downloads(wv.DeltaDownloads, wv.DeltaBytes), downloads(wv.FullDownloads, wv.FullBytes))
	}
}

// downloads is a DELTA or FULL cell: the bytes the devices reported and
// how many devices, "-" for none.
func downloads(devices int, bytes int64) string {
	if devices == 0 {
		return "-"
	}
	return fmt.Sprintf("%d B (%d)", bytes, devices)
}

func (a *app) rolloutHistoryCommand() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "history ID [-o json] [--format csv]",
		Short: "Print a rollout's timeline, per-device outcomes and time to 50/90/100%",
		Args:  exactArgs(1, "a rollout ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return printReport(a, cmd, "rollout history", format, func(ctx context.Context, c *apiclient.Client) (api.RolloutHistory, error) {
				return c.RolloutHistory(ctx, args[0])
			}, report.HistoryCSV, printHistory)
		},
	}
	cmd.Flags().StringVar(&format, "format", "", "csv: the timeline and device outcomes as CSV")
	return cmd
}

func printHistory(w io.Writer, h api.RolloutHistory) {
	r := h.Rollout
	fmt.Fprintf(w, "Rollout %s: %s to %s, state %s\n\n", r.ID, r.Release, r.Selector, r.State)
	row(w, "TIME", "ACTOR", "EVENT", "REASON")
	for _, e := range h.Events {
		row(w, e.Time.UTC().Format(time.RFC3339), e.Actor, e.Kind, dash(e.Reason))
	}
	fmt.Fprintln(w)
	row(w, "WAVE", "PLAN", "SIZE", "OFFERED", "INSTALLED", "FAILED", "SILENT", "DEFERRED", "DELTA", "FULL")
	for _, wv := range h.Waves {
		row(w, wv.Number, wv.Spec, wv.Size, wv.Offered, wv.Installed, wv.Failed, wv.Silent, wv.Deferred,
			downloads(wv.DeltaDownloads, wv.DeltaBytes), downloads(wv.FullDownloads, wv.FullBytes))
	}
	fmt.Fprintln(w)
	since := "-"
	if h.Since != nil {
		since = h.SinceWhat
	}
	row(w, "MILESTONE", "DEVICES", "REACHED", "SINCE "+since)
	for _, m := range h.Milestones {
		reached, elapsed := "-", "-"
		if m.ReachedAt != nil {
			reached = m.ReachedAt.UTC().Format(time.RFC3339)
			if h.Since != nil {
				elapsed = m.ReachedAt.Sub(*h.Since).Round(time.Millisecond).String()
			}
		}
		row(w, strconv.Itoa(m.Percent)+"%", m.Devices, reached, elapsed)
	}
	fmt.Fprintln(w)
	row(w, "DEVICE", "WAVE", "STATE", "ERROR", "PREVIOUS", "OFFERED", "INSTALLED", "DOWNLOAD")
	for _, d := range h.Devices {
		st := string(d.State)
		if d.Silent {
			st += " (silent)"
		}
		if d.DeferredUntil != nil && !d.Silent {
			st += " until " + d.DeferredUntil.UTC().Format(time.RFC3339) + ": " + d.Message
		}
		dl := "-"
		if d.Download != "" {
			dl = fmt.Sprintf("%s %d B", d.Download, d.DownloadBytes)
		}
		row(w, d.DeviceID, d.Wave, st, dash(d.ErrorCode), dash(d.PreviousVersion), d.OfferedAt.UTC().Format(time.RFC3339), report.Time(d.InstalledAt), dl)
	}
}

func (a *app) fleetCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "fleet", Short: "Fleet-wide reports"}
	var format string
	reportCmd := &cobra.Command{
		Use:   "report [-o json] [--format csv]",
		Short: "Every device's version, how far behind it is, last update, last seen, failed updates",
		Args:  exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return printReport(a, cmd, "fleet report", format, func(ctx context.Context, c *apiclient.Client) ([]api.FleetRow, error) {
				return c.FleetReport(ctx)
			}, report.FleetCSV, func(w io.Writer, rows []api.FleetRow) {
				row(w, "DEVICE", "HARDWARE", "VERSION", "NEWEST", "BEHIND", "DAYS SINCE UPDATE", "LAST SEEN", "FAILED")
				for _, r := range rows {
					days := "-"
					if r.DaysSinceLastUpdate != nil {
						days = strconv.Itoa(*r.DaysSinceLastUpdate)
					}
					row(w, r.DeviceID, r.Hardware, dash(r.Version), dash(r.Newest), r.Behind, days, report.Time(r.LastSeen), r.FailedUpdates)
				}
			})
		},
	}
	reportCmd.Flags().StringVar(&format, "format", "", "csv for a spreadsheet")
	cmd.AddCommand(reportCmd)
	return cmd
}
