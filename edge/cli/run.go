package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

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
			var reg *mgmt.Registration
			if dev {
				l, err := lab.Start(ctx, lab.Options{})
				if err != nil {
					return err
				}
				defer os.RemoveAll(l.Dir)
				defer l.Wait()
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
			return run(ctx, path, cfg, reg, metricsAddr, logger, info)
		},
	}
	cmd.Flags().StringVarP(&path, "config", "c", DefaultConfigPath, "configuration file")
	cmd.Flags().StringVar(&metricsAddr, "metrics-listen", metrics.DefaultAddr, `Prometheus /metrics address, overriding metrics.listen ("" disables)`)
	cmd.Flags().BoolVar(&dev, "dev", false, "run a lab on loopback: ephemeral PKI, in-process lab cloud NAC, NAS secret testing123")
	return cmd
}

func run(ctx context.Context, path string, cfg *config.Config, reg *mgmt.Registration, metricsAddr string, logger *slog.Logger, info BuildInfo) error {
	// Sockets from systemd socket activation (LISTEN_FDS), if any.
	e, err := edge.New(cfg, edge.Options{Logger: logger, Sockets: activation.Files(true), MetricsAddr: metricsAddr})
	if err != nil {
		return err
	}
	if err := e.Listen(); err != nil {
		return err
	}
	n := notify.New(logger)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	var wg sync.WaitGroup
	defer wg.Wait()
	bg, stopBg := context.WithCancel(ctx)
	defer stopBg()
	reload := func(why string) {
		n.Reloading()
		logger.Info("reloading configuration", "file", path, "reason", why)
		if next, err := config.Load(path); err != nil {
			logger.Error("reload rejected: keeping the running configuration", "err", err)
		} else if err := e.Reload(next); err != nil {
			logger.Error("reload failed: keeping the running configuration", "err", err)
		}
		n.Ready()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		// Certificates, keys and CA bundles are also reloaded when their files change (a renewal
		// tool replaced them), checked every 10 s.
		watched := fileStamps(e.Files())
		t := time.NewTicker(10 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-bg.Done():
				return
			case <-hup:
				reload("SIGHUP")
				watched = fileStamps(e.Files())
			case <-t.C:
				now := fileStamps(keys(watched))
				if changed := changedFiles(watched, now); changed != "" {
					reload("certificate files changed: " + changed)
					watched = fileStamps(e.Files())
				}
			}
		}
	}()
	if reg != nil {
		// The management plane: configuration and cache snapshots from the cloud every 30 minutes,
		// certificate renewal before expiry. An unreachable cloud never disturbs serving.
		syncer, err := mgmt.NewSyncer(mgmt.SyncOptions{
			Registration: reg,
			ValidateConfig: func(p string, doc []byte) error {
				_, err := config.Parse(p, doc)
				return err
			},
			Apply: func(p string, doc []byte) error {
				next, err := config.Parse(p, doc)
				if err != nil {
					return err
				}
				return e.Reload(next)
			},
			MergeCache: func(r io.Reader) error {
				if e.Cache() == nil {
					return errors.New("cache not open")
				}
				rep, err := e.Cache().Import(r, true)
				logger.Info("cloud cache snapshot merged", "imported", rep.Imported, "older", rep.Older, "bad", rep.Bad)
				return err
			},
			Reloaded: func() { hup <- syscall.SIGHUP },
			Logger:   logger,
		})
		if err != nil {
			return err
		}
		wg.Add(1)
		go func() { defer wg.Done(); syncer.Run(bg) }()
	}
	ready := func() {
		n.Ready()
		n.Status(statusLine(e.Status(), time.Now()))
		// Status every few seconds; the watchdog is fed only while the front door's housekeeping
		// loop runs, so a wedged serving loop stops the pings and systemd restarts mxedge.
		wg.Add(2)
		go func() {
			defer wg.Done()
			t := time.NewTicker(5 * time.Second)
			defer t.Stop()
			for {
				select {
				case <-bg.Done():
					return
				case now := <-t.C:
					n.Status(statusLine(e.Status(), now))
				}
			}
		}()
		go func() {
			defer wg.Done()
			within := max(n.Watchdog()/2, 3*time.Second)
			n.RunWatchdog(bg, func() bool { return time.Since(e.Server().Heartbeat()) < within })
		}()
	}
	logger.Info("mxedge starting", "version", orUnknown(info.Version), "config", path)
	err = e.Run(ctx, ready)
	n.Stopping()
	stopBg()
	if err != nil {
		return fmt.Errorf("run: %w", err)
	}
	return nil
}

// statusLine is the one line systemctl status shows, e.g.
// "proxying to mist (up, 12 ms), cache 12345 clients" or
// "SURVIVABILITY: cloud unreachable 3m12s, 41 local decisions, cache 12345 clients".
func statusLine(s edge.Status, now time.Time) string {
	cacheLine := fmt.Sprintf("cache %d clients", s.Cache.Entries)
	switch s.Mode {
	case "down", "recovering":
		return fmt.Sprintf("SURVIVABILITY (%s): cloud unreachable %s, %d local decisions, %s",
			s.Mode, now.Sub(s.Since).Round(time.Second), s.Local, cacheLine)
	}
	var ups []string
	for _, u := range s.Upstreams {
		if u.State.String() == "up" {
			ups = append(ups, fmt.Sprintf("%s (up, %d ms)", u.Name, u.RTT.Milliseconds()))
		}
	}
	if len(ups) == 0 {
		return "no upstream connected yet, " + cacheLine
	}
	return "proxying to " + strings.Join(ups, ", ") + ", " + cacheLine
}

// fileStamps records size and modification time of each file ("" for a missing one).
func fileStamps(files []string) map[string]string {
	m := make(map[string]string, len(files))
	for _, f := range files {
		if st, err := os.Stat(f); err == nil {
			m[f] = fmt.Sprintf("%d/%d", st.Size(), st.ModTime().UnixNano())
		} else {
			m[f] = ""
		}
	}
	return m
}

func keys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

func changedFiles(before, after map[string]string) string {
	var changed []string
	for f, s := range after {
		if before[f] != s {
			changed = append(changed, f)
		}
	}
	return strings.Join(changed, ", ")
}
