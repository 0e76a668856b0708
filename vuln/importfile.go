package vuln

import (
	"archive/zip"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/tufota/tufota"
)

// OpenImport opens name as the body of an import request (what
// tufota vuln import sends): a zip or JSON file as it is, with its content
// type, or a directory as a zip of its *.json files, written through a
// pipe while the request streams.
func OpenImport(name string) (io.ReadCloser, string, error) {
	st, err := os.Stat(name)
	if err != nil {
		return nil, "", tufota.Errorf(tufota.EInvalid, "vuln import: %v", err)
	}
	if !st.IsDir() {
		f, err := os.Open(name)
		if err != nil {
			return nil, "", tufota.Errorf(tufota.EInvalid, "vuln import: %v", err)
		}
		if strings.EqualFold(filepath.Ext(name), ".zip") {
			return f, "application/zip", nil
		}
		return f, "application/json", nil
	}
	root, err := os.OpenRoot(name)
	if err != nil {
		return nil, "", tufota.Errorf(tufota.EInvalid, "vuln import: %v", err)
	}
	pr, pw := io.Pipe()
	go func() {
		defer root.Close()
		// Walked and read through root: a symlink cannot lead outside the
		// directory, nor be swapped for one between the walk and the read.
		zw := zip.NewWriter(pw)
		err := fs.WalkDir(root.FS(), ".", func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.EqualFold(path.Ext(p), ".json") {
				return err
			}
			w, err := zw.Create(p)
			if err != nil {
				return err
			}
			f, err := root.Open(p)
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
