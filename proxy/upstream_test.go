package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"mxedge/pki/pkitest"
	"mxedge/proxy/packet"
	"mxedge/proxy/radsec"
	"mxedge/proxy/radsectest"
)

// TestUpstreamServerName: with SRV the certificate is checked against the configured name, not the
// SRV target from DNS, unless the operator opts in.
func TestUpstreamServerName(t *testing.T) {
	srv := Target{Host: "radsec1.attacker.example"}
	tests := []struct {
		name string
		o    UpstreamOptions
		want string
	}{
		{"host", UpstreamOptions{Host: "nac.example.com", SRV: true}, "nac.example.com"},
		{"server name", UpstreamOptions{Host: "example.com", SRV: true, ServerName: "nac.example.com"}, "nac.example.com"},
		{"opted in", UpstreamOptions{Host: "example.com", SRV: true, VerifySRVTarget: true}, "radsec1.attacker.example"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := &Upstream{opts: tt.o}
			if got := u.serverName(srv); got != tt.want {
				t.Fatalf("serverName = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestUpstreamReconnectSteady: the backoff starts over after a connection that served, so the
// eighth outage of an upstream (its connections dropped, as in a restart) is followed by a
// reconnect as fast as the first, with the default backoff options.
func TestUpstreamReconnectSteady(t *testing.T) {
	lab := pkitest.Must(t)
	r, err := radsectest.Start(lab.ServerTLS(), "radsec")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	u, waitFor := runOneUpstream(t, r.Addr(), lab.ClientTLS())
	waitFor("first connection", u.available)
	var took []time.Duration
	for range 8 {
		failures := u.failures.Load()
		start := time.Now()
		r.CloseConns()
		waitFor("connection loss noticed", func() bool { return u.failures.Load() > failures })
		waitFor("reconnect", u.available)
		took = append(took, time.Since(start))
	}
	t.Logf("reconnect after outages 1..8: %v", took)
	for i, d := range took {
		if d > time.Second {
			t.Fatalf("outage %d: back after %v, want within 1 s", i+1, d)
		}
	}
	if took[7] > took[0]+300*time.Millisecond {
		t.Fatalf("outage 8 took %v against %v for outage 1: the backoff grew", took[7], took[0])
	}
}

// healthLog records what a pool tells its HealthObserver.
type healthLog struct {
	mu     sync.Mutex
	events []string
	last   map[string]bool
}

func (h *healthLog) add(s string) { h.mu.Lock(); h.events = append(h.events, s); h.mu.Unlock() }

func (h *healthLog) UpstreamUp(name string)           { h.add("up " + name) }
func (h *healthLog) UpstreamDown(name, reason string) { h.add("down " + name) }
func (h *healthLog) Probe(name string, ok bool)       { h.add("probe " + name) }
func (h *healthLog) Upstreams(up map[string]bool) {
	h.mu.Lock()
	h.last = up
	h.mu.Unlock()
	h.add("reset")
}

// TestRouterSetPoolResetsHealth: swapping in a reloaded pool tells health exactly the new pool's
// upstreams, and the replaced pool's later events no longer reach it.
func TestRouterSetPoolResetsHealth(t *testing.T) {
	h := new(healthLog)
	mk := func(names ...string) *Pool {
		var ups []UpstreamOptions
		for _, n := range names {
			ups = append(ups, UpstreamOptions{Name: n, Host: "127.0.0.1", TLS: lab(t)})
		}
		p, err := NewPool(PoolOptions{Upstreams: ups, Health: h})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	old := mk("a")
	r := NewRouter(RouterOptions{}, old, nil)
	old.Upstreams()[0].setState(StateUp, nil)
	fresh := mk("b")
	r.SetPool(fresh)
	h.mu.Lock()
	last := h.last
	h.mu.Unlock()
	if len(last) != 1 || last["b"] {
		t.Fatalf("health told %v after the reload, want only b, down", last)
	}
	old.Upstreams()[0].setState(StateDown, nil) // the replaced pool draining
	fresh.Upstreams()[0].setState(StateUp, nil)
	h.mu.Lock()
	defer h.mu.Unlock()
	if got := h.events; len(got) != 3 || got[0] != "up a" || got[1] != "reset" || got[2] != "up b" {
		t.Fatalf("health events %v", got)
	}
}

func lab(t *testing.T) *tls.Config { return pkitest.Must(t).ClientTLS() }

// restartable is a RadSec server that can be killed (listener and connections closed: connects
// are refused) and started again on the same port.
type restartable struct {
	t    *testing.T
	cfg  *tls.Config
	addr string
	mu   sync.Mutex
	ln   net.Listener
	cs   []net.Conn
	wg   sync.WaitGroup
}

func (s *restartable) start() {
	s.t.Helper()
	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		s.t.Fatal(err)
	}
	s.mu.Lock()
	s.ln, s.addr = ln, ln.Addr().String()
	s.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			raw, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.cs = append(s.cs, raw)
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				radsec.ServeConn(context.Background(), radsec.Server(raw, s.cfg), radsec.ServeOptions{}, func(p packet.Packet, reply radsec.ReplyFunc) {
					b := packet.NewResponse(nil, p, packet.CodeAccessAccept)
					resp, _ := b.Finish([]byte(radsec.DefaultSecret), p.Authenticator())
					reply(resp)
				})
			}()
		}
	}()
}

func (s *restartable) kill() {
	s.mu.Lock()
	s.ln.Close()
	for _, c := range s.cs {
		c.Close()
	}
	s.cs = nil
	s.mu.Unlock()
	s.wg.Wait()
}

// TestUpstreamRestartedBackWithinASecond: an upstream killed (connections closed, connects refused)
// and started again 1.5 s later carries traffic again within 1 s of its restart, at the first and
// at the fifth such restart, with the default backoff options.
func TestUpstreamRestartedBackWithinASecond(t *testing.T) {
	l := pkitest.Must(t)
	s := &restartable{t: t, cfg: l.ServerTLS(), addr: "127.0.0.1:0"}
	s.start()
	defer s.kill()
	u, wait := runOneUpstream(t, netip.MustParseAddrPort(s.addr), l.ClientTLS())
	wait("first connection", u.available)
	var took []time.Duration
	for range 5 {
		s.kill()
		wait("down", func() bool { return !u.available() })
		time.Sleep(1500 * time.Millisecond)
		s.start()
		restarted := time.Now()
		wait("back", u.available)
		took = append(took, time.Since(restarted))
	}
	t.Logf("back on the upstream after restarts 1..5: %v", took)
	for i, d := range took {
		if d > time.Second {
			t.Fatalf("restart %d: back after %v, want within 1 s", i+1, d)
		}
	}
}

// runOneUpstream runs a pool of one upstream at addr (quick watchdog: 250 ms probes, dead after
// 500 ms) until the test ends, and returns it with a wait that fails the test after 5 s.
func runOneUpstream(t *testing.T, addr netip.AddrPort, cfg *tls.Config) (*Upstream, func(what string, f func() bool)) {
	t.Helper()
	p, err := NewPool(PoolOptions{Upstreams: []UpstreamOptions{{
		Name: "up", Host: addr.Addr().String(), Port: addr.Port(), TLS: cfg,
		StatusInterval: 250 * time.Millisecond, DeadAfter: 500 * time.Millisecond,
	}}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); p.Run(ctx) }()
	t.Cleanup(func() { cancel(); wg.Wait() })
	u := p.Upstreams()[0]
	return u, func(what string, f func() bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for !f() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 5 s (%+v)", what, u.Status())
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
}

// lockedBuffer collects log output written from several goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestUpstreamDialFailureLoggedOnce: while an upstream refuses connections it is attempted every
// BackoffMin, but "upstream dial failed" is logged once per peer per dialLogInterval, not per
// attempt, while the attempts go on.
func TestUpstreamDialFailureLoggedOnce(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := netip.MustParseAddrPort(l.Addr().String())
	l.Close() // nothing listens: every connect is refused at once
	var logs lockedBuffer
	p, err := NewPool(PoolOptions{
		Upstreams: []UpstreamOptions{{Name: "cloud", Host: addr.Addr().String(), Port: addr.Port(),
			TLS: pkitest.Must(t).ClientTLS(), BackoffMin: 50 * time.Millisecond}},
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); p.Run(ctx) }()
	defer func() { cancel(); wg.Wait() }()
	u := p.Upstreams()[0]
	attempts := func() uint64 { u.mu.Lock(); defer u.mu.Unlock(); return u.dialSeq }
	deadline := time.Now().Add(5 * time.Second)
	for attempts() < 6 {
		if time.Now().After(deadline) {
			t.Fatalf("6 connection attempts not made within 5 s (%d); log:\n%s", attempts(), logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := strings.Count(logs.String(), "upstream dial failed"); n != 1 {
		t.Fatalf("%d attempts refused, %d lines logged, want 1:\n%s", attempts(), n, logs.String())
	}
	if !strings.Contains(logs.String(), "peer="+addr.String()) {
		t.Fatalf("the line does not name the peer %s:\n%s", addr, logs.String())
	}
}
