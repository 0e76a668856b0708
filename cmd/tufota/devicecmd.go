package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/api"
	"github.com/tufota/tufota/apiclient"
	"github.com/tufota/tufota/internal/report"
)

// parseAttrs turns k=v pairs and tag:NAME entries into attributes and tags.
func parseAttrs(pairs []string) (map[string]string, []string, error) {
	attrs := map[string]string{}
	var tags []string
	for _, p := range pairs {
		if t, ok := strings.CutPrefix(p, "tag:"); ok {
			tags = append(tags, t)
			continue
		}
		k, v, ok := strings.Cut(p, "=")
		if !ok || k == "" {
			return nil, nil, tufota.Errorf(tufota.EInvalid, "attribute %q: want KEY=VALUE or tag:NAME", p)
		}
		attrs[k] = v
	}
	return attrs, tags, nil
}

func (a *app) deviceCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "device", Short: "Register, list, show and assign devices; make enrollment tokens"}

	var hw, version, expires string
	var attrs []string
	register := &cobra.Command{
		Use:   "register ID --hardware HW [--attr k=v ...] [--attr tag:icu]",
		Short: "Register a device and print its token (shown once)",
		Args:  exactArgs(1, "a device ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			at, tags, err := parseAttrs(attrs)
			if err != nil {
				return err
			}
			req := api.RegisterDeviceRequest{Device: api.Device{ID: args[0], Hardware: hw, Version: version, Attrs: at, Tags: tags}}
			if expires != "" {
				d, err := parseDays(expires)
				if err != nil {
					return err
				}
				req.TokenExpires = d.String()
			}
			return printCall(a, cmd, func(ctx context.Context, c *apiclient.Client) (api.DeviceTokenResponse, error) {
				return c.RegisterDevice(ctx, req)
			}, func(w io.Writer, res api.DeviceTokenResponse) {
				fmt.Fprintf(w, "Registered device %s (%s). Device token (shown once):\n%s\n", res.Device.ID, res.Device.Hardware, res.Token)
			})
		},
	}
	register.Flags().StringVar(&hw, "hardware", "", "hardware ID (required)")
	register.Flags().StringVar(&version, "current-version", "", "firmware version the device runs now")
	register.Flags().StringSliceVar(&attrs, "attr", nil, "attribute KEY=VALUE or tag:NAME (repeatable)")
	register.Flags().StringVar(&expires, "token-expires", "", "device token lifetime (default 365d, at most 1825d)")
	_ = register.MarkFlagRequired("hardware")

	list := &cobra.Command{
		Use:   "list",
		Short: "List devices",
		Args:  exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return printCall(a, cmd, func(ctx context.Context, c *apiclient.Client) ([]api.Device, error) { return c.ListDevices(ctx) }, func(w io.Writer, devs []api.Device) {
				row(w, "ID", "HARDWARE", "VERSION", "TARGET", "LAST SEEN", "ATTRIBUTES")
				for _, d := range devs {
					row(w, d.ID, d.Hardware, dash(d.Version), dash(d.TargetRelease), report.Time(&d.LastSeen), deviceAttrs(d))
				}
			})
		},
	}
	show := &cobra.Command{
		Use:   "show ID",
		Short: "Show one device",
		Args:  exactArgs(1, "a device ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return printCall(a, cmd, func(ctx context.Context, c *apiclient.Client) (api.Device, error) { return c.Device(ctx, args[0]) }, func(w io.Writer, d api.Device) {
				row(w, "Device:", d.ID)
				row(w, "Hardware:", d.Hardware)
				row(w, "Version:", dash(d.Version))
				row(w, "Release:", dash(d.CurrentRelease))
				row(w, "Assigned:", dash(d.TargetRelease))
				row(w, "Last seen:", report.Time(&d.LastSeen))
				row(w, "Attributes:", deviceAttrs(d))
			})
		},
	}
	var reason string
	assign := &cobra.Command{
		Use:   "assign ID NAME@VERSION --reason TEXT",
		Short: "Assign one release to one device (for service engineers; audited)",
		Args:  exactArgs(2, "a device ID and NAME@VERSION"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return printCall(a, cmd, func(ctx context.Context, c *apiclient.Client) (api.Device, error) {
				return c.AssignDevice(ctx, args[0], api.AssignRequest{Release: args[1], Reason: reason})
			}, func(w io.Writer, d api.Device) { fmt.Fprintf(w, "Device %s assigned %s\n", d.ID, d.TargetRelease) })
		},
	}
	assign.Flags().StringVar(&reason, "reason", "", "why (recorded in the audit log)")

	var eReq api.EnrollTokenRequest
	var eAttrs []string
	var eExpires string
	enroll := &cobra.Command{
		Use:   "enroll-token --hardware HW [--attr k=v ...] [--expires 24h]",
		Short: "Make a bulk enrollment token: devices enroll themselves with it and get their own token",
		Args:  exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			var err error
			if eReq.Attrs, eReq.Tags, err = parseAttrs(eAttrs); err != nil {
				return err
			}
			if eExpires != "" {
				d, err := parseDays(eExpires)
				if err != nil {
					return err
				}
				eReq.Expires = d.String()
			}
			return printCall(a, cmd, func(ctx context.Context, c *apiclient.Client) (api.EnrollTokenResponse, error) {
				return c.CreateEnrollToken(ctx, eReq)
			}, func(w io.Writer, res api.EnrollTokenResponse) {
				fmt.Fprintf(w, "Enrollment token for %s devices, expires %s (shown once):\n%s\n", eReq.Hardware, report.Time(res.Detail.ExpiresAt), res.EnrollToken)
			})
		},
	}
	enroll.Flags().StringVar(&eReq.Hardware, "hardware", "", "hardware ID of the devices (required)")
	enroll.Flags().StringVar(&eReq.Name, "name", "", "token name (default enroll-HW)")
	enroll.Flags().StringSliceVar(&eAttrs, "attr", nil, "attribute KEY=VALUE or tag:NAME every enrolled device gets")
	enroll.Flags().StringVar(&eExpires, "expires", "", "lifetime (default 24h, at most 30d)")
	_ = enroll.MarkFlagRequired("hardware")

	cmd.AddCommand(register, list, show, assign, enroll)
	return cmd
}

func deviceAttrs(d api.Device) string {
	s := details(d.Attrs)
	for _, t := range d.Tags {
		s += " tag:" + t
	}
	return strings.TrimPrefix(s, "- ")
}

func (a *app) cohortCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "cohort", Short: "Named device selectors"}
	var selector, exposedTo string
	create := &cobra.Command{
		Use:   "create NAME (--selector 'hardware=pump-b,site in (north,south),tag:icu' | --exposed-to ID)",
		Short: "Save a cohort: a device selector, or the devices exposed to an advisory now",
		Args:  exactArgs(1, "a cohort name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return printCall(a, cmd, func(ctx context.Context, c *apiclient.Client) (api.Cohort, error) {
				if exposedTo != "" {
					return exposedCohort(ctx, c, args[0], exposedTo)
				}
				return c.CreateCohort(ctx, api.CohortRequest{Name: args[0], Selector: selector})
			}, printCohort)
		},
	}
	create.Flags().StringVar(&selector, "selector", "", "device selector")
	create.Flags().StringVar(&exposedTo, "exposed-to", "", "advisory ID: the cohort is the devices exposed to it now (a selector on their IDs)")
	create.MarkFlagsMutuallyExclusive("selector", "exposed-to")
	create.MarkFlagsOneRequired("selector", "exposed-to")
	list := &cobra.Command{
		Use:   "list",
		Short: "List cohorts with their matching device counts",
		Args:  exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return printCall(a, cmd, func(ctx context.Context, c *apiclient.Client) ([]api.Cohort, error) { return c.ListCohorts(ctx) }, printCohorts)
		},
	}
	show := &cobra.Command{
		Use:   "show NAME",
		Short: "Show a cohort and how many devices match it",
		Args:  exactArgs(1, "a cohort name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return printCall(a, cmd, func(ctx context.Context, c *apiclient.Client) (api.Cohort, error) { return c.Cohort(ctx, args[0]) }, printCohort)
		},
	}
	cmd.AddCommand(create, list, show)
	return cmd
}

func printCohort(w io.Writer, co api.Cohort) { printCohorts(w, []api.Cohort{co}) }

func printCohorts(w io.Writer, cos []api.Cohort) {
	row(w, "NAME", "SELECTOR", "DEVICES", "CREATED BY")
	for _, c := range cos {
		row(w, c.Name, c.Selector, c.Devices, c.CreatedBy)
	}
}
