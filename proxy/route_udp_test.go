package proxy_test

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"mxedge/proxy"
	"mxedge/proxy/packet"
)

// TestNASRetransmitReachesUDPUpstream: a RADIUS/UDP upstream that lost the first transmission gets
// the same packet again as soon as the NAS retransmits (RFC 5080 §2.2.1), well before the pool's
// own retransmission timer, and the NAS gets one answer.
func TestNASRetransmitReachesUDPUpstream(t *testing.T) {
	const upSecret = "udp-secret"
	up, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	var mu sync.Mutex
	var seen [][]byte
	go func() {
		buf := make([]byte, 4096)
		for {
			n, from, err := up.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			p := packet.Packet(append([]byte(nil), buf[:n]...))
			answer := p.Code() == packet.CodeStatusServer
			if !answer {
				mu.Lock()
				seen = append(seen, p)
				answer = len(seen) == 2 // the first transmission is "lost"
				mu.Unlock()
			}
			if answer {
				b := packet.NewResponse(nil, p, packet.CodeAccessAccept)
				for it := p.Attrs(); ; {
					typ, v, ok := it.Next()
					if !ok {
						break
					}
					if typ == packet.AttrProxyState {
						b.Add(typ, v)
					}
				}
				r, _ := b.Finish([]byte(upSecret), p.Authenticator())
				up.WriteToUDPAddrPort(r, from)
			}
		}
	}()
	a := up.LocalAddr().(*net.UDPAddr).AddrPort()
	pool, err := proxy.NewPool(proxy.PoolOptions{Upstreams: []proxy.UpstreamOptions{{
		Name: "national", Host: a.Addr().String(), Port: a.Port(), Secret: proxy.Secret(upSecret),
		StatusInterval: 5 * time.Second, DeadAfter: 10 * time.Second,
		UDP: &proxy.UDPOptions{RetransmitAfter: 3 * time.Second, MaxTransmissions: 2},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	stats := new(proxy.Stats)
	router := proxy.NewRouter(proxy.RouterOptions{}, pool, stats)
	srv, err := proxy.NewServer(proxy.ServerOptions{AuthAddrs: []string{"127.0.0.1:0"}, AcctAddrs: []string{"127.0.0.1:0"},
		RequestTimeout: 5 * time.Second, Stats: stats}, router)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.SetClients([]proxy.Client{{Name: "lo", Prefix: netip.MustParsePrefix("127.0.0.0/8"), Secret: proxy.Secret(nasSecret),
		RequireMessageAuthenticator: true}}); err != nil {
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

	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	req := buildRequest(t, reqOpts{user: "visitor@example.org", password: "x"})
	auth := srv.Addrs(proxy.PortAuth)[0]
	start := time.Now()
	conn.WriteToUDPAddrPort(req, auth)
	time.Sleep(1600 * time.Millisecond) // past half the pool's timer: a retransmission may go out
	resp := exchange(t, conn, auth, req, 3*time.Second)
	elapsed := time.Since(start)
	checkResponse(t, req, resp)
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 2 || !bytes.Equal(seen[0], seen[1]) {
		t.Fatalf("upstream saw %d transmissions (identical: %v)", len(seen), len(seen) == 2 && bytes.Equal(seen[0], seen[1]))
	}
	// The pool's own timer would have resent at 3 s.
	if elapsed >= 2900*time.Millisecond {
		t.Fatalf("answered after %v: the NAS's retransmission was not passed on", elapsed)
	}
}
