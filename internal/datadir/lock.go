package datadir

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/tufota/tufota"
)

// LockName is the file in a data directory that `tufota server` holds an
// exclusive lock on while it runs with an Embedded backend.
const LockName = "tufota.lock"

// holder is what the lock file says about the server holding it.
type holder struct {
	PID     int       `json:"pid"`
	Host    string    `json:"host"`
	Started time.Time `json:"started"`
}

// Embedded reports whether a repository keeps state or blobs on this
// host's disk (SQLite, the file store): then only one server may use it.
// Replicas share PostgreSQL and S3 and may share a data directory's
// config and keys.
func Embedded(cfg Config) bool {
	remoteDB := strings.HasPrefix(cfg.DB, "postgres://") || strings.HasPrefix(cfg.DB, "postgresql://")
	remoteBlobs := strings.HasPrefix(cfg.Storage, "s3://")
	return !remoteDB || !remoteBlobs
}

// Lock takes an exclusive lock (flock) on DIR/tufota.lock when the
// repository in dir has an Embedded backend, and writes this process's
// pid, host and start time into it. It fails with EConflict, naming the
// holder, when another process holds it. The lock lasts until the returned
// function is called or the process exits (the kernel drops it then, so a
// crashed server leaves no stale lock; the file stays, and its content is
// read only when the lock is taken).
func Lock(dir string, now time.Time) (unlock func(), err error) {
	cfg, err := Load(dir)
	if err != nil {
		return nil, err
	}
	if !Embedded(cfg) {
		return func() {}, nil
	}
	path := filepath.Join(dir, LockName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600) // #nosec G304 -- the operator's data directory
	if err != nil {
		return nil, fmt.Errorf("lock data directory: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, tufota.Errorf(tufota.EConflict, "data directory %s is in use by another tufota server (%s; lock file %s): stop it first; two servers on one SQLite or file-store data directory would publish conflicting repository versions (run replicas on PostgreSQL and S3)", dir, describeHolder(path), path)
		}
		return nil, fmt.Errorf("lock data directory %s: %w", dir, err)
	}
	host, _ := os.Hostname()
	b, _ := json.Marshal(holder{PID: os.Getpid(), Host: host, Started: now.UTC()})
	if err := writeHolder(f, append(b, '\n')); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("lock data directory: write %s: %w", path, err)
	}
	return func() { _ = f.Close() }, nil
}

func writeHolder(f *os.File, b []byte) error {
	if err := f.Truncate(0); err != nil {
		return err
	}
	if _, err := f.WriteAt(b, 0); err != nil {
		return err
	}
	return f.Sync()
}

// describeHolder reads who holds the lock file at path.
func describeHolder(path string) string {
	b, err := os.ReadFile(path) // #nosec G304 -- the operator's data directory
	var h holder
	if err != nil || json.Unmarshal(b, &h) != nil || h.PID == 0 {
		return "holder unknown: it has not written its details yet"
	}
	return fmt.Sprintf("pid %d on host %s, started %s", h.PID, h.Host, h.Started.Format(time.RFC3339))
}
