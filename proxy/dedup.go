package proxy

import (
	"net/netip"
	"sync"
	"time"

	"mxedge/proxy/packet"
)

// dupKey identifies a request for duplicate detection (RFC 5080 §2.2.2): the same source address and
// port (or RadSec stream), identifier and Request Authenticator.
type dupKey struct {
	src  netip.AddrPort
	conn uint64 // RadSec stream; 0 for UDP
	id   uint8
	auth [packet.AuthLen]byte
}

type dupEntry struct {
	key     dupKey
	done    bool
	resp    []byte
	expires int64
	// retransmit, if set, is how the request's upstream sends it again when the NAS retransmits
	// it while it is in flight (a RADIUS/UDP upstream, RFC 5080 §2.2.1).
	retransmit func()
}

const dupShards = 64

// dupCache absorbs retransmissions of requests in flight and answers retransmissions of answered
// requests from the cached response for a window.
type dupCache struct {
	window time.Duration
	now    func() time.Time
	shards [dupShards]dupShard
}

type dupShard struct {
	mu   sync.Mutex
	m    map[dupKey]*dupEntry
	fifo []*dupEntry // answered entries in expiry order
}

func newDupCache(window time.Duration, now func() time.Time) *dupCache {
	c := &dupCache{window: window, now: now}
	for i := range c.shards {
		c.shards[i].m = make(map[dupKey]*dupEntry)
	}
	return c
}

func (c *dupCache) shard(k *dupKey) *dupShard {
	return &c.shards[(k.auth[0]^k.auth[7]^k.id)%dupShards]
}

// dupVerdict is what to do with an arriving request.
type dupVerdict uint8

const (
	dupNew      dupVerdict = iota // process it
	dupInFlight                   // the original is still being processed: absorb
	dupAnswered                   // resend the cached response
)

// begin registers a request, or reports it as a retransmission. For one in flight, the returned
// function (nil when there is none) passes the retransmission on to the upstream.
func (c *dupCache) begin(k dupKey) (*dupEntry, dupVerdict, []byte, func()) {
	s := c.shard(&k)
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.m[k]; ok {
		switch {
		case !e.done:
			return nil, dupInFlight, nil, e.retransmit
		case e.resp != nil:
			return nil, dupAnswered, e.resp, nil
		}
		// Deliberately unanswered (e.g. accounting that could not be stored): process again.
	}
	e := &dupEntry{key: k}
	s.m[k] = e
	return e, dupNew, nil, nil
}

// setRetransmit records how e's request is sent again upstream.
func (c *dupCache) setRetransmit(e *dupEntry, f func()) {
	s := c.shard(&e.key)
	s.mu.Lock()
	if !e.done {
		e.retransmit = f
	}
	s.mu.Unlock()
}

// complete records the response (nil: none was sent) and starts the entry's window.
func (c *dupCache) complete(e *dupEntry, resp []byte) {
	if e == nil {
		return
	}
	s := c.shard(&e.key)
	s.mu.Lock()
	e.done, e.resp, e.retransmit = true, resp, nil
	e.expires = c.now().Add(c.window).UnixNano()
	s.fifo = append(s.fifo, e)
	s.mu.Unlock()
}

// sweep forgets answered entries whose window has passed.
func (c *dupCache) sweep(now time.Time) {
	t := now.UnixNano()
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		n := 0
		for _, e := range s.fifo {
			if e.expires > t {
				break
			}
			if s.m[e.key] == e {
				delete(s.m, e.key)
			}
			n++
		}
		if n > 0 {
			s.fifo = append(s.fifo[:0], s.fifo[n:]...)
		}
		s.mu.Unlock()
	}
}
