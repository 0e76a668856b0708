package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/api"
	"github.com/tufota/tufota/rollout"
	"github.com/tufota/tufota/signer"
	"github.com/tufota/tufota/storage"
	"github.com/tufota/tufota/vuln"
)

// Vulnerability exposure (package vuln): advisories imported by people,
// matched against each published release's SBOM, and reported with the
// devices that run the affected releases. The SBOM index is brought up to
// date (vuln.Store.SyncReleases) before every import and every report, so
// that a release published since is matched without a new import.

// MaxVulnImportBytes bounds one advisory import (a zip of OSV records, as
// OSV publishes one per ecosystem, or one JSON file).
const MaxVulnImportBytes = 1 << 30

// AlertVulnDeployed is the alert kind sent when an import makes firmware
// that devices run newly affected.
const AlertVulnDeployed = "vuln.deployed-firmware-affected"

// VulnImportResult is what POST /api/v1/vulnerabilities/import answers.
type VulnImportResult struct {
	Files      int `json:"files"`
	Advisories int `json:"advisories"`
	Withdrawn  int `json:"withdrawn"`
	Statements int `json:"statements"`
	// NewlyAffected are the findings the import added (advisory, release,
	// component newly affected).
	NewlyAffected []vuln.Finding `json:"newly_affected"`
	// ExposedDevices counts devices that run a newly affected release.
	ExposedDevices int `json:"exposed_devices"`
}

// The report types are package api's.
type (
	VulnReport       = api.VulnReport
	VulnReleaseEntry = api.VulnReleaseEntry
	VulnComponent    = api.VulnComponent
	VulnCohort       = api.VulnCohort
	VulnFix          = api.VulnFix
	VulnRollout      = api.VulnRollout
)

func (s *Server) vulnStore() *vuln.Store { return vuln.NewStore(s.cfg.DB, s.now) }

// syncVulnReleases indexes the SBOMs of the published releases.
func (s *Server) syncVulnReleases(ctx context.Context) ([]signer.Release, error) {
	rels, err := s.cfg.Releases.List(ctx)
	if err != nil {
		return nil, err
	}
	var in []vuln.ReleaseSBOM
	for _, r := range rels {
		if r.State != signer.StatePublished || r.SBOM == nil {
			continue
		}
		sb := *r.SBOM
		rs := vuln.ReleaseSBOM{Ref: r.Name + "@" + r.Version, SHA256: sb.SHA256, Load: func(ctx context.Context) ([]byte, error) {
			return s.readSBOM(ctx, sb)
		}}
		if r.VEX != nil {
			vx := *r.VEX
			rs.VEXSHA256 = vx.SHA256
			rs.LoadVEX = func(ctx context.Context) ([]byte, error) {
				return s.readSignedTarget(ctx, vx.Path, vx.SHA256, signer.MaxVEXBytes)
			}
		}
		in = append(in, rs)
	}
	if _, err := s.vulnStore().SyncReleases(ctx, in); err != nil {
		return nil, err
	}
	return rels, nil
}

// readSBOM reads an SBOM target and checks it against its signed hash.
func (s *Server) readSBOM(ctx context.Context, sb signer.SBOM) ([]byte, error) {
	return s.readSignedTarget(ctx, sb.Path, sb.SHA256, signer.MaxSBOMBytes)
}

// readSignedTarget reads a companion target (SBOM, VEX) of at most limit
// bytes from the blob store and checks it against its signed SHA-256.
func (s *Server) readSignedTarget(ctx context.Context, path, sha string, limit int) ([]byte, error) {
	obj, err := s.cfg.Blobs.Open(ctx, signer.TargetBlobKey(path, sha))
	if err != nil {
		return nil, err
	}
	defer obj.Close()
	b, err := io.ReadAll(io.LimitReader(obj, int64(limit)+1))
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(b)
	if hex.EncodeToString(sum[:]) != sha {
		return nil, tufota.Errorf(tufota.EInternal, "%s does not match its signed SHA-256", path)
	}
	return b, nil
}

// importVulnerabilities reads a zip (application/zip) or one JSON file
// (application/json) of OSV records and CycloneDX VEX documents, bounded
// by MaxVulnImportBytes, and imports it with its audit entry in one
// transaction. Every bad file is named in one EInvalid and nothing is
// imported.
func (s *Server) importVulnerabilities(c echo.Context) error {
	ctx := c.Request().Context()
	ct, _, _ := mime.ParseMediaType(c.Request().Header.Get("Content-Type"))
	body := http.MaxBytesReader(c.Response(), c.Request().Body, MaxVulnImportBytes)
	var (
		b   vuln.Batch
		err error
	)
	switch ct {
	case "application/zip":
		b, err = readZipBody(body)
	case "application/json":
		var data []byte
		data, err = io.ReadAll(io.LimitReader(body, vuln.MaxRecordBytes+1))
		if err == nil && len(data) > vuln.MaxRecordBytes {
			err = tufota.Errorf(tufota.ETooLarge, "JSON body larger than %d bytes; send a zip", vuln.MaxRecordBytes)
		} else if err == nil {
			b, err = vuln.ReadJSON("body", data)
		}
	default:
		return badRequest("Content-Type %q: want application/zip (OSV records and VEX documents) or application/json (one of them)", ct)
	}
	if err != nil {
		return bodyErr(err)
	}
	rels, err := s.syncVulnReleases(ctx)
	if err != nil {
		return err
	}
	var res vuln.ImportResult
	st := s.vulnStore()
	err = s.cfg.DB.Tx(ctx, func(tx *storage.Tx) error {
		var err error
		if res, err = st.Import(ctx, tx, b, principal(c).Name); err != nil {
			return err
		}
		details := map[string]string{"files": strconv.Itoa(b.Files), "advisories": strconv.Itoa(res.Advisories),
			"withdrawn": strconv.Itoa(res.Withdrawn), "statements": strconv.Itoa(res.Statements), "newly_affected": strconv.Itoa(len(res.NewlyAffected))}
		auditObject(c, "vulnerabilities", details)
		return s.auditIn(ctx, tx, c, "vuln.import", "vulnerabilities", details, nil)
	})
	if err != nil {
		return err
	}
	c.Set(auditDoneKey, true)
	out := VulnImportResult{Files: b.Files, Advisories: res.Advisories, Withdrawn: res.Withdrawn, Statements: res.Statements, NewlyAffected: res.NewlyAffected}
	if len(res.NewlyAffected) > 0 {
		devs, err := s.cfg.Rollouts.Devices(ctx, rollout.DeviceFilter{})
		if err != nil {
			return err
		}
		exposed := map[string]bool{}
		var advisories, releases []string
		for _, f := range res.NewlyAffected {
			ds := devicesOn(devs, rels, f.Release)
			for _, d := range ds {
				exposed[d.ID] = true
			}
			if len(ds) > 0 {
				advisories = appendNew(advisories, f.Advisory)
				releases = appendNew(releases, f.Release)
			}
		}
		out.ExposedDevices = len(exposed)
		if len(exposed) > 0 {
			s.cfg.Alerts.Send(Alert{Kind: AlertVulnDeployed,
				Message: fmt.Sprintf("advisory import: %d device(s) run firmware newly affected by %s", len(exposed), strings.Join(advisories, ", ")),
				Details: map[string]string{"advisories": strings.Join(advisories, ","), "releases": strings.Join(releases, ","), "devices": strconv.Itoa(len(exposed))}})
		}
	}
	s.log.Info("vulnerabilities imported", "actor", principal(c).Name, "files", b.Files, "advisories", res.Advisories, "statements", res.Statements, "newly_affected", len(res.NewlyAffected))
	return c.JSON(http.StatusOK, out)
}

func appendNew(xs []string, x string) []string {
	if slices.Contains(xs, x) {
		return xs
	}
	return append(xs, x)
}

func bodyErr(err error) error {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return tufota.Errorf(tufota.ETooLarge, "import larger than %d bytes", mbe.Limit)
	}
	return err
}

// readZipBody spools a zip body to a temporary file (a zip is read from
// its end) and reads it.
func readZipBody(body io.Reader) (vuln.Batch, error) {
	f, err := os.CreateTemp("", "tufota-vuln-*.zip")
	if err != nil {
		return vuln.Batch{}, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	n, err := io.Copy(f, body)
	if err != nil {
		return vuln.Batch{}, bodyErr(err)
	}
	return vuln.ReadZip(f, n)
}

// devicesOn returns the devices that run release ref (NAME@VERSION): those
// that installed it through tufota, and those whose reported version is
// its version on hardware it supports.
func devicesOn(devs []rollout.Device, rels []signer.Release, ref string) []rollout.Device {
	name, version, _ := strings.Cut(ref, "@")
	var hw []string
	for _, r := range rels {
		if r.Name == name && r.Version == version {
			hw = r.Hardware
		}
	}
	var out []rollout.Device
	for _, d := range devs {
		switch {
		case d.CurrentRelease != "":
			if d.CurrentRelease == ref {
				out = append(out, d)
			}
		case d.Version == version && (tufota.TargetCustom{Hardware: hw}).SupportsHardware(d.Hardware):
			out = append(out, d)
		}
	}
	return out
}

var statusRank = map[string]int{vuln.StatusNotAffected: 0, vuln.StatusFixed: 1, vuln.StatusUnderInvestigation: 2, vuln.StatusAffected: 3}

func worse(a, b string) string {
	if statusRank[b] > statusRank[a] {
		return b
	}
	return a
}

// listVulnerabilities answers the exposure report: per advisory, the
// releases it was found in, the devices running them, cohorts, and the
// first fixing release with its rollout progress. Filters: id (any ID of
// the alias group), release (NAME@VERSION).
func (s *Server) listVulnerabilities(c echo.Context) error {
	ctx := c.Request().Context()
	id, relFilter := c.QueryParam("id"), c.QueryParam("release")
	if relFilter != "" {
		if _, _, err := splitRef(relFilter); err != nil {
			return err
		}
	}
	rels, err := s.syncVulnReleases(ctx)
	if err != nil {
		return err
	}
	st := s.vulnStore()
	fs, err := st.Findings(ctx, id)
	if err != nil {
		return err
	}
	indexed, err := st.Indexed(ctx)
	if err != nil {
		return err
	}
	devs, err := s.cfg.Rollouts.Devices(ctx, rollout.DeviceFilter{})
	if err != nil {
		return err
	}
	cohorts, err := s.cfg.Rollouts.Cohorts(ctx)
	if err != nil {
		return err
	}
	rollouts, err := s.cfg.Rollouts.Rollouts(ctx)
	if err != nil {
		return err
	}
	var order []string
	byAdv := map[string][]vuln.Finding{}
	for _, f := range fs {
		if _, ok := byAdv[f.Advisory]; !ok {
			order = append(order, f.Advisory)
		}
		byAdv[f.Advisory] = append(byAdv[f.Advisory], f)
	}
	out := []VulnReport{}
	for _, adv := range order {
		group := byAdv[adv]
		if relFilter != "" && !slices.ContainsFunc(group, func(f vuln.Finding) bool { return f.Release == relFilter }) {
			continue
		}
		rep, err := s.vulnReport(ctx, group, rels, indexed, devs, cohorts, rollouts)
		if err != nil {
			return err
		}
		out = append(out, rep)
	}
	return c.JSON(http.StatusOK, out)
}

func (s *Server) vulnReport(ctx context.Context, group []vuln.Finding, rels []signer.Release, indexed map[string]bool,
	devs []rollout.Device, cohorts []rollout.Cohort, rollouts []rollout.Rollout) (VulnReport, error) {
	rep := VulnReport{Advisory: group[0].Advisory, Aliases: group[0].Aliases, Summary: group[0].Summary, Status: vuln.StatusNotAffected,
		Releases: []VulnReleaseEntry{}, ExposedDevices: []string{}, Cohorts: []VulnCohort{}, Fixes: []VulnFix{}}
	byRel := map[string]*VulnReleaseEntry{}
	for _, f := range group {
		e := byRel[f.Release]
		if e == nil {
			rep.Releases = append(rep.Releases, VulnReleaseEntry{Release: f.Release, Status: vuln.StatusNotAffected, Devices: []string{}})
			e = &rep.Releases[len(rep.Releases)-1]
			byRel[f.Release] = e
		}
		e.Components = append(e.Components, VulnComponent{Component: f.Component, Version: f.Version, Status: f.Status, Justification: f.Justification, FixedIn: f.FixedIn})
		e.Status = worse(e.Status, f.Status)
	}
	exposed := map[string]rollout.Device{}
	highest := map[string]string{} // product → highest exposed version
	for i := range rep.Releases {
		e := &rep.Releases[i]
		rep.Status = worse(rep.Status, e.Status)
		for _, d := range devicesOn(devs, rels, e.Release) {
			e.Devices = append(e.Devices, d.ID)
			if e.Status == vuln.StatusAffected || e.Status == vuln.StatusUnderInvestigation {
				exposed[d.ID] = d
			}
		}
		if e.Status == vuln.StatusAffected || e.Status == vuln.StatusUnderInvestigation {
			name, version, _ := strings.Cut(e.Release, "@")
			if h, ok := highest[name]; !ok || cmpVersions(version, h) > 0 {
				highest[name] = version
			}
		}
	}
	for id := range exposed {
		rep.ExposedDevices = append(rep.ExposedDevices, id)
	}
	sort.Strings(rep.ExposedDevices)
	for _, co := range cohorts {
		sel, err := rollout.ParseSelector(co.Selector)
		if err != nil {
			continue
		}
		n := 0
		for _, d := range exposed {
			if sel.Match(d) {
				n++
			}
		}
		if n > 0 {
			rep.Cohorts = append(rep.Cohorts, VulnCohort{Name: co.Name, Exposed: n})
		}
	}
	products := make([]string, 0, len(highest))
	for p := range highest {
		products = append(products, p)
	}
	sort.Strings(products)
	for _, product := range products {
		fix := firstFix(product, highest[product], rels, indexed, byRel)
		if fix == "" {
			continue
		}
		vf := VulnFix{Product: product, Release: fix, Devices: len(devicesOn(devs, rels, fix)), Rollouts: []VulnRollout{}}
		for _, r := range rollouts {
			if r.Release != fix {
				continue
			}
			stat, err := s.cfg.Rollouts.Status(ctx, r.ID)
			if err != nil {
				return VulnReport{}, err
			}
			vr := VulnRollout{ID: r.ID, State: string(r.State)}
			for _, w := range stat.Waves {
				vr.Devices += w.Devices
				vr.Installed += w.Installed
				vr.Failed += w.Failed
				vr.InProgress += w.InProgress
			}
			vf.Rollouts = append(vf.Rollouts, vr)
		}
		rep.Fixes = append(rep.Fixes, vf)
	}
	return rep, nil
}

// firstFix returns the lowest published release of product above version
// whose SBOM is indexed and in which the advisory is not affected (or
// under investigation).
func firstFix(product, version string, rels []signer.Release, indexed map[string]bool, byRel map[string]*VulnReleaseEntry) string {
	best := ""
	for _, r := range rels {
		ref := r.Name + "@" + r.Version
		if r.Name != product || r.State != signer.StatePublished || !indexed[ref] || cmpVersions(r.Version, version) <= 0 {
			continue
		}
		if e, ok := byRel[ref]; ok && (e.Status == vuln.StatusAffected || e.Status == vuln.StatusUnderInvestigation) {
			continue
		}
		if best == "" || cmpVersions(r.Version, strings.TrimPrefix(best, product+"@")) < 0 {
			best = ref
		}
	}
	return best
}
