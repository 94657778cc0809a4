package proxy_test

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"mxedge/proxy"
	"mxedge/proxy/packet"
)

// testWriter is a ResponseWriter that records what it is asked to send.
type testWriter struct {
	origin proxy.Origin
	mu     sync.Mutex
	sent   [][]byte
}

func (w *testWriter) Origin() proxy.Origin { return w.origin }
func (w *testWriter) WriteResponse(b []byte) {
	w.mu.Lock()
	w.sent = append(w.sent, b)
	w.mu.Unlock()
}

func (w *testWriter) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.sent)
}

// frontPacket builds a request signed with nasSecret: Message-Authenticator first when ma, then
// what add appends, then Class attributes until it is size octets long (size 0: no padding).
func frontPacket(tb testing.TB, code packet.Code, ma bool, size int, add func(b *packet.Builder, auth []byte)) packet.Packet {
	tb.Helper()
	var auth [16]byte
	rand.Read(auth[:])
	var b packet.Builder
	if code == packet.CodeAccountingRequest {
		b = packet.New(nil, code, 1, nil)
	} else {
		b = packet.New(nil, code, 1, auth[:])
	}
	if ma {
		b.AddMA()
	}
	if add != nil {
		add(&b, auth[:])
	}
	for r := size - b.Len(); size > 0 && r > 0; r = size - b.Len() {
		v := r - 2
		if r > 255 {
			v = min(253, r-4)
		}
		b.Add(packet.AttrClass, make([]byte, v))
	}
	p, err := b.Finish([]byte(nasSecret), nil)
	if err != nil {
		tb.Fatal(err)
	}
	if size > 0 && len(p) != size {
		tb.Fatalf("built %d octets, want %d", len(p), size)
	}
	return p
}

func eapAttr(code, id, typ uint8, data []byte, length int) []byte {
	b := append([]byte{code, id, 0, 0, typ}, data...)
	if length == 0 {
		length = len(b)
	}
	binary.BigEndian.PutUint16(b[2:], uint16(length))
	return b
}

func chapPassword(ident uint8, password string, challenge []byte) []byte {
	h := md5.New()
	h.Write([]byte{ident})
	h.Write([]byte(password))
	h.Write(challenge)
	return append([]byte{ident}, h.Sum(nil)...)
}

func user(name string) func(b *packet.Builder, _ []byte) {
	return func(b *packet.Builder, _ []byte) { b.AddString(packet.AttrUserName, name) }
}

func acctStart(b *packet.Builder, _ []byte) {
	b.AddUint32(packet.AttrAcctStatusType, 1)
	b.AddString(packet.AttrAcctSessionID, "front-1")
}

// TestFrontDoorRefusesWhatUpstreamWouldDiscard: each request is dropped with its reason counted,
// gets no answer, and never reaches the upstream; the requests at the size limit are forwarded.
func TestFrontDoorRefusesWhatUpstreamWouldDiscard(t *testing.T) {
	h := startHarness(t, harnessOpts{clients: []proxy.Client{
		{Name: "strict", Prefix: netip.MustParsePrefix("127.0.0.1/32"), Secret: proxy.Secret(nasSecret), RequireMessageAuthenticator: true, LimitProxyState: true},
		{Name: "lax", Prefix: netip.MustParsePrefix("127.0.0.0/8"), Secret: proxy.Secret(nasSecret), LimitProxyState: true},
	}})
	var lastLen atomic.Int64
	var lastChallenge atomic.Pointer[[]byte]
	h.responder[0].SetReply(func(b *packet.Builder, req packet.Packet) {
		lastLen.Store(int64(len(req)))
		c, _ := req.Attr(packet.AttrCHAPChallenge)
		c = append([]byte(nil), c...)
		lastChallenge.Store(&c)
	})
	lax, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2)})
	if err != nil {
		t.Fatal(err)
	}
	defer lax.Close()
	identity := eapAttr(2, 1, 1, []byte("host/laptop"), 0)
	st := h.srv.Stats()
	drops := []struct {
		name   string
		req    packet.Packet
		to     netip.AddrPort
		from   *net.UDPConn
		reason proxy.DropReason
	}{
		{"EAP Length above the attributes", frontPacket(t, packet.CodeAccessRequest, true, 0, func(b *packet.Builder, _ []byte) {
			b.Add(packet.AttrEAPMessage, eapAttr(2, 1, 1, []byte("host/laptop"), 40))
		}), h.auth, nil, proxy.DropMalformedEAP},
		{"EAP fragment missing", frontPacket(t, packet.CodeAccessRequest, true, 0, func(b *packet.Builder, _ []byte) {
			big := eapAttr(2, 1, 13, make([]byte, 600), 0)
			b.Add(packet.AttrEAPMessage, big[:253])
			b.Add(packet.AttrEAPMessage, big[506:])
		}), h.auth, nil, proxy.DropMalformedEAP},
		{"EAP code 5", frontPacket(t, packet.CodeAccessRequest, true, 0, func(b *packet.Builder, _ []byte) {
			b.Add(packet.AttrEAPMessage, eapAttr(5, 1, 1, []byte("x"), 0))
		}), h.auth, nil, proxy.DropMalformedEAP},
		{"EAP three octets", frontPacket(t, packet.CodeAccessRequest, true, 0, func(b *packet.Builder, _ []byte) {
			b.Add(packet.AttrEAPMessage, []byte{2, 1, 0})
		}), h.auth, nil, proxy.DropMalformedEAP},
		{"EAP without Message-Authenticator from a lax client", frontPacket(t, packet.CodeAccessRequest, false, 0, func(b *packet.Builder, _ []byte) {
			b.Add(packet.AttrEAPMessage, identity)
		}), h.auth, lax, proxy.DropEAPWithoutMA},
		{"attribute type 0", frontPacket(t, packet.CodeAccessRequest, true, 0, func(b *packet.Builder, _ []byte) {
			b.AddString(0, "x")
		}), h.auth, nil, proxy.DropMalformed},
		{"201 attributes", frontPacket(t, packet.CodeAccessRequest, true, 0, func(b *packet.Builder, _ []byte) {
			for range packet.MaxAttrs {
				b.AddString(packet.AttrClass, "c")
			}
		}), h.auth, nil, proxy.DropTooManyAttributes},
		{"Access-Request one octet too long", frontPacket(t, packet.CodeAccessRequest, true, packet.MaxLen-10+1, user("big")), h.auth, nil, proxy.DropTooLongToForward},
		{"Access-Request without MA one octet too long", frontPacket(t, packet.CodeAccessRequest, false, packet.MaxLen-28+1, user("big")), h.auth, lax, proxy.DropTooLongToForward},
		{"CHAP one octet too long", frontPacket(t, packet.CodeAccessRequest, true, packet.MaxLen-28+1, func(b *packet.Builder, auth []byte) {
			b.AddString(packet.AttrUserName, "chap")
			b.Add(packet.AttrCHAPPassword, chapPassword(1, "pw", auth))
		}), h.auth, nil, proxy.DropTooLongToForward},
		{"accounting one octet too long", frontPacket(t, packet.CodeAccountingRequest, false, packet.MaxLen-34+1, acctStart), h.acct, nil, proxy.DropTooLongToForward},
		{"accounting with MA one octet too long", frontPacket(t, packet.CodeAccountingRequest, true, packet.MaxLen-16+1, acctStart), h.acct, nil, proxy.DropTooLongToForward},
		{"accounting with Acct-Delay-Time one octet too long", frontPacket(t, packet.CodeAccountingRequest, false, packet.MaxLen-28+1, func(b *packet.Builder, a []byte) {
			acctStart(b, a)
			b.AddUint32(packet.AttrAcctDelayTime, 3)
		}), h.acct, nil, proxy.DropTooLongToForward},
	}
	for _, tt := range drops {
		t.Run(tt.name, func(t *testing.T) {
			before, upBefore := st.Dropped[tt.reason].Load(), h.responder[0].Requests.Load()
			if resp := exchange(t, tt.from, tt.to, tt.req, 300*time.Millisecond); resp != nil {
				t.Fatalf("answered with %v", resp.Code())
			}
			if got := st.Dropped[tt.reason].Load(); got != before+1 {
				t.Fatalf("%v counted %d times, want once", tt.reason, got-before)
			}
			if got := h.responder[0].Requests.Load(); got != upBefore {
				t.Fatal("forwarded to the upstream")
			}
		})
	}

	forwards := []struct {
		name    string
		req     packet.Packet
		to      netip.AddrPort
		from    *net.UDPConn
		upLen   int    // octets the upstream received; 0: not checked
		chapChl []byte // CHAP-Challenge the upstream received
	}{
		{"largest Access-Request", frontPacket(t, packet.CodeAccessRequest, true, packet.MaxLen-10, user("big")), h.auth, nil, packet.MaxLen, nil},
		{"largest Access-Request without MA", frontPacket(t, packet.CodeAccessRequest, false, packet.MaxLen-28, user("big")), h.auth, lax, packet.MaxLen, nil},
		{"largest accounting", frontPacket(t, packet.CodeAccountingRequest, false, packet.MaxLen-34, acctStart), h.acct, nil, 0, nil},
		{"largest accounting with MA", frontPacket(t, packet.CodeAccountingRequest, true, packet.MaxLen-16, acctStart), h.acct, nil, 0, nil},
		{"largest accounting with Acct-Delay-Time", frontPacket(t, packet.CodeAccountingRequest, false, packet.MaxLen-28, func(b *packet.Builder, a []byte) {
			acctStart(b, a)
			b.AddUint32(packet.AttrAcctDelayTime, 3)
		}), h.acct, nil, 0, nil},
		{"EAP-Start", frontPacket(t, packet.CodeAccessRequest, true, 0, func(b *packet.Builder, _ []byte) {
			b.AddString(packet.AttrUserName, "eap")
			b.Add(packet.AttrEAPMessage, nil)
		}), h.auth, nil, 0, nil},
		{"EAP identity", frontPacket(t, packet.CodeAccessRequest, true, 0, func(b *packet.Builder, _ []byte) {
			b.AddString(packet.AttrUserName, "eap")
			b.AddEAP(identity)
		}), h.auth, nil, 0, nil},
	}
	for _, tt := range forwards {
		t.Run(tt.name, func(t *testing.T) {
			upBefore := h.responder[0].Requests.Load()
			resp := exchange(t, tt.from, tt.to, tt.req, 2*time.Second)
			checkResponse(t, tt.req, resp)
			if h.responder[0].Requests.Load() != upBefore+1 {
				t.Fatal("not forwarded once")
			}
			if tt.upLen != 0 && lastLen.Load() != int64(tt.upLen) {
				t.Fatalf("upstream received %d octets, want %d", lastLen.Load(), tt.upLen)
			}
		})
	}

	// CHAP at the limit: forwarded at exactly 4096 octets with the NAS's authenticator as
	// CHAP-Challenge.
	var nasAuth []byte
	req := frontPacket(t, packet.CodeAccessRequest, true, packet.MaxLen-28, func(b *packet.Builder, auth []byte) {
		nasAuth = append([]byte(nil), auth...)
		b.AddString(packet.AttrUserName, "chap")
		b.Add(packet.AttrCHAPPassword, chapPassword(1, "pw", auth))
	})
	checkResponse(t, req, exchange(t, nil, h.auth, req, 2*time.Second))
	if lastLen.Load() != packet.MaxLen || !bytes.Equal(*lastChallenge.Load(), nasAuth) {
		t.Fatalf("CHAP forwarded as %d octets with CHAP-Challenge %x, want 4096 and %x", lastLen.Load(), *lastChallenge.Load(), nasAuth)
	}
	// A CHAP-Challenge the NAS sent is kept, not replaced.
	own := []byte("challenge-of-the-nas")
	req = frontPacket(t, packet.CodeAccessRequest, true, 0, func(b *packet.Builder, _ []byte) {
		b.AddString(packet.AttrUserName, "chap")
		b.Add(packet.AttrCHAPPassword, chapPassword(1, "pw", own))
		b.Add(packet.AttrCHAPChallenge, own)
	})
	checkResponse(t, req, exchange(t, nil, h.auth, req, 2*time.Second))
	if !bytes.Equal(*lastChallenge.Load(), own) {
		t.Fatalf("CHAP-Challenge %q reached the upstream, want the NAS's %q", *lastChallenge.Load(), own)
	}
}

// holdHandler keeps every request it is given.
type holdHandler struct {
	mu   sync.Mutex
	reqs []*proxy.Request
}

func (h *holdHandler) ServeRADIUS(r *proxy.Request) {
	h.mu.Lock()
	h.reqs = append(h.reqs, r)
	h.mu.Unlock()
}

func (h *holdHandler) last(t *testing.T, n int) *proxy.Request {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.reqs) != n {
		t.Fatalf("handler got %d requests, want %d", len(h.reqs), n)
	}
	return h.reqs[n-1]
}

func newFrontDoor(t *testing.T, h proxy.Handler, logger *slog.Logger, now func() time.Time) *proxy.Server {
	t.Helper()
	srv, err := proxy.NewServer(proxy.ServerOptions{AuthAddrs: []string{}, AcctAddrs: []string{}, Logger: logger, Now: now}, h)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.SetClients([]proxy.Client{{Name: "lo", Prefix: netip.MustParsePrefix("127.0.0.1/32"), Secret: proxy.Secret(nasSecret), RequireMessageAuthenticator: true}}); err != nil {
		t.Fatal(err)
	}
	return srv
}

func reject(t *testing.T, r *proxy.Request) []byte {
	t.Helper()
	b := packet.NewResponse(nil, r.Packet, packet.CodeAccessReject)
	resp, err := b.Finish(r.Secret(), r.Packet.Authenticator())
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// TestRequestAnsweredOnce: the first Reply or Drop claims the request; later ones are counted and
// never sent. A dropped request's retransmission is processed anew, an answered one's is answered
// from the duplicate cache.
func TestRequestAnsweredOnce(t *testing.T) {
	h := &holdHandler{}
	srv := newFrontDoor(t, h, nil, nil)
	st := srv.Stats()
	w := &testWriter{origin: proxy.Origin{Port: proxy.PortAuth, Src: netip.MustParseAddrPort("127.0.0.1:4000")}}

	p := buildRequest(t, reqOpts{user: "once"})
	srv.Accept(w, p)
	r := h.last(t, 1)
	r.Reply(reject(t, r))
	r.Reply(reject(t, r))
	r.Drop(proxy.DropBadReply, nil)
	if w.count() != 1 || st.ExtraAnswers.Load() != 2 || st.Dropped[proxy.DropBadReply].Load() != 0 {
		t.Fatalf("sent %d, extra %d, dropped %d; want 1, 2, 0", w.count(), st.ExtraAnswers.Load(), st.Dropped[proxy.DropBadReply].Load())
	}
	srv.Accept(w, p) // retransmission: from the cache
	if w.count() != 2 || st.DuplicateAnswered.Load() != 1 {
		t.Fatal("retransmission of an answered request not answered from the cache")
	}
	h.last(t, 1)

	p = buildRequest(t, reqOpts{user: "dropped"})
	srv.Accept(w, p)
	r = h.last(t, 2)
	r.Drop(proxy.DropBadReply, nil)
	r.Reply(reject(t, r))
	if w.count() != 2 || st.ExtraAnswers.Load() != 3 || st.Dropped[proxy.DropBadReply].Load() != 1 {
		t.Fatalf("after Drop then Reply: sent %d, extra %d, dropped %d", w.count(), st.ExtraAnswers.Load(), st.Dropped[proxy.DropBadReply].Load())
	}
	srv.Accept(w, p) // retransmission of a dropped request: processed again
	r = h.last(t, 3)
	r.Reply(nil) // the old drop: counted as unanswered
	if st.Dropped[proxy.DropUnanswered].Load() != 1 || w.count() != 2 {
		t.Fatal("Reply(nil) not a counted drop")
	}

	// Racing answers: exactly one wins.
	for i := range 20 {
		srv.Accept(w, buildRequest(t, reqOpts{user: fmt.Sprintf("race%d", i)}))
		r := h.last(t, 4+i)
		sentBefore, dropBefore, extraBefore := w.count(), st.Dropped[proxy.DropBadReply].Load(), st.ExtraAnswers.Load()
		resp := reject(t, r)
		var wg sync.WaitGroup
		for j := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if j%2 == 0 {
					r.Reply(resp)
				} else {
					r.Drop(proxy.DropBadReply, nil)
				}
			}()
		}
		wg.Wait()
		sent, dropped := w.count()-sentBefore, int(st.Dropped[proxy.DropBadReply].Load()-dropBefore)
		if sent+dropped != 1 || st.ExtraAnswers.Load()-extraBefore != 7 {
			t.Fatalf("race %d: %d sent, %d dropped, %d extra", i, sent, dropped, st.ExtraAnswers.Load()-extraBefore)
		}
	}
}

// TestRequestWithoutTransport: a request made without a front door (spool replay) can be answered
// and dropped without effect.
func TestRequestWithoutTransport(t *testing.T) {
	r := &proxy.Request{Client: &proxy.Client{Name: "replay"}, Packet: buildRequest(t, reqOpts{user: "x"})}
	r.Reply([]byte{1})
	r.Drop(proxy.DropUnanswered, nil)
	r.Reply(nil)
}

// countHandler counts log records and the suppressed counts they report.
type countHandler struct {
	mu         sync.Mutex
	lines      int
	suppressed int64
}

func (h *countHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *countHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.lines++
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "suppressed" {
			h.suppressed += a.Value.Int64()
		}
		return true
	})
	return nil
}
func (h *countHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *countHandler) WithGroup(string) slog.Handler      { return h }

// TestUnknownClientFlood: 60,000 spoofed sources are each counted, but log a bounded number of
// lines, and the next interval's line says how many were suppressed.
func TestUnknownClientFlood(t *testing.T) {
	logs := &countHandler{}
	var now atomic.Int64
	now.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()) }
	srv := newFrontDoor(t, &holdHandler{}, slog.New(logs), clock)
	p := buildRequest(t, reqOpts{user: "spoof"})
	const n = 60000
	for i := range n {
		src := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 1812)
		srv.Accept(&testWriter{origin: proxy.Origin{Port: proxy.PortAuth, Src: src}}, p)
	}
	if got := srv.Stats().Dropped[proxy.DropUnknownClient].Load(); got != n {
		t.Fatalf("counted %d of %d", got, n)
	}
	logs.mu.Lock()
	lines := logs.lines
	logs.mu.Unlock()
	if lines == 0 || lines > 8 {
		t.Fatalf("%d lines for one interval of a flood", lines)
	}
	now.Add(int64(11 * time.Second))
	srv.Accept(&testWriter{origin: proxy.Origin{Port: proxy.PortAuth, Src: netip.MustParseAddrPort("10.9.9.9:1812")}}, p)
	logs.mu.Lock()
	defer logs.mu.Unlock()
	if logs.lines != lines+1 || logs.suppressed != int64(n-lines) {
		t.Fatalf("next interval: %d lines, %d suppressed reported; want %d and %d", logs.lines, logs.suppressed, lines+1, n-lines)
	}
}

// BenchmarkAccept is the front door's cost per valid request, up to the Handler.
func BenchmarkAccept(b *testing.B) {
	srv, err := proxy.NewServer(proxy.ServerOptions{AuthAddrs: []string{}, AcctAddrs: []string{}}, &recordHandler{})
	if err != nil {
		b.Fatal(err)
	}
	srv.SetClients([]proxy.Client{{Name: "lo", Prefix: netip.MustParsePrefix("127.0.0.1/32"), Secret: proxy.Secret(nasSecret), RequireMessageAuthenticator: true}})
	reqs := make([]packet.Packet, 256)
	for i := range reqs {
		reqs[i] = buildRequest(b, reqOpts{user: "bench", password: "pw", id: uint8(i)})
	}
	src := netip.MustParseAddrPort("127.0.0.1:4000")
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		srv.Accept(&testWriter{origin: proxy.Origin{Port: proxy.PortAuth, Src: src}}, reqs[i%len(reqs)])
		i++
	}
}
