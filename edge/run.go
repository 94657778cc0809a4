package edge

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"mxedge/edge/config"
	"mxedge/edge/mgmt"
	"mxedge/pki"
)

// statusInterval is how often the one-line status systemd shows is refreshed.
const statusInterval = 5 * time.Second

// group is goroutines that stop together: Stop cancels their context and waits for all of them.
type group struct {
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func newGroup() *group {
	ctx, cancel := context.WithCancel(context.Background())
	return &group{ctx: ctx, cancel: cancel}
}

func (g *group) Go(f func(ctx context.Context)) {
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		f(g.ctx)
	}()
}

func (g *group) Stop() {
	g.cancel()
	g.wg.Wait()
}

// Run serves until ctx ends or SIGINT/SIGTERM arrives on Options.Signals. It owns the lifecycle:
// it starts every component, reports READY once the first upstream connections have settled,
// applies reloads from SIGHUP, changed certificate files, the cloud sync and Reload one at a time
// through one queue, feeds the systemd watchdog and status line, and runs the cloud sync. On the
// way out it shuts down in order: stop taking reloads, stop reading requests, let those in flight
// finish (bounded by ShutdownGrace), stop accounting replay and the background loops, close the
// upstream connections (replaced pools included), the control socket, and last the cache, so
// answers learned during the drain are written. Run returns nil on a clean shutdown, and only
// after every goroutine it started has exited. An Edge runs once.
func (e *Edge) Run(ctx context.Context) error {
	if !e.running.CompareAndSwap(false, true) {
		return errors.New("edge: run called twice")
	}
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	e.mu.Lock()
	e.started = time.Now()
	b := e.cfg.Built()
	e.mu.Unlock()

	store, acct, ctl, bg, front, life, idp := newGroup(), newGroup(), newGroup(), newGroup(), newGroup(), newGroup(), newGroup()
	sess := newGroup() // the session table's writer and sweeper: stopped after the control socket, before the stores close
	// The sources of reloads and shutdown listen from the start: a SIGTERM during start-up stops
	// it, and a file replaced meanwhile is noticed. Their reloads wait for the reload loop, which
	// starts once the edge serves.
	hup := make(chan struct{}, 1)
	if e.opts.Signals != nil {
		life.Go(func(ctx context.Context) { e.readSignals(ctx, stop, hup) })
	}
	life.Go(func(ctx context.Context) {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				e.enqueue(ctx, reloadRequest{why: "SIGHUP"})
			}
		}
	})
	life.Go(e.watchFiles)
	store.Go(func(ctx context.Context) { e.cache.Run(ctx) })
	store.Go(func(ctx context.Context) { e.dlog.Run(ctx) }) // stops last: decisions of the drain are written
	store.Go(e.fticks.Run)                                  // with the decision log: F-Ticks lines of the drain are sent
	sess.Go(e.runSessions)
	acct.Go(func(ctx context.Context) { e.acct.Run(ctx) })
	if e.identity != nil {
		idp.Go(e.identity.run)
	}
	ctl.Go(func(ctx context.Context) {
		if err := e.control.Run(ctx); err != nil {
			e.log.Error("control socket stopped", "err", err)
		}
	})
	if e.localEAP != nil {
		bg.Go(func(ctx context.Context) { e.localEAP.Run(ctx) })
	}
	if e.metrics != nil {
		bg.Go(func(ctx context.Context) {
			if err := e.metrics.Run(ctx); err != nil {
				e.log.Error("metrics stopped", "err", err)
			}
		})
	}
	if e.checker != nil {
		bg.Go(func(ctx context.Context) { e.checker.Run(ctx) })
	}
	bg.Go(e.watchExpiry)
	if c := e.clusterParts.c; c != nil {
		bg.Go(func(ctx context.Context) {
			if err := c.Run(ctx); err != nil {
				e.log.Warn("cluster stopped", "err", err)
			}
		})
		if pp := e.clusterParts.peers; pp != nil {
			bg.Go(pp.Run)
		}
		bg.Go(e.watchReconcile)
	}
	if e.discovery != nil {
		bg.Go(func(ctx context.Context) { e.discovery.Run(ctx) })
	}
	bg.Go(func(ctx context.Context) { e.dynauth.Run(ctx) })
	bg.Go(e.runReconciler)
	e.mu.Lock()
	e.pool = startPool(e.pool.pool, e.pool.routes)
	e.mu.Unlock()
	wctx, cancel := context.WithTimeout(ctx, readyWait)
	e.router.Pool().WaitReady(wctx)
	e.pool.routes.WaitReady(wctx)
	cancel()

	front.Go(func(ctx context.Context) { e.server.Run(ctx) })
	if e.listener != nil {
		front.Go(func(ctx context.Context) { e.listener.Run(ctx) })
	}
	e.log.Info("mxedge started", "auth", b.Server.AuthAddrs, "acct", b.Server.AcctAddrs,
		"upstreams", len(b.Pool.Upstreams), "clients", len(b.Clients))
	e.notify.Ready()
	e.notify.Status(statusLine(e.Status(), time.Now()))
	close(e.ready)

	// The lifecycle: the reload queue and everything that feeds it, sd_notify, the cloud sync.
	drainCtx, endDrains := context.WithCancel(context.Background())
	var drains sync.WaitGroup
	life.Go(func(ctx context.Context) { e.reloadLoop(ctx, drainCtx, &drains) })
	if e.syncer != nil {
		life.Go(func(ctx context.Context) { e.syncer.Run(ctx) })
	}
	if e.notify.Enabled() {
		life.Go(e.reportStatus)
		life.Go(func(ctx context.Context) {
			// The watchdog is fed only while the front door's housekeeping loop runs, so a wedged
			// serving loop stops the pings and systemd restarts mxedge.
			within := max(e.notify.Watchdog()/2, 3*time.Second)
			e.notify.RunWatchdog(ctx, func() bool { return time.Since(e.server.Heartbeat()) < within })
		})
	}

	<-ctx.Done()
	e.log.Info("shutting down", "grace", e.opts.ShutdownGrace)
	e.notify.Stopping()
	t0 := time.Now()
	life.Stop() // a reload in progress finishes first; no new one starts
	front.Stop()
	gctx, cancel := context.WithTimeout(context.Background(), e.opts.ShutdownGrace)
	err := e.router.Wait(gctx)
	cancel()
	if err != nil {
		e.log.Warn("shutdown grace expired with requests in flight", "grace", e.opts.ShutdownGrace)
	}
	e.server.Close()
	if e.listener != nil {
		e.listener.Close()
	}
	acct.Stop()
	bg.Stop()
	endDrains()
	drains.Wait()
	e.mu.Lock()
	cur := e.pool
	e.mu.Unlock()
	cur.stop()
	<-cur.done
	// The control socket stops before the cache it serves; the cache stops last so that answers
	// learned during the drain are written.
	ctl.Stop()
	sess.Stop()
	// Identity push after the session table, whose last changes it queues, and after every
	// request, whose accounting its copy takes.
	idp.Stop()
	if err := e.identity.close(); err != nil {
		e.log.Error("identity queues close failed", "err", err)
	}
	store.Stop()
	if err := e.spool.Close(); err != nil {
		e.log.Error("spool close failed", "err", err)
	}
	e.closeSessions()
	if err := e.cache.Close(); err != nil {
		e.log.Error("cache close failed", "err", err)
	}
	e.log.Info("stopped", "dur", time.Since(t0).Round(time.Millisecond))
	return nil
}

// readSignals turns SIGHUP into a reload (coalesced: a reload from the file reads its latest
// version, so one pending is enough) and SIGINT/SIGTERM into shutdown.
func (e *Edge) readSignals(ctx context.Context, shutdown context.CancelFunc, hup chan<- struct{}) {
	for {
		select {
		case <-ctx.Done():
			return
		case s, ok := <-e.opts.Signals:
			if !ok {
				return
			}
			if s == syscall.SIGHUP {
				select {
				case hup <- struct{}{}:
				default: // one is already pending
				}
				continue
			}
			e.log.Info("signal received", "reason", s.String())
			shutdown()
		}
	}
}

// watchFiles reloads when a certificate, key or CA file of the running configuration changes (a
// renewal tool replaced it), checked every WatchInterval.
func (e *Edge) watchFiles(ctx context.Context) {
	watched := fileStamps(e.Files())
	t := time.NewTicker(e.opts.WatchInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := fileStamps(e.Files())
		changed := changedFiles(watched, now)
		watched = now
		if changed != "" {
			e.enqueue(ctx, reloadRequest{why: "certificate files changed: " + changed})
			watched = fileStamps(e.Files())
		}
	}
}

// reportStatus refreshes the line `systemctl status` shows.
func (e *Edge) reportStatus(ctx context.Context) {
	t := time.NewTicker(statusInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			e.notify.Status(statusLine(e.Status(), now))
		}
	}
}

// newSyncer builds the management plane's sync loop over this edge: a configuration from the cloud
// is checked as `mxedge check` would and applied (and saved) through the reload queue; a clients
// snapshot is merged into the cache; a renewed certificate reloads the configuration file.
func (e *Edge) newSyncer(o mgmt.SyncOptions) (*mgmt.Syncer, error) {
	o.Logger = e.log
	o.ValidateConfig = func(path string, doc []byte) error {
		cfg, err := config.Parse(path, doc)
		if err != nil {
			return err
		}
		return Check(cfg)
	}
	o.Apply = func(path string, doc []byte) error {
		cfg, err := config.Parse(path, doc)
		if err != nil {
			return err
		}
		// The sync loop's goroutine waits here; enqueue ends with ErrStopped once Run stops the
		// reload loop, so no cancellation of its own is needed.
		return e.enqueue(context.Background(), reloadRequest{why: "cloud configuration", cfg: cfg, doc: doc})
	}
	o.MergeCache = func(r io.Reader) error {
		rep, err := e.cache.Import(r, true)
		e.log.Info("cloud cache snapshot merged", "imported", rep.Imported, "older", rep.Older, "bad", rep.Bad)
		return err
	}
	o.Reloaded = func() {
		e.enqueue(context.Background(), reloadRequest{why: "edge certificate renewed"})
	}
	// Certificate sync installs the org CA and the local EAP-TLS listener's certificate and key into
	// the files the configuration names, then reloads through the same queue, which re-reads them
	// for new handshakes; conversations in flight keep theirs.
	if t := e.cfg.Built().Survival.EAPTLS; t != nil && o.ServerTLS == nil {
		o.ServerTLS = &mgmt.ServerTLSFiles{CertFile: t.CertFile, KeyFile: t.KeyFile, CAFile: t.CAFile, KeyPassword: t.KeyPassword}
		o.ApplyServerTLS = func() error {
			return e.enqueue(context.Background(), reloadRequest{why: "server certificates synced"})
		}
	}
	return mgmt.NewSyncer(o)
}

// watchExpiry warns at 30, 7 and 1 days before any configured certificate or CA expires (and when
// it has), once per threshold, checking every hour.
func (e *Edge) watchExpiry(ctx context.Context) {
	warned := map[string]time.Duration{}
	check := func() {
		for _, w := range pki.ExpiryWarnings(*e.certs.Load(), time.Now()) {
			key := w.Name + "|" + w.Subject
			if t, ok := warned[key]; ok && t == w.Threshold {
				continue
			}
			warned[key] = w.Threshold
			msg := "certificate expires soon: renew it"
			if w.Expired {
				msg = "certificate expired: connections using it fail until it is replaced"
			}
			e.log.Log(ctx, w.Level, msg, "file", w.Name, "subject", w.Subject, "not_after", w.NotAfter.Format(time.RFC3339),
				"dur", w.Remaining.Round(time.Hour))
		}
	}
	check()
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			check()
		}
	}
}

// statusLine is the one line systemctl status shows, e.g.
// "proxying to mist (up, 12 ms), cache 12345 clients" or
// "SURVIVABILITY: cloud unreachable 3m12s, 41 local decisions, cache 12345 clients".
func statusLine(s Status, now time.Time) string {
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

// changedFiles lists the files of before whose stamp differs in after; files that only one of
// them has (the set changed with a reload) are not changes.
func changedFiles(before, after map[string]string) string {
	var changed []string
	for f, s := range after {
		if b, ok := before[f]; ok && b != s {
			changed = append(changed, f)
		}
	}
	slices.Sort(changed)
	return strings.Join(changed, ", ")
}
