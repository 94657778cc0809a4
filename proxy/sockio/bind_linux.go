//go:build linux

package sockio

import (
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"
)

// BindToDevice returns a net.Dialer Control function that binds the socket to the network
// interface dev with SO_BINDTODEVICE (socket(7)) before it connects: the connection then uses
// only routes through dev, which for a VRF device means the VRF's routing table (what
// FreeRADIUS's and radsecproxy's interface options do). It needs CAP_NET_RAW unless the socket
// is already unbound.
func BindToDevice(dev string) func(network, address string, c syscall.RawConn) error {
	return func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptString(int(fd), unix.SOL_SOCKET, unix.SO_BINDTODEVICE, dev)
		}); err != nil {
			return err
		}
		if serr != nil {
			return fmt.Errorf("sockio: bind to device %q: %w", dev, serr)
		}
		return nil
	}
}
