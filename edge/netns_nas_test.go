package edge_test

// A Go NAS inside the edge namespace for the real-WAN tests (netns_test.go): it signs requests with
// Message-Authenticator, retransmits them like a switch does (same identifier, same bytes), verifies
// every answer against the request it answers, and records when each exchange began and ended.

import (
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"mxedge/cache"
	"mxedge/edge/peertest"
	"mxedge/proxy/packet"
)

// nasSockets is how many source ports the NAS uses. With 256 identifiers each, identifiers are reused
// only after 4,096 exchanges (20 s at 200 requests/s), far longer than any exchange lives.
const nasSockets = 16

// nasSlot is a source port and an identifier: what a response is matched by (RFC 2865 §3).
type nasSlot struct {
	sock int
	id   uint8
}

// nasAnswer is a verified response and when it arrived.
type nasAnswer struct {
	at time.Time
	p  packet.Packet
}

// wanNAS sends RADIUS requests from 127.0.0.1 inside the edge namespace to one server address.
type wanNAS struct {
	t       testing.TB
	to      netip.AddrPort
	secret  []byte
	socks   []*net.UDPConn
	slots   chan nasSlot // free slots, first in first out like a NAS's identifier pool
	mu      sync.Mutex
	pending map[nasSlot]*nasPending
	readers sync.WaitGroup
}

type nasPending struct {
	reqAuth []byte
	answer  chan nasAnswer // buffered 1: the reader never blocks
}

// newWANNAS opens the NAS sockets in namespace ns; Cleanup closes them and waits for the readers.
func newWANNAS(t testing.TB, ns string, to netip.AddrPort) *wanNAS {
	t.Helper()
	return newWANNASFrom(t, ns, netip.MustParseAddr("127.0.0.1"), to)
}

// newWANNASFrom is newWANNAS with its sockets bound to from.
func newWANNASFrom(t testing.TB, ns string, from netip.Addr, to netip.AddrPort) *wanNAS {
	t.Helper()
	n := &wanNAS{t: t, to: to, secret: []byte(nasSecret), slots: make(chan nasSlot, nasSockets*256), pending: map[nasSlot]*nasPending{}}
	for range nasSockets {
		c, err := peertest.ListenUDPIn(ns, netip.AddrPortFrom(from, 0))
		if err != nil {
			t.Fatal(err)
		}
		n.socks = append(n.socks, c)
	}
	for id := range 256 {
		for s := range nasSockets {
			n.slots <- nasSlot{s, uint8(id)}
		}
	}
	for i, c := range n.socks {
		n.readers.Add(1)
		go n.read(i, c)
	}
	t.Cleanup(func() {
		for _, c := range n.socks {
			c.Close()
		}
		n.readers.Wait()
	})
	return n
}

// read delivers each verified response to the exchange waiting on its slot. A response that fails
// verification (late, for an earlier use of the slot, or forged) is discarded, as a NAS does.
func (n *wanNAS) read(sock int, c *net.UDPConn) {
	defer n.readers.Done()
	buf := make([]byte, 4096)
	for {
		m, _, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			return // closed
		}
		at := time.Now()
		p, err := packet.Parse(buf[:m])
		if err != nil {
			continue
		}
		key := nasSlot{sock, p.ID()}
		n.mu.Lock()
		w := n.pending[key]
		ok := w != nil && packet.CheckResponseAuthenticator(p, w.reqAuth, n.secret) &&
			packet.CheckResponseMA(p, w.reqAuth, n.secret) != packet.MAInvalid
		if ok {
			delete(n.pending, key)
		}
		n.mu.Unlock()
		if ok {
			w.answer <- nasAnswer{at: at, p: append(packet.Packet(nil), p...)}
		}
	}
}

// nasRetry is how a NAS retransmits: every interval, at most sends transmissions in all (0: until
// ctx ends), and it gives up giveUp after the first transmission (0: only when ctx ends).
type nasRetry struct {
	interval time.Duration
	sends    int
	giveUp   time.Duration
}

// authRetry is a typical switch: 1 s timeout, 3 retransmissions, an answer counts within 5 s.
var authRetry = nasRetry{interval: time.Second, sends: 4, giveUp: 5 * time.Second}

// acctRetry retransmits accounting every second until it is acknowledged (RFC 2866 §2: the client
// keeps trying until it gets an Accounting-Response).
var acctRetry = nasRetry{interval: time.Second}

// exchange takes a slot, builds the request for its identifier and sends it, retransmitting the
// same bytes per r. It returns when the first transmission went out and the answer, if any.
func (n *wanNAS) exchange(ctx context.Context, build func(id uint8) packet.Packet, r nasRetry) (sent time.Time, ans nasAnswer, ok bool) {
	var s nasSlot
	select {
	case s = <-n.slots:
	case <-ctx.Done():
		return time.Time{}, nasAnswer{}, false
	}
	defer func() { n.slots <- s }()
	req := build(s.id)
	w := &nasPending{reqAuth: append([]byte(nil), req.Authenticator()...), answer: make(chan nasAnswer, 1)}
	n.mu.Lock()
	if n.pending[s] != nil {
		n.mu.Unlock()
		n.t.Errorf("nas: slot %+v reused while in flight", s)
		return time.Time{}, nasAnswer{}, false
	}
	n.pending[s] = w
	n.mu.Unlock()
	defer func() {
		n.mu.Lock()
		if n.pending[s] == w {
			delete(n.pending, s)
		}
		n.mu.Unlock()
	}()
	sent = time.Now()
	var giveUp <-chan time.Time
	if r.giveUp > 0 {
		tm := time.NewTimer(r.giveUp)
		defer tm.Stop()
		giveUp = tm.C
	}
	tick := time.NewTicker(r.interval)
	defer tick.Stop()
	sends := 0
	for {
		if r.sends == 0 || sends < r.sends {
			// A send error (none expected on loopback) is a lost packet; the retry covers it.
			_, _ = n.socks[s.sock].WriteToUDPAddrPort(req, n.to)
			sends++
		}
		select {
		case a := <-w.answer:
			return sent, a, true
		case <-giveUp:
			return sent, nasAnswer{}, false
		case <-ctx.Done():
			return sent, nasAnswer{}, false
		case <-tick.C:
		}
	}
}

// mabRequest is an Access-Request as a Cisco Catalyst switch sends it for MAC authentication bypass
// (about 280 octets, which matters for how fast a dead link fills the edge's TCP send buffer): the
// MAC as User-Name and User-Password, Service-Type = Call-Check, the port, the session's Cisco
// AV-pairs and Message-Authenticator.
func mabRequest(t testing.TB, id uint8, mac string) packet.Packet {
	const (
		attrFramedMTU = 12 // RFC 2865 §5.12
		vendorCisco   = 9
		ciscoAVPair   = 1
		serviceCall   = 10 // Call-Check, RFC 2865 §5.6
		portEthernet  = 15 // NAS-Port-Type Ethernet, RFC 2865 §5.41
		attrNASPortID = 87 // RFC 2869 §5.17
	)
	var auth [16]byte
	rand.Read(auth[:])
	b := packet.New(nil, packet.CodeAccessRequest, id, auth[:])
	b.AddString(packet.AttrUserName, mac)
	b.Add(packet.AttrUserPassword, packet.EncryptUserPassword(nil, []byte(mac), []byte(nasSecret), auth[:]))
	b.AddUint32(packet.AttrServiceType, serviceCall)
	b.AddUint32(attrFramedMTU, 1485)
	b.AddString(packet.AttrCalledStationID, "00-11-22-33-44-55")
	calling := mac
	if m, err := cache.NormalizeMAC(mac); err == nil {
		calling = strings.ToUpper(strings.ReplaceAll(m, ":", "-"))
	}
	b.AddString(packet.AttrCallingStationID, calling)
	b.AddMA()
	b.AddVSA(vendorCisco, ciscoAVPair, []byte("service-type=Call Check"))
	b.AddVSA(vendorCisco, ciscoAVPair, []byte("audit-session-id=C0A80A01000004D2"+strings.ToUpper(mac[4:])))
	b.AddVSA(vendorCisco, ciscoAVPair, []byte("method=mab"))
	b.AddVSA(vendorCisco, ciscoAVPair, []byte("client-iif-id=1929381902"))
	b.Add(packet.AttrNASIPAddress, []byte{127, 0, 0, 1})
	b.AddString(attrNASPortID, "GigabitEthernet1/0/12")
	b.AddUint32(packet.AttrNASPortType, portEthernet)
	b.AddUint32(packet.AttrNASPort, 50112)
	p, err := b.Finish([]byte(nasSecret), nil)
	if err != nil {
		t.Errorf("mab request: %v", err)
	}
	return p
}

// attrAcctSessionTime is Acct-Session-Time (RFC 2866 §5.7); the tests number a session's records with it.
const attrAcctSessionTime uint8 = 46

// Acct-Status-Type values (RFC 2866 §5.1).
const (
	acctStart   = 1
	acctStop    = 2
	acctInterim = 3
)

// acctRecord is an Accounting-Request of a session; seq goes into Acct-Session-Time so that every
// record of a session is distinct at FreeRADIUS.
func acctRecord(t testing.TB, id uint8, session string, status uint32, seq int) packet.Packet {
	b := packet.New(nil, packet.CodeAccountingRequest, id, nil)
	b.AddUint32(packet.AttrAcctStatusType, status)
	b.AddString(packet.AttrAcctSessionID, session)
	b.AddString(packet.AttrUserName, "user-"+session)
	b.AddUint32(attrAcctSessionTime, uint32(seq))
	b.AddMA()
	p, err := b.Finish([]byte(nasSecret), nil)
	if err != nil {
		t.Errorf("accounting request: %v", err)
	}
	return p
}

// knownMAC is a client the cloud authorizes, with the VLAN only the cloud gives it.
type knownMAC struct {
	mac, vlan string
}

// mabOutcome is one MAB exchange as the NAS saw it.
type mabOutcome struct {
	mac      string
	known    bool
	wantVLAN string
	sent     time.Time // first transmission
	answered bool      // a verified answer within 5 s of sent
	at       time.Time
	code     packet.Code
	vlan     string
	cloud    bool // the answer carries the cloud's marker (Class or the cloud's Reply-Message)
}

func (o mabOutcome) latency() time.Duration { return o.at.Sub(o.sent) }

// wrong says what is wrong with an answer, or "". A client the cloud knows must get an Access-Accept
// with its own VLAN from the cloud and from the cache alike; an unknown one a Reject from the cloud
// or the default VLAN from the edge.
func (o mabOutcome) wrong() string {
	if !o.answered {
		return ""
	}
	switch {
	case o.known && (o.code != packet.CodeAccessAccept || o.vlan != o.wantVLAN):
		return fmt.Sprintf("known %s: %v VLAN %q (cloud=%v), want Access-Accept VLAN %q", o.mac, o.code, o.vlan, o.cloud, o.wantVLAN)
	case !o.known && o.cloud && o.code != packet.CodeAccessReject:
		return fmt.Sprintf("unknown %s: cloud answered %v", o.mac, o.code)
	case !o.known && !o.cloud && (o.code != packet.CodeAccessAccept || o.vlan != netnsDefaultVLAN):
		return fmt.Sprintf("unknown %s: local %v VLAN %q, want Access-Accept VLAN %q", o.mac, o.code, o.vlan, netnsDefaultVLAN)
	}
	return ""
}

// wanMABStream sends MAB requests at a fixed rate for a fixed time, half for known clients (round
// robin) and half for a new unknown MAC each, each exchange in its own goroutine.
type wanMABStream struct {
	start    time.Time
	outcomes []mabOutcome
	done     chan struct{}
}

func startWANMABStream(ctx context.Context, t testing.TB, n *wanNAS, known []knownMAC, rate int, dur time.Duration) *wanMABStream {
	total := int(dur.Seconds() * float64(rate))
	s := &wanMABStream{start: time.Now(), outcomes: make([]mabOutcome, total), done: make(chan struct{})}
	step := time.Second / time.Duration(rate)
	go func() {
		defer close(s.done)
		var wg sync.WaitGroup
		defer wg.Wait()
		for i := range total {
			if d := time.Until(s.start.Add(time.Duration(i) * step)); d > 0 {
				select {
				case <-time.After(d):
				case <-ctx.Done():
					return
				}
			}
			o := &s.outcomes[i]
			if i%2 == 0 {
				k := known[(i/2)%len(known)]
				o.mac, o.known, o.wantVLAN = k.mac, true, k.vlan
			} else {
				o.mac = fmt.Sprintf("0266%08x", i)
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				sent, a, ok := n.exchange(ctx, func(id uint8) packet.Packet { return mabRequest(t, id, o.mac) }, authRetry)
				o.sent = sent
				if !ok || a.at.Sub(sent) > authRetry.giveUp {
					return
				}
				o.answered, o.at, o.code = true, a.at, a.p.Code()
				v, _ := a.p.Attr(packet.AttrTunnelPrivateGroupID)
				if len(v) > 0 && v[0] < 0x20 { // RFC 2868 §3.6: a leading tag octet
					v = v[1:]
				}
				o.vlan = string(v)
				class, _ := a.p.Attr(packet.AttrClass)
				msg, _ := a.p.Attr(packet.AttrReplyMessage)
				o.cloud = string(class) == netnsCloudClass || string(msg) == netnsCloudReject
			}()
		}
	}()
	return s
}

// wait returns the outcomes once every exchange has ended.
func (s *wanMABStream) wait() []mabOutcome {
	<-s.done
	return s.outcomes
}

// at sleeps until offset after the stream's start and returns the time.
func (s *wanMABStream) at(offset time.Duration) time.Time {
	time.Sleep(time.Until(s.start.Add(offset)))
	return time.Now()
}
