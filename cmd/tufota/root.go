package main

import (
	"context"
	"errors"
	"io"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/tufota/tufota"
)

// app carries what every command shares: I/O, environment and global flags.
type app struct {
	ctx    context.Context
	env    map[string]string
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer

	serverURL string
	token     string
	output    string
	caFile    string
	logLevel  string
}

// run executes the CLI with args. It never calls os.Exit, so tests drive it
// directly.
func run(ctx context.Context, args []string, env map[string]string, stdin io.Reader, stdout, stderr io.Writer) error {
	a := &app{ctx: ctx, env: env, stdin: stdin, stdout: stdout, stderr: stderr}
	root := a.rootCommand()
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	_, err := root.ExecuteContextC(ctx)
	return err
}

func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "tufota",
		Short:         "OTA firmware signing and rollout server built on TUF",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			a.flagsFromEnv(cmd)
			if a.output != "table" && a.output != "json" {
				return tufota.Errorf(tufota.EInvalid, "--output %q: want table or json", a.output)
			}
			return nil
		},
	}
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return tufota.Errorf(tufota.EInvalid, "%s: %v (see '%s --help')", c.CommandPath(), err, c.CommandPath())
	})
	pf := root.PersistentFlags()
	// The environment fills these after parsing (flagsFromEnv), not as
	// flag defaults: --help prints defaults, and a token is a secret.
	pf.StringVar(&a.serverURL, "server", "", "tufota server URL (env TUFOTA_SERVER)")
	pf.StringVar(&a.token, "token", "", "API token (env TUFOTA_TOKEN)")
	pf.StringVarP(&a.output, "output", "o", "table", "output format: table or json")
	pf.StringVar(&a.caFile, "ca", "", "PEM file of the CA (or self-signed certificate) to trust for the server (env TUFOTA_CA)")
	pf.StringVar(&a.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	root.AddCommand(
		a.initCommand(),
		a.keyCommand(),
		a.serverCommand(),
		a.releaseCommand(),
		a.delegationCommand(),
		a.trustRootCommand(),
		a.tokenCommand(),
		a.userCommand(),
		a.auditCommand(),
		a.deviceCommand(),
		a.cohortCommand(),
		a.pinCommand(),
		a.rolloutCommand(),
		a.fleetCommand(),
		a.statusCommand(),
		a.simCommand(),
		a.quickstartCommand(),
		a.backupCommand(), a.restoreCommand(),
		a.vulnCommand(),
	)
	return root
}

// envFlags are the global flags whose value defaults to an environment
// variable.
var envFlags = []struct {
	flag, env string
	value     func(a *app) *string
}{
	{"server", "TUFOTA_SERVER", func(a *app) *string { return &a.serverURL }},
	{"token", "TUFOTA_TOKEN", func(a *app) *string { return &a.token }},
	{"ca", "TUFOTA_CA", func(a *app) *string { return &a.caFile }},
}

// flagsFromEnv sets each global flag that the command line did not set from
// its environment variable. It runs after parsing, so that help never shows
// the environment's values (a token, a URL with credentials) as defaults.
func (a *app) flagsFromEnv(cmd *cobra.Command) {
	for _, f := range envFlags {
		if fl := cmd.Flags().Lookup(f.flag); fl != nil && fl.Changed {
			continue
		}
		if v := a.env[f.env]; v != "" {
			*f.value(a) = v
		}
	}
}

// logger writes structured logs to stderr.
func (a *app) logger() *slog.Logger {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(a.logLevel)); err != nil {
		lvl = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: lvl}))
}

// requireArgs returns a cobra.PositionalArgs with a one-line error.
func exactArgs(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return tufota.Errorf(tufota.EInvalid, "%s: want %s, got %d argument(s)", cmd.CommandPath(), what, len(args))
		}
		return nil
	}
}

var errNoServer = errors.New("no server: pass --server URL or set TUFOTA_SERVER")

// group is a command that only holds subcommands.
func group(use, short string, subs ...*cobra.Command) *cobra.Command {
	cmd := &cobra.Command{Use: use, Short: short}
	cmd.AddCommand(subs...)
	return cmd
}
