package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/api"
	"github.com/tufota/tufota/apiclient"
)

// api returns a client for the server named by the global flags.
func (a *app) api() (*apiclient.Client, error) {
	if a.serverURL == "" {
		return nil, errNoServer
	}
	if a.token == "" {
		return nil, tufota.Errorf(tufota.EUnauthorized, "no API token: pass --token or set TUFOTA_TOKEN")
	}
	hc, err := a.httpClient()
	if err != nil {
		return nil, err
	}
	return apiclient.New(a.serverURL, a.token, apiclient.WithHTTPClient(hc)), nil
}

// httpClient trusts the system roots, or only --ca when given.
func (a *app) httpClient() (*http.Client, error) {
	var pem []byte
	if a.caFile != "" {
		var err error
		if pem, err = os.ReadFile(a.caFile); err != nil {
			return nil, fmt.Errorf("read --ca: %w", err)
		}
	}
	hc, err := apiclient.HTTPClient(pem)
	if err != nil {
		return nil, tufota.Errorf(tufota.EInvalid, "--ca %s holds no PEM certificate", a.caFile)
	}
	return hc, nil
}

// wire converts between a domain type and its api twin through their
// common JSON (a go-tuf key and api.Key, say).
func wire[T any](v any) (T, error) {
	var out T
	b, err := json.Marshal(v)
	if err == nil {
		err = json.Unmarshal(b, &out)
	}
	return out, err
}

// answer makes one API call with the client of the global flags.
func answer[T any](a *app, cmd *cobra.Command, call func(context.Context, *apiclient.Client) (T, error)) (T, error) {
	c, err := a.api()
	if err != nil {
		var zero T
		return zero, err
	}
	return call(cmd.Context(), c)
}

// printCall makes one API call and prints its answer: as JSON with -o json,
// through table otherwise. It is the shape of most commands.
func printCall[T any](a *app, cmd *cobra.Command, call func(context.Context, *apiclient.Client) (T, error), table func(io.Writer, T)) error {
	v, err := answer(a, cmd, call)
	if err != nil {
		return err
	}
	return a.print(v, func(w io.Writer) { table(w, v) })
}

// printReport is printCall for a command with --format csv: "csv" writes
// the answer through csv instead of as JSON or a table.
func printReport[T any](a *app, cmd *cobra.Command, command, format string, call func(context.Context, *apiclient.Client) (T, error), csv func(io.Writer, T) error, table func(io.Writer, T)) error {
	switch format {
	case "":
		return printCall(a, cmd, call, table)
	case "csv":
		v, err := answer(a, cmd, call)
		if err != nil {
			return err
		}
		return csv(a.stdout, v)
	}
	return tufota.Errorf(tufota.EInvalid, "%s: --format %q: want csv (or -o json)", command, format)
}

// call makes one API call that answers nothing and prints done.
func (a *app) call(cmd *cobra.Command, f func(context.Context, *apiclient.Client) error, done string) error {
	if _, err := answer(a, cmd, func(ctx context.Context, c *apiclient.Client) (struct{}, error) { return struct{}{}, f(ctx, c) }); err != nil {
		return err
	}
	fmt.Fprint(a.stdout, done)
	return nil
}

// releaseRef splits NAME@VERSION, the release argument of command.
func releaseRef(command, arg string) (name, version string, err error) {
	name, version, ok := strings.Cut(arg, "@")
	if !ok || name == "" || version == "" {
		return "", "", tufota.Errorf(tufota.EInvalid, "%s: %q: want NAME@VERSION", command, arg)
	}
	return name, version, nil
}

// onRelease is printCall for a command on release NAME@VERSION (arg).
func (a *app) onRelease(cmd *cobra.Command, command, arg string, call func(*apiclient.Client, context.Context, string, string) (api.Release, error), table func(io.Writer, api.Release)) error {
	name, version, err := releaseRef(command, arg)
	if err != nil {
		return err
	}
	return printCall(a, cmd, func(ctx context.Context, c *apiclient.Client) (api.Release, error) {
		return call(c, ctx, name, version)
	}, table)
}
