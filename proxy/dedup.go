package proxy

import (
	"hash/maphash"
	"net/netip"
	"sync"
	"sync/atomic"
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

// dupState is where an entry of the duplicate cache is in its life.
type dupState uint8

const (
	dupFree    dupState = iota // the slot holds nothing
	dupPending                 // the request is being processed
	dupDone                    // answered (resp != nil) or deliberately left unanswered (resp == nil)
)

type dupEntry struct {
	key     dupKey
	hash    uint64 // key's hash, the shard map's key
	seq     uint64 // which request holds the slot; a handle with another seq is stale
	state   dupState
	resp    []byte
	expires int64
	// retransmit, if set, is how the request's upstream sends it again when the NAS retransmits
	// it while it is in flight (a RADIUS/UDP upstream, RFC 5080 §2.2.1).
	retransmit func()
}

// dupHandle is a request's claim on its duplicate-cache slot. The slot may be given to another
// request when the cache is full; seq tells complete that it was.
type dupHandle struct {
	shard *dupShard
	idx   uint32
	seq   uint64
}

const dupShards = 64

// DefaultDuplicateCacheSize is how many requests the duplicate cache remembers (ServerOptions).
// At the default 10 s window it holds every answer of the window up to 10,000 requests/s; above
// that the oldest answers go first, when their NAS has long stopped retransmitting (RFC 5080
// §2.2.2 needs an answer only for the NAS's retransmit window, typically 2–5 s).
const DefaultDuplicateCacheSize = 100_000

// The bounds of ServerOptions.DuplicateCacheSize: every shard's ring useful, and no more memory
// than a few gigabytes.
const (
	minDuplicateCacheSize = dupShards * 16
	maxDuplicateCacheSize = 10_000_000
)

// dupCache absorbs retransmissions of requests in flight and answers retransmissions of answered
// requests from the cached response for a window. Its memory is fixed by its size, not by the
// request rate times the window: each shard is a ring of slots allocated once, reused oldest first,
// with a map from key to slot. An answer pushed out before its window has passed is counted in
// evicted.
type dupCache struct {
	seed    maphash.Seed
	window  time.Duration
	now     func() time.Time
	evicted *atomic.Uint64
	shards  [dupShards]dupShard
}

type dupShard struct {
	mu sync.Mutex
	// m maps a key's hash to its slot: 8-octet keys without pointers, so the map costs a small
	// part of what one keyed by dupKey did (BenchmarkDupCache) and the collector never scans it.
	// The slot's own key is compared, so a collision of hashes is never taken for a duplicate.
	m      map[uint64]uint32
	ring   []dupEntry
	oldest uint32 // the oldest occupied slot; slots oldest..oldest+used-1 (mod len) are occupied
	used   uint32
	seq    uint64
}

// newDupCache makes a cache of size entries (at least minDuplicateCacheSize); evicted counts
// answers pushed out before their window ended.
func newDupCache(size int, window time.Duration, now func() time.Time, evicted *atomic.Uint64) *dupCache {
	size = max(size, minDuplicateCacheSize)
	c := &dupCache{seed: maphash.MakeSeed(), window: window, now: now, evicted: evicted}
	per := (size + dupShards - 1) / dupShards
	for i := range c.shards {
		c.shards[i].m = make(map[uint64]uint32, per)
		c.shards[i].ring = make([]dupEntry, per)
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

// begin registers a request arriving at now, or reports it as a retransmission. For one in
// flight, the returned function (nil when there is none) passes the retransmission on upstream.
func (c *dupCache) begin(k dupKey, now time.Time) (dupHandle, dupVerdict, []byte, func()) {
	t := now.UnixNano()
	s := c.shard(&k)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	hk := maphash.Comparable(c.seed, k)
	if i, ok := s.m[hk]; ok && s.ring[i].key == k {
		e := &s.ring[i]
		switch {
		case e.state == dupPending:
			return dupHandle{}, dupInFlight, nil, e.retransmit
		case e.resp != nil && e.expires > t:
			return dupHandle{}, dupAnswered, e.resp, nil
		}
		// Deliberately unanswered (e.g. accounting that could not be stored), or answered longer
		// ago than the window and not swept yet: process again, in the same slot.
		e.seq, e.state, e.expires, e.retransmit = s.seq, dupPending, 0, nil
		return dupHandle{shard: s, idx: i, seq: s.seq}, dupNew, nil, nil
	}
	n := uint32(len(s.ring))
	if s.used == n {
		// Full: the oldest slot goes, answered or not. A request still pending loses only its
		// protection against retransmissions; its answer still goes out (complete sees the stale
		// handle).
		c.free(s, s.oldest, t)
	}
	i := (s.oldest + s.used) % n
	s.used++
	// A different key with the same hash (about 2^-64 a pair) takes the map's entry over: the
	// older request only loses its protection against retransmissions.
	s.ring[i] = dupEntry{key: k, hash: hk, seq: s.seq, state: dupPending}
	s.m[hk] = i
	return dupHandle{shard: s, idx: i, seq: s.seq}, dupNew, nil, nil
}

// setRetransmit records how h's request is sent again upstream while it is pending.
func (c *dupCache) setRetransmit(h dupHandle, f func()) {
	s := h.shard
	if s == nil {
		return
	}
	s.mu.Lock()
	if e := &s.ring[h.idx]; e.seq == h.seq && e.state == dupPending {
		e.retransmit = f
	}
	s.mu.Unlock()
}

// free empties the oldest slot i at time t; one pushed out while pending or in its window is
// counted as evicted.
func (c *dupCache) free(s *dupShard, i uint32, t int64) {
	e := &s.ring[i]
	if c.evicted != nil && (e.state == dupPending || e.expires > t) {
		c.evicted.Add(1)
	}
	if j, ok := s.m[e.hash]; ok && j == i {
		delete(s.m, e.hash)
	}
	*e = dupEntry{}
	s.oldest = (s.oldest + 1) % uint32(len(s.ring))
	s.used--
}

// complete records the response (nil: none was sent) and starts the entry's window. A handle whose
// slot was reused meanwhile changes nothing.
func (c *dupCache) complete(h dupHandle, resp []byte) {
	s := h.shard
	if s == nil {
		return
	}
	exp := c.now().Add(c.window).UnixNano()
	s.mu.Lock()
	if e := &s.ring[h.idx]; e.seq == h.seq && e.state == dupPending {
		e.state, e.resp, e.expires, e.retransmit = dupDone, resp, exp, nil
	}
	s.mu.Unlock()
}

// sweep forgets the oldest entries whose window has passed. Slots are taken in arrival order, so
// the walk stops at the first one still pending or in its window; a slot behind it waits for the
// next sweep, or for a new request to need it.
func (c *dupCache) sweep(now time.Time) {
	t := now.UnixNano()
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		for s.used > 0 {
			e := &s.ring[s.oldest]
			if e.state == dupPending || e.expires > t {
				break
			}
			c.free(s, s.oldest, t)
		}
		s.mu.Unlock()
	}
}

// len reports how many requests the cache remembers.
func (c *dupCache) len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		n += int(s.used)
		s.mu.Unlock()
	}
	return n
}
