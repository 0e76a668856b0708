package server

import (
	"context"
	"log/slog"
	"runtime"
	"strconv"
	"time"

	"github.com/tufota/tufota/audit"
	"github.com/tufota/tufota/signer"
	"github.com/tufota/tufota/storage"
)

// DeltaConfig configures the background delta worker.
type DeltaConfig struct {
	// Every is how often the worker looks for published releases without
	// deltas; zero disables deltas.
	Every time.Duration
	// MaxBases is how many earlier releases of the same product each new
	// release gets a delta from (default 2).
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
	pairs, err := s.cfg.Releases.DeltaCandidates(ctx, maxBases)
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

// releaseWithDeltas is the release show answer: the release and the
// deltas recorded for it.
type releaseWithDeltas struct {
	signer.Release
	Deltas []signer.Delta `json:"deltas"`
}
