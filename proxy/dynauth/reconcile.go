package dynauth

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Reconciliation after an outage: sessions the edge admitted on its own while the cloud was
// unreachable (from the cache, or with a default VLAN) are re-authorized through the cloud once
// it is back, oldest first and paced, by a vendor-aware CoA reauthenticate (or, where the vendor
// defines none and the site says so, a Disconnect): the NAS re-runs authentication, which now
// reaches the cloud, and the client gets its cloud policy (its real VLAN) minutes after the WAN
// returns instead of at its next session timeout.

// ReconcileItem is one session waiting for reconciliation.
type ReconcileItem struct {
	ID     uint64 // the session table's key
	Site   string
	Target Target
}

// ReconcileSessions is the session table's side. The reconciler declares it because it calls it.
type ReconcileSessions interface {
	// NeedingReconcile returns up to limit sessions admitted locally and not yet reconciled,
	// oldest first; ended and self-re-authenticated ones are not among them.
	NeedingReconcile(limit int) ([]ReconcileItem, error)
	// MarkReconciled records the outcome: ok when the NAS took the request (or the session was
	// gone), not ok when it refused or did not answer.
	MarkReconciled(id uint64, ok bool) error
}

// SitePolicy is one site's reconciliation setting.
type SitePolicy struct {
	Enabled bool
	// Disconnect: where the vendor defines no reauthenticate, send a Disconnect-Request (the
	// client reconnects and authenticates through the cloud); otherwise such sessions are skipped.
	Disconnect bool
}

// ReconcileOptions configure the reconciler. Zero values take the documented defaults.
type ReconcileOptions struct {
	Sessions ReconcileSessions
	// Rate is how many requests per second go out, across NASes, so the cloud and the NASes are
	// not flooded by every re-authentication at once. Default 10.
	Rate float64
	// Site gives a site's policy; nil: every site enabled, Disconnect on.
	Site func(site string) SitePolicy
	// Up says whether the cloud is reachable: a round stops when it goes away again.
	Up func() bool
	// Batch is how many sessions are read from the table at a time. Default 64.
	Batch int
	// InFlight bounds the requests waiting for NASes at once, so a NAS that does not answer
	// (each request then takes the relay's whole retransmission budget) does not hold up the
	// others; the pace is Rate whatever it is. Default 16.
	InFlight int
	Logger   *slog.Logger
}

// Validate checks the options.
func (o *ReconcileOptions) Validate() error {
	if o.Rate < 0 || o.Rate > 1000 {
		return errors.New("dynauth: reconcile rate outside 0..1000 per second")
	}
	return nil
}

// ReconcileProgress is where reconciliation stands, for `mxedge status`.
type ReconcileProgress struct {
	Running  bool      `json:"running"`
	Started  time.Time `json:"started,omitzero"`  // the current or last round
	Finished time.Time `json:"finished,omitzero"` // the last round's end
	Sent     uint64    `json:"sent"`              // requests sent, all rounds
	ACK      uint64    `json:"ack"`
	NAK      uint64    `json:"nak"`
	Timeouts uint64    `json:"timeouts"`
	Skipped  uint64    `json:"skipped"` // site off, or no action for the vendor
	Errors   uint64    `json:"errors"`  // not sent (no address, table error)
	Rounds   uint64    `json:"rounds"`
	Rate     float64   `json:"rate"`
	// Pending is how many sessions still wait (the caller fills it from the session table).
	Pending int `json:"pending"`
}

// Reconciler re-authorizes locally admitted sessions after failback. Kick starts a round; Run
// serves rounds until its context ends.
type Reconciler struct {
	opts  ReconcileOptions
	relay *Relay
	kick  chan struct{}

	running                                     atomic.Bool
	sent, ack, nak, timeouts, skipped, errs, rn atomic.Uint64
	mu                                          sync.Mutex
	started, finished                           time.Time
}

// NewReconciler builds a reconciler sending through relay.
func NewReconciler(o ReconcileOptions, relay *Relay) (*Reconciler, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if o.Rate == 0 {
		o.Rate = 10
	}
	if o.Batch <= 0 {
		o.Batch = 64
	}
	if o.InFlight <= 0 {
		o.InFlight = 16
	}
	if o.Site == nil {
		o.Site = func(string) SitePolicy { return SitePolicy{Enabled: true, Disconnect: true} }
	}
	if o.Up == nil {
		o.Up = func() bool { return true }
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Reconciler{opts: o, relay: relay, kick: make(chan struct{}, 1)}, nil
}

// Kick asks for a round (the cloud came back). It never blocks; kicks during a round coalesce
// into one more round.
func (r *Reconciler) Kick() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// Progress returns the counters and the state of the current round.
func (r *Reconciler) Progress() ReconcileProgress {
	r.mu.Lock()
	defer r.mu.Unlock()
	return ReconcileProgress{Running: r.running.Load(), Started: r.started, Finished: r.finished,
		Sent: r.sent.Load(), ACK: r.ack.Load(), NAK: r.nak.Load(), Timeouts: r.timeouts.Load(),
		Skipped: r.skipped.Load(), Errors: r.errs.Load(), Rounds: r.rn.Load(), Rate: r.opts.Rate}
}

// Run serves rounds until ctx ends; it returns nil then.
func (r *Reconciler) Run(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-r.kick:
		}
		r.round(ctx)
	}
}

// round reconciles every session needing it, oldest first, one request per 1/Rate, until none is
// left, the cloud goes away again or ctx ends; at most InFlight wait for NASes at once. It returns
// once every request it sent has its outcome recorded.
func (r *Reconciler) round(ctx context.Context) {
	r.running.Store(true)
	defer r.running.Store(false)
	var wg sync.WaitGroup
	defer wg.Wait() // before running is cleared
	sem := make(chan struct{}, r.opts.InFlight)
	r.rn.Add(1)
	start := time.Now()
	r.mu.Lock()
	r.started = start
	r.mu.Unlock()
	r.opts.Logger.Info("reconciliation started", "rate", r.opts.Rate)
	gap := time.Duration(float64(time.Second) / r.opts.Rate)
	var next time.Time
	passed := map[uint64]bool{} // skipped or failed this round: not taken again
	for ctx.Err() == nil && r.opts.Up() {
		items, err := r.opts.Sessions.NeedingReconcile(r.opts.Batch + len(passed))
		if err != nil {
			r.errs.Add(1)
			r.opts.Logger.Error("reconciliation stopped: session table", "err", err)
			break
		}
		todo := items[:0]
		for _, it := range items {
			if !passed[it.ID] {
				todo = append(todo, it)
			}
		}
		if len(todo) == 0 {
			break
		}
		for _, it := range todo {
			if ctx.Err() != nil || !r.opts.Up() {
				break
			}
			pol := r.opts.Site(it.Site)
			if !pol.Enabled {
				r.skipped.Add(1)
				passed[it.ID] = true
				continue
			}
			action := ActionReauthenticate
			vendor := r.relay.vendorOf(it.Target.NAS)
			if _, ok := Render(vendor, action); !ok {
				if !pol.Disconnect {
					r.skipped.Add(1)
					passed[it.ID] = true
					continue
				}
				action = ActionDisconnect
			}
			if d := time.Until(next); d > 0 {
				t := time.NewTimer(d)
				select {
				case <-ctx.Done():
					t.Stop()
					return
				case <-t.C:
				}
			}
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			next = time.Now().Add(gap)
			// Taken once per round whatever the outcome: a table that kept returning a session
			// it was told about must not hold the round in a loop.
			passed[it.ID] = true
			r.sent.Add(1)
			wg.Add(1)
			go func() {
				defer func() { <-sem; wg.Done() }()
				r.send(ctx, it, action)
			}()
		}
	}
	wg.Wait()
	r.mu.Lock()
	r.finished = time.Now()
	r.mu.Unlock()
	p := r.Progress()
	r.opts.Logger.Info("reconciliation finished", "dur", time.Since(start).Round(time.Millisecond),
		"sent", p.Sent, "ack", p.ACK, "nak", p.NAK, "timeouts", p.Timeouts, "skipped", p.Skipped)
}

// send sends one session's request and records the outcome in the table.
func (r *Reconciler) send(ctx context.Context, it ReconcileItem, action Action) {
	o, err := r.relay.Originate(ctx, "reconcile", action, it.Target)
	ok := false
	switch {
	case err != nil:
		r.errs.Add(1)
		r.opts.Logger.Warn("reconciliation request not sent", "nas", it.Target.NAS, "err", err)
	case o.Result == "ack":
		r.ack.Add(1)
		ok = true
	case o.Result == "timeout":
		r.timeouts.Add(1)
	default:
		r.nak.Add(1)
		// 503: the NAS no longer has the session; nothing is left to reconcile.
		ok = o.ErrorCause == CauseSessionNotFound
	}
	if err := r.opts.Sessions.MarkReconciled(it.ID, ok); err != nil {
		r.opts.Logger.Error("reconciliation outcome not recorded", "err", err)
	}
}

// vendorOf returns a NAS client's vendor ("" if unknown).
func (r *Relay) vendorOf(nas string) string {
	if n := r.tables.Load().byName[nas]; n != nil {
		return n.Vendor
	}
	return ""
}
