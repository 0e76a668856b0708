package api

// VulnFinding is one advisory found in one component of one release, with
// the status VEX gives it (vuln.Finding on the server).
type VulnFinding struct {
	Advisory      string   `json:"advisory"`
	Aliases       []string `json:"aliases,omitempty"`
	Summary       string   `json:"summary,omitempty"`
	Release       string   `json:"release"`
	Component     string   `json:"component"`
	Version       string   `json:"version"`
	Status        string   `json:"status"`
	Justification string   `json:"justification,omitempty"`
	FixedIn       string   `json:"fixed_in,omitempty"`
}

// VulnImportResult is what POST /api/v1/vulnerabilities/import answers.
type VulnImportResult struct {
	Files      int `json:"files"`
	Advisories int `json:"advisories"`
	Withdrawn  int `json:"withdrawn"`
	Statements int `json:"statements"`
	// NewlyAffected are the findings the import added.
	NewlyAffected []VulnFinding `json:"newly_affected"`
	// ExposedDevices counts devices that run a newly affected release.
	ExposedDevices int `json:"exposed_devices"`
}

// VulnReport is one advisory (an alias group) in GET /api/v1/vulnerabilities.
type VulnReport struct {
	Advisory string   `json:"advisory"`
	Aliases  []string `json:"aliases,omitempty"`
	Summary  string   `json:"summary,omitempty"`
	// Status is the worst status over the releases: affected,
	// under_investigation, fixed or not_affected.
	Status   string             `json:"status"`
	Releases []VulnReleaseEntry `json:"releases"`
	// ExposedDevices are the devices running a release whose status is
	// affected or under_investigation, by ID.
	ExposedDevices []string `json:"exposed_devices"`
	// Cohorts are the saved cohorts with exposed devices.
	Cohorts []VulnCohort `json:"cohorts"`
	// Fixes are, per affected product, the first release that fixes it
	// and how far its rollouts have come.
	Fixes []VulnFix `json:"fixes"`
}

// VulnReleaseEntry is one release the advisory was found in.
type VulnReleaseEntry struct {
	Release    string          `json:"release"`
	Status     string          `json:"status"`
	Components []VulnComponent `json:"components"`
	// Devices run the release now, by ID.
	Devices []string `json:"devices"`
}

// VulnComponent is one component of a release the advisory names, and the
// status VEX gives it there.
type VulnComponent struct {
	Component     string `json:"component"` // purl, or name without one
	Version       string `json:"version"`
	Status        string `json:"status"`
	Justification string `json:"justification,omitempty"`
	FixedIn       string `json:"fixed_in,omitempty"`
}

// VulnCohort is a saved cohort and how many of its devices are exposed.
type VulnCohort struct {
	Name    string `json:"name"`
	Exposed int    `json:"exposed"`
}

// VulnFix is the first release of a product that fixes the advisory.
type VulnFix struct {
	Product string `json:"product"`
	Release string `json:"release"`
	// Devices counts devices that run the fixing release now.
	Devices  int           `json:"devices"`
	Rollouts []VulnRollout `json:"rollouts"`
}

// VulnRollout is the progress of one rollout of a fixing release.
type VulnRollout struct {
	ID         string `json:"id"`
	State      string `json:"state"`
	Devices    int    `json:"devices"`
	Installed  int    `json:"installed"`
	Failed     int    `json:"failed"`
	InProgress int    `json:"in_progress"`
}
