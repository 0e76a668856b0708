package rollout

import (
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"slices"
	"strings"
)

// Buckets is the number of buckets devices are hashed into.
const Buckets = 10000

// Bucket returns the device's bucket in the rollout: the first 8 bytes of
// sha256(rolloutID + "\x00" + deviceID), big-endian, mod 10000. It is
// deterministic and independent of every other device, so a device's place
// in a rollout never depends on who else is in the cohort.
func Bucket(rolloutID, deviceID string) int {
	h := sha256.Sum256([]byte(rolloutID + "\x00" + deviceID))
	return int(binary.BigEndian.Uint64(h[:8]) % Buckets)
}

// Key orders the devices of a rollout: by bucket, then by device ID (which
// breaks ties between devices in the same bucket). Devices enter a rollout
// in Key order.
type Key struct {
	Bucket int    `json:"bucket"`
	Device string `json:"device"`
}

// KeyOf returns the device's key in the rollout.
func KeyOf(rolloutID, deviceID string) Key {
	return Key{Bucket: Bucket(rolloutID, deviceID), Device: deviceID}
}

// Compare returns -1, 0 or +1 as k orders before, with or after o.
func (k Key) Compare(o Key) int {
	if c := cmp.Compare(k.Bucket, o.Bucket); c != 0 {
		return c
	}
	return strings.Compare(k.Device, o.Device)
}

// Cutoff is the frozen edge of a wave: a device is in the wave (and, since
// cutoffs never decrease, in every later wave) when its key is at or below
// Last, or always when All is set. A cutoff with neither (the zero value)
// admits no device.
//
// A wave's cutoff is fixed when the wave starts, from the cohort of that
// moment, so the wave has exactly its planned size then. A device that
// joins the cohort later falls into its bucket: it belongs to the first
// started wave whose cutoff covers its key, or waits for a later one.
type Cutoff struct {
	All  bool `json:"all,omitempty"`
	Last *Key `json:"last,omitempty"`
}

// Covers reports whether the device with key k is inside the cutoff.
func (c Cutoff) Covers(k Key) bool {
	return c.All || (c.Last != nil && k.Compare(*c.Last) <= 0)
}

// atLeast reports whether c admits every device that o admits.
func (c Cutoff) atLeast(o Cutoff) bool {
	switch {
	case c.All:
		return true
	case o.All:
		return false
	case o.Last == nil:
		return true
	case c.Last == nil:
		return false
	}
	return c.Last.Compare(*o.Last) >= 0
}

// NextCutoff returns the cutoff of a wave that must hold size devices of
// cohort (the IDs of the devices in the cohort now), never below prev (the
// cutoff of the wave before, zero for the first wave). all marks the wave
// that covers the whole cohort (100% or "all"): its cutoff admits every
// device, also those that join later.
//
// The result admits the size lowest-keyed devices of cohort and all devices
// prev admits; when prev already admits more than size devices (the cohort
// shrank), it is prev. cohort is not modified.
func NextCutoff(rolloutID string, cohort []string, size int, all bool, prev Cutoff) Cutoff {
	if all || prev.All {
		return Cutoff{All: true}
	}
	if size <= 0 || len(cohort) == 0 {
		return prev
	}
	keys := make([]Key, len(cohort))
	for i, id := range cohort {
		keys[i] = KeyOf(rolloutID, id)
	}
	slices.SortFunc(keys, Key.Compare)
	last := keys[min(size, len(keys))-1]
	c := Cutoff{Last: &last}
	if prev.atLeast(c) {
		return prev
	}
	return c
}

// WaveOf returns the index of the first wave in cutoffs (the cutoffs of the
// waves started so far, in order) whose cutoff covers key, or -1 when none
// does yet.
func WaveOf(cutoffs []Cutoff, key Key) int {
	for i, c := range cutoffs {
		if c.Covers(key) {
			return i
		}
	}
	return -1
}
