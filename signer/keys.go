// Package signer holds tufota's signing keys and its TUF repository writer.
//
// Keys are named by URIs and resolve to a sigstore signature.SignerVerifier,
// the type go-tuf's Metadata.Sign takes:
//
//   - "file:PATH", an encrypted PEM key file (ECDSA P-256 or Ed25519, scrypt +
//     secretbox, sigstore's format); keys never sit on disk in plain text;
//   - "pkcs11:token=…;object=…?module-path=…&pin-source=file:…", a key pair in
//     an HSM or smart card through PKCS#11 (crypto11, cgo): ECDSA P-256, or
//     RSA signing RSASSA-PSS only;
//   - "awskms://", "gcpkms://", "azurekms://", "hashivault://", a key in a
//     cloud KMS through sigstore's providers (those linked into the program).
//
// NewCryptoSigner adapts any crypto.Signer (an HSM or KMS key) to the same
// interface. A Keyring opens many keys and shares one logged-in PKCS#11
// session pool per token between them; CreateKey makes a new key where the
// URI points, inside the HSM or KMS when it names one.
//
// Repository writes a TUF repository (spec v1.0, consistent snapshots) into
// a storage.Blobs: metadata under "metadata/", target files under
// "targets/". Publishing is atomic: every versioned file is written first and
// timestamp.json last, so a reader, or a crash at any point, sees the old
// repository or the new one and never a mix.
package signer

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"sync"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/tufota/tufota"
)

// Key algorithms. GenerateFileKey accepts ECDSA P-256 and Ed25519; PKCS#11
// tokens make ECDSA P-256 and RSA-3072 (which signs RSASSA-PSS); KMS keys
// are ECDSA P-256.
const (
	AlgECDSAP256 = "ecdsa-p256"
	AlgEd25519   = "ed25519"
	AlgRSA3072   = "rsa-3072"
)

// supportedSchemes lists the non-KMS key URI schemes Open understands; the
// linked KMS providers come on top.
var supportedSchemes = []string{"file", "pkcs11"}

// maxKeyFileSize bounds how much of a key file Open reads; a real encrypted
// key file is well under 1 KiB.
const maxKeyFileSize = 64 << 10

// Option configures Open.
type Option func(*openOptions)

type openOptions struct {
	passphrase func() ([]byte, error)
}

// WithPassphrase sets the function Open calls to obtain the passphrase of an
// encrypted key file (from an environment variable or a terminal prompt,
// decided by the caller). It is called at most once per Open.
func WithPassphrase(f func() ([]byte, error)) Option {
	return func(o *openOptions) { o.passphrase = f }
}

// Open resolves a key URI to a signer. Supported schemes:
//
//	file:PATH        an encrypted PEM key file (ECDSA P-256 or Ed25519);
//	file:///ABS/PATH the same with an absolute path in URL form;
//	pkcs11:…         a key pair in a PKCS#11 token (see the package doc);
//	awskms://…, gcpkms://…, azurekms://…, hashivault://…
//	                 a KMS key, when the provider is linked in.
//
// A malformed URI or an unknown scheme is a tufota.EInvalid error naming the
// supported schemes. A missing file, PKCS#11 module, token or key object is
// tufota.ENotFound. A key file that is not encrypted, or holds a key of an
// unsupported type, is EInvalid; a missing passphrase is EInvalid; a wrong
// passphrase or PIN is EUnauthorized. Error messages never show an inline
// PIN.
//
// The returned value is safe for concurrent use and is also a
// crypto.Signer (the audit log signs checkpoints through it). A PKCS#11 key
// is also an io.Closer: it holds its own logged-in session pool to the token
// until Close (use a Keyring to share one between keys). PKCS#11 and KMS
// calls are not cancelled by ctx once they have started.
func Open(ctx context.Context, uri string, opts ...Option) (signature.SignerVerifier, error) {
	// The Keyring needs no Close of its own: a PKCS#11 key releases its
	// token session when it is closed, and nothing else is held.
	return NewKeyring(opts...).Open(ctx, uri)
}

// CreateKey makes a new key of algorithm alg ("" picks ecdsa-p256) where uri
// points and returns it opened:
//
//   - file:PATH: an encrypted key file (GenerateFileKey), with the passphrase
//     from WithPassphrase;
//   - pkcs11:…;object=LABEL…: a key pair generated inside the token,
//     sensitive and not extractable (ECDSA P-256 or RSA-3072); a token that
//     holds a key pair with that label already is tufota.EConflict;
//   - a KMS URI: the provider's CreateKey (ECDSA P-256 only).
//
// Errors are as for Open; an unsupported algorithm is EInvalid. Like Open's,
// a PKCS#11 key returned is an io.Closer.
func CreateKey(ctx context.Context, uri, alg string, opts ...Option) (signature.SignerVerifier, error) {
	return NewKeyring(opts...).CreateKey(ctx, uri, alg)
}

// Keyring opens keys and shares what they can share: one crypto11 context (a
// logged-in PKCS#11 session pool) per module and token. A Keyring is safe
// for concurrent use, and so are the keys it returns. Close it when done;
// its keys must not be used after that. Closing a PKCS#11 key it returned
// releases that key's share early; the token's session closes with the last
// key.
//
// PKCS#11 login state belongs to the whole process: once a token is logged
// in, the module accepts new sessions without checking a PIN. A Keyring
// therefore compares the PIN of each further key in an open token with the
// one that logged in, and refuses a different one (tufota.EUnauthorized).
// Two Keyrings in one process do not see each other's PINs.
type Keyring struct {
	opts openOptions

	mu     sync.Mutex
	tokens map[tokenID]*tokenSession
	closed bool
}

// NewKeyring returns an empty Keyring whose file keys take their passphrase
// from opts (WithPassphrase).
func NewKeyring(opts ...Option) *Keyring {
	k := &Keyring{}
	for _, opt := range opts {
		opt(&k.opts)
	}
	return k
}

// Open resolves uri as the package-level Open does, sharing token sessions
// with the keyring's other keys. A closed Keyring refuses PKCS#11 keys
// (EInvalid).
func (k *Keyring) Open(ctx context.Context, uri string) (signature.SignerVerifier, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ref, err := parseKeyURI(uri)
	if err != nil {
		return nil, err
	}
	switch ref.scheme {
	case "file":
		return openFileKey(ref.path, k.opts.passphrase)
	case "pkcs11":
		return k.openPKCS11(ctx, ref.p11)
	case "kms":
		return openKMS(ctx, ref.kms)
	}
	// parseKeyURI only returns supported schemes.
	return nil, tufota.Errorf(tufota.EInternal, "open key %q: scheme %q not implemented", redactURI(uri), ref.scheme)
}

// CreateKey makes a new key as the package-level CreateKey does.
func (k *Keyring) CreateKey(ctx context.Context, uri, alg string) (signature.SignerVerifier, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ref, err := parseKeyURI(uri)
	if err != nil {
		return nil, err
	}
	switch ref.scheme {
	case "file":
		if alg == "" {
			alg = AlgECDSAP256
		}
		if k.opts.passphrase == nil {
			return nil, tufota.Errorf(tufota.EInvalid, "create key %s: no passphrase given; keys are never stored in plain text", ref.path)
		}
		pass, err := k.opts.passphrase()
		if err != nil {
			return nil, fmt.Errorf("create key %s: read passphrase: %w", ref.path, err)
		}
		return GenerateFileKey(ref.path, alg, pass)
	case "pkcs11":
		return k.createPKCS11(ctx, ref.p11, alg)
	case "kms":
		return createKMS(ctx, ref.kms, alg)
	}
	return nil, tufota.Errorf(tufota.EInternal, "create key %q: scheme %q not implemented", redactURI(uri), ref.scheme)
}

// Close logs out of and closes every token session the keyring holds,
// waiting for signatures in progress. It is idempotent and returns nil.
func (k *Keyring) Close() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.closed = true
	for id, ts := range k.tokens {
		_ = ts.ctx.Close()
		delete(k.tokens, id)
	}
	return nil
}

// keyRef is a parsed key URI. It is comparable.
type keyRef struct {
	scheme string    // "file", "pkcs11" or "kms"
	path   string    // for "file"
	p11    pkcs11Ref // for "pkcs11"
	kms    string    // for "kms": the URI, scheme in lower case
}

// parseKeyURI splits a key URI into its scheme and scheme-specific part and
// validates the latter. Its errors are tufota.EInvalid.
func parseKeyURI(uri string) (keyRef, error) {
	if uri == "" {
		return keyRef{}, tufota.Errorf(tufota.EInvalid, "key URI is empty; supported schemes: %s", schemeList())
	}
	if strings.ContainsRune(uri, 0) {
		return keyRef{}, tufota.Errorf(tufota.EInvalid, "key URI contains a NUL byte")
	}
	scheme, rest, ok := strings.Cut(uri, ":")
	if !ok || scheme == "" {
		return keyRef{}, tufota.Errorf(tufota.EInvalid, "key URI %q has no scheme (want e.g. file:/path/to/key.pem); supported schemes: %s", redactURI(uri), schemeList())
	}
	switch strings.ToLower(scheme) {
	case "file":
		path := rest
		if strings.HasPrefix(rest, "//") {
			// URL form: file:///abs/path or file://localhost/abs/path.
			host, p, _ := strings.Cut(rest[2:], "/")
			if host != "" && host != "localhost" {
				return keyRef{}, tufota.Errorf(tufota.EInvalid, "key URI %q names host %q; file keys must be local (file:///abs/path or file:PATH)", redactURI(uri), host)
			}
			path = "/" + strings.TrimLeft(p, "/")
		}
		if path == "" || path == "/" {
			return keyRef{}, tufota.Errorf(tufota.EInvalid, "key URI %q has no file path", redactURI(uri))
		}
		if strings.HasSuffix(path, "/") {
			return keyRef{}, tufota.Errorf(tufota.EInvalid, "key URI %q names a directory, not a key file", redactURI(uri))
		}
		return keyRef{scheme: "file", path: path}, nil
	case "pkcs11":
		r, err := parsePKCS11(uri, rest)
		if err != nil {
			return keyRef{}, err
		}
		return keyRef{scheme: "pkcs11", p11: r}, nil
	default:
		if isKMSScheme(scheme) {
			return parseKMS(uri, scheme, rest)
		}
		return keyRef{}, tufota.Errorf(tufota.EInvalid, "key URI scheme %q is not supported; supported schemes: %s", redactURI(scheme), schemeList())
	}
}

// CanonicalKeyURI parses uri and returns it in canonical form: file:PATH,
// pkcs11: with its attributes in a fixed order and encoding, or the KMS URI
// with its scheme in lower case. An inline PIN is kept. It touches no key;
// a malformed URI is tufota.EInvalid.
func CanonicalKeyURI(uri string) (string, error) {
	ref, err := parseKeyURI(uri)
	if err != nil {
		return "", err
	}
	return ref.render(false), nil
}

// RedactKeyURI returns uri with any inline PIN (pin-value=) replaced, for
// logs and messages.
func RedactKeyURI(uri string) string { return redactURI(uri) }

// render writes ref as a URI; redact hides an inline PIN.
func (ref keyRef) render(redact bool) string {
	switch ref.scheme {
	case "file":
		return "file:" + ref.path
	case "pkcs11":
		return ref.p11.uri(redact)
	}
	return ref.kms
}

func schemeList() string {
	s := make([]string, 0, len(supportedSchemes)+4)
	for _, v := range supportedSchemes {
		s = append(s, v+":")
	}
	s = append(s, kmsProviders()...)
	return strings.Join(s, ", ")
}

// openFileKey reads and decrypts an encrypted PEM key file.
func openFileKey(path string, passphrase func() ([]byte, error)) (signature.SignerVerifier, error) {
	// The path is the operator's own key reference; reading it is the point.
	f, err := os.Open(path) // #nosec G304 -- operator-chosen key file
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, tufota.Errorf(tufota.ENotFound, "open key file %s: file does not exist", path)
		}
		return nil, fmt.Errorf("open key file %s: %w", path, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read key file %s: %w", path, err)
	}
	if len(data) > maxKeyFileSize {
		return nil, tufota.Errorf(tufota.EInvalid, "key file %s is larger than %d bytes; not a key file", path, maxKeyFileSize)
	}
	return decodeFileKey(path, data, passphrase)
}

// decodeFileKey decrypts pemBytes, the contents of the key file at path.
func decodeFileKey(path string, pemBytes []byte, passphrase func() ([]byte, error)) (signature.SignerVerifier, error) {
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		return nil, tufota.Errorf(tufota.EInvalid, "key file %s is not PEM", path)
	}
	if block.Type != string(cryptoutils.EncryptedSigstorePrivateKeyPEMType) {
		if strings.Contains(block.Type, "PRIVATE KEY") && !strings.Contains(block.Type, "ENCRYPTED") {
			return nil, tufota.Errorf(tufota.EInvalid, "key file %s holds an unencrypted %s; tufota keeps keys encrypted at rest (create one with GenerateFileKey / tufota key create)", path, block.Type)
		}
		return nil, tufota.Errorf(tufota.EInvalid, "key file %s holds a %q PEM block; want %q", path, block.Type, cryptoutils.EncryptedSigstorePrivateKeyPEMType)
	}
	if passphrase == nil {
		return nil, tufota.Errorf(tufota.EInvalid, "key file %s is encrypted and no passphrase was given", path)
	}
	pass, err := passphrase()
	if err != nil {
		return nil, fmt.Errorf("key file %s: read passphrase: %w", path, err)
	}
	if len(pass) == 0 {
		return nil, tufota.Errorf(tufota.EInvalid, "key file %s: passphrase is empty", path)
	}
	priv, err := cryptoutils.UnmarshalPEMToPrivateKey(pemBytes, cryptoutils.StaticPasswordFunc(pass))
	if err != nil {
		// secretbox authentication fails for a wrong passphrase and for a
		// corrupted file alike; the passphrase is by far the likelier cause.
		return nil, tufota.Errorf(tufota.EUnauthorized, "key file %s: wrong passphrase or corrupted key file", path)
	}
	sv, err := signerVerifierFor(priv)
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	return sv, nil
}

// signerVerifierFor wraps an in-memory private key; only ECDSA P-256 and
// Ed25519 are accepted.
func signerVerifierFor(priv crypto.PrivateKey) (signature.SignerVerifier, error) {
	switch k := priv.(type) {
	case *ecdsa.PrivateKey:
		if k.Curve != elliptic.P256() {
			return nil, tufota.Errorf(tufota.EInvalid, "ECDSA key on curve %s is not supported; use P-256", k.Curve.Params().Name)
		}
		return signature.LoadECDSASignerVerifier(k, crypto.SHA256)
	case ed25519.PrivateKey:
		return signature.LoadED25519SignerVerifier(k)
	default:
		return nil, tufota.Errorf(tufota.EInvalid, "private key type %T is not supported; use ECDSA P-256 or Ed25519", priv)
	}
}

// GenerateFileKey creates a new private key of algorithm alg ("ecdsa-p256"
// or "ed25519"), encrypts it with passphrase (scrypt + secretbox, sigstore's
// "ENCRYPTED SIGSTORE PRIVATE KEY" PEM format) and writes it to path with
// mode 0600. It refuses to overwrite an existing file (tufota.EConflict) and
// refuses an empty passphrase or an unknown algorithm (tufota.EInvalid).
// On error no file is left behind.
func GenerateFileKey(path, alg string, passphrase []byte) (signature.SignerVerifier, error) {
	if len(passphrase) == 0 {
		return nil, tufota.Errorf(tufota.EInvalid, "generate key %s: passphrase is empty; keys are never stored in plain text", path)
	}
	if path == "" {
		return nil, tufota.Errorf(tufota.EInvalid, "generate key: path is empty")
	}
	var priv crypto.Signer
	var err error
	switch alg {
	case AlgECDSAP256:
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case AlgEd25519:
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	default:
		return nil, tufota.Errorf(tufota.EInvalid, "generate key %s: algorithm %q is not supported; use %q or %q", path, alg, AlgECDSAP256, AlgEd25519)
	}
	if err != nil {
		return nil, fmt.Errorf("generate %s key: %w", alg, err)
	}
	sv, err := signerVerifierFor(priv)
	if err != nil {
		return nil, fmt.Errorf("generate %s key: %w", alg, err)
	}
	der, err := cryptoutils.MarshalPrivateKeyToEncryptedDER(priv, cryptoutils.StaticPasswordFunc(passphrase))
	if err != nil {
		return nil, fmt.Errorf("generate key %s: encrypt: %w", path, err)
	}
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: string(cryptoutils.EncryptedSigstorePrivateKeyPEMType), Bytes: der})
	if err := writeNewFile(path, pemBytes, 0o600); err != nil {
		return nil, fmt.Errorf("generate key %s: %w", path, err)
	}
	return sv, nil
}

// writeNewFile creates path exclusively with mode perm, writes data and
// syncs it. An existing file is tufota.EConflict. On error the new file is
// removed.
func writeNewFile(path string, data []byte, perm os.FileMode) (err error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm) // #nosec G304 -- operator-chosen key file, created exclusively
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return tufota.Errorf(tufota.EConflict, "%s exists already; refusing to overwrite a key file", path)
		}
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = cerr
		}
		if err != nil {
			_ = os.Remove(path)
		}
	}()
	// The umask may have cleared bits but never adds any; make the mode
	// explicit in case the file system ignored perm.
	if err := f.Chmod(perm); err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	return f.Sync()
}

// KeyID returns the TUF key ID of v's public key: the hex SHA-256 of the
// canonical JSON of the key as go-tuf's metadata.KeyFromPublicKey encodes it
// (ECDSA keys as keytype "ecdsa", scheme "ecdsa-sha2-nistp256"; Ed25519 as
// "ed25519"). This is the ID that appears in root.json and in signatures.
func KeyID(v signature.PublicKeyProvider) (string, error) {
	k, err := tufKey(v)
	if err != nil {
		return "", err
	}
	return k.ID()
}

// tufKey converts v's public key to a TUF key.
func tufKey(v signature.PublicKeyProvider) (*metadata.Key, error) {
	if v == nil {
		return nil, tufota.Errorf(tufota.EInvalid, "key is nil")
	}
	pub, err := v.PublicKey()
	if err != nil {
		return nil, fmt.Errorf("public key: %w", err)
	}
	if ec, ok := pub.(*ecdsa.PublicKey); ok && ec.Curve != elliptic.P256() {
		return nil, tufota.Errorf(tufota.EInvalid, "ECDSA key on curve %s is not supported; use P-256", ec.Curve.Params().Name)
	}
	k, err := metadata.KeyFromPublicKey(pub)
	if err != nil {
		return nil, tufota.Errorf(tufota.EInvalid, "public key of type %T: %w", pub, err)
	}
	return k, nil
}

// ConfigKeyURI validates uri for a configuration file that a server reads
// later, maybe from another directory, and returns its canonical form. It
// refuses (tufota.EInvalid) a malformed URI, a PKCS#11 URI that carries its
// PIN inline (pin-value=: use pin-source=file:PATH, so that no PIN is ever
// stored in plain text with the key reference) and a relative pin-source
// path. It touches no key.
func ConfigKeyURI(uri string) (string, error) {
	ref, err := parseKeyURI(uri)
	if err != nil {
		return "", err
	}
	if ref.scheme == "pkcs11" {
		switch {
		case ref.p11.hasPINValue:
			return "", tufota.Errorf(tufota.EInvalid, "key URI %s carries its PIN inline (pin-value=), which would store the PIN in plain text; put the PIN in a file readable only by tufota and use pin-source=file:/path/to/pin", ref.p11)
		case !strings.HasPrefix(ref.p11.pinSource, "/"):
			return "", tufota.Errorf(tufota.EInvalid, "key URI %s: pin-source %q must be an absolute path", ref.p11, ref.p11.pinSource)
		}
	}
	return ref.render(false), nil
}

// KeyURIScheme returns the scheme of a valid key URI: "file", "pkcs11" or
// "kms". A malformed URI is tufota.EInvalid.
func KeyURIScheme(uri string) (string, error) {
	ref, err := parseKeyURI(uri)
	if err != nil {
		return "", err
	}
	return ref.scheme, nil
}
