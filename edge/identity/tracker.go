package identity

import (
	"context"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"mxedge/proxy/packet"
)

// Attribute types the tracker reads beyond those packet names.
const (
	attrFramedIPAddress    = 8   // RFC 2865 §5.8
	attrNASPortID          = 87  // RFC 2869 §5.17
	attrCUI                = 89  // RFC 4372
	attrFramedIPv6Address  = 168 // RFC 6911 §3.1
	acctStart, acctStop    = 1, 2
	acctInterim            = 3
	acctOn, acctOff        = 7, 8
	DefaultSessionTimeout  = 24 * time.Hour
	DefaultMaxSessions     = 200_000
	trackerInbox           = 16384
	authMemory             = 5 * time.Minute // an Access-Accept waits this long for its session's Start
	sweepInterval          = time.Minute
	methodMAB, methodEAP   = "mab", "eap"
	methodPAP              = "pap"
	AuthorizerCloud        = "cloud"
	AuthorizerLocal        = "local"
	reasonTrackerInboxFull = "tracker-busy"
	reasonNoAcctSessionID  = "no-acct-session-id"
	reasonTrackerTableFull = "session-table-full"
)

// SessionObserver is what the tracker tells of each session: Pusher implements it.
type SessionObserver interface {
	SessionChanged(prev, cur *Session)
	Accounting(s *Session, received time.Time, pkt packet.Packet)
}

// TrackerOptions configure a Tracker.
type TrackerOptions struct {
	Observer SessionObserver
	// SessionTimeout ends a session (a disconnect with reason "expired") that had no accounting
	// for this long. Default DefaultSessionTimeout.
	SessionTimeout time.Duration
	// MaxSessions bounds the table; a new session beyond it is not tracked (counted, logged).
	MaxSessions int
	Logger      *slog.Logger
	Now         func() time.Time
}

// Tracker keeps the live sessions of this edge from the accounting it acknowledged and the
// Access-Accepts it relayed or made, off the request path: the request path hands it copies
// through a bounded inbox and never waits. It is the session table identity needs until the
// shared session table (cache/session) feeds SessionObserver directly.
type Tracker struct {
	o        TrackerOptions
	in       chan input
	sessions map[string]*Session
	byMAC    map[string]map[string]struct{} // nas+mac -> session keys
	auths    map[string]authInfo            // nas+mac -> the last Access-Accept
	dropped  [4]atomic.Uint64
	live     atomic.Int64 // len(sessions), for status from other goroutines
}

// Live is the number of sessions tracked.
func (t *Tracker) Live() int64 { return t.live.Load() }

type input struct {
	acct       bool
	nas, site  string
	src        netip.Addr
	received   time.Time
	req, resp  packet.Packet
	authorizer string
}

type authInfo struct {
	identity, vlan, method, authorizer string
	at                                 time.Time
}

// NewTracker builds a tracker; Run processes.
func NewTracker(o TrackerOptions) *Tracker {
	if o.SessionTimeout == 0 {
		o.SessionTimeout = DefaultSessionTimeout
	}
	if o.MaxSessions == 0 {
		o.MaxSessions = DefaultMaxSessions
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Tracker{o: o, in: make(chan input, trackerInbox), sessions: map[string]*Session{},
		byMAC: map[string]map[string]struct{}{}, auths: map[string]authInfo{}}
}

// Dropped returns the inputs not tracked: inbox full, no Acct-Session-Id, table full.
func (t *Tracker) Dropped() map[string]uint64 {
	return map[string]uint64{reasonTrackerInboxFull: t.dropped[0].Load(), reasonNoAcctSessionID: t.dropped[1].Load(),
		reasonTrackerTableFull: t.dropped[2].Load()}
}

// offer hands an input to Run's goroutine without blocking.
func (t *Tracker) offer(in input) {
	select {
	case t.in <- in:
	default:
		if n := t.dropped[0].Add(1); n&(n-1) == 0 {
			t.o.Logger.Error("session change not tracked", "reason", reasonTrackerInboxFull, "nas", in.nas, "dropped", n)
		}
	}
}

// Accounting tells the tracker of an Accounting-Request the edge acknowledged (to the cloud or
// into the spool). It copies pkt and returns at once.
func (t *Tracker) Accounting(nas, site string, src netip.Addr, received time.Time, pkt packet.Packet) {
	t.offer(input{acct: true, nas: nas, site: site, src: src, received: received, req: append(packet.Packet(nil), pkt...)})
}

// Accepted tells the tracker of an Access-Accept sent to a NAS (authorizer: cloud or local).
func (t *Tracker) Accepted(nas, site string, req, resp packet.Packet, authorizer string) {
	t.offer(input{nas: nas, site: site, received: t.o.Now(), req: append(packet.Packet(nil), req...),
		resp: append(packet.Packet(nil), resp...), authorizer: authorizer})
}

// Run processes inputs until ctx ends, then what is still in the inbox, and returns nil.
func (t *Tracker) Run(ctx context.Context) error {
	tk := time.NewTicker(sweepInterval)
	defer tk.Stop()
	for {
		select {
		case <-ctx.Done():
			for {
				select {
				case in := <-t.in:
					t.handle(in)
				default:
					return nil
				}
			}
		case in := <-t.in:
			t.handle(in)
		case <-tk.C:
			t.Sweep()
		}
	}
}

func (t *Tracker) handle(in input) {
	if in.acct {
		t.account(in)
	} else {
		t.accept(in)
	}
	t.live.Store(int64(len(t.sessions)))
}

func str(p packet.Packet, typ uint8) string {
	v, _ := p.Attr(typ)
	return string(v)
}

// NormalizeMAC writes a MAC in any common notation as aa:bb:cc:dd:ee:ff; anything else is
// returned unchanged.
func NormalizeMAC(s string) string {
	var hex []byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9', c >= 'a' && c <= 'f':
			hex = append(hex, c)
		case c >= 'A' && c <= 'F':
			hex = append(hex, c+'a'-'A')
		case c == ':' || c == '-' || c == '.':
		default:
			return s
		}
	}
	if len(hex) != 12 {
		return s
	}
	var b strings.Builder
	for i := 0; i < 12; i += 2 {
		if i > 0 {
			b.WriteByte(':')
		}
		b.Write(hex[i : i+2])
	}
	return b.String()
}

// ssid reads the SSID from Called-Station-Id "BSSID:SSID" (RFC 3580 §3.20).
func ssid(called string) string {
	if len(called) > 18 && (called[17] == ':' || called[17] == ';') && NormalizeMAC(called[:17]) != called[:17] {
		return called[18:]
	}
	return ""
}

func (t *Tracker) account(in input) {
	p := in.req
	status := uint32(0)
	if v, ok := p.Attr(packet.AttrAcctStatusType); ok && len(v) == 4 {
		status = uint32(v[0])<<24 | uint32(v[1])<<16 | uint32(v[2])<<8 | uint32(v[3])
	}
	now := t.o.Now()
	if status == acctOn || status == acctOff {
		// RFC 2866 §5.1: the NAS (re)started or stops accounting: every session it had is over.
		for k, s := range t.sessions {
			if s.NAS == in.nas {
				t.end(k, s, ReasonStop, now)
			}
		}
		return
	}
	id := str(p, packet.AttrAcctSessionID)
	if id == "" {
		if n := t.dropped[1].Add(1); n&(n-1) == 0 {
			t.o.Logger.Warn("accounting without Acct-Session-Id not tracked", "nas", in.nas, "reason", reasonNoAcctSessionID, "dropped", n)
		}
		return
	}
	key := sessionKey(in.nas, id)
	prev := t.sessions[key]
	if prev == nil && len(t.sessions) >= t.o.MaxSessions {
		if n := t.dropped[2].Add(1); n&(n-1) == 0 {
			t.o.Logger.Error("session not tracked: table full", "nas", in.nas, "reason", reasonTrackerTableFull, "dropped", n)
		}
		return
	}
	cur := &Session{NAS: in.nas, Site: in.site, SessionID: id, Started: in.received}
	if prev != nil {
		c := *prev
		c.Addrs = append([]netip.Addr(nil), prev.Addrs...)
		cur = &c
	}
	cur.Updated = in.received
	if u := str(p, packet.AttrUserName); u != "" {
		cur.UserName = u
	}
	if v := str(p, attrCUI); v != "" && v != "\x00" {
		cur.CUI = v
	}
	if v := str(p, packet.AttrCallingStationID); v != "" {
		cur.MAC = NormalizeMAC(v)
	}
	if v := ssid(str(p, packet.AttrCalledStationID)); v != "" {
		cur.SSID = v
	}
	if v := str(p, attrNASPortID); v != "" {
		cur.NASPort = v
	} else if v, ok := p.Attr(packet.AttrNASPort); ok && len(v) == 4 {
		cur.NASPort = strconv.FormatUint(uint64(v[0])<<24|uint64(v[1])<<16|uint64(v[2])<<8|uint64(v[3]), 10)
	}
	if v, ok := p.Attr(packet.AttrNASIPAddress); ok && len(v) == 4 {
		cur.NASAddress = netip.AddrFrom4([4]byte(v)).String()
	} else if v, ok := p.Attr(packet.AttrNASIPv6Address); ok && len(v) == 16 {
		cur.NASAddress = netip.AddrFrom16([16]byte(v)).String()
	} else if in.src.IsValid() {
		cur.NASAddress = in.src.Unmap().String()
	}
	var addrs []netip.Addr
	for it := p.Attrs(); ; {
		typ, v, ok := it.Next()
		if !ok {
			break
		}
		switch {
		case typ == attrFramedIPAddress && len(v) == 4:
			if a := netip.AddrFrom4([4]byte(v)); !a.IsUnspecified() && a != netip.AddrFrom4([4]byte{255, 255, 255, 254}) && a != netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
				addrs = append(addrs, a) // 0xFFFFFFFE/F are "NAS assigns" / "user chooses" (RFC 2865 §5.8)
			}
		case typ == attrFramedIPv6Address && len(v) == 16:
			addrs = append(addrs, netip.AddrFrom16([16]byte(v)))
		}
	}
	if len(addrs) > 0 {
		cur.Addrs = addrs
	}
	if a, ok := t.auths[in.nas+"\x00"+cur.MAC]; ok && cur.MAC != "" && cur.AuthTime.IsZero() {
		cur.Identity, cur.VLAN, cur.Method, cur.Authorizer, cur.AuthTime = a.identity, a.vlan, a.method, a.authorizer, a.at
	}
	if status == acctStop {
		cur.Ended, cur.EndReason = true, ReasonStop
	}
	t.o.Observer.Accounting(cur, in.received, p)
	t.o.Observer.SessionChanged(prev, cur)
	if cur.Ended {
		t.forget(key, cur)
		return
	}
	t.sessions[key] = cur
	if cur.MAC != "" {
		mk := in.nas + "\x00" + cur.MAC
		if t.byMAC[mk] == nil {
			t.byMAC[mk] = map[string]struct{}{}
		}
		t.byMAC[mk][key] = struct{}{}
	}
}

func (t *Tracker) accept(in input) {
	mac := NormalizeMAC(str(in.req, packet.AttrCallingStationID))
	if mac == "" {
		return
	}
	a := authInfo{identity: str(in.resp, packet.AttrUserName), vlan: str(in.resp, packet.AttrTunnelPrivateGroupID),
		method: method(in.req, mac), authorizer: in.authorizer, at: in.received}
	if a.identity == "" {
		a.identity = str(in.req, packet.AttrUserName)
	}
	if len(a.vlan) > 0 && a.vlan[0] < 0x20 { // a tag octet (RFC 2868 §3.6)
		a.vlan = a.vlan[1:]
	}
	mk := in.nas + "\x00" + mac
	t.auths[mk] = a
	for key := range t.byMAC[mk] {
		prev := t.sessions[key]
		if prev == nil {
			continue
		}
		c := *prev
		c.Identity, c.VLAN, c.Method, c.Authorizer, c.AuthTime = a.identity, a.vlan, a.method, a.authorizer, a.at
		t.o.Observer.SessionChanged(prev, &c)
		t.sessions[key] = &c
	}
}

// method classifies how an Access-Request authenticated: EAP, MAB (User-Name is the MAC), else a
// password.
func method(req packet.Packet, mac string) string {
	switch {
	case req.Has(packet.AttrEAPMessage):
		return methodEAP
	case NormalizeMAC(str(req, packet.AttrUserName)) == mac:
		return methodMAB
	}
	return methodPAP
}

func (t *Tracker) end(key string, s *Session, reason string, now time.Time) {
	c := *s
	c.Ended, c.EndReason, c.Updated = true, reason, now
	t.o.Observer.SessionChanged(s, &c)
	t.forget(key, s)
}

func (t *Tracker) forget(key string, s *Session) {
	delete(t.sessions, key)
	if s.MAC != "" {
		mk := s.NAS + "\x00" + s.MAC
		delete(t.byMAC[mk], key)
		if len(t.byMAC[mk]) == 0 {
			delete(t.byMAC, mk)
		}
	}
}

// Sweep expires sessions without accounting for SessionTimeout and forgets old Access-Accepts.
// Run calls it every minute; tests call it with their clock.
func (t *Tracker) Sweep() {
	now := t.o.Now()
	for k, s := range t.sessions {
		if now.Sub(s.Updated) > t.o.SessionTimeout {
			t.end(k, s, ReasonExpired, now)
		}
	}
	t.live.Store(int64(len(t.sessions)))
	for k, a := range t.auths {
		if now.Sub(a.at) > authMemory {
			delete(t.auths, k)
		}
	}
}
