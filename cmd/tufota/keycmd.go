package main

import (
	"context"
	"crypto"
	"encoding/hex"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	_ "github.com/sigstore/sigstore/pkg/signature/kms/hashivault"
	"github.com/spf13/cobra"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/internal/datadir"
	"github.com/tufota/tufota/signer"
)

// keyInfo is what key create and key show print.
type keyInfo struct {
	URI       string `json:"uri,omitempty"`
	KeyID     string `json:"keyid"`
	KeyType   string `json:"keytype"`
	Scheme    string `json:"scheme"`
	PublicKey string `json:"public_key"`
	// Roles that list the key: in DIR/tufota.json (Config) and in the
	// newest root metadata (Root, version RootVersion).
	ConfigRoles []string `json:"config_roles,omitempty"`
	RootRoles   []string `json:"root_roles,omitempty"`
	RootVersion int64    `json:"root_version,omitempty"`
}

// keyListEntry is one key URI of one role in DIR/tufota.json.
type keyListEntry struct {
	Role   string `json:"role"`
	URI    string `json:"uri"`
	KeyID  string `json:"keyid,omitempty"`
	InRoot bool   `json:"in_root"`
	Error  string `json:"error,omitempty"`
}

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

func (a *app) createKey(ctx context.Context, uri, alg string) (keyInfo, error) {
	scheme, err := signer.KeyURIScheme(uri)
	if err != nil {
		return keyInfo{}, err
	}
	var opts []signer.Option
	if scheme == "file" {
		pass, err := a.passphrase(true)
		if err != nil {
			return keyInfo{}, err
		}
		opts = append(opts, signer.WithPassphrase(func() ([]byte, error) { return pass, nil }))
	}
	kr := signer.NewKeyring(opts...)
	defer kr.Close()
	sv, err := kr.CreateKey(ctx, uri, alg)
	if err != nil {
		return keyInfo{}, fmt.Errorf("key create: %w", err)
	}
	info, err := describeKey(sv)
	if err != nil {
		return keyInfo{}, err
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

// configKeys are the opened keys of a repository's configuration.
type configKeys struct {
	cfg     datadir.Config
	entries []keyListEntry
	root    *metadata.Metadata[metadata.RootType] // nil when unreadable
	rootErr error
}

// openConfigKeys reads DIR/tufota.json and the newest root metadata and
// opens every configured key to learn its key ID. A key that cannot be
// opened is reported in its entry, not as an error.
func (a *app) openConfigKeys(ctx context.Context, dir string, pass func() ([]byte, error)) (*configKeys, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	cfg, err := datadir.Load(dir)
	if err != nil {
		return nil, err
	}
	ck := &configKeys{cfg: cfg}
	ck.root, ck.rootErr = a.currentRoot(ctx, dir, cfg)

	kr := signer.NewKeyring(signer.WithPassphrase(pass))
	defer kr.Close()
	add := func(role, uri string) {
		e := keyListEntry{Role: role, URI: signer.RedactKeyURI(uri)}
		sv, err := kr.Open(ctx, datadir.Resolve(dir, uri))
		if err == nil {
			e.KeyID, err = signer.KeyID(sv)
		}
		if err != nil {
			e.Error = err.Error()
		}
		if ck.root != nil && e.KeyID != "" {
			if r, ok := ck.root.Signed.Roles[role]; ok {
				for _, id := range r.KeyIDs {
					e.InRoot = e.InRoot || id == e.KeyID
				}
			}
		}
		ck.entries = append(ck.entries, e)
	}
	for _, u := range cfg.Keys.Root {
		add("root", u)
	}
	for _, u := range cfg.Keys.Targets {
		add("targets", u)
	}
	add("snapshot", cfg.Keys.Snapshot)
	add("timestamp", cfg.Keys.Timestamp)
	add("audit", cfg.Keys.Audit)
	return ck, nil
}

// currentRoot reads the newest root metadata from the repository's blobs.
func (a *app) currentRoot(ctx context.Context, dir string, cfg datadir.Config) (*metadata.Metadata[metadata.RootType], error) {
	blobs, err := a.openBlobs(ctx, dir, cfg.Storage, false)
	if err != nil {
		return nil, err
	}
	if c, ok := blobs.(io.Closer); ok {
		defer c.Close()
	}
	data, err := signer.NewRepository(blobs).Root(ctx)
	if err != nil {
		return nil, err
	}
	root, err := new(metadata.Metadata[metadata.RootType]).FromBytes(data)
	if err != nil {
		return nil, fmt.Errorf("parse root metadata: %w", err)
	}
	return root, nil
}

func (a *app) listKeys(ctx context.Context, dir string) ([]keyListEntry, error) {
	ck, err := a.openConfigKeys(ctx, dir, a.passphraseOnce())
	if err != nil {
		return nil, err
	}
	if ck.rootErr != nil {
		fmt.Fprintf(a.stderr, "warning: cannot read root metadata: %v\n", ck.rootErr)
	}
	return ck.entries, nil
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
			info, err := a.showKey(cmd.Context(), args[0], dir)
			if err != nil {
				return err
			}
			return a.print(info, func(w io.Writer) { printKeyInfo(w, info) })
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "repository data directory (to show which roles use the key)")
	return cmd
}

func (a *app) showKey(ctx context.Context, arg, dir string) (keyInfo, error) {
	var info keyInfo
	var ck *configKeys
	pass := a.passphraseOnce()
	if dir != "" {
		var err error
		if ck, err = a.openConfigKeys(ctx, dir, pass); err != nil {
			return info, err
		}
	}
	if _, uriErr := signer.KeyURIScheme(arg); uriErr == nil {
		kr := signer.NewKeyring(signer.WithPassphrase(pass))
		defer kr.Close()
		sv, err := kr.Open(ctx, arg)
		if err != nil {
			return info, fmt.Errorf("key show: %w", err)
		}
		if info, err = describeKey(sv); err != nil {
			return info, err
		}
		info.URI = signer.RedactKeyURI(arg)
	} else if isKeyID(arg) {
		if ck == nil {
			return info, tufota.Errorf(tufota.EInvalid, "key show %s: a key ID needs --dir to look it up", arg)
		}
		if ck.root == nil {
			return info, fmt.Errorf("key show %s: %w", arg, ck.rootErr)
		}
		k, ok := ck.root.Signed.Keys[arg]
		if !ok {
			return info, tufota.Errorf(tufota.ENotFound, "key show: the root metadata lists no key %s", arg)
		}
		pub, err := k.ToPublicKey()
		if err != nil {
			return info, fmt.Errorf("key show %s: %w", arg, err)
		}
		pem, err := cryptoutils.MarshalPublicKeyToPEM(pub)
		if err != nil {
			return info, err
		}
		info = keyInfo{KeyID: arg, KeyType: k.Type, Scheme: k.Scheme, PublicKey: string(pem)}
		for _, e := range ck.entries {
			if e.KeyID == arg {
				info.URI = e.URI
			}
		}
	} else {
		return info, tufota.Errorf(tufota.EInvalid, "key show: %q is neither a key URI (%v) nor a TUF key ID (64 hex digits)", signer.RedactKeyURI(arg), uriErr)
	}
	if ck != nil {
		for _, e := range ck.entries {
			if e.KeyID == info.KeyID {
				info.ConfigRoles = append(info.ConfigRoles, e.Role)
			}
		}
		if ck.root != nil {
			info.RootVersion = ck.root.Signed.Version
			for role, r := range ck.root.Signed.Roles {
				for _, id := range r.KeyIDs {
					if id == info.KeyID {
						info.RootRoles = append(info.RootRoles, role)
					}
				}
			}
			sort.Strings(info.RootRoles)
		}
	}
	return info, nil
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

func isKeyID(s string) bool {
	b, err := hex.DecodeString(s)
	return err == nil && len(b) == 32
}

// describeKey returns the public parts of sv.
func describeKey(sv signature.SignerVerifier) (keyInfo, error) {
	pub, err := sv.PublicKey()
	if err != nil {
		return keyInfo{}, fmt.Errorf("public key: %w", err)
	}
	k, err := metadata.KeyFromPublicKey(pub)
	if err != nil {
		return keyInfo{}, tufota.Errorf(tufota.EInvalid, "public key of type %T: %v", pub, err)
	}
	id, err := signer.KeyID(sv)
	if err != nil {
		return keyInfo{}, err
	}
	pem, err := cryptoutils.MarshalPublicKeyToPEM(crypto.PublicKey(pub))
	if err != nil {
		return keyInfo{}, err
	}
	return keyInfo{KeyID: id, KeyType: k.Type, Scheme: k.Scheme, PublicKey: string(pem)}, nil
}

func printKeyInfo(w io.Writer, info keyInfo) {
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
