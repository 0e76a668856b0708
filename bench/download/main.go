// Command download is bench/run's P4 client: one device's verified
// download of its assigned firmware with tufota's client package (TUF
// refresh from a trusted root, then the target streamed to disk with its
// signed length and SHA-256 checked as the bytes arrive). It prints one
// JSON line: the target, its length and the seconds the download took
// (the update check excluded). It reads no environment; bench/run wraps it
// in /usr/bin/time -v for its peak RSS.
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"time"

	"github.com/tufota/tufota/client"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "download:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("download", flag.ContinueOnError)
	server := fs.String("server", "", "tufota server URL")
	rootFile := fs.String("root", "", "trusted root.json")
	caFile := fs.String("ca", "", "PEM CA of an HTTPS server (optional)")
	device := fs.String("device-id", "", "device ID")
	tokenFile := fs.String("token-file", "", "file holding the device token")
	hardware := fs.String("hardware", "", "hardware ID")
	version := fs.String("current-version", "1.0.0", "version the device runs")
	state := fs.String("state-dir", "", "client state directory")
	dst := fs.String("o", "", "destination file")
	timeout := fs.Duration("timeout", 10*time.Minute, "bound on the whole run")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *server == "" || *rootFile == "" || *device == "" || *tokenFile == "" || *hardware == "" || *state == "" || *dst == "" {
		return errors.New("-server, -root, -device-id, -token-file, -hardware, -state-dir and -o are required")
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	root, err := os.ReadFile(*rootFile)
	if err != nil {
		return err
	}
	token, err := os.ReadFile(*tokenFile)
	if err != nil {
		return err
	}
	var hc *http.Client
	if *caFile != "" {
		pem, err := os.ReadFile(*caFile)
		if err != nil {
			return err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("%s: no certificate", *caFile)
		}
		hc = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	}
	c, err := client.New(client.Config{
		ServerURL: *server, TrustedRoot: root, StateDir: *state, DeviceID: *device,
		Token: string(bytes.TrimSpace(token)), HardwareID: *hardware, CurrentVersion: *version, HTTPClient: hc,
	})
	if err != nil {
		return err
	}
	upd, err := c.Check(ctx)
	if err != nil {
		return fmt.Errorf("check: %w", err)
	}
	if upd == nil {
		return errors.New("check: no update assigned to this device")
	}
	start := time.Now()
	if err := c.Download(ctx, upd, *dst); err != nil {
		return fmt.Errorf("download: %w", err)
	}
	secs := time.Since(start).Seconds()
	fi, err := os.Stat(*dst)
	if err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(map[string]any{"target": upd.Target, "bytes": fi.Size(), "seconds": secs})
}
