package main

import (
	"context"
	"io"

	"github.com/spf13/cobra"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/api"
	"github.com/tufota/tufota/apiclient"
	"github.com/tufota/tufota/rollout"
)

// pinTarget reads --cohort NAME | --device ID into a pin's kind and name.
func pinTarget(cohort, device string) (kind, name string, err error) {
	switch {
	case cohort != "" && device != "":
		return "", "", tufota.Errorf(tufota.EInvalid, "pin: give --cohort or --device, not both")
	case cohort != "":
		return rollout.PinCohort, cohort, nil
	case device != "":
		return rollout.PinDevice, device, nil
	}
	return "", "", tufota.Errorf(tufota.EInvalid, "pin: give --cohort NAME or --device ID")
}

func (a *app) pinCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "pin", Short: "Keep a cohort or a device on a validated firmware line"}
	var cohort, device, version, reason string
	set := &cobra.Command{
		Use:   "set --cohort NAME | --device ID --version '1.4.*' --reason TEXT",
		Short: "Pin a saved cohort or one device to a version line; no rollout offers it anything outside",
		Long: `Pin a saved cohort or one device to a validated version line: an exact
version (1.4.2) or a line (1.4.*, 1.*). No rollout offers a pinned device a
release outside its line: rollout status lists it as pinned, not pending.
A device's own pin decides alone; otherwise every cohort pin whose cohort
matches the device must allow the release. Setting a pin again replaces it.`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			kind, name, err := pinTarget(cohort, device)
			if err != nil {
				return err
			}
			return printCall(a, cmd, func(ctx context.Context, c *apiclient.Client) (api.Pin, error) {
				return c.SetPin(ctx, kind, name, api.PinRequest{Version: version, Reason: reason})
			}, func(w io.Writer, p api.Pin) { printPins(w, []api.Pin{p}) })
		},
	}
	set.Flags().StringVar(&cohort, "cohort", "", "saved cohort to pin")
	set.Flags().StringVar(&device, "device", "", "device to pin")
	set.Flags().StringVar(&version, "version", "", "version line: 1.4.2, 1.4.* or 1.* (required)")
	set.Flags().StringVar(&reason, "reason", "", "why, e.g. 'validated by site IT' (required)")
	_ = set.MarkFlagRequired("version")
	_ = set.MarkFlagRequired("reason")

	var rmCohort, rmDevice string
	remove := &cobra.Command{
		Use:   "remove --cohort NAME | --device ID",
		Short: "Remove a pin",
		Args:  exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			kind, name, err := pinTarget(rmCohort, rmDevice)
			if err != nil {
				return err
			}
			return printCall(a, cmd, func(ctx context.Context, c *apiclient.Client) (map[string]string, error) {
				return map[string]string{"removed": kind + "/" + name}, c.RemovePin(ctx, kind, name)
			}, func(w io.Writer, _ map[string]string) { row(w, "Removed pin on", kind, name) })
		},
	}
	remove.Flags().StringVar(&rmCohort, "cohort", "", "cohort whose pin to remove")
	remove.Flags().StringVar(&rmDevice, "device", "", "device whose pin to remove")

	list := &cobra.Command{
		Use:   "list",
		Short: "List pins",
		Args:  exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return printCall(a, cmd, func(ctx context.Context, c *apiclient.Client) ([]api.Pin, error) { return c.Pins(ctx) }, printPins)
		},
	}
	cmd.AddCommand(set, list, remove)
	return cmd
}

func printPins(w io.Writer, pins []api.Pin) {
	row(w, "KIND", "NAME", "VERSION", "REASON", "BY", "SINCE")
	for _, p := range pins {
		row(w, p.Kind, p.Name, p.Version, p.Reason, p.CreatedBy, p.CreatedAt.UTC().Format("2006-01-02T15:04:05Z"))
	}
}
