// Command tufota-agent is tufota's reference device agent: it polls a
// tufota server for updates with the client package, downloads and
// verifies them, installs them with a file-replace installer into its state
// directory, and reports each step back to the server.
//
// Usage:
//
//	tufota-agent --server URL --device-id ID --token TOKEN --root root.json \
//	    --state-dir DIR --hardware HW [--current-version V] [--targets-url BASE] [--once | --poll 5m]
//
// The token may also come from TUFOTA_DEVICE_TOKEN, the server from
// TUFOTA_SERVER and the targets URL from TUFOTA_TARGETS_URL (never shown by
// --help). --help prints every flag and exits 0. When the last update failed
// (a download, install or verification refused it) and the server no longer
// offers it, each cycle says so, naming the error, instead of "up to date",
// until an update installs; the record is STATE-DIR/last-failure.json.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "tufota-agent:", err)
		os.Exit(1)
	}
}
