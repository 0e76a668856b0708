package main

import (
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/spf13/cobra"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/signer"
)

// delegationCommand is `tufota delegation`: delegated targets roles, one
// per product line, so that a product team signs only its own firmware.
func (a *app) delegationCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "delegation",
		Short: "Delegate a product line's releases to its own signing keys",
	}
	cmd.AddCommand(a.delegationAddCommand(), a.delegationListCommand())
	return cmd
}

func (a *app) delegationAddCommand() *cobra.Command {
	var paths, keys []string
	var threshold int
	cmd := &cobra.Command{
		Use:   "add NAME --paths 'NAME/*/*' --key URI|PUBKEYFILE [--key ...] [--threshold N]",
		Short: "Delegate target paths to a new role signed by the given keys (they sign with tufota release sign)",
		Args:  exactArgs(1, "NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			req := signer.DelegationRequest{Name: args[0], Paths: paths, Threshold: threshold}
			for _, ref := range keys {
				k, _, err := a.publicKeyOf(ctx, ref)
				if err != nil {
					return fmt.Errorf("--key %s: %w", signer.RedactKeyURI(ref), err)
				}
				req.Keys = append(req.Keys, k)
			}
			if err := req.Validate(); err != nil {
				return err
			}
			c, err := a.api()
			if err != nil {
				return err
			}
			var d signer.Delegation
			if err := c.sendJSON(ctx, http.MethodPost, "/api/v1/delegations", req, &d); err != nil {
				return err
			}
			return a.print(d, func(w io.Writer) {
				printDelegation(w, d)
				fmt.Fprintf(w, "Releases under %s now wait for %d of these keys: tufota release sign NAME@VERSION --key URI\n", strings.Join(d.Paths, ", "), d.Threshold)
			})
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&paths, "paths", nil, "target path patterns NAME/VERSION/FILE with * and ? wildcards, e.g. 'pump/*/*' (repeatable, comma-separated)")
	f.StringArrayVar(&keys, "key", nil, "a key of the role: a key URI (file:, pkcs11:, awskms://...) or a PEM public key file; only the public key is sent (repeatable)")
	f.IntVar(&threshold, "threshold", 1, "signatures needed to publish a release of the role")
	_ = cmd.MarkFlagRequired("paths")
	_ = cmd.MarkFlagRequired("key")
	return cmd
}

func (a *app) delegationListCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List delegated roles in the order devices search them",
		Args:  exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.api()
			if err != nil {
				return err
			}
			var ds []signer.Delegation
			if err := c.getJSON(cmd.Context(), "/api/v1/delegations", &ds); err != nil {
				return err
			}
			return a.print(ds, func(w io.Writer) {
				row(w, "ROLE", "PATHS", "THRESHOLD", "VERSION", "TARGETS", "EXPIRES")
				for _, d := range ds {
					row(w, d.Name, strings.Join(d.Paths, ","), fmt.Sprintf("%d of %d", d.Threshold, len(d.KeyIDs)), d.Version, d.Targets, fmtTime(d.Expires))
				}
			})
		},
	}
}

func printDelegation(w io.Writer, d signer.Delegation) {
	row(w, "Role:", d.Name+" (delegated by targets v"+fmt.Sprint(d.TargetsVersion)+")")
	row(w, "Paths:", strings.Join(d.Paths, ", "))
	row(w, "Threshold:", fmt.Sprintf("%d of %d keys", d.Threshold, len(d.KeyIDs)))
	for _, id := range d.KeyIDs {
		row(w, "  key:", id)
	}
}

// delegationOf returns the delegation named role in verified top-level
// targets metadata.
func delegationOf(t *metadata.TargetsType, role string) (*metadata.DelegatedRole, error) {
	if t.Delegations != nil {
		for i := range t.Delegations.Roles {
			if t.Delegations.Roles[i].Name == role {
				return &t.Delegations.Roles[i], nil
			}
		}
	}
	return nil, tufota.Errorf(tufota.EInvalid, "the verified targets v%d delegates to no role %s; refusing to sign", t.Version, role)
}
