package cli

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/spf13/cobra"

	"mxedge/edge"
	"mxedge/edge/config"
	"mxedge/edge/lab"
)

func newRunCmd(info BuildInfo) *cobra.Command {
	var path string
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
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if dev {
				l, err := lab.Start(ctx, lab.Options{})
				if err != nil {
					return err
				}
				defer os.RemoveAll(l.Dir)
				defer l.Wait()
				path = l.ConfigPath
				fmt.Fprint(cmd.OutOrStdout(), l.Instructions(1812, 1813))
			}
			cfg, err := config.Load(path)
			if err != nil {
				return err
			}
			b := cfg.Built()
			logger := NewLogger(cmd.ErrOrStderr(), b.LogLevel, b.LogFormat)
			return run(ctx, path, cfg, logger, info)
		},
	}
	cmd.Flags().StringVarP(&path, "config", "c", DefaultConfigPath, "configuration file")
	cmd.Flags().BoolVar(&dev, "dev", false, "run a lab on loopback: ephemeral PKI, in-process lab cloud NAC, NAS secret testing123")
	return cmd
}

func run(ctx context.Context, path string, cfg *config.Config, logger *slog.Logger, info BuildInfo) error {
	e, err := edge.New(cfg, edge.Options{Logger: logger})
	if err != nil {
		return err
	}
	if err := e.Listen(); err != nil {
		return err
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				daemon.SdNotify(false, daemon.SdNotifyReloading)
				logger.Info("reloading configuration", "file", path)
				if next, err := config.Load(path); err != nil {
					logger.Error("reload rejected: keeping the running configuration", "err", err)
				} else if err := e.Reload(next); err != nil {
					logger.Error("reload failed: keeping the running configuration", "err", err)
				}
				daemon.SdNotify(false, daemon.SdNotifyReady)
			}
		}
	}()
	logger.Info("mxedge starting", "version", orUnknown(info.Version), "config", path)
	err = e.Run(ctx, func() { daemon.SdNotify(false, daemon.SdNotifyReady) })
	daemon.SdNotify(false, daemon.SdNotifyStopping)
	if err != nil {
		return fmt.Errorf("run: %w", err)
	}
	return nil
}
