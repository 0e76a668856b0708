package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"

	"github.com/spf13/cobra"

	"github.com/tufota/tufota"
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

// printCall makes one API call and prints its answer: as JSON with -o json,
// through table otherwise. It is the shape of most commands.
func printCall[T any](a *app, cmd *cobra.Command, call func(context.Context, *apiclient.Client) (T, error), table func(io.Writer, T)) error {
	c, err := a.api()
	if err != nil {
		return err
	}
	v, err := call(cmd.Context(), c)
	if err != nil {
		return err
	}
	return a.print(v, func(w io.Writer) { table(w, v) })
}
