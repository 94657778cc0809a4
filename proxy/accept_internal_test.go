package proxy

import (
	"net/netip"
	"testing"

	"mxedge/proxy/packet"
)

type keepHandler struct{ last *Request }

func (h *keepHandler) ServeRADIUS(r *Request) { h.last = r }

// TestAcceptKeepsItsOwnUDPWriter: the UDP reader reuses one writer for every datagram, so a request
// must answer through its own copy, and a datagram must cost no writer allocation of its own.
func TestAcceptKeepsItsOwnUDPWriter(t *testing.T) {
	h := &keepHandler{}
	srv, err := NewServer(ServerOptions{AuthAddrs: []string{}, AcctAddrs: []string{}}, h)
	if err != nil {
		t.Fatal(err)
	}
	secret := "testing123"
	srv.SetClients([]Client{{Name: "lo", Prefix: netip.MustParsePrefix("127.0.0.0/8"), Secret: Secret(secret)}})
	mk := func(id uint8) packet.Packet {
		b := packet.New(nil, packet.CodeAccessRequest, id, make([]byte, packet.AuthLen))
		b.AddMA()
		b.AddString(packet.AttrUserName, "u")
		p, err := b.Finish([]byte(secret), nil)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	a, b := netip.MustParseAddrPort("127.0.0.1:1000"), netip.MustParseAddrPort("127.0.0.2:2000")
	w := udpWriter{origin: Origin{Port: PortAuth, Transport: TransportUDP, Src: a}}
	srv.Accept(&w, mk(1))
	first := h.last
	w = udpWriter{origin: Origin{Port: PortAuth, Transport: TransportUDP, Src: b}}
	srv.Accept(&w, mk(2))
	if first == nil || h.last == first {
		t.Fatal("requests not handed on")
	}
	if got := first.w.Origin().Src; got != a {
		t.Fatalf("first request would answer %v, want %v", got, a)
	}
	reqs := make([]packet.Packet, 256)
	for i := range reqs {
		reqs[i] = mk(uint8(i))
	}
	i := 0
	allocs := testing.AllocsPerRun(200, func() {
		srv.Accept(&w, reqs[i%len(reqs)])
		i++
	})
	t.Logf("%.1f allocations per datagram", allocs)
	// The request and its copy of the packet, and the duplicate-cache entry: three, none for the writer.
	if allocs > 3 {
		t.Fatalf("%.1f allocations per datagram, want at most 3", allocs)
	}
}
