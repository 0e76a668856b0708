package main

import (
	"context"
	"fmt"
	"os"

	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/config"
	"github.com/theupdateframework/go-tuf/v2/metadata/updater"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/apiclient"
)

// verifiedTargets returns the repository's current top-level targets
// metadata as go-tuf's updater verifies it from the trust anchor in
// rootFile (root chain, timestamp, snapshot, targets): what a signer
// compares a payload with, without trusting the server. For a delegated
// role it also returns the role's current metadata, found the way a device
// finds it (searching for the path probe returns, one the role covers), or
// nil if the verified snapshot names none yet.
func verifiedTargets(ctx context.Context, c *apiclient.Client, rootFile, role string, probe func(top *metadata.TargetsType) string) (top, delegated *metadata.Metadata[metadata.TargetsType], err error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	root, err := os.ReadFile(rootFile)
	if err != nil {
		return nil, nil, tufota.Errorf(tufota.EInvalid, "trust anchor: %v", err)
	}
	cfg, err := config.New(c.BaseURL()+"/tuf", root)
	if err != nil {
		return nil, nil, tufota.Errorf(tufota.EInvalid, "trust anchor %s: %v", rootFile, err)
	}
	dir, err := os.MkdirTemp("", "tufota-sign-*")
	if err != nil {
		return nil, nil, err
	}
	defer os.RemoveAll(dir)
	cfg.LocalMetadataDir, cfg.LocalTargetsDir = dir, dir
	if err := cfg.SetDefaultFetcherTransport(c.Transport()); err != nil {
		return nil, nil, err
	}
	up, err := updater.New(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("verify the published repository: %w", err)
	}
	if err := up.Refresh(); err != nil {
		return nil, nil, fmt.Errorf("verify the published repository against %s: %w", rootFile, err)
	}
	trusted := up.GetTrustedMetadataSet()
	top = trusted.Targets[metadata.TARGETS]
	if top == nil {
		return nil, nil, fmt.Errorf("verify the published repository: no targets metadata")
	}
	if role == metadata.TARGETS {
		return top, nil, nil
	}
	if _, named := trusted.Snapshot.Signed.Meta[role+".json"]; !named {
		return top, nil, nil // the role's first release
	}
	_, ferr := up.GetTargetInfo(probe(&top.Signed)) // loads the role's metadata
	if delegated = trusted.Targets[role]; delegated == nil {
		return nil, nil, fmt.Errorf("verify the published metadata of delegated role %s: %v", role, ferr)
	}
	return top, delegated, nil
}
