package signer

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"io"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/tufota/tufota"
)

// opaqueSigner hides the concrete key type behind crypto.Signer, as an HSM
// key does: sigstore's in-memory loaders cannot use it.
type opaqueSigner struct{ s crypto.Signer }

func (o opaqueSigner) Public() crypto.PublicKey { return o.s.Public() }
func (o opaqueSigner) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	return o.s.Sign(r, digest, opts)
}

func TestNewCryptoSigner(t *testing.T) {
	t.Parallel()
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		s    crypto.Signer
		hash crypto.Hash
	}{
		{"ecdsa-p256", opaqueSigner{ec}, crypto.SHA256},
		{"ed25519", opaqueSigner{ed}, 0},
		{"rsa-pss", opaqueSigner{rsaKey}, crypto.SHA256},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			sv, err := NewCryptoSigner(tt.s, tt.hash)
			if err != nil {
				t.Fatalf("NewCryptoSigner: %v", err)
			}
			msg := []byte("payload")
			sig, err := sv.SignMessage(bytes.NewReader(msg))
			if err != nil {
				t.Fatalf("SignMessage: %v", err)
			}
			if err := sv.VerifySignature(bytes.NewReader(sig), bytes.NewReader(msg)); err != nil {
				t.Fatalf("VerifySignature: %v", err)
			}
			if err := sv.VerifySignature(bytes.NewReader(sig), bytes.NewReader([]byte("other"))); err == nil {
				t.Fatal("VerifySignature accepted another message")
			}
			assertGoTUFVerifies(t, sv)
			if _, ok := sv.(crypto.Signer); !ok {
				t.Fatalf("%T is not a crypto.Signer", sv)
			}
		})
	}
}

func TestNewCryptoSignerRefusals(t *testing.T) {
	t.Parallel()
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p256, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		s    crypto.Signer
		hash crypto.Hash
	}{
		{"nil", nil, crypto.SHA256},
		{"ecdsa P-384", p384, crypto.SHA384},
		{"ecdsa with SHA-512", p256, crypto.SHA512},
		{"rsa 1024", rsa1024, crypto.SHA256},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewCryptoSigner(tt.s, tt.hash)
			wantCode(t, err, tufota.EInvalid)
		})
	}
}

// TestCryptoSignerRepository runs a whole repository on adapted
// crypto.Signer keys and checks it with the stock updater.
func TestCryptoSignerRepository(t *testing.T) {
	t.Parallel()
	adapt := func(s crypto.Signer, h crypto.Hash) signature.SignerVerifier {
		t.Helper()
		sv, err := NewCryptoSigner(opaqueSigner{s}, h)
		if err != nil {
			t.Fatal(err)
		}
		return sv
	}
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	k := testKeys{
		root:      []signature.SignerVerifier{adapt(rsaKey, crypto.SHA256)},
		targets:   []signature.SignerVerifier{adapt(ec, crypto.SHA256), adapt(ed, 0)},
		snapshot:  newKey(t, true),
		timestamp: newKey(t, false),
	}
	ctx := context.Background()
	blobs := newMemBlobs()
	repo := NewRepository(blobs, WithNow(func() time.Time { return testEpoch }))
	root, err := repo.Init(ctx, k.roleKeys(1, 2))
	if err != nil {
		t.Fatalf("Init: %v", err)
	}
	img := []byte("hsm-signed firmware")
	if _, err := repo.Publish(ctx, k.signers(), Target{Path: "hsm/1.0.0/fw.bin", Staged: stage(t, repo, img)}); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	got, err := fetchTarget(t, serveBlobs(t, blobs), root, testEpoch, "hsm/1.0.0/fw.bin")
	if err != nil {
		t.Fatalf("stock updater: %v", err)
	}
	if !bytes.Equal(got, img) {
		t.Fatal("downloaded bytes differ")
	}
}
