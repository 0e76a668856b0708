package main

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
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
	cmd.AddCommand(a.delegationAddCommand(), a.delegationListCommand(), a.delegationRenewCommand(), a.delegationSignCommand(), a.delegationCancelCommand())
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

func (a *app) delegationRenewCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "renew NAME",
		Short: "Propose the role's next metadata version (same releases, new expiry) for its key holders to sign",
		Args:  exactArgs(1, "NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.api()
			if err != nil {
				return err
			}
			var d signer.Delegation
			if err := c.sendJSON(cmd.Context(), http.MethodPost, "/api/v1/delegations/"+url.PathEscape(args[0])+"/renew", struct{}{}, &d); err != nil {
				return err
			}
			return a.print(d, func(w io.Writer) {
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
// pending delegation, or a key holder of the role signs its renewal.
func (a *app) delegationSignCommand() *cobra.Command {
	var keyURI, rootFile string
	var yes bool
	cmd := &cobra.Command{
		Use:   "sign NAME --key URI [--root root.json] [--yes]",
		Short: "Sign, with your targets key, the targets change that adds a pending delegation",
		Args:  exactArgs(1, "NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			name := args[0]
			c, err := a.api()
			if err != nil {
				return err
			}
			base := "/api/v1/delegations/" + url.PathEscape(name)
			var p signer.SigningPayload
			if err := c.getJSON(ctx, base+"/signing", &p); err != nil {
				return err
			}
			var signed metadata.TargetsType
			renewal := p.Role == name
			if err := decodeCanonical(p.Payload, &signed); err != nil || signed.Type != metadata.TARGETS || (p.Role != metadata.TARGETS && !renewal) {
				return tufota.Errorf(tufota.EInvalid, "the payload is neither top-level targets metadata nor role %s's; refusing to sign", name)
			}
			if rootFile == "" {
				return tufota.Errorf(tufota.EInvalid, "delegation sign: --root FILE is required: the repository's trust anchor (root.json), to verify what else the payload would sign")
			}
			top, cur, err := verifiedTargets(ctx, c, rootFile, p.Role, probeFor(name))
			if err != nil {
				return err
			}
			w := a.stderr
			var dr *metadata.DelegatedRole
			if renewal {
				if dr, err = delegationOf(&top.Signed, name); err != nil {
					return err
				}
				if cur == nil {
					return tufota.Errorf(tufota.EInvalid, "the verified repository has no metadata of role %s to renew; refusing to sign", name)
				}
				if err := checkPayloadChanges(&cur.Signed, &signed); err != nil {
					return err
				}
				row(w, "Renewal of role:", fmt.Sprintf("%s (delegated %s by targets v%d, threshold %d of %d)", name, strings.Join(dr.Paths, ", "), top.Signed.Version, dr.Threshold, len(dr.KeyIDs)))
				row(w, name+" version:", fmt.Sprintf("%d (the published %d, verified against %s, with the same %d release file(s)), expires %s (was %s)",
					signed.Version, cur.Signed.Version, rootFile, len(signed.Targets), signed.Expires.Format("2006-01-02"), cur.Signed.Expires.Format("2006-01-02")))
			} else {
				if dr, err = checkDelegationPayload(&top.Signed, &signed, name); err != nil {
					return err
				}
				row(w, "Delegation:", dr.Name)
				row(w, "Paths:", strings.Join(dr.Paths, ", "))
				row(w, "Threshold:", fmt.Sprintf("%d of %d keys", dr.Threshold, len(dr.KeyIDs)))
				for _, id := range dr.KeyIDs {
					row(w, "  key:", id)
				}
				row(w, "targets version:", fmt.Sprintf("%d (the published %d, verified against %s, plus this delegation), expires %s", signed.Version, top.Signed.Version, rootFile, signed.Expires.Format("2006-01-02")))
			}
			row(w, "Signatures:", fmt.Sprintf("%d of %d so far", p.Status.Threshold-p.Status.Needed, p.Status.Threshold))
			sv, err := a.openKey(ctx, keyURI)
			if err != nil {
				return err
			}
			up, err := signPayload(sv, p)
			if err != nil {
				return err
			}
			if renewal && !slices.Contains(dr.KeyIDs, up.KeyID) {
				return tufota.Errorf(tufota.EInvalid, "key %s is not a key of delegated role %s (its keys: %s); nothing uploaded", up.KeyID, name, strings.Join(dr.KeyIDs, ", "))
			}
			if err := a.confirm(yes, fmt.Sprintf("Sign delegation %s (%s v%d) with key %s?", name, p.Role, signed.Version, up.KeyID)); err != nil {
				return err
			}
			var st signer.SigningStatus
			if err := c.sendJSON(ctx, http.MethodPost, base+"/signatures", up, &st); err != nil {
				return err
			}
			return a.print(st, func(w io.Writer) {
				if st.Published {
					fmt.Fprintf(w, "Delegation %s published as %s v%d: threshold %d met.\n", name, p.Role, st.Version, st.Threshold)
					return
				}
				fmt.Fprintf(w, "Signed delegation %s. %d more signature(s) needed (threshold %d).\n", name, st.Needed, st.Threshold)
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
		Short: "Withdraw a delegation, or a renewal, that waits for signatures",
		Args:  exactArgs(1, "NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.api()
			if err != nil {
				return err
			}
			if err := c.do(cmd.Context(), http.MethodDelete, "/api/v1/delegations/"+url.PathEscape(args[0]), nil, "", nil); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "Pending change of delegation %s cancelled; nothing was published.\n", args[0])
			return nil
		},
	}
}

// checkDelegationPayload refuses a top-level targets payload that does
// anything but add the delegated role name, last, to the verified current
// targets cur (a compromised server could otherwise have a targets key
// holder sign another image or another role), and returns the new role.
func checkDelegationPayload(cur, next *metadata.TargetsType, name string) (*metadata.DelegatedRole, error) {
	if next.Delegations == nil || len(next.Delegations.Roles) == 0 || next.Delegations.Roles[len(next.Delegations.Roles)-1].Name != name {
		return nil, tufota.Errorf(tufota.EInvalid, "the payload does not add delegation %s as the last delegated role; refusing to sign", name)
	}
	if slices.ContainsFunc(next.Delegations.Roles[:len(next.Delegations.Roles)-1], func(r metadata.DelegatedRole) bool { return r.Name == name }) {
		return nil, tufota.Errorf(tufota.EInvalid, "the payload lists delegation %s twice; refusing to sign", name)
	}
	dr := next.Delegations.Roles[len(next.Delegations.Roles)-1]
	if !dr.Terminating || len(dr.PathHashPrefixes) > 0 || next.Delegations.SuccinctRoles != nil {
		return nil, tufota.Errorf(tufota.EInvalid, "the payload's delegation %s is not a terminating path delegation; refusing to sign", name)
	}
	for _, p := range dr.Paths {
		if err := signer.ValidateDelegationPath(p); err != nil {
			return nil, fmt.Errorf("the payload's delegation %s: %w; refusing to sign", name, err)
		}
	}
	// What remains once the new role (and keys only it uses) is taken out
	// must be exactly the published targets, version aside.
	stripped := *next
	d := *next.Delegations
	d.Roles = d.Roles[:len(d.Roles)-1]
	d.Keys = map[string]*metadata.Key{}
	for id, k := range next.Delegations.Keys {
		used := slices.ContainsFunc(d.Roles, func(r metadata.DelegatedRole) bool { return slices.Contains(r.KeyIDs, id) })
		if used || !slices.Contains(dr.KeyIDs, id) {
			d.Keys[id] = k
		}
	}
	for _, id := range dr.KeyIDs {
		if _, ok := next.Delegations.Keys[id]; !ok {
			return nil, tufota.Errorf(tufota.EInvalid, "the payload's delegation %s names key %s but lists no such key; refusing to sign", name, id)
		}
	}
	stripped.Delegations = &d
	if len(d.Roles) == 0 && len(d.Keys) == 0 && cur.Delegations == nil {
		stripped.Delegations = nil
	}
	if err := checkPayloadChanges(cur, &stripped); err != nil {
		return nil, err
	}
	return &dr, nil
}
