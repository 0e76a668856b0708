package audit

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/tufota/tufota"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// memHashes is an in-memory tlog hash store.
type memHashes []tlog.Hash

func (m memHashes) ReadHashes(idx []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(idx))
	for i, x := range idx {
		if x >= int64(len(m)) {
			return nil, fmt.Errorf("hash %d not stored", x)
		}
		out[i] = m[x]
	}
	return out, nil
}

// TestBuilderMatchesTlog checks the compact-range builder against tlog:
// the same stored hashes, the same roots, and frontiers that rebuild it.
func TestBuilderMatchesTlog(t *testing.T) {
	t.Parallel()
	var stored memHashes
	b, err := newBuilder(0, nil)
	if err != nil {
		t.Fatal(err)
	}
	for n := int64(0); n <= 300; n++ {
		want, err := tlog.TreeHash(n, stored)
		if err != nil {
			t.Fatalf("TreeHash(%d): %v", n, err)
		}
		if got := b.root(); got != want {
			t.Fatalf("root(%d) = %v, want %v", n, got, want)
		}
		// A builder restarted from the stored frontier has the same root.
		fr, err := stored.ReadHashes(frontierIndexes(n))
		if err != nil {
			t.Fatalf("frontier(%d): %v", n, err)
		}
		if !equalHashes(fr, b.frontier()) {
			t.Fatalf("frontier(%d) from storage differs from the builder's", n)
		}
		b2, err := newBuilder(n, fr)
		if err != nil || b2.root() != want {
			t.Fatalf("newBuilder(%d, frontier) root = %v, %v; want %v", n, b2.root(), err, want)
		}

		leaf := tlog.RecordHash([]byte(fmt.Sprint("record ", n)))
		wantStored, err := tlog.StoredHashesForRecordHash(n, leaf, stored)
		if err != nil {
			t.Fatal(err)
		}
		if got := b.add(leaf); !equalHashes(got, wantStored) {
			t.Fatalf("add(%d) stored hashes = %v, want %v", n, got, wantStored)
		}
		if int64(len(stored)) != tlog.StoredHashIndex(0, n) {
			t.Fatalf("stored hash count before %d = %d, want %d", n, len(stored), tlog.StoredHashIndex(0, n))
		}
		stored = append(stored, wantStored...)
	}
	if _, err := newBuilder(5, make([]tlog.Hash, 1)); err == nil {
		t.Fatal("newBuilder(5) with 1 frontier hash: no error, want one (5 = 4+1 needs 2)")
	}
}

func equalHashes(a, b []tlog.Hash) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestCanonicalJSON(t *testing.T) {
	t.Parallel()
	e := Entry{
		Seq: 7, Time: time.Date(2025, 1, 2, 3, 4, 5, 120000000, time.FixedZone("CET", 3600)),
		Actor: "alice", Role: "admin", Source: "192.0.2.1:5000", Action: "rollout.pause",
		Object: "rollout/r-1", Outcome: OutcomeOK,
		Details: map[string]string{"z": "last", "a": "<first> & \"quoted\"\n\u2028é"},
		Hash:    "ignored",
	}
	got, err := CanonicalJSON(e)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"seq":7,"time":"2025-01-02T02:04:05.12Z","actor":"alice","role":"admin","source":"192.0.2.1:5000",` +
		`"action":"rollout.pause","object":"rollout/r-1","outcome":"ok","details":{"a":"<first> & \"quoted\"\n\u2028é","z":"last"}}`
	if string(got) != want {
		t.Fatalf("CanonicalJSON =\n%s\nwant\n%s", got, want)
	}
	e.Details = nil
	got, err = CanonicalJSON(e)
	if err != nil || !bytes.HasSuffix(got, []byte(`"details":{}}`)) {
		t.Fatalf("CanonicalJSON with nil details = %s, %v; want details {}", got, err)
	}
	// Control characters: the escapes documented at CanonicalJSON (pinned
	// here so a change in encoding/json cannot silently change leaf hashes).
	e.Details = map[string]string{"c": "\x01\b\f\t\r\n\x7f"}
	got, err = CanonicalJSON(e)
	if want := `"details":{"c":"\u0001\b\f\t\r\n` + "\x7f" + `"}}`; err != nil || !bytes.HasSuffix(got, []byte(want)) {
		t.Fatalf("CanonicalJSON with control characters = %s, %v; want suffix %s", got, err, want)
	}
	e.Details = nil
	got, _ = CanonicalJSON(e)
	leaf, err := LeafHash(e)
	if err != nil || leaf != tlog.RecordHash(got) {
		t.Fatalf("LeafHash = %v, %v; want RecordHash of the canonical JSON", leaf, err)
	}
}

func TestCanonicalJSONRejects(t *testing.T) {
	t.Parallel()
	ok := Entry{Actor: "a", Action: "x", Outcome: OutcomeOK, Time: time.Unix(1, 0)}
	tests := []struct {
		name string
		edit func(*Entry)
		code tufota.Code
	}{
		{"invalid UTF-8", func(e *Entry) { e.Object = "a\xffb" }, tufota.EInvalid},
		{"NUL", func(e *Entry) { e.Actor = "a\x00b" }, tufota.EInvalid},
		{"NUL in details key", func(e *Entry) { e.Details = map[string]string{"k\x00": "v"} }, tufota.EInvalid},
		{"invalid UTF-8 in details", func(e *Entry) { e.Details = map[string]string{"k": "\xc3"} }, tufota.EInvalid},
		{"time before 1678", func(e *Entry) { e.Time = time.Date(1600, 1, 1, 0, 0, 0, 0, time.UTC) }, tufota.EInvalid},
		{"too large", func(e *Entry) { e.Details = map[string]string{"k": strings.Repeat("x", MaxEntrySize)} }, tufota.ETooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := ok
			tt.edit(&e)
			_, err := CanonicalJSON(e)
			if got := tufota.ErrorCode(err); err == nil || got != tt.code {
				t.Fatalf("CanonicalJSON error = %v (code %q), want code %q", err, got, tt.code)
			}
		})
	}
}

func TestCheckpointText(t *testing.T) {
	t.Parallel()
	h := tlog.RecordHash([]byte("x"))
	c := Checkpoint{Origin: "go.sum database tree", Size: 42, Hash: h}
	if got, want := c.Text(), string(tlog.FormatTree(c.Tree())); got != want {
		t.Fatalf("Text() = %q, want tlog.FormatTree %q", got, want)
	}
	back, err := parseCheckpointText(c.Text() + "extension line\n")
	if err != nil || back != c {
		t.Fatalf("parse(Text + extension) = %+v, %v; want %+v", back, err, c)
	}
	for _, bad := range []string{"", "o\n1\n", "o\n01\n" + strings.Split(c.Text(), "\n")[2] + "\n", "o\n-1\nAAAA\n", "o\n9000000000000000000\n" + strings.Split(c.Text(), "\n")[2] + "\n", "\n1\n" + strings.Split(c.Text(), "\n")[2] + "\n"} {
		if _, err := parseCheckpointText(bad); err == nil {
			t.Errorf("parseCheckpointText(%q): no error", bad)
		}
	}
}

// TestNoteSigner signs a checkpoint with an ed25519.PrivateKey and with
// sigstore's ED25519SignerVerifier (through its crypto.Signer) and checks
// both with the standard note verifier.
func TestNoteSigner(t *testing.T) {
	t.Parallel()
	priv := testKey(9)
	sv, err := signature.LoadED25519SignerVerifier(priv)
	if err != nil {
		t.Fatal(err)
	}
	var sigstoreSigner crypto.Signer = sv // compile-time proof it is a crypto.Signer
	for name, key := range map[string]crypto.Signer{"ed25519.PrivateKey": priv, "sigstore ED25519SignerVerifier": sigstoreSigner} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s, err := NewNoteSigner(testOrigin, key)
			if err != nil {
				t.Fatal(err)
			}
			vkey, err := VerifierKey(testOrigin, priv.Public())
			if err != nil || vkey != s.VerifierKey() {
				t.Fatalf("VerifierKey = %q, %v; want %q", vkey, err, s.VerifierKey())
			}
			v, err := NewNoteVerifier(s.VerifierKey())
			if err != nil {
				t.Fatal(err)
			}
			c := Checkpoint{Origin: testOrigin, Size: 3, Hash: tlog.RecordHash([]byte("r"))}
			msg, err := signCheckpoint(c, s, v)
			if err != nil {
				t.Fatal(err)
			}
			// The standard library of the Go checksum database accepts it.
			n, err := note.Open(msg, note.VerifierList(v))
			if err != nil || n.Text != c.Text() {
				t.Fatalf("note.Open = %v, %v", n, err)
			}
			got, err := OpenCheckpoint(msg, v)
			if err != nil || got != c {
				t.Fatalf("OpenCheckpoint = %+v, %v; want %+v", got, err, c)
			}
		})
	}
}

func TestNoteSignerRejects(t *testing.T) {
	t.Parallel()
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewNoteSigner(testOrigin, ec); !errors.Is(err, tufota.ErrInvalid) {
		t.Errorf("NewNoteSigner(ECDSA) error = %v, want EInvalid", err)
	}
	for _, name := range []string{"", "has space", "has+plus", "new\nline"} {
		if _, err := NewNoteSigner(name, testKey(1)); !errors.Is(err, tufota.ErrInvalid) {
			t.Errorf("NewNoteSigner(%q) error = %v, want EInvalid", name, err)
		}
	}
	if _, err := NewNoteVerifier("not a key"); !errors.Is(err, tufota.ErrInvalid) {
		t.Errorf("NewNoteVerifier(garbage) error = %v, want EInvalid", err)
	}
}

// TestOpenCheckpointRejects: a forged signature, another key, another
// origin.
func TestOpenCheckpointRejects(t *testing.T) {
	t.Parallel()
	s := testSigner(t, 1)
	v, _ := NewNoteVerifier(s.VerifierKey())
	c := Checkpoint{Origin: testOrigin, Size: 3, Hash: tlog.RecordHash([]byte("r"))}
	msg, err := signCheckpoint(c, s, v)
	if err != nil {
		t.Fatal(err)
	}
	forged := forgeSignature(msg)
	other := testSigner(t, 2)
	otherMsg, _ := note.Sign(&note.Note{Text: c.Text()}, other)
	wrongOriginSigner, _ := NewNoteSigner("elsewhere", ed25519.NewKeyFromSeed(make([]byte, 32)))
	wv, _ := NewNoteVerifier(wrongOriginSigner.VerifierKey())
	wrongOrigin, _ := note.Sign(&note.Note{Text: c.Text()}, wrongOriginSigner)
	tests := []struct {
		name string
		msg  []byte
		v    note.Verifier
	}{
		{"forged signature", forged, v},
		{"signed by another key", otherMsg, v},
		{"origin is not the key name", wrongOrigin, wv},
		{"text edited", bytes.Replace(msg, []byte("\n3\n"), []byte("\n4\n"), 1), v},
		{"garbage", []byte("garbage"), v},
	}
	for _, tt := range tests {
		if _, err := OpenCheckpoint(tt.msg, tt.v); !errors.Is(err, tufota.ErrInvalid) {
			t.Errorf("%s: OpenCheckpoint error = %v, want EInvalid", tt.name, err)
		}
	}
}

// forgeSignature flips one bit of the Ed25519 signature in a signed note
// (after the 4-byte key hash), keeping it well-formed base64.
func forgeSignature(msg []byte) []byte {
	out := bytes.Clone(msg)
	i := bytes.LastIndex(out, []byte(" ")) + 1 + 10 // inside the signature bytes
	if out[i] == 'A' {
		out[i] = 'B'
	} else {
		out[i] = 'A'
	}
	return out
}
