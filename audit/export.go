package audit

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/tufota/tufota"
	"golang.org/x/mod/sumdb/tlog"
)

// ExportFormat identifies the export layout, in its "format" member (JSON)
// or "format" record (CSV).
const ExportFormat = "tufota-audit-export/v1"

// An export is self-verifying. It holds, in this order:
//
//   - format, origin and verifier_key (the checkpoint public key), and the
//     since/until range asked for (informational);
//   - first_seq and end_seq: the entries exported are [first_seq, end_seq),
//     a contiguous run of the log (so verification can recompute the tree);
//   - prefix: the hex hashes of the complete subtrees covering
//     [0, first_seq), left to right (empty when first_seq is 0);
//   - checkpoints: every stored signed checkpoint whose size lies in
//     [first_seq, end_seq];
//   - entries, each with its hex leaf hash;
//   - head: a fresh signed checkpoint over the whole log at export time, and
//     the hex RFC 6962 consistency proof from the tree of size end_seq to
//     it (empty when the export reaches the head, as it does without
//     until).
//
// The JSON form is one object with the members format, origin,
// verifier_key, since?, until?, first_seq, end_seq, prefix, checkpoints
// ([{size, note}]), entries, head ({note, proof}) in that order (verifiers
// stream it and rely on the order). The CSV form has the columns
// record,seq,time,actor,role,source,action,object,outcome,details,hash,value;
// the record column says what a row is (format, origin, verifier_key, since,
// until, first_seq, end_seq, prefix, checkpoint, entry, head, proof), entry
// rows fill the entry columns (details as a JSON object), the others use
// seq, hash or value. To defuse spreadsheet formulas, every CSV cell that
// starts with = + - @ tab, carriage return or ' is prefixed with one ';
// readers remove it.

// exportHeader is everything before the entries.
type exportHeader struct {
	Format      string             `json:"format"`
	Origin      string             `json:"origin"`
	VerifierKey string             `json:"verifier_key"`
	Since       string             `json:"since,omitempty"`
	Until       string             `json:"until,omitempty"`
	FirstSeq    int64              `json:"first_seq"`
	EndSeq      int64              `json:"end_seq"`
	Prefix      []string           `json:"prefix"`
	Checkpoints []exportCheckpoint `json:"checkpoints"`
}

type exportCheckpoint struct {
	Size int64  `json:"size"`
	Note string `json:"note"`
}

type exportHead struct {
	Note  string   `json:"note"`
	Proof []string `json:"proof"`
}

// exportEntry is an entry as exported: the canonical members plus hash.
type exportEntry struct {
	Seq     int64             `json:"seq"`
	Time    string            `json:"time"`
	Actor   string            `json:"actor"`
	Role    string            `json:"role"`
	Source  string            `json:"source"`
	Action  string            `json:"action"`
	Object  string            `json:"object"`
	Outcome string            `json:"outcome"`
	Details map[string]string `json:"details"`
	Hash    string            `json:"hash"`
}

// toEntry parses the exported entry back into an Entry (with Hash).
func (x exportEntry) toEntry() (Entry, error) {
	t, err := time.Parse(time.RFC3339Nano, x.Time)
	if err != nil {
		return Entry{}, fmt.Errorf("time %.60q is not RFC 3339", x.Time)
	}
	d := x.Details
	if d == nil {
		d = map[string]string{}
	}
	return Entry{
		Seq: x.Seq, Time: t.UTC(), Actor: x.Actor, Role: x.Role, Source: x.Source, Action: x.Action,
		Object: x.Object, Outcome: x.Outcome, Details: d, Hash: x.Hash,
	}, nil
}

func fromEntry(e Entry) exportEntry {
	return exportEntry{
		Seq: e.Seq, Time: formatTime(e.Time), Actor: e.Actor, Role: e.Role, Source: e.Source, Action: e.Action,
		Object: e.Object, Outcome: e.Outcome, Details: e.Details, Hash: e.Hash,
	}
}

// exportWriter writes one export layout.
type exportWriter interface {
	header(h exportHeader) error
	entry(e exportEntry) error
	head(h exportHead) error
}

// Export writes the entries recorded in [since, until) (zero times are
// unbounded) as format "json" or "csv", with the checkpoints in range, a
// fresh checkpoint over the whole log (signed now if the log grew) and the
// verifier key: see ExportFormat for the layout and VerifyExport to check
// it. The entries are the contiguous run from the first one at or after
// since to the last one before until, so a few entries stamped outside the
// range can be included if the clock stepped back. It fails with EInvalid
// for an unknown format, with Checkpoint's errors when the log does not
// check out, and with the database's or w's errors.
func (l *Log) Export(ctx context.Context, w io.Writer, format string, since, until time.Time) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	var ew exportWriter
	switch format {
	case "json":
		ew = &jsonExportWriter{w: bw}
	case "csv":
		ew = &csvExportWriter{w: csv.NewWriter(bw)}
	default:
		return tufota.Errorf(tufota.EInvalid, "audit export: format %q is not json or csv", format)
	}
	if err := l.export(ctx, ew, since, until); err != nil {
		return fmt.Errorf("audit export: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("audit export: %w", err)
	}
	return nil
}

func (l *Log) export(ctx context.Context, ew exportWriter, since, until time.Time) error {
	headNote, err := l.Checkpoint(ctx)
	if err != nil {
		return err
	}
	head, err := OpenCheckpoint(headNote, l.verifier)
	if err != nil {
		return err
	}
	n := head.Size
	first, end := int64(0), n
	if !since.IsZero() {
		first, err = l.seqBound(ctx, "SELECT MIN(seq) FROM audit_entries WHERE time >= ? AND seq < ?", clampNanos(since), n, n)
		if err != nil {
			return err
		}
	}
	if !until.IsZero() {
		end, err = l.seqBound(ctx, "SELECT MAX(seq) + 1 FROM audit_entries WHERE time < ? AND seq < ?", clampNanos(until), n, 0)
		if err != nil {
			return err
		}
	}
	end = max(end, first)
	prefix, err := hashReader{ctx, l.db}.ReadHashes(frontierIndexes(first))
	if err != nil {
		return err
	}
	cps, err := l.loadCheckpoints(ctx, first, end)
	if err != nil {
		return err
	}
	var proof tlog.TreeProof
	if end > 0 && end < n {
		if proof, err = tlog.ProveTree(n, end, hashReader{ctx, l.db}); err != nil {
			return fmt.Errorf("prove consistency %d to %d: %w", end, n, err)
		}
	}
	h := exportHeader{
		Format: ExportFormat, Origin: l.Origin(), VerifierKey: l.vkey,
		FirstSeq: first, EndSeq: end, Prefix: hashesHex(prefix), Checkpoints: []exportCheckpoint{},
	}
	if !since.IsZero() {
		h.Since = formatTime(since)
	}
	if !until.IsZero() {
		h.Until = formatTime(until)
	}
	for _, c := range cps {
		h.Checkpoints = append(h.Checkpoints, exportCheckpoint{Size: c.Size, Note: string(c.note)})
	}
	if err := ew.header(h); err != nil {
		return err
	}
	for from := first; from < end; {
		rows, err := readEntries(ctx, l.db, "SELECT "+entryColumns+
			" FROM audit_entries WHERE seq >= ? AND seq < ? ORDER BY seq", from, min(from+batchSize, end))
		if err != nil {
			return fmt.Errorf("read entries from %d: %w", from, err)
		}
		if len(rows) == 0 {
			return &VerifyError{Seq: from, LastSeq: from, Reason: fmt.Sprintf("entry %d is missing", from)}
		}
		for _, r := range rows {
			e, err := r.entry()
			if err != nil {
				return &VerifyError{Seq: r.seq, LastSeq: r.seq, Reason: fmt.Sprintf("entry %d: %v", r.seq, err)}
			}
			e.Hash = r.leaf
			if err := ew.entry(fromEntry(e)); err != nil {
				return err
			}
		}
		from = rows[len(rows)-1].seq + 1
	}
	return ew.head(exportHead{Note: string(headNote), Proof: hashesHex(proof)})
}

// seqBound runs a MIN/MAX query over seq with two arguments and returns
// def when it finds no row.
func (l *Log) seqBound(ctx context.Context, q string, t, n, def int64) (int64, error) {
	var v *int64
	if err := l.db.QueryRow(ctx, q, t, n).Scan(&v); err != nil {
		return 0, fmt.Errorf("find export range: %w", err)
	}
	if v == nil {
		return def, nil
	}
	return *v, nil
}

// jsonExportWriter writes the JSON layout, one entry per line.
type jsonExportWriter struct {
	w       *bufio.Writer
	entries int
}

func marshalJSON(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

func (j *jsonExportWriter) member(name string, v any, comma bool) error {
	b, err := marshalJSON(v)
	if err != nil {
		return err
	}
	fmt.Fprintf(j.w, "%q: %s", name, b)
	if comma {
		j.w.WriteString(",")
	}
	_, err = j.w.WriteString("\n")
	return err
}

func (j *jsonExportWriter) header(h exportHeader) error {
	j.w.WriteString("{\n")
	members := []struct {
		name string
		v    any
	}{{"format", h.Format}, {"origin", h.Origin}, {"verifier_key", h.VerifierKey}}
	if h.Since != "" {
		members = append(members, struct {
			name string
			v    any
		}{"since", h.Since})
	}
	if h.Until != "" {
		members = append(members, struct {
			name string
			v    any
		}{"until", h.Until})
	}
	for _, m := range members {
		if err := j.member(m.name, m.v, true); err != nil {
			return err
		}
	}
	if err := j.member("first_seq", h.FirstSeq, true); err != nil {
		return err
	}
	if err := j.member("end_seq", h.EndSeq, true); err != nil {
		return err
	}
	if err := j.member("prefix", h.Prefix, true); err != nil {
		return err
	}
	j.w.WriteString("\"checkpoints\": [")
	for i, c := range h.Checkpoints {
		b, err := marshalJSON(c)
		if err != nil {
			return err
		}
		if i > 0 {
			j.w.WriteString(",")
		}
		j.w.WriteString("\n")
		j.w.Write(b)
	}
	if len(h.Checkpoints) > 0 {
		j.w.WriteString("\n")
	}
	_, err := j.w.WriteString("],\n\"entries\": [")
	return err
}

func (j *jsonExportWriter) entry(e exportEntry) error {
	b, err := marshalJSON(e)
	if err != nil {
		return err
	}
	if j.entries > 0 {
		j.w.WriteString(",")
	}
	j.entries++
	j.w.WriteString("\n")
	_, err = j.w.Write(b)
	return err
}

func (j *jsonExportWriter) head(h exportHead) error {
	if j.entries > 0 {
		j.w.WriteString("\n")
	}
	j.w.WriteString("],\n")
	if err := j.member("head", h, false); err != nil {
		return err
	}
	_, err := j.w.WriteString("}\n")
	return err
}

// csvColumns is the CSV header row.
var csvColumns = []string{"record", "seq", "time", "actor", "role", "source", "action", "object", "outcome", "details", "hash", "value"}

// Column positions in csvColumns.
const (
	colRecord = iota
	colSeq
	colTime
	colActor
	colRole
	colSource
	colAction
	colObject
	colOutcome
	colDetails
	colHash
	colValue
	numColumns
)

// csvExportWriter writes the CSV layout.
type csvExportWriter struct {
	w *csv.Writer
}

// csvEscape defuses cells a spreadsheet would run as a formula (OWASP CSV
// injection) by prefixing "'"; csvUnescape undoes it. Cells starting with
// "'" are prefixed too, so the mapping is reversible.
func csvEscape(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r'", rune(s[0])) {
		return "'" + s
	}
	return s
}

func csvUnescape(s string) string { return strings.TrimPrefix(s, "'") }

func (c *csvExportWriter) row(cells [numColumns]string) error {
	for i := range cells {
		cells[i] = csvEscape(cells[i])
	}
	return c.w.Write(cells[:])
}

func (c *csvExportWriter) meta(record string, seq *int64, hash, value string) error {
	var r [numColumns]string
	r[colRecord], r[colHash], r[colValue] = record, hash, value
	if seq != nil {
		r[colSeq] = strconv.FormatInt(*seq, 10)
	}
	return c.row(r)
}

func (c *csvExportWriter) header(h exportHeader) error {
	if err := c.w.Write(csvColumns); err != nil {
		return err
	}
	for _, m := range [...]struct{ record, value string }{
		{"format", h.Format}, {"origin", h.Origin}, {"verifier_key", h.VerifierKey}, {"since", h.Since}, {"until", h.Until},
	} {
		if m.value == "" {
			continue
		}
		if err := c.meta(m.record, nil, "", m.value); err != nil {
			return err
		}
	}
	if err := c.meta("first_seq", &h.FirstSeq, "", ""); err != nil {
		return err
	}
	if err := c.meta("end_seq", &h.EndSeq, "", ""); err != nil {
		return err
	}
	for i, p := range h.Prefix {
		i := int64(i)
		if err := c.meta("prefix", &i, p, ""); err != nil {
			return err
		}
	}
	for _, cp := range h.Checkpoints {
		if err := c.meta("checkpoint", &cp.Size, "", cp.Note); err != nil {
			return err
		}
	}
	return nil
}

func (c *csvExportWriter) entry(e exportEntry) error {
	d, err := encodeDetails(e.Details)
	if err != nil {
		return err
	}
	var r [numColumns]string
	r[colRecord], r[colSeq], r[colTime] = "entry", strconv.FormatInt(e.Seq, 10), e.Time
	r[colActor], r[colRole], r[colSource], r[colAction] = e.Actor, e.Role, e.Source, e.Action
	r[colObject], r[colOutcome], r[colDetails], r[colHash] = e.Object, e.Outcome, d, e.Hash
	return c.row(r)
}

func (c *csvExportWriter) head(h exportHead) error {
	if err := c.meta("head", nil, "", h.Note); err != nil {
		return err
	}
	for i, p := range h.Proof {
		i := int64(i)
		if err := c.meta("proof", &i, p, ""); err != nil {
			return err
		}
	}
	c.w.Flush()
	return c.w.Error()
}
