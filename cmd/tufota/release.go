package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/api"
	"github.com/tufota/tufota/apiclient"
	"github.com/tufota/tufota/internal/report"
	"github.com/tufota/tufota/signer"
)

func (a *app) releaseCommand() *cobra.Command {
	return group("release", "Push, list and show firmware releases", a.releasePushCommand(), a.releaseListCommand(), a.releaseShowCommand(), a.releaseSignCommand(), a.releaseCancelCommand())
}

func (a *app) releasePushCommand() *cobra.Command {
	var req api.PushRequest
	var hardware []string
	var sbomPath, vexPath string
	cmd := &cobra.Command{
		Use:   "push FILE --name NAME --version SEMVER --hardware HW [--notes TEXT] [--sbom FILE] [--vex FILE]",
		Short: "Upload a firmware image (and its SBOM), sign it into the targets metadata and publish it",
		Args:  exactArgs(1, "one FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			req.Hardware = hardware
			rel, err := a.pushReleaseFiles(cmd.Context(), args[0], sbomPath, vexPath, req)
			if err != nil {
				return err
			}
			return a.print(rel, func(w io.Writer) { printRelease(w, rel) })
		},
	}
	f := cmd.Flags()
	f.StringVar(&req.Name, "name", "", "release name, e.g. pump-fw (required)")
	f.StringVar(&req.Version, "version", "", "semantic version, e.g. 1.4.2 (required)")
	f.StringSliceVar(&hardware, "hardware", nil, "compatible hardware IDs (repeat or comma-separate; required)")
	f.StringVar(&req.Notes, "notes", "", "release notes")
	f.StringSliceVar(&req.AllowDowngradeFrom, "allow-downgrade-from", nil, "exact versions a device may leave for this older release (a signed rollback)")
	f.StringVar(&sbomPath, "sbom", "", "the release's SBOM, CycloneDX or SPDX JSON: signed and published with the firmware as NAME/VERSION/sbom.cdx.json or sbom.spdx.json")
	f.StringVar(&vexPath, "vex", "", "the CycloneDX VEX document the release ships with: signed and published with the firmware as NAME/VERSION/vex.cdx.json, and applied to the release's vulnerability findings")
	for _, n := range []string{"name", "version", "hardware"} {
		_ = cmd.MarkFlagRequired(n)
	}
	return cmd
}

// pushRelease pushes a release without an SBOM.
func (a *app) pushRelease(ctx context.Context, path string, req api.PushRequest) (api.Release, error) {
	return a.pushReleaseFiles(ctx, path, "", "", req)
}

// readSBOM reads and validates an SBOM file (at most signer.MaxSBOMBytes).
func readSBOM(path string) ([]byte, string, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, "", tufota.Errorf(tufota.ENotFound, "release push: no such SBOM file %s", path)
		}
		return nil, "", fmt.Errorf("release push: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, signer.MaxSBOMBytes+1))
	if err != nil {
		return nil, "", fmt.Errorf("release push: read SBOM %s: %w", path, err)
	}
	format, err := signer.ValidateSBOM(b)
	if err != nil {
		return nil, "", fmt.Errorf("release push: %s: %w", path, err)
	}
	return b, format, nil
}

// readVEX reads and validates a VEX file (at most signer.MaxVEXBytes).
func readVEX(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, tufota.Errorf(tufota.ENotFound, "release push: no such VEX file %s", path)
		}
		return nil, fmt.Errorf("release push: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, signer.MaxVEXBytes+1))
	if err != nil {
		return nil, fmt.Errorf("release push: read VEX %s: %w", path, err)
	}
	if err := signer.ValidateVEX(b); err != nil {
		return nil, fmt.Errorf("release push: %s: %w", path, err)
	}
	return b, nil
}

// pushReleaseFiles validates locally, then streams FILE as multipart
// without holding it in memory, with a progress line on a terminal. A
// non-empty sbomPath (vexPath) is validated and sent as the "sbom" ("vex")
// part, before the firmware.
func (a *app) pushReleaseFiles(ctx context.Context, path, sbomPath, vexPath string, req api.PushRequest) (api.Release, error) {
	var rel api.Release
	var sbom, vex []byte
	if sbomPath != "" {
		var err error
		if sbom, _, err = readSBOM(sbomPath); err != nil {
			return rel, err
		}
	}
	if vexPath != "" {
		var err error
		if vex, err = readVEX(vexPath); err != nil {
			return rel, err
		}
	}
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return rel, tufota.Errorf(tufota.ENotFound, "release push: no such file %s", path)
		}
		return rel, fmt.Errorf("release push: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return rel, fmt.Errorf("release push: %w", err)
	}
	if st.IsDir() {
		return rel, tufota.Errorf(tufota.EInvalid, "release push: %s is a directory", path)
	}
	if st.Size() == 0 {
		return rel, tufota.Errorf(tufota.EInvalid, "release push: %s is empty", path)
	}
	req.File = filepath.Base(path)
	if err := req.Validate(); err != nil {
		return rel, fmt.Errorf("release push: %w", err)
	}
	c, err := a.api()
	if err != nil {
		return rel, err
	}
	var body io.Reader = f
	if w, ok := a.stderr.(*os.File); ok && term.IsTerminal(int(w.Fd())) {
		body = &progress{r: f, total: st.Size(), w: w, label: req.File}
	}
	rel, err = c.PushRelease(ctx, apiclient.Push{Release: req, SBOM: sbom, SBOMName: filepath.Base(sbomPath), VEX: vex, VEXName: filepath.Base(vexPath), File: body})
	if p, ok := body.(*progress); ok {
		p.done()
	}
	return rel, err
}

func (a *app) releaseListCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List releases, newest first",
		Args:  exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return printCall(a, cmd, func(ctx context.Context, c *apiclient.Client) ([]api.Release, error) { return c.ListReleases(ctx) }, func(w io.Writer, rels []api.Release) {
				row(w, "NAME", "VERSION", "HARDWARE", "SIZE", "STATE", "SIGNED BY", "PUBLISHED", "BY")
				for _, r := range rels {
					row(w, r.Name, r.Version, strings.Join(r.Hardware, ","), report.Bytes(r.Length), r.State, r.Role, report.Time(r.PublishedAt), r.CreatedBy)
				}
			})
		},
	}
}

func (a *app) releaseShowCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "show NAME@VERSION",
		Short: "Show one release",
		Args:  exactArgs(1, "NAME@VERSION"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.onRelease(cmd, "release show", args[0], (*apiclient.Client).Release, printRelease)
		},
	}
}

func printRelease(w io.Writer, r api.Release) {
	row(w, "Release:", r.Name+"@"+r.Version)
	row(w, "State:", r.State)
	row(w, "Target:", r.TargetPath)
	row(w, "Length:", fmt.Sprintf("%d (%s)", r.Length, report.Bytes(r.Length)))
	row(w, "SHA-256:", r.SHA256)
	if r.SHA512 != "" { // only releases pushed before SHA-512 was dropped (TUF signs SHA-256)
		row(w, "SHA-512:", r.SHA512)
	}
	row(w, "Hardware:", strings.Join(r.Hardware, ", "))
	if len(r.AllowDowngradeFrom) > 0 {
		row(w, "Downgrade from:", strings.Join(r.AllowDowngradeFrom, ", "))
	}
	if r.Notes != "" {
		row(w, "Notes:", r.Notes)
	}
	if r.SBOM != nil {
		row(w, "SBOM:", fmt.Sprintf("%s (%s, %s)", r.SBOM.Path, r.SBOM.Format, report.Bytes(r.SBOM.Length)))
		row(w, "SBOM SHA-256:", r.SBOM.SHA256)
	}
	if r.VEX != nil {
		row(w, "VEX:", fmt.Sprintf("%s (%s)", r.VEX.Path, report.Bytes(r.VEX.Length)))
		row(w, "VEX SHA-256:", r.VEX.SHA256)
	}
	if r.Role != "" && r.Role != signer.RoleTargets {
		row(w, "Signed by role:", r.Role+" (delegated)")
		row(w, r.Role+" version:", r.TargetsVersion)
	} else {
		row(w, "Targets version:", r.TargetsVersion)
	}
	row(w, "Pushed:", report.Time(&r.CreatedAt)+" by "+r.CreatedBy)
	row(w, "Published:", report.Time(r.PublishedAt))
	if s := r.Signing; s != nil {
		row(w, "Pending:", fmt.Sprintf("%s v%d needs %d of its %d keys; %d more signature(s) needed", s.Role, s.Version, s.Threshold, len(s.Keys), s.Needed))
		for _, sg := range s.Signatures {
			row(w, "  signed:", fmt.Sprintf("%s by %s at %s", sg.KeyID, sg.SignedBy, report.Time(&sg.SignedAt)))
		}
		for _, id := range s.ServerKeys {
			row(w, "  signed:", id+" by the server (online targets key)")
		}
		for _, id := range s.Keys {
			if !signedBy(s, id) {
				row(w, "  may sign:", id)
			}
		}
		row(w, "Next:", fmt.Sprintf("tufota release sign %s@%s --key URI", r.Name, r.Version))
	}
	for _, d := range r.Deltas {
		what := d.State
		switch {
		case d.State == "published" && d.FullLength > 0:
			what = fmt.Sprintf("%s, %s (%.1f %% of the full image), %s", d.State, report.Bytes(d.Length), 100*float64(d.Length)/float64(d.FullLength), d.TargetPath)
		case d.Message != "":
			what += ": " + d.Message
		}
		row(w, "Delta from "+d.BaseVersion+":", what)
	}
}

func signedBy(s *api.SigningStatus, keyID string) bool {
	for _, sg := range s.Signatures {
		if sg.KeyID == keyID {
			return true
		}
	}
	return slices.Contains(s.ServerKeys, keyID)
}

// progress prints "label: 42% (1.2 MiB of 3.0 MiB)" as bytes are read.
type progress struct {
	r       io.Reader
	w       io.Writer
	label   string
	total   int64
	read    int64
	lastPct int
}

func (p *progress) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.read += int64(n)
	if pct := int(p.read * 100 / p.total); pct != p.lastPct {
		p.lastPct = pct
		fmt.Fprintf(p.w, "\r%s: %3d%% (%s of %s)", p.label, pct, report.Bytes(p.read), report.Bytes(p.total))
	}
	return n, err
}

func (p *progress) done() { fmt.Fprintln(p.w) }
