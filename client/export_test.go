package client

import (
	"encoding/hex"
	"path/filepath"
)

// SetCrashHook installs a hook that ab calls at every step a crash may cut
// (for the power-loss test).
func SetCrashHook(ab *ABInstaller, f func(step string)) { ab.crash = f }

// PartialPath returns where c keeps the partial file of upd's download.
func PartialPath(c *Client, upd *Update) string {
	sums, err := signedSums(&Target{Path: upd.Target, Length: upd.Length, Hashes: upd.Hashes})
	if err != nil {
		panic(err)
	}
	last := sums[len(sums)-1]
	return filepath.Join(c.repo.cfg.MetadataDir, downloadsDir, last.alg+"-"+hex.EncodeToString(last.want)+".part")
}
