package proxy_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"mxedge/pki/pkitest"
	"mxedge/proxy"
	"mxedge/proxy/packet"
	"mxedge/proxy/radsec"
)

// rejectOrHoldHandler answers every request with an Access-Reject, or, while holding, keeps them until
// release.
type rejectOrHoldHandler struct {
	mu      sync.Mutex
	holding bool
	held    []*proxy.Request
	seen    map[string]int // requests per NAS name
}

func (h *rejectOrHoldHandler) ServeRADIUS(req *proxy.Request) {
	h.mu.Lock()
	if h.seen == nil {
		h.seen = map[string]int{}
	}
	h.seen[req.Client.Name]++
	if h.holding {
		h.held = append(h.held, req)
		h.mu.Unlock()
		return
	}
	h.mu.Unlock()
	answer(req)
}

func answer(req *proxy.Request) {
	b := packet.NewResponse(nil, req.Packet, packet.CodeAccessReject)
	resp, _ := b.Finish(req.Secret(), req.Packet.Authenticator())
	req.Reply(resp)
}

func (h *rejectOrHoldHandler) hold(on bool) {
	h.mu.Lock()
	h.holding = on
	h.mu.Unlock()
}

func (h *rejectOrHoldHandler) release() {
	h.mu.Lock()
	held := h.held
	h.held = nil
	h.mu.Unlock()
	for _, req := range held {
		answer(req)
	}
}

func (h *rejectOrHoldHandler) count(nas string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.seen[nas]
}

type listenerHarness struct {
	lab     *pkitest.Lab
	srv     *proxy.Server
	ln      *proxy.Listener
	addr    netip.AddrPort
	handler *rejectOrHoldHandler
	logs    *proxy.LockedBuffer
}

// Two peers by default: a on 127.0.0.1 and b on 127.0.0.2, both with the lab client's name.
func twoPeers() []proxy.RadSecPeer {
	return []proxy.RadSecPeer{
		{Client: proxy.Client{Name: "a", Prefix: netip.MustParsePrefix("127.0.0.1/32")}, CertNames: []string{"edge.example.test"}},
		{Client: proxy.Client{Name: "b", Prefix: netip.MustParsePrefix("127.0.0.2/32")}, CertNames: []string{"edge.example.test"}},
	}
}

func startListener(t *testing.T, o proxy.ListenerOptions) *listenerHarness {
	t.Helper()
	return startListenerTimeout(t, o, 0)
}

// startListenerTimeout is startListener with the front door's request timeout (0: its default).
func startListenerTimeout(t *testing.T, o proxy.ListenerOptions, requestTimeout time.Duration) *listenerHarness {
	t.Helper()
	before := runtime.NumGoroutine()
	x := &listenerHarness{lab: pkitest.Must(t), handler: &rejectOrHoldHandler{}, logs: &proxy.LockedBuffer{}}
	logger := slog.New(slog.NewTextHandler(x.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv, err := proxy.NewServer(proxy.ServerOptions{AuthAddrs: []string{}, AcctAddrs: []string{}, Logger: logger,
		RequestTimeout: requestTimeout}, x.handler)
	if err != nil {
		t.Fatal(err)
	}
	x.srv = srv
	o.Addrs = []string{"127.0.0.1:0"}
	if o.TLS == nil {
		o.TLS = x.lab.ServerTLS()
	}
	if o.Peers == nil {
		o.Peers = twoPeers()
	}
	o.Logger = logger
	ln, err := proxy.NewListener(o, srv)
	if err != nil {
		t.Fatal(err)
	}
	if err := ln.Listen(); err != nil {
		t.Fatal(err)
	}
	x.ln, x.addr = ln, ln.Addrs()[0]
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); ln.Run(ctx) }()
	t.Cleanup(func() {
		x.handler.release()
		cancel()
		<-done
		ln.Close()
		deadline := time.Now().Add(3 * time.Second)
		for runtime.NumGoroutine() > before+2 && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if n := runtime.NumGoroutine(); n > before+2 {
			buf := make([]byte, 1<<16)
			t.Errorf("goroutines leaked: %d before, %d after\n%s", before, n, buf[:runtime.Stack(buf, true)])
		}
	})
	return x
}

type peerClient struct {
	t  testing.TB
	tc *tls.Conn
	r  *bufio.Reader
}

// dial connects from the local address from with cfg (the lab client's by default).
func (x *listenerHarness) dial(t testing.TB, from string, cfg *tls.Config) (*peerClient, error) {
	t.Helper()
	if cfg == nil {
		cfg = x.lab.ClientTLS()
	}
	cfg.ServerName = "localhost"
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 2 * time.Second}
	nc, err := d.Dial("tcp", x.addr.String())
	if err != nil {
		return nil, err
	}
	tc := tls.Client(nc, cfg)
	tc.SetDeadline(time.Now().Add(3 * time.Second))
	if err := tc.Handshake(); err != nil {
		tc.Close()
		return nil, err
	}
	tc.SetDeadline(time.Time{})
	c := &peerClient{t: t, tc: tc, r: bufio.NewReader(tc)}
	t.Cleanup(func() { tc.Close() })
	return c, nil
}

func (x *listenerHarness) mustDial(t testing.TB, from string) *peerClient {
	t.Helper()
	c, err := x.dial(t, from, nil)
	if err != nil {
		t.Fatalf("connect from %s: %v", from, err)
	}
	return c
}

func (c *peerClient) send(id uint8) packet.Packet {
	c.t.Helper()
	req := buildRequest(c.t, reqOpts{user: "alice", password: "pw", secret: radsec.DefaultSecret, id: id})
	if _, err := c.tc.Write(req); err != nil {
		c.t.Fatalf("write: %v", err)
	}
	return req
}

// read waits up to wait for the next packet.
func (c *peerClient) read(wait time.Duration) (packet.Packet, error) {
	c.tc.SetReadDeadline(time.Now().Add(wait))
	defer c.tc.SetReadDeadline(time.Time{})
	return radsec.ReadPacket(c.r)
}

func (c *peerClient) exchange(id uint8) {
	c.t.Helper()
	c.send(id)
	resp, err := c.read(2 * time.Second)
	if err != nil {
		c.t.Fatalf("request %d: no answer: %v", id, err)
	}
	if resp.ID() != id {
		c.t.Fatalf("answer %d to request %d", resp.ID(), id)
	}
}

// closed reports whether the listener closed the connection within wait.
func (c *peerClient) closed(wait time.Duration) bool {
	_, err := c.read(wait)
	if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
		return false
	}
	return err != nil
}

func TestListenerRequiresCertNames(t *testing.T) {
	lab := pkitest.Must(t)
	srv, _ := proxy.NewServer(proxy.ServerOptions{AuthAddrs: []string{}, AcctAddrs: []string{}}, &rejectOrHoldHandler{})
	o := proxy.ListenerOptions{Addrs: []string{"127.0.0.1:0"}, TLS: lab.ServerTLS(),
		Peers: []proxy.RadSecPeer{{Client: proxy.Client{Name: "a", Prefix: netip.MustParsePrefix("127.0.0.1/32")}}}}
	if _, err := proxy.NewListener(o, srv); !errors.Is(err, proxy.ErrNoCertNames) {
		t.Fatalf("listener with a peer without cert names: %v", err)
	}
	o.Peers[0].CertNames = []string{"*", "edge.example.test"}
	if _, err := proxy.NewListener(o, srv); err == nil {
		t.Fatal("\"*\" listed with another name accepted")
	}
}

// TestListenerCertNames: a certificate without the peer's name is refused; "*" accepts any
// certificate the CA verified, with a warning.
func TestListenerCertNames(t *testing.T) {
	peers := twoPeers()
	peers[0].CertNames = []string{"nas.example.test"}
	peers[1].CertNames = []string{proxy.AnyCertName}
	x := startListener(t, proxy.ListenerOptions{Peers: peers})
	if !strings.Contains(x.logs.String(), "radsec peer accepts any certificate the ca verifies") {
		t.Errorf("no warning for \"*\":\n%s", x.logs)
	}
	if c, err := x.dial(t, "127.0.0.1", nil); err == nil && !c.closed(2*time.Second) {
		t.Fatal("certificate without the peer's name accepted")
	}
	x.mustDial(t, "127.0.0.2").exchange(1)
	if n := x.ln.Stats().CertRejected.Load(); n != 1 {
		t.Fatalf("%d certificate rejections counted, want 1", n)
	}
}

// TestListenerCipherSuites: over TLS 1.2 a client offering only CBC suites is refused; one
// offering AES-GCM gets through (RFC 9325 §4.2).
func TestListenerCipherSuites(t *testing.T) {
	x := startListener(t, proxy.ListenerOptions{})
	cbc := x.lab.ClientTLS()
	cbc.MaxVersion = tls.VersionTLS12
	cbc.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA,
		tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA, tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA}
	if _, err := x.dial(t, "127.0.0.1", cbc); err == nil {
		t.Fatal("handshake with CBC-only suites succeeded")
	}
	for _, suite := range []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256} {
		gcm := x.lab.ClientTLS()
		gcm.MaxVersion = tls.VersionTLS12
		gcm.CipherSuites = []uint16{suite}
		c, err := x.dial(t, "127.0.0.1", gcm)
		if err != nil {
			continue // the lab key fits one of the two
		}
		if got := c.tc.ConnectionState().CipherSuite; got != suite {
			t.Fatalf("negotiated %s", tls.CipherSuiteName(got))
		}
		c.exchange(1)
		return
	}
	t.Fatal("no AES-GCM handshake over TLS 1.2 succeeded")
}

// TestListenerIdleTimeout: a connection that keeps bringing requests stays up; once quiet for the
// idle timeout it is closed, and counted.
func TestListenerIdleTimeout(t *testing.T) {
	const idle = 400 * time.Millisecond
	x := startListener(t, proxy.ListenerOptions{IdleTimeout: idle})
	c := x.mustDial(t, "127.0.0.1")
	start := time.Now()
	var last time.Time
	for i := range 4 {
		last = time.Now()    // the listener reads the request after this: its idle time starts later
		c.exchange(uint8(i)) // every idle/2: the timer restarts with each request
		if i < 3 {
			time.Sleep(idle / 2)
		}
	}
	if time.Since(start) < idle {
		t.Fatal("test ran too fast to show anything")
	}
	if !c.closed(5 * idle) {
		t.Fatal("idle connection not closed")
	}
	if d := time.Since(last); d < idle {
		t.Fatalf("closed %v after the last request, before the idle timeout %v", d, idle)
	}
	deadline := time.Now().Add(time.Second)
	for x.ln.Stats().Idle.Load() != 1 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := x.ln.Stats().Idle.Load(); n != 1 {
		t.Fatalf("%d idle closes counted, want 1", n)
	}
}

// TestListenerConnectionCap: a peer at its connection cap has further connections refused, while
// another peer still connects.
func TestListenerConnectionCap(t *testing.T) {
	x := startListener(t, proxy.ListenerOptions{MaxConnsPerPeer: 2})
	a1, a2 := x.mustDial(t, "127.0.0.1"), x.mustDial(t, "127.0.0.1")
	if c, err := x.dial(t, "127.0.0.1", nil); err == nil && !c.closed(2*time.Second) {
		t.Fatal("third connection of peer a accepted over a cap of 2")
	}
	x.mustDial(t, "127.0.0.2").exchange(1)
	a1.exchange(2)
	a2.exchange(3)
	if n := x.ln.Stats().OverConnLimit.Load(); n != 1 {
		t.Fatalf("%d refusals counted, want 1", n)
	}
	// A closed connection makes room.
	a1.tc.Close()
	deadline := time.Now().Add(2 * time.Second)
	for {
		c, err := x.dial(t, "127.0.0.1", nil)
		if err == nil {
			c.send(4)
			if resp, err := c.read(time.Second); err == nil && resp.ID() == 4 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("no room after a connection closed")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestListenerInFlightCap: a peer with its cap of requests waiting gets further ones dropped and
// counted; another peer is not starved; answers make room again.
func TestListenerInFlightCap(t *testing.T) {
	const limit = 4
	x := startListener(t, proxy.ListenerOptions{MaxInFlightPerPeer: limit})
	a, b := x.mustDial(t, "127.0.0.1"), x.mustDial(t, "127.0.0.2")
	x.handler.hold(true)
	first := a.send(0)
	for id := range uint8(limit + 1) {
		a.send(id + 1)
	}
	// A retransmission of a request in flight is not a new one.
	if _, err := a.tc.Write(first); err != nil {
		t.Fatal(err)
	}
	b.send(100)
	waitFor(t, func() bool { return x.handler.count("b") == 1 && x.srv.Stats().Received.Load() >= limit+3 }, "peer b's request to arrive")
	if got := x.handler.count("a"); got != limit {
		t.Fatalf("peer a got %d requests through, want its cap %d", got, limit)
	}
	if n := x.srv.Stats().Dropped[proxy.DropPeerInFlight].Load(); n != 2 {
		t.Fatalf("%d requests dropped at the cap, want 2", n)
	}
	if n := x.ln.Stats().OverInFlight.Load(); n != 2 {
		t.Fatalf("listener counted %d, want 2", n)
	}
	x.handler.hold(false)
	x.handler.release()
	for range limit {
		if _, err := a.read(2 * time.Second); err != nil {
			t.Fatalf("held request not answered: %v", err)
		}
	}
	if _, err := b.read(2 * time.Second); err != nil {
		t.Fatal(err)
	}
	a.exchange(200) // room again
}

// TestListenerInFlightExpires: a request that is never answered (dropped on the way) stops
// counting against its peer after twice the request timeout.
func TestListenerInFlightExpires(t *testing.T) {
	const timeout = 300 * time.Millisecond
	x := startListenerTimeout(t, proxy.ListenerOptions{MaxInFlightPerPeer: 2}, timeout)
	a := x.mustDial(t, "127.0.0.1")
	x.handler.hold(true)
	a.send(1)
	a.send(2)
	a.send(3) // over the cap
	waitFor(t, func() bool { return x.ln.Stats().OverInFlight.Load() == 1 }, "the third request to be dropped")
	time.Sleep(timeout) // well inside 2×timeout: still counted
	a.send(4)
	waitFor(t, func() bool { return x.ln.Stats().OverInFlight.Load() == 2 }, "the fourth request to be dropped")
	time.Sleep(2 * timeout)
	a.send(5)
	waitFor(t, func() bool { return x.handler.count("a") == 3 }, "the fifth request to get through after the first two expired")
}

// TestListenerReloadDisconnects: a reload that removes a peer, or changes it, closes its
// connections within a second; an unchanged peer keeps its connection.
func TestListenerReloadDisconnects(t *testing.T) {
	x := startListener(t, proxy.ListenerOptions{})
	a, b := x.mustDial(t, "127.0.0.1"), x.mustDial(t, "127.0.0.2")
	a.exchange(1)
	b.exchange(1)

	peers := twoPeers()[1:] // a removed
	start := time.Now()
	if err := x.ln.SetPeers(peers); err != nil {
		t.Fatal(err)
	}
	if !a.closed(time.Second) {
		t.Fatal("removed peer still connected a second after the reload")
	}
	t.Logf("removed peer disconnected %v after the reload", time.Since(start))
	b.exchange(2) // unchanged: still up

	peers[0].Secret = proxy.Secret("changed")
	if err := x.ln.SetPeers(peers); err != nil {
		t.Fatal(err)
	}
	if !b.closed(time.Second) {
		t.Fatal("changed peer still connected a second after the reload")
	}
	if n := x.ln.Stats().Reloaded.Load(); n != 2 {
		t.Fatalf("%d reload disconnects counted, want 2", n)
	}
	x.mustDial(t, "127.0.0.2") // it connects again under its new entry
}

// TestListenerReloadCA: a reload whose CA no longer verifies a peer's certificate closes its
// connection; one that still does leaves it.
func TestListenerReloadCA(t *testing.T) {
	x := startListener(t, proxy.ListenerOptions{})
	a := x.mustDial(t, "127.0.0.1")
	a.exchange(1)
	x.ln.SetTLS(x.lab.ServerTLS()) // same CA
	a.exchange(2)
	other := pkitest.Must(t).ServerTLS() // another CA
	x.ln.SetTLS(other)
	if !a.closed(time.Second) {
		t.Fatal("connection verified by the old CA still up a second after the reload")
	}
	if n := x.ln.Stats().Reloaded.Load(); n != 1 {
		t.Fatalf("%d reload disconnects counted, want 1", n)
	}
}

// TestListenerUnknownPeersBounded: connections from an address no peer has are counted, and logged
// at most once per interval whatever their number.
func TestListenerUnknownPeersBounded(t *testing.T) {
	x := startListener(t, proxy.ListenerOptions{Peers: twoPeers()[1:]})
	const n = 30
	for range n {
		if c, err := x.dial(t, "127.0.0.1", nil); err == nil && !c.closed(2*time.Second) {
			t.Fatal("unknown peer kept its connection")
		}
	}
	waitFor(t, func() bool { return x.ln.Stats().UnknownPeer.Load() == n }, "every unknown connection to be counted")
	if got := strings.Count(x.logs.String(), "radsec connection from an unknown address"); got != 1 {
		t.Fatalf("%d log lines for %d unknown connections, want 1", got, n)
	}
}

func waitFor(t testing.TB, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestListenerOpenSSLClient: OpenSSL, not Go, as the RadSec client over TLS 1.2: offering only
// ECDHE CBC suites fails the handshake, offering ECDHE AES-GCM succeeds.
func TestListenerOpenSSLClient(t *testing.T) {
	x := startListener(t, proxy.ListenerOptions{})
	for _, tt := range []struct {
		cipher string
		ok     bool
	}{
		{"ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA:ECDHE-RSA-AES128-SHA:ECDHE-RSA-AES256-SHA", false},
		{"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256", true},
	} {
		t.Run(tt.cipher, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, "openssl", "s_client", "-connect", x.addr.String(), "-tls1_2", "-cipher", tt.cipher,
				"-cert", x.lab.ClientCert, "-key", x.lab.ClientKey, "-CAfile", x.lab.CAFile, "-verify_return_error", "-brief")
			cmd.Stdin = strings.NewReader("")
			out, err := cmd.CombinedOutput()
			ok := err == nil && strings.Contains(string(out), "CONNECTION ESTABLISHED")
			if ok != tt.ok {
				t.Fatalf("handshake succeeded %v, want %v: %v\n%s", ok, tt.ok, err, out)
			}
			if ok && !strings.Contains(string(out), "Ciphersuite: ECDHE-") || ok && !strings.Contains(string(out), "GCM") {
				t.Fatalf("negotiated something else:\n%s", out)
			}
		})
	}
}
