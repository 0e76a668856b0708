package signer

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/secure-systems-lab/go-securesystemslib/cjson"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/storage"
)

// Limits on target paths.
const (
	maxTargetPathLen      = 512
	maxTargetPathSegments = 8
)

// Target is a staged file to publish under a TUF target path, with the
// custom metadata to sign into it (a JSON object such as
// tufota.MarshalCustom returns, or empty).
type Target struct {
	Path   string
	Staged Staged
	Custom json.RawMessage
}

// ValidateTargetPath checks a TUF target path: 1 to 8 slash-separated
// segments, each a tufota.ValidateName name ('+' is also allowed, for
// semver build metadata); so no leading or trailing '/', no empty, "." or
// ".." segment. Errors are tufota.EInvalid.
func ValidateTargetPath(p string) error {
	if p == "" {
		return tufota.Errorf(tufota.EInvalid, "target path is empty")
	}
	if len(p) > maxTargetPathLen {
		return tufota.Errorf(tufota.EInvalid, "target path is longer than %d bytes", maxTargetPathLen)
	}
	if strings.HasPrefix(p, "/") || strings.HasSuffix(p, "/") {
		return tufota.Errorf(tufota.EInvalid, "target path %q must not start or end with '/'", p)
	}
	segs := strings.Split(p, "/")
	if len(segs) > maxTargetPathSegments {
		return tufota.Errorf(tufota.EInvalid, "target path %q has more than %d segments", p, maxTargetPathSegments)
	}
	for _, seg := range segs {
		err := tufota.ValidateName("target path segment", seg)
		if err != nil && strings.Contains(seg, "+") &&
			tufota.ValidateName("target path segment", strings.ReplaceAll(seg, "+", "_")) == nil {
			err = nil
		}
		if err != nil {
			return tufota.Errorf(tufota.EInvalid, "target path %q: %w", p, err)
		}
	}
	return nil
}

// TargetBlobKey returns the blob key a published target's bytes live under:
// "targets/<dir>/<sha256>.<base>" (consistent snapshots), which is also the
// URL path below /tuf/ that TUF clients request.
func TargetBlobKey(targetPath, sha256Hex string) string {
	dir, base := path.Split(targetPath)
	return TargetsPrefix + dir + sha256Hex + "." + base
}

// checkTarget validates one Target before any I/O.
func checkTarget(t Target) error {
	if err := ValidateTargetPath(t.Path); err != nil {
		return err
	}
	if err := validStagedKey(t.Staged.Key); err != nil {
		return fmt.Errorf("target %s: %w", t.Path, err)
	}
	if t.Staged.Length <= 0 {
		return tufota.Errorf(tufota.EInvalid, "target %s: length %d must be positive", t.Path, t.Staged.Length)
	}
	if b, err := hex.DecodeString(t.Staged.SHA256); err != nil || len(b) != 32 || strings.ToLower(t.Staged.SHA256) != t.Staged.SHA256 {
		return tufota.Errorf(tufota.EInvalid, "target %s: sha256 %q is not 64 lower-case hex digits", t.Path, t.Staged.SHA256)
	}
	if len(t.Custom) > 0 {
		var obj map[string]any
		if err := json.Unmarshal(t.Custom, &obj); err != nil || obj == nil {
			return tufota.Errorf(tufota.EInvalid, "target %s: custom metadata is not a JSON object", t.Path)
		}
		if _, err := cjson.EncodeCanonical(obj); err != nil {
			// Canonical JSON (what TUF signs) has no floating-point numbers.
			return tufota.Errorf(tufota.EInvalid, "target %s: custom metadata cannot be canonicalised for signing: %v", t.Path, err)
		}
	}
	return nil
}

// Publish adds targets to the repository and publishes new metadata:
// targets version v+1 (signed by s.Targets, at least the role's threshold),
// snapshot v+1 and timestamp v+1, with expiry dates from the expiry policy.
// Each staged blob moves to TargetBlobKey(path, sha256). The new
// N.targets.json and N.snapshot.json are written before timestamp.json, so
// a failure at any step leaves the old repository complete and valid (a
// moved target blob is then an unreferenced file, reused by a retry).
//
// Errors: a bad path, staged key, hash or custom field is tufota.EInvalid;
// a path already published is tufota.EConflict; a missing staged blob is
// tufota.ENotFound; too few targets signers is tufota.EInvalid and a signer
// that is not a key of the role tufota.EForbidden (nothing is written in
// either case). Publish is serialised with other writers.
func (r *Repository) Publish(ctx context.Context, s Signers, add ...Target) (targetsVersion int64, err error) {
	if err := checkTargets(add); err != nil {
		return 0, fmt.Errorf("publish: %w", err)
	}
	unlock, err := r.lock(ctx)
	if err != nil {
		return 0, fmt.Errorf("publish: %w", err)
	}
	defer unlock()
	return r.publishLocked(ctx, s, add)
}

// publishLocked is Publish for a caller that holds the writer lock and
// checked add.
func (r *Repository) publishLocked(ctx context.Context, s Signers, add []Target) (targetsVersion int64, err error) {
	st, err := r.load(ctx)
	if err != nil {
		return 0, fmt.Errorf("publish: %w", err)
	}
	if st.bins != nil {
		return r.publishBinsLocked(ctx, st, s, add)
	}
	targets := st.targets
	if err := r.nextTargets(ctx, targets, st.next(RoleTargets), add); err != nil {
		return 0, fmt.Errorf("publish: %w", err)
	}
	v := targets.Signed.Version
	// Sign everything before touching the store: a signing failure (too
	// few keys, a wrong key) leaves the staged blobs where they are.
	files, err := r.signChain(st.root, targets, false, st, s)
	if err != nil {
		return 0, fmt.Errorf("publish targets v%d: %w", v, err)
	}
	for _, t := range add {
		if err := r.moveStaged(ctx, t); err != nil {
			return 0, fmt.Errorf("publish targets v%d: %w", v, err)
		}
	}
	if err := r.writeChain(ctx, files); err != nil {
		return 0, fmt.Errorf("publish targets v%d: %w", v, err)
	}
	paths := make([]string, len(add))
	for i, t := range add {
		paths[i] = t.Path
	}
	r.log.InfoContext(ctx, "tuf targets published", "targets_version", v, "paths", paths)
	return v, nil
}

// checkTargets validates the targets of one publish before any I/O.
func checkTargets(add []Target) error {
	if len(add) == 0 {
		return tufota.Errorf(tufota.EInvalid, "no targets given")
	}
	seen := map[string]bool{}
	for _, t := range add {
		if err := checkTarget(t); err != nil {
			return err
		}
		if seen[t.Path] {
			return tufota.Errorf(tufota.EInvalid, "target %s is given twice", t.Path)
		}
		if seen[t.Staged.Key] {
			return tufota.Errorf(tufota.EInvalid, "staged upload %s is given for two targets", t.Staged.Key)
		}
		seen[t.Path], seen[t.Staged.Key] = true, true
	}
	return nil
}

// nextTargets turns targets (the current metadata) into the next version,
// version (state.next), with a new expiry date and add's files. A path
// already published is tufota.EConflict and a missing staged upload
// tufota.ENotFound.
func (r *Repository) nextTargets(ctx context.Context, targets *metadata.Metadata[metadata.TargetsType], version int64, add []Target) error {
	for _, t := range add {
		if _, ok := targets.Signed.Targets[t.Path]; ok {
			return tufota.Errorf(tufota.EConflict, "target %s is published already", t.Path)
		}
		if dr := coveringRole(targets.Signed.Delegations, t.Path); dr != nil {
			return tufota.Errorf(tufota.EInvalid, "target %s is delegated to role %s (paths %s): only that role's keys sign it, not the top-level targets keys", t.Path, dr.Name, strings.Join(dr.Paths, ", "))
		}
	}
	for _, t := range add {
		if err := r.checkStaged(ctx, t); err != nil {
			return err
		}
	}
	targets.ClearSignatures()
	targets.Signed.Version = version
	targets.Signed.Expires = r.expires(r.expiry.Targets)
	for _, t := range add {
		sum, _ := hex.DecodeString(t.Staged.SHA256) // checked by checkTarget
		tf := &metadata.TargetFiles{
			Length: t.Staged.Length,
			// Only SHA-256: with consistent snapshots a client may fetch
			// the file under any listed hash (go-tuf picks one at random),
			// and the repository stores it once, under its SHA-256.
			Hashes: metadata.Hashes{"sha256": sum},
			Path:   t.Path,
		}
		if len(t.Custom) > 0 {
			c := json.RawMessage(append([]byte(nil), t.Custom...))
			tf.Custom = &c
		}
		targets.Signed.Targets[t.Path] = tf
	}
	return nil
}

// checkStaged checks that t's staged blob exists with the right length, or,
// after a publish that failed past moving it, that the target blob does.
func (r *Repository) checkStaged(ctx context.Context, t Target) error {
	info, err := r.blobs.Stat(ctx, t.Staged.Key)
	if errors.Is(err, tufota.ErrNotFound) {
		dst := TargetBlobKey(t.Path, t.Staged.SHA256)
		dinfo, derr := r.blobs.Stat(ctx, dst)
		if derr == nil && dinfo.Size == t.Staged.Length {
			return nil
		}
		return tufota.Errorf(tufota.ENotFound, "target %s: staged upload %s not found", t.Path, t.Staged.Key)
	}
	if err != nil {
		return fmt.Errorf("target %s: stat %s: %w", t.Path, t.Staged.Key, err)
	}
	if info.Size != t.Staged.Length {
		return tufota.Errorf(tufota.EInvalid, "target %s: staged upload is %d bytes, expected %d", t.Path, info.Size, t.Staged.Length)
	}
	return nil
}

// moveStaged moves t's staged blob to its target key: a storage.Mover
// moves it in place, otherwise it is copied (Put is atomic) and deleted.
func (r *Repository) moveStaged(ctx context.Context, t Target) error {
	src, dst := t.Staged.Key, TargetBlobKey(t.Path, t.Staged.SHA256)
	if _, err := r.blobs.Stat(ctx, src); errors.Is(err, tufota.ErrNotFound) {
		// Moved by an earlier attempt: the target blob must be there.
		info, derr := r.blobs.Stat(ctx, dst)
		if derr != nil || info.Size != t.Staged.Length {
			return tufota.Errorf(tufota.ENotFound, "target %s: staged upload %s is gone and %s is missing or incomplete", t.Path, src, dst)
		}
		return nil
	}
	if err := r.step("move " + dst); err != nil {
		return err
	}
	return r.moveBlob(ctx, src, dst, t.Staged.Length)
}

// unmoveStaged rolls back moveStaged for a publish that did not complete:
// t's blob goes from its target key back to its staging key. It reports
// whether it moved one. A blob still staged stays, and a copy of it at
// the target key (a copy-and-delete move cut between the two) is removed;
// a blob at neither key is left missing. The caller holds the writer lock
// and checked that t is not in signed metadata (no client is told to
// fetch its target key).
func (r *Repository) unmoveStaged(ctx context.Context, t Target) (bool, error) {
	src, dst := TargetBlobKey(t.Path, t.Staged.SHA256), t.Staged.Key
	if err := validStagedKey(dst); err != nil {
		return false, fmt.Errorf("target %s: %w", t.Path, err)
	}
	if _, err := r.blobs.Stat(ctx, dst); err == nil {
		if _, err := r.blobs.Stat(ctx, src); errors.Is(err, tufota.ErrNotFound) {
			return false, nil
		}
		if err := r.step("delete " + src); err != nil {
			return false, err
		}
		if err := r.blobs.Delete(ctx, src); err != nil && !errors.Is(err, tufota.ErrNotFound) {
			return false, fmt.Errorf("remove the copy at %s: %w", src, err)
		}
		return false, nil
	} else if !errors.Is(err, tufota.ErrNotFound) {
		return false, fmt.Errorf("stat %s: %w", dst, err)
	}
	info, err := r.blobs.Stat(ctx, src)
	if errors.Is(err, tufota.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("stat %s: %w", src, err)
	}
	if info.Size != t.Staged.Length {
		return false, tufota.Errorf(tufota.EInternal, "target %s: %s is %d bytes, the staged upload was %d", t.Path, src, info.Size, t.Staged.Length)
	}
	if err := r.step("move " + dst); err != nil {
		return false, err
	}
	if err := r.moveBlob(ctx, src, dst, t.Staged.Length); err != nil {
		return false, err
	}
	return true, nil
}

// moveBlob moves blob src (of length n) to dst: a storage.Mover moves it in
// place, otherwise it is copied (Put is atomic) and src deleted.
func (r *Repository) moveBlob(ctx context.Context, src, dst string, n int64) error {
	if m, ok := r.blobs.(storage.Mover); ok {
		if err := m.Move(ctx, src, dst); err != nil {
			return fmt.Errorf("move %s to %s: %w", src, dst, err)
		}
		return nil
	}
	obj, err := r.blobs.Open(ctx, src)
	if err != nil {
		return fmt.Errorf("open %s: %w", src, err)
	}
	written, err := r.blobs.Put(ctx, dst, obj)
	_ = obj.Close() // read-only; Put's result decides
	if err != nil {
		return fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	if written != n {
		return tufota.Errorf(tufota.EInternal, "copy %s to %s: wrote %d bytes, expected %d", src, dst, written, n)
	}
	if err := r.step("delete " + src); err != nil {
		return err
	}
	if err := r.blobs.Delete(ctx, src); err != nil {
		r.log.WarnContext(ctx, "move blob: delete the source", "key", src, "err", err)
	}
	return nil
}

// Refresh re-signs online metadata that expires within margin of now:
// timestamp, snapshot, targets and, in a hashed-bin repository, each bin
// ("bins" in the result) when s.Targets holds at least the
// targets threshold of the role's keys (otherwise a due targets role is
// logged as a warning and left alone, so that an offline targets role
// never stops timestamp and snapshot refreshes). A
// re-signed targets forces a new snapshot, and a new snapshot a new
// timestamp. It returns the names of the roles re-signed, in the order
// "targets", "bins", "snapshot", "timestamp", or none. Root expiry needs the
// offline root keys and is only reported by Expiries. Refresh is
// serialised with other writers.
func (r *Repository) Refresh(ctx context.Context, s Signers, margin time.Duration) (refreshed []string, err error) {
	unlock, err := r.lock(ctx)
	if err != nil {
		return nil, fmt.Errorf("refresh: %w", err)
	}
	defer unlock()

	st, err := r.load(ctx)
	if err != nil {
		return nil, fmt.Errorf("refresh: %w", err)
	}
	limit := r.now().Add(margin)
	due := func(exp time.Time) bool { return !exp.After(limit) }

	var targets *metadata.Metadata[metadata.TargetsType]
	if due(st.targets.Signed.Expires) {
		if n, need := countRoleSigners(st.root, RoleTargets, s.Targets); n >= need {
			targets = st.targets
			targets.Signed.Version = st.next(RoleTargets)
			targets.Signed.Expires = r.expires(r.expiry.Targets)
			refreshed = append(refreshed, RoleTargets)
		} else {
			// Offline targets keys (a k-of-n release role): the release
			// engineers must re-sign. Keep timestamp and snapshot fresh.
			r.log.WarnContext(ctx, "tuf targets metadata expires soon and too few targets keys are online to re-sign it",
				"expires", st.targets.Signed.Expires, "online_keys", n, "threshold", need)
		}
	}
	var binFiles []metaFile
	if st.bins != nil {
		if n, need := countRoleSigners(st.root, RoleTargets, s.Targets); n >= need {
			if binFiles, err = r.refreshBins(ctx, st, s, limit); err != nil {
				return nil, fmt.Errorf("refresh: %w", err)
			}
			if len(binFiles) > 0 {
				refreshed = append(refreshed, BinsPrefix)
			}
		} else {
			r.log.WarnContext(ctx, "hashed-bin repository without its online targets key: bins that expire are not re-signed",
				"online_keys", n, "threshold", need)
		}
	}
	for role, md := range st.delegated {
		if st.bins != nil && st.bins.IsDelegatedRole(role) {
			continue // re-signed above
		}
		if due(md.Signed.Expires) {
			r.log.WarnContext(ctx, "delegated targets metadata expires soon; its key holders must sign a new version (tufota delegation renew, or the role's next release)",
				"role", role, "expires", md.Signed.Expires)
		}
	}
	if due(st.root.Signed.Expires) {
		r.log.WarnContext(ctx, "tuf root metadata expires soon; sign a new root with the offline root keys",
			"expires", st.root.Signed.Expires)
	}

	var files []metaFile
	switch {
	case targets != nil || len(binFiles) > 0 || due(st.snapshot.Signed.Expires):
		refreshed = append(refreshed, RoleSnapshot, RoleTimestamp)
		files, err = r.signChain(st.root, targets, false, st, s)
		files = append(binFiles, files...)
	case due(st.timestamp.Signed.Expires):
		refreshed = append(refreshed, RoleTimestamp)
		files, err = r.signTimestamp(st, s.Timestamp)
	default:
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("refresh: %w", err)
	}
	if err := r.writeChain(ctx, files); err != nil {
		return nil, fmt.Errorf("refresh: %w", err)
	}
	r.log.InfoContext(ctx, "tuf metadata refreshed", "roles", refreshed)
	return refreshed, nil
}

// signTimestamp re-signs the timestamp with a new version and expiry,
// naming the same snapshot.
func (r *Repository) signTimestamp(st *state, s signature.Signer) ([]metaFile, error) {
	ts := st.timestamp
	ts.Signed.Version++
	ts.Signed.Expires = r.expires(r.expiry.Timestamp)
	if err := signRole(st.root, RoleTimestamp, ts, []signature.Signer{s}); err != nil {
		return nil, fmt.Errorf("sign timestamp v%d: %w", ts.Signed.Version, err)
	}
	data, err := ts.ToBytes(true)
	if err != nil {
		return nil, fmt.Errorf("encode timestamp v%d: %w", ts.Signed.Version, err)
	}
	return []metaFile{{name: "timestamp.json", data: data}}, nil
}

// countRoleSigners returns how many distinct keys of role are among
// signers, and the role's threshold.
func countRoleSigners(root *metadata.Metadata[metadata.RootType], role string, signers []signature.Signer) (n, threshold int) {
	rr, ok := root.Signed.Roles[role]
	if !ok {
		return 0, 1
	}
	seen := map[string]bool{}
	for _, s := range signers {
		if s == nil {
			continue
		}
		id, err := KeyID(s)
		if err != nil || seen[id] || !slices.Contains(rr.KeyIDs, id) {
			continue
		}
		seen[id] = true
	}
	return len(seen), rr.Threshold
}
