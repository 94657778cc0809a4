package edge

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"mxedge/edge/config"
	"mxedge/edge/mgmt"
	"mxedge/pki"
	"mxedge/proxy"
)

// ErrStopped is returned by Reload when the edge no longer takes reloads: Run has returned or is
// shutting down.
var ErrStopped = errors.New("edge: not running")

// reloadRequest is one entry of the reload queue. Every source of a reload — SIGHUP, a changed
// certificate file, a configuration from the cloud, a renewed edge certificate, Reload — sends one
// and Run's reload loop applies them one at a time, in arrival order.
type reloadRequest struct {
	why string
	cfg *config.Config // nil: read the running configuration's file again
	// doc, when set, is cfg's document: written to cfg.Path once applied, inside the same step, so
	// a reload from the file that follows reads it and cannot bring back the previous one.
	doc  []byte
	done chan error // buffered: the loop never waits for the sender
}

// Reload queues cfg behind any reload in progress and waits until it is applied (nil) or refused
// (the running configuration stays). Run must be running.
func (e *Edge) Reload(ctx context.Context, cfg *config.Config) error {
	return e.enqueue(ctx, reloadRequest{why: "requested", cfg: cfg})
}

func (e *Edge) enqueue(ctx context.Context, r reloadRequest) error {
	r.done = make(chan error, 1)
	select {
	case e.reloads <- r:
	case <-e.stopped:
		return ErrStopped
	case <-ctx.Done():
		return ctx.Err()
	}
	// A request the loop took is always answered: the loop stops only between requests.
	select {
	case err := <-r.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// reloadLoop is the reload queue's only consumer. ctx bounds each reload's wait for new upstream
// connections; drainCtx ends the drains of replaced pools (shutdown, once requests in flight are
// done); drains counts them.
func (e *Edge) reloadLoop(ctx, drainCtx context.Context, drains *sync.WaitGroup) {
	defer close(e.stopped)
	for {
		select {
		case <-ctx.Done():
			return
		case r := <-e.reloads:
			r.done <- e.reload(ctx, drainCtx, drains, r)
		}
	}
}

// reload applies one request, telling systemd (RELOADING=1 … READY=1) around it.
func (e *Edge) reload(ctx, drainCtx context.Context, drains *sync.WaitGroup, r reloadRequest) error {
	e.notify.Reloading()
	defer func() {
		e.notify.Ready()
		e.notify.Status(statusLine(e.Status(), time.Now()))
	}()
	e.mu.Lock()
	path := e.cfg.Path
	e.mu.Unlock()
	cfg := r.cfg
	if cfg != nil {
		path = cfg.Path
	}
	e.log.Info("reloading configuration", "file", path, "reason", r.why)
	if cfg == nil {
		next, err := config.Load(path)
		if err != nil {
			e.log.Error("reload rejected: keeping the running configuration", "err", err)
			return fmt.Errorf("edge: reload: %w", err)
		}
		cfg = next
	}
	if err := Check(cfg); err != nil {
		e.log.Error("reload rejected: keeping the running configuration", "err", err)
		return fmt.Errorf("edge: reload: %w", err)
	}
	if err := e.apply(ctx, drainCtx, drains, cfg); err != nil {
		e.log.Error("reload failed: keeping the running configuration", "err", err)
		return err
	}
	if r.doc != nil {
		if err := pki.WriteFileAtomic(cfg.Path, r.doc, mgmt.ConfigFileMode, true); err != nil {
			e.log.Error("configuration applied but not saved", "file", cfg.Path, "err", err)
			return fmt.Errorf("edge: reload: %w", err)
		}
	}
	return nil
}

// apply installs a checked configuration without dropping requests in flight: NAS clients and
// secrets are swapped atomically, a new upstream pool (new certificates, new upstream list) is
// connected and swapped in, and the old pool finishes its requests before it closes. log.level
// and the decision log's settings apply at once (applyLogging); listen addresses and log.format
// need a restart, and a change to them is reported.
func (e *Edge) apply(ctx, drainCtx context.Context, drains *sync.WaitGroup, cfg *config.Config) error {
	b := cfg.Built()
	e.mu.Lock()
	old := e.cfg.Built()
	oldCfg := e.cfg
	e.mu.Unlock()
	warnIdentityChanged(e.log, oldCfg, cfg)
	if !slices.Equal(b.Server.AuthAddrs, old.Server.AuthAddrs) || !slices.Equal(b.Server.AcctAddrs, old.Server.AcctAddrs) {
		e.log.Warn("listen addresses changed: restart mxedge to apply them")
	}
	pool, err := e.newPool(b)
	if err != nil {
		return err
	}
	routes, err := e.newRoutes(b)
	if err != nil {
		return err
	}
	if err := e.server.SetClients(b.Clients); err != nil {
		return fmt.Errorf("edge: reload clients: %w", err)
	}
	if !slices.Equal(b.DynAuth.Listen, old.DynAuth.Listen) {
		e.log.Warn("dynamic authorization listen addresses changed: restart mxedge to apply them")
	}
	if err := e.dynauth.SetTables(b.DynAuth.Clients, b.DynAuth.NASes); err != nil {
		return fmt.Errorf("edge: reload dynamic authorization: %w", err)
	}
	if e.listener != nil && b.Listener != nil {
		if err := e.listener.SetPeers(b.Listener.Peers); err != nil {
			return fmt.Errorf("edge: reload radsec peers: %w", err)
		}
		e.listener.SetTLS(b.Listener.TLS)
	}
	e.setTrust(b.Survival.EAPTLS)
	e.applyLogging(old, b)
	e.reloadDiscovery(b)
	if err := e.sites.Set(b.Survival.Sites); err != nil {
		e.log.Error("site policy not reloaded", "err", err)
	}
	if b.Survival.Enabled && e.engine == nil {
		e.log.Warn("survivability enabled: restart mxedge to apply it")
	}
	next := startPool(pool, routes)
	wctx, cancel := context.WithTimeout(ctx, readyWait)
	pool.WaitReady(wctx)
	routes.WaitReady(wctx)
	cancel()
	e.router.SetPool(pool)
	e.fticks.use(b)
	e.router.SetRoutes(routes)
	e.mu.Lock()
	prev := e.pool
	e.pool, e.cfg = next, cfg
	e.mu.Unlock()
	certs := loadCerts(b.Files)
	e.certs.Store(&certs)
	drains.Add(1)
	go func() {
		defer drains.Done()
		e.drain(drainCtx, prev)
	}()
	e.log.Info("configuration reloaded", "clients", len(b.Clients), "upstreams", len(b.Pool.Upstreams))
	return nil
}

// startPool runs p and the routes' pools until the returned poolRun is stopped.
func startPool(p *proxy.Pool, routes *proxy.RouteTable) poolRun {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		rdone := make(chan struct{})
		go func() { defer close(rdone); routes.Run(ctx) }()
		p.Run(ctx)
		<-rdone
	}()
	return poolRun{pool: p, routes: routes, stop: cancel, done: done}
}

// drain lets a replaced pool finish its requests in flight, for at most ShutdownGrace or until ctx
// ends, then stops it and waits for it.
func (e *Edge) drain(ctx context.Context, r poolRun) {
	deadline := time.NewTimer(e.opts.ShutdownGrace)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
wait:
	for r.pool.Inflight()+r.routes.Inflight() > 0 {
		select {
		case <-ctx.Done():
			break wait
		case <-deadline.C:
			break wait
		case <-tick.C:
		}
	}
	r.stop()
	<-r.done
}
