package proxy_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"mxedge/pki/pkitest"
	"mxedge/proxy"
	"mxedge/proxy/packet"
	"mxedge/proxy/radsec"
)

// wedgedUpstream answers the Status-Server that puts a new connection in service and then never
// reads again: the proxy's writes fill the socket buffers and stop moving, as on a blackholed WAN.
func wedgedUpstream(t *testing.T, cfg *tls.Config) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			raw, err := ln.Accept()
			if err != nil {
				return
			}
			raw.(*net.TCPConn).SetReadBuffer(4096)
			mu.Lock()
			conns = append(conns, raw)
			mu.Unlock()
			go func() {
				tc := tls.Server(raw, cfg)
				p, err := radsec.ReadPacket(bufio.NewReader(tc))
				if err != nil {
					return
				}
				b := packet.NewResponse(nil, p, packet.CodeAccessAccept)
				resp, _ := b.Finish([]byte(radsec.DefaultSecret), p.Authenticator())
				tc.Write(resp)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	return ln.Addr().(*net.TCPAddr).AddrPort()
}

// localFallback answers locally what is addressed to it (User-Name "local…") and whatever the
// upstream could not answer.
type localFallback struct{ served atomic.Int64 }

func (*localFallback) Takes(req *proxy.Request) bool {
	u, _ := req.Packet.Attr(packet.AttrUserName)
	return len(u) >= 5 && string(u[:5]) == "local"
}

func (f *localFallback) Serve(_ context.Context, req *proxy.Request, _ error) (packet.Packet, error) {
	f.served.Add(1)
	b := packet.NewResponse(nil, req.Packet, packet.CodeAccessAccept)
	return b.Finish(req.Client.Secret, req.Packet.Authenticator())
}

// TestProxyWedgedUpstreamKeepsLocalAnswers: while the only upstream has stopped reading, the front
// door's reader never waits for it: requests answered locally keep their latency, the silent
// connection is declared dead (DeadAfter; loopback's socket buffers hold these requests, so here
// they do not stall: TestConnStallAbortsAtOnce covers that), and the requests it held, queued
// ones beyond 256 identifiers included, are answered locally too, none lost.
func TestProxyWedgedUpstreamKeepsLocalAnswers(t *testing.T) {
	lab := pkitest.Must(t)
	up := wedgedUpstream(t, lab.ServerTLS())
	const dead = time.Second
	pool, err := proxy.NewPool(proxy.PoolOptions{Upstreams: []proxy.UpstreamOptions{{
		Name: "wedged", Host: up.Addr().String(), Port: up.Port(), TLS: lab.ClientTLS(),
		StatusInterval: time.Hour, DeadAfter: dead, StallAfter: 300 * time.Millisecond, MaxConnections: 1,
		BackoffMin: time.Hour, BackoffMax: time.Hour, // one connection: no reconnect to the wedged peer
	}}})
	if err != nil {
		t.Fatal(err)
	}
	fb := new(localFallback)
	stats := new(proxy.Stats)
	router := proxy.NewRouter(proxy.RouterOptions{Fallback: fb}, pool, stats)
	srv, err := proxy.NewServer(proxy.ServerOptions{AuthAddrs: []string{"127.0.0.1:0"}, AcctAddrs: []string{"127.0.0.1:0"},
		RequestTimeout: 10 * time.Second, DuplicateWindow: time.Second, Stats: stats}, router)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.SetClients([]proxy.Client{{Name: "lo", Prefix: netip.MustParsePrefix("127.0.0.0/8"), Secret: proxy.Secret(nasSecret)}}); err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); pool.Run(ctx) }()
	go func() { defer wg.Done(); srv.Run(ctx) }()
	defer func() { cancel(); wg.Wait(); srv.Close() }()
	wctx, wcancel := context.WithTimeout(ctx, 3*time.Second)
	pool.WaitReady(wctx)
	wcancel()
	if st := pool.Upstreams()[0].Status(); st.State != proxy.StateUp {
		t.Fatalf("upstream not up: %+v", st)
	}
	auth := srv.Addrs(proxy.PortAuth)[0]

	// The NAS: one socket for upstream-bound requests (~3 kB each, so they fill the socket buffers),
	// answers counted by a reader.
	nas, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer nas.Close()
	nas.SetReadBuffer(4 << 20)
	const n = 400
	var answered atomic.Int32
	go func() {
		buf := make([]byte, 4096)
		for {
			if _, err := nas.Read(buf); err != nil {
				return
			}
			answered.Add(1)
		}
	}()
	start := time.Now()
	for i := range n {
		ra := make([]byte, packet.AuthLen)
		rand.Read(ra) // identifiers wrap at 256: a new authenticator makes each a new request
		b := packet.New(nil, packet.CodeAccessRequest, uint8(i), ra)
		b.AddMA()
		b.AddString(packet.AttrUserName, fmt.Sprint("cloud", i))
		for range 12 {
			b.Add(packet.AttrClass, make([]byte, 240))
		}
		p, err := b.Finish([]byte(nasSecret), nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := nas.WriteToUDPAddrPort(p, auth); err != nil {
			t.Fatal(err)
		}
		if i%25 == 0 {
			time.Sleep(time.Millisecond) // keep within the front door's receive buffer
		}
	}
	// Local answers while the upstream is wedged, through the same front door socket.
	var slowest time.Duration
	for i := range 20 {
		req := buildRequest(t, reqOpts{user: fmt.Sprint("local", i), id: uint8(i)})
		t0 := time.Now()
		resp := exchange(t, nil, auth, req, 2*time.Second)
		checkResponse(t, req, resp)
		if d := time.Since(t0); d > slowest {
			slowest = d
		}
	}
	if slowest > 100*time.Millisecond {
		t.Fatalf("a local answer took %v while the upstream was wedged", slowest)
	}
	deadline := time.Now().Add(dead + 2*time.Second)
	for answered.Load() < n && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	took := time.Since(start)
	if got := answered.Load(); got != n {
		st := srv.Stats()
		t.Fatalf("%d of %d upstream-bound requests answered within %v (received %d, forwarded %d, fallback %d, pool in flight %d; upstream %+v)",
			got, n, took, st.Received.Load(), st.Forwarded.Load(), fb.served.Load(), pool.Inflight(), pool.Upstreams()[0].Status())
	}
	t.Logf("wedged upstream: 20 local answers, slowest %v; %d upstream-bound requests all answered locally after %v (dead_after %v)",
		slowest.Round(time.Microsecond), n, took.Round(time.Millisecond), dead)
}
