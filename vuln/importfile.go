package vuln

import (
	"archive/zip"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/tufota/tufota"
)

// OpenImport opens path as the body of an import request (what
// tufota vuln import sends): a zip or JSON file as it is, with its content
// type, or a directory as a zip of its *.json files, written through a
// pipe while the request streams.
func OpenImport(path string) (io.ReadCloser, string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, "", tufota.Errorf(tufota.EInvalid, "vuln import: %v", err)
	}
	if !st.IsDir() {
		f, err := os.Open(path)
		if err != nil {
			return nil, "", tufota.Errorf(tufota.EInvalid, "vuln import: %v", err)
		}
		if strings.EqualFold(filepath.Ext(path), ".zip") {
			return f, "application/zip", nil
		}
		return f, "application/json", nil
	}
	pr, pw := io.Pipe()
	go func() {
		zw := zip.NewWriter(pw)
		err := filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.EqualFold(filepath.Ext(p), ".json") {
				return err
			}
			rel, err := filepath.Rel(path, p)
			if err != nil {
				return err
			}
			w, err := zw.Create(filepath.ToSlash(rel))
			if err != nil {
				return err
			}
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = io.Copy(w, f)
			return err
		})
		if err == nil {
			err = zw.Close()
		}
		pw.CloseWithError(err)
	}()
	return pr, "application/zip", nil
}
