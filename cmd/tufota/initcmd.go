package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tufota/tufota/internal/datadir"
	"github.com/tufota/tufota/signer"
)

func (a *app) initCommand() *cobra.Command {
	var o datadir.InitOptions
	cmd := &cobra.Command{
		Use:   "init --dir DIR",
		Short: "Create a new repository: state database, blob store, keys and root metadata",
		Long: `init creates a repository in DIR: the state database, the blob store, the
keys of the TUF roles, the first root metadata (DIR/root.json is the trust anchor
to bake into devices) and the first admin API token, which is printed once and
never stored.

Each role's keys are given as key URIs (file:PATH, pkcs11:..., awskms://...,
gcpkms://..., azurekms://..., hashivault://...; see docs/key-ceremony.md): root
and targets may have several keys and a threshold. A role given no key gets a
new encrypted key file in DIR/keys (passphrase from TUFOTA_KEY_PASSPHRASE, or
asked), as does the audit log's checkpoint key. PKCS#11 URIs must read their PIN
from a file (pin-source=file:/abs/path); pin-value= is refused, so that no PIN is
ever written to DIR/tufota.json.`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			res, err := datadir.Init(cmd.Context(), o, a.openBlobs, func() ([]byte, error) { return a.passphrase(true) }, a.logger())
			if err != nil {
				return err
			}
			return a.print(res, func(w io.Writer) {
				fmt.Fprintf(w, "Initialised repository in %s\n", res.Dir)
				fmt.Fprintf(w, "Trust anchor for devices: %s\n", res.Root)
				for _, role := range []string{"root", "targets", "snapshot", "timestamp"} {
					fmt.Fprintf(w, "%s keys (threshold %d): %s\n", role, max(res.Thresholds[role], 1), strings.Join(res.KeyIDs[role], ", "))
				}
				if res.HashedBins > 0 {
					fmt.Fprintf(w, "Hashed bins: %d bin roles (%s-*), signed by the targets key\n", 1<<res.HashedBins, signer.BinsPrefix)
				}
				fmt.Fprintf(w, "Audit checkpoint key (for reviewers' 'tufota audit verify --key'): %s\n", res.AuditKey)
				fmt.Fprintf(w, "Admin token (shown once, store it now):\n%s\n", res.AdminToken)
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Dir, "dir", "", "data directory to create (required)")
	f.StringVar(&o.Storage, "storage", "file:blobs", "blob store: file:DIR (relative to --dir) or s3://BUCKET/PREFIX?endpoint=HOST:PORT&region=R&secure=true|false&sse=s3|kms:KEY")
	f.StringVar(&o.DB, "db", "sqlite:tufota.db", "state database: sqlite:PATH (relative to --dir) or postgres://...")
	f.StringVar(&o.KeyAlg, "key-type", "ecdsa-p256", "algorithm of generated keys: ecdsa-p256 or ed25519")
	f.DurationVar(&o.AdminExpires, "admin-token-expires", 90*24*time.Hour, "lifetime of the first admin token")
	f.StringArrayVar(&o.RootKeys, "root-key", nil, "key URI of a root key (repeat for several; default: a new file key)")
	f.IntVar(&o.RootThreshold, "root-threshold", 0, "signatures needed on root metadata (required with several --root-key)")
	f.StringArrayVar(&o.TargetsKeys, "targets-key", nil, "key URI of a targets (release signing) key (repeat for several; default: a new file key)")
	f.IntVar(&o.TargetsThreshold, "targets-threshold", 0, "signatures needed on targets metadata (required with several --targets-key)")
	f.StringVar(&o.SnapshotKey, "snapshot-key", "", "key URI of the snapshot key, used by the server (default: a new file key)")
	f.StringVar(&o.TimestampKey, "timestamp-key", "", "key URI of the timestamp key, used by the server (default: a new file key)")
	f.IntVar(&o.HashedBins, "hashed-bins", 0, fmt.Sprintf("for large catalogues: delegate every target to 2^BITS hashed-bin roles (TAP 15; 1 to %d, e.g. 10 for 100,000 targets), signed by the server's online targets key; needs a targets threshold of 1 and allows no product-line delegations (0: one flat targets metadata)", signer.MaxBinBits))
	_ = cmd.MarkFlagRequired("dir")
	return cmd
}
