package browsertest

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/tufota/tufota/internal/testenv"
)

var updateScreenshots = flag.Bool("update-screenshots", false, "copy the rollout and audit page screenshots to docs/img")

// browser is one chromium browser context (its own cookies) with the
// test's helpers.
type browser struct {
	t    *testing.T
	ctx  context.Context
	base string
	axe  string
	art  string
	name string

	mu sync.Mutex
	// sse are the live chart's status events the browser received, in
	// order, with the stream (request) that carried each.
	sse []sseEvent
	// problems are console errors, exceptions and CSP violations.
	problems []string
}

// sseEvent is one status event of the live chart as the browser got it.
type sseEvent struct {
	stream    string
	State     string `json:"state"`
	Wave      int    `json:"wave"`
	Installed int    // summed over the waves
}

// listen records what the tab receives and complains about.
func (b *browser) listen() {
	chromedp.Listen(b.ctx, func(ev any) {
		b.mu.Lock()
		defer b.mu.Unlock()
		switch ev := ev.(type) {
		case *network.EventEventSourceMessageReceived:
			if ev.EventName != "status" {
				return
			}
			var ch struct {
				State string `json:"state"`
				Wave  int    `json:"wave"`
				Rows  []struct {
					Installed int `json:"installed"`
				} `json:"rows"`
			}
			if err := json.Unmarshal([]byte(ev.Data), &ch); err != nil {
				b.problems = append(b.problems, "bad status event: "+ev.Data)
				return
			}
			e := sseEvent{stream: string(ev.RequestID), State: ch.State, Wave: ch.Wave}
			for _, r := range ch.Rows {
				e.Installed += r.Installed
			}
			b.sse = append(b.sse, e)
		case *log.EventEntryAdded:
			// Network errors are the refusals the test provokes (403).
			if ev.Entry.Source != log.EntrySourceNetwork && (ev.Entry.Level == log.EntryLevelError || ev.Entry.Source == log.EntrySourceSecurity || ev.Entry.Source == log.EntrySourceViolation) {
				b.problems = append(b.problems, fmt.Sprintf("%s %s: %s (%s)", ev.Entry.Source, ev.Entry.Level, ev.Entry.Text, ev.Entry.URL))
			}
		case *runtime.EventExceptionThrown:
			b.problems = append(b.problems, fmt.Sprintf("exception: %s at %s:%d", ev.ExceptionDetails.Text, ev.ExceptionDetails.URL, ev.ExceptionDetails.LineNumber))
		}
	})
}

func (b *browser) do(steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 60*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		dctx, dcancel := context.WithTimeout(b.ctx, 10*time.Second)
		defer dcancel()
		page, _ := chromedp.Run(dctx, chromedp.Evaluate[string](`location.href + "\n" + document.body.innerText`))
		b.t.Fatalf("%s: browser: %v; page: %.500s", b.name, err, page)
	}
}

func eval[T any](b *browser, js string) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 60*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js, chromedp.EvalAwaitPromise))
	if err != nil {
		b.t.Fatalf("%s: evaluate %.60q: %v", b.name, js, err)
	}
	return v
}

// waitFor evaluates js until it is true; the bound is a liveness bound
// (the rollout advances in seconds), not a performance claim.
func waitFor(b *browser, what, js string) {
	b.t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		// A page that reloads itself (the rollout page does when the
		// state changes) fails an evaluation: try again.
		ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](js))
		cancel()
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("%s: waited 2m for %s (last error: %v)", b.name, what, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (b *browser) open(path string) {
	b.t.Helper()
	b.do(chromedp.Navigate(b.base+path), chromedp.WaitReady("body"))
}

// screenshot saves a PNG of the page to the artifact directory.
func (b *browser) screenshot(name string, full bool) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 60*time.Second)
	defer cancel()
	shot := chromedp.CaptureScreenshot()
	if full {
		shot = chromedp.FullScreenshot(100) // quality 100: PNG
	}
	png, err := chromedp.Run(ctx, shot)
	if err != nil {
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
	p := filepath.Join(b.art, name+".png")
	if err := os.WriteFile(p, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	return p
}

// axeViolation is one serious or critical axe-core finding.
type axeViolation struct {
	ID     string   `json:"id"`
	Impact string   `json:"impact"`
	Help   string   `json:"help"`
	Nodes  []string `json:"nodes"`
}

// checkAccessible injects axe-core into the page and fails on any serious
// or critical violation.
func (b *browser) checkAccessible(page string) {
	b.t.Helper()
	eval[bool](b, b.axe+";true")
	raw := eval[string](b, `axe.run(document, {resultTypes: ["violations"]}).then(r => JSON.stringify(
		r.violations.filter(v => v.impact === "serious" || v.impact === "critical")
		 .map(v => ({id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 5).map(n => n.target.join(" "))}))))`)
	var vs []axeViolation
	if err := json.Unmarshal([]byte(raw), &vs); err != nil {
		b.t.Fatalf("axe result: %v", err)
	}
	for _, v := range vs {
		b.t.Errorf("axe on %s: %s (%s): %s at %v", page, v.ID, v.Impact, v.Help, v.Nodes)
	}
}

func (b *browser) signIn(token string) {
	b.t.Helper()
	b.open("/ui/login")
	b.do(chromedp.SendKeys(chromedp.CSS("#token"), token), chromedp.Submit(chromedp.CSS("#token")), chromedp.WaitReady("nav"))
}

// TestDashboard runs the dashboard in chromium against a real tufota
// server with real simulated devices: an operator watches a rollout
// advance wave by wave over server-sent events and approves the wave its
// creator may not; a forged POST is refused and audited; an auditor sees
// no buttons, finds the approval in the audit log and verifies the chain;
// every page passes axe-core.
func TestDashboard(t *testing.T) {
	chromium, axePath := testenv.Browser(t)
	axe, err := os.ReadFile(axePath)
	if err != nil {
		t.Fatal(err)
	}
	art := os.Getenv("TUFOTA_ARTIFACTS")
	if art == "" {
		art = t.TempDir()
	} else if art, err = filepath.Abs(filepath.Join(art, "ui")); err == nil {
		err = os.MkdirAll(art, 0o755)
	}
	if err != nil {
		t.Fatal(err)
	}
	started := time.Now()

	srv := startServer(t, buildTufota(t))
	creator := srv.token("olivia", "operator")
	approver := srv.token("oscar", "operator")
	auditor := srv.token("audrey", "auditor")
	srv.pushRelease("pump-fw", "1.1.0", "pump-a")
	devs := srv.enrollDevices(10, "pump-a", "1.0.0")
	srv.call(http.MethodPost, "/api/v1/cohorts", creator, map[string]string{"name": "icu-pumps", "selector": "hardware=pump-a,tag:icu"}, nil)
	var ro struct {
		ID string `json:"id"`
	}
	srv.call(http.MethodPost, "/api/v1/rollouts", creator, map[string]any{"release": "pump-fw@1.1.0", "cohort": "icu-pumps",
		"waves": "10%,50%,100%", "soak": "1s", "min_reports": 1, "max_failure_rate": "20%", "device_timeout": "1m",
		"approval_required_after_wave": 1}, &ro)
	srv.call(http.MethodPost, "/api/v1/rollouts/"+ro.ID+"/start", creator, map[string]string{"reason": "browser test"}, nil)

	devCtx, stopDevices := context.WithCancel(context.Background())
	wg := srv.runDevices(devCtx, devs, 300*time.Millisecond)
	defer func() { stopDevices(); wg.Wait() }()

	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromium),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		// The server's certificate is self-signed for this run; chromium
		// does not take a CA file, and ignores its SPKI allow-list flag
		// here, so certificate errors are ignored: the browser talks to
		// this loopback server only. (The Go clients trust its CA file.)
		chromedp.Flag("ignore-certificate-errors", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	defer cancelAlloc()
	root, cancelRoot := chromedp.NewContext(alloc)
	defer cancelRoot()
	if err := chromedp.Do(root); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	newBrowser := func(name string) *browser {
		ctx, cancel := chromedp.NewContext(root, chromedp.WithNewBrowserContext())
		t.Cleanup(cancel)
		// The first run opens the tab, for as long as ctx lives: it must
		// have no timeout of its own.
		if err := chromedp.Do(ctx); err != nil {
			t.Fatalf("open a tab for %s: %v", name, err)
		}
		b := &browser{t: t, ctx: ctx, base: srv.url, axe: string(axe), art: art, name: name}
		b.listen()
		t.Cleanup(func() {
			b.mu.Lock()
			defer b.mu.Unlock()
			for _, p := range b.problems {
				t.Errorf("%s: browser console: %s", name, p)
			}
		})
		return b
	}

	// The operator who did not create the rollout signs in and watches it.
	op := newBrowser("oscar")
	op.signIn(approver)
	op.checkAccessible("rollouts")
	op.open("/ui/rollouts/" + ro.ID)
	op.checkAccessible("rollout")
	// Wave 1 installs while the page is open: the chart changes from the
	// event stream, without a reload.
	waitFor(op, "wave 1 to install over the live stream",
		`document.getElementById("chart").getAttribute("data-state") === "waiting-approval" || (document.querySelector("#waves tbody tr td:nth-child(6)") || {}).textContent === "1"`)
	waitFor(op, "the rollout to wait for approval", `document.getElementById("state").textContent === "waiting-approval" && !!document.querySelector("button[data-action=approve]")`)
	if n := eval[int](op, `document.querySelectorAll("#chart rect.installed").length`); n != 1 {
		t.Errorf("chart after wave 1: %d installed bars, want 1", n)
	}
	op.screenshot("rollout-waiting-approval", true)

	// A forged POST, from the operator's own signed-in page but without the
	// CSRF token, is refused.
	forged := eval[int](op, fmt.Sprintf(`fetch("/ui/rollouts/%s/pause", {method: "POST", headers: {"Content-Type": "application/x-www-form-urlencoded"}, body: "reason=forged"}).then(r => r.status)`, ro.ID))
	if forged != http.StatusForbidden {
		t.Errorf("forged POST without CSRF token: status %d, want 403", forged)
	}
	// And one from outside the browser, without a session, is refused too.
	resp, err := srv.hc.PostForm(srv.url+"/ui/rollouts/"+ro.ID+"/pause", url.Values{"reason": {"forged"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("POST without a session: status %d, want 403", resp.StatusCode)
	}

	// Two people: the operator who created the rollout may not approve it.
	cr := newBrowser("olivia")
	cr.signIn(creator)
	cr.open("/ui/rollouts/" + ro.ID)
	cr.do(chromedp.Click(chromedp.CSS("button[data-action=approve]")))
	waitFor(cr, "the creator's approval to be refused", `(document.querySelector(".error") || {}).textContent !== undefined && document.querySelector(".error").textContent.includes("someone else must approve")`)
	if st := eval[string](cr, `document.title`); !strings.Contains(st, "Forbidden") {
		t.Errorf("creator's approval: page %q, want Forbidden", st)
	}

	// The approval: wave 2, then wave 3, on the live chart.
	op.do(chromedp.SendKeys(chromedp.CSS("#reason-approve"), "canary looks good"), chromedp.Click(chromedp.CSS("button[data-action=approve]")))
	waitFor(op, "the approval to be done", `location.search.includes("done=approve") && !!document.getElementById("chart")`)
	if got := eval[string](op, `(document.querySelector(".flash") || {}).textContent || ""`); !strings.Contains(got, "approve") {
		t.Errorf("after approve: flash %q", got)
	}
	waves := map[string]bool{}
	waitFor(op, "the rollout to complete", `(() => { const s = document.getElementById("chart"); return s.getAttribute("data-state") === "completed" || document.getElementById("state").textContent === "completed"; })()`)
	for _, w := range eval[[]string](op, `Array.from(document.querySelectorAll("#waves tbody tr")).map(tr => tr.children[5].textContent)`) {
		waves[w] = true
	}
	if !waves["1"] || !waves["4"] || !waves["5"] {
		t.Errorf("installed per wave at the end = %v, want 1, 4 and 5", waves)
	}
	// The browser saw the rollout advance on the event stream: wave 1
	// waiting for approval, then later waves, then completed, and at least
	// one stream that changed while the page stayed open.
	op.mu.Lock()
	seen := slices.Clone(op.sse)
	op.mu.Unlock()
	var waitedAt1, completed, changed bool
	for i, e := range seen {
		waitedAt1 = waitedAt1 || (e.State == "waiting-approval" && e.Wave == 1 && e.Installed == 1)
		completed = completed || (e.State == "completed" && e.Wave == 3 && e.Installed == 10)
		if i > 0 && seen[i-1].stream == e.stream && seen[i-1].Installed != e.Installed {
			changed = true
		}
		if i > 0 && e.Wave < seen[i-1].Wave {
			t.Errorf("status events went back from wave %d to %d", seen[i-1].Wave, e.Wave)
		}
	}
	if !waitedAt1 || !completed || !changed {
		t.Errorf("status events = %+v: want wave 1 waiting for approval with 1 installed, completed with 10, and a stream that changed", seen)
	}
	t.Logf("the live chart got %d status events", len(seen))
	op.open("/ui/rollouts/" + ro.ID)
	op.screenshot("rollout-completed", true)
	if hist := eval[string](op, `document.querySelector(".timeline").textContent`); !strings.Contains(hist, "approved") || !strings.Contains(hist, "oscar") {
		t.Errorf("history timeline lacks oscar's approval: %q", hist)
	}
	if ms := eval[string](op, `document.getElementById("hist-h").parentElement.querySelector("dl").textContent`); !strings.Contains(ms, "100 %") || !strings.Contains(ms, "reached") {
		t.Errorf("milestones: %q", ms)
	}
	for _, p := range []string{"/ui/releases", "/ui/devices", "/ui/keys"} {
		op.open(p)
		op.checkAccessible(p)
	}
	op.open("/ui/releases")
	if txt := eval[string](op, `document.querySelector("main").textContent`); !strings.Contains(txt, "pump-fw@1.1.0") || !strings.Contains(txt, "cyclonedx") {
		t.Errorf("releases page lacks the release or its SBOM: %.300q", txt)
	}
	op.screenshot("releases", true)
	// A newer release nobody runs yet: every device is on the
	// outdated-firmware report, found with the filters.
	srv.pushRelease("pump-fw", "1.2.0", "pump-a")
	op.open("/ui/devices?cohort=icu-pumps&version=1.1.0&seen_within=1h")
	if n := eval[int](op, `document.querySelectorAll("#devs-h ~ div tbody tr").length`); n != 10 {
		t.Errorf("devices filtered by cohort, version and last seen: %d rows, want 10", n)
	}
	if rows := eval[[]string](op, `Array.from(document.querySelectorAll("#outdated-h ~ div tbody tr")).map(tr => tr.children[3].textContent + " " + tr.children[4].textContent)`); len(rows) != 10 || rows[0] != "pump-fw@1.2.0 1" {
		t.Errorf("outdated-firmware report = %v, want 10 devices one release behind pump-fw@1.2.0", rows)
	}
	op.open("/ui/devices?version=1.0.0")
	if n := eval[int](op, `document.querySelectorAll("#devs-h ~ div tbody tr").length`); n != 0 {
		t.Errorf("devices on 1.0.0 after the rollout: %d, want 0", n)
	}
	op.open("/ui/devices?cohort=icu-pumps")
	op.screenshot("devices", true)
	op.open("/ui/keys")
	op.screenshot("keys", true)
	// Sign out: the session is gone.
	op.do(chromedp.Click(chromedp.CSS(".who button")), chromedp.WaitReady("#token"))
	op.open("/ui/rollouts")
	if loc := eval[string](op, `location.pathname`); loc != "/ui/login" {
		t.Errorf("after sign-out /ui/rollouts shows %s, want the sign-in page", loc)
	}
	op.checkAccessible("login")

	// A checkpoint is signed (the server signs one every 10 minutes; an
	// admin may ask for one) so that the chain verifies against it.
	srv.call(http.MethodPost, "/api/v1/audit/checkpoint", srv.adminToken, nil, nil)

	// The auditor: no buttons; the approval and the refused forgery in the
	// audit log; the chain verifies.
	au := newBrowser("audrey")
	au.signIn(auditor)
	au.open("/ui/rollouts/" + ro.ID)
	if n := eval[int](au, `document.querySelectorAll("form[action^='/ui/rollouts/'] button, #actions").length`); n != 0 {
		t.Errorf("auditor sees %d action buttons", n)
	}
	// A POST the auditor's role may not make, with a valid CSRF token, is
	// refused too.
	denied := eval[int](au, fmt.Sprintf(`fetch("/ui/rollouts/%s/abort", {method: "POST", headers: {"Content-Type": "application/x-www-form-urlencoded"},
		body: "reason=forged&csrf=" + encodeURIComponent(document.querySelector("input[name=csrf]").value)}).then(r => r.status)`, ro.ID))
	if denied != http.StatusForbidden {
		t.Errorf("auditor's POST to abort: status %d, want 403", denied)
	}
	au.open("/ui/audit?action=rollout.action")
	rows := eval[string](au, `document.getElementById("entries").textContent`)
	if !strings.Contains(rows, "olivia") || !strings.Contains(rows, "someone else must approve") || !strings.Contains(rows, "audrey") {
		t.Errorf("audit page lacks the creator's refused approval or the auditor's refused abort: %.600q", rows)
	}
	if !strings.Contains(rows, "oscar") || !strings.Contains(rows, "action=approve") {
		t.Errorf("audit page lacks oscar's approval: %.400q", rows)
	}
	au.open("/ui/audit?action=ui.csrf")
	if rows := eval[string](au, `document.getElementById("entries").textContent`); !strings.Contains(rows, "denied") || !strings.Contains(rows, "oscar") {
		t.Errorf("audit page lacks the refused forgery: %.400q", rows)
	}
	au.open("/ui/audit?action=rollout.action")
	au.do(chromedp.Click(chromedp.CSS("#verify")), chromedp.WaitReady("#verify-result"))
	// The verify form keeps the page's filter.
	if acts := eval[[]string](au, `Array.from(document.querySelectorAll("#entries tbody tr")).map(tr => tr.children[4].textContent)`); len(acts) < 2 || slices.ContainsFunc(acts, func(a string) bool { return a != "rollout.action" }) {
		t.Errorf("after verify the entries shown are %v, want the rollout.action filter kept", acts)
	}
	res := eval[string](au, `document.getElementById("verify-result").textContent`)
	if !strings.Contains(res, "Verified:") {
		t.Errorf("verify chain: %q", res)
	}
	if cp := eval[string](au, `(document.getElementById("checkpoint") || {}).textContent || ""`); len(strings.Split(strings.TrimSpace(cp), "\n")) != 3 {
		t.Errorf("latest checkpoint = %q, want origin, size and hash", cp)
	}
	au.checkAccessible("audit")
	au.screenshot("audit", false)
	// The tablet layout.
	au.do(chromedp.EmulateViewport(768, 1024))
	au.open("/ui/rollouts/" + ro.ID)
	au.checkAccessible("rollout (tablet)")
	// Readable on a tablet: nothing but the tables' own scroll regions is
	// wider than the screen.
	if wide := eval[[]string](au, `Array.from(document.querySelectorAll("body *")).filter(e => !e.closest(".scroll") && e.getBoundingClientRect().right > document.documentElement.clientWidth + 1).map(e => e.tagName + "." + e.className + " " + Math.round(e.getBoundingClientRect().right))`); len(wide) > 0 {
		t.Errorf("at 768 px these are wider than the screen: %v", wide)
	}
	au.screenshot("rollout-tablet", false)

	if *updateScreenshots {
		for from, to := range map[string]string{"rollout-waiting-approval": "ui-rollout.png", "audit": "ui-audit.png"} {
			b, err := os.ReadFile(filepath.Join(art, from+".png"))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join("..", "..", "docs", "img", to), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	t.Logf("dashboard test ran in %s; screenshots in %s", time.Since(started).Round(time.Second), art)
}
