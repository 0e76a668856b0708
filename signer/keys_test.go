package signer

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/tufota/tufota"
)

func pass(s string) Option {
	return WithPassphrase(func() ([]byte, error) { return []byte(s), nil })
}

func TestFileKeyRoundTrip(t *testing.T) {
	t.Parallel()
	for _, alg := range []string{AlgECDSAP256, AlgEd25519} {
		t.Run(alg, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "key.pem")
			gen, err := GenerateFileKey(path, alg, []byte("correct horse"))
			if err != nil {
				t.Fatalf("GenerateFileKey: %v", err)
			}
			opened, err := Open(context.Background(), "file:"+path, pass("correct horse"))
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			genID, err := KeyID(gen)
			if err != nil {
				t.Fatal(err)
			}
			openID, err := KeyID(opened)
			if err != nil {
				t.Fatal(err)
			}
			if genID != openID {
				t.Fatalf("key ID after Open = %s, want %s", openID, genID)
			}
			// A signature by the opened key verifies with the generated one.
			msg := []byte("signed payload")
			sig, err := opened.SignMessage(bytes.NewReader(msg))
			if err != nil {
				t.Fatalf("SignMessage: %v", err)
			}
			if err := gen.VerifySignature(bytes.NewReader(sig), bytes.NewReader(msg)); err != nil {
				t.Fatalf("VerifySignature: %v", err)
			}
			// The file URL form opens the same key.
			if _, err := Open(context.Background(), "file://"+path, pass("correct horse")); err != nil {
				t.Fatalf("Open(file://): %v", err)
			}

			// go-tuf labels the key as expected and accepts its signatures.
			k, err := tufKey(opened)
			if err != nil {
				t.Fatal(err)
			}
			wantType := map[string]string{AlgECDSAP256: metadata.KeyTypeECDSA_SHA2_P256, AlgEd25519: metadata.KeyTypeEd25519}[alg]
			if k.Type != wantType {
				t.Fatalf("TUF key type = %q, want %q", k.Type, wantType)
			}
			assertGoTUFVerifies(t, opened)
			if _, ok := opened.(crypto.Signer); !ok {
				t.Fatalf("Open returned %T, not a crypto.Signer", opened)
			}
		})
	}
}

// assertGoTUFVerifies signs targets metadata with sv and verifies it with
// go-tuf's VerifyDelegate from a root that lists sv's key.
func assertGoTUFVerifies(t *testing.T, sv signature.Signer) {
	t.Helper()
	k, err := tufKey(sv)
	if err != nil {
		t.Fatal(err)
	}
	root := metadata.Root(testEpoch)
	if err := root.Signed.AddKey(k, metadata.TARGETS); err != nil {
		t.Fatal(err)
	}
	targets := metadata.Targets(testEpoch)
	if _, err := targets.Sign(sv); err != nil {
		t.Fatalf("Sign: %v", err)
	}
	// Round-trip through JSON as a client would see it.
	data, err := targets.ToBytes(false)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := new(metadata.Metadata[metadata.TargetsType]).FromBytes(data)
	if err != nil {
		t.Fatal(err)
	}
	if err := root.VerifyDelegate(metadata.TARGETS, parsed); err != nil {
		t.Fatalf("go-tuf VerifyDelegate: %v", err)
	}
	parsed.Signed.Version++
	if err := root.VerifyDelegate(metadata.TARGETS, parsed); err == nil {
		t.Fatal("go-tuf accepted a signature over modified metadata")
	}
}

func TestKeyFileAtRest(t *testing.T) {
	t.Parallel()
	for _, alg := range []string{AlgECDSAP256, AlgEd25519} {
		t.Run(alg, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "key.pem")
			if _, err := GenerateFileKey(path, alg, []byte("s3cret")); err != nil {
				t.Fatalf("GenerateFileKey: %v", err)
			}
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if mode := fi.Mode().Perm(); mode != 0o600 {
				t.Fatalf("key file mode = %o, want 600", mode)
			}
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			for _, plain := range []string{"BEGIN PRIVATE KEY-----", "BEGIN EC PRIVATE KEY-----", "BEGIN RSA PRIVATE KEY-----", "BEGIN OPENSSH PRIVATE KEY-----"} {
				if bytes.Contains(data, []byte(plain)) {
					t.Fatalf("key file contains a plain-text header %q", plain)
				}
			}
			block, rest := pem.Decode(data)
			if block == nil || block.Type != "ENCRYPTED SIGSTORE PRIVATE KEY" || len(bytes.TrimSpace(rest)) != 0 {
				t.Fatalf("key file is not exactly one ENCRYPTED SIGSTORE PRIVATE KEY block:\n%s", data)
			}
			// The plain PKCS#8 DER of the key is not in the file, raw or
			// base64-encoded, and the file does not parse as a plain key.
			priv, err := cryptoutils.UnmarshalPEMToPrivateKey(data, cryptoutils.StaticPasswordFunc([]byte("s3cret")))
			if err != nil {
				t.Fatalf("decrypt: %v", err)
			}
			der, err := x509.MarshalPKCS8PrivateKey(priv)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(data, der) || bytes.Contains(data, []byte(base64.StdEncoding.EncodeToString(der)[:40])) {
				t.Fatal("key file contains the plain private key")
			}
			if _, err := x509.ParsePKCS8PrivateKey(block.Bytes); err == nil {
				t.Fatal("key file body parses as a plain PKCS#8 key")
			}
		})
	}
}

func TestGenerateFileKeyRefusals(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	existing := filepath.Join(dir, "existing.pem")
	if err := os.WriteFile(existing, []byte("precious"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, path, alg, pass string
		code                  tufota.Code
	}{
		{"empty passphrase", filepath.Join(dir, "a.pem"), AlgEd25519, "", tufota.EInvalid},
		{"unknown algorithm", filepath.Join(dir, "b.pem"), "rsa-1024", "x", tufota.EInvalid},
		{"overwrite", existing, AlgECDSAP256, "x", tufota.EConflict},
		{"empty path", "", AlgEd25519, "x", tufota.EInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := GenerateFileKey(tt.path, tt.alg, []byte(tt.pass))
			wantCode(t, err, tt.code)
		})
	}
	if data, _ := os.ReadFile(existing); string(data) != "precious" {
		t.Fatalf("existing file changed to %q", data)
	}
	for _, name := range []string{"a.pem", "b.pem"} {
		if _, err := os.Stat(filepath.Join(dir, name)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s left behind by a refused GenerateFileKey (stat err %v)", name, err)
		}
	}
}

func TestOpenErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	keyPath := filepath.Join(dir, "key.pem")
	if _, err := GenerateFileKey(keyPath, AlgEd25519, []byte("right")); err != nil {
		t.Fatal(err)
	}
	// A plain-text PKCS#8 key file.
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	plainPEM, err := cryptoutils.MarshalPrivateKeyToPEM(priv)
	if err != nil {
		t.Fatal(err)
	}
	plainPath := filepath.Join(dir, "plain.pem")
	if err := os.WriteFile(plainPath, plainPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	// An encrypted P-384 key: a curve tufota refuses.
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := cryptoutils.MarshalPrivateKeyToEncryptedDER(p384, cryptoutils.StaticPasswordFunc([]byte("right")))
	if err != nil {
		t.Fatal(err)
	}
	p384Path := filepath.Join(dir, "p384.pem")
	if err := os.WriteFile(p384Path, pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED SIGSTORE PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	passErr := errors.New("no terminal")

	tests := []struct {
		name    string
		uri     string
		opts    []Option
		code    tufota.Code
		wantErr error  // if set, errors.Is must hold
		mention string // the message must contain this
	}{
		{"wrong passphrase", "file:" + keyPath, []Option{pass("wrong")}, tufota.EUnauthorized, nil, "wrong passphrase"},
		{"no passphrase", "file:" + keyPath, nil, tufota.EInvalid, nil, "passphrase"},
		{"empty passphrase", "file:" + keyPath, []Option{pass("")}, tufota.EInvalid, nil, "passphrase is empty"},
		{"passphrase error", "file:" + keyPath, []Option{WithPassphrase(func() ([]byte, error) { return nil, passErr })}, tufota.EInternal, passErr, "no terminal"},
		{"plain-text key", "file:" + plainPath, []Option{pass("right")}, tufota.EInvalid, nil, "unencrypted"},
		{"P-384 key", "file:" + p384Path, []Option{pass("right")}, tufota.EInvalid, nil, "P-256"},
		{"not PEM", "file:" + notPEM, []Option{pass("right")}, tufota.EInvalid, nil, "not PEM"},
		{"missing file", "file:" + filepath.Join(dir, "nope.pem"), []Option{pass("right")}, tufota.ENotFound, nil, "does not exist"},
		{"unknown scheme", "gpg:0xDEADBEEF", nil, tufota.EInvalid, nil, "supported schemes: file:, pkcs11:"},
		{"KMS provider not linked", "awskms:///alias/tufota", nil, tufota.EInvalid, nil, "not linked"},
		{"no scheme", keyPath, nil, tufota.EInvalid, nil, "no scheme"},
		{"empty", "", nil, tufota.EInvalid, nil, "empty"},
		{"remote host", "file://example.com/key.pem", nil, tufota.EInvalid, nil, "local"},
		{"directory", "file:" + dir + "/", nil, tufota.EInvalid, nil, "directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := Open(context.Background(), tt.uri, tt.opts...)
			wantCode(t, err, tt.code)
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want it to wrap %v", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.mention) {
				t.Fatalf("err = %q, want it to mention %q", err, tt.mention)
			}
		})
	}
}

func TestOpenCanceledContext(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Open(ctx, "file:/nonexistent"); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

func TestParseKeyURI(t *testing.T) {
	t.Parallel()
	tests := []struct {
		uri, path string
	}{
		{"file:key.pem", "key.pem"},
		{"file:/etc/tufota/key.pem", "/etc/tufota/key.pem"},
		{"file:///etc/tufota/key.pem", "/etc/tufota/key.pem"},
		{"file://localhost/etc/key.pem", "/etc/key.pem"},
		{"FILE:k.pem", "k.pem"},
		{"file:../keys/k.pem", "../keys/k.pem"},
	}
	for _, tt := range tests {
		ref, err := parseKeyURI(tt.uri)
		if err != nil {
			t.Errorf("parseKeyURI(%q): %v", tt.uri, err)
			continue
		}
		if ref.scheme != "file" || ref.path != tt.path {
			t.Errorf("parseKeyURI(%q) = %+v, want file %q", tt.uri, ref, tt.path)
		}
	}
}

// FuzzParseKeyURI checks that key URI parsing never panics, returns only
// EInvalid errors, never echoes an inline PIN in an error, and that an
// accepted URI round-trips through its canonical form.
func FuzzParseKeyURI(f *testing.F) {
	for _, s := range []string{
		"file:key.pem", "file:///a/b.pem", "file://localhost/x", "file://h/x", "file:", "file:/",
		"pkcs11:token=a;object=b?module-path=/x", "awskms:///arn", ":", "", "file:a/\x00b", "file://",
		"file:dir/",
		"pkcs11:token=a;object=b?module-path=/x&pin-value=1234",
		"pkcs11:token=a%20b;id=%01%02?module-path=/m.so&pin-source=file:/p",
		"pkcs11:serial=42;object=k;type=private?module-path=/m.so&pin-source=file:///p",
		"pkcs11:slot-id=3;object=k?module-path=/m.so&pin-source=/p",
		"pkcs11:token=a;token=b;object=k?module-path=/m&pin-value=9",
		"pkcs11:token=a;object=k?module-path=/m&pin-value=secret&pin-source=/p",
		"fakekms://key", "FAKEKMS://k", "hashivault://k",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, uri string) {
		ref, err := parseKeyURI(uri)
		if err != nil {
			if code := tufota.ErrorCode(err); code != tufota.EInvalid {
				t.Fatalf("parseKeyURI(%q) error code %s, want invalid: %v", uri, code, err)
			}
			if p, ok := inlinePIN(uri); ok && len(p) >= 4 && strings.Contains(err.Error(), "pin-value="+p) {
				t.Fatalf("parseKeyURI(%q) error shows the PIN: %v", uri, err)
			}
			return
		}
		switch ref.scheme {
		case "file":
			if ref.path == "" || strings.ContainsRune(ref.path, 0) || strings.HasSuffix(ref.path, "/") {
				t.Fatalf("parseKeyURI(%q) accepted path %q", uri, ref.path)
			}
		case "pkcs11":
			r := ref.p11
			if r.module == "" || !strings.HasPrefix(r.module, "/") || (r.object == "" && r.id == "") || (r.pinSource == "") == !r.hasPINValue {
				t.Fatalf("parseKeyURI(%q) accepted %+v", uri, r)
			}
			if r.hasPINValue && strings.Contains(r.String(), "pin-value="+escapeAttr(r.pinValue)) && r.pinValue != "REDACTED" {
				t.Fatalf("String of %q shows the PIN: %s", uri, r)
			}
		case "kms":
			if !strings.Contains(ref.kms, "://") {
				t.Fatalf("parseKeyURI(%q) accepted KMS URI %q", uri, ref.kms)
			}
		default:
			t.Fatalf("parseKeyURI(%q) scheme %q", uri, ref.scheme)
		}
		canon := ref.render(false)
		again, err := parseKeyURI(canon)
		if err != nil || again != ref {
			t.Fatalf("%q: canonical %q reparsed to %+v, %v; want %+v", uri, canon, again, err, ref)
		}
	})
}

// inlinePIN returns the raw pin-value of a URI, if it has one.
func inlinePIN(uri string) (string, bool) {
	i := indexASCIIFold(uri, "pin-value=")
	if i < 0 {
		return "", false
	}
	v := uri[i+len("pin-value="):]
	if j := strings.IndexAny(v, "&;#"); j >= 0 {
		v = v[:j]
	}
	return v, true
}
