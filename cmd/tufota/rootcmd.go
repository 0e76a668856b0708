package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/spf13/cobra"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/api"
	"github.com/tufota/tufota/apiclient"
	"github.com/tufota/tufota/internal/report"
	"github.com/tufota/tufota/signer"
)

// trustRootCommand is `tufota root`: the root metadata ceremony.
func (a *app) trustRootCommand() *cobra.Command {
	return group("root", "Show, change and sign the TUF root metadata (key rotation, revocation, thresholds)", a.rootShowCommand(), a.rootUpdateCommand(), a.rootSignCommand(), a.rootCancelCommand())
}

func (a *app) rootShowCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "show",
		Short: "Show the current root (keys per role) and the pending change with its signatures",
		Args:  exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return printCall(a, cmd, func(ctx context.Context, c *apiclient.Client) (api.RootInfo, error) { return c.Root(ctx) }, func(w io.Writer, info api.RootInfo) {
				row(w, "Root version:", info.Current.Version)
				row(w, "Expires:", report.Time(&info.Current.Expires))
				printRoles(w, info.Current.Roles)
				if info.Pending == nil {
					row(w, "Pending:", "none")
					return
				}
				printRootPayload(w, *info.Pending)
			})
		},
	}
}

func printRoles(w io.Writer, roles []api.RootRole) {
	for _, r := range roles {
		row(w, "  "+r.Role+":", fmt.Sprintf("%d of %d: %s", r.Threshold, len(r.Keys), strings.Join(r.Keys, ", ")))
	}
}

func printRootPayload(w io.Writer, p api.SigningPayload) {
	st := p.Status
	row(w, "Pending root:", fmt.Sprintf("v%d (replaces v%d), proposed by %s", st.Version, st.BaseVersion, st.CreatedBy))
	row(w, "Payload SHA-256:", p.PayloadSHA256)
	if p.Root != nil {
		row(w, "Expires:", report.Time(&p.Root.Expires))
		for _, ch := range p.Root.Changes {
			row(w, "  change:", ch)
		}
	}
	for _, s := range st.Signatures {
		row(w, "  signed:", fmt.Sprintf("%s by %s (%s)", s.KeyID, s.SignedBy, strings.Join(s.Roles, ", ")))
	}
	row(w, "Still needed:", fmt.Sprintf("%d of the old root keys (threshold %d), %d of the new root keys (threshold %d)", st.OldNeeded, st.OldThreshold, st.Needed, st.Threshold))
	if p.Targets != nil {
		row(w, "Targets re-sign:", fmt.Sprintf("v%d needs %d more targets signature(s) (threshold %d)", p.Targets.Status.Version, p.Targets.Status.Needed, p.Targets.Status.Threshold))
	}
}

func (a *app) rootUpdateCommand() *cobra.Command {
	var adds, revokes, thresholds, expires []string
	cmd := &cobra.Command{
		Use:   "update [--add-key ROLE=URI|PUBKEYFILE] [--revoke-key ROLE=KEYID] [--threshold ROLE=N] [--expires root=DURATION]",
		Short: "Propose a new root version; it is published when the old and new root thresholds have signed (tufota root sign)",
		Args:  exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			var ch signer.RootChange
			for _, s := range adds {
				role, ref, ok := strings.Cut(s, "=")
				if !ok || role == "" || ref == "" {
					return tufota.Errorf(tufota.EInvalid, "--add-key %q: want ROLE=URI or ROLE=PUBKEYFILE", s)
				}
				k, isURI, err := a.publicKeyOf(ctx, ref)
				if err != nil {
					return fmt.Errorf("--add-key %s: %w", s, err)
				}
				add := signer.RootKeyAdd{Role: role, Key: k}
				if role == signer.RoleSnapshot || role == signer.RoleTimestamp {
					if !isURI {
						return tufota.Errorf(tufota.EInvalid, "--add-key %s: an online role needs a key URI the server can open, not a public key file", s)
					}
					add.URI = ref
				}
				ch.AddKeys = append(ch.AddKeys, add)
			}
			for _, s := range revokes {
				role, id, ok := strings.Cut(s, "=")
				if !ok || role == "" || id == "" {
					return tufota.Errorf(tufota.EInvalid, "--revoke-key %q: want ROLE=KEYID", s)
				}
				ch.RevokeKeys = append(ch.RevokeKeys, signer.RootKeyRevoke{Role: role, KeyID: id})
			}
			for _, s := range thresholds {
				role, n, ok := strings.Cut(s, "=")
				var v int
				if _, err := fmt.Sscanf(n, "%d", &v); !ok || err != nil || fmt.Sprint(v) != n {
					return tufota.Errorf(tufota.EInvalid, "--threshold %q: want ROLE=N", s)
				}
				if ch.Thresholds == nil {
					ch.Thresholds = map[string]int{}
				}
				ch.Thresholds[role] = v
			}
			for _, s := range expires {
				role, d, ok := strings.Cut(s, "=")
				if !ok || role != signer.RoleRoot {
					return tufota.Errorf(tufota.EInvalid, "--expires %q: want root=DURATION (other roles follow the server's expiry policy)", s)
				}
				ch.Expires = d
			}
			wch, err := wire[api.RootChange](ch)
			if err != nil {
				return err
			}
			return printCall(a, cmd, func(ctx context.Context, c *apiclient.Client) (api.SigningPayload, error) {
				return c.UpdateRoot(ctx, wch)
			}, func(w io.Writer, p api.SigningPayload) {
				printRootPayload(w, p)
				fmt.Fprintln(w, "Root key holders now run: tufota root sign --key URI")
			})
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&adds, "add-key", nil, "ROLE=URI|PUBKEYFILE: add a key (online roles: a URI the server opens)")
	f.StringArrayVar(&revokes, "revoke-key", nil, "ROLE=KEYID: revoke a key from a role")
	f.StringArrayVar(&thresholds, "threshold", nil, "ROLE=N: set a role's threshold")
	f.StringArrayVar(&expires, "expires", nil, "root=DURATION: how long the new root is valid (e.g. 8760h)")
	return cmd
}

// publicKeyOf reads a PEM public key file, or opens a key URI, and
// returns its TUF key; isURI says which.
func (a *app) publicKeyOf(ctx context.Context, ref string) (*metadata.Key, bool, error) {
	if b, err := os.ReadFile(ref); err == nil && bytes.Contains(b, []byte("PUBLIC KEY")) {
		pub, err := cryptoutils.UnmarshalPEMToPublicKey(b)
		if err != nil {
			return nil, false, tufota.Errorf(tufota.EInvalid, "%s: %v", ref, err)
		}
		k, err := metadata.KeyFromPublicKey(pub)
		if err != nil {
			return nil, false, tufota.Errorf(tufota.EInvalid, "%s: %v", ref, err)
		}
		return k, false, nil
	}
	sv, err := a.openKey(ctx, ref)
	if err != nil {
		return nil, true, err
	}
	defer closeKey(sv)
	pub, err := sv.PublicKey()
	if err != nil {
		return nil, true, err
	}
	k, err := metadata.KeyFromPublicKey(pub)
	if err != nil {
		return nil, true, tufota.Errorf(tufota.EInvalid, "%s: %v", ref, err)
	}
	return k, true, nil
}

// closeKey releases what an opened key holds (a PKCS#11 key's session
// pool; the module is unloaded when its last key closes).
func closeKey(sv signature.SignerVerifier) {
	if c, ok := sv.(io.Closer); ok {
		_ = c.Close()
	}
}

func (a *app) openKey(ctx context.Context, uri string) (signature.SignerVerifier, error) {
	return signer.Open(ctx, uri, signer.WithPassphrase(func() ([]byte, error) { return a.passphrase(false) }))
}

// confirm asks "question [y/N]" on stdin unless yes.
func (a *app) confirm(yes bool, question string) error {
	if yes {
		return nil
	}
	fmt.Fprint(a.stderr, question+" [y/N] ")
	line, _ := bufio.NewReader(a.stdin).ReadString('\n')
	if ans := strings.ToLower(strings.TrimSpace(line)); ans != "y" && ans != "yes" {
		return tufota.Errorf(tufota.EInvalid, "not confirmed: nothing signed (pass --yes to skip the question)")
	}
	return nil
}

func (a *app) rootSignCommand() *cobra.Command {
	var keyURI string
	var yes bool
	cmd := &cobra.Command{
		Use:   "sign --key URI [--yes]",
		Short: "Sign the pending root (and the targets re-signing it carries) with your key",
		Args:  exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			c, err := a.api()
			if err != nil {
				return err
			}
			p, err := c.RootPending(ctx)
			if err != nil {
				return err
			}
			// Read what is signed from the payload itself.
			var signed metadata.RootType
			if err := signer.DecodeCanonical(p.Payload, &signed); err != nil || signed.Type != metadata.ROOT || signed.Version != p.Status.Version {
				return tufota.Errorf(tufota.EInvalid, "the pending payload is not root v%d metadata; refusing to sign", p.Status.Version)
			}
			sv, err := a.openKey(ctx, keyURI)
			if err != nil {
				return err
			}
			defer closeKey(sv)
			id, err := signer.KeyID(sv)
			if err != nil {
				return err
			}
			printRootPayload(a.stderr, p)
			var ups []signer.SignatureUpload
			if slices.Contains(p.Status.Keys, id) {
				up, err := signer.SignPayload(sv, p.Payload, p.PayloadSHA256)
				if err != nil {
					return err
				}
				ups = append(ups, up)
			}
			if p.Targets != nil && slices.Contains(p.Targets.Status.Keys, id) {
				up, err := signer.SignPayload(sv, p.Targets.Payload, p.Targets.PayloadSHA256)
				if err != nil {
					return err
				}
				ups = append(ups, up)
			}
			if len(ups) == 0 {
				return tufota.Errorf(tufota.EForbidden, "key %s is neither a root key of v%d or v%d nor a new targets key: nothing to sign", id, p.Status.BaseVersion, p.Status.Version)
			}
			if err := a.confirm(yes, fmt.Sprintf("Sign root v%d with key %s?", p.Status.Version, id)); err != nil {
				return err
			}
			var st api.SigningStatus
			for _, up := range ups {
				if st, err = c.SignRoot(ctx, up); err != nil {
					return err
				}
			}
			return a.print(st, func(w io.Writer) {
				if st.Published {
					fmt.Fprintf(w, "Root v%d published: old and new thresholds met.\n", st.Version)
					return
				}
				fmt.Fprintf(w, "Signed root v%d. Still needed: %d old root key(s), %d new root key(s), %d targets key(s).\n", st.Version, st.OldNeeded, st.Needed, st.TargetsNeeded)
			})
		},
	}
	cmd.Flags().StringVar(&keyURI, "key", "", "your key URI: file:PATH, pkcs11:..., awskms://... (required)")
	cmd.Flags().BoolVar(&yes, "yes", false, "sign without asking")
	_ = cmd.MarkFlagRequired("key")
	return cmd
}

func (a *app) rootCancelCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "cancel",
		Short: "Drop the pending root change and its signatures",
		Args:  exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.call(cmd, func(ctx context.Context, c *apiclient.Client) error { return c.CancelRoot(ctx) }, "Pending root change dropped.\n")
		},
	}
}

// releaseCancelCommand is `tufota release cancel NAME@VERSION`.
func (a *app) releaseCancelCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "cancel NAME@VERSION",
		Short: "Withdraw a pending release: its payload, the signatures gathered so far and its upload (published releases cannot be cancelled)",
		Args:  exactArgs(1, "NAME@VERSION"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.onRelease(cmd, "release cancel", args[0], (*apiclient.Client).CancelRelease, func(w io.Writer, rel api.Release) {
				fmt.Fprintf(w, "Pending release %s cancelled; nothing of it was published.\n", args[0])
			})
		},
	}
}

// releaseSignCommand is `tufota release sign NAME@VERSION --key URI`.
func (a *app) releaseSignCommand() *cobra.Command {
	var keyURI, rootFile string
	var yes bool
	cmd := &cobra.Command{
		Use:   "sign NAME@VERSION --key URI [--yes]",
		Short: "Sign a pending release's targets metadata with your key (HSM, KMS or file) and upload the signature",
		Args:  exactArgs(1, "NAME@VERSION"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			name, version, err := releaseRef("release sign", args[0])
			if err != nil {
				return err
			}
			c, err := a.api()
			if err != nil {
				return err
			}
			p, err := c.ReleaseSigning(ctx, name, version)
			if err != nil {
				return err
			}
			// Show what is signed, read from the payload itself.
			var signed metadata.TargetsType
			if err := signer.DecodeCanonical(p.Payload, &signed); err != nil || signed.Type != metadata.TARGETS || p.Release == nil {
				return tufota.Errorf(tufota.EInvalid, "the payload is not targets metadata for %s; refusing to sign", args[0])
			}
			tf, custom, err := signer.CheckReleasePayload(&signed, p.Release, name, version)
			if err != nil {
				return err
			}
			// Everything else the signature would cover must stay as the
			// repository's verified current state has it.
			if rootFile == "" {
				return tufota.Errorf(tufota.EInvalid, "release sign: --root FILE is required: the repository's trust anchor (root.json), to verify what else the payload would sign")
			}
			role := p.Role
			if role == "" {
				role = metadata.TARGETS
			}
			top, delegated, err := verifiedTargets(ctx, c, rootFile, role, func(*metadata.TargetsType) string { return p.Release.TargetPath })
			if err != nil {
				return err
			}
			chk, err := signer.CheckReleaseSigning(role, &signed, p.Release, name, version, tf, custom, top, delegated, rootFile, report.Bytes)
			w := a.stderr
			for _, l := range chk.Lines {
				row(w, l.Label, l.Text)
			}
			if err != nil {
				return err
			}
			dr := chk.Role
			row(w, "Signatures:", fmt.Sprintf("%d of %d so far", p.Status.Threshold-p.Status.Needed, p.Status.Threshold))
			sv, err := a.openKey(ctx, keyURI)
			if err != nil {
				return err
			}
			defer closeKey(sv)
			up, err := signer.SignPayload(sv, p.Payload, p.PayloadSHA256)
			if err != nil {
				return err
			}
			if dr != nil && !slices.Contains(dr.KeyIDs, up.KeyID) {
				return tufota.Errorf(tufota.EInvalid, "key %s is not a key of delegated role %s (its keys: %s); nothing uploaded", up.KeyID, role, strings.Join(dr.KeyIDs, ", "))
			}
			if err := a.confirm(yes, fmt.Sprintf("Sign %s (%s v%d) with key %s?", args[0], role, signed.Version, up.KeyID)); err != nil {
				return err
			}
			st, err := c.SignRelease(ctx, name, version, up)
			if err != nil {
				return err
			}
			return a.print(st, func(w io.Writer) {
				if st.Published {
					fmt.Fprintf(w, "%s published as %s v%d: threshold %d met.\n", args[0], role, st.Version, st.Threshold)
					return
				}
				fmt.Fprintf(w, "Signed %s. %d more signature(s) needed (threshold %d).\n", args[0], st.Needed, st.Threshold)
			})
		},
	}
	cmd.Flags().StringVar(&keyURI, "key", "", "your key URI, a key of the role that signs the release (targets or its delegated role): file:PATH, pkcs11:..., awskms://... (required)")
	cmd.Flags().BoolVar(&yes, "yes", false, "sign without asking")
	cmd.Flags().StringVar(&rootFile, "root", a.env["TUFOTA_ROOT"], "the repository's trust anchor root.json (env TUFOTA_ROOT): the payload is checked against the verified published targets")
	_ = cmd.MarkFlagRequired("key")
	return cmd
}
