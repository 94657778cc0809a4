package lab

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"mxedge/proxy/packet"
)

// The lab's simulated NAS: a UDP Dynamic Authorization server (RFC 5176) on loopback that mxedge
// relays CoA-Request and Disconnect-Request to, as a switch would take them on its port 3799. It
// verifies each request with the lab secret (Request Authenticator, Message-Authenticator) and
// ACKs it; a request for the User-Name "nosession" gets NAK 503 (Session Context Not Found), so
// both answers can be seen through the edge.
type simNAS struct {
	conn *net.UDPConn
}

// NASSessionNotFound is the User-Name the simulated NAS has no session for.
const NASSessionNotFound = "nosession"

func startNAS() (*simNAS, error) {
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
	if err != nil {
		return nil, fmt.Errorf("lab: simulated NAS: %w", err)
	}
	return &simNAS{conn: c}, nil
}

func (n *simNAS) addr() netip.AddrPort { return n.conn.LocalAddr().(*net.UDPAddr).AddrPort() }

func (n *simNAS) close() { n.conn.Close() }

// serve answers until the socket is closed.
func (n *simNAS) serve() {
	buf := make([]byte, packet.MaxLen)
	for {
		sz, src, err := n.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		if resp := nasAnswer(buf[:sz]); resp != nil {
			n.conn.WriteToUDPAddrPort(resp, src)
		}
	}
}

// nasAnswer is the simulated NAS's answer to one datagram, nil for none.
func nasAnswer(raw []byte) packet.Packet {
	p, err := packet.Parse(raw)
	if err != nil {
		return nil
	}
	secret := []byte(Secret)
	var ack, nak packet.Code
	switch p.Code() {
	case packet.CodeCoARequest:
		ack, nak = packet.CodeCoAACK, packet.CodeCoANAK
	case packet.CodeDisconnectRequest:
		ack, nak = packet.CodeDisconnectACK, packet.CodeDisconnectNAK
	default:
		return nil
	}
	if packet.CheckRequestMA(p, secret) == packet.MAInvalid || !packet.CheckRequestAuthenticator(p, secret) {
		return nil // RFC 5176 §3.5: silently discarded
	}
	code := ack
	if u, _ := p.Attr(packet.AttrUserName); string(u) == NASSessionNotFound {
		code = nak
	}
	b := packet.NewResponse(nil, p, code)
	if code == nak {
		b.AddUint32(101, 503) // Error-Cause: Session Context Not Found (RFC 5176 §3.6)
	}
	resp, err := b.Finish(secret, p.Authenticator())
	if err != nil {
		return nil
	}
	return resp
}
