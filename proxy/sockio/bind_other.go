//go:build !linux

package sockio

import (
	"errors"
	"syscall"
)

// BindToDevice is Linux only (SO_BINDTODEVICE); elsewhere every dial fails with this error.
func BindToDevice(dev string) func(network, address string, c syscall.RawConn) error {
	return func(string, string, syscall.RawConn) error {
		return errors.New("sockio: bind_device is supported on Linux only")
	}
}
