package signer

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"strings"
	"testing"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/kms/fake"

	"github.com/tufota/tufota"
)

// The KMS tests run sigstore's fake provider (fakekms://, registered by the
// import above) through the same plumbing as awskms:// and the others: URI
// parsing, kms.Get, the key-type check and the crypto.Signer adapter.

func TestParseKMSURI(t *testing.T) {
	t.Parallel()
	tests := []struct{ uri, want string }{
		{"fakekms://key", "fakekms://key"},
		{"FakeKMS://projects/p/keys/k", "fakekms://projects/p/keys/k"},
	}
	for _, tt := range tests {
		ref, err := parseKeyURI(tt.uri)
		if err != nil {
			t.Errorf("parseKeyURI(%q): %v", tt.uri, err)
			continue
		}
		if ref.scheme != "kms" || ref.kms != tt.want {
			t.Errorf("parseKeyURI(%q) = %+v, want kms %q", tt.uri, ref, tt.want)
		}
	}
	for _, tt := range []struct{ uri, mention string }{
		{"fakekms:key", "want fakekms://KEY"},
		{"fakekms://", "names no key"},
		{"fakekms://a b", "space"},
		{"hashivault://k", "not linked"}, // documented provider, not linked into this test binary
		{"gcpkms://projects/p", "not linked"},
		{"notakms://k", "not supported"},
	} {
		_, err := parseKeyURI(tt.uri)
		wantCode(t, err, tufota.EInvalid)
		if !strings.Contains(err.Error(), tt.mention) {
			t.Errorf("parseKeyURI(%q) = %v, want it to mention %q", tt.uri, err, tt.mention)
		}
	}
}

func TestKMSFakeProvider(t *testing.T) {
	t.Parallel()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	// The fake provider takes its key from the context; a real provider
	// finds it by the URI.
	ctx := context.WithValue(context.Background(), fake.KmsCtxKey{}, crypto.PrivateKey(priv))
	sv, err := Open(ctx, "fakekms://tufota-targets")
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	pub, err := sv.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	if !priv.PublicKey.Equal(pub) {
		t.Fatal("KMS key's public key is not the provider's")
	}
	cs, ok := sv.(crypto.Signer)
	if !ok {
		t.Fatalf("KMS key %T is not a crypto.Signer", sv)
	}
	// Its signatures are plain ECDSA over SHA-256 of the message.
	msg := []byte("payload")
	sig, err := sv.SignMessage(bytes.NewReader(msg))
	if err != nil {
		t.Fatalf("SignMessage: %v", err)
	}
	digest := sha256.Sum256(msg)
	if !ecdsa.VerifyASN1(&priv.PublicKey, digest[:], sig) {
		t.Fatal("KMS signature does not verify with the provider's key")
	}
	// The crypto.Signer side (what the audit log uses) signs digests.
	sig, err = cs.Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil || !ecdsa.VerifyASN1(&priv.PublicKey, digest[:], sig) {
		t.Fatalf("crypto.Signer Sign: %v (or the signature does not verify)", err)
	}
	assertGoTUFVerifies(t, sv)
	assertRootVerifies(t, sv)

	// CreateKey goes through the provider's CreateKey.
	created, err := CreateKey(ctx, "fakekms://new", "")
	if err != nil {
		t.Fatalf("CreateKey: %v", err)
	}
	if id1, id2 := mustKeyID(t, created), mustKeyID(t, sv); id1 != id2 {
		t.Fatalf("created key ID %s, want the provider's %s", id1, id2)
	}
	_, err = CreateKey(ctx, "fakekms://new", AlgEd25519)
	wantCode(t, err, tufota.EInvalid)

	// A key that is not P-256 is refused.
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Open(context.WithValue(context.Background(), fake.KmsCtxKey{}, crypto.PrivateKey(p384)), "fakekms://p384")
	wantCode(t, err, tufota.EInvalid)
	if !strings.Contains(err.Error(), "P-384") {
		t.Fatalf("err = %v, want it to name P-384", err)
	}
	// A provider failure comes back wrapped with the key URI.
	_, err = Open(context.WithValue(context.Background(), fake.KmsCtxKey{}, "not a key"), "fakekms://broken")
	if err == nil || !strings.Contains(err.Error(), "fakekms://broken") {
		t.Fatalf("err = %v, want an error naming the key", err)
	}
}

func mustKeyID(t *testing.T, v interface {
	PublicKey(...signature.PublicKeyOption) (crypto.PublicKey, error)
}) string {
	t.Helper()
	id, err := KeyID(v)
	if err != nil {
		t.Fatal(err)
	}
	return id
}
