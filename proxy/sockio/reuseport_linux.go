//go:build linux

package sockio

import (
	"context"
	"fmt"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// ListenUDPGroup binds n UDP sockets to the same address with SO_REUSEPORT (socket(7)): the kernel
// spreads datagrams over them by a hash of the source and destination, so each source's
// datagrams (and its retransmissions) keep going to the same socket, and each socket gets its own
// reader on its own core. Linux lets only sockets of the same user join a group. n = 1 binds a
// plain socket. A port 0 in addr is chosen by the first bind and reused by the others.
func ListenUDPGroup(network, addr string, n int) ([]*net.UDPConn, error) {
	if n <= 1 {
		c, err := listenGroupMember(net.ListenConfig{}, network, addr)
		if err != nil {
			return nil, err
		}
		return []*net.UDPConn{c}, nil
	}
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		}); err != nil {
			return err
		}
		return serr
	}}
	var out []*net.UDPConn
	for i := range n {
		a := addr
		if i > 0 {
			a = out[0].LocalAddr().String()
		}
		c, err := listenGroupMember(lc, network, a)
		if err != nil {
			for _, c := range out {
				c.Close()
			}
			return nil, fmt.Errorf("sockio: SO_REUSEPORT socket %d of %d: %w", i+1, n, err)
		}
		out = append(out, c)
	}
	return out, nil
}

func listenGroupMember(lc net.ListenConfig, network, addr string) (*net.UDPConn, error) {
	pc, err := lc.ListenPacket(context.Background(), network, addr)
	if err != nil {
		return nil, err
	}
	return pc.(*net.UDPConn), nil
}
