package audit

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/tufota/tufota"
	"golang.org/x/mod/sumdb/note"
)

// NoteSigner signs C2SP signed notes (checkpoints) with an Ed25519
// crypto.Signer: an ed25519.PrivateKey, sigstore's
// *signature.ED25519SignerVerifier (it is a crypto.Signer), or an HSM key.
// It implements note.Signer and is safe for concurrent use if the
// underlying crypto.Signer is.
type NoteSigner struct {
	name string
	pub  ed25519.PublicKey
	hash uint32
	vkey string
	s    crypto.Signer
}

var _ note.Signer = (*NoteSigner)(nil)

// NewNoteSigner returns a note signer named name (the log origin, for
// example "tufota.example.com/audit") for an Ed25519 crypto.Signer. It fails
// with EInvalid when the name is not a valid note key name (empty, or with a
// space or '+') or the key is not Ed25519: the signed-note format tufota
// emits defines Ed25519 only.
func NewNoteSigner(name string, s crypto.Signer) (*NoteSigner, error) {
	if s == nil {
		return nil, tufota.Errorf(tufota.EInvalid, "note signer: no key")
	}
	pub, ok := s.Public().(ed25519.PublicKey)
	if !ok {
		return nil, tufota.Errorf(tufota.EInvalid, "note signer: key is %T, want an Ed25519 key", s.Public())
	}
	vkey, err := VerifierKey(name, pub)
	if err != nil {
		return nil, err
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, tufota.Errorf(tufota.EInvalid, "note signer: %w", err)
	}
	return &NoteSigner{name: name, pub: pub, hash: v.KeyHash(), vkey: vkey, s: s}, nil
}

// Name returns the key name (the log origin).
func (s *NoteSigner) Name() string { return s.name }

// KeyHash returns the signed-note key hash (first four bytes of
// SHA-256(name || "\n" || 0x01 || public key)).
func (s *NoteSigner) KeyHash() uint32 { return s.hash }

// VerifierKey returns the encoded verifier (public) key,
// "<name>+<hash>+<base64(0x01 || public key)>", which reviewers use to check
// checkpoints.
func (s *NoteSigner) VerifierKey() string { return s.vkey }

// Sign signs msg with pure Ed25519 and checks the signature against the
// public key before returning it (a faulty HSM must not produce an invalid
// checkpoint).
func (s *NoteSigner) Sign(msg []byte) ([]byte, error) {
	sig, err := s.s.Sign(rand.Reader, msg, crypto.Hash(0))
	if err != nil {
		return nil, fmt.Errorf("ed25519 sign: %w", err)
	}
	if !ed25519.Verify(s.pub, msg, sig) {
		return nil, fmt.Errorf("ed25519 sign: the key produced a signature that does not verify")
	}
	return sig, nil
}

// VerifierKey encodes an Ed25519 public key as a signed-note verifier key
// for name. It fails with EInvalid for a bad name or key.
func VerifierKey(name string, pub crypto.PublicKey) (string, error) {
	if !validKeyName(name) {
		return "", tufota.Errorf(tufota.EInvalid, "note key name %q must be non-empty UTF-8 without spaces or '+'", name)
	}
	edpub, ok := pub.(ed25519.PublicKey)
	if !ok {
		return "", tufota.Errorf(tufota.EInvalid, "note key is %T, want an Ed25519 public key", pub)
	}
	vkey, err := note.NewEd25519VerifierKey(name, edpub)
	if err != nil {
		return "", tufota.Errorf(tufota.EInvalid, "note verifier key: %w", err)
	}
	return vkey, nil
}

// NewNoteVerifier parses an encoded verifier key ("<name>+<hash>+<key>", as
// VerifierKey and NoteSigner.VerifierKey return) into a note.Verifier. It
// fails with EInvalid for a malformed key or an unknown algorithm.
func NewNoteVerifier(vkey string) (note.Verifier, error) {
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, tufota.Errorf(tufota.EInvalid, "verifier key %.120q: %w", vkey, err)
	}
	return v, nil
}

// validKeyName mirrors note's rule for key names.
func validKeyName(name string) bool {
	return name != "" && utf8.ValidString(name) && strings.IndexFunc(name, unicode.IsSpace) < 0 && !strings.Contains(name, "+")
}
