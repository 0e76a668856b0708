package signer

import (
	"bytes"
	"context"
	"crypto"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/ThalesGroup/crypto11"
	"github.com/miekg/pkcs11"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/tufota/tufota"
)

// PKCS#11 keys are named by RFC 7512 style URIs:
//
//	pkcs11:token=LABEL;object=KEYLABEL?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/tufota/pin
//
// Path attributes (separated by ";"): exactly one of token (label), serial
// or slot-id selects the token; object (CKA_LABEL) and/or id (CKA_ID,
// percent-encoded bytes) select the key pair; type, if given, must be
// "private". Query attributes (separated by "&"): module-path (absolute path
// of the PKCS#11 library, required) and exactly one of pin-source (a file
// holding the user PIN: file:/path or /path; one trailing newline is
// ignored) or pin-value (the PIN inline; for tests only — it lands wherever
// the URI is written). Values are percent-decoded. An attribute may appear
// only once; unknown attributes are refused.

// maxPINFileSize bounds how much of a pin-source file is read.
const maxPINFileSize = 4 << 10

// pkcs11Ref is a parsed pkcs11: URI. It is comparable.
type pkcs11Ref struct {
	token, serial string
	slot          int
	hasSlot       bool
	object        string
	id            string // raw CKA_ID bytes
	module        string
	pinSource     string // path of the PIN file
	pinValue      string
	hasPINValue   bool
}

var (
	pkcs11PathAttrs  = []string{"token", "serial", "slot-id", "object", "id", "type"}
	pkcs11QueryAttrs = []string{"module-path", "pin-source", "pin-value"}
)

// parsePKCS11 parses the part of a pkcs11: URI after the scheme. uri is the
// whole URI for error messages; it is redacted before it is shown.
func parsePKCS11(uri, rest string) (pkcs11Ref, error) {
	shown := redactURI(uri)
	bad := func(format string, args ...any) (pkcs11Ref, error) {
		// The detail may quote attribute values; redact any inline PIN
		// they carry as the URI itself is redacted.
		return pkcs11Ref{}, tufota.Errorf(tufota.EInvalid, "PKCS#11 key URI %q: %s", shown, redactText(fmt.Sprintf(format, args...)))
	}
	path, query, _ := strings.Cut(rest, "?")
	if strings.ContainsAny(rest, "#") {
		return bad("a fragment (#) is not allowed")
	}
	var r pkcs11Ref
	seen := map[string]bool{}
	attrs := func(s, sep string, known []string, set func(name, value string) error) error {
		if s == "" {
			return nil
		}
		for _, part := range strings.Split(s, sep) {
			name, raw, ok := strings.Cut(part, "=")
			if !ok || name == "" {
				return fmt.Errorf("attribute %q is not NAME=VALUE", redactAttr(part))
			}
			name = strings.ToLower(name)
			if !slices.Contains(known, name) {
				if name == "module-name" {
					return fmt.Errorf("module-name is not supported; give the library's absolute path as module-path=")
				}
				return fmt.Errorf("unknown attribute %q (known: %s)", name, strings.Join(known, ", "))
			}
			if seen[name] {
				return fmt.Errorf("attribute %q appears twice", name)
			}
			seen[name] = true
			value, err := url.PathUnescape(raw)
			if err != nil {
				return fmt.Errorf("attribute %q: bad percent-encoding", name)
			}
			if strings.ContainsRune(value, 0) {
				return fmt.Errorf("attribute %q contains a NUL byte", name)
			}
			if err := set(name, value); err != nil {
				return err
			}
		}
		return nil
	}
	err := attrs(path, ";", pkcs11PathAttrs, func(name, v string) error {
		switch name {
		case "token":
			r.token = v
		case "serial":
			r.serial = v
		case "slot-id":
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return fmt.Errorf("slot-id %q is not a slot number", v)
			}
			r.slot, r.hasSlot = n, true
		case "object":
			r.object = v
		case "id":
			r.id = v
		case "type":
			if v != "private" {
				return fmt.Errorf("type=%s: tufota signs with private keys; use type=private or leave it out", v)
			}
		}
		return nil
	})
	if err != nil {
		return bad("%v", err)
	}
	err = attrs(query, "&", pkcs11QueryAttrs, func(name, v string) error {
		switch name {
		case "module-path":
			r.module = v
		case "pin-source":
			p := v
			if s, ok := strings.CutPrefix(v, "file://"); ok {
				host, rest, _ := strings.Cut(s, "/")
				if host != "" && host != "localhost" {
					return fmt.Errorf("pin-source %q names a remote host; the PIN file must be local", v)
				}
				p = "/" + rest
			} else if s, ok := strings.CutPrefix(v, "file:"); ok {
				p = s
			} else if strings.Contains(v, ":") {
				return fmt.Errorf("pin-source %q: only file:PATH is supported", v)
			}
			if p == "" || strings.HasSuffix(p, "/") {
				return fmt.Errorf("pin-source %q names no file", v)
			}
			r.pinSource = p
		case "pin-value":
			if v == "" {
				return errors.New("pin-value is empty")
			}
			r.pinValue, r.hasPINValue = v, true
		}
		return nil
	})
	if err != nil {
		return bad("%v", err)
	}
	selectors := 0
	for _, set := range []bool{r.token != "", r.serial != "", r.hasSlot} {
		if set {
			selectors++
		}
	}
	switch {
	case selectors == 0:
		return bad("name the token with token=LABEL (or serial= or slot-id=)")
	case selectors > 1:
		return bad("name the token one way only: token=, serial= or slot-id=")
	case r.object == "" && r.id == "":
		return bad("name the key with object=LABEL (or id=)")
	case r.module == "":
		return bad("module-path= (the PKCS#11 library, e.g. /usr/lib/softhsm/libsofthsm2.so) is required")
	case !filepath.IsAbs(r.module):
		return bad("module-path %q must be an absolute path", r.module)
	case r.pinSource != "" && r.hasPINValue:
		return bad("give pin-source= or pin-value=, not both")
	case r.pinSource == "" && !r.hasPINValue:
		return bad("no PIN: add pin-source=file:/path/to/pin-file")
	}
	return r, nil
}

// String renders r as a canonical pkcs11: URI with any inline PIN redacted.
func (r pkcs11Ref) String() string { return r.uri(true) }

// uri renders r as a canonical pkcs11: URI; redact replaces an inline PIN.
func (r pkcs11Ref) uri(redact bool) string {
	var path []string
	add := func(name, v string) { path = append(path, name+"="+escapeAttr(v)) }
	switch {
	case r.token != "":
		add("token", r.token)
	case r.serial != "":
		add("serial", r.serial)
	case r.hasSlot:
		add("slot-id", strconv.Itoa(r.slot))
	}
	if r.object != "" {
		add("object", r.object)
	}
	if r.id != "" {
		add("id", r.id)
	}
	q := []string{"module-path=" + escapeAttr(r.module)}
	switch {
	case r.pinSource != "":
		q = append(q, "pin-source="+escapeAttr("file:"+r.pinSource))
	case r.hasPINValue && redact:
		q = append(q, "pin-value=REDACTED")
	case r.hasPINValue:
		q = append(q, "pin-value="+escapeAttr(r.pinValue))
	}
	return "pkcs11:" + strings.Join(path, ";") + "?" + strings.Join(q, "&")
}

// escapeAttr percent-encodes every byte outside RFC 7512's unreserved set
// and the few path characters kept as they are.
func escapeAttr(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-._~/:", c) >= 0 {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}

// redactURI replaces the value of any pin-value attribute in a key URI so
// that it can appear in an error message or a log.
func redactURI(uri string) string { return redactUntil(uri, "&;#") }

// redactText does the same for a message that quotes attribute values: a
// value also ends at a quote or a space.
func redactText(msg string) string { return redactUntil(msg, "&;#\" ") }

// redactUntil replaces every "pin-value=" value in s, each ending at one of
// the bytes in stops, with REDACTED.
func redactUntil(s, stops string) string {
	i := indexASCIIFold(s, "pin-value=")
	if i < 0 {
		return s
	}
	start := i + len("pin-value=")
	end := strings.IndexAny(s[start:], stops)
	rest := ""
	if end >= 0 {
		rest = redactUntil(s[start+end:], stops)
	}
	return s[:start] + "REDACTED" + rest
}

func redactAttr(part string) string {
	if strings.HasPrefix(strings.ToLower(part), "pin-value") {
		return "pin-value=REDACTED"
	}
	return part
}

// HasInlinePIN reports whether uri is a pkcs11: URI that carries its PIN
// inline (pin-value=). Such URIs are for tests: a configuration file must
// use pin-source=file:PATH instead, so that the PIN is never stored in
// plain text next to the key reference.
func HasInlinePIN(uri string) bool {
	ref, err := parseKeyURI(uri)
	if err == nil {
		return ref.scheme == "pkcs11" && ref.p11.hasPINValue
	}
	return indexASCIIFold(uri, "pin-value=") >= 0
}

// indexASCIIFold is strings.Index ignoring ASCII case; unlike
// strings.ToLower it keeps byte offsets of invalid UTF-8 intact. sub must
// be lower case.
func indexASCIIFold(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		j := 0
		for ; j < len(sub); j++ {
			c := s[i+j]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			if c != sub[j] {
				break
			}
		}
		if j == len(sub) {
			return i
		}
	}
	return -1
}

// readPIN returns the user PIN of r.
func (r pkcs11Ref) readPIN() (string, error) {
	if r.hasPINValue {
		if r.pinValue == "" {
			return "", tufota.Errorf(tufota.EInvalid, "PKCS#11 key %s: pin-value is empty", r)
		}
		return r.pinValue, nil
	}
	f, err := os.Open(r.pinSource) // #nosec G304 -- operator-chosen PIN file
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", tufota.Errorf(tufota.ENotFound, "PKCS#11 key %s: PIN file %s does not exist", r, r.pinSource)
		}
		return "", fmt.Errorf("PKCS#11 key %s: open PIN file: %w", r, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxPINFileSize+1))
	if err != nil {
		return "", fmt.Errorf("PKCS#11 key %s: read PIN file: %w", r, err)
	}
	if len(b) > maxPINFileSize {
		return "", tufota.Errorf(tufota.EInvalid, "PKCS#11 key %s: PIN file %s is larger than %d bytes", r, r.pinSource, maxPINFileSize)
	}
	b = bytes.TrimSuffix(b, []byte("\n"))
	b = bytes.TrimSuffix(b, []byte("\r"))
	if len(b) == 0 {
		return "", tufota.Errorf(tufota.EInvalid, "PKCS#11 key %s: PIN file %s is empty", r, r.pinSource)
	}
	return string(b), nil
}

// tokenID names one token of one PKCS#11 module.
type tokenID struct {
	module, token, serial string
	slot                  int
	hasSlot               bool
}

func (r pkcs11Ref) tokenID() tokenID {
	return tokenID{module: r.module, token: r.token, serial: r.serial, slot: r.slot, hasSlot: r.hasSlot}
}

func (t tokenID) String() string {
	switch {
	case t.token != "":
		return fmt.Sprintf("token %q", t.token)
	case t.serial != "":
		return fmt.Sprintf("token with serial %q", t.serial)
	default:
		return fmt.Sprintf("token in slot %d", t.slot)
	}
}

// tokenSession is one crypto11 context (a logged-in session pool) shared by
// every key a Keyring opens in the same token.
type tokenSession struct {
	ctx  *crypto11.Context
	pin  string
	refs int
}

// tokenFor returns the Keyring's session for r's token, logging in on first
// use, with one more reference. The caller must call release.
func (k *Keyring) tokenFor(ctx context.Context, r pkcs11Ref) (*tokenSession, func(), error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	pin, err := r.readPIN()
	if err != nil {
		return nil, nil, err
	}
	id := r.tokenID()
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed {
		return nil, nil, tufota.Errorf(tufota.EInvalid, "keyring is closed")
	}
	ts := k.tokens[id]
	if ts != nil {
		// The token is logged in already, and PKCS#11 would accept
		// any PIN now: compare it with the one that logged in.
		if subtle.ConstantTimeCompare([]byte(ts.pin), []byte(pin)) != 1 {
			return nil, nil, tufota.Errorf(tufota.EUnauthorized, "PKCS#11 %s: wrong PIN", id)
		}
	} else {
		c, err := configureToken(r, id, pin)
		if err != nil {
			return nil, nil, err
		}
		ts = &tokenSession{ctx: c, pin: pin}
		if k.tokens == nil {
			k.tokens = map[tokenID]*tokenSession{}
		}
		k.tokens[id] = ts
	}
	ts.refs++
	var once sync.Once
	release := func() {
		once.Do(func() {
			k.mu.Lock()
			defer k.mu.Unlock()
			ts.refs--
			if ts.refs == 0 && k.tokens[id] == ts {
				delete(k.tokens, id)
				_ = ts.ctx.Close()
			}
		})
	}
	return ts, release, nil
}

// configureToken opens the module and logs in to the token.
func configureToken(r pkcs11Ref, id tokenID, pin string) (*crypto11.Context, error) {
	fi, err := os.Stat(r.module)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, tufota.Errorf(tufota.ENotFound, "PKCS#11 module %s does not exist (module-path of %s)", r.module, r)
	case err != nil:
		return nil, fmt.Errorf("PKCS#11 module %s: %w", r.module, err)
	case fi.IsDir():
		return nil, tufota.Errorf(tufota.EInvalid, "PKCS#11 module %s is a directory, not a library", r.module)
	}
	cfg := &crypto11.Config{Path: r.module, TokenLabel: r.token, TokenSerial: r.serial, Pin: pin}
	if r.hasSlot {
		slot := r.slot
		cfg.SlotNumber = &slot
	}
	c, err := crypto11.Configure(cfg)
	if err == nil {
		return c, nil
	}
	msg := err.Error()
	var p11 pkcs11.Error
	switch {
	case strings.Contains(msg, "failed to open module"):
		return nil, tufota.Errorf(tufota.EInvalid, "PKCS#11 module %s cannot be loaded (not a PKCS#11 library?)", r.module)
	case strings.Contains(msg, "could not find PKCS#11 token"):
		return nil, tufota.Errorf(tufota.ENotFound, "PKCS#11 %s not found in module %s", id, r.module)
	case errors.As(err, &p11) && (p11 == pkcs11.CKR_PIN_INCORRECT || p11 == pkcs11.CKR_PIN_LEN_RANGE || p11 == pkcs11.CKR_PIN_INVALID):
		return nil, tufota.Errorf(tufota.EUnauthorized, "PKCS#11 %s: wrong PIN", id)
	case errors.As(err, &p11) && p11 == pkcs11.CKR_PIN_LOCKED:
		return nil, tufota.Errorf(tufota.EForbidden, "PKCS#11 %s: the user PIN is locked (too many wrong PINs); the security officer must reset it", id)
	case errors.As(err, &p11) && p11 == pkcs11.CKR_USER_PIN_NOT_INITIALIZED:
		return nil, tufota.Errorf(tufota.EInvalid, "PKCS#11 %s has no user PIN set; initialise the token first", id)
	}
	return nil, fmt.Errorf("PKCS#11 %s in module %s: %w", id, r.module, err)
}

// pkcs11Key is a key pair in a token: a SignerVerifier and crypto.Signer
// that holds a reference on its token session until Close.
type pkcs11Key struct {
	signature.SignerVerifier
	crypto.Signer
	release func()
}

var _ io.Closer = (*pkcs11Key)(nil)

// Close releases the key's reference on its token session; the key must not
// be used afterwards. It is idempotent and returns nil.
func (p *pkcs11Key) Close() error {
	p.release()
	return nil
}

// openPKCS11 finds the key pair r names.
func (k *Keyring) openPKCS11(ctx context.Context, r pkcs11Ref) (signature.SignerVerifier, error) {
	ts, release, err := k.tokenFor(ctx, r)
	if err != nil {
		return nil, err
	}
	key, err := findKeyPair(ts.ctx, r)
	if err != nil {
		release()
		return nil, err
	}
	return wrapPKCS11(r, key, release)
}

// findKeyPair returns the one key pair r names; none is ENotFound and more
// than one is EInvalid.
func findKeyPair(c *crypto11.Context, r pkcs11Ref) (crypto11.Signer, error) {
	var id, label []byte
	if r.id != "" {
		id = []byte(r.id)
	}
	if r.object != "" {
		label = []byte(r.object)
	}
	keys, err := c.FindKeyPairs(id, label)
	if err != nil {
		return nil, fmt.Errorf("PKCS#11 key %s: find key pair: %w", r, err)
	}
	switch len(keys) {
	case 0:
		return nil, tufota.Errorf(tufota.ENotFound, "PKCS#11 key %s: no key pair with %s in %s", r, objectDesc(r), r.tokenID())
	case 1:
		return keys[0], nil
	}
	return nil, tufota.Errorf(tufota.EInvalid, "PKCS#11 key %s: %d key pairs match %s in %s; add id= to pick one", r, len(keys), objectDesc(r), r.tokenID())
}

func objectDesc(r pkcs11Ref) string {
	switch {
	case r.object != "" && r.id != "":
		return fmt.Sprintf("label %q and id %x", r.object, r.id)
	case r.object != "":
		return fmt.Sprintf("label %q", r.object)
	}
	return fmt.Sprintf("id %x", r.id)
}

func wrapPKCS11(r pkcs11Ref, key crypto11.Signer, release func()) (signature.SignerVerifier, error) {
	sv, err := NewCryptoSigner(key, crypto.SHA256)
	if err != nil {
		release()
		return nil, fmt.Errorf("PKCS#11 key %s: %w", r, err)
	}
	return &pkcs11Key{SignerVerifier: sv, Signer: sv.(crypto.Signer), release: release}, nil
}

// createPKCS11 generates a key pair inside the token. The private key is
// created sensitive and not extractable: it never leaves the token.
func (k *Keyring) createPKCS11(ctx context.Context, r pkcs11Ref, alg string) (signature.SignerVerifier, error) {
	if r.object == "" {
		return nil, tufota.Errorf(tufota.EInvalid, "create PKCS#11 key %s: name the new key with object=LABEL", r)
	}
	switch alg {
	case "", AlgECDSAP256, AlgRSA3072:
	case AlgEd25519:
		return nil, tufota.Errorf(tufota.EInvalid, "create PKCS#11 key %s: Ed25519 is not supported through PKCS#11 (crypto11 has no EdDSA); use %s", r, AlgECDSAP256)
	default:
		return nil, tufota.Errorf(tufota.EInvalid, "create PKCS#11 key %s: algorithm %q is not supported; use %s or %s", r, alg, AlgECDSAP256, AlgRSA3072)
	}
	ts, release, err := k.tokenFor(ctx, r)
	if err != nil {
		return nil, err
	}
	existing, err := ts.ctx.FindKeyPairs(nil, []byte(r.object))
	if err != nil {
		release()
		return nil, fmt.Errorf("create PKCS#11 key %s: %w", r, err)
	}
	if len(existing) > 0 {
		release()
		return nil, tufota.Errorf(tufota.EConflict, "create PKCS#11 key %s: %s already holds a key pair labelled %q", r, r.tokenID(), r.object)
	}
	id := []byte(r.id)
	if len(id) == 0 {
		id = make([]byte, 16)
		_, _ = rand.Read(id)
	}
	var key crypto11.Signer
	switch alg {
	case "", AlgECDSAP256:
		key, err = ts.ctx.GenerateECDSAKeyPairWithLabel(id, []byte(r.object), elliptic.P256())
	case AlgRSA3072:
		key, err = ts.ctx.GenerateRSAKeyPairWithLabel(id, []byte(r.object), 3072)
	}
	if err != nil {
		release()
		return nil, fmt.Errorf("create PKCS#11 key %s: generate: %w", r, err)
	}
	return wrapPKCS11(r, key, release)
}
