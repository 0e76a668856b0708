package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/tufota/tufota/api"
	"github.com/tufota/tufota/apiclient"
)

func (a *app) statusCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "When each TUF role's metadata expires, with warnings for roles that need their key holders soon",
		Long: `status shows, for the repository behind the server, when the metadata of each
top-level role expires. The server re-signs the online roles (snapshot,
timestamp) itself; the offline roles (root, targets) need their key holders, so
they are flagged inside the server's warning period (30 days). The same
figures are Prometheus gauges at /metrics.`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return printCall(a, cmd, func(ctx context.Context, c *apiclient.Client) (api.Status, error) { return c.Status(ctx) }, func(w io.Writer, st api.Status) {
				if st.Replica != "" {
					fmt.Fprintf(w, "Replica %s (%s)\n", st.Replica, st.Leader)
				}
				row(w, "ROLE", "SIGNED BY", "EXPIRES", "IN", "WARNING")
				for _, r := range st.Roles {
					by := "key holders (offline)"
					if r.Online {
						by = "server (online)"
					}
					row(w, r.Role, by, r.Expires.Format("2006-01-02 15:04 MST"), r.ExpiresIn, dash(r.Warning))
				}
			})
		},
	}
}
