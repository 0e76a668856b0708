package signer

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/kms"
	"github.com/sigstore/sigstore/pkg/signature/options"

	"github.com/tufota/tufota"
)

// KMS keys are named by the URIs of sigstore's KMS providers:
//
//	awskms://[ENDPOINT]/KEY-ID-OR-ALIAS-OR-ARN
//	gcpkms://projects/P/locations/L/keyRings/R/cryptoKeys/K[/cryptoKeyVersions/V]
//	azurekms://VAULT.vault.azure.net/KEY
//	hashivault://KEY
//
// A provider is available only when its package is linked into the program
// (a blank import of github.com/sigstore/sigstore/pkg/signature/kms/aws and
// so on; the tufota command links all four). The providers read their
// credentials the way their cloud SDKs do (environment, instance metadata,
// VAULT_ADDR/VAULT_TOKEN); tufota passes them nothing. Only ECDSA P-256 KMS
// keys are accepted.

// kmsProviders returns the URI prefixes ("awskms://") of the KMS providers
// linked into this program, sorted.
func kmsProviders() []string {
	p := kms.SupportedProviders()
	sort.Strings(p)
	return p
}

// knownKMSSchemes are the sigstore providers tufota documents; a URI with
// one of them whose provider is not linked in gets a clearer error.
var knownKMSSchemes = []string{"awskms", "gcpkms", "azurekms", "hashivault"}

// parseKMS validates a KMS URI whose scheme is scheme.
func parseKMS(uri, scheme, rest string) (keyRef, error) {
	prefix := strings.ToLower(scheme) + "://"
	if !strings.HasPrefix(rest, "//") {
		return keyRef{}, tufota.Errorf(tufota.EInvalid, "KMS key URI %q: want %sKEY", redactURI(uri), prefix)
	}
	if !slices.Contains(kmsProviders(), prefix) {
		return keyRef{}, tufota.Errorf(tufota.EInvalid, "KMS provider %s is not linked into this program; supported schemes: %s", prefix, schemeList())
	}
	name := rest[2:]
	if name == "" {
		return keyRef{}, tufota.Errorf(tufota.EInvalid, "KMS key URI %q names no key", redactURI(uri))
	}
	for _, c := range name {
		if c < 0x21 || c == 0x7f {
			return keyRef{}, tufota.Errorf(tufota.EInvalid, "KMS key URI %q contains a space or control character", redactURI(uri))
		}
	}
	// sigstore matches providers by exact prefix: normalise the scheme.
	return keyRef{scheme: "kms", kms: prefix + name}, nil
}

// isKMSScheme reports whether scheme names a linked or documented KMS
// provider.
func isKMSScheme(scheme string) bool {
	s := strings.ToLower(scheme)
	return slices.Contains(knownKMSSchemes, s) || slices.Contains(kmsProviders(), s+"://")
}

// openKMS resolves a KMS key reference through sigstore's provider.
func openKMS(ctx context.Context, uri string) (signature.SignerVerifier, error) {
	sv, err := getKMS(ctx, uri)
	if err != nil {
		return nil, err
	}
	return wrapKMS(ctx, uri, sv)
}

func getKMS(ctx context.Context, uri string) (kms.SignerVerifier, error) {
	sv, err := kms.Get(ctx, uri, crypto.SHA256)
	if err != nil {
		var nf *kms.ProviderNotFoundError
		if errors.As(err, &nf) {
			return nil, tufota.Errorf(tufota.EInvalid, "KMS key %s: no provider; supported schemes: %s", uri, schemeList())
		}
		return nil, fmt.Errorf("KMS key %s: %w", uri, err)
	}
	return sv, nil
}

// wrapKMS checks the key type and adapts the provider's crypto.Signer, so
// that a KMS key signs exactly like a PKCS#11 one and is a crypto.Signer.
// The provider's calls use ctx's values but not its deadline: the key
// outlives the call that opened it.
func wrapKMS(ctx context.Context, uri string, sv kms.SignerVerifier) (signature.SignerVerifier, error) {
	pub, err := sv.PublicKey(options.WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("KMS key %s: public key: %w", uri, err)
	}
	if ec, ok := pub.(*ecdsa.PublicKey); !ok || ec.Curve != elliptic.P256() {
		return nil, tufota.Errorf(tufota.EInvalid, "KMS key %s is a %s key; tufota uses ECDSA P-256 KMS keys", uri, keyDesc(pub))
	}
	cs, _, err := sv.CryptoSigner(context.WithoutCancel(ctx), nil)
	if err != nil {
		return nil, fmt.Errorf("KMS key %s: %w", uri, err)
	}
	w, err := NewCryptoSigner(cs, crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("KMS key %s: %w", uri, err)
	}
	return w, nil
}

// createKMS creates a key in the KMS (the provider's default algorithm,
// ECDSA P-256 for all four) and opens it. Providers that find an existing
// key under the name return it rather than fail.
func createKMS(ctx context.Context, uri, alg string) (signature.SignerVerifier, error) {
	if alg != "" && alg != AlgECDSAP256 {
		return nil, tufota.Errorf(tufota.EInvalid, "create KMS key %s: algorithm %q is not supported; KMS keys are %s", uri, alg, AlgECDSAP256)
	}
	sv, err := getKMS(ctx, uri)
	if err != nil {
		return nil, err
	}
	if _, err := sv.CreateKey(ctx, sv.DefaultAlgorithm()); err != nil {
		return nil, fmt.Errorf("create KMS key %s: %w", uri, err)
	}
	return wrapKMS(ctx, uri, sv)
}

func keyDesc(pub crypto.PublicKey) string {
	if ec, ok := pub.(*ecdsa.PublicKey); ok {
		return "ECDSA " + ec.Curve.Params().Name
	}
	return fmt.Sprintf("%T", pub)
}
