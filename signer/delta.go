package signer

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/delta"
	"github.com/tufota/tufota/storage"
)

// Delta states.
const (
	DeltaPublished = "published" // a signed target of its own
	DeltaTooLarge  = "too_large" // over the share of the full image: not offered
	DeltaFailed    = "failed"    // could not be made or published; Message says why
)

// Delta is a binary delta between two published releases of one product,
// as recorded in the deltas table.
type Delta struct {
	Name        string `json:"name"`
	BaseVersion string `json:"base_version"`
	Version     string `json:"version"`
	State       string `json:"state"`
	TargetPath  string `json:"target_path,omitempty"`
	Length      int64  `json:"length"`
	SHA256      string `json:"sha256,omitempty"`
	// FullLength is the length of the full image the delta produces.
	FullLength int64  `json:"full_length"`
	Message    string `json:"message,omitempty"`
	// CreateMillis is how long making the delta took.
	CreateMillis int64     `json:"create_ms"`
	CreatedAt    time.Time `json:"created_at"`
}

// DeltaPair is a delta the server may make: from Base to Result.
type DeltaPair struct {
	Base, Result Release
}

// DeltaOptions bounds MakeDelta. The zero value takes the defaults.
type DeltaOptions struct {
	// MaxShare is the largest delta offered, as a share of the full image
	// (default 0.6).
	MaxShare float64
	// MaxImage is the largest image a delta is made of (default 512 MiB):
	// making one holds both images and a suffix array, about 10 bytes per
	// image byte.
	MaxImage int64
}

func (o DeltaOptions) withDefaults() DeltaOptions {
	if o.MaxShare <= 0 {
		o.MaxShare = 0.6
	}
	if o.MaxImage <= 0 {
		o.MaxImage = 512 << 20
	}
	return o
}

// Deltas returns the deltas recorded for the result release NAME@VERSION,
// by base version.
func (r *Releases) Deltas(ctx context.Context, name, version string) ([]Delta, error) {
	rows, err := r.db.Query(ctx, `SELECT name, base_version, version, state, target_path, length, sha256, full_length, message, create_ms, created_at
		FROM deltas WHERE name = ? AND version = ? ORDER BY base_version`, name, version)
	if err != nil {
		return nil, fmt.Errorf("list deltas of %s@%s: %w", name, version, err)
	}
	defer rows.Close()
	out := []Delta{}
	for rows.Next() {
		var (
			d       Delta
			created int64
		)
		if err := rows.Scan(&d.Name, &d.BaseVersion, &d.Version, &d.State, &d.TargetPath, &d.Length, &d.SHA256, &d.FullLength, &d.Message, &d.CreateMillis, &created); err != nil {
			return nil, fmt.Errorf("list deltas: %w", err)
		}
		d.CreatedAt = time.Unix(0, created).UTC()
		out = append(out, d)
	}
	return out, rows.Err()
}

// DeltaCandidates returns the pairs a delta should be made for and has not
// been considered yet: for each published release signed by the top-level
// targets role, as bases, the maxBases newest published releases of the
// same product below it that share a hardware ID with it and, when running
// is not nil, up to maxBases more of those that running reports devices
// run (fleet state). Newest results first.
func (r *Releases) DeltaCandidates(ctx context.Context, maxBases int, running func(base Release) bool) ([]DeltaPair, error) {
	rels, err := r.list(ctx, `WHERE state = ? AND role = ?`, StatePublished, RoleTargets)
	if err != nil {
		return nil, err
	}
	done := map[[3]string]bool{}
	rows, err := r.db.Query(ctx, `SELECT name, base_version, version FROM deltas`)
	if err != nil {
		return nil, fmt.Errorf("list deltas: %w", err)
	}
	for rows.Next() {
		var k [3]string
		if err := rows.Scan(&k[0], &k[1], &k[2]); err != nil {
			_ = rows.Close()
			return nil, fmt.Errorf("list deltas: %w", err)
		}
		done[k] = true
	}
	_ = rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list deltas: %w", err)
	}
	// Newest version first within each product.
	slices.SortStableFunc(rels, func(a, b Release) int {
		if a.Name != b.Name {
			return cmp.Compare(a.Name, b.Name)
		}
		c, _ := tufota.CompareVersions(b.Version, a.Version)
		return c
	})
	var out []DeltaPair
	for i, res := range rels {
		history, fleet := 0, 0
		for _, base := range rels[i+1:] {
			if base.Name != res.Name || (history >= maxBases && (running == nil || fleet >= maxBases)) {
				break
			}
			if c, err := tufota.CompareVersions(base.Version, res.Version); err != nil || c >= 0 || !shareHardware(base, res) {
				continue
			}
			switch {
			case history < maxBases:
				history++
			case running != nil && fleet < maxBases && running(base):
				fleet++
			default:
				continue
			}
			if !done[[3]string{res.Name, base.Version, res.Version}] {
				out = append(out, DeltaPair{Base: base, Result: res})
			}
		}
	}
	return out, nil
}

func shareHardware(a, b Release) bool {
	for _, hw := range a.Hardware {
		if slices.Contains(b.Hardware, hw) {
			return true
		}
	}
	return false
}

// MakeDelta makes the delta from p.Base to p.Result and, if it is at most
// opt.MaxShare of the full image, publishes it as a TUF target of its own
// (delta.TargetPath), signed with the server's online targets key, whose
// custom metadata (delta.TargetCustom) names both firmware targets'
// lengths and hashes. The outcome (published, too_large or failed) is
// recorded in the deltas table in one transaction with whatever record
// adds (the caller's audit entry), and returned; the error is non-nil only
// when nothing could be recorded, or ctx ended.
//
// Only the top-level targets role signed by keys the server holds is
// supported: a repository whose targets are signed offline, or a release of
// a delegated role, gets no deltas (tufota.EInvalid, recorded as failed).
// MakeDelta is safe for concurrent use but meant for one background worker.
func (r *Releases) MakeDelta(ctx context.Context, p DeltaPair, opt DeltaOptions, record func(tx *storage.Tx, d Delta) error) (Delta, error) {
	opt = opt.withDefaults()
	base, res := p.Base, p.Result
	d := Delta{Name: res.Name, BaseVersion: base.Version, Version: res.Version, FullLength: res.Length,
		TargetPath: delta.TargetPath(res.Name, res.Version, base.Version)}
	start := time.Now()
	err := r.makeDelta(ctx, p, opt, &d)
	d.CreateMillis = time.Since(start).Milliseconds()
	switch {
	case ctx.Err() != nil:
		return Delta{}, ctx.Err()
	case err != nil && d.State == "":
		d.State, d.Message, d.TargetPath = DeltaFailed, truncateMsg(err.Error(), 512), ""
	}
	d.CreatedAt = r.now().UTC()
	err = r.db.Tx(ctx, func(tx *storage.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO deltas (name, base_version, version, state, target_path, length, sha256, full_length, message, create_ms, created_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, d.Name, d.BaseVersion, d.Version, d.State, d.TargetPath, d.Length, d.SHA256,
			d.FullLength, d.Message, d.CreateMillis, d.CreatedAt.UnixNano()); err != nil {
			return err
		}
		if record != nil {
			return record(tx, d)
		}
		return nil
	})
	if err != nil {
		return d, fmt.Errorf("record delta %s@%s→%s: %w", d.Name, d.BaseVersion, d.Version, err)
	}
	return d, nil
}

func truncateMsg(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

func (r *Releases) makeDelta(ctx context.Context, p DeltaPair, opt DeltaOptions, d *Delta) error {
	base, res := p.Base, p.Result
	if base.Role != RoleTargets || res.Role != RoleTargets {
		return tufota.Errorf(tufota.EInvalid, "deltas are made only for releases of the top-level targets role")
	}
	signers := r.Signers()
	online, err := r.repo.canSignTargets(ctx, signers.Targets)
	if err != nil {
		return err
	}
	if !online {
		return tufota.Errorf(tufota.EInvalid, "the server holds too few targets keys to sign a delta (offline-signed targets get no deltas)")
	}
	if base.Length > opt.MaxImage || res.Length > opt.MaxImage {
		return tufota.Errorf(tufota.ETooLarge, "images of %d and %d bytes, deltas are made of images up to %d bytes", base.Length, res.Length, opt.MaxImage)
	}
	old, err := r.readRelease(ctx, base)
	if err != nil {
		return err
	}
	new, err := r.readRelease(ctx, res)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	if err := delta.MakeBytes(ctx, old, new, &buf); err != nil {
		return err
	}
	old, new = nil, nil
	sum := sha256.Sum256(buf.Bytes())
	d.Length, d.SHA256 = int64(buf.Len()), hex.EncodeToString(sum[:])
	if float64(d.Length) > opt.MaxShare*float64(res.Length) {
		d.State, d.TargetPath = DeltaTooLarge, ""
		d.Message = fmt.Sprintf("delta of %d bytes is over %.0f %% of the %d-byte image: not offered", d.Length, opt.MaxShare*100, res.Length)
		return nil
	}
	custom, err := delta.MarshalCustom(delta.TargetCustom{
		Format: delta.FormatV1,
		Base:   delta.Ref{Path: base.TargetPath, Version: base.Version, Length: base.Length, Hashes: map[string]string{"sha256": base.SHA256}},
		Result: delta.Ref{Path: res.TargetPath, Version: res.Version, Length: res.Length, Hashes: map[string]string{"sha256": res.SHA256}},
	})
	if err != nil {
		return err
	}
	staged, err := r.repo.Stage(ctx, bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if err != nil {
		return err
	}
	if _, err := r.repo.Publish(ctx, signers, Target{Path: d.TargetPath, Staged: staged, Custom: custom}); err != nil {
		_ = r.repo.Discard(context.WithoutCancel(ctx), staged)
		if errors.Is(err, tufota.ErrConflict) {
			// Published by a run that died before recording it: the
			// same bytes (Make is deterministic) under the same path.
			r.repo.log.WarnContext(ctx, "delta target already published; recording it", "path", d.TargetPath)
			d.State = DeltaPublished
			return nil
		}
		return err
	}
	d.State = DeltaPublished
	return nil
}

// readRelease reads a release's published image whole, checking its
// length and SHA-256.
func (r *Releases) readRelease(ctx context.Context, rel Release) ([]byte, error) {
	obj, err := r.repo.blobs.Open(ctx, TargetBlobKey(rel.TargetPath, rel.SHA256))
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", rel.TargetPath, err)
	}
	defer obj.Close()
	b := make([]byte, rel.Length)
	if _, err := io.ReadFull(obj, b); err != nil {
		return nil, fmt.Errorf("read %s: %w", rel.TargetPath, err)
	}
	if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != rel.SHA256 {
		return nil, tufota.Errorf(tufota.EInternal, "blob of %s does not match its signed SHA-256", rel.TargetPath)
	}
	return b, nil
}
