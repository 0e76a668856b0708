package vuln

import (
	"archive/zip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"sort"
	"strings"

	"github.com/tufota/tufota"
)

// MaxFiles bounds the number of files in one import.
const MaxFiles = 200000

// Batch is what one import brings: OSV advisories and VEX statements,
// parsed and checked, and the file each came from.
type Batch struct {
	Advisories []Advisory  `json:"advisories"`
	VEX        []Statement `json:"vex"`
	// Files counts the files read.
	Files   int               `json:"files"`
	sources map[string]string // statement key → file
}

func (b *Batch) sourceOf(s Statement) string { return b.sources[s.key()] }

// FileError is a file that could not be imported, and why.
type FileError struct {
	File string
	Err  error
}

func (e *FileError) Error() string { return e.File + ": " + e.Err.Error() }
func (e *FileError) Unwrap() error { return e.Err }

// Add parses one file (an OSV record or a CycloneDX VEX document, told
// apart by their top-level keys) into the batch.
func (b *Batch) Add(name string, data []byte) error {
	kind, err := kindOf(data)
	if err != nil {
		return &FileError{File: name, Err: err}
	}
	switch kind {
	case "vex":
		st, err := ParseVEX(data)
		if err != nil {
			return &FileError{File: name, Err: err}
		}
		if b.sources == nil {
			b.sources = map[string]string{}
		}
		for _, s := range st {
			b.sources[s.key()] = name
		}
		b.VEX = append(b.VEX, st...)
	default:
		a, err := ParseOSV(data)
		if err != nil {
			return &FileError{File: name, Err: err}
		}
		b.Advisories = append(b.Advisories, a)
	}
	b.Files++
	return nil
}

// ReadFS reads every *.json file under root of fsys (a directory of OSV
// records and VEX documents) into a batch. Every bad file is reported
// (Errors); the batch is returned only when all parsed.
func ReadFS(fsys fs.FS, root string) (Batch, error) {
	var b Batch
	var errs []error
	n := 0
	err := fs.WalkDir(fsys, root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || !strings.HasSuffix(strings.ToLower(p), ".json") {
			return nil
		}
		if n++; n > MaxFiles {
			return tufota.Errorf(tufota.ETooLarge, "more than %d files", MaxFiles)
		}
		data, err := readLimited(fsys, p)
		if err != nil {
			errs = append(errs, &FileError{File: p, Err: err})
			return nil
		}
		if err := b.Add(p, data); err != nil {
			errs = append(errs, err)
		}
		return nil
	})
	if err != nil {
		return Batch{}, err
	}
	return finish(b, errs)
}

func readLimited(fsys fs.FS, p string) ([]byte, error) {
	f, err := fsys.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxRecordBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxRecordBytes {
		return nil, tufota.Errorf(tufota.ETooLarge, "larger than the limit of %d bytes", MaxRecordBytes)
	}
	return data, nil
}

// ReadZip reads a zip of OSV records and VEX documents (as OSV publishes
// them per ecosystem, e.g. Go/all.zip) into a batch, like ReadFS.
func ReadZip(r io.ReaderAt, size int64) (Batch, error) {
	zr, err := zip.NewReader(r, size)
	if err != nil {
		return Batch{}, tufota.Errorf(tufota.EInvalid, "not a zip archive: %v", err)
	}
	if len(zr.File) > MaxFiles {
		return Batch{}, tufota.Errorf(tufota.ETooLarge, "zip has %d files, more than %d", len(zr.File), MaxFiles)
	}
	return ReadFS(zr, ".")
}

// ReadJSON reads one JSON file (an OSV record or a VEX document) into a
// batch.
func ReadJSON(name string, data []byte) (Batch, error) {
	var b Batch
	if err := b.Add(name, data); err != nil {
		return Batch{}, finishErr([]error{err})
	}
	return b, nil
}

func finish(b Batch, errs []error) (Batch, error) {
	if len(errs) > 0 {
		return Batch{}, finishErr(errs)
	}
	if b.Files == 0 {
		return Batch{}, tufota.Errorf(tufota.EInvalid, "no OSV or VEX JSON files found")
	}
	// Two copies of an advisory in one batch: the later modified wins.
	byID := map[string]int{}
	var out []Advisory
	for _, a := range b.Advisories {
		if i, ok := byID[a.ID]; ok {
			if a.Modified.After(out[i].Modified) {
				out[i] = a
			}
			continue
		}
		byID[a.ID] = len(out)
		out = append(out, a)
	}
	b.Advisories = out
	return b, nil
}

// finishErr joins per-file errors into one EInvalid (ETooLarge if any file
// was too large) that names every bad file, first 20 in full.
func finishErr(errs []error) error {
	sort.Slice(errs, func(i, j int) bool { return errs[i].Error() < errs[j].Error() })
	code := tufota.EInvalid
	var lines []string
	for i, e := range errs {
		if tufota.ErrorCode(e) == tufota.ETooLarge {
			code = tufota.ETooLarge
		}
		if i < 20 {
			lines = append(lines, e.Error())
		}
	}
	msg := fmt.Sprintf("%d file(s) not imported, nothing was imported: %s", len(errs), strings.Join(lines, "; "))
	if len(errs) > 20 {
		msg += fmt.Sprintf("; and %d more", len(errs)-20)
	}
	return &tufota.Error{Code: code, Message: msg, Err: errors.Join(errs...)}
}
