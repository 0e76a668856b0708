package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/storage"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// maxAppendAttempts bounds the retries of an append that lost a race for
// the next sequence number to another process sharing the database.
const maxAppendAttempts = 20

// batchSize is how many entries one query reads while scanning.
const batchSize = 512

// Log is the audit log in a storage.DB. Appends and checkpoints are
// serialised: within the process by a mutex, across processes sharing a
// PostgreSQL database by the primary key on seq (the loser of a race
// retries). A Log is safe for concurrent use.
type Log struct {
	db        *storage.DB
	signer    note.Signer
	verifier  note.Verifier
	vkey      string
	now       func() time.Time
	logger    *slog.Logger
	retention time.Duration
	archive   storage.Blobs

	mu sync.Mutex // serialises Append and Checkpoint in this process
}

// Option configures New.
type Option func(*Log)

// WithNow sets the clock that stamps entries and checkpoints (default
// time.Now).
func WithNow(now func() time.Time) Option { return func(l *Log) { l.now = now } }

// WithLogger sets the logger (default slog.Default()).
func WithLogger(logger *slog.Logger) Option { return func(l *Log) { l.logger = logger } }

// WithVerifierKey gives the signer's encoded verifier key
// ("<name>+<hash>+<key>") when the signer passed to New does not provide one
// itself through a VerifierKey() string method (NoteSigner does).
func WithVerifierKey(vkey string) Option { return func(l *Log) { l.vkey = vkey } }

// WithRetention records how long entries must be kept (default
// DefaultRetention). tufota never prunes the log; the value is reported by
// Retention for documentation and operations.
func WithRetention(d time.Duration) Option { return func(l *Log) { l.retention = d } }

// WithArchive makes RunCheckpoints write every signed checkpoint to archive
// (see Archive) when it starts and after each checkpoint it signs: a
// write-once copy (S3 Object Lock) outside the database.
func WithArchive(archive storage.Blobs) Option { return func(l *Log) { l.archive = archive } }

// New returns the audit log stored in db (whose migrations, including
// 0002_audit.sql, OpenDB has applied), checkpointed with s. The checkpoint
// origin is s.Name(). New fails with EInvalid when the signer and its
// verifier key do not match or the retention is shorter than
// DefaultRetention, and with the database's error when the audit tables
// cannot be read.
func New(ctx context.Context, db *storage.DB, s note.Signer, opts ...Option) (*Log, error) {
	if db == nil || s == nil {
		return nil, tufota.Errorf(tufota.EInvalid, "audit: New needs a database and a signer")
	}
	l := &Log{db: db, signer: s, now: time.Now, logger: slog.Default(), retention: DefaultRetention}
	for _, o := range opts {
		o(l)
	}
	if l.vkey == "" {
		if k, ok := s.(interface{ VerifierKey() string }); ok {
			l.vkey = k.VerifierKey()
		}
	}
	if l.vkey == "" {
		return nil, tufota.Errorf(tufota.EInvalid, "audit: the checkpoint signer has no verifier key; pass WithVerifierKey")
	}
	v, err := NewNoteVerifier(l.vkey)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	if v.Name() != s.Name() || v.KeyHash() != s.KeyHash() {
		return nil, tufota.Errorf(tufota.EInvalid, "audit: verifier key %s+%08x does not belong to signer %s+%08x",
			v.Name(), v.KeyHash(), s.Name(), s.KeyHash())
	}
	if l.retention < DefaultRetention {
		return nil, tufota.Errorf(tufota.EInvalid, "audit: retention %s is shorter than the six-year minimum", l.retention)
	}
	l.verifier = v
	var n int64
	if err := db.QueryRow(ctx, "SELECT COUNT(*) FROM audit_checkpoints").Scan(&n); err != nil {
		return nil, fmt.Errorf("audit: read audit tables: %w", err)
	}
	return l, nil
}

// Origin returns the log's origin, the first line of its checkpoints.
func (l *Log) Origin() string { return l.signer.Name() }

// VerifierKey returns the encoded public key that verifies the log's
// checkpoints.
func (l *Log) VerifierKey() string { return l.vkey }

// Verifier returns the note verifier for the log's checkpoints.
func (l *Log) Verifier() note.Verifier { return l.verifier }

// Retention returns how long entries must be kept.
func (l *Log) Retention() time.Duration { return l.retention }

// Append adds e to the log and returns it with Seq, Time (the log's clock,
// UTC) and Hash filled in; values the caller set in those fields are
// ignored. Actor, Action and Outcome are required. It fails with EInvalid or
// ETooLarge for a bad entry (see CanonicalJSON), with the database's error
// (EUnavailable, ...) otherwise; nothing is appended on error.
func (l *Log) Append(ctx context.Context, e Entry) (Entry, error) {
	e, err := prepare(e)
	if err != nil {
		return Entry{}, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for attempt := 1; ; attempt++ {
		out, err := l.appendOnce(ctx, e)
		if err == nil {
			return out, nil
		}
		if !errors.Is(err, tufota.ErrConflict) || attempt == maxAppendAttempts {
			return Entry{}, fmt.Errorf("audit append %s: %w", e.Action, err)
		}
		// Another process took this sequence number: try the next one.
		l.logger.DebugContext(ctx, "audit append lost the race for a sequence number; retrying", "attempt", attempt, "err", err)
		t := time.NewTimer(time.Duration(rand.Int64N(int64(attempt) * int64(time.Millisecond))))
		select {
		case <-ctx.Done():
			t.Stop()
			return Entry{}, fmt.Errorf("audit append %s: %w", e.Action, ctx.Err())
		case <-t.C:
		}
	}
}

func (l *Log) appendOnce(ctx context.Context, e Entry) (Entry, error) {
	err := l.db.Tx(ctx, func(tx *storage.Tx) error {
		return l.insert(ctx, tx, &e)
	})
	if err != nil {
		return Entry{}, err
	}
	return e, nil
}

// prepare checks a new entry and gives it its own copy of Details.
func prepare(e Entry) (Entry, error) {
	if err := validateNew(e); err != nil {
		return Entry{}, err
	}
	e.Details = maps.Clone(e.Details)
	if e.Details == nil {
		e.Details = map[string]string{}
	}
	if err := checkStrings(e); err != nil {
		return Entry{}, err
	}
	return e, nil
}

// appendLock serialises appends across replicas on PostgreSQL, for the
// rest of the appending transaction.
const appendLock = "audit-append"

// AppendTx adds e to the log inside tx, the transaction of the change it
// records, so that the change and its entry commit together or not at all.
// It returns e as Append does; the entry exists only if tx commits. On
// PostgreSQL it holds the log's append lock until tx ends, so keep the
// rest of tx short and append after the rows tx locks. Errors as Append's;
// on error tx should be rolled back (or the call's savepoint).
func (l *Log) AppendTx(ctx context.Context, tx *storage.Tx, e Entry) (Entry, error) {
	e, err := prepare(e)
	if err != nil {
		return Entry{}, err
	}
	if err := l.insert(ctx, tx, &e); err != nil {
		return Entry{}, fmt.Errorf("audit append %s: %w", e.Action, err)
	}
	return e, nil
}

// insert appends e as the next entry of the log, in tx.
func (l *Log) insert(ctx context.Context, tx *storage.Tx, e *Entry) error {
	if err := tx.LockXact(ctx, appendLock); err != nil {
		return err
	}
	next, err := nextSeq(ctx, tx)
	if err != nil {
		return err
	}
	e.Seq = next
	e.Time = l.now().UTC().Round(0)
	canon, err := CanonicalJSON(*e)
	if err != nil {
		return err
	}
	leaf := tlog.RecordHash(canon)
	e.Hash = hashHex(leaf)
	stored, err := tlog.StoredHashesForRecordHash(next, leaf, hashReader{ctx, tx})
	if err != nil {
		return fmt.Errorf("compute tree hashes: %w", err)
	}
	details, err := encodeDetails(e.Details)
	if err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `INSERT INTO audit_entries
			(seq, time, actor, role, source, action, object, outcome, details, leaf)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		e.Seq, e.Time.UnixNano(), e.Actor, e.Role, e.Source, e.Action, e.Object, e.Outcome,
		details, e.Hash); err != nil {
		return fmt.Errorf("insert entry %d: %w", e.Seq, err)
	}
	q := "INSERT INTO audit_hashes (idx, hash) VALUES " + strings.TrimSuffix(strings.Repeat("(?, ?), ", len(stored)), ", ")
	args := make([]any, 0, 2*len(stored))
	base := tlog.StoredHashIndex(0, next)
	for i, h := range stored {
		args = append(args, base+int64(i), hashHex(h))
	}
	if _, err := tx.Exec(ctx, q, args...); err != nil {
		return fmt.Errorf("insert tree hashes of entry %d: %w", e.Seq, err)
	}
	return nil
}

// encodeDetails is the stored form of Details: a JSON object, sorted keys.
func encodeDetails(d map[string]string) (string, error) {
	if d == nil {
		d = map[string]string{}
	}
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(d); err != nil {
		return "", fmt.Errorf("encode details: %w", err)
	}
	return strings.TrimSuffix(b.String(), "\n"), nil
}

func decodeDetails(s string) (map[string]string, error) {
	d := map[string]string{}
	if err := json.Unmarshal([]byte(s), &d); err != nil {
		return nil, fmt.Errorf("details are not a JSON object of strings: %w", err)
	}
	if d == nil {
		return nil, errors.New("details are null, not a JSON object")
	}
	return d, nil
}

// nextSeq returns the number of entries, which is the next sequence number.
func nextSeq(ctx context.Context, q storage.Querier) (int64, error) {
	var n int64
	if err := q.QueryRow(ctx, "SELECT COALESCE(MAX(seq), -1) + 1 FROM audit_entries").Scan(&n); err != nil {
		return 0, fmt.Errorf("read log size: %w", err)
	}
	return n, nil
}

// hashReader reads stored tree hashes from the database for tlog.
type hashReader struct {
	ctx context.Context
	q   storage.Querier
}

// ReadHashes implements tlog.HashReader. A missing hash is an error.
func (r hashReader) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	const chunk = 200
	for start := 0; start < len(indexes); start += chunk {
		part := indexes[start:min(start+chunk, len(indexes))]
		got, err := r.read(part)
		if err != nil {
			return nil, err
		}
		for i, idx := range part {
			h, ok := got[idx]
			if !ok {
				return nil, fmt.Errorf("stored tree hash %d is missing", idx)
			}
			out[start+i] = h
		}
	}
	return out, nil
}

func (r hashReader) read(indexes []int64) (map[int64]tlog.Hash, error) {
	args := make([]any, len(indexes))
	for i, idx := range indexes {
		args[i] = idx
	}
	rows, err := r.q.Query(r.ctx, "SELECT idx, hash FROM audit_hashes WHERE idx IN ("+
		strings.TrimSuffix(strings.Repeat("?, ", len(indexes)), ", ")+")", args...)
	if err != nil {
		return nil, fmt.Errorf("read tree hashes: %w", err)
	}
	defer rows.Close()
	got := make(map[int64]tlog.Hash, len(indexes))
	for rows.Next() {
		var idx int64
		var s string
		if err := rows.Scan(&idx, &s); err != nil {
			return nil, fmt.Errorf("read tree hashes: %w", err)
		}
		h, err := parseHashHex(s)
		if err != nil {
			return nil, fmt.Errorf("stored tree hash %d: %w", idx, err)
		}
		got[idx] = h
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read tree hashes: %w", err)
	}
	return got, nil
}

// Filter selects entries for List. Zero fields do not filter.
type Filter struct {
	Since  time.Time // entries at or after Since
	Until  time.Time // entries before Until (exclusive, so ranges tile)
	Actor  string    // exact match
	Action string    // exact match
	Object string    // exact match
	Limit  int       // at most Limit entries; 0 means no limit
	// Reverse lists the newest entries first (default: oldest first).
	Reverse bool
}

// List returns the entries that match f in sequence order (reversed with
// f.Reverse). Hash is the stored leaf hash; List does not verify (see
// Verify). It fails with EInvalid for a negative limit, and with the
// database's error otherwise.
func (l *Log) List(ctx context.Context, f Filter) ([]Entry, error) {
	if f.Limit < 0 {
		return nil, tufota.Errorf(tufota.EInvalid, "audit list: negative limit %d", f.Limit)
	}
	var where []string
	var args []any
	if !f.Since.IsZero() {
		where, args = append(where, "time >= ?"), append(args, clampNanos(f.Since))
	}
	if !f.Until.IsZero() {
		where, args = append(where, "time < ?"), append(args, clampNanos(f.Until))
	}
	for _, c := range [...]struct{ col, v string }{{"actor", f.Actor}, {"action", f.Action}, {"object", f.Object}} {
		if c.v != "" {
			where, args = append(where, c.col+" = ?"), append(args, c.v)
		}
	}
	q := "SELECT " + entryColumns + " FROM audit_entries"
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY seq"
	if f.Reverse {
		q += " DESC"
	}
	if f.Limit > 0 {
		q += " LIMIT ?"
		args = append(args, f.Limit)
	}
	rows, err := readEntries(ctx, l.db, q, args...)
	if err != nil {
		return nil, fmt.Errorf("audit list: %w", err)
	}
	out := make([]Entry, 0, len(rows))
	for _, r := range rows {
		e, err := r.entry()
		if err != nil {
			return nil, fmt.Errorf("audit list: entry %d: %w", r.seq, err)
		}
		e.Hash = r.leaf
		out = append(out, e)
	}
	return out, nil
}

// clampNanos converts t to Unix nanoseconds, saturating outside the int64
// range so filters with far-off times still work.
func clampNanos(t time.Time) int64 {
	switch {
	case t.Before(time.Unix(0, -1<<63)):
		return -1 << 63
	case t.After(time.Unix(0, 1<<63-1)):
		return 1<<63 - 1
	}
	return t.UnixNano()
}

const entryColumns = "seq, time, actor, role, source, action, object, outcome, details, leaf"

// entryRow is one audit_entries row as stored.
type entryRow struct {
	seq, time                                            int64
	actor, role, source, action, object, outcome, detail string
	leaf                                                 string
}

// entry converts the row to an Entry (without Hash); it fails when the
// stored details are not a JSON object of strings.
func (r entryRow) entry() (Entry, error) {
	d, err := decodeDetails(r.detail)
	if err != nil {
		return Entry{}, err
	}
	return Entry{
		Seq: r.seq, Time: time.Unix(0, r.time).UTC(), Actor: r.actor, Role: r.role, Source: r.source,
		Action: r.action, Object: r.object, Outcome: r.outcome, Details: d,
	}, nil
}

func readEntries(ctx context.Context, q storage.Querier, query string, args ...any) ([]entryRow, error) {
	rows, err := q.Query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []entryRow
	for rows.Next() {
		var r entryRow
		if err := rows.Scan(&r.seq, &r.time, &r.actor, &r.role, &r.source, &r.action, &r.object,
			&r.outcome, &r.detail, &r.leaf); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// storedCheckpoint is one audit_checkpoints row, opened.
type storedCheckpoint struct {
	Checkpoint
	note []byte
}

// loadCheckpoints reads the stored checkpoints with lo <= size <= hi in
// size order, verifying each signature. A bad one is a *VerifyError.
func (l *Log) loadCheckpoints(ctx context.Context, lo, hi int64) ([]storedCheckpoint, error) {
	rows, err := l.db.Query(ctx, "SELECT size, note FROM audit_checkpoints WHERE size >= ? AND size <= ? ORDER BY size", lo, hi)
	if err != nil {
		return nil, fmt.Errorf("read checkpoints: %w", err)
	}
	defer rows.Close()
	var out []storedCheckpoint
	for rows.Next() {
		var size int64
		var msg string
		if err := rows.Scan(&size, &msg); err != nil {
			return nil, fmt.Errorf("read checkpoints: %w", err)
		}
		c, err := OpenCheckpoint([]byte(msg), l.verifier)
		if err != nil {
			return nil, &VerifyError{Seq: -1, LastSeq: -1, Reason: fmt.Sprintf("stored checkpoint of size %d: %v", size, err)}
		}
		if c.Size != size {
			return nil, &VerifyError{Seq: -1, LastSeq: -1, Reason: fmt.Sprintf("stored checkpoint row %d holds a checkpoint of size %d", size, c.Size)}
		}
		out = append(out, storedCheckpoint{Checkpoint: c, note: []byte(msg)})
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read checkpoints: %w", err)
	}
	return out, nil
}

// lastCheckpoint returns the stored checkpoint with the largest size, or
// ok false when there is none.
func (l *Log) lastCheckpoint(ctx context.Context) (storedCheckpoint, bool, error) {
	var size int64
	err := l.db.QueryRow(ctx, "SELECT size FROM audit_checkpoints ORDER BY size DESC LIMIT 1").Scan(&size)
	if errors.Is(err, tufota.ErrNotFound) {
		return storedCheckpoint{}, false, nil
	}
	if err != nil {
		return storedCheckpoint{}, false, fmt.Errorf("read last checkpoint: %w", err)
	}
	cps, err := l.loadCheckpoints(ctx, size, size)
	if err != nil {
		return storedCheckpoint{}, false, err
	}
	if len(cps) != 1 {
		return storedCheckpoint{}, false, fmt.Errorf("read last checkpoint: size %d vanished", size)
	}
	return cps[0], true, nil
}

// scan reads entries [b.size, end) from the database and checks each one:
// no gap, content matches the stored leaf hash, and the stored tree hashes
// match those recomputed by b, to which the entries are added. Whenever
// the tree reaches the size of one of cps (sorted), its root must match;
// provenSize is the size below which the entries are known good. Failures
// are *VerifyError naming the first broken entry.
func (l *Log) scan(ctx context.Context, b *builder, end int64, cps []storedCheckpoint, provenSize *int64) error {
	ci := 0
	for ci < len(cps) && cps[ci].Size < b.size {
		ci++
	}
	checkRoot := func() error {
		for ; ci < len(cps) && cps[ci].Size == b.size; ci++ {
			if b.root() != cps[ci].Hash {
				return &VerifyError{Seq: *provenSize, LastSeq: b.size - 1, Reason: fmt.Sprintf(
					"entries %d to %d and their tree hashes were rewritten consistently, but they do not match the signed checkpoint of size %d",
					*provenSize, b.size-1, b.size)}
			}
			*provenSize = b.size
		}
		return nil
	}
	if err := checkRoot(); err != nil {
		return err
	}
	for b.size < end {
		from := b.size
		to := min(from+batchSize, end)
		rows, err := readEntries(ctx, l.db, "SELECT "+entryColumns+
			" FROM audit_entries WHERE seq >= ? AND seq < ? ORDER BY seq", from, to)
		if err != nil {
			return fmt.Errorf("read entries %d to %d: %w", from, to-1, err)
		}
		if len(rows) == 0 {
			return &VerifyError{Seq: from, LastSeq: from, Reason: fmt.Sprintf("entry %d is missing", from)}
		}
		last := rows[len(rows)-1].seq
		hashes, err := l.readHashRange(ctx, tlog.StoredHashIndex(0, from), tlog.StoredHashCount(last+1))
		if err != nil {
			return err
		}
		for _, r := range rows {
			seq := b.size
			if r.seq != seq {
				return &VerifyError{Seq: seq, LastSeq: seq, Reason: fmt.Sprintf("entry %d is missing (the next stored entry is %d)", seq, r.seq)}
			}
			e, err := r.entry()
			if err != nil {
				return &VerifyError{Seq: seq, LastSeq: seq, Reason: fmt.Sprintf("entry %d: %v", seq, err)}
			}
			leaf, err := LeafHash(e)
			if err != nil {
				return &VerifyError{Seq: seq, LastSeq: seq, Reason: fmt.Sprintf("entry %d cannot be encoded: %v", seq, err)}
			}
			if hashHex(leaf) != r.leaf {
				return &VerifyError{Seq: seq, LastSeq: seq, Reason: fmt.Sprintf("entry %d was altered: its content does not match its leaf hash", seq)}
			}
			base := tlog.StoredHashIndex(0, seq)
			for i, h := range b.add(leaf) {
				got, ok := hashes[base+int64(i)]
				switch {
				case !ok:
					return &VerifyError{Seq: seq, LastSeq: seq, Reason: fmt.Sprintf("entry %d: stored tree hash %d is missing", seq, base+int64(i))}
				case got != h:
					return &VerifyError{Seq: seq, LastSeq: seq, Reason: fmt.Sprintf("entry %d: stored tree hash %d does not match the entries (the entry or its hash was altered)", seq, base+int64(i))}
				}
			}
			if err := checkRoot(); err != nil {
				return err
			}
		}
	}
	return nil
}

// readHashRange reads the stored hashes with lo <= idx < hi.
func (l *Log) readHashRange(ctx context.Context, lo, hi int64) (map[int64]tlog.Hash, error) {
	rows, err := l.db.Query(ctx, "SELECT idx, hash FROM audit_hashes WHERE idx >= ? AND idx < ?", lo, hi)
	if err != nil {
		return nil, fmt.Errorf("read tree hashes: %w", err)
	}
	defer rows.Close()
	out := make(map[int64]tlog.Hash, hi-lo)
	for rows.Next() {
		var idx int64
		var s string
		if err := rows.Scan(&idx, &s); err != nil {
			return nil, fmt.Errorf("read tree hashes: %w", err)
		}
		h, err := parseHashHex(s)
		if err != nil {
			// A mangled hash is treated as a mismatch by scan.
			h = tlog.Hash{}
		}
		out[idx] = h
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read tree hashes: %w", err)
	}
	return out, nil
}

// Checkpoint signs and stores a checkpoint over the whole log and returns
// the signed note. Before signing it checks, against the newest stored
// checkpoint, that nothing it covered changed (its root is recomputed from
// the stored tree hashes) and that every entry appended since still
// matches its leaf and tree hashes, then proves the new tree consistent
// with the old one. So it never signs two inconsistent checkpoints. When
// the log has not grown since the newest stored checkpoint, that one is
// returned unchanged. A failed check is a *VerifyError naming the entry;
// nothing is signed.
func (l *Log) Checkpoint(ctx context.Context) ([]byte, error) {
	return l.CheckpointWith(ctx, nil)
}

// CheckpointWith is Checkpoint that runs in (when not nil) inside the
// transaction that stores a new checkpoint, after its insert (typically
// to append the entry that records who asked for it, with AppendTx: that
// entry is the first one the next checkpoint covers). An error from in
// stores nothing and is returned. When no new checkpoint is stored (the
// log has not grown, or another process stored the same one), in is not
// run.
func (l *Log) CheckpointWith(ctx context.Context, in func(ctx context.Context, tx *storage.Tx) error) ([]byte, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	msg, err := l.checkpoint(ctx, in)
	if err != nil {
		return nil, fmt.Errorf("audit checkpoint: %w", err)
	}
	return msg, nil
}

func (l *Log) checkpoint(ctx context.Context, in func(ctx context.Context, tx *storage.Tx) error) ([]byte, error) {
	// The last checkpoint first: it only ever covers committed entries, so
	// the size read after it is at least its size unless entries were
	// removed.
	last, ok, err := l.lastCheckpoint(ctx)
	if err != nil {
		return nil, err
	}
	n, err := nextSeq(ctx, l.db)
	if err != nil {
		return nil, err
	}
	var m int64
	oldRoot := emptyTreeHash
	if ok {
		m, oldRoot = last.Size, last.Hash
		switch {
		case m > n:
			return nil, &VerifyError{Seq: n, LastSeq: m - 1, Reason: fmt.Sprintf(
				"entries %d to %d are missing: the log has %d entries but a signed checkpoint covers %d", n, m-1, n, m)}
		case m == n:
			return last.note, nil
		}
	}
	frontier, err := hashReader{ctx, l.db}.ReadHashes(frontierIndexes(m))
	if err != nil {
		return nil, &VerifyError{Seq: -1, LastSeq: -1, Reason: fmt.Sprintf("tree hashes of the checkpoint of size %d: %v", m, err)}
	}
	b, err := newBuilder(m, frontier)
	if err != nil {
		return nil, err
	}
	if b.root() != oldRoot {
		return nil, &VerifyError{Seq: -1, LastSeq: -1, Reason: fmt.Sprintf(
			"the stored tree hashes no longer match the signed checkpoint of size %d", m)}
	}
	proven := m
	if err := l.scan(ctx, b, n, nil, &proven); err != nil {
		return nil, err
	}
	if err := l.checkNoOrphanHashes(ctx, n); err != nil {
		return nil, err
	}
	root := b.root()
	if m > 0 {
		proof, err := tlog.ProveTree(n, m, hashReader{ctx, l.db})
		if err != nil {
			return nil, fmt.Errorf("prove consistency %d to %d: %w", m, n, err)
		}
		if err := tlog.CheckTree(proof, n, root, m, oldRoot); err != nil {
			return nil, &VerifyError{Seq: m, LastSeq: n - 1, Reason: fmt.Sprintf(
				"the tree of size %d is not consistent with the signed checkpoint of size %d: %v", n, m, err)}
		}
	}
	cp := Checkpoint{Origin: l.Origin(), Size: n, Hash: root}
	msg, err := signCheckpoint(cp, l.signer, l.verifier)
	if err != nil {
		return nil, err
	}
	taken := false
	err = l.db.Tx(ctx, func(tx *storage.Tx) error {
		if _, err := tx.Exec(ctx, "INSERT INTO audit_checkpoints (size, note, created_at) VALUES (?, ?, ?)",
			n, string(msg), l.now().UnixNano()); err != nil {
			taken = errors.Is(err, tufota.ErrConflict)
			return err
		}
		if in == nil {
			return nil
		}
		return in(ctx, tx)
	})
	if taken {
		// Another process checkpointed the same size first: use its note
		// if it agrees.
		cps, lerr := l.loadCheckpoints(ctx, n, n)
		if lerr != nil {
			return nil, lerr
		}
		if len(cps) == 1 && cps[0].Hash == root {
			return cps[0].note, nil
		}
		return nil, &VerifyError{Seq: -1, LastSeq: -1, Reason: fmt.Sprintf("a different checkpoint of size %d is stored", n)}
	}
	if err != nil {
		return nil, fmt.Errorf("store checkpoint: %w", err)
	}
	l.logger.InfoContext(ctx, "audit checkpoint signed", "origin", cp.Origin, "size", n, "root", hashHex(root))
	return msg, nil
}

// RunCheckpoints signs a checkpoint every interval (only when the log has
// grown) until ctx ends, logging failures, and returns ctx's error. Run it
// on one replica (the leader).
func (l *Log) RunCheckpoints(ctx context.Context, interval time.Duration) error {
	if interval <= 0 {
		return tufota.Errorf(tufota.EInvalid, "audit checkpoint interval %s is not positive", interval)
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	l.archiveCheckpoints(ctx)
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			if _, err := l.Checkpoint(ctx); err != nil && ctx.Err() == nil {
				l.logger.ErrorContext(ctx, "audit checkpoint failed", "err", err)
				continue
			}
			l.archiveCheckpoints(ctx)
		}
	}
}

// Verify checks the whole log in the database: every stored checkpoint's
// signature; every entry against its leaf hash and the stored tree hashes
// (no gaps, nothing edited or reordered); every checkpoint's root against
// the recomputed tree; and that no checkpoint covers entries that are gone
// (a truncated tail). A broken log is reported as a *VerifyError naming
// the first broken entry (the Report says how far verification got); other
// errors are the database's. Verify reads only and may run concurrently
// with appends (it checks the entries that existed when it started).
func (l *Log) Verify(ctx context.Context) (Report, error) {
	rep := Report{Origin: l.Origin(), VerifierKey: l.vkey, BrokenSeq: -1}
	fail := func(err error) (Report, error) {
		var ve *VerifyError
		if errors.As(err, &ve) {
			rep.BrokenSeq, rep.Problem = ve.Seq, ve.Reason
		}
		return rep, fmt.Errorf("audit verify: %w", err)
	}
	cps, err := l.loadCheckpoints(ctx, 0, 1<<63-1)
	if err != nil {
		return fail(err)
	}
	n, err := nextSeq(ctx, l.db)
	if err != nil {
		return fail(err)
	}
	b, _ := newBuilder(0, nil)
	var proven int64
	scanErr := l.scan(ctx, b, n, cps, &proven)
	rep.Size = b.size
	rep.Entries = b.size
	if scanErr != nil {
		return fail(scanErr)
	}
	for _, c := range cps {
		if c.Size > n {
			return fail(&VerifyError{Seq: n, LastSeq: c.Size - 1, Reason: fmt.Sprintf(
				"entries %d to %d are missing: the log has %d entries but a signed checkpoint covers %d", n, c.Size-1, n, c.Size)})
		}
		rep.Checkpoints++
		rep.Head = c.Checkpoint
	}
	if err := l.checkNoOrphanHashes(ctx, n); err != nil {
		return fail(err)
	}
	rep.OK = true
	return rep, nil
}

// checkNoOrphanHashes fails with a *VerifyError when tree hashes are stored
// beyond a log of n entries while the log still has n entries: the trace
// of a truncated tail not yet covered by a checkpoint.
func (l *Log) checkNoOrphanHashes(ctx context.Context, n int64) error {
	// Read the hashes before re-reading the size: an append stores both at
	// once, so a concurrent append shows up in the size too.
	var extra int64
	if err := l.db.QueryRow(ctx, "SELECT COUNT(*) FROM audit_hashes WHERE idx >= ?", tlog.StoredHashCount(n)).Scan(&extra); err != nil {
		return fmt.Errorf("count tree hashes: %w", err)
	}
	if extra == 0 {
		return nil
	}
	n2, err := nextSeq(ctx, l.db)
	if err != nil {
		return err
	}
	if n2 == n {
		return &VerifyError{Seq: n, LastSeq: n, Reason: fmt.Sprintf(
			"entries from %d on are missing: tree hashes are stored for them", n)}
	}
	return nil
}

// ProveInclusion returns the RFC 6962 inclusion proof (audit path) of entry
// seq in the tree of size size (seq < size <= the log's size), to check
// with VerifyInclusion against a signed checkpoint of that size. It fails
// with EInvalid for sizes out of range.
func (l *Log) ProveInclusion(ctx context.Context, seq, size int64) (tlog.RecordProof, error) {
	n, err := nextSeq(ctx, l.db)
	if err != nil {
		return nil, fmt.Errorf("audit prove inclusion: %w", err)
	}
	if seq < 0 || seq >= size || size > n {
		return nil, tufota.Errorf(tufota.EInvalid, "audit prove inclusion: entry %d in a tree of size %d (log size %d) is out of range", seq, size, n)
	}
	p, err := tlog.ProveRecord(size, seq, hashReader{ctx, l.db})
	if err != nil {
		return nil, fmt.Errorf("audit prove inclusion of %d in %d: %w", seq, size, err)
	}
	return p, nil
}

// ProveConsistency returns the RFC 6962 consistency proof that the tree of
// size newSize extends the tree of size oldSize (0 < oldSize <= newSize <=
// the log's size). It fails with EInvalid for sizes out of range.
func (l *Log) ProveConsistency(ctx context.Context, oldSize, newSize int64) (tlog.TreeProof, error) {
	n, err := nextSeq(ctx, l.db)
	if err != nil {
		return nil, fmt.Errorf("audit prove consistency: %w", err)
	}
	if oldSize < 1 || oldSize > newSize || newSize > n {
		return nil, tufota.Errorf(tufota.EInvalid, "audit prove consistency: sizes %d to %d (log size %d) are out of range", oldSize, newSize, n)
	}
	p, err := tlog.ProveTree(newSize, oldSize, hashReader{ctx, l.db})
	if err != nil {
		return nil, fmt.Errorf("audit prove consistency %d to %d: %w", oldSize, newSize, err)
	}
	return p, nil
}

// VerifyInclusion checks that e (its content, whatever its Hash says) is
// entry e.Seq of the tree signed by signedCheckpoint, using proof (from
// ProveInclusion for the checkpoint's size) and the log's verifier v. It
// fails with EInvalid when the checkpoint does not verify, the entry is
// beyond it, or the proof does not hold.
func VerifyInclusion(e Entry, proof tlog.RecordProof, signedCheckpoint []byte, v note.Verifier) error {
	c, err := OpenCheckpoint(signedCheckpoint, v)
	if err != nil {
		return err
	}
	if e.Seq < 0 || e.Seq >= c.Size {
		return tufota.Errorf(tufota.EInvalid, "entry %d is not covered by the checkpoint of size %d", e.Seq, c.Size)
	}
	leaf, err := LeafHash(e)
	if err != nil {
		return err
	}
	if e.Hash != "" && e.Hash != hashHex(leaf) {
		return tufota.Errorf(tufota.EInvalid, "entry %d: its content does not match its hash", e.Seq)
	}
	if err := tlog.CheckRecord(proof, c.Size, c.Hash, e.Seq, leaf); err != nil {
		return tufota.Errorf(tufota.EInvalid, "entry %d is not in the checkpoint of size %d: %w", e.Seq, c.Size, err)
	}
	return nil
}

// archiveCheckpoints copies new checkpoints to the archive, if there is
// one; a failure is logged and retried after the next checkpoint.
func (l *Log) archiveCheckpoints(ctx context.Context) {
	if l.archive == nil {
		return
	}
	n, err := Archive(ctx, l, l.archive)
	if err != nil && ctx.Err() == nil {
		l.logger.ErrorContext(ctx, "audit archive failed; retrying after the next checkpoint", "err", err, "archived", n)
		return
	}
	if n > 0 {
		l.logger.InfoContext(ctx, "audit checkpoints archived", "count", n)
	}
}
