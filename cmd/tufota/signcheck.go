package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"reflect"
	"slices"
	"sort"
	"strings"

	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/config"
	"github.com/theupdateframework/go-tuf/v2/metadata/updater"

	"github.com/tufota/tufota"
)

// tokenTransport adds the API token to go-tuf's fetcher requests.
type tokenTransport struct {
	token string
	next  http.RoundTripper
}

func (t tokenTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+t.token)
	return t.next.RoundTrip(r)
}

// verifiedTargets returns the repository's current top-level targets
// metadata as go-tuf's updater verifies it from the trust anchor in
// rootFile (root chain, timestamp, snapshot, targets): what a signer
// compares a payload with, without trusting the server. For a delegated
// role it also returns the role's current metadata, found the way a device
// finds it (searching for the path probe returns, one the role covers), or
// nil if the verified snapshot names none yet.
func verifiedTargets(ctx context.Context, c *apiClient, rootFile, role string, probe func(top *metadata.TargetsType) string) (top, delegated *metadata.Metadata[metadata.TargetsType], err error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	root, err := os.ReadFile(rootFile)
	if err != nil {
		return nil, nil, tufota.Errorf(tufota.EInvalid, "trust anchor: %v", err)
	}
	cfg, err := config.New(c.base+"/tuf", root)
	if err != nil {
		return nil, nil, tufota.Errorf(tufota.EInvalid, "trust anchor %s: %v", rootFile, err)
	}
	dir, err := os.MkdirTemp("", "tufota-sign-*")
	if err != nil {
		return nil, nil, err
	}
	defer os.RemoveAll(dir)
	cfg.LocalMetadataDir, cfg.LocalTargetsDir = dir, dir
	next := c.http.Transport
	if next == nil {
		next = http.DefaultTransport
	}
	if err := cfg.SetDefaultFetcherTransport(tokenTransport{token: c.token, next: next}); err != nil {
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

// checkDelegatedPaths refuses a payload of role that would sign paths the
// verified top-level targets top does not give to role: each new path's
// first delegated role (the one devices consult) must be role, or, for the
// top-level targets role, there must be none.
func checkDelegatedPaths(top *metadata.TargetsType, role string, paths []string) error {
	for _, p := range paths {
		first := ""
		if top.Delegations != nil {
			if rs := top.Delegations.GetRolesForTarget(p); len(rs) > 0 {
				first = rs[0].Name
			}
		}
		switch {
		case role == metadata.TARGETS && first != "":
			return tufota.Errorf(tufota.EInvalid, "%s is delegated to role %s: the top-level targets keys must not sign it; refusing to sign", p, first)
		case role != metadata.TARGETS && first != role:
			return tufota.Errorf(tufota.EInvalid, "the verified targets v%d does not delegate %s to role %s; refusing to sign", top.Version, p, role)
		}
	}
	return nil
}

// checkPayloadChanges refuses a targets payload that does anything but add
// the files in allowed to the verified current targets metadata: every
// published target must stay byte-for-byte the same (length, hashes,
// custom), nothing else may be added or removed, delegations must not
// change, and the version must be the next one. It is what stops a
// compromised server from slipping another image into a release signature.
func checkPayloadChanges(cur, next *metadata.TargetsType, allowed ...string) error {
	if next.Version != cur.Version+1 {
		return tufota.Errorf(tufota.EConflict, "the payload is targets v%d but the published repository is at v%d (want v%d): fetch it again", next.Version, cur.Version, cur.Version+1)
	}
	var problems []string
	for path, tf := range cur.Targets {
		nf, ok := next.Targets[path]
		if !ok {
			problems = append(problems, "removes "+path)
			continue
		}
		if !sameJSON(tf, nf) {
			problems = append(problems, "changes "+path)
		}
	}
	for path := range next.Targets {
		if _, ok := cur.Targets[path]; !ok && !slices.Contains(allowed, path) {
			problems = append(problems, "adds "+path)
		}
	}
	if !sameJSON(cur.Delegations, next.Delegations) {
		problems = append(problems, "changes the delegations")
	}
	if len(problems) > 0 {
		sort.Strings(problems)
		return tufota.Errorf(tufota.EInvalid, "the payload does more than add this release: it %v; refusing to sign", problems)
	}
	return nil
}

// sameJSON reports whether a and b encode to the same JSON value (member
// order aside: canonical JSON sorts keys, a stored custom object may not).
func sameJSON(a, b any) bool {
	var va, vb any
	for _, p := range []struct {
		in  any
		out *any
	}{{a, &va}, {b, &vb}} {
		raw, err := json.Marshal(p.in)
		if err != nil {
			return false
		}
		if err := json.Unmarshal(raw, p.out); err != nil {
			return false
		}
	}
	return reflect.DeepEqual(va, vb)
}

// probeFor returns a target path that role's first pattern covers in top
// (wildcards replaced by "x"), to make a TUF client load the role.
func probeFor(role string) func(top *metadata.TargetsType) string {
	return func(top *metadata.TargetsType) string {
		if dr, err := delegationOf(top, role); err == nil && len(dr.Paths) > 0 {
			return strings.NewReplacer("*", "x", "?", "x").Replace(dr.Paths[0])
		}
		return role + "/x/x"
	}
}
