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
	"github.com/tufota/tufota/vuln"
)

// vulnCommand is "tufota vuln": advisory import and exposure reports
// (server/vuln.go, package vuln).
func (a *app) vulnCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "vuln", Short: "Vulnerability exposure: import OSV advisories and VEX, report affected releases and devices"}
	cmd.AddCommand(a.vulnImportCommand(), a.vulnReportCommand(), a.vulnCohortCommand())
	return cmd
}

func (a *app) vulnImportCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "import PATH",
		Short: "Import OSV records and CycloneDX VEX documents: a directory, a zip (such as OSV's Go/all.zip) or one JSON file",
		Long: "Reads advisories in the OSV schema and VEX statements in CycloneDX JSON from PATH and sends them to the server, " +
			"which checks every file first (one bad file imports nothing and every bad file is named), stores them and " +
			"matches them against every release's SBOM. A directory is zipped on the fly (its *.json files). No network " +
			"access besides the tufota server is needed.",
		Args: exactArgs(1, "a directory, zip or JSON file"),
		RunE: func(cmd *cobra.Command, args []string) error {
			body, ct, err := vuln.OpenImport(args[0])
			if err != nil {
				return err
			}
			defer body.Close()
			return printCall(a, cmd, func(ctx context.Context, c *apiclient.Client) (api.VulnImportResult, error) {
				return c.ImportVulnerabilities(ctx, body, ct)
			}, printVulnImport)
		},
	}
}

func printVulnImport(w io.Writer, res api.VulnImportResult) {
	fmt.Fprintf(w, "Imported %d file(s): %d advisories, %d withdrawn, %d VEX statements.\n", res.Files, res.Advisories, res.Withdrawn, res.Statements)
	if len(res.NewlyAffected) == 0 {
		fmt.Fprintln(w, "No release is newly affected.")
		return
	}
	fmt.Fprintf(w, "Newly affected (%d device(s) run them):\n", res.ExposedDevices)
	row(w, "ADVISORY", "RELEASE", "COMPONENT", "VERSION", "FIXED IN")
	for _, f := range res.NewlyAffected {
		row(w, f.Advisory, f.Release, f.Component, f.Version, dash(f.FixedIn))
	}
}

func (a *app) vulnReportCommand() *cobra.Command {
	var id, release, format string
	cmd := &cobra.Command{
		Use:   "report [--id CVE-... | --release NAME@VERSION] [-o json | --format csv]",
		Short: "Per advisory: affected releases, devices running them, cohorts, and the first fixing release with its rollout progress",
		Args:  exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return printReport(a, cmd, "vuln report", format, func(ctx context.Context, c *apiclient.Client) ([]api.VulnReport, error) {
				return c.Vulnerabilities(ctx, id, release)
			}, report.VulnCSV, printVulnReport)
		},
	}
	cmd.Flags().StringVar(&id, "id", "", "one advisory, by any of its IDs (CVE, GHSA, GO-...)")
	cmd.Flags().StringVar(&release, "release", "", "only advisories found in NAME@VERSION")
	cmd.Flags().StringVar(&format, "format", "", "csv: one row per advisory, release and device")
	return cmd
}

func printVulnReport(w io.Writer, reps []api.VulnReport) {
	if len(reps) == 0 {
		fmt.Fprintln(w, "No imported advisory affects any release.")
		return
	}
	for _, r := range reps {
		ids := r.Advisory
		if len(r.Aliases) > 0 {
			ids += " (" + strings.Join(r.Aliases, ", ") + ")"
		}
		fmt.Fprintf(w, "%s: %s — %s, %d device(s) exposed\n", ids, dash(r.Summary), r.Status, len(r.ExposedDevices))
		row(w, "  RELEASE", "STATUS", "COMPONENT", "VERSION", "FIXED IN", "DEVICES")
		for _, e := range r.Releases {
			for _, c := range e.Components {
				st := c.Status
				if c.Justification != "" {
					st += " (" + c.Justification + ")"
				}
				row(w, "  "+e.Release, st, c.Component, c.Version, dash(c.FixedIn), len(e.Devices))
			}
		}
		for _, co := range r.Cohorts {
			row(w, "  cohort "+co.Name, fmt.Sprintf("%d exposed", co.Exposed))
		}
		for _, f := range r.Fixes {
			row(w, "  fixed by "+f.Release, fmt.Sprintf("%d device(s) run it", f.Devices))
			for _, ro := range f.Rollouts {
				row(w, "    rollout "+ro.ID, ro.State, fmt.Sprintf("%d/%d installed, %d failed, %d in progress", ro.Installed, ro.Devices, ro.Failed, ro.InProgress))
			}
		}
		fmt.Fprintln(w)
	}
}

// vulnCohortCommand saves the devices exposed to an advisory now as a
// cohort (a selector on their IDs), ready for a remediation rollout.
func (a *app) vulnCohortCommand() *cobra.Command {
	var id string
	cmd := &cobra.Command{
		Use:   "cohort NAME --exposed-to ID",
		Short: "Save the devices exposed to an advisory now as a cohort, for a remediation rollout",
		Args:  exactArgs(1, "a cohort name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return printCall(a, cmd, func(ctx context.Context, c *apiclient.Client) (api.Cohort, error) {
				return exposedCohort(ctx, c, args[0], id)
			}, func(w io.Writer, co api.Cohort) {
				fmt.Fprintf(w, "Cohort %s: %d device(s) exposed to %s\n", co.Name, co.Devices, id)
			})
		},
	}
	cmd.Flags().StringVar(&id, "exposed-to", "", "advisory ID (required)")
	_ = cmd.MarkFlagRequired("exposed-to")
	return cmd
}

// exposedCohort saves the devices exposed to advisory id now as cohort
// name, a selector on their IDs.
func exposedCohort(ctx context.Context, c *apiclient.Client, name, id string) (api.Cohort, error) {
	reps, err := c.Vulnerabilities(ctx, id, "")
	if err != nil {
		return api.Cohort{}, err
	}
	var devs []string
	for _, r := range reps {
		devs = append(devs, r.ExposedDevices...)
	}
	if len(devs) == 0 {
		return api.Cohort{}, tufota.Errorf(tufota.EInvalid, "vuln cohort: no device is exposed to %s", id)
	}
	return c.CreateCohort(ctx, api.CohortRequest{Name: name, Selector: "id in (" + strings.Join(devs, ",") + ")"})
}
