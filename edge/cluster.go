package edge

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"mxedge/cache/session"
	"mxedge/edge/cluster"
	"mxedge/edge/config"
	"mxedge/edge/metrics"
	"mxedge/proxy"
	"mxedge/proxy/packet"
	"mxedge/survivability"
)

// The cluster (docs/cluster.md): membership, replication of the cache, and WAN via a peer. It is
// wired here because it joins the cache, survivability's health and the proxy.

// clusterParts is what a cluster member adds to an edge.
type clusterParts struct {
	c      *cluster.Cluster
	clock  *cluster.Clock
	peers  *peerPool // nil when wan_via_peer is off
	owners reconcileOwners
}

// clusterName is the member's name as cluster.New settles it (the host name by default).
func clusterName(o cluster.Options) string {
	if o.Name != "" {
		return o.Name
	}
	h, _ := os.Hostname()
	return h
}

// clusterSessions is the session table as the cluster replicates it: read from the store, merged
// through the tracker's writer (never on the cluster's receive path).
type clusterSessions struct {
	s *session.Store
	t *sessionTracker
}

func (c clusterSessions) ListReplica(fn func(session.Record) bool) error { return c.s.ListReplica(fn) }
func (c clusterSessions) MergeQueued(r session.Record)                   { c.t.MergeQueued(r) }
func (c clusterSessions) Stats() session.Stats                           { return c.s.Stats() }

// newCluster creates the member over the opened cache (opened on the clock) and session table;
// its tombstones are kept beside the cache (cluster.db).
func (e *Edge) newCluster(b *config.Built, cachePath string) error {
	cb := b.Cluster
	o := cb.Options
	o.Store, o.Clock, o.Logger = e.cache, e.clusterParts.clock, e.log
	o.StatePath = filepath.Join(filepath.Dir(cachePath), "cluster.db")
	if e.sessions != nil {
		o.Sessions = clusterSessions{e.sessions, e.tracker}
	}
	o.ReachesCloud = func() bool { return !e.health.Local() }
	if b.Listener != nil && len(b.Listener.Addrs) > 0 {
		o.RadSec = advertisedRadSec(b.Listener.Addrs[0], o)
	}
	o.Events = func(ev cluster.Event) { e.clusterEvents[clusterEventIndex(ev.Type)].Add(1) }
	c, err := cluster.New(o)
	if err != nil {
		return fmt.Errorf("edge: %w", err)
	}
	e.clusterParts.c = c
	e.clusterParts.owners = reconcileOwners{unavail: map[string]time.Time{}, kicked: map[uint64]bool{}}
	if cb.WANViaPeer {
		e.clusterParts.peers = &peerPool{e: e, tls: cb.PeerTLS}
	}
	return nil
}

// advertisedRadSec is the RadSec listener address peers dial: the listener's own address, or the
// cluster's advertised address with the listener's port when the listener binds every address.
func advertisedRadSec(listen string, o cluster.Options) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return ""
	}
	if a, err := netip.ParseAddr(host); err == nil && !a.IsUnspecified() {
		return listen
	}
	switch {
	case o.Advertise.IsValid():
		return net.JoinHostPort(o.Advertise.Addr().String(), port)
	case o.Bind.IsValid() && !o.Bind.Addr().IsUnspecified():
		return net.JoinHostPort(o.Bind.Addr().String(), port)
	}
	return ""
}

var clusterEventTypes = []string{"join", "leave", "update", "suspect", "alive"}

func clusterEventIndex(t string) int {
	if i := slices.Index(clusterEventTypes, t); i >= 0 {
		return i
	}
	return len(clusterEventTypes) - 1
}

// peerPool is the RadSec pool to the other edges that reach the cloud, rebuilt when that set
// changes (members join, leave, lose or regain the cloud).
type peerPool struct {
	e   *Edge
	tls *tls.Config

	mu  sync.Mutex
	key string
	run poolRun // zero: no cloud peer

	members atomic.Pointer[[]netip.Addr] // every member's address, refreshed by update

	forwarded, answered, failed atomic.Uint64
}

// Run keeps the pool in step with the cluster until ctx ends, then stops it.
func (p *peerPool) Run(ctx context.Context) {
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		p.update()
		select {
		case <-ctx.Done():
			p.mu.Lock()
			r := p.run
			p.run, p.key = poolRun{}, ""
			p.mu.Unlock()
			if r.pool != nil {
				r.stop()
				<-r.done
			}
			return
		case <-tick.C:
		}
	}
}

func (p *peerPool) update() {
	// The members' addresses, for viaPeer's loop check: computed here every tick, not per request.
	var addrs []netip.Addr
	for _, m := range p.e.clusterParts.c.Members() {
		if ap, err := netip.ParseAddrPort(m.Addr); err == nil {
			addrs = append(addrs, ap.Addr().Unmap())
		}
	}
	p.members.Store(&addrs)
	peers := p.e.clusterParts.c.CloudPeers()
	var keys []string
	for _, m := range peers {
		keys = append(keys, m.Name+"="+m.RadSec)
	}
	key := strings.Join(keys, ",")
	p.mu.Lock()
	same := key == p.key
	p.mu.Unlock()
	if same {
		return
	}
	var next poolRun
	if len(peers) > 0 {
		po := proxy.PoolOptions{Mode: proxy.ModeFailover, Logger: p.e.log, Cork: p.e.cork, Resolver: resolverAdapter{p.e.resolver}}
		for i, m := range peers {
			host, port, err := net.SplitHostPort(m.RadSec)
			if err != nil {
				continue
			}
			n, _ := strconv.Atoi(port)
			t := p.tls.Clone()
			po.Upstreams = append(po.Upstreams, proxy.UpstreamOptions{Name: "peer:" + m.Name, Host: host, Port: uint16(n),
				ServerName: m.Name, Priority: i, TLS: t, DeadAfter: 2 * time.Second})
		}
		pool, err := proxy.NewPool(po)
		if err != nil {
			p.e.log.Error("cluster peer pool not built", "err", err)
			return
		}
		next = startPool(pool, nil)
		wctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		pool.WaitReady(wctx)
		cancel()
	}
	p.mu.Lock()
	old := p.run
	p.run, p.key = next, key
	p.mu.Unlock()
	p.e.log.Info("cluster peers reaching the cloud", "upstream", key)
	if old.pool != nil {
		go p.e.drain(context.Background(), old)
	}
}

// pool returns the current pool when one of its peers is up.
func (p *peerPool) pool() *proxy.Pool {
	p.mu.Lock()
	pl := p.run.pool
	p.mu.Unlock()
	if pl == nil {
		return nil
	}
	for _, u := range pl.Upstreams() {
		if u.Status().State == proxy.StateUp {
			return pl
		}
	}
	return nil
}

// peerFallback answers, while this edge cannot reach the cloud, through an edge that can, and
// locally only when none can (or the peer fails). Accounting stays with this edge's spool, and
// requests that came from another edge are never sent on (no loops).
type peerFallback struct {
	inner proxy.Fallback
	e     *Edge
}

func (f *peerFallback) Takes(req *proxy.Request) bool { return f.inner.Takes(req) }

// Slow implements proxy.SlowFallback: a round trip to a peer must not hold the socket's reader.
func (f *peerFallback) Slow(req *proxy.Request) bool {
	if f.viaPeer(req) != nil {
		return true
	}
	s, ok := f.inner.(proxy.SlowFallback)
	return ok && s.Slow(req)
}

func (f *peerFallback) viaPeer(req *proxy.Request) *proxy.Pool {
	if req.Packet.Code() != packet.CodeAccessRequest {
		return nil
	}
	pp := f.e.clusterParts.peers
	if pp == nil {
		return nil
	}
	// A conversation this edge's local EAP-TLS started stays here.
	if st, ok := req.Packet.Attr(packet.AttrState); ok && f.e.localEAP != nil && f.e.localEAP.Owns(st) {
		return nil
	}
	if ms := pp.members.Load(); ms != nil && slices.Contains(*ms, req.Src.Addr().Unmap()) {
		return nil // from a peer edge: answered here, never sent on
	}
	return pp.pool()
}

func (f *peerFallback) Serve(ctx context.Context, req *proxy.Request, cause error) (packet.Packet, error) {
	if pool := f.viaPeer(req); pool != nil {
		pp := f.e.clusterParts.peers
		pp.forwarded.Add(1)
		done := make(chan proxy.Result, 1)
		pool.Forward(req, func(r proxy.Result) { done <- r })
		select {
		case r := <-done:
			if r.Err == nil {
				pp.answered.Add(1)
				answerObserver{f.e}.Observe(req, r)
				return r.Response, nil
			}
			pp.failed.Add(1)
			f.e.log.Warn("cluster peer did not answer, deciding locally", "nas", req.Client.Name, "upstream", r.Upstream, "err", r.Err)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return f.inner.Serve(ctx, req, cause)
}

// ClusterStatus is the public document of `mxedge cluster status -o json` (docs/cluster.md).
type ClusterStatus struct {
	Schema      string             `json:"schema"`
	Name        string             `json:"name"`
	Members     []ClusterMember    `json:"members"`
	Replication ClusterReplication `json:"replication"`
	WANViaPeer  *ClusterWANViaPeer `json:"wan_via_peer,omitempty"`
	Events      map[string]uint64  `json:"events"`
}

// ClusterMember is one member in ClusterStatus.
type ClusterMember struct {
	Name         string  `json:"name"`
	Address      string  `json:"address"`
	State        string  `json:"state"`
	Self         bool    `json:"self"`
	Site         string  `json:"site,omitempty"`
	ReachesCloud bool    `json:"reaches_cloud"`
	RadSec       string  `json:"radsec,omitempty"`
	RTTSeconds   float64 `json:"rtt_seconds"`
}

// ClusterReplication are the replication counters in ClusterStatus.
type ClusterReplication struct {
	MessagesSent     uint64  `json:"messages_sent"`
	BytesSent        uint64  `json:"bytes_sent"`
	MessagesReceived uint64  `json:"messages_received"`
	BytesReceived    uint64  `json:"bytes_received"`
	Merged           uint64  `json:"merged"`
	Conflicts        uint64  `json:"conflicts"`
	Refused          uint64  `json:"refused"`
	SkewRefused      uint64  `json:"skew_refused"`
	Forgets          uint64  `json:"forgets"`
	Malformed        uint64  `json:"malformed"`
	KeyRefused       uint64  `json:"key_refused"`
	Dropped          uint64  `json:"dropped"`
	SyncRounds       uint64  `json:"sync_rounds"`
	BucketsPulled    uint64  `json:"buckets_pulled"`
	SyncRecordsSent  uint64  `json:"sync_records_sent"`
	Tombstones       int     `json:"tombstones"`
	LastMergeAt      string  `json:"last_merge_at,omitempty"`
	LastLagSeconds   float64 `json:"last_lag_seconds"`
	MeanLagSeconds   float64 `json:"mean_lag_seconds"`
	// Sessions is the session table's replication; absent when the table is off.
	Sessions *ClusterSessionReplication `json:"sessions,omitempty"`
}

// ClusterSessionReplication counts session records replicated, and reconciliation's share of
// this edge (docs/cluster.md).
type ClusterSessionReplication struct {
	Sent           uint64  `json:"sent"`
	Received       uint64  `json:"received"`
	Merged         uint64  `json:"merged"`
	Conflicts      uint64  `json:"conflicts"`
	Refused        uint64  `json:"refused"`
	Dropped        uint64  `json:"dropped"` // not merged: the session writer's queue was full
	SyncSent       uint64  `json:"sync_records_sent"`
	LastMergeAt    string  `json:"last_merge_at,omitempty"`
	LastLagSeconds float64 `json:"last_lag_seconds"`
	MeanLagSeconds float64 `json:"mean_lag_seconds"`
	NeedReconcile  int     `json:"need_reconcile"` // admitted locally by any edge, not yet reconciled
	Owned          int     `json:"reconcile_owned"`
}

// ClusterWANViaPeer counts requests answered through a peer.
type ClusterWANViaPeer struct {
	Peers     []string `json:"peers"`
	Forwarded uint64   `json:"forwarded"`
	Answered  uint64   `json:"answered"`
	Failed    uint64   `json:"failed"`
}

// ClusterStatus returns the cluster as this edge sees it; nil without a cluster.
func (e *Edge) ClusterStatus() *ClusterStatus {
	c := e.clusterParts.c
	if c == nil {
		return nil
	}
	st := c.Status()
	s := st.Stats
	out := &ClusterStatus{Schema: "mxedge.cluster.v1", Name: st.Name, Members: []ClusterMember{}, Events: map[string]uint64{},
		Replication: ClusterReplication{MessagesSent: s.MessagesSent, BytesSent: s.BytesSent, MessagesReceived: s.MessagesReceived,
			BytesReceived: s.BytesReceived, Merged: s.Merged, Conflicts: s.Conflicts, Refused: s.Refused, SkewRefused: s.SkewRefused,
			Forgets: s.Forgets, Malformed: s.Malformed, KeyRefused: s.KeyRefused, Dropped: s.Dropped, SyncRounds: s.SyncRounds, BucketsPulled: s.BucketsPulled,
			SyncRecordsSent: s.SyncRecordsSent, Tombstones: s.Tombstones, LastLagSeconds: s.LastLag.Seconds(), MeanLagSeconds: s.MeanLag.Seconds()}}
	if !s.LastMerge.IsZero() {
		out.Replication.LastMergeAt = s.LastMerge.UTC().Format(time.RFC3339)
	}
	if e.sessions != nil {
		ss := s.Sessions
		sr := &ClusterSessionReplication{Sent: ss.Sent, Received: ss.Received, Merged: ss.Merged, Conflicts: ss.Conflicts,
			Refused: ss.Refused, SyncSent: ss.SyncSent, LastLagSeconds: ss.LastLag.Seconds(), MeanLagSeconds: ss.MeanLag.Seconds(),
			NeedReconcile: e.sessions.Stats().NeedReconcile, Dropped: e.tracker.Stats().ReplicaDropped}
		if !ss.LastMerge.IsZero() {
			sr.LastMergeAt = ss.LastMerge.UTC().Format(time.RFC3339)
		}
		if items, err := e.ownedReconcile(0); err == nil {
			sr.Owned = len(items)
		}
		out.Replication.Sessions = sr
	}
	for _, m := range st.Members {
		out.Members = append(out.Members, ClusterMember{Name: m.Name, Address: m.Addr, State: m.State, Self: m.Self, Site: m.Site,
			ReachesCloud: m.ReachesCloud, RadSec: m.RadSec, RTTSeconds: m.RTT.Seconds()})
	}
	for i, t := range clusterEventTypes {
		out.Events[t] = e.clusterEvents[i].Load()
	}
	if pp := e.clusterParts.peers; pp != nil {
		w := &ClusterWANViaPeer{Peers: []string{}, Forwarded: pp.forwarded.Load(), Answered: pp.answered.Load(), Failed: pp.failed.Load()}
		for _, m := range c.CloudPeers() {
			w.Peers = append(w.Peers, m.Name)
		}
		out.WANViaPeer = w
	}
	return out
}

// clusterMetrics is the cluster part of the metrics snapshot; nil without a cluster.
func (e *Edge) clusterMetrics() *metrics.Cluster {
	st := e.ClusterStatus()
	if st == nil {
		return nil
	}
	r := st.Replication
	m := &metrics.Cluster{Members: map[string]int{}, Events: st.Events, MessagesSent: r.MessagesSent, BytesSent: r.BytesSent,
		MessagesRecv: r.MessagesReceived, BytesRecv: r.BytesReceived, Merged: r.Merged, Conflicts: r.Conflicts,
		Refused: r.Refused + r.SkewRefused, KeyRefused: r.KeyRefused, SyncRounds: r.SyncRounds, Buckets: r.BucketsPulled, LagSeconds: r.LastLagSeconds}
	for _, mb := range st.Members {
		m.Members[mb.State]++
		if mb.State == "alive" && mb.ReachesCloud {
			m.ReachCloud++
		}
	}
	if w := st.WANViaPeer; w != nil {
		m.ViaPeer = map[string]uint64{"forwarded": w.Forwarded, "answered": w.Answered, "failed": w.Failed}
	}
	if s := r.Sessions; s != nil {
		m.Sessions = &metrics.ClusterSessions{Sent: s.Sent, Merged: s.Merged, Conflicts: s.Conflicts, Refused: s.Refused,
			Dropped: s.Dropped, LagSeconds: s.LastLagSeconds}
	}
	return m
}

// Reconciliation in a cluster (docs/cluster.md, "Reconciliation after failback"). Every edge
// holds every session admitted locally anywhere, and exactly one edge re-authorizes each: the
// edge that admitted it (Record.AdmittedBy) while it reaches the cloud, or waits for it to while
// it is briefly without (failing back); once this edge has seen the admitter gone or without the
// cloud for reconcileTakeover, the alive member reaching the cloud with the lowest name takes it
// over. Its "reconciled" mark is a write like any other and replicates, so no other edge repeats
// it.
const (
	reconcileTakeover = 30 * time.Second
	reconcileWatch    = time.Second
	// reconcileKickedMax bounds the sessions remembered as offered to the reconciler.
	reconcileKickedMax = 100_000
)

// reconcileOwners is this edge's view for the owner rule.
type reconcileOwners struct {
	mu      sync.Mutex
	unavail map[string]time.Time // admitter -> when this edge first saw it gone or without the cloud
	kicked  map[uint64]bool      // sessions a round was already started for
}

// ownsReconcile reports whether this edge reconciles r now.
func (e *Edge) ownsReconcile(r *session.Record, members []cluster.Member, now time.Time) bool {
	return e.clusterParts.owners.owns(e.clusterParts.c.Name(), e.health.Mode() == survivability.ModeUp, r, members, now)
}

// owns is the owner rule for edge self (up: it reaches the cloud now) over members, sorted by
// name as cluster.Members returns them.
func (ro *reconcileOwners) owns(self string, up bool, r *session.Record, members []cluster.Member, now time.Time) bool {
	admitter := r.AdmittedBy
	if admitter == "" {
		admitter = r.Origin // admitted before the admitter recorded it
	}
	if admitter == self || admitter == "" {
		return up
	}
	available := false
	for _, m := range members {
		if m.Name == admitter {
			available = m.State == "alive" && m.ReachesCloud
		}
	}
	ro.mu.Lock()
	if available {
		delete(ro.unavail, admitter)
		ro.mu.Unlock()
		return false
	}
	since, ok := ro.unavail[admitter]
	if !ok {
		ro.unavail[admitter] = now
		since = now
	}
	ro.mu.Unlock()
	if !up || now.Sub(since) < reconcileTakeover {
		return false
	}
	for _, m := range members {
		switch {
		case m.Self:
			return true // the first alive member reaching the cloud: this edge (up, checked above)
		case m.State == "alive" && m.ReachesCloud:
			return false // a member with a lower name takes it
		}
	}
	return false
}

// refresh forgets when an admitter became unavailable once the view shows it alive and reaching
// the cloud again, even if no session of its was looked at meanwhile: the wait is for an
// unbroken absence.
func (ro *reconcileOwners) refresh(members []cluster.Member) {
	ro.mu.Lock()
	defer ro.mu.Unlock()
	for _, m := range members {
		if m.State == "alive" && m.ReachesCloud {
			delete(ro.unavail, m.Name)
		}
	}
}

// ownedReconcile is the sessions needing reconciliation that are this edge's (limit 0: all).
func (e *Edge) ownedReconcile(limit int) ([]session.Record, error) {
	rs, err := e.sessions.NeedingReconcile(0)
	if err != nil || e.clusterParts.c == nil {
		if limit > 0 && len(rs) > limit {
			rs = rs[:limit]
		}
		return rs, err
	}
	members, now := e.clusterParts.c.Members(), time.Now()
	out := rs[:0]
	for i := range rs {
		if e.ownsReconcile(&rs[i], members, now) {
			out = append(out, rs[i])
			if limit > 0 && len(out) >= limit {
				break
			}
		}
	}
	return out, nil
}

// watchReconcile starts a reconciliation round when sessions become this edge's to reconcile
// outside a failback: replicated from an edge that is gone, or taken over after
// reconcileTakeover. The failback kick (New's health OnChange) covers this edge's own.
func (e *Edge) watchReconcile(ctx context.Context) {
	if e.reconciler == nil || e.sessions == nil {
		return
	}
	tick := time.NewTicker(reconcileWatch)
	defer tick.Stop()
	ro := &e.clusterParts.owners
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		ro.refresh(e.clusterParts.c.Members())
		if e.health.Mode() != survivability.ModeUp || e.reconciler.Progress().Running {
			continue
		}
		rs, err := e.ownedReconcile(0)
		if err != nil {
			continue
		}
		fresh := false
		ro.mu.Lock()
		if len(ro.kicked) > reconcileKickedMax {
			clear(ro.kicked)
		}
		for _, r := range rs {
			if !ro.kicked[r.ID] {
				ro.kicked[r.ID], fresh = true, true
			}
		}
		ro.mu.Unlock()
		if fresh {
			e.reconciler.Kick()
		}
	}
}
