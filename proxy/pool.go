package proxy

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"mxedge/proxy/packet"
	"mxedge/proxy/radsec"
	"mxedge/proxy/sockio"
)

// ErrNoUpstream means no upstream could take the request.
var ErrNoUpstream = errors.New("proxy: no upstream available")

// ErrBadReply means an upstream answered with something that is not a valid answer to the request:
// it is radsec.ErrBadReply, one sentinel for the connection's and the proxy's checks.
var ErrBadReply = radsec.ErrBadReply

// HealthObserver is told how the upstreams fare (survivability's Health implements it). The pool
// calls it from connection goroutines: it must not block.
type HealthObserver interface {
	// UpstreamUp: an upstream's new connection answered its first Status-Server.
	UpstreamUp(name string)
	// UpstreamDown: an upstream has no connection left.
	UpstreamDown(name, reason string)
	// Probe: an upstream answered a watchdog Status-Server (ok) or answered it badly.
	Probe(name string, ok bool)
	// Upstreams replaces everything known with the upstreams of the pool now in use and whether each
	// is up (a reload may rename or remove upstreams).
	Upstreams(up map[string]bool)
}

// DynAuth relays Dynamic Authorization requests (RFC 5176) an upstream sends on a connection the
// pool opened (draft-ietf-radext-reverse-coa). The pool declares it because it calls it, from the
// connection's read loop: it must not block. conn tells an upstream's connections apart; reply
// queues the answer on the same connection; secret is the connection's RadSec secret.
type DynAuth interface {
	ServeUpstream(upstream string, conn uint64, secret []byte, p packet.Packet, reply func(resp []byte) error)
}

// Mode is how requests are spread over upstreams.
type Mode string

const (
	// ModeFailover sends everything to the most preferred live upstream.
	ModeFailover Mode = "failover"
	// ModeLoadBalance spreads requests over the live upstreams of the most preferred priority,
	// keeping each EAP conversation (State) on the upstream that started it.
	ModeLoadBalance Mode = "load-balance"
)

// PoolOptions configure the upstream pool.
type PoolOptions struct {
	Upstreams []UpstreamOptions
	Mode      Mode // default failover
	Resolver  Resolver
	// AffinityTTL is how long an EAP State is pinned to the upstream that issued it. Default 60s.
	AffinityTTL time.Duration
	// Health, if set, is told of upstream state changes and probe answers while this pool is the
	// router's (survivability health).
	Health HealthObserver
	// ProxyStatePrefix begins the Proxy-State this pool adds (RFC 2865 §5.33); the edge gives every
	// pool the same one so a request that comes back through another pool is seen as a loop
	// (route.go). Zero: random.
	ProxyStatePrefix [4]byte
	// Cork: see ServerOptions.Cork; give both the same.
	Cork *sockio.Cork
	// DynAuth, if set, receives the CoA-Request and Disconnect-Request upstreams send on the
	// connections the pool opened (reverse CoA); unset, they are discarded.
	DynAuth DynAuth
	Logger  *slog.Logger
	Now     func() time.Time
}

// Validate checks the options before anything is dialed.
func (o *PoolOptions) Validate() error {
	if len(o.Upstreams) == 0 {
		return errors.New("proxy: no upstreams configured")
	}
	if len(o.Upstreams) > 64 {
		return errors.New("proxy: more than 64 upstreams")
	}
	switch o.Mode {
	case "", ModeFailover, ModeLoadBalance:
	default:
		return fmt.Errorf("proxy: unknown upstream mode %q (want failover or load-balance)", o.Mode)
	}
	names := map[string]bool{}
	for i := range o.Upstreams {
		if err := o.Upstreams[i].Validate(); err != nil {
			return err
		}
		if names[o.Upstreams[i].Name] {
			return fmt.Errorf("proxy: two upstreams named %q", o.Upstreams[i].Name)
		}
		names[o.Upstreams[i].Name] = true
	}
	return nil
}

// Pool owns the RadSec upstreams and forwards requests to them.
type Pool struct {
	opts      PoolOptions
	ups       []*Upstream // in preference order
	rr        atomic.Uint64
	psPrefix  [4]byte
	psCounter atomic.Uint32
	inflight  atomic.Int64
	stats     atomic.Pointer[Stats] // the counters of the router using the pool (discarded replies, retries)
	retired   atomic.Bool           // replaced by a reload: its events no longer describe the edge
	connSeq   atomic.Uint64         // numbers connections for DynAuth (identifiers are per connection)
	udp       bool                  // an upstream speaks RADIUS/UDP, so a NAS's retransmission is relayed

	affMu    sync.Mutex
	affinity map[string]affinityEntry

	ready chan struct{}
}

type affinityEntry struct {
	up      *Upstream
	expires time.Time
}

// NewPool creates the pool; Run connects it.
func NewPool(o PoolOptions) (*Pool, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if o.Mode == "" {
		o.Mode = ModeFailover
	}
	if o.AffinityTTL <= 0 {
		o.AffinityTTL = 60 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	p := &Pool{opts: o, affinity: map[string]affinityEntry{}, ready: make(chan struct{})}
	p.stats.Store(new(Stats))
	p.psPrefix = o.ProxyStatePrefix
	if p.psPrefix == [4]byte{} {
		rand.Read(p.psPrefix[:])
	}
	order := make([]int, len(o.Upstreams))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return o.Upstreams[a].Priority - o.Upstreams[b].Priority })
	for _, i := range order {
		uo := o.Upstreams[i]
		uo.setDefaults()
		u := &Upstream{opts: uo, idx: len(p.ups), pool: p, logger: o.Logger, grow: make(chan struct{}, 1),
			maKey: packet.NewMAKey(uo.Secret), dialLog: newLogLimiter(dialLogInterval)}
		if uo.UDP != nil {
			if err := u.newUDP(); err != nil {
				return nil, err
			}
			p.udp = true
		}
		p.ups = append(p.ups, u)
	}
	return p, nil
}

// Upstreams returns the upstreams in preference order.
func (p *Pool) Upstreams() []*Upstream { return p.ups }

// Inflight is the number of requests waiting for an upstream answer.
func (p *Pool) Inflight() int64 { return p.inflight.Load() }

// announce tells the Health observer which upstreams are current (the pool became the router's).
func (p *Pool) announce() {
	if p.opts.Health == nil {
		return
	}
	up := make(map[string]bool, len(p.ups))
	for _, u := range p.ups {
		up[u.opts.Name] = u.available()
	}
	p.opts.Health.Upstreams(up)
}

// Run connects every upstream and keeps them connected until ctx ends.
func (p *Pool) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, u := range p.ups {
		wg.Add(1)
		go func() {
			defer wg.Done()
			u.run(ctx)
		}()
	}
	t := time.NewTicker(10 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			wg.Wait()
			return nil
		case now := <-t.C:
			p.sweepAffinity(now)
		}
	}
}

// WaitReady waits until every upstream has either connected or failed once, so a start-up does not
// announce itself ready while the first connections are still being made.
func (p *Pool) WaitReady(ctx context.Context) {
	for {
		settled := true
		for _, u := range p.ups {
			if UpstreamState(u.state.Load()) == StateConnecting {
				settled = false
			}
		}
		if settled || !sleep(ctx, 20*time.Millisecond) {
			return
		}
	}
}

// pick chooses the upstream for a request, skipping those in tried (a bit per upstream index).
func (p *Pool) pick(req *Request, tried uint64) *Upstream {
	if state, ok := req.Packet.Attr(packet.AttrState); ok {
		p.affMu.Lock()
		e, ok := p.affinity[string(state)]
		p.affMu.Unlock()
		if ok && e.up.available() && tried&(1<<e.up.idx) == 0 {
			return e.up
		}
	}
	if p.opts.Mode == ModeLoadBalance {
		var best []*Upstream
		for _, u := range p.ups {
			if !u.available() || tried&(1<<u.idx) != 0 {
				continue
			}
			if len(best) > 0 && u.opts.Priority != best[0].opts.Priority {
				break
			}
			best = append(best, u)
		}
		if len(best) > 0 {
			return best[p.rr.Add(1)%uint64(len(best))]
		}
		return nil
	}
	for _, u := range p.ups {
		if u.available() && tried&(1<<u.idx) == 0 {
			return u
		}
	}
	return nil
}

func (p *Pool) pin(state []byte, u *Upstream) {
	p.affMu.Lock()
	p.affinity[string(state)] = affinityEntry{up: u, expires: p.opts.Now().Add(p.opts.AffinityTTL)}
	p.affMu.Unlock()
}

func (p *Pool) sweepAffinity(now time.Time) {
	p.affMu.Lock()
	for k, e := range p.affinity {
		if now.After(e.expires) {
			delete(p.affinity, k)
		}
	}
	p.affMu.Unlock()
}

// Result is what an upstream exchange produced for one request.
type Result struct {
	Response packet.Packet // re-keyed for the NAS; nil on error
	Upstream string
	RTT      time.Duration
	Err      error
}

// Forward sends req to an upstream and calls done exactly once with the NAS-side response or the
// reason there is none. If the connection carrying the request dies before an answer, the request is
// sent to the next upstream while its budget lasts.
func (p *Pool) Forward(req *Request, done func(Result)) {
	p.ForwardAdding(req, nil, done)
}

// ForwardAdding is Forward that appends extra (whole encoded attributes, see
// packet.ForwardRequestAdding) to the copy each upstream gets.
func (p *Pool) ForwardAdding(req *Request, extra []byte, done func(Result)) {
	p.inflight.Add(1)
	a := &attempt{pool: p, req: req, done: done, extra: extra}
	if p.udp {
		// Only a RADIUS/UDP upstream needs the NAS's retransmissions (RFC 5080 §2.2.1); over
		// RadSec the transport retransmits. Registering costs a closure and a lock per request.
		req.onRetransmit(a.retransmit)
	}
	a.next()
}

type attempt struct {
	pool  *Pool
	req   *Request
	done  func(Result)
	tried uint64
	up    *Upstream
	auth  [packet.AuthLen]byte
	ps    [ProxyStateLen]byte
	sent  time.Time
	extra []byte
	// v11: the last build was for a RADIUS/1.1 connection (build11), so the reply comes in that
	// form. Written by the build, read by the handler the same connection calls after it.
	v11 bool
	// ticket is the UDP transmission in flight, for the NAS's retransmissions (upstream_udp.go).
	ticket atomic.Pointer[udpTicket]
}

func (a *attempt) finish(r Result) {
	a.pool.inflight.Add(-1)
	a.done(r)
}

// next sends the request to the best untried upstream.
func (a *attempt) next() {
	p := a.pool
	for {
		u := p.pick(a.req, a.tried)
		if u == nil {
			a.finish(Result{Err: ErrNoUpstream})
			return
		}
		a.tried |= 1 << u.idx
		a.up = u
		binary.BigEndian.PutUint32(a.ps[4:], p.psCounter.Add(1))
		copy(a.ps[:4], p.psPrefix[:])
		a.sent = p.opts.Now()
		err := a.send(u)
		if err == nil {
			return
		}
		p.opts.Logger.Debug("upstream refused request", "upstream", u.opts.Name, "err", err)
	}
}

func (a *attempt) build(dst []byte, id uint8) (packet.Packet, error) {
	a.v11 = false
	rand.Read(a.auth[:])
	k := packet.Rekey{
		FromSecret: a.req.Client.Secret,
		ToSecret:   a.up.opts.Secret,
		ToMAKey:    a.up.maKey,
		Salt:       binary.BigEndian.Uint16(a.auth[:]),
	}
	if dst == nil {
		// Sized once: appending to nil grew the copy three times per request.
		dst = make([]byte, 0, forwardLen(a.req.Packet)+len(a.extra))
	}
	return packet.ForwardRequestAdding(dst, a.req.Packet, &k, id, a.auth[:], a.ps[:], a.extra)
}

// build11 is build for a RADIUS/1.1 connection (RFC 9765): the NAS's hidden attributes are
// decrypted and sent in the clear in the same pass that would re-key them, with no
// Message-Authenticator; the connection writes the Token.
func (a *attempt) build11(dst []byte, id uint8) (packet.Packet, error) {
	a.v11 = true
	rand.Read(a.auth[:]) // the salts of the response's re-encryption come from it
	k := packet.Rekey{FromSecret: a.req.Client.Secret, ToClear: true}
	if dst == nil {
		dst = make([]byte, 0, forwardLen(a.req.Packet)+len(a.extra))
	}
	return packet.ForwardRequestAdding(dst, a.req.Packet, &k, id, nil, a.ps[:], a.extra)
}

// handle runs on the connection's reader goroutine (or the caller's, for a build failure).
func (a *attempt) handle(resp packet.Packet, err error) {
	p := a.pool
	if err != nil {
		if (errors.Is(err, radsec.ErrConnDead) || errors.Is(err, radsec.ErrClosed)) && p.opts.Now().Before(a.req.Deadline) {
			p.opts.Logger.Debug("retrying on next upstream", "upstream", a.up.opts.Name, "err", err)
			p.stats.Load().Retried.Add(1)
			a.next()
			return
		}
		a.finish(Result{Upstream: a.up.opts.Name, Err: err})
		return
	}
	if !answers(a.req.Packet.Code(), resp.Code()) {
		a.finish(Result{Upstream: a.up.opts.Name, Err: fmt.Errorf("%w: %v to %v", ErrBadReply, resp.Code(), a.req.Packet.Code())})
		return
	}
	k := packet.Rekey{
		FromSecret: a.up.opts.Secret,
		FromAuth:   a.auth[:],
		ToSecret:   a.req.Client.Secret,
		ToMAKey:    a.req.Client.maKey,
		Salt:       binary.BigEndian.Uint16(a.auth[2:]),
		// A RADIUS/1.1 reply carries hidden attributes in the clear: they are hidden with the
		// NAS's secret here, and the reply signed for it, in the same pass.
		FromClear: a.v11,
	}
	// Sized once: the reply without our Proxy-State, with a Message-Authenticator at most added.
	out, err := packet.ForwardResponse(make([]byte, 0, min(len(resp)+18, packet.MaxLen)), resp, &k, a.req.Packet, a.ps[:])
	if err != nil && !errors.Is(err, packet.ErrProxyState) {
		a.finish(Result{Upstream: a.up.opts.Name, Err: fmt.Errorf("%w: %w", ErrBadReply, err)})
		return
	}
	if resp.Code() == packet.CodeAccessChallenge {
		if state, ok := resp.Attr(packet.AttrState); ok {
			p.pin(state, a.up)
		}
	}
	a.finish(Result{Response: out, Upstream: a.up.opts.Name, RTT: p.opts.Now().Sub(a.sent)})
}

// answers reports whether a reply code is a valid answer to a request code.
func answers(req, resp packet.Code) bool {
	switch req {
	case packet.CodeAccessRequest:
		return resp == packet.CodeAccessAccept || resp == packet.CodeAccessReject || resp == packet.CodeAccessChallenge
	case packet.CodeAccountingRequest:
		return resp == packet.CodeAccountingResponse
	}
	return false
}
