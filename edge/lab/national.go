package lab

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"mxedge/proxy/packet"
)

// The lab's eduroam national server: RADIUS over UDP on 127.0.0.3, as a national roaming operator
// runs one, with the home IdP of one visitor behind it. mxedge's eduroam preset sends it the
// visitors of the lab's eduroam SSID.
const (
	NationalSecret   = "lab-national"
	VisitorName      = "visitor@roaming.example"
	VisitorPassword  = "visitor"
	EduroamRealm     = "lab.example"
	EduroamOperator  = "1lab.example"
	nationalListenIP = "127.0.0.3"
)

// startNational listens for the lab national server; serveNational answers until ctx ends.
func (l *Lab) startNational(ctx context.Context) error {
	conn, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(nationalListenIP), 0)))
	if err != nil {
		return fmt.Errorf("lab: national server: %w", err)
	}
	l.National = conn.LocalAddr().(*net.UDPAddr).AddrPort()
	context.AfterFunc(ctx, func() { conn.Close() })
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		buf := make([]byte, packet.MaxLen)
		for {
			n, from, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			p, err := packet.Parse(buf[:n])
			if err != nil {
				continue
			}
			if resp := nationalAnswer(p); resp != nil {
				conn.WriteToUDPAddrPort(resp, from)
			}
		}
	}()
	return nil
}

// nationalAnswer is the visitor's home IdP: VisitorName with VisitorPassword is accepted, with a
// Chargeable-User-Identity when one was asked for (RFC 4372) and a Reply-Message that says which
// Operator-Name arrived; everyone else is rejected. Every answer carries Message-Authenticator.
func nationalAnswer(p packet.Packet) []byte {
	secret := []byte(NationalSecret)
	code := packet.CodeAccessReject
	var msg string
	cui := false
	switch p.Code() {
	case packet.CodeStatusServer:
		code = packet.CodeAccessAccept
	case packet.CodeAccountingRequest:
		if !packet.CheckRequestAuthenticator(p, secret) {
			return nil
		}
		code = packet.CodeAccountingResponse
	case packet.CodeAccessRequest:
		if packet.CheckRequestMA(p, secret) != packet.MAValid {
			return nil
		}
		user, _ := p.Attr(packet.AttrUserName)
		var pw []byte
		if v, ok := p.Attr(packet.AttrUserPassword); ok {
			if d, err := packet.DecryptUserPassword(nil, v, secret, p.Authenticator()); err == nil {
				pw = bytes.TrimRight(d, "\x00")
			}
		}
		if strings.EqualFold(string(user), VisitorName) && string(pw) == VisitorPassword {
			code = packet.CodeAccessAccept
			op, _ := p.Attr(126) // Operator-Name (RFC 5580)
			msg = "lab national server: Operator-Name " + string(op)
			cui = p.Has(89) // Chargeable-User-Identity requested
		}
	default:
		return nil
	}
	b := packet.NewResponse(nil, p, code)
	for it := p.Attrs(); ; {
		typ, v, ok := it.Next()
		if !ok {
			break
		}
		if typ == packet.AttrProxyState {
			b.Add(typ, v)
		}
	}
	if msg != "" {
		b.AddString(packet.AttrReplyMessage, msg)
	}
	if cui {
		b.AddString(89, "lab-cui-visitor")
	}
	resp, err := b.Finish(secret, p.Authenticator())
	if err != nil {
		return nil
	}
	return resp
}
