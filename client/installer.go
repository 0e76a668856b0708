package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// Installer puts a verified image in place. Install is called with the path
// of a downloaded, verified image; Confirm makes the installed image
// permanent once it is known good; Rollback returns to the previous image
// when it is not. Implementations must leave the device bootable after a
// crash at any point.
type Installer interface {
	Install(ctx context.Context, path string, t *Update) error
	Confirm(ctx context.Context) error
	Rollback(ctx context.Context) error
}

// FileInstaller is the simple installer for devices without A/B slots: it
// replaces the file at Path atomically, keeping the previous one as
// Path+".prev" until Confirm. It is not safe for concurrent use.
type FileInstaller struct {
	// Path is the installed image's file.
	Path string
}

var _ Installer = (*FileInstaller)(nil)

// Install moves the image at path (copying it if it is on another file
// system) to Path, keeping the previous image for Rollback. After a crash,
// Path holds the old or the new image, whole.
func (fi *FileInstaller) Install(ctx context.Context, path string, t *Update) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("install: %w", err)
	}
	dir := filepath.Dir(fi.Path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("install: %w", err)
	}
	next, prev := fi.Path+".new", fi.Path+".prev"
	if err := moveOrCopy(path, next); err != nil {
		return fmt.Errorf("install: %w", err)
	}
	if err := os.Remove(prev); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("install: %w", err)
	}
	if err := os.Link(fi.Path, prev); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("install: keep previous image: %w", err)
	}
	if err := os.Rename(next, fi.Path); err != nil {
		return fmt.Errorf("install: %w", err)
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("install: %w", err)
	}
	return nil
}

// Confirm drops the previous image.
func (fi *FileInstaller) Confirm(ctx context.Context) error {
	if err := os.Remove(fi.Path + ".prev"); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("confirm: %w", err)
	}
	return syncDir(filepath.Dir(fi.Path))
}

// Rollback puts the previous image back. It fails when there is none.
func (fi *FileInstaller) Rollback(ctx context.Context) error {
	if err := os.Rename(fi.Path+".prev", fi.Path); err != nil {
		return fmt.Errorf("rollback: %w", err)
	}
	return syncDir(filepath.Dir(fi.Path))
}

// moveOrCopy renames src to dst, or copies it (synced) when a rename is not
// possible, then removes src.
func moveOrCopy(src, dst string) error {
	if err := os.Rename(src, dst); err == nil {
		return nil
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Remove(src)
}
