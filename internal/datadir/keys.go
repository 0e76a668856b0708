package datadir

import (
	"context"
	"crypto"
	"encoding/hex"
	"fmt"
	"io"
	"path/filepath"
	"sort"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/signer"
	"github.com/tufota/tufota/storage"
)

// Opener opens a data directory's blob store (create: make a missing
// bucket); the CLI passes one with the S3 credentials of its environment.
type Opener func(ctx context.Context, dir, url string, create bool) (storage.Blobs, error)

// KeyInfo describes one key: what `tufota key create` and `key show` print.
type KeyInfo struct {
	URI       string `json:"uri,omitempty"`
	KeyID     string `json:"keyid"`
	KeyType   string `json:"keytype"`
	Scheme    string `json:"scheme"`
	PublicKey string `json:"public_key"`
	// Roles that list the key: in DIR/tufota.json (Config) and in the
	// newest root metadata (Root, version RootVersion).
	ConfigRoles []string `json:"config_roles,omitempty"`
	RootRoles   []string `json:"root_roles,omitempty"`
	RootVersion int64    `json:"root_version,omitempty"`
}

// KeyListEntry is one key URI of one role in DIR/tufota.json.
type KeyListEntry struct {
	Role   string `json:"role"`
	URI    string `json:"uri"`
	KeyID  string `json:"keyid,omitempty"`
	InRoot bool   `json:"in_root"`
	Error  string `json:"error,omitempty"`
}

// Keys are the keys of a repository's configuration, opened to learn
// their key IDs, and its newest root metadata.
type Keys struct {
	Config  Config
	Entries []KeyListEntry
	Root    *metadata.Metadata[metadata.RootType] // nil when unreadable
	RootErr error
}

// OpenKeys reads DIR/tufota.json and the newest root metadata and
// opens every configured key to learn its key ID. A key that cannot be
// opened is reported in its entry, not as an error.
func OpenKeys(ctx context.Context, dir string, open Opener, pass func() ([]byte, error)) (*Keys, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	cfg, err := Load(dir)
	if err != nil {
		return nil, err
	}
	ck := &Keys{Config: cfg}
	ck.Root, ck.RootErr = currentRoot(ctx, dir, cfg, open)

	kr := signer.NewKeyring(signer.WithPassphrase(pass))
	defer kr.Close()
	add := func(role, uri string) {
		e := KeyListEntry{Role: role, URI: signer.RedactKeyURI(uri)}
		sv, err := kr.Open(ctx, Resolve(dir, uri))
		if err == nil {
			e.KeyID, err = signer.KeyID(sv)
		}
		if err != nil {
			e.Error = err.Error()
		}
		if ck.Root != nil && e.KeyID != "" {
			if r, ok := ck.Root.Signed.Roles[role]; ok {
				for _, id := range r.KeyIDs {
					e.InRoot = e.InRoot || id == e.KeyID
				}
			}
		}
		ck.Entries = append(ck.Entries, e)
	}
	for _, u := range cfg.Keys.Root {
		add("root", u)
	}
	for _, u := range cfg.Keys.Targets {
		add("targets", u)
	}
	add("snapshot", cfg.Keys.Snapshot)
	add("timestamp", cfg.Keys.Timestamp)
	add("audit", cfg.Keys.Audit)
	return ck, nil
}

// currentRoot reads the newest root metadata from the repository's blobs.
func currentRoot(ctx context.Context, dir string, cfg Config, open Opener) (*metadata.Metadata[metadata.RootType], error) {
	blobs, err := open(ctx, dir, cfg.Storage, false)
	if err != nil {
		return nil, err
	}
	if c, ok := blobs.(io.Closer); ok {
		defer c.Close()
	}
	data, err := signer.NewRepository(blobs).Root(ctx)
	if err != nil {
		return nil, err
	}
	root, err := new(metadata.Metadata[metadata.RootType]).FromBytes(data)
	if err != nil {
		return nil, fmt.Errorf("parse root metadata: %w", err)
	}
	return root, nil
}

// ShowKey describes the key arg names, a key URI (opened with pass) or a
// TUF key ID (looked up in dir's root metadata), and, with dir, the roles
// that list it in DIR/tufota.json and in the newest root metadata.
func ShowKey(ctx context.Context, arg, dir string, open Opener, pass func() ([]byte, error)) (KeyInfo, error) {
	var info KeyInfo
	var ck *Keys
	if dir != "" {
		var err error
		if ck, err = OpenKeys(ctx, dir, open, pass); err != nil {
			return info, err
		}
	}
	if _, uriErr := signer.KeyURIScheme(arg); uriErr == nil {
		kr := signer.NewKeyring(signer.WithPassphrase(pass))
		defer kr.Close()
		sv, err := kr.Open(ctx, arg)
		if err != nil {
			return info, fmt.Errorf("key show: %w", err)
		}
		if info, err = DescribeKey(sv); err != nil {
			return info, err
		}
		info.URI = signer.RedactKeyURI(arg)
	} else if IsKeyID(arg) {
		if ck == nil {
			return info, tufota.Errorf(tufota.EInvalid, "key show %s: a key ID needs --dir to look it up", arg)
		}
		if ck.Root == nil {
			return info, fmt.Errorf("key show %s: %w", arg, ck.RootErr)
		}
		k, ok := ck.Root.Signed.Keys[arg]
		if !ok {
			return info, tufota.Errorf(tufota.ENotFound, "key show: the root metadata lists no key %s", arg)
		}
		pub, err := k.ToPublicKey()
		if err != nil {
			return info, fmt.Errorf("key show %s: %w", arg, err)
		}
		pem, err := cryptoutils.MarshalPublicKeyToPEM(pub)
		if err != nil {
			return info, err
		}
		info = KeyInfo{KeyID: arg, KeyType: k.Type, Scheme: k.Scheme, PublicKey: string(pem)}
		for _, e := range ck.Entries {
			if e.KeyID == arg {
				info.URI = e.URI
			}
		}
	} else {
		return info, tufota.Errorf(tufota.EInvalid, "key show: %q is neither a key URI (%v) nor a TUF key ID (64 hex digits)", signer.RedactKeyURI(arg), uriErr)
	}
	if ck != nil {
		for _, e := range ck.Entries {
			if e.KeyID == info.KeyID {
				info.ConfigRoles = append(info.ConfigRoles, e.Role)
			}
		}
		if ck.Root != nil {
			info.RootVersion = ck.Root.Signed.Version
			for role, r := range ck.Root.Signed.Roles {
				for _, id := range r.KeyIDs {
					if id == info.KeyID {
						info.RootRoles = append(info.RootRoles, role)
					}
				}
			}
			sort.Strings(info.RootRoles)
		}
	}
	return info, nil
}

// IsKeyID reports whether s is a TUF key ID: 64 hex digits.
func IsKeyID(s string) bool {
	b, err := hex.DecodeString(s)
	return err == nil && len(b) == 32
}

// DescribeKey returns the public parts of sv.
func DescribeKey(sv signature.SignerVerifier) (KeyInfo, error) {
	pub, err := sv.PublicKey()
	if err != nil {
		return KeyInfo{}, fmt.Errorf("public key: %w", err)
	}
	k, err := metadata.KeyFromPublicKey(pub)
	if err != nil {
		return KeyInfo{}, tufota.Errorf(tufota.EInvalid, "public key of type %T: %v", pub, err)
	}
	id, err := signer.KeyID(sv)
	if err != nil {
		return KeyInfo{}, err
	}
	pem, err := cryptoutils.MarshalPublicKeyToPEM(crypto.PublicKey(pub))
	if err != nil {
		return KeyInfo{}, err
	}
	return KeyInfo{KeyID: id, KeyType: k.Type, Scheme: k.Scheme, PublicKey: string(pem)}, nil
}
