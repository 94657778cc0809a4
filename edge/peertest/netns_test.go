package peertest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestWANBlackhole runs FreeRADIUS in the cloud namespace and talks to it
// from the edge namespace through the router, over UDP and RadSec: a cut
// makes packets vanish (a timeout, never a reset), a restore lets the same
// TCP connection deliver what was written during the cut, a restart brings
// the server back at the same address, and Close leaves no namespace.
func TestWANBlackhole(t *testing.T) {
	Require(t, "freeradius", "ip")
	certs := NewCerts(t)
	w := StartWAN(t)
	cloud := func(port int) string { return netip.AddrPortFrom(WANCloudAddr, uint16(port)).String() }
	fr := StartFreeRADIUS(t, FreeRADIUSOptions{
		NetNS:       w.Cloud,
		UDPAuthAddr: cloud(1812),
		RadSecAddr:  cloud(2083),
		UDPClients:  []Client{{Addr: WANEdgeAddr.String(), Secret: "testing123"}},
		// The edge reaches the cloud from its WAN address, not loopback.
		RadSecClients: []string{"198.18.0.0/24"},
		ServerCert:    certs.ServerCert, ServerKey: certs.ServerKey, CA: certs.CA,
	})
	ctx := t.Context()

	udp, err := ListenUDPIn(w.Edge, netip.AddrPortFrom(WANEdgeAddr, 0))
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	to := netip.AddrPortFrom(WANCloudAddr, 1812)
	status := func(id byte, wait time.Duration) bool {
		t.Helper()
		if _, err := udp.WriteToUDPAddrPort(statusServer("testing123", id), to); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 4096)
		deadline := time.Now().Add(wait)
		for {
			_ = udp.SetReadDeadline(deadline)
			n, _, err := udp.ReadFromUDPAddrPort(buf)
			if err != nil {
				return false
			}
			if n >= 20 && buf[1] == id {
				return true
			}
		}
	}
	if !status(1, 2*time.Second) {
		t.Fatalf("no UDP answer across the router\n%s", fr.LogTail(20))
	}

	rs := dialRadSec(t, w.Edge, cloud(2083), certs)
	defer rs.Close()
	rsStatus := func(id byte) {
		t.Helper()
		_ = rs.SetWriteDeadline(time.Now().Add(time.Second))
		if _, err := rs.Write(statusServer(DefaultRadSecSecret, id)); err != nil {
			t.Fatal(err)
		}
	}
	rsRead := func(wait time.Duration) (byte, error) {
		var hdr [20]byte
		_ = rs.SetReadDeadline(time.Now().Add(wait))
		if _, err := io.ReadFull(rs, hdr[:]); err != nil {
			return 0, err
		}
		n := int(hdr[2])<<8 | int(hdr[3])
		if _, err := io.CopyN(io.Discard, rs, int64(n-20)); err != nil {
			return 0, err
		}
		return hdr[1], nil
	}
	rsStatus(2)
	if id, err := rsRead(2 * time.Second); err != nil || id != 2 {
		t.Fatalf("RadSec Status-Server: id %d, %v", id, err)
	}

	if err := w.Cut(ctx); err != nil {
		t.Fatal(err)
	}
	if status(3, 500*time.Millisecond) {
		t.Fatal("UDP answered through the blackhole")
	}
	rsStatus(4)
	_, err = rsRead(700 * time.Millisecond)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("RadSec read during the cut: %v, want a timeout (no RST)", err)
	}
	if q, n, err := TCPSendQueue(w.Edge, netip.MustParseAddrPort(cloud(2083))); err != nil || n != 1 || q == 0 {
		t.Fatalf("send queue during the cut: %d bytes on %d sockets, %v; want the unacknowledged Status-Server", q, n, err)
	}
	if c, err := DialTCPIn(w.Edge, cloud(2083), 500*time.Millisecond); err == nil {
		c.Close()
		t.Fatal("new TCP connection through the blackhole")
	} else if errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial through the blackhole refused (%v), want a timeout", err)
	}

	if err := w.Restore(ctx); err != nil {
		t.Fatal(err)
	}
	// The Status-Server written during the cut is still in the send queue;
	// TCP retransmits it once the path is back (RTO is at most a few seconds
	// this early in the connection).
	if id, err := rsRead(5 * time.Second); err != nil || id != 4 {
		t.Fatalf("RadSec after restore: id %d, %v", id, err)
	}
	if q, _, err := TCPSendQueue(w.Edge, netip.MustParseAddrPort(cloud(2083))); err != nil || q != 0 {
		t.Fatalf("send queue after the restore: %d bytes, %v", q, err)
	}
	if !status(5, 2*time.Second) {
		t.Fatal("no UDP answer after restore")
	}

	pid := fr.Pid()
	if err := fr.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if fr.Pid() == pid {
		t.Fatal("restart reused the pid")
	}
	if !status(6, 2*time.Second) {
		t.Fatalf("no UDP answer after the restart\n%s", fr.LogTail(20))
	}

	// Close (also run by Cleanup, idempotently) leaves no namespace behind.
	if err := fr.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	for _, ns := range []string{w.Edge, w.Router, w.Cloud} {
		if _, err := os.Stat(filepath.Join(netnsDir, ns)); err == nil {
			t.Errorf("namespace %s left after Close", ns)
		}
	}
}

// dialRadSec opens a TLS connection to FreeRADIUS's RadSec listener from
// namespace ns.
func dialRadSec(t *testing.T, ns, addr string, certs *Certs) *tls.Conn {
	t.Helper()
	raw, err := DialTCPIn(ns, addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	caPEM, err := os.ReadFile(certs.CA)
	if err != nil || !pool.AppendCertsFromPEM(caPEM) {
		t.Fatalf("CA: %v", err)
	}
	cert, err := tls.LoadX509KeyPair(certs.ClientCert, certs.ClientKey)
	if err != nil {
		t.Fatal(err)
	}
	c := tls.Client(raw, &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, ServerName: "127.0.0.1"})
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := c.HandshakeContext(ctx); err != nil {
		raw.Close()
		t.Fatal(err)
	}
	return c
}

// TestInNetnsReturnsThread checks that no OS thread is left in another
// namespace after many InNetns calls, and that the sockets stay where they
// were made: a port bound in the edge namespace is free on the host.
func TestInNetnsReturnsThread(t *testing.T) {
	Require(t, "ip")
	w := StartWAN(t)
	var conns []*net.UDPConn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range 50 {
		c, err := ListenUDPIn(w.Edge, netip.MustParseAddrPort("127.0.0.1:0"))
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	host, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range tasks {
		ns, err := os.Readlink("/proc/self/task/" + task.Name() + "/ns/net")
		if err != nil {
			continue // the thread exited meanwhile
		}
		if ns != host {
			t.Errorf("thread %s is in %s, want the test's %s", task.Name(), ns, host)
		}
	}
	// The edge namespace's 127.0.0.1 is not the host's: the same port binds here.
	port := conns[0].LocalAddr().(*net.UDPAddr).Port
	h, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
	if err != nil {
		t.Fatalf("port %d of the edge namespace is taken on the host: %v", port, err)
	}
	h.Close()
}

// TestCleanStaleNetns: a namespace named after a dead process is deleted, one
// of a live process is kept.
func TestCleanStaleNetns(t *testing.T) {
	Require(t, "ip")
	ctx := t.Context()
	b, err := os.ReadFile("/proc/sys/kernel/pid_max")
	if err != nil {
		t.Fatal(err)
	}
	max, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	dead := netnsPrefix + strconv.Itoa(max+1) + "-test-edge" // no process can have this pid
	live := netnsPrefix + strconv.Itoa(os.Getpid()) + "-test-edge"
	for _, ns := range []string{dead, live} {
		if err := runIP(ctx, "netns", "add", ns); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if _, err := os.Stat(filepath.Join(netnsDir, ns)); err == nil {
				_ = runIP(context.Background(), "netns", "delete", ns)
			}
		})
	}
	if err := CleanStaleNetns(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(netnsDir, dead)); err == nil {
		t.Errorf("stale %s not deleted", dead)
	}
	if _, err := os.Stat(filepath.Join(netnsDir, live)); err != nil {
		t.Errorf("live %s deleted: %v", live, err)
	}
}

func TestStalePid(t *testing.T) {
	tests := []struct {
		name string
		pid  int
		ok   bool
	}{
		{"mxt-123-abcdef-edge", 123, true},
		{"mxt-0-x-edge", 0, false},
		{"mxt-abc-x-edge", 0, false},
		{"mxt-123", 0, false},
		{"other-123-x", 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pid, ok := stalePid(tc.name)
			if pid != tc.pid || ok != tc.ok {
				t.Errorf("stalePid(%q) = %d, %v; want %d, %v", tc.name, pid, ok, tc.pid, tc.ok)
			}
		})
	}
}

func TestParseProcNetTCP(t *testing.T) {
	// The kernel prints the address as a 32-bit number in host byte order.
	hexAddr := func(ap string) string {
		a := netip.MustParseAddrPort(ap)
		ip := a.Addr().As4()
		return fmt.Sprintf("%08X:%04X", binary.NativeEndian.Uint32(ip[:]), a.Port())
	}
	// A listener and an established connection with 0x5a (90) bytes unacknowledged.
	in := "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n" +
		"   0: " + hexAddr("127.0.0.1:2083") + " " + hexAddr("0.0.0.0:0") + " 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0\n" +
		"   1: " + hexAddr("198.18.0.2:40000") + " " + hexAddr("198.19.0.2:2083") + " 01 0000005A:00000000 01:00000014 00000000     0        0 2 1 0 20 4 30 10 -1\n"
	got, err := parseProcNetTCP(in)
	if err != nil {
		t.Fatal(err)
	}
	want := []TCPSocket{
		{Local: netip.MustParseAddrPort("127.0.0.1:2083"), Remote: netip.MustParseAddrPort("0.0.0.0:0"), State: 0x0a},
		{Local: netip.MustParseAddrPort("198.18.0.2:40000"), Remote: netip.MustParseAddrPort("198.19.0.2:2083"), State: TCPEstablished, SendQ: 90},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
	if _, err := parseProcNetTCP("header\n 0: zz:1 00000000:0000 01 0:0\n"); err == nil {
		t.Fatal("garbage parsed")
	}
}
