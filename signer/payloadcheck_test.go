package signer_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	sigsig "github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/api"
	"github.com/tufota/tufota/signer"
)

// TestCheckPayloadChanges: a release signer signs only "the published
// targets plus this release"; anything else a (compromised) server put in
// the payload is named and refused.
func TestCheckPayloadChanges(t *testing.T) {
	file := func(path string, b byte) *metadata.TargetFiles {
		tf, err := metadata.TargetFile().FromBytes(path, []byte{b, b, b})
		if err != nil {
			t.Fatal(err)
		}
		return tf
	}
	targets := func(version int64, files ...*metadata.TargetFiles) *metadata.TargetsType {
		tt := metadata.Targets(time.Now().Add(time.Hour)).Signed
		tt.Version = version
		for _, f := range files {
			tt.Targets[f.Path] = f
		}
		return &tt
	}
	old := file("pump-fw/1.0.0/pump.bin", 1)
	fw := file("pump-fw/2.0.0/pump.bin", 2)
	sbom := file("pump-fw/2.0.0/sbom.cdx.json", 3)
	cur := targets(4, old)
	withCustom := *old
	custom := json.RawMessage(`{"tufota":{"name":"pump-fw","version":"1.0.0","hardware":["pump-a","monitor-x"]}}`)
	withCustom.Custom = &custom
	reordered := *old
	sameCustom := json.RawMessage(`{"tufota":{"version":"1.0.0","name":"pump-fw"}}`)
	origCustom := json.RawMessage(`{"tufota":{"name":"pump-fw","version":"1.0.0"}}`)
	oldWithCustom := *old
	oldWithCustom.Custom, reordered.Custom = &origCustom, &sameCustom
	delegated := targets(5, old, fw)
	delegated.Delegations = &metadata.Delegations{Keys: map[string]*metadata.Key{}, Roles: []metadata.DelegatedRole{{Name: "evil", Paths: []string{"*"}, Threshold: 1}}}

	tests := []struct {
		name    string
		cur     *metadata.TargetsType // nil: cur
		next    *metadata.TargetsType
		allowed []string
		want    string // "" = accepted
		code    tufota.Code
	}{
		{"adds the release", nil, targets(5, old, fw), []string{fw.Path}, "", ""},
		{"re-encodes a published image's custom metadata in canonical order", targets(4, &oldWithCustom), targets(5, &reordered, fw), []string{fw.Path}, "", ""},
		{"adds the release and its SBOM", nil, targets(5, old, fw, sbom), []string{fw.Path, sbom.Path}, "", ""},
		{"adds an image that is not the release", nil, targets(5, old, fw, file("evil/9.9.9/x.bin", 9)), []string{fw.Path}, "adds evil/9.9.9/x.bin", tufota.EInvalid},
		{"removes a published image", nil, targets(5, fw), []string{fw.Path}, "removes pump-fw/1.0.0/pump.bin", tufota.EInvalid},
		{"swaps a published image's bytes", nil, targets(5, file(old.Path, 7), fw), []string{fw.Path}, "changes pump-fw/1.0.0/pump.bin", tufota.EInvalid},
		{"widens a published image's hardware", nil, targets(5, &withCustom, fw), []string{fw.Path}, "changes pump-fw/1.0.0/pump.bin", tufota.EInvalid},
		{"adds a delegation", nil, delegated, []string{fw.Path}, "changes the delegations", tufota.EInvalid},
		{"skips a version", nil, targets(6, old, fw), []string{fw.Path}, "is targets v6 but the published repository is at v4", tufota.EConflict},
		{"replays an old version", nil, targets(4, old, fw), []string{fw.Path}, "is targets v4", tufota.EConflict},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := cur
			if tt.cur != nil {
				base = tt.cur
			}
			err := signer.CheckPayloadChanges(base, tt.next, tt.allowed...)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var te *tufota.Error
			if err == nil || !strings.Contains(err.Error(), tt.want) || !errors.As(err, &te) || te.Code != tt.code {
				t.Fatalf("err = %v, want %s containing %q", err, tt.code, tt.want)
			}
		})
	}
}

// delegatedTargets returns targets metadata at version with the given
// delegated roles (name → paths), each with one new key.
func delegatedTargets(t *testing.T, version int64, roles ...[2]string) *metadata.TargetsType {
	t.Helper()
	tt := metadata.Targets(time.Now().Add(time.Hour)).Signed
	tt.Version = version
	if len(roles) == 0 {
		return &tt
	}
	tt.Delegations = &metadata.Delegations{Keys: map[string]*metadata.Key{}}
	for _, r := range roles {
		k := tufKeyForTest(t)
		id, _ := k.ID()
		tt.Delegations.Keys[id] = k
		tt.Delegations.Roles = append(tt.Delegations.Roles, metadata.DelegatedRole{Name: r[0], Paths: []string{r[1]}, KeyIDs: []string{id}, Threshold: 1, Terminating: true})
	}
	return &tt
}

func tufKeyForTest(t *testing.T) *metadata.Key {
	t.Helper()
	sv, _, err := sigsig.NewDefaultECDSASignerVerifier()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := sv.PublicKey()
	k, err := metadata.KeyFromPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestCheckDelegatedPaths: a signer signs a path only in the role that
// devices consult for it; a top-level targets key never signs a delegated
// path (devices would trust it before the delegation).
func TestCheckDelegatedPaths(t *testing.T) {
	top := delegatedTargets(t, 3, [2]string{"pump", "pump/*/*"}, [2]string{"all", "*/*/*"})
	for _, tc := range []struct {
		role, path, want string
	}{
		{"targets", "vent/1.0.0/fw.bin", "is delegated to role all"},
		{"targets", "pump/1.0.0/fw.bin", "is delegated to role pump"},
		{"pump", "pump/1.0.0/fw.bin", ""},
		{"all", "vent/1.0.0/fw.bin", ""},
		{"all", "pump/1.0.0/fw.bin", "does not delegate pump/1.0.0/fw.bin to role all"},
		{"pump", "vent/1.0.0/fw.bin", "does not delegate vent/1.0.0/fw.bin to role pump"},
		{"nosuch", "pump/1.0.0/fw.bin", "to role nosuch"},
	} {
		err := signer.CheckDelegatedPaths(top, tc.role, []string{tc.path})
		if tc.want == "" {
			if err != nil {
				t.Errorf("%s signing %s: refused: %v", tc.role, tc.path, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) || tufota.ErrorCode(err) != tufota.EInvalid {
			t.Errorf("%s signing %s: %v, want EInvalid %q", tc.role, tc.path, err, tc.want)
		}
	}
	if err := signer.CheckDelegatedPaths(delegatedTargets(t, 1), "targets", []string{"pump/1.0.0/fw.bin"}); err != nil {
		t.Errorf("no delegations: %v", err)
	}
}

// TestCheckDelegationPayload: a targets key holder signing a new
// delegation signs exactly "the published targets plus this role".
func TestCheckDelegationPayload(t *testing.T) {
	cur := delegatedTargets(t, 4, [2]string{"monitor", "monitor/*/*"})
	add := func(base *metadata.TargetsType, version int64, name, path string) *metadata.TargetsType {
		raw, _ := json.Marshal(base)
		var next metadata.TargetsType
		if err := json.Unmarshal(raw, &next); err != nil {
			t.Fatal(err)
		}
		next.Version = version
		if next.Delegations == nil {
			next.Delegations = &metadata.Delegations{Keys: map[string]*metadata.Key{}}
		}
		extra := delegatedTargets(t, 0, [2]string{name, path})
		for id, k := range extra.Delegations.Keys {
			next.Delegations.Keys[id] = k
		}
		next.Delegations.Roles = append(next.Delegations.Roles, extra.Delegations.Roles...)
		return &next
	}
	good := add(cur, 5, "pump", "pump/*/*")
	widened := add(cur, 5, "pump", "pump/*/*")
	widened.Delegations.Roles[0].Paths = []string{"*/*/*"}
	twice := add(good, 5, "pump", "pump/*/*")
	notLast := add(cur, 5, "pump", "pump/*/*")
	notLast.Delegations.Roles[0], notLast.Delegations.Roles[1] = notLast.Delegations.Roles[1], notLast.Delegations.Roles[0]
	notTerm := add(cur, 5, "pump", "pump/*/*")
	notTerm.Delegations.Roles[1].Terminating = false
	badPath := add(cur, 5, "pump", "pump/*")
	withImage := add(cur, 5, "pump", "pump/*/*")
	tf, _ := metadata.TargetFile().FromBytes("evil/1.0.0/x.bin", []byte("x"))
	withImage.Targets[tf.Path] = tf
	first := add(delegatedTargets(t, 1), 2, "pump", "pump/*/*")

	for _, tc := range []struct {
		name      string
		cur, next *metadata.TargetsType
		want      string
	}{
		{"adds the role", cur, good, ""},
		{"first delegation", delegatedTargets(t, 1), first, ""},
		{"widens another role", cur, widened, "changes the delegations"},
		{"adds the role twice", cur, twice, "twice"},
		{"not last", cur, notLast, "as the last delegated role"},
		{"not terminating", cur, notTerm, "not a terminating path delegation"},
		{"bad path", cur, badPath, "has 2 segment(s)"},
		{"smuggles an image", cur, withImage, "adds evil/1.0.0/x.bin"},
		{"other role", cur, add(cur, 5, "vent", "vent/*/*"), "does not add delegation pump"},
		{"skips a version", cur, add(cur, 6, "pump", "pump/*/*"), "is targets v6"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dr, err := signer.CheckDelegationPayload(tc.cur, tc.next, "pump")
			if tc.want == "" {
				if err != nil || dr.Name != "pump" {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("%v, want an error saying %q", err, tc.want)
			}
		})
	}
}

// TestCheckDelegationUpdatePayload: a targets key holder signing a key
// change of a delegation signs exactly "the published targets with that
// role's keys and threshold changed".
func TestCheckDelegationUpdatePayload(t *testing.T) {
	cur := delegatedTargets(t, 4, [2]string{"monitor", "monitor/*/*"}, [2]string{"pump", "pump/*/*"})
	change := func(mut func(next *metadata.TargetsType)) *metadata.TargetsType {
		raw, _ := json.Marshal(cur)
		var next metadata.TargetsType
		if err := json.Unmarshal(raw, &next); err != nil {
			t.Fatal(err)
		}
		next.Version = 5
		// pump: its key is replaced by a new one, threshold 1 → 1.
		nk := tufKeyForTest(t)
		id, _ := nk.ID()
		delete(next.Delegations.Keys, next.Delegations.Roles[1].KeyIDs[0])
		next.Delegations.Keys[id] = nk
		next.Delegations.Roles[1].KeyIDs = []string{id}
		if mut != nil {
			mut(&next)
		}
		return &next
	}
	for _, tc := range []struct {
		name string
		next *metadata.TargetsType
		want string
	}{
		{"rotates the key", change(nil), ""},
		{"widens the paths", change(func(n *metadata.TargetsType) { n.Delegations.Roles[1].Paths = []string{"*/*/*"} }), "more of delegation pump than its keys"},
		{"moves the role first", change(func(n *metadata.TargetsType) {
			n.Delegations.Roles[0], n.Delegations.Roles[1] = n.Delegations.Roles[1], n.Delegations.Roles[0]
		}), "changes the delegations"},
		{"also changes another role", change(func(n *metadata.TargetsType) { n.Delegations.Roles[0].Threshold = 2 }), "changes the delegations"},
		{"removes the role", change(func(n *metadata.TargetsType) { n.Delegations.Roles = n.Delegations.Roles[:1] }), "removes delegation pump"},
		{"smuggles an image", change(func(n *metadata.TargetsType) {
			tf, _ := metadata.TargetFile().FromBytes("evil/1.0.0/x.bin", []byte("x"))
			n.Targets[tf.Path] = tf
		}), "adds evil/1.0.0/x.bin"},
		{"names a key it does not list", change(func(n *metadata.TargetsType) { n.Delegations.Roles[1].KeyIDs = []string{strings.Repeat("cd", 32)} }), "lists no such key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nr, err := signer.CheckDelegationUpdatePayload(cur, tc.next, "pump")
			if tc.want == "" {
				if err != nil || nr.Name != "pump" {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("%v, want an error saying %q", err, tc.want)
			}
		})
	}
}

// TestCheckDelegationRemovalPayload: removing a delegation signs exactly
// "the published targets without that role (and keys only it used)".
func TestCheckDelegationRemovalPayload(t *testing.T) {
	cur := delegatedTargets(t, 4, [2]string{"monitor", "monitor/*/*"}, [2]string{"pmup", "pmup/*/*"})
	without := func(mut func(n *metadata.TargetsType)) *metadata.TargetsType {
		raw, _ := json.Marshal(cur)
		var n metadata.TargetsType
		if err := json.Unmarshal(raw, &n); err != nil {
			t.Fatal(err)
		}
		n.Version = 5
		delete(n.Delegations.Keys, n.Delegations.Roles[1].KeyIDs[0])
		n.Delegations.Roles = n.Delegations.Roles[:1]
		if mut != nil {
			mut(&n)
		}
		return &n
	}
	for _, tc := range []struct {
		name string
		next *metadata.TargetsType
		want string
	}{
		{"removes the role", without(nil), ""},
		{"also widens another role", without(func(n *metadata.TargetsType) { n.Delegations.Roles[0].Paths = []string{"*/*/*"} }), "changes the delegations"},
		{"keeps the removed role's key", without(func(n *metadata.TargetsType) {
			for id, k := range cur.Delegations.Keys {
				n.Delegations.Keys[id] = k
			}
		}), "changes the delegations"},
		{"removes every role", without(func(n *metadata.TargetsType) { n.Delegations = nil }), "changes the delegations"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := signer.CheckDelegationRemovalPayload(cur, tc.next, "pmup")
			if tc.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("%v, want an error saying %q", err, tc.want)
			}
		})
	}
}

// TestCheckReleasePayload: the signer signs the release the summary
// describes, under the name and version asked for, and its SBOM as
// described; a payload that differs in any of them is refused.
func TestCheckReleasePayload(t *testing.T) {
	image := []byte("firmware")
	tf, err := metadata.TargetFile().FromBytes("pump-fw/1.0.0/fw.bin", image, "sha256")
	if err != nil {
		t.Fatal(err)
	}
	custom := json.RawMessage(`{"tufota":{"name":"pump-fw","version":"1.0.0","hardware":["pump-a"]}}`)
	tf.Custom = &custom
	sb, err := metadata.TargetFile().FromBytes("pump-fw/1.0.0/sbom.cdx.json", []byte("{}"), "sha256")
	if err != nil {
		t.Fatal(err)
	}
	signed := metadata.Targets(time.Now().Add(time.Hour)).Signed
	signed.Targets = map[string]*metadata.TargetFiles{tf.Path: tf, sb.Path: sb}
	good := api.Release{TargetPath: tf.Path, Length: tf.Length, SHA256: tf.Hashes["sha256"].String(),
		SBOM: &api.SBOM{Path: sb.Path, SHA256: sb.Hashes["sha256"].String()}}
	for _, tc := range []struct {
		name           string
		edit           func(r *api.Release)
		relName, ver   string
		want, wantSBOM string
	}{
		{name: "as described", relName: "pump-fw", ver: "1.0.0"},
		{name: "another length", edit: func(r *api.Release) { r.Length++ }, relName: "pump-fw", ver: "1.0.0", want: "as the release summary describes it"},
		{name: "another hash", edit: func(r *api.Release) { r.SHA256 = strings.Repeat("0", 64) }, relName: "pump-fw", ver: "1.0.0", want: "as the release summary describes it"},
		{name: "a target not in the payload", edit: func(r *api.Release) { r.TargetPath = "pump-fw/1.0.0/other.bin" }, relName: "pump-fw", ver: "1.0.0", want: "as the release summary describes it"},
		{name: "signed as another version", relName: "pump-fw", ver: "2.0.0", want: "is signed as pump-fw@1.0.0, not pump-fw@2.0.0"},
		{name: "signed as another release", relName: "evil", ver: "1.0.0", want: "not evil@1.0.0"},
		{name: "another SBOM", edit: func(r *api.Release) { r.SBOM = &api.SBOM{Path: sb.Path, SHA256: strings.Repeat("1", 64)} }, relName: "pump-fw", ver: "1.0.0", wantSBOM: "does not sign the release's SBOM"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rel := good
			if tc.edit != nil {
				tc.edit(&rel)
			}
			got, c, err := signer.CheckReleasePayload(&signed, &rel, tc.relName, tc.ver)
			if tc.want != "" {
				if !errors.Is(err, tufota.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("CheckReleasePayload = %v, want an invalid error containing %q", err, tc.want)
				}
				return
			}
			if err != nil || got != tf || c.Name != "pump-fw" || len(c.Hardware) != 1 {
				t.Fatalf("CheckReleasePayload = %v, %+v, %v; want the target and its custom metadata", got, c, err)
			}
			_, err = signer.CheckSBOMPayload(&signed, &rel)
			if tc.wantSBOM != "" {
				if !errors.Is(err, tufota.ErrInvalid) || !strings.Contains(err.Error(), tc.wantSBOM) {
					t.Fatalf("CheckSBOMPayload = %v, want %q", err, tc.wantSBOM)
				}
			} else if err != nil {
				t.Fatalf("CheckSBOMPayload: %v", err)
			}
		})
	}
}

// TestCheckDelegationSigning: the payload of a pending delegation change
// is told apart (a role added, removed, renewed) and checked against the
// verified repository, and the lines a key holder reads describe it, as
// far as the check got.
func TestCheckDelegationSigning(t *testing.T) {
	md := func(tt *metadata.TargetsType) *metadata.Metadata[metadata.TargetsType] {
		return &metadata.Metadata[metadata.TargetsType]{Signed: *tt}
	}
	top := delegatedTargets(t, 4, [2]string{"monitor", "monitor/*/*"})
	added := delegatedTargets(t, 5, [2]string{"monitor", "monitor/*/*"})
	added.Delegations = top.Delegations // same role and key
	extra := delegatedTargets(t, 0, [2]string{"pump", "pump/*/*"})
	withPump := *added
	d := *top.Delegations
	d.Keys = map[string]*metadata.Key{}
	for id, k := range top.Delegations.Keys {
		d.Keys[id] = k
	}
	for id, k := range extra.Delegations.Keys {
		d.Keys[id] = k
	}
	d.Roles = append(append([]metadata.DelegatedRole{}, top.Delegations.Roles...), extra.Delegations.Roles...)
	withPump.Delegations = &d
	removed := delegatedTargets(t, 5)
	renewal := delegatedTargets(t, 3)
	published := md(delegatedTargets(t, 2))

	for _, tc := range []struct {
		name     string
		role     string
		signed   *metadata.TargetsType
		renewal  bool
		cur      *metadata.Metadata[metadata.TargetsType]
		wantLine string
		wantErr  string
		wantRole string
	}{
		{name: "a role added", role: "pump", signed: &withPump, wantLine: "Delegation:", wantRole: "pump"},
		{name: "a role removed", role: "monitor", signed: removed, wantLine: "Removal of role:"},
		{name: "a role with releases removed", role: "monitor", signed: removed, cur: published, wantErr: "which has published releases"},
		{name: "a renewal", role: "monitor", signed: renewal, renewal: true, cur: published, wantLine: "Renewal of role:", wantRole: "monitor"},
		{name: "a renewal of nothing", role: "monitor", signed: renewal, renewal: true, wantErr: "no metadata of role monitor to renew"},
		{name: "a renewal of a role not delegated", role: "pump", signed: renewal, renewal: true, cur: published, wantErr: "delegates to no role pump"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := signer.CheckDelegationSigning(tc.role, tc.signed, tc.renewal, nil, md(top), tc.cur, "root.json")
			if tc.wantErr != "" {
				if !errors.Is(err, tufota.ErrInvalid) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("CheckDelegationSigning = %v, want an invalid error containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(c.Lines) == 0 || c.Lines[0].Label != tc.wantLine || !strings.Contains(c.Lines[0].Text, tc.role) {
				t.Errorf("lines = %+v, want the first to be %q about %s", c.Lines, tc.wantLine, tc.role)
			}
			if got := ""; c.Role != nil {
				if got = c.Role.Name; got != tc.wantRole {
					t.Errorf("role = %q, want %q", got, tc.wantRole)
				}
			} else if tc.wantRole != "" {
				t.Errorf("role = nil, want %q", tc.wantRole)
			}
		})
	}
}
