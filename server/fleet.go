package server

import (
	"math"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/api"
	"github.com/tufota/tufota/signer"
)

// FleetRow is one line of the fleet report: the "outdated firmware" list a
// risk assessment needs.
type FleetRow = api.FleetRow

func (s *Server) fleetReport(c echo.Context) error {
	ctx := c.Request().Context()
	fleet, err := s.cfg.Rollouts.Fleet(ctx)
	if err != nil {
		return err
	}
	rels, err := s.cfg.Releases.List(ctx)
	if err != nil {
		return err
	}
	now := s.now()
	out := make([]FleetRow, 0, len(fleet))
	for _, d := range fleet {
		row := FleetRow{DeviceID: d.DeviceID, Hardware: d.Hardware, Version: d.Version, LastSeen: d.LastSeen, LastUpdate: d.LastUpdate, FailedUpdates: d.FailedUpdates,
			LastDownload: d.LastDownload, LastDownloadBytes: d.LastDownloadBytes}
		var newest *signer.Release
		for i := range rels {
			r := &rels[i]
			if r.State != signer.StatePublished || !(tufota.TargetCustom{Hardware: r.Hardware}).SupportsHardware(d.Hardware) {
				continue
			}
			if newest == nil || cmpVersions(r.Version, newest.Version) > 0 {
				newest = r
			}
			if d.Version == "" || cmpVersions(r.Version, d.Version) > 0 {
				row.Behind++
			}
		}
		if newest != nil {
			row.Newest = newest.Name + "@" + newest.Version
		}
		if d.LastUpdate != nil {
			days := int(math.Floor(now.Sub(*d.LastUpdate).Hours() / 24))
			row.DaysSinceLastUpdate = &days
		}
		out = append(out, row)
	}
	return c.JSON(http.StatusOK, out)
}

// cmpVersions compares two stored (valid) versions; invalid ones sort low.
func cmpVersions(a, b string) int {
	c, err := tufota.CompareVersions(a, b)
	if err != nil {
		return -1
	}
	return c
}
