package signer

import (
	"bytes"
	"context"
	"crypto"
	"crypto/elliptic"
	"crypto/rsa"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/ThalesGroup/crypto11"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/internal/testenv"
)

func TestParsePKCS11URI(t *testing.T) {
	t.Parallel()
	tests := []struct {
		uri  string
		want pkcs11Ref
	}{
		{"pkcs11:token=ota;object=targets-1?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/tufota/pin",
			pkcs11Ref{token: "ota", object: "targets-1", module: "/usr/lib/softhsm/libsofthsm2.so", pinSource: "/etc/tufota/pin"}},
		{"pkcs11:token=My%20Token;object=k?module-path=/m.so&pin-value=12%2634",
			pkcs11Ref{token: "My Token", object: "k", module: "/m.so", pinValue: "12&34", hasPINValue: true}},
		{"PKCS11:serial=0a1b;id=%01%FF;type=private?pin-source=file:///run/pin&module-path=/m.so",
			pkcs11Ref{serial: "0a1b", id: "\x01\xff", module: "/m.so", pinSource: "/run/pin"}},
		{"pkcs11:slot-id=7;object=k;id=a?module-path=/m.so&pin-source=/run/pin",
			pkcs11Ref{slot: 7, hasSlot: true, object: "k", id: "a", module: "/m.so", pinSource: "/run/pin"}},
		{"pkcs11:Token=t;OBJECT=k?Module-Path=/m.so&pin-source=file:relative/pin",
			pkcs11Ref{token: "t", object: "k", module: "/m.so", pinSource: "relative/pin"}},
	}
	for _, tt := range tests {
		ref, err := parseKeyURI(tt.uri)
		if err != nil {
			t.Errorf("parseKeyURI(%q): %v", tt.uri, err)
			continue
		}
		if ref.scheme != "pkcs11" || ref.p11 != tt.want {
			t.Errorf("parseKeyURI(%q) = %+v, want %+v", tt.uri, ref.p11, tt.want)
			continue
		}
		canon, err := CanonicalKeyURI(tt.uri)
		if err != nil {
			t.Fatal(err)
		}
		again, err := parseKeyURI(canon)
		if err != nil || again != ref {
			t.Errorf("canonical %q reparsed to %+v, %v", canon, again.p11, err)
		}
	}
}

func TestParsePKCS11URIErrors(t *testing.T) {
	t.Parallel()
	const ok = "?module-path=/m.so&pin-source=/p"
	tests := []struct{ name, uri, mention string }{
		{"no token", "pkcs11:object=k" + ok, "token=LABEL"},
		{"two token selectors", "pkcs11:token=t;serial=1;object=k" + ok, "one way only"},
		{"no object", "pkcs11:token=t" + ok, "object=LABEL"},
		{"no module", "pkcs11:token=t;object=k?pin-source=/p", "module-path"},
		{"relative module", "pkcs11:token=t;object=k?module-path=lib.so&pin-source=/p", "absolute"},
		{"module-name", "pkcs11:token=t;object=k?module-name=softhsm2&pin-source=/p", "module-path="},
		{"no PIN", "pkcs11:token=t;object=k?module-path=/m.so", "pin-source=file:"},
		{"two PINs", "pkcs11:token=t;object=k?module-path=/m.so&pin-source=/p&pin-value=1234", "not both"},
		{"duplicate", "pkcs11:token=t;token=u;object=k" + ok, "twice"},
		{"unknown attribute", "pkcs11:token=t;object=k;colour=red" + ok, "unknown attribute"},
		{"unknown query attribute", "pkcs11:token=t;object=k?module-path=/m.so&pin-source=/p&x=1", "unknown attribute"},
		{"public key", "pkcs11:token=t;object=k;type=public" + ok, "type=private"},
		{"bad slot", "pkcs11:slot-id=-1;object=k" + ok, "slot number"},
		{"bad escape", "pkcs11:token=%zz;object=k" + ok, "percent-encoding"},
		{"not name=value", "pkcs11:token;object=k" + ok, "NAME=VALUE"},
		{"remote PIN file", "pkcs11:token=t;object=k?module-path=/m.so&pin-source=file://host/p", "remote"},
		{"PIN from URL", "pkcs11:token=t;object=k?module-path=/m.so&pin-source=https://x/p", "only file:"},
		{"fragment", "pkcs11:token=t;object=k" + ok + "#x", "fragment"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseKeyURI(tt.uri)
			wantCode(t, err, tufota.EInvalid)
			if !strings.Contains(err.Error(), tt.mention) {
				t.Fatalf("err = %q, want it to mention %q", err, tt.mention)
			}
		})
	}
}

func TestPINNeverInMessages(t *testing.T) {
	t.Parallel()
	const pin = "s3cr3t-PIN"
	for _, uri := range []string{
		"pkcs11:token=t?module-path=/m.so&pin-value=" + pin,                    // no object
		"pkcs11:token=t;object=k?module-path=/nonexistent.so&pin-value=" + pin, // missing module
		"pkcs11:token=t;object=k?module-path=/m.so&Pin-Value=" + pin + "&x=1",  // unknown attribute
	} {
		_, err := Open(context.Background(), uri)
		if err == nil {
			t.Fatalf("Open(%q) succeeded", uri)
		}
		if strings.Contains(err.Error(), pin) {
			t.Fatalf("Open error shows the PIN: %v", err)
		}
	}
	if got := RedactKeyURI("pkcs11:token=t;object=k?pin-value=" + pin + "&module-path=/m"); strings.Contains(got, pin) {
		t.Fatalf("RedactKeyURI = %q", got)
	}
	if !HasInlinePIN("pkcs11:token=t;object=k?module-path=/m&pin-value=1") || HasInlinePIN("pkcs11:token=t;object=k?module-path=/m&pin-source=/p") {
		t.Fatal("HasInlinePIN is wrong")
	}
}

// writePINFile writes pin (with a trailing newline, as editors leave it)
// to a 0600 file and returns its path.
func writePINFile(t *testing.T, pin string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "pin")
	if err := os.WriteFile(p, []byte(pin+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func pinSourceURI(h testenv.HSM, object, pinFile string) string {
	return "pkcs11:token=" + escapeAttr(h.TokenLabel) + ";object=" + escapeAttr(object) + "?module-path=" + h.Module + "&pin-source=file:" + pinFile
}

func closeKey(t *testing.T, sv signature.SignerVerifier) {
	t.Helper()
	c, ok := sv.(io.Closer)
	if !ok {
		t.Fatalf("PKCS#11 key %T is not an io.Closer", sv)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestPKCS11SoftHSM runs against a real SoftHSM2 token: create keys in the
// token, open them by URI (pin-value and pin-source), sign TUF metadata and
// verify it with go-tuf, and every error the brief names.
func TestPKCS11SoftHSM(t *testing.T) {
	h := testenv.SoftHSM(t)
	ctx := context.Background()
	pinFile := writePINFile(t, h.PIN)

	kr := NewKeyring()
	t.Cleanup(func() { _ = kr.Close() })

	// Create an ECDSA P-256 key inside the token.
	created, err := kr.CreateKey(ctx, h.KeyURI("root-1"), "")
	if err != nil {
		t.Fatalf("CreateKey: %v", err)
	}
	createdID, err := KeyID(created)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := created.(crypto.Signer); !ok {
		t.Fatalf("created key %T is not a crypto.Signer", created)
	}
	// A second key with the same label is refused.
	_, err = kr.CreateKey(ctx, h.KeyURI("root-1"), AlgECDSAP256)
	wantCode(t, err, tufota.EConflict)
	_, err = kr.CreateKey(ctx, h.KeyURI("ed"), AlgEd25519)
	wantCode(t, err, tufota.EInvalid)

	// Open it again through pin-source: same TUF key ID, signatures that
	// go-tuf accepts on root metadata.
	opened, err := kr.Open(ctx, pinSourceURI(h, "root-1", pinFile))
	if err != nil {
		t.Fatalf("Open(pin-source): %v", err)
	}
	if id, _ := KeyID(opened); id != createdID {
		t.Fatalf("opened key ID %s, want %s", id, createdID)
	}
	assertRootVerifies(t, opened)
	assertGoTUFVerifies(t, opened)

	// The private key is sensitive and not extractable.
	p11ctx, release, err := kr.tokenFor(ctx, mustPKCS11(t, h.KeyURI("root-1")))
	if err != nil {
		t.Fatal(err)
	}
	key, err := findKeyPair(p11ctx.ctx, mustPKCS11(t, h.KeyURI("root-1")))
	if err != nil {
		t.Fatal(err)
	}
	attrs, err := p11ctx.ctx.GetAttributes(key, []crypto11.AttributeType{crypto11.CkaSensitive, crypto11.CkaExtractable})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(attrs[crypto11.CkaSensitive].Value, []byte{1}) || !bytes.Equal(attrs[crypto11.CkaExtractable].Value, []byte{0}) {
		t.Fatalf("private key attributes sensitive=%v extractable=%v, want true/false", attrs[crypto11.CkaSensitive].Value, attrs[crypto11.CkaExtractable].Value)
	}
	release()

	// RSA keys sign RSASSA-PSS, which go-tuf verifies as rsassa-pss-sha256.
	rsaKey, err := kr.CreateKey(ctx, h.KeyURI("rsa-1"), AlgRSA3072)
	if err != nil {
		t.Fatalf("CreateKey(rsa): %v", err)
	}
	if _, ok := rsaKey.(crypto.Signer).Public().(*rsa.PublicKey); !ok {
		t.Fatalf("RSA key public part is %T", rsaKey.(crypto.Signer).Public())
	}
	tk, err := tufKey(rsaKey)
	if err != nil {
		t.Fatal(err)
	}
	if tk.Scheme != "rsassa-pss-sha256" {
		t.Fatalf("RSA key scheme %q, want rsassa-pss-sha256", tk.Scheme)
	}
	assertRootVerifies(t, rsaKey)

	// Concurrent signing through one token session pool.
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			msg := []byte("concurrent")
			sig, err := opened.SignMessage(bytes.NewReader(msg))
			if err == nil {
				err = created.VerifySignature(bytes.NewReader(sig), bytes.NewReader(msg))
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("concurrent sign: %v", err)
		}
	}

	// Errors.
	badModule := filepath.Join(t.TempDir(), "not-a-module.so")
	if err := os.WriteFile(badModule, []byte("not ELF"), 0o600); err != nil {
		t.Fatal(err)
	}
	wrongPINFile := writePINFile(t, "0000"+h.PIN)
	emptyPINFile := writePINFile(t, "")
	tests := []struct {
		name, uri, mention string
		code               tufota.Code
	}{
		{"missing object", h.KeyURI("no-such-key"), `label "no-such-key"`, tufota.ENotFound},
		{"missing token", strings.Replace(h.KeyURI("root-1"), "token="+h.TokenLabel, "token=no-such-token", 1), `token "no-such-token" not found`, tufota.ENotFound},
		{"missing module", strings.Replace(h.KeyURI("root-1"), h.Module, "/nonexistent/libpkcs11.so", 1), "does not exist", tufota.ENotFound},
		{"not a module", strings.Replace(h.KeyURI("root-1"), h.Module, badModule, 1), "cannot be loaded", tufota.EInvalid},
		{"missing PIN file", pinSourceURI(h, "root-1", filepath.Join(t.TempDir(), "nope")), "does not exist", tufota.ENotFound},
		{"empty PIN file", pinSourceURI(h, "root-1", emptyPINFile), "empty", tufota.EInvalid},
		// The keyring is logged in to this token: a different PIN is still refused.
		{"wrong PIN, token open", pinSourceURI(h, "root-1", wrongPINFile), "wrong PIN", tufota.EUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := kr.Open(ctx, tt.uri)
			wantCode(t, err, tt.code)
			if !strings.Contains(err.Error(), tt.mention) {
				t.Fatalf("err = %q, want it to mention %q", err, tt.mention)
			}
			if strings.Contains(err.Error(), h.PIN) {
				t.Fatalf("error shows the PIN: %v", err)
			}
		})
	}

	// Close: keys of a closed keyring no longer sign, the keyring refuses
	// new PKCS#11 keys, and Close is idempotent.
	if err := kr.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := opened.SignMessage(bytes.NewReader([]byte("x"))); err == nil {
		t.Fatal("a key of a closed keyring still signs")
	}
	_, err = kr.Open(ctx, h.KeyURI("root-1"))
	wantCode(t, err, tufota.EInvalid)
	_ = kr.Close()

	// With no session open in the process, a wrong PIN is the token's
	// refusal; the package-level Open's key closes its own session.
	_, err = Open(ctx, pinSourceURI(h, "root-1", wrongPINFile))
	wantCode(t, err, tufota.EUnauthorized)
	sv, err := Open(ctx, pinSourceURI(h, "root-1", pinFile))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if id, _ := KeyID(sv); id != createdID {
		t.Fatalf("Open key ID %s, want %s", id, createdID)
	}
	closeKey(t, sv)
	closeKey(t, sv) // idempotent
	if _, err := sv.SignMessage(bytes.NewReader([]byte("x"))); err == nil {
		t.Fatal("a closed key still signs")
	}
}

// TestPKCS11KeyringSharing checks that keys in one token share one session
// pool that stays open until the last key is closed.
func TestPKCS11KeyringSharing(t *testing.T) {
	h := testenv.SoftHSM(t)
	ctx := context.Background()
	kr := NewKeyring()
	defer kr.Close()
	a, err := kr.CreateKey(ctx, h.KeyURI("a"), "")
	if err != nil {
		t.Fatal(err)
	}
	b, err := kr.CreateKey(ctx, h.KeyURI("b"), "")
	if err != nil {
		t.Fatal(err)
	}
	kr.mu.Lock()
	n := len(kr.tokens)
	kr.mu.Unlock()
	if n != 1 {
		t.Fatalf("keyring holds %d token sessions, want 1", n)
	}
	closeKey(t, a)
	assertGoTUFVerifies(t, b) // b still signs after a is closed
	closeKey(t, b)
	kr.mu.Lock()
	n = len(kr.tokens)
	kr.mu.Unlock()
	if n != 0 {
		t.Fatalf("keyring holds %d token sessions after its keys closed, want 0", n)
	}
	// A key object that is not a P-256 ECDSA key is refused by type.
	p11, release, err := kr.tokenFor(ctx, mustPKCS11(t, h.KeyURI("x")))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p11.ctx.GenerateECDSAKeyPairWithLabel([]byte("p384"), []byte("p384"), elliptic.P384()); err != nil {
		t.Fatal(err)
	}
	release()
	_, err = kr.Open(ctx, h.KeyURI("p384"))
	wantCode(t, err, tufota.EInvalid)
	if !strings.Contains(err.Error(), "P-256") {
		t.Fatalf("err = %v, want it to name P-256", err)
	}
}

func mustPKCS11(t *testing.T, uri string) pkcs11Ref {
	t.Helper()
	ref, err := parseKeyURI(uri)
	if err != nil {
		t.Fatal(err)
	}
	return ref.p11
}

// assertRootVerifies signs root metadata listing sv as the root key and
// verifies it with go-tuf's VerifyDelegate, as a client checks a new root.
func assertRootVerifies(t *testing.T, sv signature.Signer) {
	t.Helper()
	k, err := tufKey(sv)
	if err != nil {
		t.Fatal(err)
	}
	root := metadata.Root(testEpoch)
	for _, role := range []string{metadata.ROOT, metadata.TARGETS, metadata.SNAPSHOT, metadata.TIMESTAMP} {
		if err := root.Signed.AddKey(k, role); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := root.Sign(sv); err != nil {
		t.Fatalf("Sign root: %v", err)
	}
	data, err := root.ToBytes(false)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := new(metadata.Metadata[metadata.RootType]).FromBytes(data)
	if err != nil {
		t.Fatal(err)
	}
	if err := parsed.VerifyDelegate(metadata.ROOT, parsed); err != nil {
		t.Fatalf("go-tuf VerifyDelegate(root): %v", err)
	}
	parsed.Signed.Version++
	if err := root.VerifyDelegate(metadata.ROOT, parsed); err == nil {
		t.Fatal("go-tuf accepted a root signature over modified metadata")
	}
}
