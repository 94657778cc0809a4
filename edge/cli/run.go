package cli

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/coreos/go-systemd/v22/activation"
	"github.com/spf13/cobra"

	"mxedge/edge"
	"mxedge/edge/config"
	"mxedge/edge/lab"
	"mxedge/edge/metrics"
	"mxedge/edge/mgmt"
)

func newRunCmd(info BuildInfo) *cobra.Command {
	var path, metricsAddr string
	var dev bool
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run the edge: RADIUS front door, RadSec upstreams and listener",
		Long: `run starts mxedge in the foreground with the given configuration. It logs to stderr
(journald-friendly under systemd). SIGINT/SIGTERM shut down gracefully: listeners close, requests in
flight finish (bounded), then upstream connections close. SIGHUP reloads NAS clients, secrets,
upstreams and certificates without dropping requests in flight; a bad file is reported and the
running configuration stays.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// Subscribed before anything starts, so a signal during start-up is not lost; the edge
			// acts on them (SIGHUP reloads, SIGINT/SIGTERM stop).
			sig := make(chan os.Signal, 4)
			signal.Notify(sig, syscall.SIGHUP, os.Interrupt, syscall.SIGTERM)
			defer signal.Stop(sig)
			ctx, cancel := context.WithCancel(cmd.Context())
			defer cancel()
			var reg *mgmt.Registration
			if dev {
				l, err := lab.Start(ctx, lab.Options{})
				if err != nil {
					return err
				}
				defer os.RemoveAll(l.Dir)
				defer l.Wait()
				defer cancel() // the lab stops with the edge
				path = l.ConfigPath
				fmt.Fprint(cmd.OutOrStdout(), l.Instructions(1812, 1813))
			} else {
				// A registered edge runs the configuration its cloud provides unless --config says
				// otherwise (docs/management.md).
				p, r, err := mgmt.ConfigPath(mgmt.DefaultStateDir, path, cmd.Flags().Changed("config"))
				if err != nil {
					return err
				}
				path, reg = p, r
			}
			cfg, err := config.Load(path)
			if err != nil {
				return err
			}
			b := cfg.Built()
			logger := NewLogger(cmd.ErrOrStderr(), b.LogLevel, b.LogFormat)
			if !cmd.Flags().Changed("metrics-listen") {
				metricsAddr = b.Metrics
			}
			o := edge.Options{Logger: logger, Sockets: activation.Files(true), MetricsAddr: metricsAddr, Signals: sig,
				Version: info.Version, Commit: info.Commit}
			if reg != nil {
				// The management plane: configuration and cache snapshots from the cloud every 30
				// minutes, certificate renewal before expiry. An unreachable cloud never disturbs serving.
				o.Sync = &mgmt.SyncOptions{Registration: reg}
			}
			logger.Info("mxedge starting", "version", orUnknown(info.Version), "config", path)
			e, err := edge.New(cfg, o)
			if err != nil {
				return err
			}
			if err := e.Run(ctx); err != nil {
				return fmt.Errorf("run: %w", err)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&path, "config", "c", DefaultConfigPath, "configuration file")
	cmd.Flags().StringVar(&metricsAddr, "metrics-listen", metrics.DefaultAddr, `Prometheus /metrics address, overriding metrics.listen ("" disables)`)
	cmd.Flags().BoolVar(&dev, "dev", false, "run a lab on loopback: ephemeral PKI, in-process lab cloud NAC, NAS secret testing123")
	return cmd
}
