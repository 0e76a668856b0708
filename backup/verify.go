package backup

import (
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"strings"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/config"
	"github.com/theupdateframework/go-tuf/v2/metadata/fetcher"
	"github.com/theupdateframework/go-tuf/v2/metadata/updater"
	"golang.org/x/mod/sumdb/note"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/audit"
	"github.com/tufota/tufota/signer"
	"github.com/tufota/tufota/storage"
)

// RepoReport is what VerifyRepository checked.
type RepoReport struct {
	RootVersion      int64 `json:"root_version"`
	TimestampVersion int64 `json:"timestamp_version"`
	TargetsVersion   int64 `json:"targets_version"`
	// Targets is how many target files were read back and matched their
	// signed length and hashes; Releases how many published releases of
	// the database were found in the signed metadata.
	Targets  int `json:"targets"`
	Releases int `json:"releases"`
}

// blobFetcher serves a blob store to go-tuf's updater: URL
// blobBase+"metadata/X" is blob "metadata/X"; a missing blob answers 404.
type blobFetcher struct {
	ctx   context.Context
	blobs storage.Blobs
}

const blobBase = "https://restore.invalid/"

func (f blobFetcher) DownloadFile(url string, maxLength int64, _ time.Duration) ([]byte, error) {
	key, ok := strings.CutPrefix(url, blobBase)
	if !ok || storage.ValidKey(key) != nil {
		return nil, &metadata.ErrDownloadHTTP{StatusCode: 404, URL: url}
	}
	obj, err := f.blobs.Open(f.ctx, key)
	if errors.Is(err, tufota.ErrNotFound) {
		return nil, &metadata.ErrDownloadHTTP{StatusCode: 404, URL: url}
	}
	if err != nil {
		return nil, err
	}
	defer obj.Close()
	b, err := io.ReadAll(io.LimitReader(obj, maxLength+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > maxLength {
		return nil, &metadata.ErrDownloadLengthMismatch{Msg: fmt.Sprintf("%s exceeds %d bytes", key, maxLength)}
	}
	return b, nil
}

var _ fetcher.Fetcher = blobFetcher{}

// VerifyRepository checks the TUF repository in blobs the way a device
// would, with go-tuf's own updater: starting from trustedRoot (the trust
// anchor devices ship with), it walks the root chain and loads timestamp,
// snapshot and targets, verifying every signature, threshold and version,
// as of refTime (the backup's time, so that metadata that expired since is
// not refused: the server re-signs the online roles when it starts). Then
// it reads back every top-level target and checks its length, SHA-256 and
// SHA-512; and, when db is not nil, checks that every published release
// of the database is signed with the same length and SHA-256. Failures are
// tufota.ErrInvalid naming what is wrong.
func VerifyRepository(ctx context.Context, blobs storage.Blobs, trustedRoot []byte, refTime time.Time, db *storage.DB) (RepoReport, error) {
	var rep RepoReport
	tmp, err := os.MkdirTemp("", "tufota-verify-")
	if err != nil {
		return rep, err
	}
	defer os.RemoveAll(tmp)
	cfg, err := config.New(blobBase+strings.TrimSuffix(signer.MetadataPrefix, "/"), trustedRoot)
	if err != nil {
		return rep, tufota.Errorf(tufota.EInvalid, "verify repository: trusted root: %v", err)
	}
	cfg.LocalMetadataDir = tmp
	cfg.LocalTargetsDir = tmp
	cfg.RemoteTargetsURL = blobBase + strings.TrimSuffix(signer.TargetsPrefix, "/")
	cfg.PrefixTargetsWithHash = true
	cfg.Fetcher = blobFetcher{ctx: ctx, blobs: blobs}
	up, err := updater.New(cfg)
	if err != nil {
		return rep, tufota.Errorf(tufota.EInvalid, "verify repository: load trusted root: %v", err)
	}
	if !refTime.IsZero() {
		up.UnsafeSetRefTime(refTime)
	}
	if err := up.Refresh(); err != nil {
		return rep, tufota.Errorf(tufota.EInvalid, "verify repository: the TUF metadata does not verify: %v", err)
	}
	trusted := up.GetTrustedMetadataSet()
	rep.RootVersion = trusted.Root.Signed.Version
	rep.TimestampVersion = trusted.Timestamp.Signed.Version
	rep.TargetsVersion = trusted.Targets[metadata.TARGETS].Signed.Version
	for p, tf := range up.GetTopLevelTargets() {
		if err := checkTarget(ctx, blobs, p, tf); err != nil {
			return rep, err
		}
		rep.Targets++
	}
	if db == nil {
		return rep, nil
	}
	rows, err := db.Query(ctx, `SELECT target_path, length, sha256 FROM releases WHERE state = 'published' ORDER BY target_path`)
	if err != nil {
		return rep, fmt.Errorf("verify repository: read releases: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var p, sum string
		var length int64
		if err := rows.Scan(&p, &length, &sum); err != nil {
			return rep, fmt.Errorf("verify repository: read releases: %w", err)
		}
		tf, err := up.GetTargetInfo(p)
		if err != nil {
			return rep, tufota.Errorf(tufota.EInvalid, "verify repository: published release %s is not in the signed metadata: %v", p, err)
		}
		if tf.Length != length || tf.Hashes["sha256"].String() != sum {
			return rep, tufota.Errorf(tufota.EInvalid, "verify repository: release %s: the database says %d bytes sha256 %s, the signed metadata %d bytes sha256 %s",
				p, length, sum, tf.Length, tf.Hashes["sha256"].String())
		}
		if _, top := up.GetTopLevelTargets()[p]; !top { // delegated: read it back too
			if err := checkTarget(ctx, blobs, p, tf); err != nil {
				return rep, err
			}
			rep.Targets++
		}
		rep.Releases++
	}
	if err := rows.Err(); err != nil {
		return rep, fmt.Errorf("verify repository: read releases: %w", err)
	}
	return rep, nil
}

// checkTarget streams one target blob and compares it with the signed
// length and hashes.
func checkTarget(ctx context.Context, blobs storage.Blobs, p string, tf *metadata.TargetFiles) error {
	sum := tf.Hashes["sha256"].String()
	key := signer.TargetBlobKey(p, sum)
	obj, err := blobs.Open(ctx, key)
	if err != nil {
		return tufota.Errorf(tufota.EInvalid, "verify repository: target %s: blob %s: %v", p, key, err)
	}
	defer obj.Close()
	hs := map[string]hash.Hash{"sha256": sha256.New(), "sha512": sha512.New()}
	w := io.MultiWriter(hs["sha256"], hs["sha512"])
	n, err := io.Copy(w, io.LimitReader(obj, tf.Length+1))
	if err != nil {
		return fmt.Errorf("verify repository: target %s: %w", p, err)
	}
	if n != tf.Length {
		return tufota.Errorf(tufota.EInvalid, "verify repository: target %s: blob %s has %d bytes, signed length %d", p, key, n, tf.Length)
	}
	for alg, want := range tf.Hashes {
		h, ok := hs[alg]
		if !ok {
			continue
		}
		if got := hex.EncodeToString(h.Sum(nil)); got != want.String() {
			return tufota.Errorf(tufota.EInvalid, "verify repository: target %s: blob %s has %s %s, signed %s", p, key, alg, got, want.String())
		}
	}
	return nil
}

// VerifyAudit verifies the audit log in db (audit.Log.Verify: every entry,
// the Merkle tree and every signed checkpoint) against the checkpoint
// verifier key vkey, without the signing key: it never signs.
func VerifyAudit(ctx context.Context, db *storage.DB, vkey string) (audit.Report, error) {
	v, err := audit.NewNoteVerifier(vkey)
	if err != nil {
		return audit.Report{}, err
	}
	l, err := audit.New(ctx, db, verifyOnly{v}, audit.WithVerifierKey(vkey))
	if err != nil {
		return audit.Report{}, err
	}
	return l.Verify(ctx)
}

// verifyOnly is a note.Signer that carries a verifier's name and key hash
// and refuses to sign: it lets an audit.Log verify without the private key.
type verifyOnly struct{ v note.Verifier }

func (s verifyOnly) Name() string    { return s.v.Name() }
func (s verifyOnly) KeyHash() uint32 { return s.v.KeyHash() }
func (s verifyOnly) Sign([]byte) ([]byte, error) {
	return nil, errors.New("audit: verification only, no signing key")
}
