// Package cluster joins the edges of a site into a cluster: membership and failure detection
// (hashicorp/memberlist, the SWIM implementation under Consul, Serf and Nomad), which edges reach
// the cloud, and replication of the client cache, so that an edge serves during an outage every
// client any edge of the site learned from the cloud, and of the session table, so that a CoA or
// an accounting Stop finds the session whichever edge saw it begin and a locally admitted session
// is reconciled once. Traffic is authenticated and encrypted with
// memberlist's keyring (AES-GCM); an edge without a key cannot join or read. There is no leader
// and no quorum: two edges are a cluster. The merge rule is last-writer-wins on the decision's
// hybrid-clock stamp (Clock, cache.Store.Merge); docs/cluster.md describes it.
package cluster

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"

	"mxedge/cache"
	"mxedge/cache/session"
)

// Defaults of Options.
const (
	DefaultPort           = 7946
	DefaultSyncInterval   = 30 * time.Second
	DefaultProbeInterval  = time.Second
	DefaultGossipInterval = 200 * time.Millisecond
	DefaultTombstoneTTL   = 7 * 24 * time.Hour
	DefaultMaxTombstones  = 100_000
	// inboxSize bounds the messages waiting for the worker; beyond it they are dropped (counted)
	// and the next anti-entropy round repairs what they carried.
	inboxSize = 8192
	// digestTTL bounds how often the cache is walked to summarise it; askAgain how soon a
	// differing bucket is asked for again.
	digestTTL = 2 * time.Second
	askAgain  = 5 * time.Second
	// batchBytes cuts the answer to a pull into reliable messages of about this size.
	batchBytes = 256 << 10
	// packetLimit bounds a datagram of changes so it fits memberlist's UDP buffer (1400 octets)
	// with the encryption and message framing around it; a single larger change goes over TCP.
	packetLimit = 1200
	flushEvery  = 10 * time.Millisecond
)

// Store is the replicated cache (cache.Store).
type Store interface {
	LearnAt(r cache.Record, at time.Time)
	ForgetMAB(mac string)
	ForgetIdentity(identity string)
	ForgetBefore(method cache.Method, mac, identity string, at time.Time) (bool, error)
	Merge(recs []cache.Record) (cache.MergeReport, error)
	MergeQueued(r cache.Record)
	List(fn func(cache.Record) bool) error
	Stats() cache.Stats
}

// SessionStore is the replicated session table: read for anti-entropy (cache/session.Store's
// ListReplica and Stats) and written through the table's one writer (MergeQueued must not block:
// a record it cannot queue is dropped, and anti-entropy brings it again).
type SessionStore interface {
	ListReplica(fn func(session.Record) bool) error
	MergeQueued(r session.Record)
	Stats() session.Stats
}

// Options configure a cluster member.
type Options struct {
	// Name is this edge's unique name in the cluster. Default: the host name.
	Name string
	// Bind is the address gossip listens on (UDP and TCP). Default 0.0.0.0:DefaultPort.
	Bind netip.AddrPort
	// Advertise is the address peers reach this edge on; default: Bind, or the host's address
	// when Bind is unspecified.
	Advertise netip.AddrPort
	// Join are peers to contact at start ("host:port"); retried until one answers.
	Join []string
	// Keys are the AES keys (16, 24 or 32 octets), the first the one used to send; all are
	// accepted on receive, so a key is rotated by adding the new one everywhere, then making it
	// first, then removing the old. Required.
	Keys [][]byte
	// Site and RadSec are published to peers: this edge's site and its RadSec listener address
	// ("" when it has none).
	Site   string
	RadSec string
	// Store is the cache to replicate. Required.
	Store Store
	// Sessions is the session table to replicate; nil: sessions stay on the edge that saw them.
	// The table must be opened with this member's Name as its Node and Clock.Now as its clock,
	// and its Share must call ShareSession.
	Sessions SessionStore
	// StatePath is the file tombstones are kept in across restarts (tombstones.go); "": in
	// memory only.
	StatePath string
	// Clock stamps decisions; the cache must be opened with Clock.Now as its clock. Required.
	Clock *Clock
	// ReachesCloud reports whether this edge reaches the cloud now (published to peers). nil:
	// always false.
	ReachesCloud func() bool
	// Timers. Defaults DefaultSyncInterval, DefaultProbeInterval, DefaultGossipInterval.
	SyncInterval   time.Duration
	ProbeInterval  time.Duration
	GossipInterval time.Duration
	// TombstoneTTL is how long a forget (an upstream Access-Reject) is remembered so that a
	// partitioned edge cannot bring the forgotten record back; give it the cache's TTL. Default
	// DefaultTombstoneTTL. MaxTombstones bounds them (oldest dropped first, counted).
	TombstoneTTL  time.Duration
	MaxTombstones int
	// Events receives membership changes; it must not block. nil: none.
	Events func(Event)
	Logger *slog.Logger // nil discards
}

// Validate checks the options without binding anything.
func (o *Options) Validate() error {
	if len(o.Keys) == 0 {
		return errors.New("cluster: no key: cluster traffic is always encrypted")
	}
	for i, k := range o.Keys {
		switch len(k) {
		case 16, 24, 32:
		default:
			return fmt.Errorf("cluster: key %d is %d octets (want 16, 24 or 32)", i+1, len(k))
		}
	}
	if len(o.Name) > maxName {
		return fmt.Errorf("cluster: name longer than %d octets", maxName)
	}
	for _, j := range o.Join {
		if _, _, err := net.SplitHostPort(j); err != nil {
			return fmt.Errorf("cluster: join %q: want host:port", j)
		}
	}
	if o.Store == nil || o.Clock == nil {
		return errors.New("cluster: a store and a clock are required")
	}
	for _, d := range []time.Duration{o.SyncInterval, o.ProbeInterval, o.GossipInterval, o.TombstoneTTL} {
		if d < 0 {
			return errors.New("cluster: negative interval")
		}
	}
	return nil
}

func (o *Options) setDefaults() {
	if o.Name == "" {
		o.Name, _ = os.Hostname()
	}
	if !o.Bind.IsValid() {
		o.Bind = netip.AddrPortFrom(netip.IPv4Unspecified(), DefaultPort)
	}
	if o.SyncInterval == 0 {
		o.SyncInterval = DefaultSyncInterval
	}
	if o.ProbeInterval == 0 {
		o.ProbeInterval = DefaultProbeInterval
	}
	if o.GossipInterval == 0 {
		o.GossipInterval = DefaultGossipInterval
	}
	if o.TombstoneTTL == 0 {
		o.TombstoneTTL = DefaultTombstoneTTL
	}
	if o.MaxTombstones == 0 {
		o.MaxTombstones = DefaultMaxTombstones
	}
	if o.ReachesCloud == nil {
		o.ReachesCloud = func() bool { return false }
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// Event is a membership change seen by this edge.
type Event struct {
	Type   string // "join", "leave", "suspect", "alive", "update"
	Member Member
}

// Cluster is this edge's membership in the cluster. It implements the cache learner's writer
// (Learn, ForgetMAB, ForgetIdentity): decisions are written locally and sent to the peers.
type Cluster struct {
	opts Options
	ml   *memberlist.Memberlist
	// out collects the changes to send (entry bodies), flushed to every member as datagrams of at
	// most packetLimit octets every flushEvery, or at once when a datagram is full.
	omu   sync.Mutex
	out   []byte
	outN  int
	inbox chan []byte
	cloud atomic.Bool

	tmu   sync.Mutex
	tombs map[string]tombstone
	// tdb keeps the tombstones across restarts (nil: StatePath unset); tdirty are the changes
	// since the last flush (a nil value: deleted), written every tick, off the request path.
	tdb    *tombDB
	tdirty map[string]*tombstone

	// peers is this edge's copy of the member list, kept from memberlist's event callbacks,
	// which run under memberlist's lock: the *memberlist.Node values Members() returns are
	// updated in place by memberlist's goroutines and cannot be read safely afterwards.
	pmu   sync.Mutex
	peers map[string]peer

	// Anti-entropy state: the last digest (recomputed at most every digestTTL, since a digest
	// walks the whole cache), one pull at a time, and when each bucket was last asked for.
	dmu       sync.Mutex
	dg        *digest
	dgAt      time.Time
	pulling   atomic.Bool
	answering chan struct{} // tokens: pulls being answered
	askedAt   [digestBuckets]time.Time

	smu     sync.Mutex
	stats   counters
	started time.Time
	// lastKeyLog and lastJoinLog rate-limit the log lines of repeated refusals and failed joins.
	lastKeyLog, lastJoinLog time.Time
	joinFailures            int
}

// New creates the member and binds its sockets; Run joins and serves.
func New(o Options) (*Cluster, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	o.setDefaults()
	c := &Cluster{opts: o, inbox: make(chan []byte, inboxSize), answering: make(chan struct{}, 2), tombs: map[string]tombstone{},
		tdirty: map[string]*tombstone{}, peers: map[string]peer{}, started: time.Now()}
	if o.StatePath != "" {
		db, ts, err := openTombDB(o.StatePath, time.Now().Add(-o.TombstoneTTL))
		if err != nil {
			return nil, err
		}
		c.tdb = db
		for _, t := range ts {
			c.keepTombstone(t)
		}
		clear(c.tdirty) // they are on disk already
	}
	c.cloud.Store(o.ReachesCloud())
	conf := memberlist.DefaultLANConfig()
	conf.Name = o.Name
	conf.BindAddr = o.Bind.Addr().String()
	conf.BindPort = int(o.Bind.Port())
	if o.Advertise.IsValid() {
		conf.AdvertiseAddr = o.Advertise.Addr().String()
		conf.AdvertisePort = int(o.Advertise.Port())
	} else if !o.Bind.Addr().IsUnspecified() {
		conf.AdvertiseAddr = o.Bind.Addr().String()
		conf.AdvertisePort = int(o.Bind.Port())
	}
	kr, err := memberlist.NewKeyring(o.Keys[1:], o.Keys[0])
	if err != nil {
		return nil, fmt.Errorf("cluster: keyring: %w", err)
	}
	conf.Keyring = kr
	conf.GossipVerifyIncoming, conf.GossipVerifyOutgoing = true, true
	conf.Label = "mxedge"
	conf.EnableCompression = false // records are small binary; LZW costs more CPU than the LAN bytes it saves
	conf.PushPullInterval = o.SyncInterval
	conf.ProbeInterval = o.ProbeInterval
	conf.ProbeTimeout = min(o.ProbeInterval/2, 500*time.Millisecond)
	conf.GossipInterval = o.GossipInterval
	conf.Delegate = (*delegate)(c)
	conf.Events = (*events)(c)
	conf.Ping = (*pings)(c)
	conf.Logger = log.New(&logWriter{l: o.Logger, c: c}, "", 0)
	ml, err := memberlist.Create(conf)
	if err != nil {
		c.closeTombs()
		return nil, fmt.Errorf("cluster: %w", err)
	}
	c.ml = ml
	return c, nil
}

// Run joins the peers (retrying until one answers), applies what peers send, publishes this
// edge's reachability of the cloud as it changes, and on cancel leaves the cluster and closes.
func (c *Cluster) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		c.worker(ctx)
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		c.flusher(ctx)
	}()
	c.join(ctx)
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	joinTick := time.NewTicker(5 * time.Second)
	defer joinTick.Stop()
	for {
		select {
		case <-ctx.Done():
			if err := c.ml.Leave(time.Second); err != nil {
				c.opts.Logger.Warn("cluster leave", "err", err)
			}
			err := c.ml.Shutdown()
			wg.Wait()
			c.pruneTombstones()
			c.closeTombs()
			return err
		case <-tick.C:
			if now := c.opts.ReachesCloud(); now != c.cloud.Load() {
				c.cloud.Store(now)
				if err := c.ml.UpdateNode(time.Second); err != nil {
					c.opts.Logger.Warn("cluster cannot publish cloud state", "err", err)
				}
			}
			c.pruneTombstones()
			c.flushTombs()
		case <-joinTick.C:
			if c.ml.NumMembers() < 2 {
				c.join(ctx)
			}
		}
	}
}

func (c *Cluster) join(ctx context.Context) {
	var seeds []string
	self := c.ml.LocalNode().Address()
	for _, j := range c.opts.Join {
		if j != self {
			seeds = append(seeds, j)
		}
	}
	if len(seeds) == 0 || ctx.Err() != nil {
		return
	}
	n, err := c.ml.Join(seeds)
	if err != nil && n == 0 {
		c.joinFailures++
		if now := time.Now(); c.joinFailures == 1 || now.Sub(c.lastJoinLog) >= time.Minute {
			c.lastJoinLog = now
			c.opts.Logger.Warn("cluster join failed", "peer", strings.Join(seeds, ","), "attempts", c.joinFailures,
				"err", strings.Join(strings.Fields(err.Error()), " "))
		}
		return
	}
	c.joinFailures = 0
	c.opts.Logger.Info("cluster joined", "peer", strings.Join(seeds, ","), "members", c.ml.NumMembers())
}

// Learn stores r as learned now (a stamp of the cluster's clock) and sends it to the peers.
func (c *Cluster) Learn(r cache.Record) {
	at := c.opts.Clock.Now()
	c.opts.Store.LearnAt(r, at)
	r.LastAuthorized, r.Expires = at, time.Time{}
	if r.FirstSeen.IsZero() || r.FirstSeen.After(at) {
		r.FirstSeen = at
	}
	body, err := appendEntry(nil, entry{rec: r})
	if err != nil {
		return // the store refused it too, and logged why
	}
	c.send(body)
}

// ForgetMAB forgets mac's MAB record here and, by a tombstone, on every peer.
func (c *Cluster) ForgetMAB(mac string) {
	m, err := cache.NormalizeMAC(mac)
	if err != nil {
		return
	}
	c.opts.Store.ForgetMAB(m)
	c.forget(tombstone{Method: cache.MethodMAB, MAC: m, At: c.opts.Clock.Now()})
}

// ForgetIdentity forgets identity's EAP-TLS records here and on every peer.
func (c *Cluster) ForgetIdentity(identity string) {
	if identity == "" {
		return
	}
	c.opts.Store.ForgetIdentity(identity)
	c.forget(tombstone{Method: cache.MethodEAPTLS, Identity: identity, At: c.opts.Clock.Now()})
}

// ShareSession sends a session record this edge wrote (the table's Share) to every member.
func (c *Cluster) ShareSession(r session.Record) {
	body, err := appendEntry(nil, entry{sess: &r})
	if err != nil {
		c.opts.Logger.Warn("cluster session not shared", "nas", r.NAS, "mac", r.MAC, "err", err)
		return
	}
	c.smu.Lock()
	c.stats.sessionsSent++
	c.smu.Unlock()
	c.send(body)
}

func (c *Cluster) forget(t tombstone) {
	c.keepTombstone(t)
	body, _ := appendEntry(nil, entry{forget: true, tomb: t})
	c.send(body)
}

// send queues one change (an entry body) for every member. It never blocks on the network: the
// flusher sends.
func (c *Cluster) send(body []byte) {
	if len(body) > packetLimit-8 {
		msg := append([]byte{wireVersion, msgChanges, 1}, body...)
		go c.toAll(msg, true)
		return
	}
	c.omu.Lock()
	if len(c.out)+len(body) > packetLimit-8 {
		c.flushLocked()
	}
	c.out = append(c.out, body...)
	c.outN++
	c.omu.Unlock()
}

// flushLocked hands the collected changes to the flusher as one datagram; c.omu is held.
func (c *Cluster) flushLocked() {
	if c.outN == 0 {
		return
	}
	msg := append([]byte{wireVersion, msgChanges}, uvarint(c.outN)...)
	msg = append(msg, c.out...)
	c.out, c.outN = c.out[:0], 0
	go c.toAll(msg, false)
}

// flusher sends what Learn and Forget collected every flushEvery.
func (c *Cluster) flusher(ctx context.Context) {
	t := time.NewTicker(flushEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			c.omu.Lock()
			c.flushLocked()
			c.omu.Unlock()
		}
	}
}

// toAll sends msg to every other member: a datagram (a loss is repaired by anti-entropy) or over
// TCP.
func (c *Cluster) toAll(msg []byte, reliable bool) {
	for _, m := range c.Members() {
		n := c.member(m.Name)
		if n == nil || m.Self {
			continue
		}
		var err error
		if reliable {
			err = c.ml.SendReliable(n, msg)
		} else {
			err = c.ml.SendBestEffort(n, msg)
		}
		if err != nil {
			c.opts.Logger.Debug("cluster send failed", "peer", n.Name, "err", err)
			continue
		}
		c.smu.Lock()
		c.stats.sent++
		c.stats.sentBytes += uint64(len(msg))
		c.smu.Unlock()
	}
}

func (c *Cluster) keepTombstone(t tombstone) {
	c.tmu.Lock()
	defer c.tmu.Unlock()
	k := t.key()
	if old, ok := c.tombs[k]; ok && !t.At.After(old.At) {
		return
	}
	c.tombs[k] = t
	c.tdirty[k] = &t
	for len(c.tombs) > c.opts.MaxTombstones {
		var oldest string
		var at time.Time
		for k, t := range c.tombs {
			if oldest == "" || t.At.Before(at) {
				oldest, at = k, t.At
			}
		}
		delete(c.tombs, oldest)
		c.tdirty[oldest] = nil
		c.smu.Lock()
		c.stats.tombstonesDropped++
		c.smu.Unlock()
	}
}

func (c *Cluster) pruneTombstones() {
	limit := time.Now().Add(-c.opts.TombstoneTTL)
	c.tmu.Lock()
	for k, t := range c.tombs {
		if t.At.Before(limit) {
			delete(c.tombs, k)
			c.tdirty[k] = nil
		}
	}
	c.tmu.Unlock()
}

// buried reports whether a tombstone newer than r's stamp forbids r.
func (c *Cluster) buried(r cache.Record) bool {
	var k string
	switch r.Method {
	case cache.MethodMAB:
		k = tombstone{Method: cache.MethodMAB, MAC: r.MAC}.key()
	case cache.MethodEAPTLS:
		k = tombstone{Method: cache.MethodEAPTLS, Identity: r.Identity}.key()
	default:
		return false
	}
	c.tmu.Lock()
	t, ok := c.tombs[k]
	c.tmu.Unlock()
	return ok && !t.At.Before(r.LastAuthorized)
}

// worker applies what peers send, off memberlist's receive loop.
func (c *Cluster) worker(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case b := <-c.inbox:
			msgs := [][]byte{b}
		drain:
			for len(msgs) < 512 {
				select {
				case b := <-c.inbox:
					msgs = append(msgs, b)
				default:
					break drain
				}
			}
			c.apply(msgs)
		}
	}
}

func (c *Cluster) apply(msgs [][]byte) {
	var learned, live, sessions []entry
	for _, b := range msgs {
		m, err := decode(b)
		if err != nil {
			c.smu.Lock()
			c.stats.bad++
			c.smu.Unlock()
			c.opts.Logger.Warn("cluster message refused", "reason", "malformed", "err", err)
			continue
		}
		switch m.typ {
		case msgLearn, msgForget, msgSession, msgBatch, msgChanges:
			for _, e := range m.entries {
				switch {
				case e.sess != nil:
					if m.typ == msgChanges {
						c.noteSessionLag(e.sess.Stamp)
					}
					sessions = append(sessions, e)
				case e.forget:
					c.applyForget(e.tomb)
				case m.typ == msgChanges:
					live = append(live, e)
				default:
					learned = append(learned, e)
				}
			}
			if m.typ == msgChanges {
				for _, e := range m.entries {
					if !e.forget && e.sess == nil {
						c.noteLag(e.rec.LastAuthorized) // a change as it happened, not an anti-entropy answer
					}
				}
			}
		case msgWant:
			// Answered off the worker, which keeps merging meanwhile; at most two answers at once.
			select {
			case c.answering <- struct{}{}:
				go func() {
					defer func() { <-c.answering }()
					c.answerWant(m.node, m.buckets)
				}()
			default:
				c.opts.Logger.Debug("cluster sync request deferred", "peer", m.node, "reason", "busy")
			}
		}
	}
	c.merge(learned)
	c.mergeLive(live)
	c.mergeSessions(sessions)
}

// mergeSessions hands peers' session records to the session table's writer, which merges them
// under the table's rule (cache/session/replica.go) in its next batch.
func (c *Cluster) mergeSessions(es []entry) {
	if len(es) == 0 {
		return
	}
	var skew, got uint64
	for _, e := range es {
		switch {
		case !c.opts.Clock.Observe(e.sess.Stamp):
			skew++
		case c.opts.Sessions == nil:
			// sessions are off here: nothing to merge into
		default:
			c.opts.Sessions.MergeQueued(*e.sess)
			got++
		}
	}
	c.smu.Lock()
	c.stats.skewRefused += skew
	c.stats.sessionsReceived += got
	c.stats.lastSessionMerge = time.Now()
	c.smu.Unlock()
}

func (c *Cluster) noteSessionLag(at time.Time) {
	lag := max(time.Since(at), 0)
	c.smu.Lock()
	c.stats.sessionLastLag = lag
	c.stats.sessionLagSum += lag
	c.stats.sessionLagCount++
	c.smu.Unlock()
}

// mergeLive hands the changes peers are streaming to the cache's batched writer: one commit per
// batch however many datagrams they came in.
func (c *Cluster) mergeLive(es []entry) {
	var skew, buried uint64
	for _, e := range es {
		switch {
		case !c.opts.Clock.Observe(e.rec.LastAuthorized):
			skew++
		case c.buried(e.rec):
			buried++
		default:
			c.opts.Store.MergeQueued(e.rec)
		}
	}
	if len(es) > 0 {
		c.smu.Lock()
		c.stats.skewRefused += skew
		c.stats.conflicts += buried
		c.stats.lastMerge = time.Now()
		c.smu.Unlock()
	}
}

func (c *Cluster) applyForget(t tombstone) {
	if !c.opts.Clock.Observe(t.At) {
		c.smu.Lock()
		c.stats.skewRefused++
		c.smu.Unlock()
		return
	}
	c.keepTombstone(t)
	if _, err := c.opts.Store.ForgetBefore(t.Method, t.MAC, t.Identity, t.At); err != nil {
		c.opts.Logger.Warn("cluster forget failed", "mac", t.MAC, "user", t.Identity, "err", err)
	}
	c.smu.Lock()
	c.stats.forgets++
	c.smu.Unlock()
}

func (c *Cluster) merge(es []entry) {
	if len(es) == 0 {
		return
	}
	recs := make([]cache.Record, 0, len(es))
	var skew, buried int
	for _, e := range es {
		if !c.opts.Clock.Observe(e.rec.LastAuthorized) {
			skew++
			continue
		}
		if c.buried(e.rec) {
			buried++
			continue
		}
		recs = append(recs, e.rec)
	}
	rep, err := c.opts.Store.Merge(recs)
	if err != nil {
		c.opts.Logger.Warn("cluster merge failed", "err", err)
	}
	c.smu.Lock()
	c.stats.merged += uint64(rep.Merged)
	c.stats.conflicts += uint64(rep.Older + buried)
	c.stats.skewRefused += uint64(skew)
	c.stats.refused += uint64(rep.Full + rep.Bad + rep.Expired)
	if rep.Merged > 0 {
		c.stats.lastMerge = time.Now()
	}
	c.smu.Unlock()
}

func (c *Cluster) noteLag(at time.Time) {
	lag := time.Since(at)
	if lag < 0 {
		lag = 0
	}
	c.smu.Lock()
	c.stats.lastLag = lag
	c.stats.lagSum += lag
	c.stats.lagCount++
	c.smu.Unlock()
}

// digest returns the local digest, recomputed when older than digestTTL.
func (c *Cluster) digest() (*digest, error) {
	c.dmu.Lock()
	if c.dg != nil && time.Since(c.dgAt) < digestTTL {
		d := c.dg
		c.dmu.Unlock()
		return d, nil
	}
	c.dmu.Unlock()
	d, err := c.localDigest()
	if err != nil {
		return nil, err
	}
	c.dmu.Lock()
	c.dg, c.dgAt = d, time.Now()
	c.dmu.Unlock()
	return d, nil
}

// answerWant sends the entries of the wanted buckets to the peer that asked.
func (c *Cluster) answerWant(node string, buckets []uint16) {
	peer := c.memberSoon(node)
	if peer == nil || len(buckets) == 0 {
		return
	}
	es, err := c.bucketEntries(buckets)
	if err != nil {
		c.opts.Logger.Warn("cluster cannot read cache for a peer", "peer", node, "err", err)
		return
	}
	var n int
	flush := func(b []byte, count int) {
		if count == 0 {
			return
		}
		msg := append([]byte{wireVersion, msgBatch}, uvarint(count)...)
		msg = append(msg, b...)
		if err := c.ml.SendReliable(peer, msg); err != nil {
			c.opts.Logger.Warn("cluster sync send failed", "peer", node, "err", err)
		}
		c.smu.Lock()
		c.stats.syncRecordsSent += uint64(count)
		c.stats.sentBytes += uint64(len(msg))
		c.smu.Unlock()
	}
	var body []byte
	var sessions uint64
	for _, e := range es {
		nb, err := appendEntry(body, e)
		if err != nil {
			continue
		}
		body = nb
		n++
		if e.sess != nil {
			sessions++
		}
		if len(body) >= batchBytes {
			flush(body, n)
			body, n = body[:0], 0
		}
	}
	flush(body, n)
	c.smu.Lock()
	c.stats.sessionsSyncSent += sessions
	c.smu.Unlock()
}

func uvarint(n int) []byte { return binary.AppendUvarint(nil, uint64(n)) }

// member returns a private copy of the named member's node, for sending to it.
func (c *Cluster) member(name string) *memberlist.Node {
	c.pmu.Lock()
	defer c.pmu.Unlock()
	p, ok := c.peers[name]
	if !ok || p.m.State != "alive" && p.m.State != "suspect" {
		return nil
	}
	n := p.node
	return &n
}

// pull asks node for the buckets where its digest differs from ours, skipping buckets asked for
// within askAgain (their answer may still be on its way or being merged).
func (c *Cluster) pull(remote *digest) {
	if !c.pulling.CompareAndSwap(false, true) {
		return
	}
	defer c.pulling.Store(false)
	local, err := c.digest()
	if err != nil {
		c.opts.Logger.Warn("cluster cannot summarise the cache", "err", err)
		return
	}
	// The state may come in while the peer is joining, before memberlist has told us of it.
	peer := c.memberSoon(remote.node)
	if peer == nil {
		return
	}
	var diff []uint16
	now := time.Now()
	c.dmu.Lock()
	for _, b := range local.differing(remote) {
		// A peer with nothing in the bucket has nothing to give (it pulls from us instead), and a
		// bucket already asked of someone is not asked again until that answer had time to land.
		if remote.buckets[b].count > 0 && now.Sub(c.askedAt[b]) >= askAgain {
			diff = append(diff, b)
		}
	}
	c.dmu.Unlock()
	c.smu.Lock()
	c.stats.syncRounds++
	c.smu.Unlock()
	if len(diff) == 0 {
		return
	}
	if err := c.ml.SendReliable(peer, encodeWant(c.opts.Name, diff)); err != nil {
		c.opts.Logger.Warn("cluster sync request failed", "peer", remote.node, "err", err)
		return
	}
	c.dmu.Lock()
	for _, b := range diff {
		c.askedAt[b] = now
	}
	c.dmu.Unlock()
	c.smu.Lock()
	c.stats.bucketsPulled += uint64(len(diff))
	c.smu.Unlock()
}

// memberSoon is member, waiting up to a second for a peer that is joining.
func (c *Cluster) memberSoon(name string) *memberlist.Node {
	for range 20 {
		if n := c.member(name); n != nil {
			return n
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}

// Close shuts the member down without leaving (Run's cancel leaves first).
func (c *Cluster) Close() error {
	err := c.ml.Shutdown()
	c.closeTombs()
	return err
}

// meta is what a member publishes about itself (memberlist node metadata, at most 512 octets).
type meta struct {
	V      int    `json:"v"`
	Site   string `json:"site,omitempty"`
	Cloud  bool   `json:"cloud"`
	RadSec string `json:"radsec,omitempty"`
}

type delegate Cluster

func (d *delegate) NodeMeta(limit int) []byte {
	c := (*Cluster)(d)
	b, _ := json.Marshal(meta{V: 1, Site: c.opts.Site, Cloud: c.cloud.Load(), RadSec: c.opts.RadSec})
	if len(b) > limit {
		b, _ = json.Marshal(meta{V: 1, Cloud: c.cloud.Load()})
	}
	return b
}

func (d *delegate) NotifyMsg(b []byte) {
	c := (*Cluster)(d)
	msg := slices.Clone(b)
	c.smu.Lock()
	c.stats.received++
	c.stats.receivedBytes += uint64(len(b))
	c.smu.Unlock()
	select {
	case c.inbox <- msg:
	default:
		c.smu.Lock()
		c.stats.dropped++
		c.smu.Unlock()
	}
}

// GetBroadcasts: changes are sent to every member directly (send), not gossiped: at thousands of
// decisions a second, piggybacking on gossip's few packets per interval would fall behind.
func (d *delegate) GetBroadcasts(int, int) [][]byte { return nil }

func (d *delegate) LocalState(bool) []byte {
	c := (*Cluster)(d)
	dg, err := c.digest()
	if err != nil {
		c.opts.Logger.Warn("cluster cannot summarise the cache", "err", err)
		return nil
	}
	return encodeState(dg)
}

func (d *delegate) MergeRemoteState(b []byte, _ bool) {
	c := (*Cluster)(d)
	m, err := decode(b)
	if err != nil || m.typ != msgState || m.state.node == c.opts.Name {
		if err != nil {
			c.opts.Logger.Warn("cluster state refused", "reason", "malformed", "err", err)
		}
		return
	}
	go c.pull(m.state)
}

type events Cluster

// notify runs under memberlist's node lock, the one moment n may be read.
func (e *events) notify(typ string, n *memberlist.Node) {
	c := (*Cluster)(e)
	mb := memberOf(n, c.opts.Name)
	cp := memberlist.Node{Name: n.Name, Addr: slices.Clone(n.Addr), Port: n.Port}
	c.pmu.Lock()
	if typ == "leave" {
		delete(c.peers, n.Name)
	} else {
		mb.RTT = c.peers[n.Name].m.RTT
		c.peers[n.Name] = peer{m: mb, node: cp}
	}
	c.pmu.Unlock()
	c.opts.Logger.Info("cluster member "+typ, "peer", mb.Name, "upstream", mb.Addr, "reason", fmt.Sprintf("cloud=%t", mb.ReachesCloud))
	if c.opts.Events != nil {
		c.opts.Events(Event{Type: typ, Member: mb})
	}
}

func (e *events) NotifyJoin(n *memberlist.Node)   { e.notify("join", n) }
func (e *events) NotifyLeave(n *memberlist.Node)  { e.notify("leave", n) }
func (e *events) NotifyUpdate(n *memberlist.Node) { e.notify("update", n) }

// keyRefused counts a message no key decrypted and logs the first of each minute.
func (c *Cluster) keyRefused(line string) {
	from := ""
	if i := strings.LastIndex(line, "from="); i >= 0 {
		from = strings.Fields(line[i+len("from="):])[0]
	}
	now := time.Now()
	c.smu.Lock()
	c.stats.keyRefused++
	n := c.stats.keyRefused
	logIt := now.Sub(c.lastKeyLog) >= time.Minute
	if logIt {
		c.lastKeyLog = now
	}
	c.smu.Unlock()
	if logIt {
		c.opts.Logger.Warn("cluster message refused: not encrypted with a cluster key", "peer", from, "reason", "wrong-key",
			"refused", n)
	}
}

// suspected marks a member suspect from memberlist's own report (it has no callback for it):
// "Suspect NAME has failed, no acks received".
func (c *Cluster) suspected(line string) {
	rest, ok := strings.CutPrefix(line, "memberlist: Suspect ")
	if !ok {
		return
	}
	name, _, ok := strings.Cut(rest, " has failed")
	if !ok {
		return
	}
	c.pmu.Lock()
	p, ok := c.peers[name]
	if ok {
		p.m.State = "suspect"
		c.peers[name] = p
	}
	c.pmu.Unlock()
	if ok && c.opts.Events != nil {
		c.opts.Events(Event{Type: "suspect", Member: p.m})
	}
}

// pings learns from each direct probe that answered that the member is alive (memberlist has no
// callback for suspect→alive) and how long it took.
type pings Cluster

func (p *pings) AckPayload() []byte { return nil }

func (p *pings) NotifyPingComplete(n *memberlist.Node, rtt time.Duration, _ []byte) {
	c := (*Cluster)(p)
	name := n.Name // immutable once the node is known; nothing else of n is read here
	c.pmu.Lock()
	pr, ok := c.peers[name]
	wasSuspect := ok && pr.m.State == "suspect"
	if ok {
		pr.m.State, pr.m.RTT = "alive", rtt
		c.peers[name] = pr
	}
	c.pmu.Unlock()
	if wasSuspect && c.opts.Events != nil {
		c.opts.Events(Event{Type: "alive", Member: pr.m})
	}
}

// logWriter turns memberlist's log lines ("[WARN] memberlist: ...") into slog records.
type logWriter struct {
	l *slog.Logger
	c *Cluster
}

func (w *logWriter) Write(p []byte) (int, error) {
	s := strings.TrimSpace(string(p))
	if w.c != nil && strings.Contains(s, "no installed keys could decrypt") {
		// An edge (or anything) without the cluster's key: counted, and logged once a minute, not
		// once per packet.
		w.c.keyRefused(s)
		return len(p), nil
	}
	lvl := slog.LevelDebug
	switch {
	case strings.HasPrefix(s, "[ERR]"):
		lvl = slog.LevelError
	case strings.HasPrefix(s, "[WARN]"):
		lvl = slog.LevelWarn
	case strings.HasPrefix(s, "[INFO]"):
		lvl = slog.LevelInfo
	}
	if i := strings.Index(s, "] "); i >= 0 {
		s = s[i+2:]
	}
	if w.c != nil {
		w.c.suspected(s)
	}
	w.l.Log(context.Background(), lvl, "cluster gossip", "reason", s)
	return len(p), nil
}

var _ io.Writer = (*logWriter)(nil)
