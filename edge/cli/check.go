package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"mxedge/edge"
	"mxedge/edge/config"
	"mxedge/edge/mgmt"
)

func newCheckCmd() *cobra.Command {
	var path, route string
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Validate the configuration exactly as run would, without binding or dialing",
		Long: `check decodes the configuration strictly, validates every field, reads every secret file,
certificate and key, and validates every component's options as run would, without taking the
cache's lock or binding a socket (so it also runs beside a live daemon). Errors name the file, line
and field.
With --route it also prints the route a sample request takes, e.g.
  mxedge check --route User-Name=alice@example.edu,Called-Station-Id=AA-BB-CC-DD-EE-FF:eduroam
(keys: User-Name, Called-Station-Id, Calling-Station-Id, Operator-Name, client, src, site,
type=auth|accounting, method=eap|pap|chap|mab).
It exits 0 when mxedge would start, 1 otherwise.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path, _, err := mgmt.ConfigPath(mgmt.DefaultStateDir, path, cmd.Flags().Changed("config"))
			if err != nil {
				return err
			}
			cfg, err := config.Load(path)
			if err != nil {
				return err
			}
			if err := edge.Check(cfg); err != nil {
				return err
			}
			b := cfg.Built()
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "%s: OK (%d NAS clients, %d upstreams, radsec listener %s)\n",
				path, len(b.Clients), len(b.Pool.Upstreams), onOff(b.Listener != nil))
			if err != nil || !cmd.Flags().Changed("route") {
				return err
			}
			return printRoute(cmd, cfg, route)
		},
	}
	cmd.Flags().StringVar(&route, "route", "", "print the route a sample request takes: KEY=VALUE,... (see above)")
	cmd.Flags().StringVarP(&path, "config", "c", DefaultConfigPath, "configuration file (default: the cloud configuration of a registered edge, else "+DefaultConfigPath+")")
	return cmd
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}
