package proxy_test

import (
	"context"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"mxedge/proxy"
	"mxedge/proxy/packet"
	"mxedge/proxy/sockio"
)

// slowHandler answers each request on the goroutine that hands it over, after a pause, and
// records how many requests it was serving at once.
type slowHandler struct {
	active, most atomic.Int32
	answered     atomic.Int32
}

func (h *slowHandler) ServeRADIUS(req *proxy.Request) {
	n := h.active.Add(1)
	for m := h.most.Load(); n > m && !h.most.CompareAndSwap(m, n); m = h.most.Load() {
	}
	time.Sleep(2 * time.Millisecond) // the reader falls behind: its batches grow
	h.active.Add(-1)
	b := packet.NewResponse(nil, req.Packet, packet.CodeAccessAccept)
	resp, _ := b.Finish(req.Secret(), req.Packet.Authenticator())
	h.answered.Add(1)
	req.Reply(resp)
}

// TestFrontDoorSharesLargeBatches: with SplitBatch, and with a group of SO_REUSEPORT sockets (the
// default's spread, not the default's steered to one socket), the requests answered on the reader
// run on more than one goroutine at once; every request is
// answered exactly once either way, and Run leaves no goroutine behind.
func TestFrontDoorSharesLargeBatches(t *testing.T) {
	// The front door only shares with a helper when it can run beside the reader: give the test two
	// Ps even on a one-CPU machine, where the kernel time-slices them.
	if runtime.GOMAXPROCS(0) < 2 {
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2))
	}
	for _, tc := range []struct {
		name            string
		split, sockets  int
		spread          func() bool // ServerOptions.Spread
		wantConcurrency bool
	}{
		{name: "one reader", sockets: 1, wantConcurrency: false},
		{name: "split", sockets: 1, split: 4, wantConcurrency: true},
		{name: "two sockets", sockets: 2, wantConcurrency: true},
		// The default: a socket per CPU, read by all while answers are local, by one otherwise.
		{name: "default spread", spread: func() bool { return true }, wantConcurrency: true},
		{name: "default steered", spread: func() bool { return false }, wantConcurrency: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := runtime.NumGoroutine()
			h := new(slowHandler)
			cork := new(sockio.Cork)
			srv, err := proxy.NewServer(proxy.ServerOptions{AuthAddrs: []string{"127.0.0.1:0"}, AcctAddrs: []string{},
				SplitBatch: tc.split, Sockets: tc.sockets, Spread: tc.spread, Cork: cork}, h)
			if err != nil {
				t.Fatal(err)
			}
			if err := srv.SetClients([]proxy.Client{{Name: "lo", Prefix: netip.MustParsePrefix("127.0.0.0/8"),
				Secret: proxy.Secret(nasSecret), RequireMessageAuthenticator: true}}); err != nil {
				t.Fatal(err)
			}
			if err := srv.Listen(); err != nil {
				t.Fatal(err)
			}
			if got := srv.Addrs(proxy.PortAuth); len(got) != 1 {
				t.Fatalf("Addrs lists %v: want one address whatever the sockets", got)
			}
			addr := srv.Addrs(proxy.PortAuth)[0]
			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			wg.Go(func() { srv.Run(ctx) })

			// 16 NAS ports, 8 requests each, all sent before the first is answered.
			const ports, per = 16, 8
			var conns []*net.UDPConn
			for range ports {
				c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(addr))
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				conns = append(conns, c)
			}
			for i := range per {
				for _, c := range conns {
					if _, err := c.Write(buildRequest(t, reqOpts{user: "u", password: "p", id: uint8(i)})); err != nil {
						t.Fatal(err)
					}
				}
			}
			got := 0
			buf := make([]byte, packet.MaxLen)
			for _, c := range conns {
				c.SetReadDeadline(time.Now().Add(10 * time.Second))
				for range per {
					if _, err := c.Read(buf); err != nil {
						t.Fatalf("after %d answers: %v", got, err)
					}
					got++
				}
				// Exactly once: nothing more arrives.
				c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
				if _, err := c.Read(buf); err == nil {
					t.Fatal("a request was answered twice")
				}
			}
			cancel()
			wg.Wait()
			srv.Close()
			if n := h.answered.Load(); got != ports*per || n != ports*per {
				t.Fatalf("%d answers received, %d given; want %d", got, n, ports*per)
			}
			if most := h.most.Load(); (most > 1) != tc.wantConcurrency {
				t.Errorf("at most %d requests served at once; want concurrency %v", most, tc.wantConcurrency)
			}
			for deadline := time.Now().Add(3 * time.Second); runtime.NumGoroutine() > before && time.Now().Before(deadline); {
				time.Sleep(10 * time.Millisecond)
			}
			if n := runtime.NumGoroutine(); n > before {
				t.Errorf("goroutines: %d before, %d after", before, n)
			}
		})
	}
}
