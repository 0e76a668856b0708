package client

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"github.com/tufota/tufota"
)

// ABInstaller is a reference A/B installer on a file-backed two-slot
// layout, the way a device with two firmware partitions and a bootloader
// boot counter works:
//
//	DIR/slot-a.img, DIR/slot-a.json   image and its record (target, version, sha256)
//	DIR/slot-b.img, DIR/slot-b.json
//	DIR/boot.json                     boot pointer: primary slot, trial slot, boot count
//
// Install writes the inactive slot (never the running one), syncs it, then
// flips the boot pointer, written atomically, to try the new slot. Boot,
// called at every start, plays the bootloader: it counts boots of a trial
// slot and reverts to the primary slot after MaxBoots boots without
// Confirm, or at once if the trial image fails verification. Confirm makes
// the trial slot primary; Rollback abandons it.
//
// A crash at any point leaves a device that boots a verified image, the
// old or the new one. Methods are safe for concurrent use within one
// process; one directory must not be shared by two processes at once.
type ABInstaller struct {
	// Dir holds the slots and the boot pointer.
	Dir string
	// MaxBoots is how many boots a trial slot gets before Boot reverts it;
	// default 3.
	MaxBoots int

	mu    sync.Mutex
	crash func(step string) // test hook: called at every step that may be cut by a crash
}

var _ Installer = (*ABInstaller)(nil)

// Slot names.
const (
	SlotA = "a"
	SlotB = "b"
)

// SlotRecord describes the image in a slot.
type SlotRecord struct {
	Target    string `json:"target"`
	Version   string `json:"version"`
	RolloutID string `json:"rollout_id,omitempty"`
	SHA256    string `json:"sha256"`
	Length    int64  `json:"length"`
}

// bootState is boot.json.
type bootState struct {
	Primary string `json:"primary"`
	Trial   string `json:"trial,omitempty"`
	Boots   int    `json:"boots"`
}

// BootResult tells what Boot started.
type BootResult struct {
	// Slot is the booted slot, SlotA or SlotB; Image its image file.
	Slot, Image string
	// Record describes the booted image.
	Record SlotRecord
	// Trial is true when the booted slot is an unconfirmed trial: run the
	// health check, then Confirm or Rollback.
	Trial bool
	// Reverted, when not nil, is the trial that this boot abandoned (boot
	// count exhausted or image failed verification): report it rolled back.
	Reverted *SlotRecord
}

func other(slot string) string {
	if slot == SlotA {
		return SlotB
	}
	return SlotA
}

func (ab *ABInstaller) step(name string) {
	if ab.crash != nil {
		ab.crash(name)
	}
}

func (ab *ABInstaller) maxBoots() int {
	if ab.MaxBoots <= 0 {
		return 3
	}
	return ab.MaxBoots
}

func (ab *ABInstaller) imagePath(slot string) string {
	return filepath.Join(ab.Dir, "slot-"+slot+".img")
}

func (ab *ABInstaller) recordPath(slot string) string {
	return filepath.Join(ab.Dir, "slot-"+slot+".json")
}

// readState returns the boot pointer; ok is false on a device with no
// image installed yet.
func (ab *ABInstaller) readState() (st bootState, ok bool, err error) {
	b, err := os.ReadFile(filepath.Join(ab.Dir, "boot.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return st, false, nil
	}
	if err != nil {
		return st, false, fmt.Errorf("read boot pointer: %w", err)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, false, fmt.Errorf("read boot pointer: %w", err)
	}
	if st.Primary != SlotA && st.Primary != SlotB || st.Trial != "" && st.Trial != other(st.Primary) {
		return st, false, fmt.Errorf("read boot pointer: invalid slots %q/%q", st.Primary, st.Trial)
	}
	return st, true, nil
}

func (ab *ABInstaller) writeState(st bootState) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	ab.step("write boot pointer")
	if err := writeFileAtomicSteps(filepath.Join(ab.Dir, "boot.json"), b, ab.crash); err != nil {
		return fmt.Errorf("write boot pointer: %w", err)
	}
	ab.step("boot pointer written")
	return nil
}

// Install writes the image at path into the inactive slot, checking its
// sha256 against t while copying, and points the next boot at it as a
// trial. On a device with no image yet, the image becomes the primary slot
// directly (there is nothing to fall back to). It fails with
// tufota.ErrConflict while a trial is pending, and with ErrHashMismatch or
// ErrLengthMismatch when the file is not the signed image. The image at
// path is left in place.
func (ab *ABInstaller) Install(ctx context.Context, path string, t *Update) error {
	ab.mu.Lock()
	defer ab.mu.Unlock()
	if err := os.MkdirAll(ab.Dir, 0o700); err != nil {
		return fmt.Errorf("install: %w", err)
	}
	st, ok, err := ab.readState()
	if err != nil {
		return fmt.Errorf("install: %w", err)
	}
	if ok && st.Trial != "" {
		return fmt.Errorf("install: %w", tufota.Errorf(tufota.EConflict, "slot %s is on trial; confirm or roll back first", st.Trial))
	}
	slot := SlotA
	if ok {
		slot = other(st.Primary)
	}
	if err := ab.writeSlot(ctx, slot, path, t); err != nil {
		return fmt.Errorf("install: %w", err)
	}
	if !ok {
		return ab.writeState(bootState{Primary: slot})
	}
	return ab.writeState(bootState{Primary: st.Primary, Trial: slot})
}

// writeSlot copies the image into slot (through a synced temporary file and
// a rename) and writes the slot's record.
func (ab *ABInstaller) writeSlot(ctx context.Context, slot, path string, t *Update) error {
	want := t.Hashes["sha256"]
	in, err := os.Open(path)
	if err != nil {
		return err
	}
	defer in.Close()
	img := ab.imagePath(slot)
	tmp := img + ".tmp"
	out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	h := sha256.New()
	buf := make([]byte, 32<<10)
	var n int64
	for {
		if err := ctx.Err(); err != nil {
			out.Close()
			return err
		}
		m, rerr := io.ReadFull(in, buf)
		if m > 0 {
			if int64(m)+n > t.Length {
				out.Close()
				return fmt.Errorf("%w: image is longer than %d bytes", ErrLengthMismatch, t.Length)
			}
			if _, err := out.Write(buf[:m]); err != nil {
				out.Close()
				return err
			}
			h.Write(buf[:m])
			n += int64(m)
			ab.step("write slot chunk")
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			out.Close()
			return rerr
		}
	}
	if n != t.Length {
		out.Close()
		return fmt.Errorf("%w: image has %d bytes, signed length is %d", ErrLengthMismatch, n, t.Length)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		out.Close()
		return fmt.Errorf("%w: slot image sha256 differs from the signed value", ErrHashMismatch)
	}
	ab.step("sync slot")
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	ab.step("rename slot")
	if err := os.Rename(tmp, img); err != nil {
		return err
	}
	if err := syncDir(ab.Dir); err != nil {
		return err
	}
	rec := SlotRecord{Target: t.Target, Version: t.Version, RolloutID: t.RolloutID, SHA256: want, Length: t.Length}
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	ab.step("write slot record")
	return writeFileAtomicSteps(ab.recordPath(slot), b, ab.crash)
}

// verifySlot checks a slot's image against its record.
func (ab *ABInstaller) verifySlot(slot string) (SlotRecord, error) {
	var rec SlotRecord
	b, err := os.ReadFile(ab.recordPath(slot))
	if err != nil {
		return rec, fmt.Errorf("slot %s record: %w", slot, err)
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		return rec, fmt.Errorf("slot %s record: %w", slot, err)
	}
	f, err := os.Open(ab.imagePath(slot))
	if err != nil {
		return rec, fmt.Errorf("slot %s image: %w", slot, err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return rec, fmt.Errorf("slot %s image: %w", slot, err)
	}
	want, _ := hex.DecodeString(rec.SHA256)
	if n != rec.Length {
		return rec, fmt.Errorf("slot %s: %w: %d bytes, recorded %d", slot, ErrLengthMismatch, n, rec.Length)
	}
	if !bytes.Equal(h.Sum(nil), want) {
		return rec, fmt.Errorf("slot %s: %w", slot, ErrHashMismatch)
	}
	return rec, nil
}

// Boot does what the bootloader does at power-on and returns the slot it
// started: a trial slot while it has boots left and verifies, else the
// primary slot. It fails with tufota.ErrNotFound on a device with nothing
// installed, and with ErrHashMismatch or ErrLengthMismatch if the primary
// image does not verify (which the installer's write order rules out).
func (ab *ABInstaller) Boot(ctx context.Context) (BootResult, error) {
	ab.mu.Lock()
	defer ab.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return BootResult{}, fmt.Errorf("boot: %w", err)
	}
	st, ok, err := ab.readState()
	if err != nil {
		return BootResult{}, fmt.Errorf("boot: %w", err)
	}
	if !ok {
		return BootResult{}, fmt.Errorf("boot: %w", tufota.Errorf(tufota.ENotFound, "no image installed in %s", ab.Dir))
	}
	var reverted *SlotRecord
	if st.Trial != "" {
		rec, verr := ab.verifySlot(st.Trial)
		if verr == nil && st.Boots < ab.maxBoots() {
			st.Boots++
			if err := ab.writeState(st); err != nil {
				return BootResult{}, fmt.Errorf("boot: %w", err)
			}
			return BootResult{Slot: st.Trial, Image: ab.imagePath(st.Trial), Record: rec, Trial: true}, nil
		}
		// Out of boots, or a bad trial image: back to the primary slot.
		reverted = &rec
		if err := ab.writeState(bootState{Primary: st.Primary}); err != nil {
			return BootResult{}, fmt.Errorf("boot: %w", err)
		}
	}
	rec, err := ab.verifySlot(st.Primary)
	if err != nil {
		return BootResult{}, fmt.Errorf("boot: %w", err)
	}
	return BootResult{Slot: st.Primary, Image: ab.imagePath(st.Primary), Record: rec, Reverted: reverted}, nil
}

// Confirm makes a trial slot primary. Without a trial it does nothing.
func (ab *ABInstaller) Confirm(ctx context.Context) error {
	ab.mu.Lock()
	defer ab.mu.Unlock()
	st, ok, err := ab.readState()
	if err != nil {
		return fmt.Errorf("confirm: %w", err)
	}
	if !ok || st.Trial == "" {
		return nil
	}
	if err := ab.writeState(bootState{Primary: st.Trial}); err != nil {
		return fmt.Errorf("confirm: %w", err)
	}
	return nil
}

// Rollback abandons a trial slot: the next boot starts the primary slot.
// It fails with tufota.ErrConflict when no trial is pending.
func (ab *ABInstaller) Rollback(ctx context.Context) error {
	ab.mu.Lock()
	defer ab.mu.Unlock()
	st, ok, err := ab.readState()
	if err != nil {
		return fmt.Errorf("rollback: %w", err)
	}
	if !ok || st.Trial == "" {
		return fmt.Errorf("rollback: %w", tufota.Errorf(tufota.EConflict, "no trial slot to roll back"))
	}
	if err := ab.writeState(bootState{Primary: st.Primary}); err != nil {
		return fmt.Errorf("rollback: %w", err)
	}
	return nil
}
