package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// TestHelpShowsNoSecrets sets TUFOTA_TOKEN and TUFOTA_SERVER (with
// credentials in the URL) and checks that the help of every command, and
// the error of a command that cannot reach the server, never print them.
func TestHelpShowsNoSecrets(t *testing.T) {
	t.Parallel()
	const (
		token  = "tft_0123456789abcdef_SECRETsecretSECRETsecretSECRETsecretSECRETs"
		server = "https://svc:hunter2-password@127.0.0.1:1"
	)
	env := map[string]string{"TUFOTA_TOKEN": token, "TUFOTA_SERVER": server, "TUFOTA_CA": "/secret/ca.pem"}
	secrets := []string{token, "SECRETsecret", server, "hunter2-password", "/secret/ca.pem"}
	var paths [][]string
	var walk func(c *cobra.Command, path []string)
	walk = func(c *cobra.Command, path []string) {
		paths = append(paths, path)
		for _, sub := range c.Commands() {
			walk(sub, append(append([]string(nil), path...), sub.Name()))
		}
	}
	walk((&app{env: env}).rootCommand(), nil)
	if len(paths) < 20 {
		t.Fatalf("walked %d commands, want the whole tree", len(paths))
	}
	for _, path := range paths {
		t.Run(strings.Join(append([]string{"tufota"}, path...), " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := run(context.Background(), append(append([]string(nil), path...), "--help"), env, strings.NewReader(""), &stdout, &stderr)
			if err != nil {
				t.Fatalf("--help: %v", err)
			}
			out := stdout.String() + stderr.String()
			if !strings.Contains(out, "Usage:") {
				t.Fatalf("--help printed no usage:\n%s", out)
			}
			for _, s := range secrets {
				if strings.Contains(out, s) {
					t.Errorf("--help prints %q from the environment:\n%s", s, out)
				}
			}
		})
	}
	// The environment still works, and an error names neither the token
	// nor the URL's password.
	var stdout, stderr bytes.Buffer
	delete(env, "TUFOTA_CA")
	err := run(context.Background(), []string{"release", "list"}, env, strings.NewReader(""), &stdout, &stderr)
	if err == nil {
		t.Fatal("release list against a closed port succeeded")
	}
	if !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Errorf("release list: %v, want an error naming the server from TUFOTA_SERVER", err)
	}
	for _, s := range append(secrets[:2], "hunter2-password") {
		if out := err.Error() + stdout.String() + stderr.String(); strings.Contains(out, s) {
			t.Errorf("release list prints %q: %s", s, out)
		}
	}
}
