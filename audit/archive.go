package audit

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/tufota/tufota/storage"
)

// ArchiveCheckpointKey is the blob key a signed checkpoint of the given
// tree size is archived under: "checkpoints/<size>.note", the size
// zero-padded to 20 digits so that keys sort by size.
func ArchiveCheckpointKey(size int64) string {
	return fmt.Sprintf("checkpoints/%020d.note", size)
}

// Archive copies every signed checkpoint of the log that the archive does
// not hold yet to archive, as ArchiveCheckpointKey(size), oldest first, and
// returns how many it wrote. Meant for a write-once store
// (storage.LockedS3, S3 Object Lock in compliance mode): call it after
// each checkpoint (the server does, with --audit-archive); a checkpoint
// already archived is never rewritten. Each checkpoint's signature is
// checked before it is archived. Errors are the database's, a
// *VerifyError for a bad stored checkpoint, or the store's; checkpoints
// archived before the error stay archived.
func Archive(ctx context.Context, l *Log, archive storage.Blobs) (int, error) {
	infos, err := archive.List(ctx, "checkpoints/")
	if err != nil {
		return 0, fmt.Errorf("audit archive: list: %w", err)
	}
	have := map[int64]bool{}
	for _, in := range infos {
		n, ok := strings.CutSuffix(strings.TrimPrefix(in.Key, "checkpoints/"), ".note")
		if size, err := strconv.ParseInt(n, 10, 64); ok && err == nil {
			have[size] = true
		}
	}
	cps, err := l.loadCheckpoints(ctx, 0, 1<<63-1)
	if err != nil {
		return 0, fmt.Errorf("audit archive: %w", err)
	}
	n := 0
	for _, c := range cps {
		if have[c.Size] {
			continue
		}
		if _, err := archive.Put(ctx, ArchiveCheckpointKey(c.Size), bytes.NewReader(c.note)); err != nil {
			return n, fmt.Errorf("audit archive: checkpoint of size %d: %w", c.Size, err)
		}
		n++
	}
	return n, nil
}

// ArchiveExportKey is the blob key of an export written at t in format
// ("json" or "csv"): "exports/<UTC time>.<format>".
func ArchiveExportKey(t time.Time, format string) string {
	return "exports/" + t.UTC().Format("20060102T150405.000000000Z") + "." + format
}
