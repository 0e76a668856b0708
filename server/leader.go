package server

import (
	"context"
	"log/slog"
	"sync"
)

// runBackground runs the jobs that must run on one replica only: the
// refresher (timestamp/snapshot re-signing), the rollout controller and the
// audit checkpointer. With an Elector they run only while this replica
// holds the leader lease and stop when it loses it; without one they run
// until ctx ends. It returns when every job has returned.
func (s *Server) runBackground(ctx context.Context) {
	if s.cfg.Elector == nil {
		s.backgroundJobs(ctx)
		return
	}
	if err := s.cfg.Elector.Run(ctx, s.backgroundJobs); err != nil {
		s.log.Error("leader election stopped", slog.Any("err", err))
	}
}

// backgroundJobs runs the leader's jobs until ctx ends.
func (s *Server) backgroundJobs(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Go(func() { s.refreshLoop(ctx) })
	wg.Go(func() { s.deltaLoop(ctx) })
	wg.Go(func() {
		if err := s.cfg.Rollouts.Run(ctx, s.cfg.ControllerEvery); err != nil && ctx.Err() == nil {
			s.log.Error("rollout controller stopped", slog.Any("err", err))
		}
	})
	wg.Go(func() {
		if err := s.cfg.Audit.RunCheckpoints(ctx, s.cfg.CheckpointEvery); err != nil && ctx.Err() == nil {
			s.log.Error("audit checkpoints stopped", slog.Any("err", err))
		}
	})
	wg.Wait()
}
