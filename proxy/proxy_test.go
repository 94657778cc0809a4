package proxy_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"mxedge/pki/pkitest"
	"mxedge/proxy"
	"mxedge/proxy/packet"
	"mxedge/proxy/radsectest"
	"mxedge/proxy/sockio"
)

const nasSecret = "nas-secret"

type harness struct {
	srv       *proxy.Server
	router    *proxy.Router
	pool      *proxy.Pool
	auth      netip.AddrPort
	acct      netip.AddrPort
	responder []*radsectest.Responder
	cancel    context.CancelFunc
	done      sync.WaitGroup
}

type harnessOpts struct {
	upstreams     int
	mode          proxy.Mode
	clients       []proxy.Client
	timeout       time.Duration
	fallback      proxy.Fallback
	observer      proxy.Observer
	deadAfter     time.Duration
	equalPriority bool
	listen        string // address of both listeners; default 127.0.0.1:0
}

func startHarnessEqual(t *testing.T) *harness {
	return startHarness(t, harnessOpts{mode: proxy.ModeLoadBalance, equalPriority: true})
}

func startHarness(t *testing.T, o harnessOpts) *harness {
	t.Helper()
	before := runtime.NumGoroutine()
	lab := pkitest.Must(t)
	if o.upstreams == 0 {
		o.upstreams = 1
	}
	h := &harness{}
	if o.equalPriority {
		o.upstreams = 2
	}
	if o.deadAfter == 0 {
		o.deadAfter = 500 * time.Millisecond
	}
	var ups []proxy.UpstreamOptions
	for i := range o.upstreams {
		r, err := radsectest.Start(lab.ServerTLS(), "radsec")
		if err != nil {
			t.Fatal(err)
		}
		// Echo the decrypted User-Password so tests can see the re-encryption worked.
		r.SetReply(func(b *packet.Builder, req packet.Packet) {
			b.AddUint32(packet.AttrTunnelType, 13)
			b.AddUint32(packet.AttrTunnelMediumType, 6)
			b.AddString(packet.AttrTunnelPrivateGroupID, "300")
			b.AddVSA(9, 1, []byte("shell:priv-lvl=15"))
			if v, ok := req.Attr(packet.AttrUserPassword); ok {
				pw, err := packet.DecryptUserPassword(nil, v, []byte("radsec"), req.Authenticator())
				if err == nil {
					b.AddString(packet.AttrReplyMessage, string(bytes.TrimRight(pw, "\x00")))
				}
			}
		})
		r.SetName(fmt.Sprintf("up%d", i))
		h.responder = append(h.responder, r)
		a := r.Addr()
		ups = append(ups, proxy.UpstreamOptions{
			Name: fmt.Sprintf("up%d", i), Host: a.Addr().String(), Port: a.Port(), Priority: priority(o, i),
			TLS: lab.ClientTLS(), DeadAfter: o.deadAfter, StatusInterval: 250 * time.Millisecond,
			BackoffMin: 50 * time.Millisecond, BackoffMax: 200 * time.Millisecond,
		})
	}
	cork := new(sockio.Cork) // as the edge wires it: front door and pool share one
	pool, err := proxy.NewPool(proxy.PoolOptions{Upstreams: ups, Mode: o.mode, Cork: cork, Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		t.Fatal(err)
	}
	if o.timeout == 0 {
		o.timeout = 2 * time.Second
	}
	if o.listen == "" {
		o.listen = "127.0.0.1:0"
	}
	stats := new(proxy.Stats) // the front door's counters, which the router also counts into
	router := proxy.NewRouter(proxy.RouterOptions{Fallback: o.fallback, Observer: o.observer}, pool, stats)
	srv, err := proxy.NewServer(proxy.ServerOptions{
		AuthAddrs: []string{o.listen}, AcctAddrs: []string{o.listen},
		RequestTimeout: o.timeout, DuplicateWindow: 5 * time.Second, Cork: cork, Stats: stats,
	}, router)
	if err != nil {
		t.Fatal(err)
	}
	clients := o.clients
	if clients == nil {
		clients = []proxy.Client{{Name: "lo", Prefix: netip.MustParsePrefix("127.0.0.0/8"), Secret: proxy.Secret(nasSecret),
			RequireMessageAuthenticator: true, LimitProxyState: true}}
	}
	if err := srv.SetClients(clients); err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	h.srv, h.router, h.pool = srv, router, pool
	h.auth, h.acct = srv.Addrs(proxy.PortAuth)[0], srv.Addrs(proxy.PortAcct)[0]
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	h.done.Add(2)
	go func() { defer h.done.Done(); pool.Run(ctx) }()
	go func() { defer h.done.Done(); srv.Run(ctx) }()
	wctx, wcancel := context.WithTimeout(ctx, 3*time.Second)
	pool.WaitReady(wctx)
	wcancel()
	t.Cleanup(func() {
		cancel()
		h.done.Wait()
		srv.Close()
		for _, r := range h.responder {
			r.Close()
		}
		// Goroutines return to baseline once everything is stopped.
		deadline := time.Now().Add(3 * time.Second)
		for runtime.NumGoroutine() > before+2 && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if n := runtime.NumGoroutine(); n > before+2 {
			buf := make([]byte, 1<<16)
			t.Errorf("goroutines leaked: %d before, %d after\n%s", before, n, buf[:runtime.Stack(buf, true)])
		}
	})
	return h
}

type reqOpts struct {
	code      packet.Code
	user      string
	password  string
	noMA      bool
	badMA     bool
	secret    string
	proxyStat string
	id        uint8
	mac       string
	state     string
}

func buildRequest(t testing.TB, o reqOpts) packet.Packet {
	t.Helper()
	if o.code == 0 {
		o.code = packet.CodeAccessRequest
	}
	if o.secret == "" {
		o.secret = nasSecret
	}

	var auth [16]byte
	rand.Read(auth[:])
	var b packet.Builder
	if o.code == packet.CodeAccountingRequest {
		b = packet.New(nil, o.code, o.id, nil)
	} else {
		b = packet.New(nil, o.code, o.id, auth[:])
	}
	if !o.noMA {
		b.AddMA()
	}
	if o.user != "" {
		b.AddString(packet.AttrUserName, o.user)
	}
	if o.password != "" {
		b.Add(packet.AttrUserPassword, packet.EncryptUserPassword(nil, []byte(o.password), []byte(o.secret), auth[:]))
	}
	if o.mac != "" {
		b.AddString(packet.AttrCallingStationID, o.mac)
	}
	if o.code == packet.CodeAccountingRequest {
		b.AddUint32(packet.AttrAcctStatusType, 1)
		b.AddString(packet.AttrAcctSessionID, "sess-1")
	}
	if o.proxyStat != "" {
		b.AddString(packet.AttrProxyState, o.proxyStat)
	}
	if o.state != "" {
		b.AddString(packet.AttrState, o.state)
	}
	p, err := b.Finish([]byte(o.secret), nil)
	if err != nil {
		t.Fatal(err)
	}
	if o.badMA {
		p[23] ^= 0xff
	}
	return p
}

// exchange sends p from a fresh socket and waits up to wait for a reply (nil on timeout).
func exchange(t testing.TB, conn *net.UDPConn, to netip.AddrPort, p packet.Packet, wait time.Duration) packet.Packet {
	t.Helper()
	if conn == nil {
		var err error
		conn, err = net.ListenUDP("udp", &net.UDPAddr{IP: net.IP(to.Addr().AsSlice())})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
	}
	if _, err := conn.WriteToUDPAddrPort(p, to); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 4096)
	n, _, err := conn.ReadFromUDPAddrPort(buf)
	if err != nil {
		return nil
	}
	resp, err := packet.Parse(buf[:n])
	if err != nil {
		t.Fatalf("reply does not parse: %v", err)
	}
	return resp
}

func checkResponse(t testing.TB, req, resp packet.Packet) {
	t.Helper()
	if resp == nil {
		t.Fatal("no reply")
	}
	if resp.ID() != req.ID() {
		t.Fatalf("reply id %d for request %d", resp.ID(), req.ID())
	}
	if !packet.CheckResponseAuthenticator(resp, req.Authenticator(), []byte(nasSecret)) {
		t.Fatal("response authenticator does not verify with the NAS secret")
	}
	if resp[20] != packet.AttrMessageAuthenticator || packet.CheckResponseMA(resp, req.Authenticator(), []byte(nasSecret)) != packet.MAValid {
		t.Fatal("Message-Authenticator missing, not first, or invalid")
	}
}

func TestProxyAccessRequest(t *testing.T) {
	h := startHarness(t, harnessOpts{})
	req := buildRequest(t, reqOpts{user: "alice", password: "correct horse", proxyStat: "nas-state"})
	resp := exchange(t, nil, h.auth, req, 2*time.Second)
	checkResponse(t, req, resp)
	if resp.Code() != packet.CodeAccessAccept {
		t.Fatalf("code %v", resp.Code())
	}
	if msg, _ := resp.Attr(packet.AttrReplyMessage); string(msg) != "correct horse" {
		t.Fatalf("upstream saw password %q: User-Password was not re-encrypted", msg)
	}
	if vlan, _ := resp.Attr(packet.AttrTunnelPrivateGroupID); string(vlan) != "300" {
		t.Fatalf("VLAN %q", vlan)
	}
	if v, _ := resp.Attr(packet.AttrVendorSpecific); !bytes.Contains(v, []byte("shell:priv-lvl=15")) {
		t.Fatal("vendor attribute lost")
	}
	var ps []string
	for it := resp.Attrs(); ; {
		typ, v, ok := it.Next()
		if !ok {
			break
		}
		if typ == packet.AttrProxyState {
			ps = append(ps, string(v))
		}
	}
	if len(ps) != 1 || ps[0] != "nas-state" {
		t.Fatalf("Proxy-State in reply = %q, want only the NAS's", ps)
	}
}

// TestProxyIPv6: the front door serves NAS clients over IPv6 as over IPv4.
func TestProxyIPv6(t *testing.T) {
	h := startHarness(t, harnessOpts{listen: "[::1]:0", clients: []proxy.Client{
		{Name: "lo6", Prefix: netip.MustParsePrefix("::1/128"), Secret: proxy.Secret(nasSecret), RequireMessageAuthenticator: true}}})
	req := buildRequest(t, reqOpts{user: "v6", password: "pw"})
	resp := exchange(t, nil, h.auth, req, 2*time.Second)
	checkResponse(t, req, resp)
	if resp.Code() != packet.CodeAccessAccept {
		t.Fatalf("code %v", resp.Code())
	}
	acct := buildRequest(t, reqOpts{code: packet.CodeAccountingRequest})
	if resp := exchange(t, nil, h.acct, acct, 2*time.Second); resp == nil || resp.Code() != packet.CodeAccountingResponse {
		t.Fatal("accounting over IPv6 not answered")
	}
}

// sendBurst sends n PAP requests back to back, each from its own NAS port, to h's authentication
// port, and returns them with the answer each port got, each checked against its request.
func sendBurst(t *testing.T, h *harness, n int, user string) (reqs, answers []packet.Packet) {
	t.Helper()
	conns := make([]*net.UDPConn, n)
	reqs = make([]packet.Packet, n)
	for i := range conns {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		conns[i] = c
		reqs[i] = buildRequest(t, reqOpts{user: fmt.Sprintf("%s%d", user, i), password: "pw", id: uint8(i)})
	}
	for i, c := range conns {
		if _, err := c.WriteToUDPAddrPort(reqs[i], h.auth); err != nil {
			t.Fatal(err)
		}
	}
	answers = make([]packet.Packet, n)
	buf := make([]byte, 4096)
	for i, c := range conns {
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		m, _, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatalf("request %d not answered: %v", i, err)
		}
		answers[i] = packet.Packet(bytes.Clone(buf[:m]))
		checkResponse(t, reqs[i], answers[i])
	}
	return reqs, answers
}

// TestProxyBurst: a burst of requests sent back to back from many NAS ports (read in batches and
// forwarded and answered a batch at a time) is answered in full, each answer to its own port.
func TestProxyBurst(t *testing.T) {
	h := startHarness(t, harnessOpts{})
	const n = 300
	sendBurst(t, h, n, "burst")
	if got := h.responder[0].Requests.Load(); got != n {
		t.Fatalf("upstream saw %d requests, want %d", got, n)
	}
}

// answerRecorder is an Observer that records, for each request it sees, whether the request had
// been answered to the NAS already (its client's Responses counter) and the response it saw.
type answerRecorder struct {
	mu     sync.Mutex
	seen   map[uint8]packet.Packet
	twice  int
	unsent int // observed before the NAS was answered
}

func (a *answerRecorder) Observe(req *proxy.Request, res proxy.Result) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.seen[req.Packet.ID()]; ok {
		a.twice++
	}
	a.seen[req.Packet.ID()] = res.Response
	if req.Client.Stats().Responses.Load() < uint64(len(a.seen)) {
		a.unsent++
	}
}

// TestProxyObserverAfterAnswer: the Observer (learning, events) sees every upstream answer exactly
// once, the response the NAS got, and only once the NAS's answer was written: it is put off to the
// end of the burst (sockio.Cork.After), and Router.Wait covers it.
func TestProxyObserverAfterAnswer(t *testing.T) {
	rec := &answerRecorder{seen: map[uint8]packet.Packet{}}
	h := startHarness(t, harnessOpts{observer: rec})
	const n = 200
	_, got := sendBurst(t, h, n, "obs")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := h.router.Wait(ctx); err != nil {
		t.Fatalf("router.Wait: %v", err)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.seen) != n || rec.twice != 0 {
		t.Fatalf("observer saw %d requests (%d twice), want %d once each", len(rec.seen), rec.twice, n)
	}
	if rec.unsent != 0 {
		t.Fatalf("%d observations ran before their answer was written", rec.unsent)
	}
	for i := range n {
		if !bytes.Equal(rec.seen[uint8(i)], got[i]) {
			t.Fatalf("request %d: observer saw another response than the NAS got", i)
		}
	}
}

func TestProxyDrops(t *testing.T) {
	h := startHarness(t, harnessOpts{clients: []proxy.Client{
		{Name: "lo", Prefix: netip.MustParsePrefix("127.0.0.1/32"), Secret: proxy.Secret(nasSecret), RequireMessageAuthenticator: true, LimitProxyState: true},
		{Name: "lax", Prefix: netip.MustParsePrefix("127.0.0.0/8"), Secret: proxy.Secret(nasSecret), LimitProxyState: true},
	}})
	st := h.srv.Stats()
	tests := []struct {
		name   string
		req    reqOpts
		to     netip.AddrPort
		reason proxy.DropReason
	}{
		{"missing MA", reqOpts{user: "a", noMA: true}, h.auth, proxy.DropMissingMA},
		{"bad MA", reqOpts{user: "a", badMA: true}, h.auth, proxy.DropBadAuthenticator},
		{"wrong secret", reqOpts{user: "a", secret: "wrong"}, h.auth, proxy.DropBadAuthenticator},
		{"accounting on auth port", reqOpts{code: packet.CodeAccountingRequest}, h.auth, proxy.DropWrongCode},
		{"access on acct port", reqOpts{user: "a"}, h.acct, proxy.DropWrongCode},
		{"status without MA", reqOpts{code: packet.CodeStatusServer, noMA: true}, h.auth, proxy.DropStatusWithoutMA},
		{"accounting wrong secret", reqOpts{code: packet.CodeAccountingRequest, secret: "wrong"}, h.acct, proxy.DropBadAuthenticator},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := st.Dropped[tt.reason].Load()
			if resp := exchange(t, nil, tt.to, buildRequest(t, tt.req), 300*time.Millisecond); resp != nil {
				t.Fatalf("answered with %v", resp.Code())
			}
			if st.Dropped[tt.reason].Load() != before+1 {
				t.Fatalf("drop counter %v not incremented", tt.reason)
			}
		})
	}
	t.Run("malformed", func(t *testing.T) {
		before := st.Dropped[proxy.DropMalformed].Load()
		for _, b := range [][]byte{{1, 2, 3}, append([]byte{1, 1, 0, 30}, make([]byte, 20)...), append([]byte{1, 1, 0, 22}, make([]byte, 18)...)} {
			if exchange(t, nil, h.auth, b, 200*time.Millisecond) != nil {
				t.Fatal("malformed datagram answered")
			}
		}
		if got := st.Dropped[proxy.DropMalformed].Load() - before; got != 3 {
			t.Fatalf("malformed drops = %d", got)
		}
	})
	t.Run("proxy-state without MA from a lax client", func(t *testing.T) {
		// 127.0.0.2 falls to the /8 client which does not require MA but limits Proxy-State.
		conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2)})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		before := st.Dropped[proxy.DropProxyStateWithoutMA].Load()
		if exchange(t, conn, h.auth, buildRequest(t, reqOpts{user: "a", noMA: true, proxyStat: "x"}), 300*time.Millisecond) != nil {
			t.Fatal("answered")
		}
		if st.Dropped[proxy.DropProxyStateWithoutMA].Load() != before+1 {
			t.Fatal("not counted")
		}
		// Without Proxy-State the lax client is served without MA.
		req := buildRequest(t, reqOpts{user: "a", noMA: true})
		checkResponse(t, req, exchange(t, conn, h.auth, req, 2*time.Second))
	})
}

func TestProxyUnknownClient(t *testing.T) {
	h := startHarness(t, harnessOpts{clients: []proxy.Client{
		{Name: "one", Prefix: netip.MustParsePrefix("127.0.0.9/32"), Secret: proxy.Secret(nasSecret)},
	}})
	if exchange(t, nil, h.auth, buildRequest(t, reqOpts{user: "a"}), 300*time.Millisecond) != nil {
		t.Fatal("unknown client answered")
	}
	if h.srv.Stats().Dropped[proxy.DropUnknownClient].Load() != 1 {
		t.Fatal("unknown client not counted")
	}
}

func TestProxyRetransmission(t *testing.T) {
	h := startHarness(t, harnessOpts{})
	h.responder[0].SetDelay(300 * time.Millisecond)
	conn, _ := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	defer conn.Close()
	req := buildRequest(t, reqOpts{user: "dup", password: "x"})
	// The retransmission while in flight is absorbed; the reply arrives once.
	conn.WriteToUDPAddrPort(req, h.auth)
	time.Sleep(50 * time.Millisecond)
	resp := exchange(t, conn, h.auth, req, 2*time.Second)
	checkResponse(t, req, resp)
	// A retransmission after the answer gets the cached answer without a new upstream request.
	resp2 := exchange(t, conn, h.auth, req, time.Second)
	if !bytes.Equal(resp, resp2) {
		t.Fatal("retransmission answered differently")
	}
	if n := h.responder[0].Requests.Load(); n != 1 {
		t.Fatalf("upstream saw %d requests, want 1", n)
	}
	if h.srv.Stats().DuplicateAnswered.Load() != 1 || h.srv.Stats().Dropped[proxy.DropDuplicate].Load() != 1 {
		t.Fatal("duplicate counters")
	}
}

func TestProxyStatusServerAndAccounting(t *testing.T) {
	h := startHarness(t, harnessOpts{})
	st := buildRequest(t, reqOpts{code: packet.CodeStatusServer})
	resp := exchange(t, nil, h.auth, st, time.Second)
	checkResponse(t, st, resp)
	if resp.Code() != packet.CodeAccessAccept {
		t.Fatalf("Status-Server on auth port: %v", resp.Code())
	}
	st = buildRequest(t, reqOpts{code: packet.CodeStatusServer})
	if resp := exchange(t, nil, h.acct, st, time.Second); resp == nil || resp.Code() != packet.CodeAccountingResponse {
		t.Fatal("Status-Server on acct port")
	}
	acct := buildRequest(t, reqOpts{code: packet.CodeAccountingRequest})
	resp = exchange(t, nil, h.acct, acct, 2*time.Second)
	checkResponse(t, acct, resp)
	if resp.Code() != packet.CodeAccountingResponse {
		t.Fatalf("accounting: %v", resp.Code())
	}
}

// TestProxyManyOutstanding keeps far more than 256 requests outstanding on one upstream: none may be
// dropped for lack of identifiers.
func TestProxyManyOutstanding(t *testing.T) {
	// A slow upstream (200ms per answer) under the race detector on two cores can be silent for more
	// than the 500ms the other tests use to detect death quickly; use the production default.
	h := startHarness(t, harnessOpts{timeout: 5 * time.Second, deadAfter: 2 * time.Second})
	h.responder[0].SetDelay(200 * time.Millisecond)
	const n = 1500
	var ok atomic.Int32
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := buildRequest(t, reqOpts{user: fmt.Sprintf("u%d", i), id: uint8(i)})
			resp := exchange(t, nil, h.auth, req, 5*time.Second)
			switch {
			case resp == nil:
				t.Logf("request %d: no reply", i)
			case resp.Code() == packet.CodeAccessAccept:
				ok.Add(1)
			default:
				t.Logf("request %d: %v", i, resp.Code())
			}
		}()
	}
	wg.Wait()
	if ok.Load() != n {
		t.Fatalf("%d of %d answered", ok.Load(), n)
	}
}

func TestProxyFailoverOnConnectionLoss(t *testing.T) {
	h := startHarness(t, harnessOpts{upstreams: 2})
	req := buildRequest(t, reqOpts{user: "a"})
	checkResponse(t, req, exchange(t, nil, h.auth, req, 2*time.Second))
	if h.responder[0].Answered.Load() != 1 {
		t.Fatal("primary did not answer")
	}
	// Primary dies hard (RST): requests go to the secondary at once.
	h.responder[0].Close()
	time.Sleep(100 * time.Millisecond)
	for range 5 {
		req := buildRequest(t, reqOpts{user: "b"})
		checkResponse(t, req, exchange(t, nil, h.auth, req, 2*time.Second))
	}
	if h.responder[1].Answered.Load() < 5 {
		t.Fatalf("secondary answered %d", h.responder[1].Answered.Load())
	}
}

func TestProxyBlackholeDetected(t *testing.T) {
	h := startHarness(t, harnessOpts{upstreams: 2, timeout: 4 * time.Second})
	h.responder[0].Blackhole(true)
	// A request sent into the blackhole is re-sent to the secondary once the primary is declared
	// dead (DeadAfter 500ms here; 2s by default), well inside its budget.
	start := time.Now()
	req := buildRequest(t, reqOpts{user: "a"})
	resp := exchange(t, nil, h.auth, req, 4*time.Second)
	checkResponse(t, req, resp)
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("answered after %v", d)
	}
	// It reconnects (TCP and TLS still work) but stays out of service: the new connection does not
	// answer Status-Server.
	time.Sleep(time.Second)
	if st := h.pool.Upstreams()[0].Status(); st.State == proxy.StateUp || st.Failures == 0 {
		t.Fatalf("blackholed upstream: %+v", st)
	}
}

func TestProxyNoUpstreamOutcome(t *testing.T) {
	h := startHarness(t, harnessOpts{timeout: 600 * time.Millisecond})
	h.responder[0].Blackhole(true)
	req := buildRequest(t, reqOpts{user: "a"})
	resp := exchange(t, nil, h.auth, req, 3*time.Second)
	checkResponse(t, req, resp)
	if resp.Code() != packet.CodeAccessReject {
		t.Fatalf("no upstream: %v, want Access-Reject", resp.Code())
	}
	// Accounting is never acknowledged when nobody stored it.
	acct := buildRequest(t, reqOpts{code: packet.CodeAccountingRequest})
	if resp := exchange(t, nil, h.acct, acct, 1500*time.Millisecond); resp != nil {
		t.Fatal("accounting acknowledged without an upstream")
	}
}

type stubFallback struct{ calls atomic.Int32 }

func (f *stubFallback) Takes(*proxy.Request) bool { return false }
func (f *stubFallback) Serve(_ context.Context, req *proxy.Request, cause error) (packet.Packet, error) {
	f.calls.Add(1)
	if !errors.Is(cause, proxy.ErrNoUpstream) && cause == nil {
		return nil, errors.New("no cause")
	}
	b := packet.NewResponse(nil, req.Packet, packet.CodeAccessAccept)
	b.AddString(packet.AttrReplyMessage, "local")
	return b.Finish(req.Secret(), req.Packet.Authenticator())
}

func TestProxyFallbackGetsUnansweredRequests(t *testing.T) {
	fb := &stubFallback{}
	h := startHarness(t, harnessOpts{fallback: fb, timeout: 600 * time.Millisecond})
	h.responder[0].Blackhole(true)
	req := buildRequest(t, reqOpts{user: "a"})
	resp := exchange(t, nil, h.auth, req, 3*time.Second)
	checkResponse(t, req, resp)
	if m, _ := resp.Attr(packet.AttrReplyMessage); string(m) != "local" || fb.calls.Load() != 1 {
		t.Fatal("fallback did not answer")
	}
}

// TestProxyLoadBalanceKeepsEAPConversation: requests are spread over both upstreams, and the
// request carrying an upstream's State goes back to that upstream.
func TestProxyLoadBalanceKeepsEAPConversation(t *testing.T) {
	h := startHarness(t, harnessOpts{upstreams: 2, mode: proxy.ModeLoadBalance})
	// Both upstreams have priority 0 and 1 in the harness; give them equal priority.
	for range 20 {
		req := buildRequest(t, reqOpts{user: "spread"})
		checkResponse(t, req, exchange(t, nil, h.auth, req, 2*time.Second))
	}
	if h.responder[0].Answered.Load() != 20 {
		t.Fatalf("priorities differ, so the preferred upstream takes all: %d/%d",
			h.responder[0].Answered.Load(), h.responder[1].Answered.Load())
	}
}

func TestProxyStateAffinity(t *testing.T) {
	h := startHarnessEqual(t)
	for i := range 10 {
		req := buildRequest(t, reqOpts{user: "challenge", id: uint8(i)})
		resp := exchange(t, nil, h.auth, req, 2*time.Second)
		checkResponse(t, req, resp)
		if resp.Code() != packet.CodeAccessChallenge {
			t.Fatalf("round 1: %v", resp.Code())
		}
		state, _ := resp.Attr(packet.AttrState)
		req2 := buildRequest(t, reqOpts{user: "challenge", state: string(state), id: uint8(i + 100)})
		resp2 := exchange(t, nil, h.auth, req2, 2*time.Second)
		checkResponse(t, req2, resp2)
		msg, _ := resp2.Attr(packet.AttrReplyMessage)
		if string(msg) != string(state)+" saw "+string(state) {
			t.Fatalf("conversation started on %s continued elsewhere: %q", state, msg)
		}
	}
	a, b := h.responder[0].Answered.Load(), h.responder[1].Answered.Load()
	if a == 0 || b == 0 {
		t.Fatalf("load not spread: %d/%d", a, b)
	}
}

func priority(o harnessOpts, i int) int {
	if o.equalPriority {
		return 0
	}
	return i
}

type recordHandler struct{ n atomic.Int32 }

func (h *recordHandler) ServeRADIUS(req *proxy.Request) {
	h.n.Add(1)
	if _, err := packet.Parse(req.Packet); err != nil {
		panic("front door passed an invalid packet: " + err.Error())
	}
	b := packet.NewResponse(nil, req.Packet, packet.CodeAccessReject)
	resp, _ := b.Finish(req.Secret(), req.Packet.Authenticator())
	req.Reply(resp)
}

// FuzzAccept runs arbitrary datagrams through the front door's checks: nothing may panic, and only
// valid packets from a known client reach the handler.
func FuzzAccept(f *testing.F) {
	f.Add([]byte(buildRequest(f, reqOpts{user: "a", password: "b"})), uint8(0))
	f.Add([]byte(buildRequest(f, reqOpts{code: packet.CodeAccountingRequest})), uint8(1))
	f.Add([]byte(buildRequest(f, reqOpts{code: packet.CodeStatusServer})), uint8(2))
	f.Add([]byte(buildRequest(f, reqOpts{user: "a", noMA: true, proxyStat: "x"})), uint8(0))
	h := &recordHandler{}
	srv, err := proxy.NewServer(proxy.ServerOptions{AuthAddrs: []string{}, AcctAddrs: []string{}}, h)
	if err != nil {
		f.Fatal(err)
	}
	srv.SetClients([]proxy.Client{
		{Name: "strict", Prefix: netip.MustParsePrefix("127.0.0.1/32"), Secret: proxy.Secret(nasSecret), RequireMessageAuthenticator: true, LimitProxyState: true},
		{Name: "lax", Prefix: netip.MustParsePrefix("127.0.0.2/32"), Secret: proxy.Secret(nasSecret)},
	})
	src := []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:5000"), netip.MustParseAddrPort("127.0.0.2:5000"), netip.MustParseAddrPort("127.0.0.3:5000")}
	f.Fuzz(func(t *testing.T, b []byte, which uint8) {
		port := proxy.Port(which % 3)
		srv.Accept(&testWriter{origin: proxy.Origin{Port: port, Transport: proxy.TransportRadSec, Src: src[int(which/3)%3], Stream: 1}}, b)
	})
}
