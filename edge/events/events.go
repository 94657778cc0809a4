// Package events owns mxedge's in-memory NAC event bus: one Event per authorization decision
// (allowed or denied, by the cloud NAC upstream or locally), kept in a ring of the most recent ones
// for `mxedge events` and fanned out to live subscribers (`mxedge events --follow`, the metrics
// exporter). Publishing never blocks the request path: a subscriber that falls behind loses events,
// and the loss is counted.
package events

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// Sources of a decision.
const (
	SourceUpstream = "upstream" // the cloud NAC answered through a RadSec upstream
	SourceLocal    = "local"    // survivability answered while the cloud was unreachable
	SourceExternal = "external" // a server of a route's pool other than the cloud (eduroam national servers)
	SourceRoute    = "route"    // a route's own Access-Reject (reject route, loop)
)

// Defaults.
const (
	// DefaultSize is how many recent events the ring keeps.
	DefaultSize = 1000
	// DefaultBuffer is a subscriber's channel capacity.
	DefaultBuffer = 256
)

// Event is one NAC decision.
type Event struct {
	Time     time.Time `json:"time"`
	Allowed  bool      `json:"allowed"`
	Method   string    `json:"method,omitempty"` // mab, eap-tls, pap, eap, accounting, status-server
	MAC      string    `json:"mac,omitempty"`
	Identity string    `json:"identity,omitempty"`
	NAS      string    `json:"nas,omitempty"`
	Port     string    `json:"nas_port,omitempty"` // NAS-Port-Id, else NAS-Port
	SSID     string    `json:"ssid,omitempty"`     // from Called-Station-Id "MAC:SSID"
	Site     string    `json:"site,omitempty"`
	VLAN     string    `json:"vlan,omitempty"`
	Reason   string    `json:"reason,omitempty"`
	Source   string    `json:"source"`             // SourceUpstream, SourceLocal, SourceExternal or SourceRoute
	Upstream string    `json:"upstream,omitempty"` // the upstream that answered
	// Route, Pool and Realm: a decision a route brought about that is not the cloud's (source
	// external or route): the route, its pool (the one the answering server belongs to), the
	// realm of User-Name.
	Route string `json:"route,omitempty"`
	Pool  string `json:"pool,omitempty"`
	Realm string `json:"realm,omitempty"`
	// Type is the Mist guide's name of the event ("NAC Client Access Allowed", "NAC Client
	// Certificate Expired", …: survivability.Type*); absent for accounting.
	Type string `json:"type,omitempty"`
	// The client certificate of a local EAP-TLS conversation, once one was presented: serial in
	// lower-case hex, subject CN, issuer DN (RFC 4514), end of validity (RFC 3339 in JSON).
	CertSerial   string    `json:"cert_serial,omitempty"`
	CertCN       string    `json:"cert_cn,omitempty"`
	CertIssuer   string    `json:"cert_issuer,omitempty"`
	CertNotAfter time.Time `json:"cert_not_after,omitzero"`
}

// Options configure a Bus.
type Options struct {
	// Size of the ring of recent events. Default DefaultSize.
	Size int
	// Buffer is each subscriber's channel capacity. Default DefaultBuffer.
	Buffer int
	// Now stamps events published without a Time. Default time.Now.
	Now func() time.Time
}

// Bus is the event bus. The zero value is not usable; use New.
type Bus struct {
	now    func() time.Time
	buffer int

	mu   sync.Mutex
	ring []Event
	next int // where the next event goes
	full bool
	subs map[*subscriber]struct{}

	published atomic.Uint64
	dropped   atomic.Uint64
}

type subscriber struct {
	ch chan Event
}

// New returns a Bus.
func New(o Options) *Bus {
	if o.Size <= 0 {
		o.Size = DefaultSize
	}
	if o.Buffer <= 0 {
		o.Buffer = DefaultBuffer
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Bus{now: o.Now, buffer: o.Buffer, ring: make([]Event, o.Size), subs: map[*subscriber]struct{}{}}
}

// Publish records ev and offers it to every subscriber without waiting: a subscriber whose buffer
// is full misses it (counted in Dropped). Safe on the request path.
func (b *Bus) Publish(ev Event) {
	if ev.Time.IsZero() {
		ev.Time = b.now()
	}
	b.published.Add(1)
	b.mu.Lock()
	defer b.mu.Unlock()
	b.ring[b.next] = ev
	b.next++
	if b.next == len(b.ring) {
		b.next, b.full = 0, true
	}
	for s := range b.subs {
		select {
		case s.ch <- ev:
		default:
			b.dropped.Add(1)
		}
	}
}

// Recent returns up to n of the most recent events, oldest first (n <= 0: all kept).
func (b *Bus) Recent(n int) []Event {
	b.mu.Lock()
	defer b.mu.Unlock()
	have := b.next
	if b.full {
		have = len(b.ring)
	}
	if n <= 0 || n > have {
		n = have
	}
	out := make([]Event, n)
	start := b.next - n
	for i := range out {
		out[i] = b.ring[(start+i+len(b.ring))%len(b.ring)]
	}
	return out
}

// Subscribe returns a channel of events published from now on. It is closed when ctx ends; the
// subscription is then removed.
func (b *Bus) Subscribe(ctx context.Context) <-chan Event {
	s := &subscriber{ch: make(chan Event, b.buffer)}
	b.mu.Lock()
	b.subs[s] = struct{}{}
	b.mu.Unlock()
	context.AfterFunc(ctx, func() {
		b.mu.Lock()
		delete(b.subs, s)
		close(s.ch)
		b.mu.Unlock()
	})
	return s.ch
}

// Published counts every event published.
func (b *Bus) Published() uint64 { return b.published.Load() }

// Dropped counts events a slow subscriber missed.
func (b *Bus) Dropped() uint64 { return b.dropped.Load() }

// Subscribers is the number of live subscriptions.
func (b *Bus) Subscribers() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.subs)
}
