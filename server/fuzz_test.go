package server

import (
	"path"
	"strings"
	"testing"

	"github.com/tufota/tufota/signer"
)

// FuzzDecodePushRequest feeds arbitrary bytes to the strict JSON decoder and
// the release validation the upload endpoint runs: never a panic, and
// whatever is accepted is a valid release.
func FuzzDecodePushRequest(f *testing.F) {
	f.Add(`{"name":"fw","version":"1.0.0","hardware":["a"],"file":"f.bin"}`)
	f.Add(`{"name":"..","version":"1.0.0","hardware":["a"],"file":"../x"}`)
	f.Add(`{"name":"fw"} {}`)
	f.Fuzz(func(t *testing.T, body string) {
		var req signer.PushRequest
		if err := decodeStrict(strings.NewReader(body), &req); err != nil {
			return
		}
		if err := req.Validate(); err != nil {
			return
		}
		if strings.Contains(req.Name+req.File, "..") || strings.ContainsAny(req.Name+req.File, "/\\") {
			t.Fatalf("accepted unsafe release %+v", req)
		}
	})
}

// FuzzMetadataFileName checks the metadata route's name filter.
func FuzzMetadataFileName(f *testing.F) {
	for _, s := range []string{"timestamp.json", "1.root.json", "../x.json", "2.targets.json"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if metadataFile.MatchString(s) && (strings.ContainsAny(s, "/\\\x00") || strings.Contains(s, "..")) {
			t.Fatalf("metadata route accepts %q", s)
		}
	})
}

// FuzzDecodeDelegationRequest feeds arbitrary bytes to the strict JSON
// decoder and the validation the delegation endpoint runs: never a panic,
// and an accepted request has a safe role name (it becomes a metadata file
// name the /tuf/ route serves), three-segment patterns TUF can match, and
// usable keys within the threshold.
func FuzzDecodeDelegationRequest(f *testing.F) {
	f.Add(`{"name":"pump","paths":["pump/*/*"],"keys":[{"keytype":"ed25519","scheme":"ed25519","keyval":{"public":"` + strings.Repeat("ab", 32) + `"}}],"threshold":1}`)
	f.Add(`{"name":"../x","paths":["../*/*"],"keys":[],"threshold":0}`)
	f.Add(`{"name":"pump","paths":["pump/[a-/*"],"keys":[null],"threshold":1}`)
	f.Fuzz(func(t *testing.T, body string) {
		var req signer.DelegationRequest
		if err := decodeStrict(strings.NewReader(body), &req); err != nil {
			return
		}
		if err := req.Validate(); err != nil {
			return
		}
		if !metadataFile.MatchString("1." + req.Name + ".json") {
			t.Fatalf("accepted role name %q is not a servable metadata name", req.Name)
		}
		for _, p := range req.Paths {
			if strings.Count(p, "/") != 2 || strings.Contains(p, "..") || strings.ContainsAny(p, "[\\") {
				t.Fatalf("accepted path pattern %q", p)
			}
			if _, err := path.Match(p, "a/b/c"); err != nil {
				t.Fatalf("accepted pattern %q does not compile: %v", p, err)
			}
		}
		if req.Threshold < 1 || req.Threshold > len(req.Keys) {
			t.Fatalf("accepted threshold %d with %d keys", req.Threshold, len(req.Keys))
		}
	})
}

// FuzzDecodeDelegationChange: the delegation update body through the
// strict decoder and the key checks a change runs; never a panic, and an
// accepted key is one go-tuf can verify with.
func FuzzDecodeDelegationChange(f *testing.F) {
	f.Add(`{"add_keys":[{"keytype":"ed25519","scheme":"ed25519","keyval":{"public":"` + strings.Repeat("ab", 32) + `"}}],"revoke_keys":["` + strings.Repeat("cd", 32) + `"],"threshold":1}`)
	f.Add(`{"add_keys":[null],"threshold":-1}`)
	f.Add(`{"add_keys":[{"keytype":"ecdsa","scheme":"ecdsa-sha2-nistp256","keyval":{"public":"-----BEGIN PUBLIC KEY-----\nAA==\n-----END PUBLIC KEY-----"}}]}`)
	f.Fuzz(func(t *testing.T, body string) {
		var ch signer.DelegationChange
		if err := decodeStrict(strings.NewReader(body), &ch); err != nil {
			return
		}
		req := signer.DelegationRequest{Name: "line", Paths: []string{"line/*/*"}, Keys: ch.AddKeys, Threshold: 1}
		if err := req.Validate(); err != nil {
			return
		}
		for _, k := range ch.AddKeys {
			if _, err := k.ToPublicKey(); err != nil {
				t.Fatalf("accepted key %+v that go-tuf cannot use: %v", k, err)
			}
		}
	})
}
