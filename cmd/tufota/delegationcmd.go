package main

import (
	"context"
	"encoding/json"
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
			return a.sendDelegation(ctx, http.MethodPost, "/api/v1/delegations", req, func(w io.Writer, d signer.Delegation) {
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
			c, err := a.api()
			if err != nil {
				return err
			}
			var ds []signer.Delegation
			if err := c.getJSON(cmd.Context(), "/api/v1/delegations", &ds); err != nil {
				return err
			}
			return a.print(ds, func(w io.Writer) {
				row(w, "ROLE", "PATHS", "THRESHOLD", "VERSION", "TARGETS", "EXPIRES", "PENDING")
				for _, d := range ds {
					pending := "-"
					if d.Pending != "" && d.Signing != nil {
						pending = fmt.Sprintf("%s: %d more signature(s)", d.Pending, d.Signing.Needed)
					}
					row(w, d.Name, strings.Join(d.Paths, ","), fmt.Sprintf("%d of %d", d.Threshold, len(d.KeyIDs)), d.Version, d.Targets, fmtTime(d.Expires), pending)
				}
			})
		},
	}
}

// sendDelegation sends body to a delegation route and prints the
// delegation it answers (JSON with -o json, else with show).
func (a *app) sendDelegation(ctx context.Context, method, path string, body any, show func(io.Writer, signer.Delegation)) error {
	c, err := a.api()
	if err != nil {
		return err
	}
	var d signer.Delegation
	if err := c.sendJSON(ctx, method, path, body, &d); err != nil {
		return err
	}
	return a.print(d, func(w io.Writer) { show(w, d) })
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
			return a.sendDelegation(ctx, http.MethodPatch, "/api/v1/delegations/"+url.PathEscape(args[0]), ch, func(w io.Writer, d signer.Delegation) {
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
			return a.sendDelegation(cmd.Context(), http.MethodPost, "/api/v1/delegations/"+url.PathEscape(args[0])+"/remove", struct{}{}, func(w io.Writer, d signer.Delegation) {
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
			return a.sendDelegation(cmd.Context(), http.MethodPost, "/api/v1/delegations/"+url.PathEscape(args[0])+"/renew", struct{}{}, func(w io.Writer, d signer.Delegation) {
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
			// The role's own verified metadata too, if it has any (renewal,
			// re-signing, and to refuse removing a role with releases).
			top, cur, err := verifiedTargets(ctx, c, rootFile, name, probeFor(name))
			if err != nil {
				return err
			}
			w := a.stderr
			var dr, newRole *metadata.DelegatedRole
			existing, _ := delegationOf(&top.Signed, name)
			switch {
			case renewal:
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
			case existing != nil && !hasRole(&signed, name):
				if cur != nil {
					return tufota.Errorf(tufota.EInvalid, "the payload removes delegation %s, which has published releases (%s v%d); refusing to sign", name, name, cur.Signed.Version)
				}
				if err := checkDelegationRemovalPayload(&top.Signed, &signed, name); err != nil {
					return err
				}
				row(w, "Removal of role:", fmt.Sprintf("%s (%s; no releases)", name, strings.Join(existing.Paths, ", ")))
				row(w, "targets version:", fmt.Sprintf("%d (the published %d, verified against %s, without this delegation)", signed.Version, top.Signed.Version, rootFile))
			case existing != nil:
				if newRole, err = checkDelegationUpdatePayload(&top.Signed, &signed, name); err != nil {
					return err
				}
				added, revoked := keyDiff(existing.KeyIDs, newRole.KeyIDs)
				row(w, "Key change of role:", fmt.Sprintf("%s (%s)", name, strings.Join(existing.Paths, ", ")))
				row(w, "Threshold:", fmt.Sprintf("%d of %d keys -> %d of %d keys", existing.Threshold, len(existing.KeyIDs), newRole.Threshold, len(newRole.KeyIDs)))
				for _, id := range added {
					row(w, "  add key:", id)
				}
				for _, id := range revoked {
					row(w, "  revoke key:", id)
				}
				row(w, "targets version:", fmt.Sprintf("%d (the published %d, verified against %s, with only this change)", signed.Version, top.Signed.Version, rootFile))
				if p.Resign != nil {
					var rs metadata.TargetsType
					if err := decodeCanonical(p.Resign.Payload, &rs); err != nil || rs.Type != metadata.TARGETS || p.Resign.Role != name {
						return tufota.Errorf(tufota.EInvalid, "the re-signing payload is not role %s's metadata; refusing to sign", name)
					}
					if cur == nil {
						return tufota.Errorf(tufota.EInvalid, "the verified repository has no metadata of role %s to re-sign; refusing to sign", name)
					}
					if err := checkPayloadChanges(&cur.Signed, &rs); err != nil {
						return err
					}
					row(w, "Re-signing:", fmt.Sprintf("%s v%d (the published %d with the same %d release file(s)) by the role's new keys, expires %s", name, rs.Version, cur.Signed.Version, len(rs.Targets), rs.Expires.Format("2006-01-02")))
				}
			default:
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
			up, err := signPayload(sv, toSign)
			if err != nil {
				return err
			}
			if renewal && !slices.Contains(dr.KeyIDs, up.KeyID) {
				return tufota.Errorf(tufota.EInvalid, "key %s is not a key of delegated role %s (its keys: %s); nothing uploaded", up.KeyID, name, strings.Join(dr.KeyIDs, ", "))
			}
			if err := a.confirm(yes, fmt.Sprintf("Sign delegation %s (%s v%d) with key %s?", name, toSign.Role, toSign.Status.Version, up.KeyID)); err != nil {
				return err
			}
			var st signer.SigningStatus
			if err := c.sendJSON(ctx, http.MethodPost, base+"/signatures", up, &st); err != nil {
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

// checkDelegationUpdatePayload refuses a top-level targets payload that
// does anything but change the keys and threshold of the existing
// delegated role name in the verified current targets cur (same place in
// the search order, same paths), and returns the role as it would be.
func checkDelegationUpdatePayload(cur, next *metadata.TargetsType, name string) (*metadata.DelegatedRole, error) {
	old, err := delegationOf(cur, name)
	if err != nil {
		return nil, err
	}
	nr, err := delegationOf(next, name)
	if err != nil {
		return nil, tufota.Errorf(tufota.EInvalid, "the payload removes delegation %s; refusing to sign", name)
	}
	want := *old
	want.KeyIDs, want.Threshold = nr.KeyIDs, nr.Threshold
	if !sameJSON(want, *nr) {
		return nil, tufota.Errorf(tufota.EInvalid, "the payload changes more of delegation %s than its keys and threshold; refusing to sign", name)
	}
	// The published targets with only this role's keys and threshold
	// changed must be exactly the payload, version aside.
	raw, err := json.Marshal(cur)
	if err != nil {
		return nil, err
	}
	var expected metadata.TargetsType
	if err := json.Unmarshal(raw, &expected); err != nil {
		return nil, err
	}
	d := expected.Delegations
	for i := range d.Roles {
		if d.Roles[i].Name == name {
			d.Roles[i].KeyIDs, d.Roles[i].Threshold = nr.KeyIDs, nr.Threshold
		}
	}
	for _, id := range nr.KeyIDs {
		k, ok := next.Delegations.Keys[id]
		if !ok {
			return nil, tufota.Errorf(tufota.EInvalid, "the payload's delegation %s names key %s but lists no such key; refusing to sign", name, id)
		}
		d.Keys[id] = k
	}
	pruneUnusedKeys(d)
	if err := checkPayloadChanges(&expected, next); err != nil {
		return nil, err
	}
	return nr, nil
}

// keyDiff returns the key IDs in next but not in prev, and those in prev
// but not in next.
func keyDiff(prev, next []string) (added, removed []string) {
	for _, id := range next {
		if !slices.Contains(prev, id) {
			added = append(added, id)
		}
	}
	for _, id := range prev {
		if !slices.Contains(next, id) {
			removed = append(removed, id)
		}
	}
	return added, removed
}

func hasRole(t *metadata.TargetsType, name string) bool {
	_, err := delegationOf(t, name)
	return err == nil
}

// checkDelegationRemovalPayload refuses a top-level targets payload that
// does anything but take delegation name (and keys only it used) out of
// the verified current targets cur.
func checkDelegationRemovalPayload(cur, next *metadata.TargetsType, name string) error {
	raw, err := json.Marshal(cur)
	if err != nil {
		return err
	}
	var expected metadata.TargetsType
	if err := json.Unmarshal(raw, &expected); err != nil {
		return err
	}
	if d := expected.Delegations; d != nil {
		d.Roles = slices.DeleteFunc(d.Roles, func(r metadata.DelegatedRole) bool { return r.Name == name })
		pruneUnusedKeys(d)
		if len(d.Roles) == 0 {
			expected.Delegations = nil
		}
	}
	return checkPayloadChanges(&expected, next)
}

// pruneUnusedKeys removes from d the keys no role lists (as the server
// does after a key change or a removal).
func pruneUnusedKeys(d *metadata.Delegations) {
	for id := range d.Keys {
		if !slices.ContainsFunc(d.Roles, func(r metadata.DelegatedRole) bool { return slices.Contains(r.KeyIDs, id) }) {
			delete(d.Keys, id)
		}
	}
}
