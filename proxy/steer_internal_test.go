package proxy

import (
	"bytes"
	"context"
	"crypto/rand"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"mxedge/proxy/packet"
	"mxedge/proxy/sockio"
)

// socketHandler keeps every request with the index of the socket it was read from.
type socketHandler struct {
	srv  *Server
	mu   sync.Mutex
	reqs []*Request
	from []int
}

func (h *socketHandler) ServeRADIUS(r *Request) {
	i := -1
	for k := range h.srv.socks {
		if r.uw.out == h.srv.socks[k].out {
			i = k
		}
	}
	h.mu.Lock()
	h.reqs = append(h.reqs, r)
	h.from = append(h.from, i)
	h.mu.Unlock()
}

// wait returns the n-th request (from 1) and its socket once the handler has it.
func (h *socketHandler) wait(t *testing.T, n int) (*Request, int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		h.mu.Lock()
		if len(h.reqs) >= n {
			r, i := h.reqs[n-1], h.from[n-1]
			h.mu.Unlock()
			return r, i
		}
		h.mu.Unlock()
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("the handler never got request %d", n)
	return nil, 0
}

func (h *socketHandler) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.reqs)
}

// steerServer starts a front door on 127.0.0.1 with the default sockets (one per CPU, at least
// two here) whose Spread is spread.
func steerServer(t *testing.T, spread *atomic.Bool) (*Server, *socketHandler, netip.AddrPort) {
	t.Helper()
	prev := runtime.GOMAXPROCS(max(2, runtime.GOMAXPROCS(0)))
	t.Cleanup(func() { runtime.GOMAXPROCS(prev) })
	h := &socketHandler{}
	srv, err := NewServer(ServerOptions{AuthAddrs: []string{"127.0.0.1:0"}, AcctAddrs: []string{}, Spread: spread.Load}, h)
	if err != nil {
		t.Fatal(err)
	}
	h.srv = srv
	if err := srv.SetClients([]Client{{Name: "lo", Prefix: netip.MustParsePrefix("127.0.0.1/32"), Secret: Secret("steer-secret")}}); err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	if len(srv.socks) < 2 || len(srv.groups) != 1 {
		t.Fatalf("%d sockets in %d groups, want one group of GOMAXPROCS (%d)", len(srv.socks), len(srv.groups), runtime.GOMAXPROCS(0))
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
		srv.Close()
	})
	return srv, h, srv.Addrs(PortAuth)[0]
}

func steerRequest(t *testing.T) packet.Packet {
	t.Helper()
	var auth [packet.AuthLen]byte
	rand.Read(auth[:])
	b := packet.New(nil, packet.CodeAccessRequest, auth[0], auth[:])
	b.AddMA()
	b.AddString(packet.AttrUserName, "0200000000aa")
	p, err := b.Finish([]byte("steer-secret"), nil)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestRetransmissionOnAnotherSocket: RFC 5080 §2.2.2 duplicate detection holds across the
// sockets of a SO_REUSEPORT group. A retransmission that the kernel delivers to another socket
// than its original (the group was steered in between) is absorbed while the original is in
// flight and answered from the duplicate cache, with the same octets, once it is answered; the
// handler sees the request once.
func TestRetransmissionOnAnotherSocket(t *testing.T) {
	var spread atomic.Bool // false: Run steers the group to its first socket
	srv, h, addr := steerServer(t, &spread)
	nas, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer nas.Close()
	send := func(p packet.Packet) {
		t.Helper()
		if _, err := nas.WriteToUDPAddrPort(p, addr); err != nil {
			t.Fatal(err)
		}
	}
	req := steerRequest(t)
	send(req)
	orig, on := h.wait(t, 1)
	if on != 0 {
		t.Fatalf("steered to socket 0, the request was read from socket %d", on)
	}
	// Steer the group to the second socket, as a change of spreading can for a NAS.
	if err := sockio.SteerGroup(srv.socks[0].conn, 1); err != nil {
		t.Fatal(err)
	}
	other := steerRequest(t)
	send(other)
	if _, on := h.wait(t, 2); on != 1 {
		t.Fatalf("steered to socket 1, a new request was read from socket %d", on)
	}
	send(req) // the retransmission, from the same source port, now on socket 1
	deadline := time.Now().Add(5 * time.Second)
	for srv.stats.Dropped[DropDuplicate].Load() != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("retransmission on the other socket not absorbed: %d duplicates dropped, %d requests handled",
				srv.stats.Dropped[DropDuplicate].Load(), h.count())
		}
		time.Sleep(5 * time.Millisecond)
	}
	b := packet.NewResponse(nil, orig.Packet, packet.CodeAccessAccept)
	resp, err := b.Finish(orig.Secret(), orig.Packet.Authenticator())
	if err != nil {
		t.Fatal(err)
	}
	orig.Reply(resp)
	read := func() []byte {
		t.Helper()
		buf := make([]byte, packet.MaxLen)
		nas.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := nas.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		return buf[:n]
	}
	if got := read(); !bytes.Equal(got, resp) {
		t.Fatalf("answer %x, want %x", got, resp)
	}
	send(req) // again on socket 1, after the answer
	if got := read(); !bytes.Equal(got, resp) {
		t.Fatalf("retransmission answered with %x, want the cached %x", got, resp)
	}
	if n := srv.stats.DuplicateAnswered.Load(); n != 1 {
		t.Fatalf("%d retransmissions answered from the cache, want 1", n)
	}
	if n := h.count(); n != 2 {
		t.Fatalf("the handler got %d requests, want 2 (the original and the other)", n)
	}
	second, _ := h.wait(t, 2)
	second.Drop(DropUnanswered, nil)
}

// TestSpreadSteersSockets: while Spread says false every datagram is read from the group's first
// socket; once it says true (within the housekeeping second) the kernel spreads sources over
// every socket; false again steers them back.
func TestSpreadSteersSockets(t *testing.T) {
	var spread atomic.Bool
	srv, h, addr := steerServer(t, &spread)
	n := 0
	// burst sends one request from each of 32 fresh source ports and returns the sockets that
	// read them.
	burst := func() map[int]int {
		t.Helper()
		for range 32 {
			c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(addr))
			if err != nil {
				t.Fatal(err)
			}
			c.Write(steerRequest(t))
			c.Close()
		}
		seen := map[int]int{}
		for range 32 {
			n++
			r, on := h.wait(t, n)
			seen[on]++
			r.Drop(DropUnanswered, nil)
		}
		return seen
	}
	if seen := burst(); seen[0] != 32 {
		t.Fatalf("not spread: arrivals by socket %v, want all on socket 0", seen)
	}
	spread.Store(true)
	deadline := time.Now().Add(5 * time.Second)
	for {
		seen := burst()
		if len(seen) >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("spread: arrivals by socket %v, want more than one socket (%d)", seen, len(srv.socks))
		}
		time.Sleep(100 * time.Millisecond)
	}
	spread.Store(false)
	time.Sleep(1500 * time.Millisecond) // one housekeeping tick
	if seen := burst(); seen[0] != 32 {
		t.Fatalf("steered back: arrivals by socket %v, want all on socket 0", seen)
	}
}
