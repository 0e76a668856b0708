package testenv

import (
	"os"
	"os/exec"
	"testing"
)

// The environment variables of the browser test, exported by
// scripts/testenv.sh: Debian's chromium and the axe-core script it injects
// into every page.
const (
	EnvChromium = "TUFOTA_TEST_CHROMIUM" // path of the chromium binary
	EnvAxeCore  = "TUFOTA_TEST_AXE_CORE" // path of axe-core's axe.min.js
)

// Browser returns the chromium binary and the axe-core script of this test
// run, after checking that both exist. Like the other helpers it skips the
// test under -short and fails it when a variable is unset or names nothing,
// so that CI cannot pass without having run the browser.
func Browser(t testing.TB) (chromium, axeJS string) {
	t.Helper()
	v := require(t, "chromium and axe-core", EnvChromium, EnvAxeCore)
	chromium, axeJS = v[0], v[1]
	if _, err := exec.LookPath(chromium); err != nil {
		t.Fatalf("testenv: %s=%q: %v (scripts/testenv.sh installs chromium)", EnvChromium, chromium, err)
	}
	if fi, err := os.Stat(axeJS); err != nil || fi.Size() == 0 {
		t.Fatalf("testenv: %s=%q: not a script: %v (scripts/testenv.sh installs axe-core with npm)", EnvAxeCore, axeJS, err)
	}
	return chromium, axeJS
}
