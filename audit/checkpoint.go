package audit

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/tufota/tufota"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// Checkpoint is the content of a signed checkpoint (C2SP tlog-checkpoint):
// the log's origin, its size and the RFC 6962 root hash of its first Size
// entries. Tree() converts it to golang.org/x/mod/sumdb/tlog's Tree.
type Checkpoint struct {
	Origin string    `json:"origin"`
	Size   int64     `json:"size"`
	Hash   tlog.Hash `json:"hash"` // JSON: base64, as in the note
}

// Tree returns the checkpoint as a tlog.Tree.
func (c Checkpoint) Tree() tlog.Tree { return tlog.Tree{N: c.Size, Hash: c.Hash} }

// Text returns the checkpoint body that is signed:
// "<origin>\n<size>\n<base64 hash>\n". With origin "go.sum database tree" it
// is byte for byte tlog.FormatTree(c.Tree()).
func (c Checkpoint) Text() string {
	return c.Origin + "\n" + strconv.FormatInt(c.Size, 10) + "\n" + base64.StdEncoding.EncodeToString(c.Hash[:]) + "\n"
}

// parseCheckpointText parses a checkpoint body. Extension lines after the
// hash are allowed (C2SP tlog-checkpoint) and ignored.
func parseCheckpointText(text string) (Checkpoint, error) {
	lines := strings.SplitN(text, "\n", 4)
	if len(lines) < 4 {
		return Checkpoint{}, errors.New("checkpoint has fewer than three lines")
	}
	origin, sizeText, hashText := lines[0], lines[1], lines[2]
	if origin == "" {
		return Checkpoint{}, errors.New("checkpoint origin is empty")
	}
	size, err := strconv.ParseInt(sizeText, 10, 64)
	if err != nil || size < 0 || strconv.FormatInt(size, 10) != sizeText {
		return Checkpoint{}, fmt.Errorf("checkpoint size %.40q is not a decimal number", sizeText)
	}
	if size > maxSeq {
		// tlog's proof checks loop forever on trees larger than 2^62.
		return Checkpoint{}, fmt.Errorf("checkpoint size %d is larger than 2^62", size)
	}
	raw, err := base64.StdEncoding.DecodeString(hashText)
	if err != nil || len(raw) != tlog.HashSize {
		return Checkpoint{}, fmt.Errorf("checkpoint hash %.80q is not a base64 SHA-256 hash", hashText)
	}
	c := Checkpoint{Origin: origin, Size: size}
	copy(c.Hash[:], raw)
	return c, nil
}

// OpenCheckpoint verifies a signed checkpoint note with v and returns its
// content. It fails with EInvalid when the note is malformed, is not signed
// by v (an unknown or wrong key), or its origin is not v's name (the log's
// key name is its origin).
func OpenCheckpoint(msg []byte, v note.Verifier) (Checkpoint, error) {
	n, err := note.Open(msg, note.VerifierList(v))
	if err != nil {
		var unverified *note.UnverifiedNoteError
		if errors.As(err, &unverified) {
			return Checkpoint{}, tufota.Errorf(tufota.EInvalid, "checkpoint is not signed by %s+%08x", v.Name(), v.KeyHash())
		}
		return Checkpoint{}, tufota.Errorf(tufota.EInvalid, "checkpoint signature: %w", err)
	}
	c, err := parseCheckpointText(n.Text)
	if err != nil {
		return Checkpoint{}, tufota.Errorf(tufota.EInvalid, "checkpoint: %w", err)
	}
	if c.Origin != v.Name() {
		return Checkpoint{}, tufota.Errorf(tufota.EInvalid, "checkpoint origin %q is not the log %q", c.Origin, v.Name())
	}
	return c, nil
}

// signCheckpoint signs c with s and checks the result with v before
// returning it, so a misconfigured key never produces an unverifiable
// checkpoint.
func signCheckpoint(c Checkpoint, s note.Signer, v note.Verifier) ([]byte, error) {
	msg, err := note.Sign(&note.Note{Text: c.Text()}, s)
	if err != nil {
		return nil, fmt.Errorf("sign checkpoint: %w", err)
	}
	got, err := OpenCheckpoint(msg, v)
	if err != nil {
		return nil, fmt.Errorf("signed checkpoint does not verify with the log's verifier key: %w", err)
	}
	if got != c || !bytes.HasPrefix(msg, []byte(c.Text())) {
		return nil, errors.New("signed checkpoint does not round-trip")
	}
	return msg, nil
}
