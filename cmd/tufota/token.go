package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/api"
	"github.com/tufota/tufota/apiclient"
	"github.com/tufota/tufota/internal/report"
)

func (a *app) tokenCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "token", Short: "Create, list and revoke API tokens"}
	var req api.CreateTokenRequest
	var expires string
	create := &cobra.Command{
		Use:   "create --name NAME --role ROLE [--user USER] [--expires 90d]",
		Short: "Create a token; its secret is printed once",
		Args:  exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if expires != "" {
				d, err := parseDays(expires)
				if err != nil {
					return err
				}
				req.Expires = d.String()
			}
			return printCall(a, cmd, func(ctx context.Context, c *apiclient.Client) (api.CreateTokenResponse, error) {
				return c.CreateToken(ctx, req)
			}, func(w io.Writer, res api.CreateTokenResponse) {
				fmt.Fprintf(w, "Token %s for %s (%s, user %s), expires %s. Secret (shown once):\n%s\n",
					res.Detail.ID, res.Detail.Name, res.Detail.Role, dash(res.Detail.Owner), report.Time(res.Detail.ExpiresAt), res.Token)
			})
		},
	}
	create.Flags().StringVar(&req.Name, "name", "", "who or what the token is for (required)")
	create.Flags().StringVar(&req.Role, "role", "", "admin, release-engineer, operator, auditor or device (required)")
	create.Flags().StringVar(&req.DeviceID, "device-id", "", "device ID (device tokens only)")
	create.Flags().StringVar(&req.User, "user", "", "the user (name or ID) the token belongs to; the role must be one of theirs (default: your own user)")
	create.Flags().StringVar(&expires, "expires", "", "lifetime, e.g. 90d or 12h (default 90d; at most 90d for admin, 365d for other people's tokens, 1825d for a device)")
	_ = create.MarkFlagRequired("name")
	_ = create.MarkFlagRequired("role")

	list := &cobra.Command{
		Use:   "list",
		Short: "List tokens (never their secrets)",
		Args:  exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return printCall(a, cmd, func(ctx context.Context, c *apiclient.Client) ([]api.Token, error) { return c.ListTokens(ctx) }, func(w io.Writer, toks []api.Token) {
				row(w, "ID", "NAME", "OWNER", "ROLE", "CREATED", "EXPIRES", "REVOKED", "LAST USED")
				for _, t := range toks {
					row(w, t.ID, t.Name, dash(t.Owner), t.Role, report.Time(&t.CreatedAt), report.Time(t.ExpiresAt), report.Time(t.RevokedAt), report.Time(t.LastUsedAt))
				}
			})
		},
	}
	revoke := &cobra.Command{
		Use:   "revoke ID|NAME",
		Short: "Revoke a token",
		Args:  exactArgs(1, "a token ID or name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return printCall(a, cmd, func(ctx context.Context, c *apiclient.Client) (api.Token, error) { return c.RevokeToken(ctx, args[0]) }, func(w io.Writer, tok api.Token) { fmt.Fprintf(w, "Revoked token %s (%s)\n", tok.ID, tok.Name) })
		},
	}
	cmd.AddCommand(create, list, revoke)
	return cmd
}

// parseDays parses a Go duration or a number of days such as "90d". A
// number of days too large for a time.Duration is refused, not wrapped.
func parseDays(s string) (time.Duration, error) {
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.ParseInt(n, 10, 64)
		if err == nil && days > int64(math.MaxInt64/int64(24*time.Hour)) {
			return 0, tufota.Errorf(tufota.EInvalid, "duration %q is too long", s)
		}
		if err == nil && days > 0 {
			return time.Duration(days) * 24 * time.Hour, nil
		}
	} else if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return d, nil
	}
	return 0, tufota.Errorf(tufota.EInvalid, "duration %q: want e.g. 90d, 36h or 30m", s)
}
