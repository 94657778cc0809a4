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

// SteerGroup chooses which socket of conn's SO_REUSEPORT group the kernel delivers datagrams to:
// with i >= 0 every datagram goes to the i-th socket that joined the group (ListenUDPGroup's
// order), through a one-instruction classic BPF program returning i (SO_ATTACH_REUSEPORT_CBPF,
// socket(7)); with i < 0 the program is removed and the kernel spreads the datagrams again by
// its hash of the addresses (SO_DETACH_REUSEPORT_BPF). Either applies to the whole group,
// whichever member conn is. Datagrams already queued on a socket stay there.
func SteerGroup(conn *net.UDPConn, i int) error {
	rc, err := conn.SyscallConn()
	if err != nil {
		return fmt.Errorf("sockio: steer: %w", err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		if i < 0 {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_DETACH_REUSEPORT_BPF, 0)
			if serr == unix.ENOENT {
				serr = nil // no program attached: already spread
			}
			return
		}
		// BPF_RET|BPF_K: the program's result is the index of the socket that gets the datagram.
		prog := []unix.SockFilter{{Code: unix.BPF_RET | unix.BPF_K, K: uint32(i)}}
		serr = unix.SetsockoptSockFprog(int(fd), unix.SOL_SOCKET, unix.SO_ATTACH_REUSEPORT_CBPF,
			&unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]})
	}); err != nil {
		return fmt.Errorf("sockio: steer: %w", err)
	}
	if serr != nil {
		return fmt.Errorf("sockio: steer to socket %d: %w", i, serr)
	}
	return nil
}
