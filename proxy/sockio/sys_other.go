//go:build !linux

package sockio

import (
	"net"
	"net/netip"
)

// Elsewhere than Linux, sockio is the standard library one datagram at a time: mxedge ships for
// Linux, and this keeps the packages building and testable on a developer's laptop.

type udpSys struct{ conn *net.UDPConn }

func (u *udpSys) init(conn *net.UDPConn) error { u.conn = conn; return nil }

type batchSys struct{}

type sendSys struct{}

func (u *UDP) read(b *Batch) error {
	b.got = b.got[:0]
	n, addr, err := u.conn.ReadFromUDPAddrPort(b.bufs[0])
	if err != nil {
		return err
	}
	b.got = append(b.got, Datagram{B: b.bufs[0][:n], Addr: addr})
	return nil
}

func (u *UDP) writeTo(p []byte, _ netip.Addr, to netip.AddrPort) error {
	_, err := u.conn.WriteToUDPAddrPort(p, to)
	return err
}

func (u *UDP) writeBatch(ds []Datagram, _ *sendSys, onError func(netip.AddrPort, error)) {
	for _, d := range ds {
		if err := u.writeTo(d.B, d.Local, d.Addr); err != nil && onError != nil {
			onError(d.Addr, err)
		}
	}
}

// NewStream returns nc: raw system calls are a Linux optimisation.
func NewStream(nc net.Conn) net.Conn { return nc }
