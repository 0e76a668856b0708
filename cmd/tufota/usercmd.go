package main

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/spf13/cobra"

	"github.com/tufota/tufota/access"
	"github.com/tufota/tufota/server"
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
			c, err := a.api()
			if err != nil {
				return err
			}
			var u access.User
			if err := c.sendJSON(cmd.Context(), http.MethodPost, "/api/v1/users", server.CreateUserRequest{Name: args[0], Roles: roles}, &u); err != nil {
				return err
			}
			return a.print(u, func(w io.Writer) {
				fmt.Fprintf(w, "User %s (%s) with roles %s\n", u.Name, u.ID, userRoles(u))
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
			c, err := a.api()
			if err != nil {
				return err
			}
			var us []access.User
			if err := c.getJSON(cmd.Context(), "/api/v1/users", &us); err != nil {
				return err
			}
			return a.print(us, func(w io.Writer) {
				row(w, "ID", "NAME", "ISSUER", "ROLES", "CREATED", "DISABLED")
				for _, u := range us {
					row(w, u.ID, u.Name, u.Issuer, userRoles(u), fmtTime(&u.CreatedAt), fmtTime(u.DisabledAt))
				}
			})
		},
	}
	disable := &cobra.Command{
		Use:   "disable ID|NAME",
		Short: "Disable a user and revoke every token of theirs at once",
		Args:  exactArgs(1, "a user ID or name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.api()
			if err != nil {
				return err
			}
			var res server.DisableUserResponse
			if err := c.do(cmd.Context(), http.MethodPost, "/api/v1/users/"+url.PathEscape(args[0])+"/disable", nil, "", &res); err != nil {
				return err
			}
			return a.print(res, func(w io.Writer) {
				fmt.Fprintf(w, "Disabled user %s (%s); revoked %d token(s)\n", res.User.Name, res.User.ID, res.RevokedTokens)
			})
		},
	}
	cmd.AddCommand(create, list, disable)
	return cmd
}

func userRoles(u access.User) string {
	s := make([]string, len(u.Roles))
	for i, r := range u.Roles {
		s[i] = string(r)
	}
	return strings.Join(s, ",")
}

// orDash shows an empty cell (a device token's owner) as "-".
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
