package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tufota/tufota/access"
	"github.com/tufota/tufota/audit"
	"github.com/tufota/tufota/rollout"
)

// reportDevices registers n devices and returns a device token for each.
func (ts *testServer) reportDevices(t *testing.T, n int) map[string]string {
	t.Helper()
	ctx := context.Background()
	toks := map[string]string{}
	for i := range n {
		id := fmt.Sprintf("rep-%02d", i)
		if err := ts.cfg.Rollouts.RegisterDevice(ctx, rollout.Device{ID: id, Hardware: "pump-a", Version: "0.0.1"}, "test"); err != nil {
			t.Fatal(err)
		}
		secret, _, err := ts.cfg.Tokens.Create(ctx, nil, access.NewToken{Name: id, Role: access.RoleDevice, DeviceID: id}, "test")
		if err != nil {
			t.Fatal(err)
		}
		toks[id] = secret
	}
	return toks
}

// postReport sends one status report and returns the status code (0 when
// the request failed).
func postReport(hc *http.Client, base, token, body string) int {
	req, err := http.NewRequest(http.MethodPost, base+"/api/v1/device/status", strings.NewReader(body))
	if err != nil {
		return 0
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	return resp.StatusCode
}

// countReports returns, per device, the stored status reports and the
// audit log's successful device.report entries.
func (ts *testServer) countReports(t *testing.T) (reports, audited map[string]int) {
	t.Helper()
	ctx := context.Background()
	reports, audited = map[string]int{}, map[string]int{}
	rows, err := ts.cfg.DB.Query(ctx, `SELECT device_id, COUNT(*) FROM status_reports GROUP BY device_id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		var n int
		if err := rows.Scan(&id, &n); err != nil {
			t.Fatal(err)
		}
		reports[id] = n
	}
	entries, err := ts.cfg.Audit.List(ctx, audit.Filter{Action: "device.report"})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Outcome == audit.OutcomeOK {
			audited[strings.TrimPrefix(e.Object, "device/")]++
		}
	}
	return reports, audited
}

// TestReportsCommitWithTheirAudit: concurrent reports (sharing commits)
// each leave one report row and one audit entry; a refused report leaves
// its audit entry (failed) and no report.
func TestReportsCommitWithTheirAudit(t *testing.T) {
	ts := newTestServer(t)
	toks := ts.reportDevices(t, 20)
	var wg sync.WaitGroup
	codes := make(chan int, 100)
	for id, tok := range toks {
		for j := range 5 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				codes <- postReport(ts.http.Client(), ts.http.URL, tok, fmt.Sprintf(`{"state":"downloading","message":"%s-%d"}`, id, j))
			}()
		}
	}
	wg.Wait()
	close(codes)
	for c := range codes {
		if c != http.StatusNoContent {
			t.Fatalf("report answered %d, want 204", c)
		}
	}
	reports, audited := ts.countReports(t)
	for id := range toks {
		if reports[id] != 5 || audited[id] != 5 {
			t.Errorf("device %s: %d reports, %d audit entries; want 5 and 5", id, reports[id], audited[id])
		}
	}
	tok := toks["rep-00"]
	if c := postReport(ts.http.Client(), ts.http.URL, tok, `{"state":"installed","rollout_id":"ro-missing","target":"x/1.0.0/fw.bin"}`); c != http.StatusConflict {
		t.Fatalf("report on a missing rollout = %d, want 409", c)
	}
	reports, _ = ts.countReports(t)
	if reports["rep-00"] != 5 {
		t.Fatalf("a refused report was stored: %d reports", reports["rep-00"])
	}
	entries, err := ts.cfg.Audit.List(context.Background(), audit.Filter{Action: "device.report", Object: "device/rep-00", Reverse: true, Limit: 1})
	if err != nil || len(entries) != 1 || entries[0].Outcome != audit.OutcomeFailed || !strings.Contains(entries[0].Details["error"], "ro-missing") {
		t.Fatalf("last audit entry of rep-00 = %+v, %v; want the refusal, failed", entries, err)
	}
	// When the audit entry cannot be written, the report is not stored
	// either, and the device is not told it was.
	if _, err := ts.cfg.DB.Exec(context.Background(), `ALTER TABLE audit_hashes RENAME TO audit_hashes_gone`); err != nil {
		t.Fatal(err)
	}
	if c := postReport(ts.http.Client(), ts.http.URL, tok, `{"state":"downloading","message":"unaudited"}`); c < 500 {
		t.Fatalf("report with a broken audit log = %d, want 5xx", c)
	}
	if _, err := ts.cfg.DB.Exec(context.Background(), `ALTER TABLE audit_hashes_gone RENAME TO audit_hashes`); err != nil {
		t.Fatal(err)
	}
	if reports, _ := ts.countReports(t); reports["rep-00"] != 5 {
		t.Fatalf("a report whose audit entry failed was stored: %d reports", reports["rep-00"])
	}
}

const envKillDir = "TUFOTA_TEST_KILL_SERVER_DIR"

// TestReportsSurviveKill9Child is not a test: TestReportsSurviveKill9 runs
// the test binary with it as the server process that it kills.
func TestReportsSurviveKill9Child(t *testing.T) {
	dir := os.Getenv(envKillDir)
	if dir == "" {
		return // not a child process
	}
	ts := newTestServerIn(t, dir, false, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "addr.tmp"), []byte(ln.Addr().String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "addr.tmp"), filepath.Join(dir, "addr")); err != nil {
		t.Fatal(err)
	}
	_ = ts.Serve(context.Background(), ln, nil) // until killed
}

// TestReportsSurviveKill9: a server killed with SIGKILL while devices
// report loses no acknowledged report, and every stored report has its
// audit entry (and no entry is without its report); the audit log still
// verifies.
func TestReportsSurviveKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server process (-short)")
	}
	dir := t.TempDir()
	ts := newTestServerIn(t, dir, true, nil)
	toks := ts.reportDevices(t, 16)

	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run", "^TestReportsSurviveKill9Child$", "-test.count=1")
	cmd.Env = append(os.Environ(), envKillDir+"="+dir)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var addr []byte
	for {
		var err error
		if addr, err = os.ReadFile(filepath.Join(dir, "addr")); err == nil {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("child server never listened:\n%s", out.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	base := "http://" + string(addr)

	// Devices report until 300 reports are acknowledged; then the server
	// is killed while they go on.
	hc := &http.Client{Timeout: 30 * time.Second}
	var (
		mu    sync.Mutex
		acked = map[string]bool{} // message -> acknowledged
		wg    sync.WaitGroup
		stop  = make(chan struct{})
	)
	kill := make(chan struct{})
	var once sync.Once
	for id, tok := range toks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; ; j++ {
				select {
				case <-stop:
					return
				default:
				}
				msg := fmt.Sprintf("%s-%d", id, j)
				switch postReport(hc, base, tok, fmt.Sprintf(`{"state":"downloading","message":%q}`, msg)) {
				case http.StatusNoContent:
					mu.Lock()
					acked[msg] = true
					if len(acked) >= 300 {
						once.Do(func() { close(kill) })
					}
					mu.Unlock()
				case 0:
					return // the server is gone
				}
			}
		}()
	}
	select {
	case <-kill:
	case <-ctx.Done():
		t.Fatalf("devices never got 300 reports acknowledged:\n%s", out.String())
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	close(stop)
	wg.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child ended with %v, want SIGKILL\n%s", err, out.String())
	}

	// What a restarted server finds.
	rows, err := ts.cfg.DB.Query(context.Background(), `SELECT message FROM status_reports`)
	if err != nil {
		t.Fatal(err)
	}
	stored := map[string]bool{}
	for rows.Next() {
		var m string
		if err := rows.Scan(&m); err != nil {
			t.Fatal(err)
		}
		stored[m] = true
	}
	rows.Close()
	lost := 0
	for m := range acked {
		if !stored[m] {
			lost++
		}
	}
	if lost > 0 {
		t.Fatalf("%d of %d acknowledged reports were lost", lost, len(acked))
	}
	reports, audited := ts.countReports(t)
	for id := range toks {
		if reports[id] != audited[id] {
			t.Errorf("device %s: %d reports but %d audit entries", id, reports[id], audited[id])
		}
	}
	rep, err := ts.cfg.Audit.Verify(context.Background())
	if err != nil {
		t.Fatalf("audit verify after the crash: %v (%+v)", err, rep)
	}
	b, _ := json.Marshal(map[string]int{"acknowledged": len(acked), "stored": len(stored)})
	t.Logf("after SIGKILL: %s", b)
}
