package server

import (
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
