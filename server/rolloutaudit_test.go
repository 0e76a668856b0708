package server

import (
	"context"
	"net/http"
	"testing"

	"github.com/tufota/tufota/access"
	"github.com/tufota/tufota/audit"
	"github.com/tufota/tufota/internal/testenv"
	"github.com/tufota/tufota/rollout"
)

// breakAuditLog makes every audit append fail (broken) or work again, by
// hiding the table of the log's tree hashes.
func (ts *testServer) breakAuditLog(t *testing.T, broken bool) {
	t.Helper()
	q := `ALTER TABLE audit_hashes RENAME TO audit_hashes_gone`
	if !broken {
		q = `ALTER TABLE audit_hashes_gone RENAME TO audit_hashes`
	}
	if _, err := ts.cfg.DB.Exec(context.Background(), q); err != nil {
		t.Fatal(err)
	}
}

// okEntries counts the successful audit entries of action on object.
func (ts *testServer) okEntries(t *testing.T, action, object string) int {
	t.Helper()
	entries, err := ts.cfg.Audit.List(context.Background(), audit.Filter{Action: action, Object: object})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range entries {
		if e.Outcome == audit.OutcomeOK {
			n++
		}
	}
	return n
}

// TestRolloutChangesCommitWithTheirAudit: creating and commanding a
// rollout, saving a cohort, assigning a release to a device, creating an
// enrollment token and the controller's own decisions commit in the
// transaction of their audit entry. When the entry cannot be written,
// nothing changes and the caller gets an error; when it can, the change
// and its entry are both there.
func TestRolloutChangesCommitWithTheirAudit(t *testing.T) {
	testRolloutChangesCommitWithTheirAudit(t, newTestServer(t))
}

// TestRolloutChangesCommitWithTheirAuditPostgres is
// TestRolloutChangesCommitWithTheirAudit on PostgreSQL.
func TestRolloutChangesCommitWithTheirAuditPostgres(t *testing.T) {
	testRolloutChangesCommitWithTheirAudit(t, newTestServerIn(t, t.TempDir(), true, nil, testenv.Postgres(t)))
}

func testRolloutChangesCommitWithTheirAudit(t *testing.T, ts *testServer) {
	ctx := context.Background()
	op := ts.tokens[access.RoleOperator]
	req := func(method, path, body string) *http.Request {
		r := jsonRequest(method, ts.http.URL+path, body)
		r.RequestURI = ""
		return r
	}
	count := func(table string) int {
		t.Helper()
		var n int
		if err := ts.cfg.DB.QueryRow(ctx, `SELECT COUNT(*) FROM `+table).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	state := func(id string) rollout.Phase {
		t.Helper()
		r, err := ts.cfg.Rollouts.Rollout(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return r.State
	}

	draft := ts.newRollout(t, 1)
	// A running rollout whose only device has installed: the controller
	// completes it at its next tick.
	running := ts.newRollout(t, 2)
	if err := ts.cfg.Rollouts.Start(ctx, running, "alice", ""); err != nil {
		t.Fatal(err)
	}
	if a, err := ts.cfg.Rollouts.Assignment(ctx, rollout.Query{DeviceID: "fresh-2", Hardware: "pump-a", Version: "0.0.1"}); err != nil || a == nil {
		t.Fatalf("assignment of fresh-2 = %+v, %v", a, err)
	}
	if err := ts.cfg.Rollouts.Report(ctx, "fresh-2", rollout.Report{Target: "fixture/1.0.0/fw.bin", Version: "1.0.0", State: rollout.StatusInstalled, RolloutID: running}); err != nil {
		t.Fatal(err)
	}
	spare := ts.freshDevice(t, 3)

	ts.breakAuditLog(t, true)
	rollouts, cohorts, tokens := count("rollouts"), count("cohorts"), count("tokens")
	for _, c := range []struct {
		what string
		req  *http.Request
	}{
		{"rollout create", req(http.MethodPost, "/api/v1/rollouts", `{"release":"fixture@1.0.0","cohort":"id=`+spare+`","waves":"100%"}`)},
		{"rollout start", req(http.MethodPost, "/api/v1/rollouts/"+draft+"/start", `{}`)},
		{"rollout abort", req(http.MethodPost, "/api/v1/rollouts/"+draft+"/abort", `{"reason":"test"}`)},
		{"rollout pause", req(http.MethodPost, "/api/v1/rollouts/"+running+"/pause", `{}`)},
		{"cohort create", req(http.MethodPost, "/api/v1/cohorts", `{"name":"north","selector":"hardware=pump-a"}`)},
		{"device assign", req(http.MethodPost, "/api/v1/devices/"+spare+"/assign", `{"release":"fixture@1.0.0"}`)},
		{"enroll token create", req(http.MethodPost, "/api/v1/enroll-tokens", `{"hardware":"pump-a"}`)},
	} {
		if resp, body := ts.do(t, c.req, op); resp.StatusCode < 500 {
			t.Errorf("%s with a broken audit log = %d %s, want 5xx", c.what, resp.StatusCode, body)
		}
	}
	if err := ts.cfg.Rollouts.Tick(ctx); err == nil {
		t.Error("the controller's tick with a broken audit log succeeded")
	}
	if n := count("rollouts"); n != rollouts {
		t.Errorf("rollouts = %d after a create whose audit entry failed, want %d", n, rollouts)
	}
	if n := count("cohorts"); n != cohorts {
		t.Errorf("cohorts = %d after a create whose audit entry failed, want %d", n, cohorts)
	}
	if n := count("tokens"); n != tokens {
		t.Errorf("tokens = %d after an enrollment token whose audit entry failed, want %d", n, tokens)
	}
	if st := state(draft); st != rollout.Draft {
		t.Errorf("draft rollout is %s after commands whose audit entries failed", st)
	}
	if st := state(running); st != rollout.Running {
		t.Errorf("running rollout is %s after a pause and a tick whose audit entries failed", st)
	}
	if d, err := ts.cfg.Rollouts.Device(ctx, spare); err != nil || d.TargetRelease != "" {
		t.Errorf("device %s = %+v, %v after an assignment whose audit entry failed; want no target", spare, d, err)
	}
	ts.breakAuditLog(t, false)

	if resp, body := ts.do(t, req(http.MethodPost, "/api/v1/rollouts/"+draft+"/start", `{}`), op); resp.StatusCode != http.StatusOK {
		t.Fatalf("rollout start = %d %s", resp.StatusCode, body)
	}
	if st := state(draft); st != rollout.Running {
		t.Errorf("started rollout is %s, want running", st)
	}
	if n := ts.okEntries(t, "rollout.action", "rollout/"+draft); n != 1 {
		t.Errorf("rollout.action entries of %s = %d, want 1", draft, n)
	}
	if n := ts.okEntries(t, "rollout.started", "rollout/"+draft); n != 1 {
		t.Errorf("rollout.started entries of %s = %d, want 1", draft, n)
	}
	if resp, body := ts.do(t, req(http.MethodPost, "/api/v1/cohorts", `{"name":"north","selector":"hardware=pump-a"}`), op); resp.StatusCode != http.StatusCreated {
		t.Fatalf("cohort create = %d %s", resp.StatusCode, body)
	}
	if n := ts.okEntries(t, "cohort.create", "cohort/north"); n != 1 {
		t.Errorf("cohort.create entries = %d, want 1", n)
	}
	if resp, body := ts.do(t, req(http.MethodPost, "/api/v1/devices/"+spare+"/assign", `{"release":"fixture@1.0.0"}`), op); resp.StatusCode != http.StatusOK {
		t.Fatalf("device assign = %d %s", resp.StatusCode, body)
	}
	if n := ts.okEntries(t, "device.assign", "device/"+spare); n != 1 {
		t.Errorf("device.assign entries = %d, want 1", n)
	}
	if n := ts.okEntries(t, "rollout."+rollout.EventDeviceAssigned, "device/"+spare); n != 1 {
		t.Errorf("device-assigned event entries = %d, want 1", n)
	}
	if err := ts.cfg.Rollouts.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if st := state(running); st != rollout.Completed {
		t.Errorf("rollout %s is %s after the tick, want completed", running, st)
	}
	entries, err := ts.cfg.Audit.List(ctx, audit.Filter{Action: "rollout." + rollout.EventCompleted, Object: "rollout/" + running})
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Actor != rollout.ControllerActor || entries[0].Outcome != audit.OutcomeOK {
		t.Errorf("completion entries = %+v, want one by the controller", entries)
	}
}

// TestRefusedChangesAuditedOnce: a refused report is recorded once, in the
// transaction that would have held it, and the route's middleware adds no
// second entry; a signature refused after nothing committed is recorded
// once, by the middleware.
func TestRefusedChangesAuditedOnce(t *testing.T) {
	ts := newTestServer(t)
	ctx := context.Background()
	r := jsonRequest(http.MethodPost, ts.http.URL+"/api/v1/device/status", `{"device_id":"dev-1","target":"fixture/1.0.0/fw.bin","version":"1.0.0","state":"exploded"}`)
	r.RequestURI = ""
	if resp, body := ts.do(t, r, ts.tokens[access.RoleDevice]); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("report in a bad state = %d %s, want 400", resp.StatusCode, body)
	}
	entries, err := ts.cfg.Audit.List(ctx, audit.Filter{Action: "device.report"})
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Outcome != audit.OutcomeFailed {
		t.Fatalf("device.report entries = %+v, want one failed", entries)
	}
	r = jsonRequest(http.MethodPost, ts.http.URL+"/api/v1/root/signatures", `{"keyid":"00","sig":"00","payload_sha256":"00"}`)
	r.RequestURI = ""
	if resp, body := ts.do(t, r, ts.tokens[access.RoleAdmin]); resp.StatusCode < 400 {
		t.Fatalf("root signature with nothing pending = %d %s, want an error", resp.StatusCode, body)
	}
	if entries, err = ts.cfg.Audit.List(ctx, audit.Filter{Action: "root.sign"}); err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Outcome == audit.OutcomeOK {
		t.Fatalf("root.sign entries = %+v, want one refusal", entries)
	}
}
