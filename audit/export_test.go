package audit

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tufota/tufota"
	"golang.org/x/mod/sumdb/tlog"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func export(t testing.TB, l *Log, format string, since, until time.Time) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := l.Export(context.Background(), &buf, format, since, until); err != nil {
		t.Fatalf("Export(%s): %v", format, err)
	}
	return buf.Bytes()
}

// goldenLog builds the deterministic log behind the golden exports: 12
// entries (with values a spreadsheet would run as formulas, non-ASCII text
// and newlines), checkpoints at 5 and 9.
func goldenLog(t testing.TB) (*Log, []Entry) {
	t.Helper()
	l, _ := newTestLog(t)
	var all []Entry
	add := func(e Entry) {
		got, err := l.Append(context.Background(), e)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, got)
	}
	for i := range 5 {
		add(sampleEntry(i))
	}
	mustCheckpoint(t, l)
	add(Entry{Actor: "=HYPERLINK(\"http://evil\")", Role: "", Source: "203.0.113.9:4711", Action: "auth.login",
		Object: "token", Outcome: OutcomeDenied, Details: map[string]string{"error": "unknown token"}})
	add(Entry{Actor: "carol", Role: "operator", Source: "198.51.100.7:55000", Action: "rollout.pause",
		Object: "rollout/r-7", Outcome: OutcomeOK, Details: map[string]string{"reason": "Überprüfung läuft\n2nd line", "wave": "2"}})
	add(Entry{Actor: "-dave", Role: "auditor", Source: "", Action: "audit.export", Object: "audit", Outcome: OutcomeOK})
	add(Entry{Actor: "system", Role: "system", Action: "timestamp.refresh", Object: "tuf/timestamp", Outcome: OutcomeError,
		Details: map[string]string{"error": "kms unavailable, will retry"}})
	mustCheckpoint(t, l)
	for i := 9; i < 12; i++ {
		add(sampleEntry(i))
	}
	return l, all
}

func TestExportGolden(t *testing.T) {
	t.Parallel()
	l, all := goldenLog(t)
	tests := []struct {
		file         string
		format       string
		since, until time.Time
		first, size  int64
	}{
		{"export.json", "json", time.Time{}, time.Time{}, 0, 12},
		{"export.csv", "csv", time.Time{}, time.Time{}, 0, 12},
		{"export_range.json", "json", all[3].Time, all[8].Time, 3, 8},
		{"export_range.csv", "csv", all[3].Time, all[8].Time, 3, 8},
	}
	for _, tt := range tests {
		got := export(t, l, tt.format, tt.since, tt.until)
		path := filepath.Join("testdata", tt.file)
		if *update {
			if err := os.WriteFile(path, got, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run go test -update to create it)", err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from the golden file (go test ./audit -run TestExportGolden -update to accept):\n%s", tt.file, got)
		}
		rep, err := VerifyExport(bytes.NewReader(want), WithTrustedKey(l.VerifierKey()))
		if err != nil {
			t.Fatalf("VerifyExport(%s): %v", tt.file, err)
		}
		if !rep.OK || rep.FirstSeq != tt.first || rep.Size != tt.size || rep.Head.Size != 12 || rep.Origin != testOrigin {
			t.Fatalf("VerifyExport(%s) report = %+v; want entries [%d, %d), head 12", tt.file, rep, tt.first, tt.size)
		}
	}
}

// TestExportRanges exports several time windows and checks each verifies
// and holds exactly the entries in the window.
func TestExportRanges(t *testing.T) {
	t.Parallel()
	l, _ := newTestLog(t)
	all := appendN(t, l, 0, 40)
	mustCheckpoint(t, l)
	all = append(all, appendN(t, l, 40, 9)...)
	for _, r := range [][2]int{{0, 49}, {1, 2}, {5, 33}, {16, 49}, {31, 40}, {48, 49}, {20, 20}} {
		since := all[r[0]].Time
		var until time.Time
		if r[1] < len(all) {
			until = all[r[1]].Time
		}
		for _, format := range []string{"json", "csv"} {
			exp := export(t, l, format, since, until)
			rep, err := VerifyExport(bytes.NewReader(exp), WithTrustedKey(l.VerifierKey()))
			if err != nil {
				t.Fatalf("range %v %s: VerifyExport: %v\n%s", r, format, err, exp)
			}
			if rep.FirstSeq != int64(r[0]) || rep.Size != int64(max(r[0], r[1])) {
				t.Fatalf("range %v %s: report covers [%d, %d)", r, format, rep.FirstSeq, rep.Size)
			}
		}
	}
	// A window after the last entry is empty and still verifies.
	exp := export(t, l, "json", all[48].Time.Add(time.Hour), time.Time{})
	if rep, err := VerifyExport(bytes.NewReader(exp)); err != nil || rep.Entries != 0 || rep.FirstSeq != 49 {
		t.Fatalf("empty window: report %+v, %v", rep, err)
	}
	if err := l.Export(context.Background(), &bytes.Buffer{}, "html", time.Time{}, time.Time{}); !errors.Is(err, tufota.ErrInvalid) {
		t.Fatalf("Export(html) error = %v, want EInvalid", err)
	}
}

// exportLines is a JSON export split for editing: the lines before the
// entries, the entry lines (without separating commas), the lines after.
type exportLines struct {
	head, entries, tail []string
}

func splitExport(t *testing.T, exp []byte) *exportLines {
	t.Helper()
	x := &exportLines{}
	for _, line := range strings.Split(strings.TrimSuffix(string(exp), "\n"), "\n") {
		switch {
		case strings.HasPrefix(line, `{"seq":`):
			x.entries = append(x.entries, strings.TrimSuffix(line, ","))
		case len(x.entries) == 0:
			x.head = append(x.head, line)
		default:
			x.tail = append(x.tail, line)
		}
	}
	return x
}

func (x *exportLines) join() []byte {
	return []byte(strings.Join(x.head, "\n") + "\n" + strings.Join(x.entries, ",\n") + "\n" + strings.Join(x.tail, "\n") + "\n")
}

// rehash recomputes the hash member of entry line i after an edit.
func (x *exportLines) rehash(t *testing.T, i int) {
	t.Helper()
	var e exportEntry
	dec := newJSONExportReader(strings.NewReader(x.entries[i]))
	if err := dec.dec.Decode(&e); err != nil {
		t.Fatal(err)
	}
	ent, err := e.toEntry()
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := LeafHash(ent)
	if err != nil {
		t.Fatal(err)
	}
	x.entries[i] = strings.Replace(x.entries[i], `"hash":"`+e.Hash+`"`, `"hash":"`+hashHex(leaf)+`"`, 1)
}

func TestTamperExport(t *testing.T) {
	t.Parallel()
	l, _ := newTestLog(t)
	appendN(t, l, 0, 20)
	mustCheckpoint(t, l)
	appendN(t, l, 20, 10)
	exp := export(t, l, "json", time.Time{}, time.Time{})
	if _, err := VerifyExport(bytes.NewReader(exp), WithTrustedKey(l.VerifierKey())); err != nil {
		t.Fatalf("untouched export: %v", err)
	}
	other, _ := newTestLog(t)
	otherLog, err := New(context.Background(), other.db, testSigner(t, 2), WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, otherLog, 0, 30)
	resigned := export(t, otherLog, "json", time.Time{}, time.Time{})

	tests := []struct {
		name         string
		tamper       func(t *testing.T, x *exportLines) []byte
		seq, lastSeq int64
		reason       string
	}{
		{
			name: "edit one field",
			tamper: func(t *testing.T, x *exportLines) []byte {
				x.entries[7] = strings.Replace(x.entries[7], `"object":"rollout/r-1"`, `"object":"rollout/r-2"`, 1)
				return x.join()
			},
			seq: 7, lastSeq: 7, reason: "altered",
		},
		{
			name: "edit one field and its hash",
			tamper: func(t *testing.T, x *exportLines) []byte {
				x.entries[7] = strings.Replace(x.entries[7], `"object":"rollout/r-1"`, `"object":"rollout/r-2"`, 1)
				x.rehash(t, 7)
				return x.join()
			},
			seq: 0, lastSeq: 19, reason: "signed checkpoint of size 20",
		},
		{
			name: "edit one field and its hash after the last checkpoint",
			tamper: func(t *testing.T, x *exportLines) []byte {
				x.entries[25] = strings.Replace(x.entries[25], `"role":"release-engineer"`, `"role":"admin"`, 1)
				x.rehash(t, 25)
				return x.join()
			},
			seq: 20, lastSeq: 29, reason: "signed checkpoint of size 30",
		},
		{
			name: "delete an entry",
			tamper: func(t *testing.T, x *exportLines) []byte {
				x.entries = append(x.entries[:9], x.entries[10:]...)
				return x.join()
			},
			seq: 9, lastSeq: 9, reason: "missing",
		},
		{
			name: "reorder two entries",
			tamper: func(t *testing.T, x *exportLines) []byte {
				x.entries[4], x.entries[11] = x.entries[11], x.entries[4]
				return x.join()
			},
			seq: 4, lastSeq: 4, reason: "entry 11 comes in its place",
		},
		{
			name: "truncate the tail after a checkpoint",
			tamper: func(t *testing.T, x *exportLines) []byte {
				x.entries = x.entries[:15]
				return x.join()
			},
			seq: 15, lastSeq: 19, reason: "checkpoint of size 20 covers",
		},
		{
			name: "truncate the tail and fix up the declared end",
			tamper: func(t *testing.T, x *exportLines) []byte {
				x.entries = x.entries[:25]
				var head []string
				for _, line := range x.head {
					switch {
					case strings.HasPrefix(line, `"end_seq"`):
						line = `"end_seq": 25,`
					case strings.HasPrefix(line, `{"size":30,`):
						continue // the checkpoint over the removed entries
					case strings.HasPrefix(line, `{"size":20,`):
						line = strings.TrimSuffix(line, ",")
					}
					head = append(head, line)
				}
				x.head = head
				return x.join()
			},
			seq: 25, lastSeq: 29, reason: "head checkpoint covers 30",
		},
		{
			name: "forge a checkpoint signature",
			tamper: func(t *testing.T, x *exportLines) []byte {
				for i, line := range x.head {
					if strings.HasPrefix(line, `{"size":20,`) {
						x.head[i] = forgeJSONNote(line)
					}
				}
				return x.join()
			},
			seq: -1, lastSeq: -1, reason: "signature",
		},
		{
			name: "forge the head signature",
			tamper: func(t *testing.T, x *exportLines) []byte {
				for i, line := range x.tail {
					if strings.HasPrefix(line, `"head"`) {
						x.tail[i] = forgeJSONNote(line)
					}
				}
				return x.join()
			},
			seq: -1, lastSeq: -1, reason: "head checkpoint",
		},
		{
			name:   "rewrite and re-sign with another key",
			tamper: func(t *testing.T, x *exportLines) []byte { return resigned },
			seq:    -1, lastSeq: -1, reason: "not the trusted key",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			bad := tt.tamper(t, splitExport(t, exp))
			rep, err := VerifyExport(bytes.NewReader(bad), WithTrustedKey(l.VerifierKey()))
			var ve *VerifyError
			if !errors.As(err, &ve) {
				t.Fatalf("VerifyExport = %+v, %v; want a *VerifyError", rep, err)
			}
			if ve.Seq != tt.seq || ve.LastSeq != tt.lastSeq || !strings.Contains(ve.Reason, tt.reason) {
				t.Fatalf("VerifyExport error = seq %d..%d %q; want seq %d..%d mentioning %q", ve.Seq, ve.LastSeq, ve.Reason, tt.seq, tt.lastSeq, tt.reason)
			}
			if rep.OK || rep.BrokenSeq != tt.seq {
				t.Fatalf("report = %+v; want not OK, broken seq %d", rep, tt.seq)
			}
		})
	}
}

// forgeJSONNote flips a bit in the signature of the signed note in a JSON
// line ("…— origin BASE64\n"…).
func forgeJSONNote(line string) string {
	i := strings.LastIndex(line, `\n"`) // end of the signature line
	j := strings.LastIndex(line[:i], " ") + 1 + 10
	b := []byte(line)
	if b[j] == 'A' {
		b[j] = 'B'
	} else {
		b[j] = 'A'
	}
	return string(b)
}

func TestTamperExportCSV(t *testing.T) {
	t.Parallel()
	l, _ := newTestLog(t)
	appendN(t, l, 0, 12)
	exp := string(export(t, l, "csv", time.Time{}, time.Time{}))
	lines := strings.Split(exp, "\n")
	edited := false
	for i, line := range lines {
		if strings.HasPrefix(line, "entry,7,") {
			lines[i] = strings.Replace(line, "rollout/r-1", "rollout/r-2", 1)
			edited = lines[i] != line
		}
	}
	if !edited {
		t.Fatalf("entry 7 not found in the CSV export:\n%s", exp)
	}
	_, err := VerifyExport(strings.NewReader(strings.Join(lines, "\n")))
	var ve *VerifyError
	if !errors.As(err, &ve) || ve.Seq != 7 {
		t.Fatalf("VerifyExport(edited CSV) = %v; want a *VerifyError at entry 7", err)
	}
}

// TestVerifyConsistency checks that a newer export extends an older one,
// and that a rolled-back, forked or non-overlapping pair is refused.
func TestVerifyConsistency(t *testing.T) {
	t.Parallel()
	l, _ := newTestLog(t)
	all := appendN(t, l, 0, 20)
	old := export(t, l, "json", time.Time{}, time.Time{})
	oldCSV := export(t, l, "csv", time.Time{}, time.Time{})
	oldWindow := export(t, l, "json", all[2].Time, all[4].Time) // entries 2, 3; head 20
	all = append(all, appendN(t, l, 20, 15)...)
	mustCheckpoint(t, l)
	appendN(t, l, 35, 2)
	newer := export(t, l, "json", time.Time{}, time.Time{})
	newerFrom10 := export(t, l, "csv", all[10].Time, time.Time{})
	newerFrom25 := export(t, l, "json", all[25].Time, time.Time{})
	oldFrom5To12 := export(t, l, "json", all[5].Time, all[12].Time) // head at 37

	for name, pair := range map[string][2][]byte{
		"full exports":              {old, newer},
		"csv and a later window":    {oldCSV, newerFrom10},
		"same export":               {newer, newer},
		"window within the new one": {oldFrom5To12, newer},
	} {
		if err := VerifyConsistency(bytes.NewReader(pair[0]), bytes.NewReader(pair[1]), WithTrustedKey(l.VerifierKey())); err != nil {
			t.Errorf("%s: VerifyConsistency: %v", name, err)
		}
	}

	// Rolled back (or swapped).
	err := VerifyConsistency(bytes.NewReader(newer), bytes.NewReader(old))
	var ve *VerifyError
	if !errors.As(err, &ve) || !strings.Contains(ve.Reason, "rolled back") {
		t.Errorf("VerifyConsistency(newer, older) = %v; want a rollback *VerifyError", err)
	}
	// The new export starts after the old head: nothing to compare.
	if err := VerifyConsistency(bytes.NewReader(old), bytes.NewReader(newerFrom25)); !errors.Is(err, tufota.ErrInvalid) || errors.As(err, &ve) {
		t.Errorf("VerifyConsistency(old, window after it) = %v; want EInvalid, not a *VerifyError", err)
	}

	// A fork: a log with the same key and clock that agrees on entries
	// 0..9 and then differs.
	forked, _ := newTestLog(t)
	appendN(t, forked, 0, 10)
	for i := 10; i < 25; i++ {
		e := sampleEntry(i)
		e.Object = "rollout/forked"
		if _, err := forked.Append(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
	forkExport := export(t, forked, "json", time.Time{}, time.Time{})
	if _, err := VerifyExport(bytes.NewReader(forkExport), WithTrustedKey(l.VerifierKey())); err != nil {
		t.Fatalf("the fork verifies on its own: %v", err)
	}
	err = VerifyConsistency(bytes.NewReader(old), bytes.NewReader(forkExport), WithTrustedKey(l.VerifierKey()))
	if !errors.As(err, &ve) || ve.Seq != 10 {
		t.Errorf("VerifyConsistency(old, fork) = %v; want a *VerifyError at entry 10", err)
	}
	// The same fork seen only through roots: the exports share no entry,
	// but the fork's tree at the old head size has another root.
	forkFrom15 := export(t, forked, "json", all[15].Time, time.Time{})
	err = VerifyConsistency(bytes.NewReader(oldWindow), bytes.NewReader(forkFrom15))
	if !errors.As(err, &ve) || !strings.Contains(ve.Reason, "history was rewritten") {
		t.Errorf("VerifyConsistency(old window, fork window) = %v; want a history-rewritten *VerifyError", err)
	}
	// A corrupted export on either side fails with the export's error.
	bad := bytes.Replace(old, []byte(`"actor":"bob"`), []byte(`"actor":"eve"`), 1)
	if err := VerifyConsistency(bytes.NewReader(bad), bytes.NewReader(newer)); !errors.As(err, &ve) || ve.Seq != 1 {
		t.Errorf("VerifyConsistency(tampered old, new) = %v; want a *VerifyError at entry 1", err)
	}
}

// TestVerifyExportMalformed: structurally broken exports fail cleanly.
func TestVerifyExportMalformed(t *testing.T) {
	t.Parallel()
	l, _ := newTestLog(t)
	appendN(t, l, 0, 3)
	exp := string(export(t, l, "json", time.Time{}, time.Time{}))
	for name, s := range map[string]string{
		"empty":            "",
		"not json":         "{{{",
		"truncated":        exp[:len(exp)/2],
		"trailing data":    exp + "{}",
		"unknown member":   strings.Replace(exp, `"format"`, `"formats"`, 1),
		"no entries":       strings.Split(exp, `"entries"`)[0],
		"wrong format":     strings.Replace(exp, ExportFormat, "other/v9", 1),
		"negative first":   strings.Replace(exp, `"first_seq": 0`, `"first_seq": -1`, 1),
		"bad prefix count": strings.Replace(exp, `"prefix": []`, `"prefix": ["`+hashHex(tlog.Hash{})+`"]`, 1),
		"csv garbage":      "record,seq\nx,y\n",
	} {
		rep, err := VerifyExport(strings.NewReader(s))
		var ve *VerifyError
		if !errors.As(err, &ve) || rep.OK {
			t.Errorf("%s: VerifyExport = %+v, %v; want a *VerifyError", name, rep, err)
		}
	}
}

// FuzzVerifyExport feeds arbitrary bytes (seeded with real exports) to
// VerifyExport: it must never panic, and must never call an input OK
// without a valid head checkpoint.
func FuzzVerifyExport(f *testing.F) {
	for _, name := range []string{"export.json", "export.csv", "export_range.json", "export_range.csv"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		f.Add(b[:len(b)/3])
		f.Add(bytes.Replace(b, []byte(`"seq":3`), []byte(`"seq":4`), 1))
	}
	f.Add([]byte("{}"))
	f.Add([]byte(`{"format":"tufota-audit-export/v1","entries":[]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		rep, err := VerifyExport(bytes.NewReader(data))
		if err == nil && (!rep.OK || rep.Head.Origin == "") {
			t.Fatalf("VerifyExport = %+v with no error but not OK", rep)
		}
		if err != nil && rep.OK {
			t.Fatalf("VerifyExport = %+v, %v: OK with an error", rep, err)
		}
	})
}

// FuzzOpenCheckpoint: arbitrary notes never panic and never verify.
func FuzzOpenCheckpoint(f *testing.F) {
	s := testSigner(f, 1)
	v, _ := NewNoteVerifier(s.VerifierKey())
	msg, err := signCheckpoint(Checkpoint{Origin: testOrigin, Size: 5, Hash: tlog.RecordHash(nil)}, s, v)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(msg)
	f.Add([]byte(testOrigin + "\n5\n\n\n— x AAAA\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := OpenCheckpoint(data, v)
		if err == nil && !bytes.Equal(data, msg) {
			// A different note that verifies must at least say the same.
			if c.Origin != testOrigin || c.Size != 5 {
				t.Fatalf("OpenCheckpoint accepted %q as %+v", data, c)
			}
		}
	})
}
