package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/tufota/tufota/api"
	"github.com/tufota/tufota/apiclient"
	"github.com/tufota/tufota/internal/report"
)

// userCommand manages local users: the people (and pipelines) whose API
// tokens carry at most their roles.
func (a *app) userCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "user", Short: "Create, list and disable users (tokens belong to them)"}
	var roles []string
	create := &cobra.Command{
		Use:   "create NAME --role ROLE [--role ROLE...]",
		Short: "Create a local user with roles",
		Args:  exactArgs(1, "the user's name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return printCall(a, cmd, func(ctx context.Context, c *apiclient.Client) (api.User, error) {
				return c.CreateUser(ctx, api.CreateUserRequest{Name: args[0], Roles: roles})
			}, func(w io.Writer, u api.User) {
				fmt.Fprintf(w, "User %s (%s) with roles %s\n", u.Name, u.ID, strings.Join(u.Roles, ","))
			})
		},
	}
	create.Flags().StringArrayVar(&roles, "role", nil, "admin, release-engineer, operator, auditor or enroll (repeatable; at least one)")
	_ = create.MarkFlagRequired("role")

	list := &cobra.Command{
		Use:   "list",
		Short: "List users",
		Args:  exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return printCall(a, cmd, func(ctx context.Context, c *apiclient.Client) ([]api.User, error) { return c.ListUsers(ctx) }, func(w io.Writer, us []api.User) {
				row(w, "ID", "NAME", "ISSUER", "ROLES", "CREATED", "DISABLED")
				for _, u := range us {
					row(w, u.ID, u.Name, u.Issuer, strings.Join(u.Roles, ","), report.Time(&u.CreatedAt), report.Time(u.DisabledAt))
				}
			})
		},
	}
	disable := &cobra.Command{
		Use:   "disable ID|NAME",
		Short: "Disable a user and revoke every token of theirs at once",
		Args:  exactArgs(1, "a user ID or name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return printCall(a, cmd, func(ctx context.Context, c *apiclient.Client) (api.DisableUserResponse, error) {
				return c.DisableUser(ctx, args[0])
			}, func(w io.Writer, res api.DisableUserResponse) {
				fmt.Fprintf(w, "Disabled user %s (%s); revoked %d token(s)\n", res.User.Name, res.User.ID, res.RevokedTokens)
			})
		},
	}
	cmd.AddCommand(create, list, disable)
	return cmd
}
