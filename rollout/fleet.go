package rollout

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// FleetEntry is one device's update record for the fleet report.
type FleetEntry struct {
	DeviceID string `json:"device_id"`
	Hardware string `json:"hardware"`
	Version  string `json:"version"`
	// LastSeen is when the device last asked for an update.
	LastSeen *time.Time `json:"last_seen,omitempty"`
	// LastUpdate is when the device last confirmed an installed release.
	LastUpdate *time.Time `json:"last_update,omitempty"`
	// FailedUpdates counts the device's failed and rolled-back reports.
	FailedUpdates int `json:"failed_updates"`
	// LastDownload ("delta" or "full") and LastDownloadBytes are how the
	// device's latest reported download in a rollout came.
	LastDownload      string `json:"last_download,omitempty"`
	LastDownloadBytes int64  `json:"last_download_bytes,omitempty"`
}

// Fleet returns every device's update record, by device ID.
func (s *Service) Fleet(ctx context.Context) ([]FleetEntry, error) {
	if err := s.flushSeen(ctx); err != nil {
		return nil, err
	}
	rows, err := s.db.Query(ctx, `SELECT d.id, d.hardware, d.current_version, d.last_seen,
		(SELECT MAX(r.time) FROM status_reports r WHERE r.device_id = d.id AND r.state = 'installed'),
		(SELECT COUNT(*) FROM status_reports r WHERE r.device_id = d.id AND r.state IN ('failed', 'rolled-back')),
		COALESCE((SELECT s.download FROM device_status s WHERE s.device_id = d.id AND s.download <> ''
			ORDER BY s.updated_at DESC LIMIT 1), ''),
		COALESCE((SELECT s.download_bytes FROM device_status s WHERE s.device_id = d.id AND s.download <> ''
			ORDER BY s.updated_at DESC LIMIT 1), 0)
		FROM devices d ORDER BY d.id`)
	if err != nil {
		return nil, fmt.Errorf("fleet report: %w", err)
	}
	defer rows.Close()
	var out []FleetEntry
	for rows.Next() {
		var (
			e                FleetEntry
			seen, lastUpdate sql.NullInt64
		)
		if err := rows.Scan(&e.DeviceID, &e.Hardware, &e.Version, &seen, &lastUpdate, &e.FailedUpdates, &e.LastDownload, &e.LastDownloadBytes); err != nil {
			return nil, fmt.Errorf("fleet report: %w", err)
		}
		if seen.Valid {
			e.LastSeen = timePtr(fromNanos(seen.Int64))
		}
		if lastUpdate.Valid {
			e.LastUpdate = timePtr(fromNanos(lastUpdate.Int64))
		}
		out = append(out, e)
	}
	return out, rows.Err()
}
