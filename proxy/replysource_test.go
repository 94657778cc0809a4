package proxy_test

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"mxedge/proxy/packet"
)

// TestReplySourceOnWildcardSocket: with the front door bound to a wildcard address, a NAS that sent
// to 127.0.0.2 and one that sent to 127.0.0.1 (all of 127/8 is local on lo) each get their answer
// from the address they sent to, whether the front door answers itself (Status-Server) or relays
// the upstream's answer. A NAS drops an answer from another address (RFC 2865 §3).
func TestReplySourceOnWildcardSocket(t *testing.T) {
	for _, bind := range []string{"0.0.0.0:0", ":0" /* dual-stack */} {
		t.Run(bind, func(t *testing.T) {
			h := startHarness(t, harnessOpts{listen: bind})
			port := h.auth.Port()
			for _, target := range []string{"127.0.0.2", "127.0.0.1"} {
				to := netip.AddrPortFrom(netip.MustParseAddr(target), port)
				nas, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
				if err != nil {
					t.Fatal(err)
				}
				defer nas.Close()
				for _, o := range []reqOpts{{code: packet.CodeStatusServer, id: 1}, {user: "alice", password: "pw", id: 2}} {
					req := buildRequest(t, o)
					if _, err := nas.WriteToUDPAddrPort(req, to); err != nil {
						t.Fatal(err)
					}
					buf := make([]byte, 4096)
					nas.SetReadDeadline(time.Now().Add(3 * time.Second))
					n, from, err := nas.ReadFromUDPAddrPort(buf)
					if err != nil {
						t.Fatalf("%v sent to %v: no answer: %v", o.code, to, err)
					}
					if from.Addr().Unmap() != to.Addr() || from.Port() != port {
						t.Errorf("request %d sent to %v was answered from %v", o.id, to, from)
					}
					resp, err := packet.Parse(buf[:n])
					if err != nil {
						t.Fatal(err)
					}
					checkResponse(t, req, resp)
				}
			}
		})
	}
}
