package audit

import (
	"context"
	"crypto"
	"path/filepath"
	"testing"

	"github.com/tufota/tufota/signer"
	"golang.org/x/mod/sumdb/tlog"
)

// TestNoteSignerFromSignerFileKey is the wiring the server uses: an
// Ed25519 key file encrypted at rest by package signer, opened, and used
// through its crypto.Signer to sign checkpoints.
func TestNoteSignerFromSignerFileKey(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "audit.key")
	pass := []byte("correct horse battery staple")
	if _, err := signer.GenerateFileKey(path, signer.AlgEd25519, pass); err != nil {
		t.Fatal(err)
	}
	sv, err := signer.Open(context.Background(), "file:"+path, signer.WithPassphrase(func() ([]byte, error) { return pass, nil }))
	if err != nil {
		t.Fatal(err)
	}
	cs, ok := sv.(crypto.Signer)
	if !ok {
		t.Fatalf("signer.Open returned %T, which is not a crypto.Signer", sv)
	}
	ns, err := NewNoteSigner(testOrigin, cs)
	if err != nil {
		t.Fatal(err)
	}
	v, err := NewNoteVerifier(ns.VerifierKey())
	if err != nil {
		t.Fatal(err)
	}
	c := Checkpoint{Origin: testOrigin, Size: 1, Hash: tlog.RecordHash([]byte("x"))}
	msg, err := signCheckpoint(c, ns, v)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := OpenCheckpoint(msg, v); err != nil || got != c {
		t.Fatalf("OpenCheckpoint = %+v, %v", got, err)
	}
}
