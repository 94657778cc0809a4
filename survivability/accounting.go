package survivability

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"mxedge/proxy"
	"mxedge/proxy/packet"
	"mxedge/survivability/spool"
)

// Forwarder sends a request to the cloud (the proxy's current upstream pool). done may run more
// than once or, if the pool loses the request, never: Accounting claims the first call and bounds
// its own wait.
type Forwarder interface {
	Forward(req *proxy.Request, done func(proxy.Result))
}

const (
	// forwardGrace is how long past a request's deadline Accounting waits for the Forwarder before it
	// treats the record as not delivered. The pool answers at the deadline; the grace only matters
	// when it never does, and then the record is spooled (a possible duplicate, never a loss).
	forwardGrace = time.Second
	// proxyStateLen and maLen are what proxy.Pool adds when it forwards a request
	// (packet.ForwardRequest): its Proxy-State (2 + 8 octets, RFC 2865 §5.33) and a
	// Message-Authenticator (RFC 3579 §3.2) when the request has none.
	proxyStateLen = 2 + 8
	maLen         = 18
)

// Accounting keeps accounting lossless and in order: every Accounting-Request goes through it.
// While the cloud is reachable and nothing is spooled a record is forwarded directly and the
// cloud's Accounting-Response is relayed; otherwise (cloud unreachable, a backlog waiting, or the
// direct attempt failed) it is acknowledged only once durably spooled, and Run replays the spool
// with Acct-Delay-Time increased by the time spent in it (docs/spool.md).
//
// Order is kept per session (the NAS and its Acct-Session-Id, RFC 2866 §5.5): a session's records
// are settled (delivered or spooled) one at a time in receipt order, so a record that fails its
// direct attempt is spooled before any later record of its session is handled; nothing is sent
// directly while anything is spooled; and the replay sends a session's records one at a time in
// spool order (spool.ReplayOptions.Key).
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

	// mu guards gates (per session, the settling of its last admitted record) and admitted (the
	// place each admitted request holds until Account runs it).
	mu       sync.Mutex
	gates    map[string]*gate
	admitted map[*proxy.Request]place

	direct  atomic.Uint64
	spooled atomic.Uint64
}

// gate orders one session's records: each waits for the previous one's settled channel.
type gate struct {
	tail    chan struct{} // closed when the last admitted record is settled
	waiters int
}

// place is one record's position in its session: the previous record's settled channel (nil when
// none is pending) and its own.
type place struct {
	key        string
	prev, mine chan struct{}
}

// DefaultReplayWindow is how many spooled records, of different sessions, replay keeps in flight.
// It also bounds the duplicates one failure during replay can cause.
const DefaultReplayWindow = 32

// AccountingOptions configure replay.
type AccountingOptions struct {
	Spool   *spool.Spool
	Forward Forwarder
	// Clients finds the NAS client a spooled record came from (by name), for its secret.
	Clients func(name string) *proxy.Client
	Health  *Health
	Timeout time.Duration // per replayed request; default 4s
	Window  int           // records in flight during replay (different sessions); default DefaultReplayWindow
	Logger  *slog.Logger
	Now     func() time.Time
}

// AccountingStats are the accounting counters for status and metrics.
type AccountingStats struct {
	Direct  uint64 // records the cloud acknowledged directly since start
	Spooled uint64 // records acknowledged once spooled since start
	spool.Stats
}

// NewAccounting returns the accounting path; Run replays.
func NewAccounting(o AccountingOptions) *Accounting {
	if o.Timeout <= 0 {
		o.Timeout = 4 * time.Second
	}
	if o.Window <= 0 {
		o.Window = DefaultReplayWindow
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Accounting{spool: o.Spool, fwd: o.Forward, clients: o.Clients, health: o.Health, timeout: o.Timeout,
		window: o.Window, logger: o.Logger, now: o.Now, kick: make(chan struct{}, 1), gates: map[string]*gate{},
		admitted: map[*proxy.Request]place{}}
}

// Stats returns the accounting counters and the spool's.
func (a *Accounting) Stats() AccountingStats {
	return AccountingStats{Direct: a.direct.Load(), Spooled: a.spooled.Load(), Stats: a.spool.Stats()}
}

// Account delivers req to the cloud or spools it, in its session's receipt order. It returns the
// cloud's Accounting-Response (already signed for the NAS) when delivered directly; spooled when it
// was stored durably instead (the caller acknowledges it); an error when it was neither, so the NAS
// must get no answer and will retransmit (RFC 2866 §2).
func (a *Accounting) Account(req *proxy.Request) (resp packet.Packet, spooled bool, err error) {
	a.mu.Lock()
	pl, ok := a.admitted[req]
	delete(a.admitted, req)
	a.mu.Unlock()
	if !ok {
		pl = a.place(req)
	}
	// Settled exactly once, by this goroutine, whatever happens below.
	defer a.settled(pl)
	if pl.prev != nil {
		// Bounded: the previous record's forward is bounded by its deadline plus forwardGrace, and
		// its append by the disk.
		<-pl.prev
	}
	if !a.health.Local() && a.spool.Len() == 0 {
		res := a.forward(req, req.Deadline)
		if res.Err == nil && res.Response != nil && res.Response.Code() == packet.CodeAccountingResponse {
			// What the router's observer does for the requests it forwards itself.
			a.health.Answered()
			a.direct.Add(1)
			return res.Response, false, nil
		}
		if proxy.IsTimeout(res.Err) {
			a.health.TimedOut()
		}
		a.logger.Debug("accounting not acknowledged by the cloud; spooling", "nas", req.Client.Name, "id", req.Packet.ID(), "err", res.Err)
	}
	if _, err := a.spool.Append(spool.Entry{Received: req.Received, Client: req.Client.Name, Src: req.Src.String(), Packet: req.Packet}); err != nil {
		return nil, false, err
	}
	a.spooled.Add(1)
	a.Kick()
	return nil, true, nil
}

// Admit fixes req's place in its session's order. The front door calls it (through the engine's
// Takes) on the goroutine that read req, so the order is the receipt order even when the requests'
// own goroutines start in another; Account then runs req in that place. A request Account gets
// without Admit takes its place then.
func (a *Accounting) Admit(req *proxy.Request) {
	pl := a.place(req)
	a.mu.Lock()
	a.admitted[req] = pl
	a.mu.Unlock()
}

// place queues a record behind the last one of its session.
func (a *Accounting) place(req *proxy.Request) place {
	key := recordKey(req.Client.Name, req.Packet)
	a.mu.Lock()
	defer a.mu.Unlock()
	g := a.gates[key]
	if g == nil {
		g = &gate{}
		a.gates[key] = g
	}
	pl := place{key: key, prev: g.tail, mine: make(chan struct{})}
	g.tail = pl.mine
	g.waiters++
	return pl
}

func (a *Accounting) settled(pl place) {
	a.mu.Lock()
	defer a.mu.Unlock()
	close(pl.mine)
	g := a.gates[pl.key]
	if g.waiters--; g.waiters == 0 {
		delete(a.gates, pl.key)
	}
}

// forward sends req through the Forwarder and waits for its first result, at most until deadline
// plus forwardGrace. The result is claimed once: a second call of the callback, or one after the
// wait ended, is ignored.
func (a *Accounting) forward(req *proxy.Request, deadline time.Time) proxy.Result {
	ch := make(chan proxy.Result, 1)
	var claimed atomic.Bool
	claim := func(res proxy.Result) bool {
		if !claimed.CompareAndSwap(false, true) {
			return false
		}
		ch <- res
		return true
	}
	a.fwd.Forward(req, func(res proxy.Result) { claim(res) })
	if deadline.IsZero() {
		deadline = a.now().Add(a.timeout)
	}
	t := time.NewTimer(max(deadline.Sub(a.now()), 0) + forwardGrace)
	defer t.Stop()
	select {
	case res := <-ch:
		return res
	case <-t.C:
		claim(proxy.Result{Err: errForwardLost})
		return <-ch
	}
}

// errForwardLost: the Forwarder never answered within the deadline and its grace.
var errForwardLost = errors.New("survivability: accounting forward not answered")

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
		n, err := a.spool.ReplayWith(ctx, spool.ReplayOptions{Window: a.window, Key: entryKey, Send: a.send})
		switch {
		case err != nil && !errors.Is(err, spool.ErrReplayRunning) && ctx.Err() == nil:
			a.logger.Warn("accounting replay stopped; will retry", "err", err, "replayed", n, "left", a.spool.Len())
		case n > 0:
			a.logger.Info("accounting replayed to the cloud", "replayed", n, "left", a.spool.Len())
		}
	}
}

// recordKey is the ordering key of an Accounting-Request: its NAS and Acct-Session-Id (unique per
// NAS, RFC 2866 §5.5). Records without one (RFC 2866 requires it) share one key per NAS.
func recordKey(client string, p packet.Packet) string {
	v, _ := p.Attr(packet.AttrAcctSessionID)
	return client + "\x00" + string(v)
}

// entryKey is recordKey for a spooled record.
func entryKey(e spool.Entry) string {
	p, err := packet.Parse(e.Packet)
	if err != nil {
		return e.Client + "\x00"
	}
	return recordKey(e.Client, p)
}

// permanent marks err as a reason the record can never be delivered (the spool quarantines it).
func permanent(err error) error { return fmt.Errorf("%w: %w", spool.ErrPermanent, err) }

// send replays one record: Acct-Delay-Time increased, re-signed with its NAS's secret, then
// forwarded (and re-keyed) like any accounting request. done is claimed once by the spool; the
// timer bounds the wait when the Forwarder never answers.
func (a *Accounting) send(e spool.Entry, delay time.Duration, done func(error)) {
	client := a.clients(e.Client)
	if client == nil {
		// The NAS was removed from the configuration while its records waited. They are still owed
		// to the cloud, which only ever sees them re-keyed with the RadSec secret, so a placeholder
		// secret does for signing here.
		client = &proxy.Client{Name: e.Client, Secret: proxy.Secret("mxedge-spool-replay")}
	}
	raw, err := spool.AddDelay(e.Packet, delay)
	if err != nil {
		done(permanent(err))
		return
	}
	packet.Sign(raw, client.Secret, nil)
	p, err := packet.Parse(raw)
	if err != nil {
		done(permanent(err))
		return
	}
	// RFC 2865 §3: 4096 octets at most, also after the proxy's additions; no upstream can take more.
	if n := forwardedLen(p); n > packet.MaxLen {
		done(permanent(fmt.Errorf("survivability: accounting record is %d octets once forwarded, above %d", n, packet.MaxLen)))
		return
	}
	now := a.now()
	req := &proxy.Request{Client: client, Transport: proxy.TransportUDP, Packet: p, Received: now, Deadline: now.Add(a.timeout)}
	timer := time.AfterFunc(a.timeout+forwardGrace, func() { done(errForwardLost) })
	a.fwd.Forward(req, func(res proxy.Result) {
		timer.Stop()
		switch {
		case errors.Is(res.Err, packet.ErrAttrTooLong) || errors.Is(res.Err, packet.ErrTooLong):
			res.Err = permanent(res.Err)
		case res.Err == nil && (res.Response == nil || res.Response.Code() != packet.CodeAccountingResponse):
			res.Err = errors.New("survivability: replayed accounting not acknowledged")
		}
		done(res.Err)
	})
}

// forwardedLen is the length of p once the pool has forwarded it (packet.ForwardRequest).
func forwardedLen(p packet.Packet) int {
	n := len(p) + proxyStateLen
	if !p.Has(packet.AttrMessageAuthenticator) {
		n += maLen
	}
	return n
}
