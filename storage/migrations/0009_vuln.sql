-- 0009_vuln: vulnerability exposure (package vuln). Imported OSV
-- advisories (withdrawn ones kept, so that a later import of an older copy
-- cannot resurrect them, and ignored in matching), VEX statements from the
-- device maker, the components of each release's SBOM, and the findings:
-- which advisory affects which component of which release, after VEX.
-- Findings are derived; vuln.Store recomputes them in the transaction of
-- every import and release change. Times are Unix nanoseconds. Portable SQL:
-- runs on SQLite and PostgreSQL 15.
CREATE TABLE vuln_advisories (
	id          TEXT PRIMARY KEY,
	aliases     TEXT NOT NULL,  -- JSON array of other IDs (CVE, GHSA...)
	summary     TEXT NOT NULL,
	modified    BIGINT NOT NULL,
	withdrawn   BIGINT,         -- NULL unless withdrawn
	record      TEXT NOT NULL,  -- the parsed advisory (vuln.Advisory JSON)
	imported_at BIGINT NOT NULL,
	imported_by TEXT NOT NULL
);
CREATE TABLE vuln_vex (
	vuln_id       TEXT NOT NULL,
	ref           TEXT NOT NULL, -- package URL of the component, with or without version
	product       TEXT NOT NULL, -- NAME@VERSION of the release it speaks for; '' for every release
	state         TEXT NOT NULL, -- not_affected, fixed, under_investigation, affected
	justification TEXT NOT NULL,
	detail        TEXT NOT NULL,
	source        TEXT NOT NULL, -- file it came from
	imported_at   BIGINT NOT NULL,
	imported_by   TEXT NOT NULL,
	PRIMARY KEY (vuln_id, ref, product)
);
CREATE TABLE vuln_releases (
	release     TEXT PRIMARY KEY, -- NAME@VERSION
	sbom_sha256 TEXT NOT NULL,
	indexed_at  BIGINT NOT NULL
);
CREATE TABLE vuln_components (
	release   TEXT NOT NULL,
	purl      TEXT NOT NULL,
	name      TEXT NOT NULL,
	version   TEXT NOT NULL,
	ecosystem TEXT NOT NULL,     -- OSV ecosystem from the purl type, '' if none
	PRIMARY KEY (release, purl, name, version)
);
CREATE TABLE vuln_findings (
	advisory      TEXT NOT NULL, -- canonical ID of the alias group
	release       TEXT NOT NULL,
	component     TEXT NOT NULL, -- purl, or name when there is none
	version       TEXT NOT NULL,
	status        TEXT NOT NULL, -- affected, not_affected, fixed, under_investigation
	justification TEXT NOT NULL,
	fixed_in      TEXT NOT NULL, -- the component version that fixes it, if known
	PRIMARY KEY (advisory, release, component, version)
);
CREATE INDEX vuln_findings_release ON vuln_findings (release);
