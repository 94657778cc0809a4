package proxy

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"mxedge/edge/peertest"
)

// TestUpstreamDialerInNetns: the dialer an upstream connects with honours source and bind_device
// against real kernel routing, in network namespaces made for the test (edge/peertest/netns.go:
// edge wan0 198.18.0.2 → router → cloud 198.19.0.2). The edge also gets a second interface d1
// (198.18.8.2/24, one end of a veth pair that leads nowhere):
//   - source 198.18.8.2: the connection leaves wan0 with that source (the cloud sees it);
//   - bind_device wan0: connects, from wan0's address;
//   - bind_device d1: only d1's routes apply, and d1 leads nowhere: the cloud never sees it.
func TestUpstreamDialerInNetns(t *testing.T) {
	w := peertest.StartWAN(t)
	for _, args := range [][]string{
		{"-n", w.Edge, "link", "add", "d1", "type", "veth", "peer", "name", "d1peer"},
		{"-n", w.Edge, "addr", "add", "198.18.8.2/24", "dev", "d1"},
		{"-n", w.Edge, "link", "set", "d1", "up"},
		{"-n", w.Edge, "link", "set", "d1peer", "up"},
		{"-n", w.Router, "route", "add", "198.18.8.0/24", "via", peertest.WANEdgeAddr.String()},
	} {
		if out, err := exec.CommandContext(t.Context(), "ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	var ln net.Listener
	if err := peertest.InNetns(w.Cloud, func() (err error) {
		ln, err = net.Listen("tcp", netip.AddrPortFrom(peertest.WANCloudAddr, 0).String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan netip.Addr, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			ap, _ := netip.ParseAddrPort(c.RemoteAddr().String())
			accepted <- ap.Addr()
			c.Close()
		}
	}()
	to := ln.Addr().String()
	dial := func(o UpstreamOptions) error {
		o.setDefaults()
		u := &Upstream{opts: o}
		d := u.dialer()
		return peertest.InNetns(w.Edge, func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			c, err := d.DialContext(ctx, "tcp", to)
			if err == nil {
				c.Close()
			}
			return err
		})
	}
	for _, tc := range []struct {
		name string
		o    UpstreamOptions
		from netip.Addr
	}{
		{"source", UpstreamOptions{Source: netip.MustParseAddr("198.18.8.2")}, netip.MustParseAddr("198.18.8.2")},
		{"bind wan0", UpstreamOptions{BindDevice: "wan0"}, peertest.WANEdgeAddr},
		{"default", UpstreamOptions{}, peertest.WANEdgeAddr},
	} {
		if err := dial(tc.o); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		select {
		case got := <-accepted:
			if got != tc.from {
				t.Fatalf("%s: the cloud saw %s, want %s", tc.name, got, tc.from)
			}
		case <-time.After(2 * time.Second):
			t.Fatalf("%s: nothing accepted", tc.name)
		}
	}
	// Bound to d1 the SYN leaves d1 (or the kernel finds no route): never the cloud.
	err := dial(UpstreamOptions{BindDevice: "d1"})
	var ne net.Error
	if err == nil || !(errors.Is(err, syscall.ENETUNREACH) || errors.Is(err, syscall.EHOSTUNREACH) || errors.As(err, &ne) && ne.Timeout()) {
		t.Fatalf("bound to d1, which leads nowhere: err = %v, want unreachable or a timeout", err)
	}
	select {
	case got := <-accepted:
		t.Fatalf("bound to d1, the cloud still got a connection from %s", got)
	case <-time.After(200 * time.Millisecond):
	}
}
