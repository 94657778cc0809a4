package config

import (
	"net/netip"
	"strings"
)

// source is an upstream's local address: its own `source`, else the upstreams block's
// (radsecproxy's Source, FreeRADIUS's src_ipaddr). An address the host does not have fails at
// connect time, in the upstream's last error; here only the syntax is checked.
func source(v *validator, path, pool, server string) netip.Addr {
	s, at := server, path+".source"
	if s == "" {
		s, at = pool, "upstreams.source"
	}
	if s == "" {
		return netip.Addr{}
	}
	a, err := netip.ParseAddr(strings.Trim(s, "[]"))
	if err != nil || a.IsUnspecified() || a.IsMulticast() || a.Zone() != "" {
		v.errorf(at, "%q is not a unicast IP address", s)
		return netip.Addr{}
	}
	return a.Unmap()
}

// bindDevice is an upstream's SO_BINDTODEVICE interface: its own `bind_device`, else the block's.
func bindDevice(v *validator, path, pool, server string) string {
	d, at := server, path+".bind_device"
	if d == "" {
		d, at = pool, "upstreams.bind_device"
	}
	// IFNAMSIZ is 16 with the terminating NUL (netdevice(7)); '/' and whitespace are never valid.
	if len(d) >= 16 || strings.ContainsAny(d, "/ \t") {
		v.errorf(at, "%q is not an interface name", d)
		return ""
	}
	return d
}
