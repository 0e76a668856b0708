// Package browsertest holds the web dashboard's browser test: Debian's
// chromium, driven headless with chromedp, against a real tufota server
// (the binary built from this tree, TLS on loopback) and devices simulated
// with the client package. It has no code of its own; the test runs in
// parallel with the other packages' tests. Run it with
//
//	scripts/testenv.sh go test -count=1 ./ui/browsertest/
//
// which provides chromium and axe-core (TUFOTA_TEST_CHROMIUM,
// TUFOTA_TEST_AXE_CORE). Screenshots go to $TUFOTA_ARTIFACTS/ui, or to a
// temporary directory; -update-screenshots copies the rollout and audit
// pages to docs/img.
package browsertest
