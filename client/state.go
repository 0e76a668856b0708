package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/tufota/tufota"
)

// installedFile records the installed release in the state dir; it is the
// device's anti-rollback state.
const installedFile = "installed.json"

// Installed is the record of the release a device runs.
type Installed struct {
	Target  string `json:"target"`
	Version string `json:"version"`
}

func readInstalled(stateDir string) (Installed, error) {
	var st Installed
	b, err := os.ReadFile(filepath.Join(stateDir, installedFile))
	if errors.Is(err, fs.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("read installed state: %w", err)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("read installed state %s: %w", filepath.Join(stateDir, installedFile), err)
	}
	if st.Version != "" {
		if _, err := tufota.ParseVersion(st.Version); err != nil {
			return st, fmt.Errorf("read installed state: %w", err)
		}
	}
	return st, nil
}

// ReadInstalled returns the installed-release record in stateDir, or a zero
// Installed when there is none.
func ReadInstalled(stateDir string) (Installed, error) { return readInstalled(stateDir) }

// MarkInstalled records upd as the installed release, atomically (a crash
// leaves the old or the new record), and makes its version the one later
// checks compare against. Call it once the image is installed and
// confirmed. Safe for concurrent use.
func (c *Client) MarkInstalled(ctx context.Context, upd *Update) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("mark installed: %w", err)
	}
	b, err := json.Marshal(Installed{Target: upd.Target, Version: upd.Version})
	if err != nil {
		return fmt.Errorf("mark installed: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := writeFileAtomic(filepath.Join(c.cfg.StateDir, installedFile), b); err != nil {
		return fmt.Errorf("mark installed: %w", err)
	}
	c.current = upd.Version
	return nil
}
