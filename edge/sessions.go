package edge

// The session table's feed: the tracker sees every Access-Accept the front door sends (the cloud's
// through answerObserver, local ones through trackedFallback) and every Accounting-Request it
// acknowledges (forwarded or spooled), copies the packets into a pooled buffer on the goroutine
// that answers, and hands them to one writer goroutine through a bounded queue. The writer parses
// them and commits a batch per transaction to cache/session (docs/sessions.md). A full queue drops
// and counts; nothing on the request path waits for bbolt.

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"mxedge/cache"
	"mxedge/cache/session"
	"mxedge/edge/config"
	"mxedge/edge/control"
	"mxedge/edge/metrics"
	"mxedge/proxy"
	"mxedge/proxy/packet"
	"mxedge/survivability"
)

const (
	// sessionQueueSize bounds the packets waiting for the writer: at 2,000 accounting updates/s a
	// stalled disk fills it in about 8 s, after which updates are dropped and counted. Each waiting
	// packet holds a pooled buffer (512 octets unless the packets need more).
	sessionQueueSize = 16384
	// sessionBatchMax and sessionBatchDelay: a batch is committed when it holds sessionBatchMax
	// updates or sessionBatchDelay after its first, whichever comes first. Most of an update's cost
	// is its transaction's (pwrite and fdatasync): at 2,000 updates/s, 100 ms batches cost about
	// half the CPU of 10 ms ones (bench/sessions). A crash loses at most that much of the table's
	// news, never accounting itself (the spool and the cloud have that). The cap only bounds a
	// transaction's memory: every page a transaction touches is decoded into the heap until it
	// commits, and a larger batch shares more of them. At 40,000 answers/s, 2,048 with 512-octet
	// copies costs about the CPU of 4,096 and 16 MiB less RSS (BenchmarkLocalMABClosed and
	// BenchmarkLocalMABMemory, docs/performance.md).
	sessionBatchMax   = 2048
	sessionBatchDelay = 100 * time.Millisecond
	// sessionBufCap is the pooled copy's initial capacity: a MAB request and its Accept take about
	// 200 octets, an EAP-TLS one with MPPE keys about 400; a larger pair grows its buffer. Up to a
	// batch of them wait for the writer at once.
	sessionBufCap = 512
	// maxPendingDecisions bounds the local decisions waiting for their Access-Accept.
	maxPendingDecisions = 4096
	// sessionLogEvery rate-limits the writer's warnings.
	sessionLogEvery = 10 * time.Second
)

// Attribute types the tracker reads beyond proxy/packet's (RFC 2866 §5, RFC 2869 §5, RFC 3162,
// RFC 6911).
const (
	attrFramedIPAddress    = 8
	attrAcctInputOctets    = 42
	attrAcctOutputOctets   = 43
	attrAcctSessionTime    = 46
	attrAcctTerminateCause = 49
	attrAcctMultiSessionID = 50
	attrAcctInputGiga      = 52
	attrAcctOutputGiga     = 53
	attrAcctInterim        = 85
	attrNASPortID          = 87
	attrFramedIPv6Prefix   = 97
	attrFramedIPv6Address  = 168
	attrCHAPPassword       = 3

	acctStart   = 1
	acctStop    = 2
	acctInterim = 3
	acctOn      = 7
	acctOff     = 8

	eapTypePEAP = 25
	eapTypeTTLS = 21
	eapTypeFAST = 43
)

// sessionItem is one packet (or one local decision) on its way to the writer.
type sessionItem struct {
	client *proxy.Client
	src    netip.Addr
	at     time.Time
	buf    *[]byte // the request, then the Access-Accept (nil for a decision)
	reqLen int
	cloud  bool // the Accept came from the cloud
	// A local decision (buf nil), published just before its Access-Accept is sent.
	nas, mac, user, reason string
	// A record another edge of the cluster wrote (buf nil), to merge (docs/cluster.md).
	replica *session.Record
}

// TrackerStats are the tracker's own counters.
type TrackerStats struct {
	Dropped  uint64 // packets not recorded: the writer's queue was full
	Failed   uint64 // updates lost to a failed write transaction
	Ignored  uint64 // accounting the table does not use (Acct-Status-Type other than 1, 2, 3, 7, 8)
	Queue    int    // waiting for the writer
	Batches  uint64 // write transactions
	Received uint64 // packets handed to the writer
	// ReplicaDropped are peers' session records not merged because the queue was full; the
	// cluster's anti-entropy brings them again.
	ReplicaDropped uint64
}

// sessionTracker feeds the session table. Its methods are nil-safe: a nil tracker (sessions off)
// records nothing.
type sessionTracker struct {
	store *session.Store
	log   *slog.Logger
	q     chan sessionItem
	// full wakes the writer before its batch delay when the queue holds a full batch. The writer
	// does not wait on q itself while a batch collects: a receive per packet would wake it once per
	// Access-Accept, which cost more scheduler work than the packet's share of the commit.
	full chan struct{}
	bufs sync.Pool

	// pending is the writer's: local decisions by NAS and MAC (or User-Name) awaiting their Accept.
	pending map[pendingKey]session.Decider
	// addrs is the writer's: each NAS address's text, formatted once (maxAddrNames).
	addrs map[netip.Addr]string
	// fromPeer, in a cluster, reports whether a request came from another edge (WAN via peer):
	// that session is the other edge's, which records it against its own NAS. nil: none do.
	fromPeer func(netip.Addr) bool

	dropped, failed, ignored, batches, received atomic.Uint64
	replicaDropped                              atomic.Uint64 // peers' records the full queue refused
	lastLog                                     atomic.Int64
}

func newSessionTracker(s *session.Store, log *slog.Logger) *sessionTracker {
	t := &sessionTracker{store: s, log: log, q: make(chan sessionItem, sessionQueueSize), full: make(chan struct{}, 1),
		pending: map[pendingKey]session.Decider{}, addrs: map[netip.Addr]string{}}
	t.bufs.New = func() any { b := make([]byte, 0, sessionBufCap); return &b }
	return t
}

// observe records an answer the front door sends: an Access-Accept (cloud says whose) or an
// Accounting-Response. It runs on the request path: one copy into a pooled buffer and a
// non-blocking send.
func (t *sessionTracker) observe(req *proxy.Request, resp packet.Packet, cloud bool) {
	if t == nil || len(resp) < packet.HeaderLen {
		return
	}
	switch resp.Code() {
	case packet.CodeAccessAccept:
	case packet.CodeAccountingResponse:
		resp = nil // nothing in it the table needs
	default:
		return
	}
	if t.fromPeer != nil && t.fromPeer(req.Src.Addr().Unmap()) {
		return
	}
	bp := t.bufs.Get().(*[]byte)
	b := append(append((*bp)[:0], req.Packet...), resp...)
	*bp = b
	it := sessionItem{client: req.Client, src: req.Src.Addr().Unmap(), at: req.Received, buf: bp, reqLen: len(req.Packet), cloud: cloud}
	select {
	case t.q <- it:
		t.kickIfFull()
	default:
		t.dropped.Add(1)
		t.bufs.Put(bp)
	}
}

// kickIfFull wakes the writer when a full batch is waiting; the token is never lost and never
// blocks.
func (t *sessionTracker) kickIfFull() {
	if len(t.q) >= sessionBatchMax {
		select {
		case t.full <- struct{}{}:
		default:
		}
	}
}

// decided records who made a local Allow: the Engine and local EAP-TLS publish it on the goroutine
// that then sends the Accept, so it reaches the queue first.
func (t *sessionTracker) decided(ev survivability.Event) {
	if t == nil || !ev.Allowed || ev.Source != survivability.SourceLocal || ev.Method == "accounting" {
		return
	}
	select {
	case t.q <- sessionItem{nas: ev.NAS, mac: ev.MAC, user: ev.Identity, reason: ev.Reason}:
		t.kickIfFull()
	default:
		t.dropped.Add(1)
	}
}

// MergeQueued queues a peer's session record for the writer, which merges it in its next batch
// (cache/session KindReplica). It never blocks: a full queue drops it (counted), and the
// cluster's anti-entropy brings it again.
func (t *sessionTracker) MergeQueued(r session.Record) {
	if t == nil {
		return
	}
	select {
	case t.q <- sessionItem{replica: &r}:
	default:
		t.replicaDropped.Add(1) // not a packet of this edge's: counted apart from them
	}
}

// Stats returns the tracker's counters.
func (t *sessionTracker) Stats() TrackerStats {
	if t == nil {
		return TrackerStats{}
	}
	return TrackerStats{Dropped: t.dropped.Load(), Failed: t.failed.Load(),
		Ignored: t.ignored.Load(), Queue: len(t.q), Batches: t.batches.Load(), Received: t.received.Load(),
		ReplicaDropped: t.replicaDropped.Load()}
}

// Run is the table's one writer: it batches the queue into transactions until ctx is done, then
// commits what is queued and returns nil.
func (t *sessionTracker) Run(ctx context.Context) error {
	batch := make([]session.Update, 0, sessionBatchMax)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		select {
		case <-ctx.Done():
			for {
				select {
				case it := <-t.q:
					batch = t.add(batch, it)
					if len(batch) >= sessionBatchMax {
						batch = t.flush(batch)
					}
				default:
					t.flush(batch)
					return nil
				}
			}
		case it := <-t.q:
			batch = t.add(batch, it)
		}
		// A batch has begun: sleep until its delay is over or a full batch waits, then take what
		// queued meanwhile, committing every sessionBatchMax updates.
		timer.Reset(sessionBatchDelay)
		select {
		case <-timer.C:
		case <-t.full:
		case <-ctx.Done():
		}
		timer.Stop()
	drain:
		for range cap(t.q) { // bounded: what arrives while it drains waits for the next batch
			select {
			case it := <-t.q:
				if batch = t.add(batch, it); len(batch) >= sessionBatchMax {
					batch = t.flush(batch)
				}
			default:
				break drain
			}
		}
		batch = t.flush(batch)
	}
}

func (t *sessionTracker) flush(batch []session.Update) []session.Update {
	if len(batch) == 0 {
		return batch
	}
	err := t.store.Apply(batch)
	t.batches.Add(1)
	switch {
	case err == nil:
	case errors.Is(err, session.ErrBadRecord): // counted by the store
		t.warn("session update refused", err)
	default:
		t.failed.Add(uint64(len(batch)))
		t.warn("session write failed", err)
	}
	clear(batch) // drop references to the strings for the collector
	return batch[:0]
}

func (t *sessionTracker) warn(msg string, err error) {
	now := time.Now().UnixNano()
	if last := t.lastLog.Load(); now-last >= int64(sessionLogEvery) && t.lastLog.CompareAndSwap(last, now) {
		t.log.Warn(msg, "err", err)
	}
}

// add parses one item into the batch and returns its buffer to the pool.
func (t *sessionTracker) add(batch []session.Update, it sessionItem) []session.Update {
	if it.replica != nil {
		return append(batch, session.Update{Kind: session.KindReplica, Rec: *it.replica})
	}
	if it.buf == nil {
		key := it.mac
		if key == "" {
			key = it.user
		}
		if len(t.pending) >= maxPendingDecisions {
			clear(t.pending) // Accepts that never came (a failed send): forget them
		}
		t.pending[pendingKey{it.nas, key}] = localDecider(it.reason)
		return batch
	}
	t.received.Add(1)
	defer t.bufs.Put(it.buf)
	b := *it.buf
	req, resp := packet.Packet(b[:it.reqLen]), packet.Packet(b[it.reqLen:])
	u := session.Update{At: it.at, Rec: session.Record{NAS: it.client.Name, Vendor: it.client.Vendor, Site: it.client.Site}}
	u.Rec.NASAddr = t.addrName(it.src)
	switch req.Code() {
	case packet.CodeAccessRequest:
		u.Kind = session.KindAccept
		c := survivability.Classify(req, it.client.Secret)
		requestFields(&u.Rec, req, &c)
		u.Rec.Method = methodName(c, req)
		acceptFields(&u.Rec, resp)
		u.Rec.Decider = session.DecidedCloud
		if !it.cloud {
			u.Rec.Decider = session.DecidedPolicy // a local Accept whose decision was not seen
			for _, k := range []string{u.Rec.MAC, u.Rec.UserName, c.UserName} {
				if d, ok := t.pending[pendingKey{u.Rec.NAS, k}]; ok && k != "" {
					u.Rec.Decider = d
					delete(t.pending, pendingKey{u.Rec.NAS, k})
					break
				}
			}
		}
	case packet.CodeAccountingRequest:
		requestFields(&u.Rec, req, nil)
		st, _ := attrUint32(req, packet.AttrAcctStatusType)
		switch st {
		case acctStart:
			u.Kind = session.KindStart
		case acctStop:
			u.Kind = session.KindStop
		case acctInterim:
			u.Kind = session.KindInterim
		case acctOn, acctOff:
			u.Kind = session.KindNASReboot
		default:
			t.ignored.Add(1)
			return batch
		}
		accountingFields(&u.Rec, req)
	default:
		return batch
	}
	return append(batch, u)
}

// localDecider maps a local decision's reason to who decided (as survivability.DecisionStats).
func localDecider(reason string) session.Decider {
	switch reason {
	case survivability.ReasonCacheHit:
		return session.DecidedCache
	case survivability.ReasonDefaultVLAN:
		return session.DecidedDefault
	}
	return session.DecidedPolicy
}

// methodName names how the request authenticated.
func methodName(c survivability.Classification, req packet.Packet) string {
	switch c.Method {
	case survivability.MethodMAB:
		return "mab"
	case survivability.MethodEAPTLS:
		return "eap-tls"
	case survivability.MethodEAPOther:
		switch c.EAPType {
		case eapTypePEAP:
			return "eap-peap"
		case eapTypeTTLS:
			return "eap-ttls"
		case eapTypeFAST:
			return "eap-fast"
		}
		return "eap"
	}
	if req.Has(attrCHAPPassword) {
		return "chap"
	}
	return "pap"
}

// pendingKey is a local decision's NAS and the MAC (or User-Name) it was for.
type pendingKey struct{ nas, key string }

// maxAddrNames bounds the NAS addresses whose text the writer keeps; past it they are forgotten.
const maxAddrNames = 4096

// addrName is a's text (netip.Addr.String), formatted once per address, "" for none.
func (t *sessionTracker) addrName(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	if s, ok := t.addrs[a]; ok {
		return s
	}
	if len(t.addrs) >= maxAddrNames {
		clear(t.addrs)
	}
	s := a.String()
	t.addrs[a] = s
	return s
}

// requestFields reads what Access-Requests and Accounting-Requests share: where the client is and
// who it says it is. c is an Access-Request's Classification, which has already read its
// User-Name and its Calling-Station-Id's MAC (nil for accounting).
func requestFields(r *session.Record, p packet.Packet, c *survivability.Classification) {
	for it := p.Attrs(); ; {
		typ, v, ok := it.Next()
		if !ok {
			return
		}
		switch typ {
		case packet.AttrUserName:
			if c != nil && c.UserName == string(v) {
				r.UserName = c.UserName // the same octets: no second copy
			} else {
				r.UserName = string(v)
			}
		case packet.AttrNASPort:
			if len(v) == 4 {
				r.NASPort, r.HasNASPort = binary.BigEndian.Uint32(v), true
			}
		case attrNASPortID:
			r.NASPortID = string(v)
		case packet.AttrCalledStationID:
			r.CalledStationID = string(v)
			r.SSID = ssid(r.CalledStationID)
		case packet.AttrCallingStationID:
			r.CallingStationID = string(v)
			if c != nil {
				r.MAC = c.MAC // Classify's canonical form of the same attribute
			} else if m, err := cache.NormalizeMAC(r.CallingStationID); err == nil {
				r.MAC = m
			}
		case packet.AttrAcctSessionID:
			r.AcctSessionID = string(v)
		case packet.AttrClass:
			if len(r.Class) == 0 {
				r.Class = append([]byte(nil), v...)
			}
		}
	}
}

// acceptFields reads the authorization an Access-Accept gave.
func acceptFields(r *session.Record, p packet.Packet) {
	r.VLAN = survivability.ReplyVLAN(p)
	for it := p.Attrs(); ; {
		typ, v, ok := it.Next()
		if !ok {
			return
		}
		switch typ {
		case packet.AttrUserName: // the cloud's name for the client (the inner identity of EAP)
			r.UserName = string(v)
		case packet.AttrClass:
			r.Class = append(r.Class[:0], v...)
		case attrAcctInterim:
			if len(v) == 4 {
				r.Interim = time.Duration(binary.BigEndian.Uint32(v)) * time.Second
			}
		case attrFramedIPAddress:
			if len(v) == 4 {
				r.FramedIP = netip.AddrFrom4([4]byte(v))
			}
		}
	}
}

// accountingFields reads an Accounting-Request's session attributes.
func accountingFields(r *session.Record, p packet.Packet) {
	var inGiga, outGiga uint64
	for it := p.Attrs(); ; {
		typ, v, ok := it.Next()
		if !ok {
			break
		}
		n := uint64(0)
		if len(v) == 4 {
			n = uint64(binary.BigEndian.Uint32(v))
		}
		switch typ {
		case attrAcctMultiSessionID:
			r.AcctMultiSessionID = string(v)
		case attrFramedIPAddress:
			if len(v) == 4 {
				r.FramedIP = netip.AddrFrom4([4]byte(v))
			}
		case attrFramedIPv6Address:
			if len(v) == 16 {
				r.FramedIPv6 = netip.AddrFrom16([16]byte(v))
			}
		case attrFramedIPv6Prefix: // RFC 3162 §2.3: reserved, prefix length, prefix
			if len(v) >= 2 && len(v) <= 18 && v[1] <= 128 {
				var a [16]byte
				copy(a[:], v[2:])
				if pf, err := netip.AddrFrom16(a).Prefix(int(v[1])); err == nil {
					r.FramedIPv6Prefix = pf
				}
			}
		case attrAcctInputOctets:
			r.InputOctets |= n
		case attrAcctOutputOctets:
			r.OutputOctets |= n
		case attrAcctInputGiga:
			inGiga = n
		case attrAcctOutputGiga:
			outGiga = n
		case attrAcctSessionTime:
			r.SessionTime = uint32(n)
		case attrAcctTerminateCause:
			r.TerminateCause = uint32(n)
		case attrAcctInterim:
			r.Interim = time.Duration(n) * time.Second
		}
	}
	r.InputOctets |= inGiga << 32 // RFC 2869 §5.1
	r.OutputOctets |= outGiga << 32
}

func attrUint32(p packet.Packet, t uint8) (uint32, bool) {
	v, ok := p.Attr(t)
	if !ok || len(v) != 4 {
		return 0, false
	}
	return binary.BigEndian.Uint32(v), true
}

// ssid is the SSID in a Called-Station-Id of the form "MAC:SSID" (RFC 3580 §3.20), else "".
func ssid(called string) string {
	for _, n := range []int{17, 12, 14} { // aa-bb-cc-dd-ee-ff, aabbccddeeff, aabb.ccdd.eeff
		if len(called) > n && called[n] == ':' {
			if _, err := cache.NormalizeMAC(called[:n]); err == nil {
				return called[n+1:]
			}
		}
	}
	return ""
}

// trackedFallback is the local decision engine with the tracker watching what it answers: local
// Access-Accepts and every Accounting-Request it acknowledges (forwarded or spooled).
type trackedFallback struct {
	proxy.Fallback // the Engine
	t              *sessionTracker
}

// Slow passes on the Engine's proxy.SlowFallback.
func (f trackedFallback) Slow(req *proxy.Request) bool {
	s, ok := f.Fallback.(proxy.SlowFallback)
	return ok && s.Slow(req)
}

func (f trackedFallback) Serve(ctx context.Context, req *proxy.Request, cause error) (packet.Packet, error) {
	resp, err := f.Fallback.Serve(ctx, req, cause)
	if resp != nil {
		// The Engine's accounting path returns the cloud's own Accounting-Response when it
		// delivered the record: who answered does not matter to the table. An Access-Accept here
		// is always local.
		f.t.observe(req, resp, false)
	}
	return resp, err
}

// openSessions opens the session table and its tracker (nothing when o is nil: sessions off).
func (e *Edge) openSessions(o *session.Options, cl *config.Cluster) error {
	if o == nil {
		return nil
	}
	so := *o
	so.Logger = e.log
	if cl != nil {
		// A cluster member's table names its records in the cluster, stamps them on the cluster's
		// hybrid clock and shares each write (docs/cluster.md). The cluster is built after the
		// table (it merges into it through the tracker); nothing is written before Run.
		so.Node, so.Now = clusterName(cl.Options), e.clusterParts.clock.Now
		so.Share = func(r session.Record) {
			if c := e.clusterParts.c; c != nil {
				c.ShareSession(r)
			}
		}
	}
	s, err := session.Open(so)
	if err != nil {
		return fmt.Errorf("edge: %w", err)
	}
	e.sessions, e.tracker = s, newSessionTracker(s, e.log)
	if cl != nil {
		e.tracker.fromPeer = func(a netip.Addr) bool {
			pp := e.clusterParts.peers // built after the table; read only once requests flow
			if pp == nil {
				return false
			}
			ms := pp.members.Load()
			return ms != nil && slices.Contains(*ms, a)
		}
	}
	return nil
}

// Sessions returns the session table, or nil when it is off.
func (e *Edge) Sessions() *session.Store { return e.sessions }

// SessionStatus is the session table's part of `mxedge status`.
type SessionStatus struct {
	Entries       int    `json:"entries"`
	Live          int    `json:"live"`
	NeedReconcile int    `json:"need_reconcile"`
	Starts        uint64 `json:"starts"` // sessions begun (first Accept or accounting)
	Stops         uint64 `json:"stops"`  // sessions ended (Stop, NAS reboot)
	Expired       uint64 `json:"expired"`
	Evicted       uint64 `json:"evicted"`
	Dropped       uint64 `json:"dropped"`
	Refused       uint64 `json:"refused"`
	WriteErrors   uint64 `json:"write_errors"`
	MaxEntries    int    `json:"max_entries"`
}

func (e *Edge) sessionStatus() *SessionStatus {
	if e.sessions == nil {
		return nil
	}
	st, ts := e.sessions.Stats(), e.tracker.Stats()
	return &SessionStatus{Entries: st.Entries, Live: st.Live, NeedReconcile: st.NeedReconcile, Starts: st.Created,
		Stops: st.Stops, Expired: st.Expired, Evicted: st.Evicted, Dropped: ts.Dropped, Refused: st.Refused,
		WriteErrors: st.WriteErrors, MaxEntries: st.MaxEntries}
}

// runSessions runs the tracker's writer and the table's sweeper until ctx is done.
func (e *Edge) runSessions(ctx context.Context) {
	if e.sessions == nil {
		return
	}
	var wg sync.WaitGroup
	wg.Go(func() { _ = e.tracker.Run(ctx) })
	wg.Go(func() {
		if err := e.sessions.Run(ctx); err != nil {
			e.log.Error("session table stopped", "err", err)
		}
	})
	wg.Wait()
}

// closeSessions closes the table (after runSessions returned).
func (e *Edge) closeSessions() {
	if e.sessions == nil {
		return
	}
	if err := e.sessions.Close(); err != nil {
		e.log.Error("session table close failed", "err", err)
	}
}

// findSessions answers the control socket's /v1/sessions.
func (e *Edge) findSessions(_ context.Context, cq control.SessionQuery) ([]control.Session, error) {
	q, err := SessionQuery(cq)
	if err != nil {
		return nil, err
	}
	rs, err := e.sessions.Find(q)
	if err != nil {
		return nil, fmt.Errorf("edge: sessions: %w", err)
	}
	out := make([]control.Session, len(rs))
	for i := range rs {
		out[i] = SessionWire(&rs[i])
	}
	return out, nil
}

// SessionQuery turns the CLI's filters into a table query: a MAC in any notation
// (cache.NormalizeMAC), an IPv4 or IPv6 address, a state name. Errors wrap
// control.ErrBadSessionQuery and name the filter.
func SessionQuery(cq control.SessionQuery) (session.Query, error) {
	q := session.Query{NAS: cq.NAS, Site: cq.Site, UserName: cq.User, Limit: cq.Limit}
	if cq.MAC != "" {
		m, err := cache.NormalizeMAC(cq.MAC)
		if err != nil {
			return q, fmt.Errorf("%w: mac %q: not a MAC address", control.ErrBadSessionQuery, cq.MAC)
		}
		q.MAC = m
	}
	if cq.IP != "" {
		a, err := netip.ParseAddr(cq.IP)
		if err != nil {
			return q, fmt.Errorf("%w: ip %q: not an IPv4 or IPv6 address", control.ErrBadSessionQuery, cq.IP)
		}
		q.IP = a.Unmap()
	}
	if cq.State != "" {
		st, err := session.ParseState(cq.State)
		if err != nil {
			return q, fmt.Errorf("%w: state %q: want authorized, active or stopped", control.ErrBadSessionQuery, cq.State)
		}
		q.State = st
	}
	return q, nil
}

// SessionWire is a record as the control socket and `mxedge sessions -o json` show it.
func SessionWire(r *session.Record) control.Session {
	s := control.Session{ID: r.ID, State: r.State.String(), NAS: r.NAS, NASAddress: r.NASAddr, Vendor: r.Vendor,
		Site: r.Site, NASPortID: r.NASPortID, CalledStationID: r.CalledStationID, SSID: r.SSID,
		CallingStationID: r.CallingStationID, MAC: r.MAC, UserName: r.UserName, Method: r.Method, VLAN: r.VLAN,
		DecidedBy: r.Decider.String(), Reconcile: r.Reconcile.String(), ReconcileAttempts: r.ReconcileAttempts,
		AcctSessionID: r.AcctSessionID, AcctMultiSessionID: r.AcctMultiSessionID, InputOctets: r.InputOctets,
		OutputOctets: r.OutputOctets, SessionTimeSeconds: r.SessionTime, InterimSeconds: uint32(r.Interim / time.Second),
		TerminateCause: r.TerminateCause, AuthorizedAt: r.Authorized, StartedAt: r.Started, UpdatedAt: r.Updated,
		StoppedAt: r.Stopped, ReconciledAt: r.ReconcileAt, ExpiresAt: r.Expires, Origin: r.Origin, Edge: r.Edge,
		AdmittedBy: r.AdmittedBy}
	if r.HasNASPort {
		p := r.NASPort
		s.NASPort = &p
	}
	if len(r.Class) > 0 {
		s.ClassHex = hex.EncodeToString(r.Class)
	}
	if r.FramedIP.IsValid() {
		s.FramedIP = r.FramedIP.String()
	}
	if r.FramedIPv6.IsValid() {
		s.FramedIPv6 = r.FramedIPv6.String()
	}
	if r.FramedIPv6Prefix.IsValid() {
		s.FramedIPv6Prefix = r.FramedIPv6Prefix.String()
	}
	return s
}

// sessionMetrics reads the table's counters at scrape time.
func (e *Edge) sessionMetrics() *metrics.Sessions {
	if e.sessions == nil {
		return nil
	}
	st, ts := e.sessions.Stats(), e.tracker.Stats()
	m := &metrics.Sessions{Stored: st.Entries, NeedReconcile: st.NeedReconcile, Started: st.Created, Stopped: st.Stops,
		Expired: st.Expired, Evicted: st.Evicted,
		Lost: map[string]uint64{"queue-full": ts.Dropped, "refused": st.Refused, "write-error": ts.Failed}}
	for _, a := range st.Active {
		m.Active = append(m.Active, metrics.SessionCount{NAS: a.NAS, Site: a.Site, Live: a.Live})
	}
	return m
}
