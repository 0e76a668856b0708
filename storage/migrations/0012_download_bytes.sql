-- 0012_download_bytes: how each device's image came in a rollout (issue
-- 20). The device says it in its downloaded/installed status report,
-- since a CDN or S3 redirect (TargetsURL) serves the bytes without the
-- server seeing them: download is 'delta', 'full' or '' (not reported),
-- download_bytes the bytes the device transferred for it. Rollout status
-- and history sum them per wave. Portable SQL: SQLite and PostgreSQL 15.
ALTER TABLE device_status ADD COLUMN download TEXT NOT NULL DEFAULT '';
ALTER TABLE device_status ADD COLUMN download_bytes BIGINT NOT NULL DEFAULT 0;
