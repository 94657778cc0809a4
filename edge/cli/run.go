package cli

import (
	"context"
	"fmt"
	"log/slog"
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
	"mxedge/edge/notify"
)

func newRunCmd(info BuildInfo) *cobra.Command {
	var path, metricsAddr string
	var dev, checkConfigured bool
	var lf labFlags
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run the edge: RADIUS front door, RadSec upstreams and listener",
		Long: `run starts mxedge in the foreground with the given configuration. It logs to stderr
(journald-friendly under systemd). SIGINT/SIGTERM shut down gracefully: listeners close, requests in
flight finish (bounded), then upstream connections close. SIGHUP reloads NAS clients, secrets,
upstreams and certificates without dropping requests in flight; a bad file is reported and the
running configuration stays.

A configuration that sets no NAS client and no upstream (the packaged default, before it is edited
or the edge registered) is "not configured": run sets the systemd status line to "not configured:
run ` + "`mxedge register`" + ` or edit FILE" and exits 78 (EX_CONFIG), without starting anything.
--check-configured makes only that check (exit 0 or 78): the unit runs it as ExecCondition=, so an
unconfigured service is skipped, not failed (docs/install.md).

--dev runs a lab on loopback instead (what "make run" starts): RADIUS on 127.0.0.1:1812 and 1813, an
in-process lab cloud NAC, and a banner of commands to try. When a port is taken (a FreeRADIUS on
the same machine, say) it exits 1 at once, naming the port and the process holding it; pick other
addresses with --auth-listen, --acct-listen and --cloud-listen, or free ones with --free-ports.`,
		Example: `  mxedge run                                     # the service: /etc/mxedge/mxedge.yaml or the cloud configuration
  mxedge run --dev                               # the lab on 127.0.0.1:1812 and 1813
  mxedge run --dev --free-ports                  # the lab on free ports (printed in the banner)
  mxedge run --dev --auth-listen 127.0.0.1:11812 --acct-listen 127.0.0.1:11813`,
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
			var l *lab.Lab
			if err := lf.check(cmd, dev); err != nil {
				return err
			}
			if dev && checkConfigured {
				return fmt.Errorf("%w: --check-configured and --dev exclude each other", ErrUsage)
			}
			if dev {
				var err error
				if l, err = lab.Start(ctx, lf.options()); err != nil {
					return lf.explain(err)
				}
				defer os.RemoveAll(l.Dir)
				defer l.Wait()
				defer cancel() // the lab stops with the edge
				path = l.ConfigPath
			} else {
				// A registered edge runs the configuration its cloud provides unless --config says
				// otherwise (docs/management.md).
				p, r, err := mgmt.ConfigPath(mgmt.DefaultStateDir, path, cmd.Flags().Changed("config"))
				if err != nil {
					return err
				}
				path, reg = p, r
				// The packaged default serves nobody until an operator edits it or registers the
				// edge: say so where systemctl status shows it, and exit with a code of its own.
				if err := config.CheckConfigured(path); err != nil {
					nc := &notConfiguredError{path: path, err: err}
					if !checkConfigured {
						n := notify.New(nil)
						n.Status(nc.Error())
					}
					return &ExitError{Code: ExitNotConfigured, Err: nc}
				}
				if checkConfigured {
					return nil
				}
			}
			cfg, err := config.Load(path)
			if err != nil {
				return err
			}
			b := cfg.Built()
			level := new(slog.LevelVar) // log.level, set again by each reload
			level.Set(b.LogLevel)
			logger := NewLogger(cmd.ErrOrStderr(), level, b.LogFormat)
			if !cmd.Flags().Changed("metrics-listen") {
				metricsAddr = b.Metrics
			}
			o := edge.Options{Logger: logger, LogLevel: level, Sockets: activation.Files(true), MetricsAddr: metricsAddr, Signals: sig,
				Version: info.Version, Commit: info.Commit}
			if reg != nil {
				// The management plane: configuration and cache snapshots from the cloud every 30
				// minutes, certificate renewal before expiry. An unreachable cloud never disturbs serving.
				o.Sync = &mgmt.SyncOptions{Registration: reg}
			}
			logger.Info("mxedge starting", "version", orUnknown(info.Version), "config", path)
			for _, w := range cfg.Warnings() { // what mxedge check prints as warnings
				logger.Warn("configuration warning", "reason", w.Error())
			}
			e, err := edge.New(cfg, o)
			if err != nil {
				if l != nil {
					return lf.explain(l.Explain(err))
				}
				return err
			}
			if l != nil {
				// Printed once every socket is bound, with the ports the edge really has.
				fmt.Fprint(cmd.OutOrStdout(), l.Instructions(selfCommand(), first(e.AuthAddrs()), first(e.AcctAddrs()), first(e.DynAuth().Addrs())))
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
	cmd.Flags().BoolVar(&checkConfigured, "check-configured", false, "start nothing: exit 0 when the configuration run would read serves something, "+fmt.Sprint(ExitNotConfigured)+" when it is not configured (the unit's ExecCondition=)")
	lf.register(cmd)
	return cmd
}

// ExitNotConfigured is run's exit code for a configuration that serves nobody: EX_CONFIG of
// sysexits(3), which systemctl status shows as "78/CONFIG".
const ExitNotConfigured = 78

// notConfiguredError is what run says about an unconfigured edge, in journal and status line alike.
type notConfiguredError struct {
	path string
	err  error // wraps config.ErrNotConfigured
}

func (e *notConfiguredError) Error() string {
	return fmt.Sprintf("not configured: run `mxedge register` or edit %s", e.path)
}

func (e *notConfiguredError) Unwrap() error { return e.err }
