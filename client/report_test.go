package client_test

import (
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/tufota/tufota/client"
)

func (s *server) reportStates() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var states []string
	for _, r := range s.reports {
		states = append(states, r["state"]+":"+r["version"])
	}
	return states
}

func TestReportsQueuedAcrossRestarts(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	target, _ := s.release(release("1.2.0"), 1000)
	s.offerTarget(target)
	state := t.TempDir()
	newClient := func() *client.Client {
		return s.client(t, func(cfg *client.Config) { cfg.StateDir = state; cfg.Retry.Attempts = 2 })
	}
	upd := &client.Update{Target: target, Name: "pumpfw", Version: "1.2.0"}

	// The status endpoint is down: reports stay on disk.
	s.failPath("/api/v1/device/status", http.StatusServiceUnavailable)
	c := newClient()
	for _, st := range []client.State{client.StateDownloading, client.StateDownloaded, client.StateInstalling} {
		err := c.Report(t.Context(), client.NewReport(upd, st, nil))
		if !errors.Is(err, client.ErrReportPending) || !errors.Is(err, client.ErrServer) {
			t.Fatalf("Report(%s) = %v, want ErrReportPending and ErrServer", st, err)
		}
	}
	if err := c.Flush(t.Context()); !errors.Is(err, client.ErrServer) {
		t.Fatalf("Flush = %v, want ErrServer", err)
	}
	if n, err := c.Pending(); n != 3 || err != nil {
		t.Fatalf("Pending = %d, %v; want 3", n, err)
	}

	// The device restarts, the server recovers: a Check delivers the
	// queue in order before asking for updates.
	s.failPath("/api/v1/device/status", 0)
	c = newClient()
	if _, err := c.Check(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n, _ := c.Pending(); n != 0 {
		t.Fatalf("Pending after Check = %d, want 0", n)
	}
	if err := c.Report(t.Context(), client.NewReport(upd, client.StateInstalled, nil)); err != nil {
		t.Fatalf("Report: %v", err)
	}
	got := s.reportStates()
	want := []string{"downloading:1.2.0", "downloaded:1.2.0", "installing:1.2.0", "installed:1.2.0"}
	if len(got) != len(want) {
		t.Fatalf("delivered %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("delivered %v, want %v", got, want)
		}
	}
}

func TestReportRefusedForGoodIsDropped(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	c := s.client(t, nil)
	s.failPath("/api/v1/device/status", http.StatusUnprocessableEntity)
	if err := c.Report(t.Context(), client.Report{Target: "x/1.0.0/f", Version: "1.0.0", State: client.StateFailed}); err != nil {
		t.Fatalf("Report refused with 422 = %v, want nil (dropped)", err)
	}
	if n, _ := c.Pending(); n != 0 {
		t.Fatalf("Pending = %d, want 0", n)
	}
	if err := c.Report(t.Context(), client.Report{State: "exploded"}); err == nil {
		t.Fatal("Report with an invalid state succeeded")
	}
}

func TestErrorCodes(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		err  error
		want string
	}{
		{client.ErrNotSigned, "not_signed"},
		{errors.Join(errors.New("x"), client.ErrHashMismatch), "hash_mismatch"},
		{&client.ServerError{Status: 500}, "server"},
		{errors.New("disk full"), "internal"},
	} {
		if got := client.ErrorCode(tt.err); got != tt.want {
			t.Errorf("ErrorCode(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
	r := client.NewReport(&client.Update{Target: "a/1.0.0/f", Version: "1.0.0", RolloutID: "r"}, client.StateFailed, client.ErrWrongHardware)
	if r.ErrorCode != "wrong_hardware" || r.RolloutID != "r" || r.Message == "" {
		t.Fatalf("NewReport = %+v", r)
	}
}

func TestDefer(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	c := s.client(t, nil)
	upd := &client.Update{Target: "pumpfw/1.2.0/fw.bin", Name: "pumpfw", Version: "1.2.0", RolloutID: "ro-1"}
	until := time.Date(2026, 3, 2, 14, 0, 0, 0, time.FixedZone("CET", 3600))
	if err := c.Defer(t.Context(), upd, "", until); err == nil {
		t.Fatal("Defer without a reason succeeded")
	}
	if err := c.Defer(t.Context(), upd, "therapy", time.Time{}); err == nil {
		t.Fatal("Defer without an until time succeeded")
	}
	if err := c.Defer(t.Context(), upd, "therapy in progress", until); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.reports) != 1 {
		t.Fatalf("reports = %v", s.reports)
	}
	r := s.reports[0]
	if r["state"] != "deferred" || r["message"] != "therapy in progress" || r["defer_until"] != "2026-03-02T13:00:00Z" ||
		r["rollout_id"] != "ro-1" || r["target"] != upd.Target {
		t.Fatalf("report = %v", r)
	}
}
