package server

import (
	"context"
	"log/slog"
	"runtime"
	"strconv"
	"time"

	"github.com/tufota/tufota/audit"
	"github.com/tufota/tufota/rollout"
	"github.com/tufota/tufota/signer"
	"github.com/tufota/tufota/storage"
)

// DeltaConfig configures the background delta worker.
type DeltaConfig struct {
	// Every is how often the worker looks for published releases without
	// deltas; zero disables deltas.
	Every time.Duration
	// MaxBases is how many of the newest earlier releases of the same
	// product each new release gets a delta from, and how many more of the
	// earlier releases that registered devices still run (default 2).
	MaxBases int
	// Options bounds each delta (share of the full image, image size).
	Options signer.DeltaOptions
}

// deltaLoop makes deltas in the background, one at a time, on a thread of
// lowered CPU priority (deltas_linux.go), until ctx ends.
func (s *Server) deltaLoop(ctx context.Context) {
	if s.cfg.Deltas.Every <= 0 {
		return
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		// The thread stays locked to this goroutine, and exits with it:
		// its lowered priority never spreads to other goroutines.
		runtime.LockOSThread()
		lowerPriority(s.log)
		t := time.NewTicker(s.cfg.Deltas.Every)
		defer t.Stop()
		for {
			s.DeltasOnce(ctx)
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	<-done
}

// DeltasOnce makes the deltas that are due (see
// signer.Releases.DeltaCandidates), one after the other, and returns how
// many it recorded. Each outcome is recorded with its audit entry.
func (s *Server) DeltasOnce(ctx context.Context) int {
	maxBases := s.cfg.Deltas.MaxBases
	if maxBases <= 0 {
		maxBases = 2
	}
	running, err := s.fleetReleases(ctx)
	if err != nil {
		s.log.Error("delta candidates: fleet state", slog.Any("err", err))
		return 0
	}
	pairs, err := s.cfg.Releases.DeltaCandidates(ctx, maxBases, running)
	if err != nil {
		s.log.Error("delta candidates", slog.Any("err", err))
		return 0
	}
	n := 0
	for _, p := range pairs {
		d, err := s.cfg.Releases.MakeDelta(ctx, p, s.cfg.Deltas.Options, func(tx *storage.Tx, d signer.Delta) error {
			e := audit.Entry{Actor: "system", Role: "system", Action: "release.delta", Object: d.Name + "@" + d.Version,
				Outcome: audit.OutcomeOK, Details: map[string]string{
					"base": d.BaseVersion, "state": d.State, "length": strconv.FormatInt(d.Length, 10),
					"full_length": strconv.FormatInt(d.FullLength, 10), "target": d.TargetPath,
				}}
			if d.Message != "" {
				e.Details["message"] = d.Message
			}
			_, err := s.cfg.Audit.AppendTx(ctx, tx, audit.Escape(e))
			return err
		})
		if err != nil {
			if ctx.Err() == nil {
				s.log.Error("delta", slog.String("release", p.Result.Name+"@"+p.Result.Version), slog.String("base", p.Base.Version), slog.Any("err", err))
			}
			return n
		}
		n++
		s.log.Info("delta", slog.String("release", d.Name+"@"+d.Version), slog.String("base", d.BaseVersion), slog.String("state", d.State),
			slog.Int64("length", d.Length), slog.Int64("full_length", d.FullLength), slog.Int64("create_ms", d.CreateMillis), slog.String("message", d.Message))
	}
	return n
}

// fleetReleases returns whether some registered device runs a release: its
// recorded current release, or a device of one of the release's hardware
// IDs that reports the release's version.
func (s *Server) fleetReleases(ctx context.Context) (func(signer.Release) bool, error) {
	devices, err := s.cfg.Rollouts.Devices(ctx, rollout.DeviceFilter{})
	if err != nil {
		return nil, err
	}
	current, versions := map[string]bool{}, map[string]bool{}
	for _, d := range devices {
		if d.CurrentRelease != "" {
			current[d.CurrentRelease] = true
		}
		if d.Version != "" {
			versions[d.Hardware+"@"+d.Version] = true
		}
	}
	return func(rel signer.Release) bool {
		if current[rel.Name+"@"+rel.Version] {
			return true
		}
		for _, hw := range rel.Hardware {
			if versions[hw+"@"+rel.Version] {
				return true
			}
		}
		return false
	}, nil
}

// releaseWithDeltas is the release show answer: the release and the
// deltas recorded for it.
type releaseWithDeltas struct {
	signer.Release
	Deltas []signer.Delta `json:"deltas,omitempty"`
}
