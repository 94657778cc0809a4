package cli

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"syscall"

	"mxedge/edge/config"
	"mxedge/edge/lab"
)

// ports checks that every address the daemon binds is free, or already held by mxedge (a running
// daemon): RADIUS authentication and accounting (UDP), the RadSec listener and metrics (TCP). It
// binds each address for a moment, as the daemon would, and names the holder of a taken one from
// /proc (edge/lab.Holder). Port 0 (a kernel-chosen port) is never taken and is not checked.
func (d *doctor) ports(f config.File) {
	type bind struct{ name, network, addr string }
	var binds []bind
	auth, acct := f.Listen.Auth, f.Listen.Acct
	if len(auth) == 0 {
		auth = config.DefaultAuthAddrs
	}
	if len(acct) == 0 {
		acct = config.DefaultAcctAddrs
	}
	for i, a := range auth {
		binds = append(binds, bind{fmt.Sprintf("port listen.auth[%d]", i), "udp", a})
	}
	for i, a := range acct {
		binds = append(binds, bind{fmt.Sprintf("port listen.acct[%d]", i), "udp", a})
	}
	for i, a := range f.RadSec.Listen {
		binds = append(binds, bind{fmt.Sprintf("port radsec.listen[%d]", i), "tcp", a})
	}
	metrics := "127.0.0.1:9812"
	if f.Metrics.Listen != nil {
		metrics = *f.Metrics.Listen
	}
	if metrics != "" {
		binds = append(binds, bind{"port metrics.listen", "tcp", metrics})
	}
	for _, b := range binds {
		ap, err := netip.ParseAddrPort(b.addr)
		if err != nil {
			continue // the config check reports it
		}
		if ap.Port() == 0 {
			continue
		}
		d.port(b.name, b.network, ap)
	}
}

func (d *doctor) port(name, network string, ap netip.AddrPort) {
	addr := ap.String()
	var err error
	if network == "udp" {
		var c net.PacketConn
		if c, err = net.ListenPacket("udp", addr); err == nil {
			c.Close()
		}
	} else {
		var l net.Listener
		if l, err = net.Listen("tcp", addr); err == nil {
			l.Close()
		}
	}
	switch {
	case err == nil:
		d.pass(name, "%s/%s is free", addr, network)
	case errors.Is(err, syscall.EADDRINUSE):
		holder := lab.Holder(network, ap.Port())
		if strings.HasPrefix(holder, "mxedge ") {
			d.pass(name, "%s/%s is held by %s: the daemon is running", addr, network, holder)
			return
		}
		if holder == "" {
			holder = "another process (run as root to name it)"
		}
		d.fail(name, "stop it, or move mxedge to another address in the configuration",
			"%s/%s is already in use by %s", addr, network, holder)
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		d.fail(name, "listen on an address of this host, or 0.0.0.0 / [::]", "%s/%s: no such address on this host", addr, network)
	case errors.Is(err, syscall.EACCES):
		d.warn(name, "ports below 1024 need CAP_NET_BIND_SERVICE (the packaged unit grants it)", "%s/%s: %v", addr, network, err)
	default:
		d.fail(name, "check the address", "%s/%s: %v", addr, network, err)
	}
}
