//go:build !linux

package sockio

import "net"

// ListenUDPGroup binds one UDP socket: groups of SO_REUSEPORT sockets are a Linux feature here.
func ListenUDPGroup(network, addr string, n int) ([]*net.UDPConn, error) {
	ua, err := net.ResolveUDPAddr(network, addr)
	if err != nil {
		return nil, err
	}
	c, err := net.ListenUDP(network, ua)
	if err != nil {
		return nil, err
	}
	return []*net.UDPConn{c}, nil
}

// SteerGroup has nothing to steer where ListenUDPGroup binds a single socket: every datagram
// already goes to it.
func SteerGroup(conn *net.UDPConn, i int) error { return nil }
