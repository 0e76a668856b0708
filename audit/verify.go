package audit

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"

	"github.com/tufota/tufota"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// maxSeq bounds sequence numbers and sizes read from untrusted exports.
const maxSeq = 1 << 62

// VerifyError reports a log or export that fails verification. Seq is the
// first broken entry, or -1 when the problem is not one entry's (a forged
// checkpoint, a malformed export); when only a range can be blamed (entries
// rewritten together with all their hashes, caught by a signed checkpoint),
// Seq..LastSeq is that range, else LastSeq == Seq. It unwraps to an
// EInvalid *tufota.Error.
type VerifyError struct {
	Seq     int64
	LastSeq int64
	Reason  string
}

func (e *VerifyError) Error() string {
	if e.Seq < 0 {
		return "audit log does not verify: " + e.Reason
	}
	return fmt.Sprintf("audit log does not verify at entry %d: %s", e.Seq, e.Reason)
}

// Unwrap lets tufota.ErrorCode and errors.Is(err, tufota.ErrInvalid) see
// an EInvalid error.
func (e *VerifyError) Unwrap() error { return &tufota.Error{Code: tufota.EInvalid, Message: e.Reason} }

// Report summarises a verification.
type Report struct {
	Origin      string `json:"origin"`
	VerifierKey string `json:"verifier_key"`
	// FirstSeq and Size bound the entries checked: [FirstSeq, Size).
	FirstSeq int64 `json:"first_seq"`
	Size     int64 `json:"size"`
	// Entries is how many entries were checked (Size - FirstSeq).
	Entries int64 `json:"entries"`
	// Checkpoints counts the signed checkpoints verified, Head is the
	// newest of them (for an export: its head checkpoint).
	Checkpoints int        `json:"checkpoints"`
	Head        Checkpoint `json:"head"`
	// OK is true when everything verified; otherwise BrokenSeq is the first
	// broken entry (-1 if none in particular) and Problem says what is wrong.
	OK        bool   `json:"ok"`
	BrokenSeq int64  `json:"broken_seq"`
	Problem   string `json:"problem,omitempty"`
}

// VerifyOption configures VerifyExport and VerifyConsistency.
type VerifyOption func(*verifyConfig)

type verifyConfig struct {
	trustedKey string
}

// WithTrustedKey pins the checkpoint verifier key the export must carry.
// Without it, an export proves only that it is internally consistent and
// signed by the key it names; a reviewer must compare Report.VerifierKey
// with the log's published key.
func WithTrustedKey(vkey string) VerifyOption { return func(c *verifyConfig) { c.trustedKey = vkey } }

// VerifyExport checks an export written by Log.Export (JSON or CSV,
// detected from the first byte) while streaming it, in O(log n) memory
// besides its checkpoints: the verifier key (pinned with WithTrustedKey);
// every checkpoint's signature; that the entries are the contiguous run
// first_seq..end_seq-1 with no gap, duplicate or reordering; every entry's
// leaf hash, recomputed from its content; the tree root recomputed at every
// checkpoint size; and the head checkpoint, through the consistency proof
// from the last entry's tree. A failure is a *VerifyError naming the first
// broken entry; the Report says how far verification got.
func VerifyExport(r io.Reader, opts ...VerifyOption) (Report, error) {
	var cfg verifyConfig
	for _, o := range opts {
		o(&cfg)
	}
	rep, err := verifyExport(r, cfg, nil)
	if err != nil {
		return rep, fmt.Errorf("audit verify export: %w", err)
	}
	return rep, nil
}

// observer sees a verification as it goes: leaf for every entry, tree after
// the prefix and after every entry.
type observer struct {
	leaf func(seq int64, leaf tlog.Hash) error
	tree func(b *builder) error
}

func badExport(format string, args ...any) error {
	return &VerifyError{Seq: -1, LastSeq: -1, Reason: "malformed export: " + fmt.Sprintf(format, args...)}
}

func verifyExport(r io.Reader, cfg verifyConfig, obs *observer) (Report, error) {
	rep := Report{BrokenSeq: -1}
	fail := func(err error) (Report, error) {
		var ve *VerifyError
		if errors.As(err, &ve) {
			rep.BrokenSeq, rep.Problem = ve.Seq, ve.Reason
		} else {
			rep.Problem = err.Error()
		}
		return rep, err
	}
	src, err := newExportReader(r)
	if err != nil {
		return fail(err)
	}
	h, err := src.header()
	if err != nil {
		return fail(err)
	}
	rep.Origin, rep.VerifierKey, rep.FirstSeq, rep.Size = h.Origin, h.VerifierKey, h.FirstSeq, h.FirstSeq
	if h.Format != ExportFormat {
		return fail(badExport("format %.60q is not %q", h.Format, ExportFormat))
	}
	if cfg.trustedKey != "" && h.VerifierKey != cfg.trustedKey {
		return fail(&VerifyError{Seq: -1, LastSeq: -1, Reason: fmt.Sprintf("the export is signed by key %.200q, not the trusted key %q", h.VerifierKey, cfg.trustedKey)})
	}
	v, err := note.NewVerifier(h.VerifierKey)
	if err != nil {
		return fail(badExport("verifier key %.200q: %v", h.VerifierKey, err))
	}
	if h.Origin != v.Name() {
		return fail(badExport("origin %.100q is not the verifier key's name %q", h.Origin, v.Name()))
	}
	if h.FirstSeq < 0 || h.FirstSeq > maxSeq || h.EndSeq < h.FirstSeq || h.EndSeq > maxSeq {
		return fail(badExport("entry range [%d, %d) is invalid", h.FirstSeq, h.EndSeq))
	}
	prefix, err := parseHashesHex(h.Prefix)
	if err != nil {
		return fail(badExport("prefix: %v", err))
	}
	b, err := newBuilder(h.FirstSeq, prefix)
	if err != nil {
		return fail(badExport("prefix: %v", err))
	}

	// Checkpoints, sorted by size; two different roots for one size is a
	// split view.
	var cps []Checkpoint
	for _, x := range h.Checkpoints {
		c, err := OpenCheckpoint([]byte(x.Note), v)
		if err != nil {
			return fail(&VerifyError{Seq: -1, LastSeq: -1, Reason: fmt.Sprintf("checkpoint of size %d: %v", x.Size, err)})
		}
		if c.Size != x.Size {
			return fail(badExport("checkpoint listed with size %d has size %d", x.Size, c.Size))
		}
		if c.Size < h.FirstSeq || c.Size > h.EndSeq {
			return fail(badExport("checkpoint of size %d is outside the exported range [%d, %d]", c.Size, h.FirstSeq, h.EndSeq))
		}
		cps = append(cps, c)
	}
	slices.SortStableFunc(cps, func(a, b Checkpoint) int { return cmpInt64(a.Size, b.Size) })
	for i := 1; i < len(cps); i++ {
		if cps[i].Size == cps[i-1].Size && cps[i].Hash != cps[i-1].Hash {
			return fail(&VerifyError{Seq: -1, LastSeq: -1, Reason: fmt.Sprintf("two different signed checkpoints for size %d", cps[i].Size)})
		}
	}
	proven := h.FirstSeq // entries below are proven (or not exported)
	ci := 0
	checkRoot := func() error {
		for ; ci < len(cps) && cps[ci].Size == b.size; ci++ {
			if b.root() != cps[ci].Hash {
				if b.size == h.FirstSeq {
					return badExport("the prefix hashes do not match the signed checkpoint of size %d", b.size)
				}
				return &VerifyError{Seq: proven, LastSeq: b.size - 1, Reason: fmt.Sprintf(
					"entries %d to %d do not match the signed checkpoint of size %d: one of them was altered, removed or reordered together with its hash",
					proven, b.size-1, b.size)}
			}
			proven = b.size
			rep.Checkpoints++
			rep.Head = cps[ci]
		}
		return nil
	}
	if err := checkRoot(); err != nil {
		return fail(err)
	}
	if obs != nil && obs.tree != nil {
		if err := obs.tree(b); err != nil {
			return fail(err)
		}
	}

	for {
		x, ok, err := src.next()
		if err != nil {
			return fail(err)
		}
		if !ok {
			break
		}
		seq := b.size
		if x.Seq != seq {
			if x.Seq > seq {
				return fail(&VerifyError{Seq: seq, LastSeq: seq, Reason: fmt.Sprintf("entry %d is missing or moved: entry %d comes in its place", seq, x.Seq)})
			}
			return fail(&VerifyError{Seq: seq, LastSeq: seq, Reason: fmt.Sprintf("entry %d is out of order: entry %d comes in its place", seq, x.Seq)})
		}
		if seq >= h.EndSeq {
			return fail(&VerifyError{Seq: seq, LastSeq: seq, Reason: fmt.Sprintf("entry %d is beyond the declared end %d", seq, h.EndSeq)})
		}
		e, err := x.toEntry()
		if err != nil {
			return fail(&VerifyError{Seq: seq, LastSeq: seq, Reason: fmt.Sprintf("entry %d: %v", seq, err)})
		}
		leaf, err := LeafHash(e)
		if err != nil {
			return fail(&VerifyError{Seq: seq, LastSeq: seq, Reason: fmt.Sprintf("entry %d cannot be encoded: %v", seq, err)})
		}
		claimed, err := parseHashHex(x.Hash)
		if err != nil || claimed != leaf {
			return fail(&VerifyError{Seq: seq, LastSeq: seq, Reason: fmt.Sprintf("entry %d was altered: its content does not match its hash", seq)})
		}
		if obs != nil && obs.leaf != nil {
			if err := obs.leaf(seq, leaf); err != nil {
				return fail(err)
			}
		}
		b.add(leaf)
		rep.Size, rep.Entries = b.size, b.size-h.FirstSeq
		if err := checkRoot(); err != nil {
			return fail(err)
		}
		if obs != nil && obs.tree != nil {
			if err := obs.tree(b); err != nil {
				return fail(err)
			}
		}
	}
	end := b.size
	if ci < len(cps) {
		return fail(&VerifyError{Seq: end, LastSeq: cps[ci].Size - 1, Reason: fmt.Sprintf(
			"entries %d to %d are missing: a signed checkpoint of size %d covers them", end, cps[ci].Size-1, cps[ci].Size)})
	}
	if end != h.EndSeq {
		return fail(&VerifyError{Seq: end, LastSeq: h.EndSeq - 1, Reason: fmt.Sprintf(
			"entries %d to %d are missing: the export declares entries up to %d", end, h.EndSeq-1, h.EndSeq-1)})
	}

	hd, err := src.head()
	if err != nil {
		return fail(err)
	}
	head, err := OpenCheckpoint([]byte(hd.Note), v)
	if err != nil {
		return fail(&VerifyError{Seq: -1, LastSeq: -1, Reason: fmt.Sprintf("head checkpoint: %v", err)})
	}
	if head.Size < end {
		return fail(badExport("the head checkpoint (size %d) is older than the last entry %d", head.Size, end-1))
	}
	if h.Until == "" && head.Size != end {
		return fail(&VerifyError{Seq: end, LastSeq: head.Size - 1, Reason: fmt.Sprintf(
			"entries %d to %d are missing: the export has no end time but the head checkpoint covers %d entries", end, head.Size-1, head.Size)})
	}
	proof, err := parseHashesHex(hd.Proof)
	if err != nil {
		return fail(badExport("head proof: %v", err))
	}
	if end == 0 {
		if len(proof) != 0 {
			return fail(badExport("head proof for an empty tree must be empty"))
		}
	} else if err := tlog.CheckTree(proof, head.Size, head.Hash, end, b.root()); err != nil {
		if proven == end {
			return fail(&VerifyError{Seq: -1, LastSeq: -1, Reason: fmt.Sprintf("the head checkpoint of size %d is not consistent with the checkpoint of size %d (%v)", head.Size, end, err)})
		}
		return fail(&VerifyError{Seq: proven, LastSeq: end - 1, Reason: fmt.Sprintf(
			"entries %d to %d do not match the head checkpoint of size %d: one of them was altered, removed or reordered together with its hash",
			proven, end-1, head.Size)})
	}
	rep.Checkpoints++
	rep.Head = head
	rep.OK = true
	return rep, nil
}

func cmpInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// VerifyConsistency checks that the export newExport extends oldExport:
// both verify (as VerifyExport), they carry the same verifier key, and the
// tree recomputed from newExport at oldExport's head size has oldExport's
// signed head root. Entries present in both must be identical. newExport
// must cover that size: its first entry must be at or before oldExport's
// head size (export it with a since no later than oldExport's last entry).
// A failure is a *VerifyError (naming the first entry that differs, when
// one does) or EInvalid for exports that cannot be compared.
func VerifyConsistency(oldExport, newExport io.Reader, opts ...VerifyOption) error {
	var cfg verifyConfig
	for _, o := range opts {
		o(&cfg)
	}
	var oldFirst int64 = -1
	var oldLeaves []tlog.Hash
	oldRep, err := verifyExport(oldExport, cfg, &observer{leaf: func(seq int64, leaf tlog.Hash) error {
		if oldFirst < 0 {
			oldFirst = seq
		}
		oldLeaves = append(oldLeaves, leaf)
		return nil
	}})
	if err != nil {
		return fmt.Errorf("audit verify consistency: old export: %w", err)
	}
	oldHead := oldRep.Head
	if cfg.trustedKey == "" {
		cfg.trustedKey = oldRep.VerifierKey
	}
	reached := oldHead.Size == 0
	newRep, err := verifyExport(newExport, cfg, &observer{
		leaf: func(seq int64, leaf tlog.Hash) error {
			if i := seq - oldFirst; oldFirst >= 0 && i >= 0 && i < int64(len(oldLeaves)) && oldLeaves[i] != leaf {
				return &VerifyError{Seq: seq, LastSeq: seq, Reason: fmt.Sprintf("entry %d differs between the old and the new export", seq)}
			}
			return nil
		},
		tree: func(b *builder) error {
			if b.size != oldHead.Size || reached {
				return nil
			}
			reached = true
			if b.root() != oldHead.Hash {
				return &VerifyError{Seq: -1, LastSeq: -1, Reason: fmt.Sprintf(
					"the new export's tree of size %d does not match the old export's signed head: history was rewritten", b.size)}
			}
			return nil
		},
	})
	if err != nil {
		return fmt.Errorf("audit verify consistency: new export: %w", err)
	}
	if newRep.Head.Size < oldHead.Size {
		return fmt.Errorf("audit verify consistency: %w", &VerifyError{Seq: -1, LastSeq: -1, Reason: fmt.Sprintf(
			"the new export's head (size %d) is older than the old export's head (size %d): the log was rolled back, or the exports are swapped",
			newRep.Head.Size, oldHead.Size)})
	}
	if !reached {
		return tufota.Errorf(tufota.EInvalid, "audit verify consistency: the new export covers entries %d to %d, which does not include the old export's head size %d; export with an earlier --since",
			newRep.FirstSeq, newRep.Size-1, oldHead.Size)
	}
	return nil
}

// exportReader reads an export in order: header, entries, head.
type exportReader interface {
	header() (exportHeader, error)
	// next returns the next entry, or ok false after the last one.
	next() (e exportEntry, ok bool, err error)
	// head returns the head and checks that nothing follows it.
	head() (exportHead, error)
}

// newExportReader detects the layout from the first non-space byte.
func newExportReader(r io.Reader) (exportReader, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		c, err := br.ReadByte()
		if err != nil {
			return nil, badExport("empty or unreadable: %v", err)
		}
		switch c {
		case ' ', '\t', '\r', '\n':
			continue
		}
		if err := br.UnreadByte(); err != nil {
			return nil, err
		}
		if c == '{' {
			return newJSONExportReader(br), nil
		}
		return newCSVExportReader(br), nil
	}
}

// jsonExportReader streams the JSON layout with a json.Decoder.
type jsonExportReader struct {
	dec *json.Decoder
}

func newJSONExportReader(r io.Reader) *jsonExportReader {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	return &jsonExportReader{dec: dec}
}

func (j *jsonExportReader) delim(want json.Delim) error {
	t, err := j.dec.Token()
	if err != nil {
		return badExport("%v", err)
	}
	if d, ok := t.(json.Delim); !ok || d != want {
		return badExport("want %q, have %v", want, t)
	}
	return nil
}

// key reads the next member name of the top-level object.
func (j *jsonExportReader) key() (string, error) {
	t, err := j.dec.Token()
	if err != nil {
		return "", badExport("%v", err)
	}
	k, ok := t.(string)
	if !ok {
		return "", badExport("want a member name, have %v", t)
	}
	return k, nil
}

func (j *jsonExportReader) header() (exportHeader, error) {
	var h exportHeader
	if err := j.delim('{'); err != nil {
		return h, err
	}
	seen := map[string]bool{}
	for {
		if !j.dec.More() {
			return h, badExport("no entries")
		}
		k, err := j.key()
		if err != nil {
			return h, err
		}
		if seen[k] {
			return h, badExport("member %q repeated", k)
		}
		seen[k] = true
		var dst any
		switch k {
		case "format":
			dst = &h.Format
		case "origin":
			dst = &h.Origin
		case "verifier_key":
			dst = &h.VerifierKey
		case "since":
			dst = &h.Since
		case "until":
			dst = &h.Until
		case "first_seq":
			dst = &h.FirstSeq
		case "end_seq":
			dst = &h.EndSeq
		case "prefix":
			dst = &h.Prefix
		case "checkpoints":
			dst = &h.Checkpoints
		case "entries":
			for _, need := range []string{"format", "origin", "verifier_key", "first_seq", "end_seq", "prefix", "checkpoints"} {
				if !seen[need] {
					return h, badExport("member %q missing before the entries", need)
				}
			}
			return h, j.delim('[')
		default:
			return h, badExport("unknown member %.60q", k)
		}
		if err := j.dec.Decode(dst); err != nil {
			return h, badExport("member %q: %v", k, err)
		}
	}
}

func (j *jsonExportReader) next() (exportEntry, bool, error) {
	var e exportEntry
	if !j.dec.More() {
		return e, false, j.delim(']')
	}
	if err := j.dec.Decode(&e); err != nil {
		return e, false, badExport("entry: %v", err)
	}
	return e, true, nil
}

func (j *jsonExportReader) head() (exportHead, error) {
	var h exportHead
	if !j.dec.More() {
		return h, badExport("no head checkpoint")
	}
	k, err := j.key()
	if err != nil {
		return h, err
	}
	if k != "head" {
		return h, badExport("want member \"head\" after the entries, have %.60q", k)
	}
	if err := j.dec.Decode(&h); err != nil {
		return h, badExport("head: %v", err)
	}
	if err := j.delim('}'); err != nil {
		return h, err
	}
	if _, err := j.dec.Token(); err != io.EOF {
		return h, badExport("data after the export")
	}
	return h, nil
}

// csvExportReader reads the CSV layout row by row.
type csvExportReader struct {
	r       *csv.Reader
	pending []string // a row read ahead
	eof     bool
}

func newCSVExportReader(r io.Reader) *csvExportReader {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = numColumns
	cr.ReuseRecord = false
	return &csvExportReader{r: cr}
}

// read returns the next row, unescaped, or nil at the end.
func (c *csvExportReader) read() ([]string, error) {
	if c.pending != nil {
		row := c.pending
		c.pending = nil
		return row, nil
	}
	if c.eof {
		return nil, nil
	}
	row, err := c.r.Read()
	if err == io.EOF {
		c.eof = true
		return nil, nil
	}
	if err != nil {
		return nil, badExport("csv: %v", err)
	}
	for i := range row {
		row[i] = csvUnescape(row[i])
	}
	return row, nil
}

func parseSeq(row []string) (int64, error) {
	n, err := strconv.ParseInt(row[colSeq], 10, 64)
	if err != nil {
		return 0, badExport("%s row: seq %.30q is not a number", row[colRecord], row[colSeq])
	}
	return n, nil
}

func (c *csvExportReader) header() (exportHeader, error) {
	var h exportHeader
	row, err := c.r.Read()
	if err != nil {
		return h, badExport("csv header: %v", err)
	}
	if !slices.Equal(row, csvColumns) {
		return h, badExport("csv header is not %v", csvColumns)
	}
	seen := map[string]bool{}
	for {
		row, err := c.read()
		if err != nil {
			return h, err
		}
		if row == nil {
			return h, badExport("no head checkpoint")
		}
		rec := row[colRecord]
		if rec == "entry" || rec == "head" {
			for _, need := range []string{"format", "origin", "verifier_key", "first_seq", "end_seq"} {
				if !seen[need] {
					return h, badExport("record %q missing before the entries", need)
				}
			}
			c.pending = row
			return h, nil
		}
		if seen[rec] && rec != "prefix" && rec != "checkpoint" {
			return h, badExport("record %q repeated", rec)
		}
		seen[rec] = true
		switch rec {
		case "format":
			h.Format = row[colValue]
		case "origin":
			h.Origin = row[colValue]
		case "verifier_key":
			h.VerifierKey = row[colValue]
		case "since":
			h.Since = row[colValue]
		case "until":
			h.Until = row[colValue]
		case "first_seq", "end_seq", "prefix", "checkpoint":
			n, err := parseSeq(row)
			if err != nil {
				return h, err
			}
			switch rec {
			case "first_seq":
				h.FirstSeq = n
			case "end_seq":
				h.EndSeq = n
			case "prefix":
				if n != int64(len(h.Prefix)) {
					return h, badExport("prefix row %d out of order", n)
				}
				h.Prefix = append(h.Prefix, row[colHash])
			case "checkpoint":
				h.Checkpoints = append(h.Checkpoints, exportCheckpoint{Size: n, Note: row[colValue]})
			}
		default:
			return h, badExport("unknown record %.60q", rec)
		}
	}
}

func (c *csvExportReader) next() (exportEntry, bool, error) {
	var e exportEntry
	row, err := c.read()
	if err != nil {
		return e, false, err
	}
	if row == nil {
		return e, false, badExport("no head checkpoint")
	}
	if row[colRecord] != "entry" {
		c.pending = row
		return e, false, nil
	}
	seq, err := parseSeq(row)
	if err != nil {
		return e, false, err
	}
	d, err := decodeDetails(row[colDetails])
	if err != nil {
		return e, false, badExport("entry %d: %v", seq, err)
	}
	e = exportEntry{
		Seq: seq, Time: row[colTime], Actor: row[colActor], Role: row[colRole], Source: row[colSource],
		Action: row[colAction], Object: row[colObject], Outcome: row[colOutcome], Details: d, Hash: row[colHash],
	}
	return e, true, nil
}

func (c *csvExportReader) head() (exportHead, error) {
	var h exportHead
	row, err := c.read()
	if err != nil {
		return h, err
	}
	if row == nil || row[colRecord] != "head" {
		return h, badExport("no head checkpoint after the entries")
	}
	h.Note = row[colValue]
	for {
		row, err := c.read()
		if err != nil {
			return h, err
		}
		if row == nil {
			return h, nil
		}
		if row[colRecord] != "proof" {
			return h, badExport("unexpected %.60q record after the head", row[colRecord])
		}
		n, err := parseSeq(row)
		if err != nil {
			return h, err
		}
		if n != int64(len(h.Proof)) {
			return h, badExport("proof row %d out of order", n)
		}
		h.Proof = append(h.Proof, row[colHash])
	}
}
