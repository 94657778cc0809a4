//go:build linux

package sockio

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// echoFromWildcard reads datagrams on a wildcard socket and answers each from the address it was
// sent to, corked (one sendmmsg) when corked is set, else one sendmsg at a time.
func echoFromWildcard(tb testing.TB, srv *UDP, corked bool, want int) {
	tb.Helper()
	var cork Cork
	out := NewSender(srv, &cork, func(to netip.AddrPort, err error) { tb.Errorf("send to %v: %v", to, err) })
	b := NewBatch(8, 64)
	srv.Conn().SetReadDeadline(time.Now().Add(2 * time.Second))
	defer srv.Conn().SetReadDeadline(time.Time{})
	for n := 0; n < want; {
		if err := srv.Read(b); err != nil {
			tb.Fatalf("after %d of %d datagrams: %v", n, want, err)
		}
		if corked {
			cork.Begin()
		}
		for _, d := range b.Datagrams() {
			if !d.Local.IsValid() {
				tb.Errorf("datagram from %v carries no local address", d.Addr)
			}
			out.From(d.Local).Send([]byte("re:"+string(d.B)), d.Addr)
			n++
		}
		cork.End()
	}
}

// checkReplySource sends from each nas socket to its target on the wildcard socket srv and checks
// that every answer comes from the address that nas sent to.
func checkReplySource(t *testing.T, srv *UDP, nas []*net.UDPConn, targets []netip.Addr) {
	t.Helper()
	port := addrOf(srv).Port()
	for _, corked := range []bool{false, true} {
		t.Run(fmt.Sprintf("corked=%v", corked), func(t *testing.T) {
			for i, c := range nas {
				if _, err := c.WriteToUDPAddrPort([]byte(fmt.Sprint(i)), netip.AddrPortFrom(targets[i], port)); err != nil {
					t.Fatal(err)
				}
			}
			echoFromWildcard(t, srv, corked, len(nas))
			for i, c := range nas {
				buf := make([]byte, 64)
				c.SetReadDeadline(time.Now().Add(2 * time.Second))
				n, from, err := c.ReadFromUDPAddrPort(buf)
				if err != nil {
					t.Fatalf("nas %d (sent to %v): no answer: %v", i, targets[i], err)
				}
				if got := from.Addr().Unmap(); got != targets[i].Unmap() || from.Port() != port {
					t.Errorf("nas %d sent to %v, answer came from %v", i, netip.AddrPortFrom(targets[i], port), from)
				}
				if string(buf[:n]) != fmt.Sprintf("re:%d", i) {
					t.Errorf("nas %d got %q", i, buf[:n])
				}
			}
		})
	}
}

func udpOn(tb testing.TB, network, addr string) *net.UDPConn {
	tb.Helper()
	c, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr)))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

// TestReplyFromWildcardIPv4: all of 127/8 is local on lo, so a socket bound to 0.0.0.0 (and a
// dual-stack one bound to [::]) gets datagrams sent to 127.0.0.2 and to 127.0.0.1; each answer
// must come from the address its NAS sent to, not from the one the kernel would pick.
func TestReplyFromWildcardIPv4(t *testing.T) {
	for _, tc := range []struct{ name, network, bind string }{
		{"0.0.0.0", "udp4", "0.0.0.0:0"},
		{"dual-stack [::]", "udp", "[::]:0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := listenOn(t, tc.network, tc.bind)
			nas := []*net.UDPConn{udpOn(t, "udp4", "127.0.0.1:0"), udpOn(t, "udp4", "127.0.0.1:0")}
			targets := []netip.Addr{netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("127.0.0.1")}
			checkReplySource(t, srv, nas, targets)
		})
	}
}

// TestReplyFromSpecificAddress: a socket bound to one address carries no packet info and answers
// as before.
func TestReplyFromSpecificAddress(t *testing.T) {
	srv := listenOn(t, "udp4", "127.0.0.1:0")
	if srv.sys.pktinfo {
		t.Fatal("packet info enabled on a socket bound to one address")
	}
	nas := udpOn(t, "udp4", "127.0.0.1:0")
	nas.WriteToUDPAddrPort([]byte("x"), addrOf(srv))
	got := readAll(t, srv, 1)
	if got[0].Local.IsValid() {
		t.Fatalf("local address %v reported on a bound socket", got[0].Local)
	}
}

// TestReplyFromWildcardIPv6 needs two IPv6 addresses: it makes a network namespace of its own
// with ::1 and fd00::2 on its loopback, and binds every socket inside it.
func TestReplyFromWildcardIPv6(t *testing.T) {
	ns := newNetns(t)
	run(t, "ip", "-n", ns, "link", "set", "lo", "up")
	run(t, "ip", "-n", ns, "addr", "add", "fd00::2/128", "dev", "lo", "nodad")
	var srv *UDP
	var nas []*net.UDPConn
	inNetns(t, ns, func() {
		srv = listenOn(t, "udp6", "[::]:0")
		nas = []*net.UDPConn{udpOn(t, "udp6", "[::1]:0"), udpOn(t, "udp6", "[::1]:0")}
	})
	targets := []netip.Addr{netip.MustParseAddr("fd00::2"), netip.MustParseAddr("::1")}
	checkReplySource(t, srv, nas, targets)
}

func listenOn(tb testing.TB, network, addr string) *UDP {
	tb.Helper()
	u, err := NewUDP(udpOn(tb, network, addr))
	if err != nil {
		tb.Fatal(err)
	}
	return u
}

func run(tb testing.TB, name string, args ...string) {
	tb.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		tb.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// newNetns creates a network namespace that the test deletes when it ends.
func newNetns(tb testing.TB) string {
	tb.Helper()
	name := fmt.Sprintf("mxedge-sockio-%d", os.Getpid())
	run(tb, "ip", "netns", "add", name)
	tb.Cleanup(func() { exec.Command("ip", "netns", "delete", name).Run() })
	return name
}

// inNetns runs fn on an OS thread switched into the namespace ns; sockets made there stay in it.
func inNetns(tb testing.TB, ns string, fn func()) {
	tb.Helper()
	runtime.LockOSThread()
	restored := false
	defer func() {
		// A thread that could not return stays locked: the runtime ends it with the goroutine.
		if restored {
			runtime.UnlockOSThread()
		}
	}()
	self, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		restored = true
		tb.Fatal(err)
	}
	defer self.Close()
	target, err := os.Open("/run/netns/" + ns)
	if err != nil {
		restored = true
		tb.Fatal(err)
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		restored = true
		tb.Fatal(err)
	}
	defer func() {
		if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
			tb.Errorf("cannot return to the test's network namespace: %v", err)
			return
		}
		restored = true
	}()
	fn()
}
