package signer

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"io"

	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/tufota/tufota"
)

// maxSignedMessage bounds the message NewCryptoSigner's signer reads: TUF
// metadata is small, and an HSM signs a digest anyway.
const maxSignedMessage = 64 << 20

// NewCryptoSigner adapts any crypto.Signer (a PKCS#11 or KMS key that cannot
// leave its device) to a sigstore signature.SignerVerifier whose signatures
// go-tuf verifies:
//
//   - ECDSA P-256 with hash crypto.SHA256: ASN.1 DER signatures over the
//     SHA-256 digest (TUF scheme "ecdsa-sha2-nistp256");
//   - Ed25519 (hash is ignored; pass 0): pure Ed25519 over the message;
//   - RSA with hash crypto.SHA256: RSASSA-PSS with salt length equal to the
//     hash (TUF scheme "rsassa-pss-sha256"); never PKCS#1 v1.5.
//
// Other key types, curves or hashes are tufota.EInvalid. The result is also
// a crypto.Signer (passing through to s). The adapter is as safe for
// concurrent use as s is.
func NewCryptoSigner(s crypto.Signer, hash crypto.Hash) (signature.SignerVerifier, error) {
	if s == nil {
		return nil, tufota.Errorf(tufota.EInvalid, "crypto signer is nil")
	}
	pub := s.Public()
	c := &cryptoSigner{signer: s, pub: pub, hash: hash}
	var err error
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return nil, tufota.Errorf(tufota.EInvalid, "ECDSA key on curve %s is not supported; use P-256", k.Curve.Params().Name)
		}
		if hash != crypto.SHA256 {
			return nil, tufota.Errorf(tufota.EInvalid, "ECDSA P-256 keys sign with SHA-256, not %v", hash)
		}
		c.opts = hash
		c.verifier, err = signature.LoadECDSAVerifier(k, hash)
	case ed25519.PublicKey:
		c.hash = 0
		c.opts = crypto.Hash(0)
		c.verifier, err = signature.LoadED25519Verifier(k)
	case *rsa.PublicKey:
		if hash != crypto.SHA256 {
			return nil, tufota.Errorf(tufota.EInvalid, "RSA keys sign with RSASSA-PSS SHA-256, not %v", hash)
		}
		if k.N.BitLen() < 2048 {
			return nil, tufota.Errorf(tufota.EInvalid, "RSA key of %d bits is too short; use at least 2048", k.N.BitLen())
		}
		pss := &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: hash}
		c.opts = pss
		c.verifier, err = signature.LoadRSAPSSVerifier(k, hash, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthAuto, Hash: hash})
	default:
		return nil, tufota.Errorf(tufota.EInvalid, "public key type %T is not supported; use ECDSA P-256, Ed25519 or RSA-PSS", pub)
	}
	if err != nil {
		return nil, fmt.Errorf("load verifier: %w", err)
	}
	return c, nil
}

// cryptoSigner is the adapter returned by NewCryptoSigner.
type cryptoSigner struct {
	signer   crypto.Signer
	pub      crypto.PublicKey
	hash     crypto.Hash // 0 for Ed25519
	opts     crypto.SignerOpts
	verifier signature.Verifier
}

var (
	_ signature.SignerVerifier = (*cryptoSigner)(nil)
	_ crypto.Signer            = (*cryptoSigner)(nil)
)

// Public returns the signer's public key (crypto.Signer).
func (c *cryptoSigner) Public() crypto.PublicKey { return c.pub }

// Sign passes a digest (or, for Ed25519, a message) straight to the
// wrapped key (crypto.Signer).
func (c *cryptoSigner) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	return c.signer.Sign(r, digest, opts)
}

// PublicKey returns the signer's public key.
func (c *cryptoSigner) PublicKey(...signature.PublicKeyOption) (crypto.PublicKey, error) {
	return c.pub, nil
}

// SignMessage signs the message read from r (hashing it first unless the
// key is Ed25519).
func (c *cryptoSigner) SignMessage(r io.Reader, _ ...signature.SignOption) ([]byte, error) {
	msg, err := io.ReadAll(io.LimitReader(r, maxSignedMessage+1))
	if err != nil {
		return nil, fmt.Errorf("sign: read message: %w", err)
	}
	if len(msg) > maxSignedMessage {
		return nil, tufota.Errorf(tufota.ETooLarge, "sign: message is larger than %d bytes", maxSignedMessage)
	}
	toSign := msg
	if c.hash != 0 {
		h := c.hash.New()
		h.Write(msg)
		toSign = h.Sum(nil)
	}
	sig, err := c.signer.Sign(rand.Reader, toSign, c.opts)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	return sig, nil
}

// VerifySignature checks sig over the message read from message.
func (c *cryptoSigner) VerifySignature(sig, message io.Reader, opts ...signature.VerifyOption) error {
	return c.verifier.VerifySignature(sig, message, opts...)
}
