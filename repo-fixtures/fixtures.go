package repofixtures

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/tufota/tufota"
)

// Fixture layout on disk, under DIR/NAME/:
//
//	fixture.json      Meta: the device, the server's offer, the expected outcome
//	trusted/root.json the root the device ships with
//	repo/...          the files served under /tuf/ (metadata and targets/)
//	cached/...        the device's metadata cache before the check, if any
//	                  (root.json, timestamp.json, snapshot.json, targets.json)

// Meta describes a fixture: what it simulates and what the client must do.
type Meta struct {
	// Description says what the fixture simulates.
	Description string `json:"description"`
	// Attack names the TUF specification attack it simulates, if any.
	Attack string `json:"attack,omitempty"`
	// Offer is the device endpoint's answer.
	Offer Offer `json:"offer"`
	// Hardware and CurrentVersion describe the device.
	Hardware       string `json:"hardware"`
	CurrentVersion string `json:"current_version"`
	// Check is the outcome of Check: "ok" or the client.ErrorCode of the
	// refusal ("metadata", "not_signed", "wrong_hardware", "not_newer"...).
	Check string `json:"check"`
	// TUFError, for Check "metadata", names the go-tuf error that must be in
	// the chain: "expired", "bad_version", "unsigned", "length", "value".
	TUFError string `json:"tuf_error,omitempty"`
	// Download is the outcome of Download when Check is "ok": "ok",
	// "hash_mismatch" or "length_mismatch".
	Download string `json:"download,omitempty"`
	// Installs is the version the device runs afterwards when all went well.
	Installs string `json:"installs,omitempty"`
}

// Offer is the device endpoint's answer in a fixture.
type Offer struct {
	Target  string `json:"target"`
	Name    string `json:"name"`
	Version string `json:"version"`
}

// Fixture is one generated test repository.
type Fixture struct {
	Name    string
	Meta    Meta
	Trusted []byte            // trusted/root.json
	Repo    map[string][]byte // served files by path under /tuf/
	Cached  map[string][]byte // metadata cache files, may be nil
}

var (
	// Far enough for checked-in fixtures; past for the expired ones.
	future = time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC)
	past   = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
)

const (
	fixtureSeed     = "tufota-fixtures"
	fixtureHardware = "pump-a"
	fixtureCurrent  = "1.0.0"
)

// Image returns the deterministic firmware bytes of a fixture release.
func Image(name, version string) []byte {
	var b bytes.Buffer
	for i := 0; b.Len() < 4096; i++ {
		fmt.Fprintf(&b, "%s %s firmware block %04d\n", name, version, i)
	}
	return b.Bytes()[:4096]
}

func pumpRelease(version string) tufota.TargetCustom {
	return tufota.TargetCustom{Name: "pumpfw", Version: version, Hardware: []string{fixtureHardware}, Notes: "fixture release " + version}
}

// base returns the valid repository every fixture starts from: one
// release, pumpfw 2.0.0 for pump-a, published once.
func base() (*Repo, string, error) {
	r, err := New(fixtureSeed, future)
	if err != nil {
		return nil, "", err
	}
	target, err := r.AddRelease(pumpRelease("2.0.0"), "fw.bin", Image("pumpfw", "2.0.0"))
	if err != nil {
		return nil, "", err
	}
	return r, target, r.Publish()
}

func offerOf(target string) Offer {
	parts := strings.SplitN(target, "/", 3)
	return Offer{Target: target, Name: parts[0], Version: parts[1]}
}

// fixture assembles a Fixture from a repository's current files.
func fixture(name string, r *Repo, m Meta) *Fixture {
	if m.Hardware == "" {
		m.Hardware = fixtureHardware
	}
	if m.CurrentVersion == "" {
		m.CurrentVersion = fixtureCurrent
	}
	return &Fixture{Name: name, Meta: m, Trusted: r.File("1.root.json"), Repo: r.Files()}
}

// cache returns the metadata cache a client holds after it trusted the
// repository's current state (go-tuf's file names).
func cache(r *Repo) map[string][]byte {
	files := r.Files()
	return map[string][]byte{
		"root.json":      files[fmt.Sprintf("%d.root.json", r.Root.Signed.Version)],
		"timestamp.json": files["timestamp.json"],
		"snapshot.json":  files[fmt.Sprintf("%d.snapshot.json", r.Snapshot.Signed.Version)],
		"targets.json":   files[fmt.Sprintf("%d.targets.json", r.Targets.Signed.Version)],
	}
}

// All generates every fixture. The output is deterministic: the same code
// always writes the same bytes.
func All() ([]*Fixture, error) {
	var out []*Fixture
	for _, gen := range generators {
		f, err := gen()
		if err != nil {
			return nil, err
		}
		out = append(out, f)
	}
	return out, nil
}

var generators = []func() (*Fixture, error){
	valid,
	arbitraryInstallation,
	endlessDataTarget,
	endlessDataMetadata,
	extraneousDependencies,
	fastForwardRecovery,
	expired(metadata.TIMESTAMP),
	expired(metadata.SNAPSHOT),
	expired(metadata.TARGETS),
	expired(metadata.ROOT),
	maliciousMirror,
	mixAndMatch,
	rollbackTimestamp,
	rollbackSnapshot,
	rollbackTargets,
	rollbackRoot,
	keyCompromiseBelowThreshold,
	wrongSoftware,
	rootRotationChain,
	revokedKey,
	badThreshold,
	duplicateKeys,
	hashMismatch,
	lengthMismatch,
	wrongHardware,
	olderVersion,
	allowedDowngrade,
}

func valid() (*Fixture, error) {
	r, target, err := base()
	if err != nil {
		return nil, err
	}
	return fixture("valid", r, Meta{
		Description: "A valid repository offering pumpfw 2.0.0 for pump-a to a device on 1.0.0.",
		Offer:       offerOf(target), Check: "ok", Download: "ok", Installs: "2.0.0",
	}), nil
}

// replaceTarget serves data in place of target's genuine bytes.
func replaceTarget(r *Repo, target string, data []byte) {
	sum, _ := Hashes(Image("pumpfw", "2.0.0"))
	r.SetFile(TargetFilePath(target, sum), data)
}

func arbitraryInstallation() (*Fixture, error) {
	r, target, err := base()
	if err != nil {
		return nil, err
	}
	evil := bytes.Repeat([]byte("attacker firmware "), 4096)[:4096]
	replaceTarget(r, target, evil)
	return fixture("arbitrary-installation", r, Meta{
		Description: "The mirror serves the attacker's image (same length) in place of the signed one.",
		Attack:      "arbitrary installation",
		Offer:       offerOf(target), Check: "ok", Download: "hash_mismatch",
	}), nil
}

func endlessDataTarget() (*Fixture, error) {
	r, target, err := base()
	if err != nil {
		return nil, err
	}
	replaceTarget(r, target, append(Image("pumpfw", "2.0.0"), make([]byte, 64<<10)...))
	return fixture("endless-data-target", r, Meta{
		Description: "The mirror sends 64 KiB more than the signed length of the image.",
		Attack:      "endless data",
		Offer:       offerOf(target), Check: "ok", Download: "length_mismatch",
	}), nil
}

func endlessDataMetadata() (*Fixture, error) {
	r, target, err := base()
	if err != nil {
		return nil, err
	}
	// Whitespace keeps the JSON valid and the signature good: only the
	// client's size limit on timestamp.json stops it.
	ts := r.File("timestamp.json")
	r.SetFile("timestamp.json", append(bytes.TrimSpace(ts), bytes.Repeat([]byte(" "), 20<<10)...))
	return fixture("endless-data-metadata", r, Meta{
		Description: "timestamp.json is padded past 20 KiB (signature still valid); the limit is 16 KiB.",
		Attack:      "endless data",
		Offer:       offerOf(target), Check: "metadata", TUFError: "length",
	}), nil
}

func extraneousDependencies() (*Fixture, error) {
	r, _, err := base()
	if err != nil {
		return nil, err
	}
	evil := []byte("unsigned library")
	sum, _ := Hashes(evil)
	r.SetFile(TargetFilePath("pumpfw/2.0.0/libevil.so", sum), evil)
	return fixture("extraneous-dependencies", r, Meta{
		Description: "The server offers pumpfw/2.0.0/libevil.so, a file the targets metadata does not list.",
		Attack:      "extraneous dependencies",
		Offer:       Offer{Target: "pumpfw/2.0.0/libevil.so", Name: "pumpfw", Version: "2.0.0"},
		Check:       "not_signed",
	}), nil
}

func fastForwardRecovery() (*Fixture, error) {
	r, target, err := base()
	if err != nil {
		return nil, err
	}
	// The compromised timestamp key signed version 1000; the device saw it.
	good := r.Timestamp.Signed.Version
	r.Timestamp.Signed.Version = 1000
	if err := r.SignTimestamp(); err != nil {
		return nil, err
	}
	cached := cache(r)
	// The owner rotates the timestamp key in root v2 and publishes a
	// timestamp with the version sequence it really is at.
	old := r.Keys[metadata.TIMESTAMP][0]
	nk, err := r.NewKey("timestamp-2")
	if err != nil {
		return nil, err
	}
	if err := r.Root.Signed.RevokeKey(old.ID, metadata.TIMESTAMP); err != nil {
		return nil, err
	}
	if err := r.Root.Signed.AddKey(nk.Public, metadata.TIMESTAMP); err != nil {
		return nil, err
	}
	r.Keys[metadata.TIMESTAMP] = []*Key{nk}
	r.Root.Signed.Version = 2
	if err := r.PublishRoot(); err != nil {
		return nil, err
	}
	r.Timestamp.Signed.Version = good + 1
	if err := r.SignTimestamp(); err != nil {
		return nil, err
	}
	f := fixture("fast-forward-recovery", r, Meta{
		Description: "An attacker with the timestamp key fast-forwarded the device to timestamp v1000; root v2 rotates that key and the real timestamp is v2.",
		Attack:      "fast-forward",
		Offer:       offerOf(target), Check: "ok", Download: "ok", Installs: "2.0.0",
	})
	f.Cached = cached
	return f, nil
}

func expired(role string) func() (*Fixture, error) {
	return func() (*Fixture, error) {
		r, err := New(fixtureSeed, future)
		if err != nil {
			return nil, err
		}
		target, err := r.AddRelease(pumpRelease("2.0.0"), "fw.bin", Image("pumpfw", "2.0.0"))
		if err != nil {
			return nil, err
		}
		switch role {
		case metadata.ROOT:
			r.Root.Signed.Expires = past
			if err := r.PublishRoot(); err != nil {
				return nil, err
			}
		case metadata.TIMESTAMP:
			r.Timestamp.Signed.Expires = past
		case metadata.SNAPSHOT:
			r.Snapshot.Signed.Expires = past
		case metadata.TARGETS:
			r.Targets.Signed.Expires = past
		}
		if err := r.Publish(); err != nil {
			return nil, err
		}
		return fixture("expired-"+role, r, Meta{
			Description: fmt.Sprintf("%s.json expired on %s (an indefinite freeze: the mirror keeps serving stale metadata).", role, past.Format(time.DateOnly)),
			Attack:      "indefinite freeze",
			Offer:       offerOf(target), Check: "metadata", TUFError: "expired",
		}), nil
	}
}

func maliciousMirror() (*Fixture, error) {
	genuine, _, err := base()
	if err != nil {
		return nil, err
	}
	evil, err := New("attacker", future)
	if err != nil {
		return nil, err
	}
	target, err := evil.AddRelease(pumpRelease("2.0.0"), "fw.bin", bytes.Repeat([]byte("evil"), 1024))
	if err != nil {
		return nil, err
	}
	if err := evil.Publish(); err != nil {
		return nil, err
	}
	// The mirror's own root, offered as the next root version.
	evil.Root.Signed.Version = 2
	if err := evil.PublishRoot(); err != nil {
		return nil, err
	}
	f := fixture("malicious-mirror", evil, Meta{
		Description: "A mirror serves a complete repository signed with the attacker's keys, its own root offered as 2.root.json.",
		Attack:      "malicious mirrors preventing updates / arbitrary installation",
		Offer:       offerOf(target), Check: "metadata", TUFError: "unsigned",
	})
	f.Trusted = genuine.File("1.root.json")
	return f, nil
}

// twoVersions publishes the base repository, then a second state adding
// pumpfw 2.1.0; it returns the cache after the first state.
func twoVersions() (*Repo, string, map[string][]byte, error) {
	r, _, err := base()
	if err != nil {
		return nil, "", nil, err
	}
	first := cache(r)
	target, err := r.AddRelease(pumpRelease("2.1.0"), "fw.bin", Image("pumpfw", "2.1.0"))
	if err != nil {
		return nil, "", nil, err
	}
	return r, target, first, r.Publish()
}

func mixAndMatch() (*Fixture, error) {
	r, target, _, err := twoVersions()
	if err != nil {
		return nil, err
	}
	r.SetFile("2.targets.json", r.File("1.targets.json"))
	return fixture("mix-and-match", r, Meta{
		Description: "Snapshot v2 lists targets v2, but the mirror serves the (validly signed) targets v1 as 2.targets.json.",
		Attack:      "mix-and-match",
		Offer:       offerOf(target), Check: "metadata", TUFError: "bad_version",
	}), nil
}

func rollbackTimestamp() (*Fixture, error) {
	r, target, first, err := twoVersions()
	if err != nil {
		return nil, err
	}
	seen := cache(r)
	r.SetFile("timestamp.json", first["timestamp.json"])
	f := fixture("rollback-timestamp", r, Meta{
		Description: "The device has seen timestamp v2; the mirror replays timestamp v1.",
		Attack:      "rollback",
		Offer:       offerOf(target), Check: "metadata", TUFError: "bad_version",
	})
	f.Cached = seen
	return f, nil
}

func rollbackSnapshot() (*Fixture, error) {
	r, target, _, err := twoVersions()
	if err != nil {
		return nil, err
	}
	seen := cache(r)
	// The attacker holds the online timestamp key and points a fresh
	// timestamp at the old snapshot v1.
	r.Snapshot.Signed.Version = 1
	r.Timestamp.Signed.Version = 3
	if err := r.SignTimestamp(); err != nil {
		return nil, err
	}
	f := fixture("rollback-snapshot", r, Meta{
		Description: "The device has seen snapshot v2; a timestamp v3 signed with a compromised timestamp key points at snapshot v1.",
		Attack:      "rollback",
		Offer:       offerOf(target), Check: "metadata", TUFError: "bad_version",
	})
	f.Cached = seen
	return f, nil
}

func rollbackTargets() (*Fixture, error) {
	r, _, _, err := twoVersions()
	if err != nil {
		return nil, err
	}
	seen := cache(r)
	// The attacker holds both online keys and signs snapshot v3 listing the
	// old targets v1.
	r.Snapshot.Signed.Version = 3
	r.Snapshot.Signed.Meta["targets.json"] = metadata.MetaFile(1)
	if err := r.SignSnapshot(); err != nil {
		return nil, err
	}
	r.Timestamp.Signed.Version = 3
	if err := r.SignTimestamp(); err != nil {
		return nil, err
	}
	f := fixture("rollback-targets", r, Meta{
		Description: "The device has seen targets v2; snapshot v3 (compromised online keys) lists targets v1.",
		Attack:      "rollback",
		Offer:       offerOf("pumpfw/2.0.0/fw.bin"), Check: "metadata", TUFError: "bad_version",
	})
	f.Cached = seen
	return f, nil
}

func rollbackRoot() (*Fixture, error) {
	r, target, err := base()
	if err != nil {
		return nil, err
	}
	r.SetFile("2.root.json", r.File("1.root.json"))
	return fixture("rollback-root", r, Meta{
		Description: "The mirror serves root v1 again under the name 2.root.json.",
		Attack:      "rollback",
		Offer:       offerOf(target), Check: "metadata", TUFError: "bad_version",
	}), nil
}

// twoTargetsKeys returns a base repository whose root requires two targets
// signatures.
func twoTargetsKeys() (*Repo, string, error) {
	r, err := New(fixtureSeed, future)
	if err != nil {
		return nil, "", err
	}
	k2, err := r.NewKey("targets-2")
	if err != nil {
		return nil, "", err
	}
	if err := r.Root.Signed.AddKey(k2.Public, metadata.TARGETS); err != nil {
		return nil, "", err
	}
	r.Root.Signed.Roles[metadata.TARGETS].Threshold = 2
	r.Keys[metadata.TARGETS] = append(r.Keys[metadata.TARGETS], k2)
	if err := r.PublishRoot(); err != nil {
		return nil, "", err
	}
	target, err := r.AddRelease(pumpRelease("2.0.0"), "fw.bin", Image("pumpfw", "2.0.0"))
	if err != nil {
		return nil, "", err
	}
	return r, target, r.Publish()
}

func keyCompromiseBelowThreshold() (*Fixture, error) {
	r, _, err := twoTargetsKeys()
	if err != nil {
		return nil, err
	}
	// The attacker has one of the two targets keys and the online keys.
	r.Keys[metadata.TARGETS] = r.Keys[metadata.TARGETS][:1]
	target, err := r.AddRelease(pumpRelease("9.0.0"), "fw.bin", []byte("attacker firmware"))
	if err != nil {
		return nil, err
	}
	if err := r.Publish(); err != nil {
		return nil, err
	}
	return fixture("key-compromise-below-threshold", r, Meta{
		Description: "Targets needs 2 of 2 signatures; the attacker signs pumpfw 9.0.0 with the one targets key it stole (and the online keys).",
		Attack:      "key compromise (below threshold)",
		Offer:       offerOf(target), Check: "metadata", TUFError: "unsigned",
	}), nil
}

func wrongSoftware() (*Fixture, error) {
	r, _, err := base()
	if err != nil {
		return nil, err
	}
	c := tufota.TargetCustom{Name: "monitorfw", Version: "3.0.0", Hardware: []string{"monitor-b"}}
	target, err := r.AddRelease(c, "fw.bin", Image("monitorfw", "3.0.0"))
	if err != nil {
		return nil, err
	}
	if err := r.Publish(); err != nil {
		return nil, err
	}
	return fixture("wrong-software", r, Meta{
		Description: "The server offers monitorfw 3.0.0, signed, but built for monitor-b, to a pump-a device.",
		Attack:      "wrong software installation",
		Offer:       offerOf(target), Check: "wrong_hardware",
	}), nil
}

// rotateRoot moves root to a new version with a new root key, signed by
// the old and the new key.
func rotateRoot(r *Repo, keyName string) error {
	old := r.Keys[metadata.ROOT]
	nk, err := r.NewKey(keyName)
	if err != nil {
		return err
	}
	for _, k := range old {
		if err := r.Root.Signed.RevokeKey(k.ID, metadata.ROOT); err != nil {
			return err
		}
	}
	if err := r.Root.Signed.AddKey(nk.Public, metadata.ROOT); err != nil {
		return err
	}
	r.Keys[metadata.ROOT] = []*Key{nk}
	r.Root.Signed.Version++
	return r.PublishRoot(old...)
}

func rootRotationChain() (*Fixture, error) {
	r, target, err := base()
	if err != nil {
		return nil, err
	}
	if err := rotateRoot(r, "root-2"); err != nil {
		return nil, err
	}
	// Root v3 rotates the root key again and also the targets key; targets
	// are re-signed with the new key.
	old := r.Keys[metadata.TARGETS][0]
	nk, err := r.NewKey("targets-3")
	if err != nil {
		return nil, err
	}
	if err := r.Root.Signed.RevokeKey(old.ID, metadata.TARGETS); err != nil {
		return nil, err
	}
	if err := r.Root.Signed.AddKey(nk.Public, metadata.TARGETS); err != nil {
		return nil, err
	}
	r.Keys[metadata.TARGETS] = []*Key{nk}
	if err := rotateRoot(r, "root-3"); err != nil {
		return nil, err
	}
	if err := r.Publish(); err != nil {
		return nil, err
	}
	return fixture("root-rotation-chain", r, Meta{
		Description: "The device trusts root v1; roots v2 and v3 rotate the root key (each signed by old and new), v3 also the targets key.",
		Offer:       offerOf(target), Check: "ok", Download: "ok", Installs: "2.0.0",
	}), nil
}

func revokedKey() (*Fixture, error) {
	r, _, err := base()
	if err != nil {
		return nil, err
	}
	old := r.Keys[metadata.TARGETS][0]
	nk, err := r.NewKey("targets-2")
	if err != nil {
		return nil, err
	}
	if err := r.Root.Signed.RevokeKey(old.ID, metadata.TARGETS); err != nil {
		return nil, err
	}
	if err := r.Root.Signed.AddKey(nk.Public, metadata.TARGETS); err != nil {
		return nil, err
	}
	r.Root.Signed.Version = 2
	if err := r.PublishRoot(); err != nil {
		return nil, err
	}
	// The holder of the revoked key (and the online keys) signs a release.
	target, err := r.AddRelease(pumpRelease("9.0.0"), "fw.bin", []byte("attacker firmware"))
	if err != nil {
		return nil, err
	}
	if err := r.Publish(); err != nil {
		return nil, err
	}
	return fixture("revoked-key", r, Meta{
		Description: "Root v2 revokes targets key 1; targets v2 offering pumpfw 9.0.0 is signed with the revoked key only.",
		Offer:       offerOf(target), Check: "metadata", TUFError: "unsigned",
	}), nil
}

func badThreshold() (*Fixture, error) {
	r, _, err := base()
	if err != nil {
		return nil, err
	}
	// A root signed by the real root key declares a targets threshold of 0;
	// the attacker then serves unsigned targets.
	r.Root.Signed.Roles[metadata.TARGETS].Threshold = 0
	r.Root.Signed.Version = 2
	if err := r.PublishRoot(); err != nil {
		return nil, err
	}
	r.Keys[metadata.TARGETS] = nil
	target, err := r.AddRelease(pumpRelease("9.0.0"), "fw.bin", []byte("attacker firmware"))
	if err != nil {
		return nil, err
	}
	if err := r.Publish(); err != nil {
		return nil, err
	}
	return fixture("bad-threshold", r, Meta{
		Description: "Root v2 sets the targets threshold to 0 and targets v2 carries no signature at all.",
		Offer:       offerOf(target), Check: "metadata", TUFError: "value",
	}), nil
}

func duplicateKeys() (*Fixture, error) {
	r, _, err := base()
	if err != nil {
		return nil, err
	}
	// Root v2 lists the one targets key twice and asks for 2 signatures:
	// one key must not count twice.
	role := r.Root.Signed.Roles[metadata.TARGETS]
	role.KeyIDs = append(role.KeyIDs, role.KeyIDs[0])
	role.Threshold = 2
	r.Root.Signed.Version = 2
	if err := r.PublishRoot(); err != nil {
		return nil, err
	}
	target, err := r.AddRelease(pumpRelease("9.0.0"), "fw.bin", []byte("attacker firmware"))
	if err != nil {
		return nil, err
	}
	if err := r.Publish(); err != nil {
		return nil, err
	}
	return fixture("duplicate-keys", r, Meta{
		Description: "Root v2 lists targets key 1 twice with threshold 2; targets v2 is signed by that key once.",
		Offer:       offerOf(target), Check: "metadata", TUFError: "unsigned",
	}), nil
}

func hashMismatch() (*Fixture, error) {
	r, target, err := base()
	if err != nil {
		return nil, err
	}
	img := Image("pumpfw", "2.0.0")
	img[2048] ^= 0x01
	replaceTarget(r, target, img)
	return fixture("hash-mismatch", r, Meta{
		Description: "One bit of the served image is flipped.",
		Offer:       offerOf(target), Check: "ok", Download: "hash_mismatch",
	}), nil
}

func lengthMismatch() (*Fixture, error) {
	r, target, err := base()
	if err != nil {
		return nil, err
	}
	replaceTarget(r, target, Image("pumpfw", "2.0.0")[:3000])
	return fixture("length-mismatch", r, Meta{
		Description: "The served image is truncated to 3000 of its 4096 signed bytes.",
		Offer:       offerOf(target), Check: "ok", Download: "length_mismatch",
	}), nil
}

func wrongHardware() (*Fixture, error) {
	r, _, err := base()
	if err != nil {
		return nil, err
	}
	c := pumpRelease("2.1.0")
	c.Hardware = []string{"pump-b"}
	target, err := r.AddRelease(c, "fw.bin", Image("pumpfw", "2.1.0"))
	if err != nil {
		return nil, err
	}
	if err := r.Publish(); err != nil {
		return nil, err
	}
	return fixture("wrong-hardware", r, Meta{
		Description: "pumpfw 2.1.0 is signed for pump-b only; the device is pump-a.",
		Offer:       offerOf(target), Check: "wrong_hardware",
	}), nil
}

func olderVersion() (*Fixture, error) {
	r, target, err := base()
	if err != nil {
		return nil, err
	}
	return fixture("older-version", r, Meta{
		Description: "The server offers the signed pumpfw 2.0.0 to a device already on 2.5.0.",
		Offer:       offerOf(target), CurrentVersion: "2.5.0", Check: "not_newer",
	}), nil
}

func allowedDowngrade() (*Fixture, error) {
	r, _, err := base()
	if err != nil {
		return nil, err
	}
	c := pumpRelease("1.9.0")
	c.AllowDowngradeFrom = []string{"2.0.0"}
	target, err := r.AddRelease(c, "fw.bin", Image("pumpfw", "1.9.0"))
	if err != nil {
		return nil, err
	}
	if err := r.Publish(); err != nil {
		return nil, err
	}
	return fixture("allowed-downgrade", r, Meta{
		Description: "pumpfw 1.9.0 is signed with allow_downgrade_from [2.0.0]; the device is on 2.0.0.",
		Offer:       offerOf(target), CurrentVersion: "2.0.0", Check: "ok", Download: "ok", Installs: "1.9.0",
	}), nil
}

// Write writes the fixtures under dir, replacing each fixture's directory,
// and writes dir/README.md with one line per fixture.
func Write(dir string, fixtures []*Fixture) error {
	for _, f := range fixtures {
		fd := filepath.Join(dir, f.Name)
		if err := os.RemoveAll(fd); err != nil {
			return err
		}
		m, err := json.MarshalIndent(f.Meta, "", "  ")
		if err != nil {
			return err
		}
		files := map[string][]byte{"fixture.json": append(m, '\n'), "trusted/root.json": f.Trusted}
		for p, b := range f.Repo {
			files["repo/"+p] = b
		}
		for p, b := range f.Cached {
			files["cached/"+p] = b
		}
		for p, b := range files {
			full := filepath.Join(fd, filepath.FromSlash(p))
			if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
				return err
			}
			if err := os.WriteFile(full, b, 0o644); err != nil {
				return err
			}
		}
	}
	return os.WriteFile(filepath.Join(dir, "README.md"), README(fixtures), 0o644)
}

// README returns the fixtures' README: the layout, then one line per
// fixture saying what it simulates and what the client must do.
func README(fixtures []*Fixture) []byte {
	var b bytes.Buffer
	b.WriteString(`# repo-fixtures

TUF repositories for tufota's client tests, good and malicious, generated by
` + "`go run ./repo-fixtures/gen`" + ` (or ` + "`make fixtures`" + `) from fixtures.go. Do not edit them by
hand: ` + "`go test ./repo-fixtures`" + ` fails when they differ from the generator's output.

Each fixture directory holds ` + "`fixture.json`" + ` (the device, the server's offer and
the expected outcome), ` + "`trusted/root.json`" + ` (the device's trust anchor), ` + "`repo/`" + `
(the files served under /tuf/) and, when the device has seen earlier
metadata, ` + "`cached/`" + ` (its metadata cache). client/fixtures_test.go serves each
one over httptest and asserts the exact error class. Keys are derived from
fixed seeds: these repositories are public test data, never trust them.

| fixture | simulates | the client must |
| --- | --- | --- |
`)
	for _, f := range fixtures {
		fmt.Fprintf(&b, "| `%s` | %s | %s |\n", f.Name, f.Meta.Description, mustDo(f.Meta))
	}
	return b.Bytes()
}

func mustDo(m Meta) string {
	switch {
	case m.Check == "ok" && m.Download == "ok":
		return fmt.Sprintf("accept, download and verify %s", m.Offer.Version)
	case m.Check == "ok":
		return fmt.Sprintf("accept the signed offer, then refuse the bytes: `%s`", errName(m.Download))
	case m.TUFError != "":
		return fmt.Sprintf("refuse at Check: `%s` (go-tuf %s)", errName(m.Check), m.TUFError)
	default:
		return fmt.Sprintf("refuse at Check: `%s`", errName(m.Check))
	}
}

// errName maps an error code to the client's sentinel name.
func errName(code string) string {
	var b strings.Builder
	b.WriteString("Err")
	for _, part := range strings.Split(code, "_") {
		switch part {
		case "metadata":
			b.WriteString("Metadata")
		default:
			b.WriteString(strings.ToUpper(part[:1]) + part[1:])
		}
	}
	return b.String()
}

// Load reads a fixture directory written by Write.
func Load(dir string) (*Fixture, error) {
	f := &Fixture{Name: filepath.Base(dir), Repo: map[string][]byte{}}
	m, err := os.ReadFile(filepath.Join(dir, "fixture.json"))
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(m, &f.Meta); err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	if f.Trusted, err = os.ReadFile(filepath.Join(dir, "trusted", "root.json")); err != nil {
		return nil, err
	}
	if f.Repo, err = readTree(filepath.Join(dir, "repo")); err != nil {
		return nil, err
	}
	if f.Cached, err = readTree(filepath.Join(dir, "cached")); errors.Is(err, fs.ErrNotExist) {
		f.Cached = nil
	} else if err != nil {
		return nil, err
	}
	return f, nil
}

func readTree(root string) (map[string][]byte, error) {
	files := map[string][]byte{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		files[filepath.ToSlash(rel)] = b
		return nil
	})
	return files, err
}

// Names returns the fixture names in dir, sorted.
func Names(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		if e.IsDir() && e.Name() != "gen" && e.Name() != "testdata" {
			if _, err := os.Stat(filepath.Join(dir, e.Name(), "fixture.json")); err == nil {
				names = append(names, e.Name())
			}
		}
	}
	slices.Sort(names)
	return names, nil
}

// Served returns a Repo that serves the fixture's files (see Repo.Handler;
// SetFile changes them for one test without touching the fixture).
func (f *Fixture) Served() *Repo {
	return &Repo{files: maps.Clone(f.Repo)}
}
