package survivability

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"mxedge/proxy"
	"mxedge/proxy/packet"
	"mxedge/survivability/spool"
)

// Forwarder sends a request to the cloud (the proxy's current upstream pool).
type Forwarder interface {
	Forward(req *proxy.Request, done func(proxy.Result))
}

// Accounting keeps accounting lossless across an outage: while the cloud is unreachable, and
// afterwards until the backlog is delivered, Accounting-Requests are acknowledged only once durably
// spooled; Run replays them in arrival order with Acct-Delay-Time increased by their time in the
// spool, deleting each only after its Accounting-Response (docs/spool.md).
type Accounting struct {
	spool   *spool.Spool
	fwd     Forwarder
	clients func(name string) *proxy.Client
	health  *Health
	timeout time.Duration
	window  int
	logger  *slog.Logger
	now     func() time.Time
	kick    chan struct{}

	// inflight holds, per Acct-Session-Id, a channel closed when that session's record in flight is
	// answered: a session's records go out strictly one after another (Start before Interim before
	// Stop) even though records of different sessions are replayed in parallel.
	mu       sync.Mutex
	inflight map[string]*replaying
}

type replaying struct {
	done chan struct{}
	err  error
}

// AccountingOptions configure replay.
type AccountingOptions struct {
	Spool   *spool.Spool
	Forward Forwarder
	// Clients finds the NAS client a spooled record came from (by name), for its secret.
	Clients func(name string) *proxy.Client
	Health  *Health
	Timeout time.Duration // per replayed request; default 4s
	Window  int           // records in flight during replay; default 32
	Logger  *slog.Logger
	Now     func() time.Time
}

// NewAccounting returns the spooler; Run replays.
func NewAccounting(o AccountingOptions) *Accounting {
	if o.Timeout <= 0 {
		o.Timeout = 4 * time.Second
	}
	if o.Window <= 0 {
		o.Window = 32
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Accounting{spool: o.Spool, fwd: o.Forward, clients: o.Clients, health: o.Health, timeout: o.Timeout,
		window: o.Window, logger: o.Logger, now: o.Now, kick: make(chan struct{}, 1), inflight: map[string]*replaying{}}
}

// Backlog reports whether spooled records wait for delivery; new accounting then queues behind them.
func (a *Accounting) Backlog() bool { return a.spool.Len() > 0 }

// Spool implements AccountingSpool.
func (a *Accounting) Spool(req *proxy.Request) error {
	_, err := a.spool.Append(spool.Entry{Received: req.Received, Client: req.Client.Name, Src: req.Src.String(), Packet: req.Packet})
	if err == nil {
		a.Kick()
	}
	return err
}

// Kick asks Run to try a replay now (after failback, or a new record while the cloud is up).
func (a *Accounting) Kick() {
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

// Run replays the spool whenever the cloud is up, until ctx ends.
func (a *Accounting) Run(ctx context.Context) error {
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-a.kick:
		case <-t.C:
		}
		if a.health.Local() || a.spool.Len() == 0 {
			continue
		}
		n, err := a.spool.Replay(ctx, a.window, func(e spool.Entry, delay time.Duration, done func(error)) {
			a.send(ctx, e, delay, done)
		})
		switch {
		case err != nil && !errors.Is(err, spool.ErrReplayRunning) && ctx.Err() == nil:
			a.logger.Warn("accounting replay stopped; will retry", "err", err, "replayed", n, "left", a.spool.Len())
		case n > 0:
			a.logger.Info("accounting replayed to the cloud", "replayed", n, "left", a.spool.Len())
		}
	}
}

// sessionID returns the Acct-Session-Id of a raw Accounting-Request ("" if none).
func sessionID(raw []byte) string {
	p, err := packet.Parse(raw)
	if err != nil {
		return ""
	}
	v, _ := p.Attr(packet.AttrAcctSessionID)
	return string(v)
}

// send replays one record: Acct-Delay-Time increased, re-signed with its NAS's secret, then
// forwarded (and re-keyed) like any accounting request.
func (a *Accounting) send(ctx context.Context, e spool.Entry, delay time.Duration, done func(error)) {
	session := sessionID(e.Packet)
	a.mu.Lock()
	prev := a.inflight[session]
	mine := &replaying{done: make(chan struct{})}
	a.inflight[session] = mine
	a.mu.Unlock()
	reply := done
	finish := func(err error) {
		a.mu.Lock()
		if a.inflight[session] == mine {
			delete(a.inflight, session)
		}
		mine.err = err
		a.mu.Unlock()
		close(mine.done)
		reply(err)
	}
	if prev != nil {
		select {
		case <-prev.done:
		case <-ctx.Done():
			finish(ctx.Err())
			return
		}
		a.mu.Lock()
		err := prev.err
		a.mu.Unlock()
		if err != nil {
			// The session's earlier record stays in the spool; this one must not overtake it.
			finish(fmt.Errorf("survivability: earlier record of session %q not delivered: %w", session, err))
			return
		}
	}
	done = finish
	client := a.clients(e.Client)
	if client == nil {
		// The NAS was removed from the configuration while its records waited. They are still owed
		// to the cloud, which only ever sees them re-keyed with the RadSec secret, so a placeholder
		// secret does for signing here.
		client = &proxy.Client{Name: e.Client, Secret: proxy.Secret("mxedge-spool-replay")}
	}
	raw, err := spool.AddDelay(e.Packet, delay)
	if err != nil {
		done(err)
		return
	}
	packet.Sign(raw, client.Secret, nil)
	p, err := packet.Parse(raw)
	if err != nil {
		done(err)
		return
	}
	now := a.now()
	req := &proxy.Request{Client: client, Transport: proxy.TransportUDP, Packet: p, Received: now, Deadline: now.Add(a.timeout)}
	a.fwd.Forward(req, func(res proxy.Result) {
		if res.Err == nil && (res.Response == nil || res.Response.Code() != packet.CodeAccountingResponse) {
			res.Err = errors.New("survivability: replayed accounting not acknowledged")
		}
		done(res.Err)
	})
}
