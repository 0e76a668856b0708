package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"

	_ "github.com/sigstore/sigstore/pkg/signature/kms/hashivault"
	"github.com/spf13/cobra"

	"github.com/tufota/tufota/internal/datadir"
	"github.com/tufota/tufota/signer"
)

func (a *app) keyCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "key",
		Short: "Create, list and show signing keys (files, PKCS#11 tokens, KMS)",
		Long: `Signing keys are named by URIs:

  file:PATH                                  an encrypted key file
  pkcs11:token=T;object=K?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/tufota/pin
                                             a key pair in an HSM (PKCS#11)
  awskms://..., gcpkms://..., azurekms://..., hashivault://...
                                             a key in a cloud KMS or Vault

See docs/key-ceremony.md.`,
	}
	cmd.AddCommand(a.keyCreateCommand(), a.keyListCommand(), a.keyShowCommand())
	return cmd
}

func (a *app) keyCreateCommand() *cobra.Command {
	var uri, alg string
	cmd := &cobra.Command{
		Use:   "create --uri URI [--type ecdsa-p256]",
		Short: "Create a key: inside the HSM or KMS the URI names, or as an encrypted file",
		Args:  exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			info, err := a.createKey(cmd.Context(), uri, alg)
			if err != nil {
				return err
			}
			return a.print(info, func(w io.Writer) { printKeyInfo(w, info) })
		},
	}
	f := cmd.Flags()
	f.StringVar(&uri, "uri", "", "key URI (required)")
	f.StringVar(&alg, "type", signer.AlgECDSAP256, "key type: ecdsa-p256; ed25519 (files only); rsa-3072 (PKCS#11 only, signs RSASSA-PSS)")
	_ = cmd.MarkFlagRequired("uri")
	return cmd
}

func (a *app) createKey(ctx context.Context, uri, alg string) (datadir.KeyInfo, error) {
	scheme, err := signer.KeyURIScheme(uri)
	if err != nil {
		return datadir.KeyInfo{}, err
	}
	var opts []signer.Option
	if scheme == "file" {
		pass, err := a.passphrase(true)
		if err != nil {
			return datadir.KeyInfo{}, err
		}
		opts = append(opts, signer.WithPassphrase(func() ([]byte, error) { return pass, nil }))
	}
	kr := signer.NewKeyring(opts...)
	defer kr.Close()
	sv, err := kr.CreateKey(ctx, uri, alg)
	if err != nil {
		return datadir.KeyInfo{}, fmt.Errorf("key create: %w", err)
	}
	info, err := datadir.DescribeKey(sv)
	if err != nil {
		return datadir.KeyInfo{}, err
	}
	info.URI = signer.RedactKeyURI(uri)
	return info, nil
}

func (a *app) keyListCommand() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "list --dir DIR",
		Short: "List the key URIs of every role in DIR/tufota.json with their TUF key IDs",
		Long: `list prints each role's key URIs from DIR/tufota.json, the TUF key ID of each
(opening the key: file keys need the passphrase, PKCS#11 keys their PIN file) and
whether the newest root metadata lists that key for the role.`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			entries, err := a.listKeys(cmd.Context(), dir)
			if err != nil {
				return err
			}
			return a.print(entries, func(w io.Writer) {
				row(w, "ROLE", "KEYID", "IN ROOT", "URI")
				for _, e := range entries {
					id, in := e.KeyID, "no"
					if id == "" {
						id = "? (" + e.Error + ")"
					}
					if e.InRoot {
						in = "yes"
					}
					row(w, e.Role, id, in, e.URI)
				}
			})
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "repository data directory (required)")
	_ = cmd.MarkFlagRequired("dir")
	return cmd
}

func (a *app) listKeys(ctx context.Context, dir string) ([]datadir.KeyListEntry, error) {
	ck, err := datadir.OpenKeys(ctx, dir, a.openBlobs, a.passphraseOnce())
	if err != nil {
		return nil, err
	}
	if ck.RootErr != nil {
		fmt.Fprintf(a.stderr, "warning: cannot read root metadata: %v\n", ck.RootErr)
	}
	return ck.Entries, nil
}

func (a *app) keyShowCommand() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "show URI|KEYID [--dir DIR]",
		Short: "Show a key's public key, TUF key ID and the roles that use it",
		Long: `show opens the key URI (or finds the key ID in DIR's root metadata) and prints
its public key (PEM), its TUF key ID, and, with --dir, the roles that list it in
DIR/tufota.json and in the newest root metadata.`,
		Args: exactArgs(1, "one key URI or key ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			info, err := datadir.ShowKey(cmd.Context(), args[0], dir, a.openBlobs, a.passphraseOnce())
			if err != nil {
				return err
			}
			return a.print(info, func(w io.Writer) { printKeyInfo(w, info) })
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "repository data directory (to show which roles use the key)")
	return cmd
}

// passphraseOnce returns a function that asks for the key passphrase the
// first time it is called (only if a file key needs it) and remembers it.
func (a *app) passphraseOnce() func() ([]byte, error) {
	var once sync.Once
	var pass []byte
	var err error
	return func() ([]byte, error) {
		once.Do(func() { pass, err = a.passphrase(false) })
		return pass, err
	}
}

func printKeyInfo(w io.Writer, info datadir.KeyInfo) {
	if info.URI != "" {
		fmt.Fprintf(w, "URI:\t%s\n", info.URI)
	}
	fmt.Fprintf(w, "Key ID:\t%s\n", info.KeyID)
	fmt.Fprintf(w, "Type:\t%s (%s)\n", info.KeyType, info.Scheme)
	if info.ConfigRoles != nil || info.RootRoles != nil || info.RootVersion != 0 {
		fmt.Fprintf(w, "Roles in tufota.json:\t%s\n", orNone(info.ConfigRoles))
		fmt.Fprintf(w, "Roles in root v%d:\t%s\n", info.RootVersion, orNone(info.RootRoles))
	}
	fmt.Fprintf(w, "%s", info.PublicKey)
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}
