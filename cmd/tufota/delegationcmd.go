package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/api"
	"github.com/tufota/tufota/apiclient"
	"github.com/tufota/tufota/internal/report"
	"github.com/tufota/tufota/signer"
)

// delegationCommand is `tufota delegation`: delegated targets roles, one
// per product line, so that a product team signs only its own firmware.
func (a *app) delegationCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "delegation",
		Short: "Delegate a product line's releases to its own signing keys",
	}
	cmd.AddCommand(a.delegationAddCommand(), a.delegationListCommand(), a.delegationUpdateCommand(), a.delegationRemoveCommand(), a.delegationRenewCommand(), a.delegationSignCommand(), a.delegationCancelCommand())
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
			wreq, err := wire[api.DelegationRequest](req)
			if err != nil {
				return err
			}
			return printCall(a, cmd, func(ctx context.Context, c *apiclient.Client) (api.Delegation, error) {
				return c.AddDelegation(ctx, wreq)
			}, func(w io.Writer, d api.Delegation) {
				printDelegation(w, d)
				if s := d.Signing; s != nil {
					fmt.Fprintf(w, "Pending: targets v%d adds the delegation and needs %d of its %d targets keys; %d more signature(s) needed.\n", s.Version, s.Threshold, len(s.Keys), s.Needed)
					fmt.Fprintf(w, "Targets key holders now run: tufota delegation sign %s --key URI\n", d.Name)
					return
				}
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
		Short: "List delegated roles in the order devices search them, and changes waiting for signatures",
		Args:  exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return printCall(a, cmd, func(ctx context.Context, c *apiclient.Client) ([]api.Delegation, error) {
				return c.ListDelegations(ctx)
			}, func(w io.Writer, ds []api.Delegation) {
				row(w, "ROLE", "PATHS", "THRESHOLD", "VERSION", "TARGETS", "EXPIRES", "PENDING")
				for _, d := range ds {
					pending := "-"
					if d.Pending != "" && d.Signing != nil {
						pending = fmt.Sprintf("%s: %d more signature(s)", d.Pending, d.Signing.Needed)
					}
					row(w, d.Name, strings.Join(d.Paths, ","), fmt.Sprintf("%d of %d", d.Threshold, len(d.KeyIDs)), d.Version, d.Targets, report.Time(d.Expires), pending)
				}
			})
		},
	}
}

func printDelegation(w io.Writer, d api.Delegation) {
	row(w, "Role:", d.Name+" (delegated by targets v"+fmt.Sprint(d.TargetsVersion)+")")
	row(w, "Paths:", strings.Join(d.Paths, ", "))
	row(w, "Threshold:", fmt.Sprintf("%d of %d keys", d.Threshold, len(d.KeyIDs)))
	for _, id := range d.KeyIDs {
		row(w, "  key:", id)
	}
}

func (a *app) delegationUpdateCommand() *cobra.Command {
	var adds, revokes []string
	var threshold int
	cmd := &cobra.Command{
		Use:   "update NAME [--add-key URI|PUBKEYFILE]... [--revoke-key KEYID]... [--threshold N]",
		Short: "Add or revoke a delegated role's keys, or change its threshold",
		Args:  exactArgs(1, "NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			ch := signer.DelegationChange{RevokeKeys: revokes, Threshold: threshold}
			for _, ref := range adds {
				k, _, err := a.publicKeyOf(ctx, ref)
				if err != nil {
					return fmt.Errorf("--add-key %s: %w", signer.RedactKeyURI(ref), err)
				}
				ch.AddKeys = append(ch.AddKeys, k)
			}
			wch, err := wire[api.DelegationChange](ch)
			if err != nil {
				return err
			}
			return printCall(a, cmd, func(ctx context.Context, c *apiclient.Client) (api.Delegation, error) {
				return c.UpdateDelegation(ctx, args[0], wch)
			}, func(w io.Writer, d api.Delegation) {
				printDelegation(w, d)
				if d.Signing == nil {
					fmt.Fprintf(w, "Published as targets v%d.\n", d.TargetsVersion)
					return
				}
				fmt.Fprintf(w, "Pending: targets v%d needs %d more targets signature(s).\n", d.Signing.Version, d.Signing.Needed)
				if d.Resign != nil {
					fmt.Fprintf(w, "The role's published metadata does not verify under the new keys: %s v%d must be re-signed by %d of them (%d more needed).\n", d.Name, d.Resign.Version, d.Resign.Threshold, d.Resign.Needed)
				}
				fmt.Fprintf(w, "Key holders now run: tufota delegation sign %s --key URI\n", d.Name)
			})
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&adds, "add-key", nil, "a key to add: a key URI or a PEM public key file (repeatable)")
	f.StringArrayVar(&revokes, "revoke-key", nil, "the TUF key ID of a key to revoke (repeatable)")
	f.IntVar(&threshold, "threshold", 0, "the new threshold (default: unchanged)")
	return cmd
}

func (a *app) delegationRemoveCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "remove NAME",
		Short: "Remove a delegation that has no releases (one made by mistake); its paths go back to the top-level targets role",
		Args:  exactArgs(1, "NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return printCall(a, cmd, func(ctx context.Context, c *apiclient.Client) (api.Delegation, error) {
				return c.RemoveDelegation(ctx, args[0])
			}, func(w io.Writer, d api.Delegation) {
				if d.Signing != nil {
					fmt.Fprintf(w, "Pending: targets v%d removes delegation %s and needs %d more targets signature(s): tufota delegation sign %s --key URI\n", d.TargetsVersion, d.Name, d.Signing.Needed, d.Name)
					return
				}
				fmt.Fprintf(w, "Delegation %s removed (targets v%d); %s are the top-level targets role's again.\n", d.Name, d.TargetsVersion, strings.Join(d.Paths, ", "))
			})
		},
	}
}

func (a *app) delegationRenewCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "renew NAME",
		Short: "Propose the role's next metadata version (same releases, new expiry) for its key holders to sign",
		Args:  exactArgs(1, "NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return printCall(a, cmd, func(ctx context.Context, c *apiclient.Client) (api.Delegation, error) {
				return c.RenewDelegation(ctx, args[0])
			}, func(w io.Writer, d api.Delegation) {
				printDelegation(w, d)
				if s := d.Signing; s != nil {
					fmt.Fprintf(w, "Pending: %s v%d renews the role's metadata and needs %d of its %d keys.\n", s.Role, s.Version, s.Threshold, len(s.Keys))
					fmt.Fprintf(w, "The role's key holders now run: tufota delegation sign %s --key URI\n", d.Name)
				}
			})
		},
	}
}

// delegationSignCommand is `tufota delegation sign NAME --key URI`: a
// targets key holder signs the top-level targets change that adds a
// pending delegation or changes its keys, or a key holder of the role
// signs its renewal or the re-signing a key change carries.
func (a *app) delegationSignCommand() *cobra.Command {
	var keyURI, rootFile string
	var yes bool
	cmd := &cobra.Command{
		Use:   "sign NAME --key URI [--root root.json] [--yes]",
		Short: "Sign a pending delegation change: with a targets key (add, key change) or a key of the role (renewal, re-signing)",
		Args:  exactArgs(1, "NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			name := args[0]
			c, err := a.api()
			if err != nil {
				return err
			}
			p, err := c.DelegationSigning(ctx, name)
			if err != nil {
				return err
			}
			var signed metadata.TargetsType
			renewal := p.Role == name
			if err := signer.DecodeCanonical(p.Payload, &signed); err != nil || signed.Type != metadata.TARGETS || (p.Role != metadata.TARGETS && !renewal) {
				return tufota.Errorf(tufota.EInvalid, "the payload is neither top-level targets metadata nor role %s's; refusing to sign", name)
			}
			if rootFile == "" {
				return tufota.Errorf(tufota.EInvalid, "delegation sign: --root FILE is required: the repository's trust anchor (root.json), to verify what else the payload would sign")
			}
			// The role's own verified metadata too, if it has any (renewal,
			// re-signing, and to refuse removing a role with releases).
			top, cur, err := verifiedTargets(ctx, c, rootFile, name, signer.ProbeFor(name))
			if err != nil {
				return err
			}
			w := a.stderr
			chk, err := signer.CheckDelegationSigning(name, &signed, renewal, p.Resign, top, cur, rootFile)
			for _, l := range chk.Lines {
				row(w, l.Label, l.Text)
			}
			if err != nil {
				return err
			}
			dr, newRole := chk.Role, chk.NewRole
			row(w, "Signatures:", fmt.Sprintf("%d of %d so far", p.Status.Threshold-p.Status.Needed, p.Status.Threshold))
			sv, err := a.openKey(ctx, keyURI)
			if err != nil {
				return err
			}
			defer closeKey(sv)
			id, err := signer.KeyID(sv)
			if err != nil {
				return err
			}
			toSign := p
			if newRole != nil && p.Resign != nil && slices.Contains(newRole.KeyIDs, id) {
				// A key of the role as the change makes it: it signs the
				// re-signing of the role's metadata.
				toSign, dr, renewal = *p.Resign, newRole, true
			}
			up, err := signer.SignPayload(sv, toSign.Payload, toSign.PayloadSHA256)
			if err != nil {
				return err
			}
			if renewal && !slices.Contains(dr.KeyIDs, up.KeyID) {
				return tufota.Errorf(tufota.EInvalid, "key %s is not a key of delegated role %s (its keys: %s); nothing uploaded", up.KeyID, name, strings.Join(dr.KeyIDs, ", "))
			}
			if err := a.confirm(yes, fmt.Sprintf("Sign delegation %s (%s v%d) with key %s?", name, toSign.Role, toSign.Status.Version, up.KeyID)); err != nil {
				return err
			}
			st, err := c.SignDelegation(ctx, name, up)
			if err != nil {
				return err
			}
			return a.print(st, func(w io.Writer) {
				if st.Published {
					fmt.Fprintf(w, "Delegation %s published as %s v%d: threshold %d met.\n", name, toSign.Role, st.Version, st.Threshold)
					return
				}
				fmt.Fprintf(w, "Signed delegation %s (%s v%d). %d more signature(s) needed (threshold %d).\n", name, toSign.Role, st.Version, st.Needed, st.Threshold)
				if p.Resign != nil && st.Needed == 0 {
					fmt.Fprintf(w, "The change publishes once the targets change and the role's re-signing both have their signatures.\n")
				}
			})
		},
	}
	cmd.Flags().StringVar(&keyURI, "key", "", "your key URI (a targets key to add a delegation, a key of the role to renew it): file:PATH, pkcs11:..., awskms://... (required)")
	cmd.Flags().BoolVar(&yes, "yes", false, "sign without asking")
	cmd.Flags().StringVar(&rootFile, "root", a.env["TUFOTA_ROOT"], "the repository's trust anchor root.json (env TUFOTA_ROOT): the payload is checked against the verified published targets")
	_ = cmd.MarkFlagRequired("key")
	return cmd
}

func (a *app) delegationCancelCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "cancel NAME",
		Short: "Withdraw a pending delegation change (an add, a key change or a renewal)",
		Args:  exactArgs(1, "NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.call(cmd, func(ctx context.Context, c *apiclient.Client) error { return c.CancelDelegation(ctx, args[0]) },
				fmt.Sprintf("Pending change of delegation %s cancelled; nothing was published.\n", args[0]))
		},
	}
}
