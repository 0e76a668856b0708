package signer

// The checks a key holder runs on a payload before signing it: the server
// that hands out the payload is not trusted, so each check compares the
// payload with the repository as go-tuf verified it from the holder's own
// trust anchor, and refuses anything but the one change the holder was
// asked to sign (a release, a delegation added, changed or removed, a
// renewal). They are pure functions of TUF metadata; the CLI fetches and
// verifies, then calls them.

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/api"
)

// CheckDelegatedPaths refuses a payload of role that would sign paths the
// verified top-level targets top does not give to role: each new path's
// first delegated role (the one devices consult) must be role, or, for the
// top-level targets role, there must be none.
func CheckDelegatedPaths(top *metadata.TargetsType, role string, paths []string) error {
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

// CheckPayloadChanges refuses a targets payload that does anything but add
// the files in allowed to the verified current targets metadata: every
// published target must stay byte-for-byte the same (length, hashes,
// custom), nothing else may be added or removed, delegations must not
// change, and the version must be the next one. It is what stops a
// compromised server from slipping another image into a release signature.
func CheckPayloadChanges(cur, next *metadata.TargetsType, allowed ...string) error {
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

// ProbeFor returns a target path that role's first pattern covers in top
// (wildcards replaced by "x"), to make a TUF client load the role.
func ProbeFor(role string) func(top *metadata.TargetsType) string {
	return func(top *metadata.TargetsType) string {
		if dr, err := DelegationOf(top, role); err == nil && len(dr.Paths) > 0 {
			return strings.NewReplacer("*", "x", "?", "x").Replace(dr.Paths[0])
		}
		return role + "/x/x"
	}
}

// DelegationOf returns the delegation named role in verified top-level
// targets metadata.
func DelegationOf(t *metadata.TargetsType, role string) (*metadata.DelegatedRole, error) {
	if t.Delegations != nil {
		for i := range t.Delegations.Roles {
			if t.Delegations.Roles[i].Name == role {
				return &t.Delegations.Roles[i], nil
			}
		}
	}
	return nil, tufota.Errorf(tufota.EInvalid, "the verified targets v%d delegates to no role %s; refusing to sign", t.Version, role)
}

// CheckDelegationPayload refuses a top-level targets payload that does
// anything but add the delegated role name, last, to the verified current
// targets cur (a compromised server could otherwise have a targets key
// holder sign another image or another role), and returns the new role.
func CheckDelegationPayload(cur, next *metadata.TargetsType, name string) (*metadata.DelegatedRole, error) {
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
		if err := ValidateDelegationPath(p); err != nil {
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
	if err := CheckPayloadChanges(cur, &stripped); err != nil {
		return nil, err
	}
	return &dr, nil
}

// CheckDelegationUpdatePayload refuses a top-level targets payload that
// does anything but change the keys and threshold of the existing
// delegated role name in the verified current targets cur (same place in
// the search order, same paths), and returns the role as it would be.
func CheckDelegationUpdatePayload(cur, next *metadata.TargetsType, name string) (*metadata.DelegatedRole, error) {
	old, err := DelegationOf(cur, name)
	if err != nil {
		return nil, err
	}
	nr, err := DelegationOf(next, name)
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
	if err := CheckPayloadChanges(&expected, next); err != nil {
		return nil, err
	}
	return nr, nil
}

// KeyDiff returns the key IDs in next but not in prev, and those in prev
// but not in next.
func KeyDiff(prev, next []string) (added, removed []string) {
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

func HasRole(t *metadata.TargetsType, name string) bool {
	_, err := DelegationOf(t, name)
	return err == nil
}

// CheckDelegationRemovalPayload refuses a top-level targets payload that
// does anything but take delegation name (and keys only it used) out of
// the verified current targets cur.
func CheckDelegationRemovalPayload(cur, next *metadata.TargetsType, name string) error {
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
	return CheckPayloadChanges(&expected, next)
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

// DecodeCanonical decodes canonical JSON (what TUF signs), which leaves
// control characters such as the newlines of PEM keys unescaped inside
// strings; outside strings it has no whitespace, so escaping every
// control byte yields the same value as standard JSON.
func DecodeCanonical(b []byte, v any) error {
	var buf bytes.Buffer
	for _, c := range b {
		if c < 0x20 {
			fmt.Fprintf(&buf, "\\u%04x", c)
			continue
		}
		buf.WriteByte(c)
	}
	return json.Unmarshal(buf.Bytes(), v)
}

// SignPayload checks that the payload hashes to what the server says and
// signs it with sv.
func SignPayload(sv signature.SignerVerifier, payload []byte, payloadSHA256 string) (SignatureUpload, error) {
	sum := sha256.Sum256(payload)
	if hex.EncodeToString(sum[:]) != payloadSHA256 {
		return SignatureUpload{}, tufota.Errorf(tufota.EInvalid, "the server's payload does not hash to the SHA-256 it names; refusing to sign")
	}
	sig, err := sv.SignMessage(bytes.NewReader(payload))
	if err != nil {
		return SignatureUpload{}, fmt.Errorf("sign: %w", err)
	}
	id, err := KeyID(sv)
	if err != nil {
		return SignatureUpload{}, err
	}
	return SignatureUpload{KeyID: id, Sig: hex.EncodeToString(sig), PayloadSHA256: payloadSHA256}, nil
}

// CheckReleasePayload checks that signed, a targets payload, signs the
// release that rel (the server's summary) describes as name@version: its
// target with the summary's length and SHA-256, and tufota's custom
// metadata naming the same release. It returns the target and its custom
// metadata; the caller still compares everything else with the verified
// repository (CheckPayloadChanges).
func CheckReleasePayload(signed *metadata.TargetsType, rel *api.Release, name, version string) (*metadata.TargetFiles, tufota.TargetCustom, error) {
	var custom struct {
		Tufota tufota.TargetCustom `json:"tufota"`
	}
	tf, ok := signed.Targets[rel.TargetPath]
	if !ok || tf.Length != rel.Length || hex.EncodeToString(tf.Hashes["sha256"]) != rel.SHA256 {
		return nil, custom.Tufota, tufota.Errorf(tufota.EInvalid, "the payload does not sign %s as the release summary describes it; refusing to sign", rel.TargetPath)
	}
	if tf.Custom != nil {
		_ = json.Unmarshal(*tf.Custom, &custom)
	}
	if custom.Tufota.Name != name || custom.Tufota.Version != version {
		return nil, custom.Tufota, tufota.Errorf(tufota.EInvalid, "the payload's target %s is signed as %s@%s, not %s@%s; refusing to sign", tf.Path, custom.Tufota.Name, custom.Tufota.Version, name, version)
	}
	return tf, custom.Tufota, nil
}

// CheckSBOMPayload checks that signed signs the SBOM of rel as the
// summary describes it, and returns its target.
func CheckSBOMPayload(signed *metadata.TargetsType, rel *api.Release) (*metadata.TargetFiles, error) {
	sb, ok := signed.Targets[rel.SBOM.Path]
	if !ok || hex.EncodeToString(sb.Hashes["sha256"]) != rel.SBOM.SHA256 {
		return nil, tufota.Errorf(tufota.EInvalid, "the payload does not sign the release's SBOM %s as the summary describes it; refusing to sign", rel.SBOM.Path)
	}
	return sb, nil
}

// A Line is one line a key holder is shown before signing: a label and
// what it says.
type Line struct{ Label, Text string }

// DelegationSigning is what a delegation payload asks a key holder to
// sign, as CheckDelegationSigning found it.
type DelegationSigning struct {
	// Lines describe the change, for the key holder to read; they are
	// set, as far as the check got, even when it refuses.
	Lines []Line
	// Role is the delegated role whose keys sign (a renewal) or that the
	// payload adds; NewRole the role as a key change makes it.
	Role, NewRole *metadata.DelegatedRole
}

func (c *DelegationSigning) line(label, text string) { c.Lines = append(c.Lines, Line{label, text}) }

// CheckDelegationSigning checks a pending change of delegated role name
// against the repository as go-tuf verified it from rootFile: top is the
// verified top-level targets metadata, cur the role's own verified
// metadata (nil when it has none). signed is the payload (top-level
// targets, or the role's own metadata when renewal), resign the
// re-signing a key change carries (or nil). It tells a renewal, a
// removal, a key change and an added role apart, refuses a payload that
// does more than that one change, and describes the change in Lines.
func CheckDelegationSigning(name string, signed *metadata.TargetsType, renewal bool, resign *api.SigningPayload, top, cur *metadata.Metadata[metadata.TargetsType], rootFile string) (c DelegationSigning, err error) {
	existing, _ := DelegationOf(&top.Signed, name)
	switch {
	case renewal:
		if c.Role, err = DelegationOf(&top.Signed, name); err != nil {
			return c, err
		}
		if cur == nil {
			return c, tufota.Errorf(tufota.EInvalid, "the verified repository has no metadata of role %s to renew; refusing to sign", name)
		}
		if err := CheckPayloadChanges(&cur.Signed, signed); err != nil {
			return c, err
		}
		c.line("Renewal of role:", fmt.Sprintf("%s (delegated %s by targets v%d, threshold %d of %d)", name, strings.Join(c.Role.Paths, ", "), top.Signed.Version, c.Role.Threshold, len(c.Role.KeyIDs)))
		c.line(name+" version:", fmt.Sprintf("%d (the published %d, verified against %s, with the same %d release file(s)), expires %s (was %s)",
			signed.Version, cur.Signed.Version, rootFile, len(signed.Targets), signed.Expires.Format("2006-01-02"), cur.Signed.Expires.Format("2006-01-02")))
	case existing != nil && !HasRole(signed, name):
		if cur != nil {
			return c, tufota.Errorf(tufota.EInvalid, "the payload removes delegation %s, which has published releases (%s v%d); refusing to sign", name, name, cur.Signed.Version)
		}
		if err := CheckDelegationRemovalPayload(&top.Signed, signed, name); err != nil {
			return c, err
		}
		c.line("Removal of role:", fmt.Sprintf("%s (%s; no releases)", name, strings.Join(existing.Paths, ", ")))
		c.line("targets version:", fmt.Sprintf("%d (the published %d, verified against %s, without this delegation)", signed.Version, top.Signed.Version, rootFile))
	case existing != nil:
		if c.NewRole, err = CheckDelegationUpdatePayload(&top.Signed, signed, name); err != nil {
			return c, err
		}
		added, revoked := KeyDiff(existing.KeyIDs, c.NewRole.KeyIDs)
		c.line("Key change of role:", fmt.Sprintf("%s (%s)", name, strings.Join(existing.Paths, ", ")))
		c.line("Threshold:", fmt.Sprintf("%d of %d keys -> %d of %d keys", existing.Threshold, len(existing.KeyIDs), c.NewRole.Threshold, len(c.NewRole.KeyIDs)))
		for _, id := range added {
			c.line("  add key:", id)
		}
		for _, id := range revoked {
			c.line("  revoke key:", id)
		}
		c.line("targets version:", fmt.Sprintf("%d (the published %d, verified against %s, with only this change)", signed.Version, top.Signed.Version, rootFile))
		if resign != nil {
			var rs metadata.TargetsType
			if err := DecodeCanonical(resign.Payload, &rs); err != nil || rs.Type != metadata.TARGETS || resign.Role != name {
				return c, tufota.Errorf(tufota.EInvalid, "the re-signing payload is not role %s's metadata; refusing to sign", name)
			}
			if cur == nil {
				return c, tufota.Errorf(tufota.EInvalid, "the verified repository has no metadata of role %s to re-sign; refusing to sign", name)
			}
			if err := CheckPayloadChanges(&cur.Signed, &rs); err != nil {
				return c, err
			}
			c.line("Re-signing:", fmt.Sprintf("%s v%d (the published %d with the same %d release file(s)) by the role's new keys, expires %s", name, rs.Version, cur.Signed.Version, len(rs.Targets), rs.Expires.Format("2006-01-02")))
		}
	default:
		if c.Role, err = CheckDelegationPayload(&top.Signed, signed, name); err != nil {
			return c, err
		}
		c.line("Delegation:", c.Role.Name)
		c.line("Paths:", strings.Join(c.Role.Paths, ", "))
		c.line("Threshold:", fmt.Sprintf("%d of %d keys", c.Role.Threshold, len(c.Role.KeyIDs)))
		for _, id := range c.Role.KeyIDs {
			c.line("  key:", id)
		}
		c.line("targets version:", fmt.Sprintf("%d (the published %d, verified against %s, plus this delegation), expires %s", signed.Version, top.Signed.Version, rootFile, signed.Expires.Format("2006-01-02")))
	}
	return c, nil
}

// ReleaseSigning is what a release payload asks a key holder to sign, as
// CheckReleaseSigning found it.
type ReleaseSigning struct {
	// Lines describe the release, for the key holder to read; they are
	// set, as far as the check got, even when it refuses.
	Lines []Line
	// Role is the delegated role that signs the release, nil for the
	// top-level targets role.
	Role *metadata.DelegatedRole
}

func (c *ReleaseSigning) line(label, text string) { c.Lines = append(c.Lines, Line{label, text}) }

// CheckReleaseSigning checks a payload of role (signed, with the target
// tf and custom metadata CheckReleasePayload found) against the
// repository as go-tuf verified it from rootFile: top is the verified
// top-level targets metadata, delegated the signing role's own (nil for
// the role's first release). The payload may only add the release (and
// its SBOM) in the role devices consult for its paths. size formats a
// length for the Lines.
func CheckReleaseSigning(role string, signed *metadata.TargetsType, rel *api.Release, name, version string, tf *metadata.TargetFiles, custom tufota.TargetCustom, top, delegated *metadata.Metadata[metadata.TargetsType], rootFile string, size func(int64) string) (c ReleaseSigning, err error) {
	allowed := []string{rel.TargetPath}
	if rel.SBOM != nil {
		allowed = append(allowed, rel.SBOM.Path)
	}
	if rel.VEX != nil {
		allowed = append(allowed, rel.VEX.Path)
	}
	if err := CheckDelegatedPaths(&top.Signed, role, allowed); err != nil {
		return c, err
	}
	cur := top
	if role != metadata.TARGETS {
		if c.Role, err = DelegationOf(&top.Signed, role); err != nil {
			return c, err
		}
		cur = delegated
		if cur == nil { // the role's first release: nothing published yet
			cur = &metadata.Metadata[metadata.TargetsType]{Signed: metadata.TargetsType{Type: metadata.TARGETS, Targets: map[string]*metadata.TargetFiles{}}}
		}
	}
	if err := CheckPayloadChanges(&cur.Signed, signed, allowed...); err != nil {
		return c, err
	}
	c.line("Release:", name+"@"+version)
	c.line("Target:", tf.Path)
	c.line("Length:", fmt.Sprintf("%d (%s)", tf.Length, size(tf.Length)))
	c.line("SHA-256:", hex.EncodeToString(tf.Hashes["sha256"]))
	if rel.SHA512 != "" {
		c.line("SHA-512:", rel.SHA512+" (server-reported; TUF signs SHA-256)")
	}
	c.line("Hardware:", strings.Join(custom.Hardware, ", "))
	if rel.SBOM != nil {
		sb, err := CheckSBOMPayload(signed, rel)
		if err != nil {
			return c, err
		}
		c.line("SBOM:", fmt.Sprintf("%s (%s, %d bytes, SHA-256 %s)", sb.Path, rel.SBOM.Format, sb.Length, hex.EncodeToString(sb.Hashes["sha256"])))
	}
	if rel.VEX != nil {
		vx, ok := signed.Targets[rel.VEX.Path]
		if !ok || hex.EncodeToString(vx.Hashes["sha256"]) != rel.VEX.SHA256 {
			return c, tufota.Errorf(tufota.EInvalid, "the payload does not sign the release's VEX %s as the summary describes it; refusing to sign", rel.VEX.Path)
		}
		c.line("VEX:", fmt.Sprintf("%s (%d bytes, SHA-256 %s)", vx.Path, vx.Length, hex.EncodeToString(vx.Hashes["sha256"])))
	}
	if c.Role != nil {
		c.line("Signed by role:", fmt.Sprintf("%s (delegated %s by targets v%d, threshold %d of %d)", role, strings.Join(c.Role.Paths, ", "), top.Signed.Version, c.Role.Threshold, len(c.Role.KeyIDs)))
	}
	c.line(role+" version:", fmt.Sprintf("%d (%d files: the published %d, verified against %s, plus this release), expires %s", signed.Version, len(signed.Targets), len(cur.Signed.Targets), rootFile, signed.Expires.Format("2006-01-02")))
	return c, nil
}
