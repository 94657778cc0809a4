package peertest

// A real WAN in network namespaces: the edge, a router and the cloud, joined
// by veth pairs, so that a WAN cut is a kernel blackhole (packets vanish, no
// RST, TCP send buffers fill) rather than a relay that stops answering.
//
//	edge ns                 router ns                     cloud ns
//	lo 127.0.0.1            ip_forward=1                  lo
//	wan0 198.18.0.2/24 ---- edge0 198.18.0.1/24
//	                        cloud0 198.19.0.1/24 -------- lan0 198.19.0.2/24
//
// Quirks:
//   - Addresses come from 198.18.0.0/15, the benchmarking range (RFC 2544
//     §C.2.2, RFC 5735 §4), and exist only inside the namespaces made here; the
//     host's own interfaces and routes are never touched. Since every run has
//     its own namespaces, the same addresses and fixed ports can be reused by
//     concurrent runs.
//   - Namespace names are "mxt-<pid>-<random>-<role>": the pid lets a later run
//     delete what a crashed one (kill -9, a panic in cleanup) left behind,
//     because a namespace persists while its bind mount under /var/run/netns
//     exists, even with no process in it.
//   - Interfaces are created inside the namespaces (`ip -n NS link add ...
//     peer ... netns OTHER`), so their names only have to be unique per
//     namespace and never appear in the host's namespace.
//   - Cut adds blackhole host routes for both ends in the router (a /32 wins
//     over the connected /24 by longest-prefix match, RFC 1812 §5.2.4.3): the
//     router discards forwarded packets silently, with no ICMP, like a dead
//     WAN link. Restore deletes them; connections whose segments were only
//     lost resume by TCP retransmission.
//   - A socket stays in the namespace it was created in, so a test process can
//     act as a NAS inside the edge namespace: InNetns switches one locked OS
//     thread with setns(2), creates the socket, and switches back.
//     Programs run there through `ip netns exec`, which execs the program
//     (the pid is the program's own), in a private mount namespace.

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// netnsDir is where `ip netns add` mounts named namespaces (ip-netns(8)).
const netnsDir = "/var/run/netns"

// netnsPrefix starts the name of every namespace this harness creates.
const netnsPrefix = "mxt-"

// Addresses of the WAN topology (198.18.0.0/15, RFC 2544 §C.2.2).
var (
	// WANEdgeAddr is the edge's address on its WAN link.
	WANEdgeAddr = netip.MustParseAddr("198.18.0.2")
	// WANEdgeGateway is the router's address on the edge side.
	WANEdgeGateway = netip.MustParseAddr("198.18.0.1")
	// WANCloudAddr is the cloud's address (where the RadSec upstream listens).
	WANCloudAddr = netip.MustParseAddr("198.19.0.2")
	// WANCloudGateway is the router's address on the cloud side.
	WANCloudGateway = netip.MustParseAddr("198.19.0.1")
)

// ErrNetns reports that a namespace operation failed.
var ErrNetns = errors.New("peertest: netns")

// WAN is an edge, a router and a cloud network namespace joined by veth
// pairs. The zero value is not usable; use StartWAN or StartWANContext.
type WAN struct {
	// Edge, Router and Cloud are the namespace names (for `ip netns exec`).
	Edge, Router, Cloud string
	cut                 bool
}

// StartWAN builds the topology, fails tb when it cannot, and removes it when
// the test ends.
func StartWAN(tb testing.TB) *WAN {
	tb.Helper()
	Require(tb, "ip")
	w, err := StartWANContext(tb.Context())
	if err != nil {
		tb.Fatalf("wan: %v", err)
	}
	tb.Cleanup(func() {
		if err := w.Close(); err != nil {
			tb.Errorf("wan: %v", err)
		}
	})
	return w
}

// StartWANContext removes namespaces left by earlier runs that have died, then builds
// the topology. The caller must call Close.
func StartWANContext(ctx context.Context) (*WAN, error) {
	if err := CleanStaleNetns(ctx); err != nil {
		return nil, err
	}
	var rnd [3]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNetns, err)
	}
	base := netnsPrefix + strconv.Itoa(os.Getpid()) + "-" + hex.EncodeToString(rnd[:]) + "-"
	w := &WAN{Edge: base + "edge", Router: base + "rtr", Cloud: base + "cloud"}
	steps := [][]string{
		{"netns", "add", w.Edge},
		{"netns", "add", w.Router},
		{"netns", "add", w.Cloud},
		{"-n", w.Edge, "link", "set", "lo", "up"},
		{"-n", w.Router, "link", "set", "lo", "up"},
		{"-n", w.Cloud, "link", "set", "lo", "up"},
		{"-n", w.Edge, "link", "add", "wan0", "type", "veth", "peer", "name", "edge0", "netns", w.Router},
		{"-n", w.Cloud, "link", "add", "lan0", "type", "veth", "peer", "name", "cloud0", "netns", w.Router},
		{"-n", w.Edge, "addr", "add", WANEdgeAddr.String() + "/24", "dev", "wan0"},
		{"-n", w.Router, "addr", "add", WANEdgeGateway.String() + "/24", "dev", "edge0"},
		{"-n", w.Router, "addr", "add", WANCloudGateway.String() + "/24", "dev", "cloud0"},
		{"-n", w.Cloud, "addr", "add", WANCloudAddr.String() + "/24", "dev", "lan0"},
		{"-n", w.Edge, "link", "set", "wan0", "up"},
		{"-n", w.Router, "link", "set", "edge0", "up"},
		{"-n", w.Router, "link", "set", "cloud0", "up"},
		{"-n", w.Cloud, "link", "set", "lan0", "up"},
		{"-n", w.Edge, "route", "add", "default", "via", WANEdgeGateway.String()},
		{"-n", w.Cloud, "route", "add", "default", "via", WANCloudGateway.String()},
		// Forwarding only in the router's namespace; the host's setting is untouched.
		{"netns", "exec", w.Router, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1"},
	}
	for _, s := range steps {
		if err := runIP(ctx, s...); err != nil {
			return nil, errors.Join(err, w.Close())
		}
	}
	return w, nil
}

// blackholes are the routes Cut adds in the router: one per direction.
func blackholes() []string {
	return []string{WANCloudAddr.String() + "/32", WANEdgeAddr.String() + "/32"}
}

// Cut blackholes the WAN in both directions: from now on the router drops
// every packet between the edge and the cloud without a word.
func (w *WAN) Cut(ctx context.Context) error {
	if w.cut {
		return nil
	}
	for _, p := range blackholes() {
		if err := runIP(ctx, "-n", w.Router, "route", "add", "blackhole", p); err != nil {
			return err
		}
	}
	w.cut = true
	return nil
}

// Restore removes the blackhole routes Cut added.
func (w *WAN) Restore(ctx context.Context) error {
	if !w.cut {
		return nil
	}
	for _, p := range blackholes() {
		if err := runIP(ctx, "-n", w.Router, "route", "del", "blackhole", p); err != nil {
			return err
		}
	}
	w.cut = false
	return nil
}

// Close deletes the three namespaces (and with them the veth pairs). Processes
// still running in them keep their namespace until they exit; the tests stop
// theirs first.
func (w *WAN) Close() error {
	var errs []error
	for _, ns := range []string{w.Edge, w.Router, w.Cloud} {
		if _, err := os.Stat(filepath.Join(netnsDir, ns)); err != nil {
			continue
		}
		// Bounded on its own: Close also runs after the test's context ended.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		errs = append(errs, runIP(ctx, "netns", "delete", ns))
		cancel()
	}
	return errors.Join(errs...)
}

// CleanStaleNetns deletes the namespaces of earlier runs whose process is
// gone (names "mxt-<pid>-…").
func CleanStaleNetns(ctx context.Context) error {
	ents, err := os.ReadDir(netnsDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%w: %v", ErrNetns, err)
	}
	var errs []error
	for _, e := range ents {
		pid, ok := stalePid(e.Name())
		if !ok {
			continue
		}
		if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); err == nil {
			continue // that run is alive (or its pid was reused: leave it)
		}
		errs = append(errs, runIP(ctx, "netns", "delete", e.Name()))
	}
	return errors.Join(errs...)
}

// stalePid extracts the pid from a harness namespace name.
func stalePid(name string) (int, bool) {
	rest, ok := strings.CutPrefix(name, netnsPrefix)
	if !ok {
		return 0, false
	}
	p, _, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, false
	}
	pid, err := strconv.Atoi(p)
	if err != nil || pid <= 0 {
		return 0, false
	}
	return pid, true
}

// runIP runs ip(8) with args.
func runIP(ctx context.Context, args ...string) error {
	path, err := LookPath("ip")
	if err != nil {
		return err
	}
	out, err := exec.CommandContext(ctx, path, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%w: ip %s: %v: %s", ErrNetns, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// InNetns runs fn on an OS thread that has joined namespace ns, then returns
// the thread to the caller's namespace. Sockets fn creates stay in ns. fn
// must not start goroutines that create sockets, nor resolve names.
func InNetns(ns string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// Without a way back the thread must not run anything else: leaving it
		// locked when this goroutine returns makes the runtime terminate it.
		orig, err := os.Open("/proc/self/task/" + strconv.Itoa(unix.Gettid()) + "/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("%w: %v", ErrNetns, err)
			return
		}
		defer orig.Close()
		target, err := os.Open(filepath.Join(netnsDir, ns))
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("%w: %v", ErrNetns, err)
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("%w: setns %s: %v", ErrNetns, ns, err)
			return
		}
		ferr := fn()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("%w: setns back: %v", ErrNetns, err))
			return // thread stays locked and dies with this goroutine
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// ListenUDPIn opens a UDP socket bound to addr inside namespace ns.
func ListenUDPIn(ns string, addr netip.AddrPort) (*net.UDPConn, error) {
	var c *net.UDPConn
	err := InNetns(ns, func() error {
		var err error
		c, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(addr))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("peertest: listen udp in %s: %w", ns, err)
	}
	return c, nil
}

// DialTCPIn connects to addr (an IP literal and port) from namespace ns.
func DialTCPIn(ns, addr string, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	err := InNetns(ns, func() error {
		// The socket and the connect(2) happen on this thread; the poller
		// only waits for completion.
		var err error
		c, err = net.DialTimeout("tcp", addr, timeout)
		return err
	})
	return c, err
}

// tcpAcceptingIn is tcpAccepting from inside namespace ns.
func tcpAcceptingIn(ns, addr string) readyCheck {
	return func() error {
		c, err := DialTCPIn(ns, addr, 200*time.Millisecond)
		if err != nil {
			return err
		}
		c.Close()
		return nil
	}
}

// netnsCommand wraps bin and args in `ip netns exec ns`. ip execs the
// program, so the process is bin itself.
func netnsCommand(ns, bin string, args []string) (string, []string, error) {
	path, err := LookPath(bin)
	if err != nil {
		return "", nil, err
	}
	return "ip", append([]string{"netns", "exec", ns, path}, args...), nil
}

// Process is a program the harness started, possibly in a namespace: its
// own process group, output appended to a log file, killed with the test
// binary (Pdeathsig).
type Process struct{ p *process }

// ProcessOptions configures StartProcess.
type ProcessOptions struct {
	// Name labels errors and the log.
	Name string
	// NetNS, when set, runs the program in that namespace (`ip netns exec`).
	NetNS string
	// LogPath receives stdout and stderr (appended).
	LogPath string
	// Bin is the program (a path, or a name looked up like LookPath).
	Bin  string
	Args []string
	// Env is added to the test's environment.
	Env []string
}

// StartProcess starts a program; the caller must Stop or Kill it.
func StartProcess(o ProcessOptions) (*Process, error) {
	bin, args := o.Bin, o.Args
	if o.NetNS != "" {
		var err error
		if bin, args, err = netnsCommand(o.NetNS, o.Bin, o.Args); err != nil {
			return nil, err
		}
	}
	if o.Name == "" {
		o.Name = filepath.Base(o.Bin)
	}
	p, err := startProcess(o.Name, o.LogPath, o.Env, bin, args...)
	if err != nil {
		return nil, err
	}
	return &Process{p: p}, nil
}

// Pid is the program's process id.
func (p *Process) Pid() int { return p.p.Pid() }

// Stop sends SIGTERM, then SIGKILL after 5 s, and waits for the exit.
func (p *Process) Stop() error { return p.p.stop() }

// Kill sends SIGKILL (kill -9: nothing is flushed, no handler runs) and
// waits for the exit.
func (p *Process) Kill() error { return p.p.kill() }

// Exited reports whether the program has ended.
func (p *Process) Exited() bool { return p.p.exited() }

// LogTail returns the last n lines of the program's log.
func (p *Process) LogTail(n int) string { return p.p.logTail(n) }

// WaitLog waits until this run's part of the log contains s, the program
// exits, ctx ends or timeout passes.
func (p *Process) WaitLog(ctx context.Context, s string, timeout time.Duration) error {
	err := p.p.waitReady(ctx, timeout, func() error {
		if !p.p.logContains(s) {
			return fmt.Errorf("no %q in log yet", s)
		}
		return nil
	})
	if err != nil {
		return startError(p.p, err)
	}
	return nil
}

// TCPSocket is one IPv4 TCP socket as the kernel lists it in /proc/net/tcp (proc(5)).
type TCPSocket struct {
	Local, Remote netip.AddrPort
	// State is the kernel's TCP state number (1 established, 4 FIN-WAIT-1, ...).
	State int
	// SendQ is the data not yet acknowledged by the peer, in bytes (tx_queue).
	SendQ int
}

// TCPEstablished is TCPSocket.State for an established connection.
const TCPEstablished = 1

// TCPSockets lists the IPv4 TCP sockets of namespace ns, including sockets whose process has closed
// or lost them (orphans). It reads /proc/thread-self/net/tcp from a thread in ns: no program runs.
func TCPSockets(ns string) ([]TCPSocket, error) {
	var b []byte
	err := InNetns(ns, func() error {
		var err error
		b, err = os.ReadFile("/proc/thread-self/net/tcp")
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("%w: tcp sockets of %s: %v", ErrNetns, ns, err)
	}
	return parseProcNetTCP(string(b))
}

// parseProcNetTCP parses /proc/net/tcp: after a header line, "sl local rem st tx:rx ...", addresses
// as the 32-bit address in host byte order and the port, both in hex.
func parseProcNetTCP(s string) ([]TCPSocket, error) {
	var out []TCPSocket
	lines := strings.Split(strings.TrimSpace(s), "\n")
	for _, line := range lines[min(1, len(lines)):] {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		local, err1 := parseProcAddr(f[1])
		remote, err2 := parseProcAddr(f[2])
		st, err3 := strconv.ParseUint(f[3], 16, 8)
		txs, _, _ := strings.Cut(f[4], ":")
		tx, err4 := strconv.ParseUint(txs, 16, 32)
		if err := errors.Join(err1, err2, err3, err4); err != nil {
			return nil, fmt.Errorf("%w: /proc/net/tcp line %q: %v", ErrNetns, line, err)
		}
		out = append(out, TCPSocket{Local: local, Remote: remote, State: int(st), SendQ: int(tx)})
	}
	return out, nil
}

// parseProcAddr parses "0100007F:0CEA" (127.0.0.1:3306 on a little-endian machine).
func parseProcAddr(s string) (netip.AddrPort, error) {
	a, p, ok := strings.Cut(s, ":")
	if !ok || len(a) != 8 {
		return netip.AddrPort{}, fmt.Errorf("bad address %q", s)
	}
	v, err := strconv.ParseUint(a, 16, 32)
	if err != nil {
		return netip.AddrPort{}, err
	}
	port, err := strconv.ParseUint(p, 16, 16)
	if err != nil {
		return netip.AddrPort{}, err
	}
	var ip [4]byte
	binary.NativeEndian.PutUint32(ip[:], uint32(v))
	return netip.AddrPortFrom(netip.AddrFrom4(ip), uint16(port)), nil
}

// TCPSendQueue sums the send queues of the TCP sockets in namespace ns connected to dst, orphans
// included: the kernel keeps retransmitting an orphaned socket's data (tcp_orphan_retries), so a
// connection closed without discarding its queue (no SO_LINGER of 0), or whose process was killed,
// while its link was blackholed can still deliver that data seconds after the link returns.
func TCPSendQueue(ns string, dst netip.AddrPort) (bytes, sockets int, err error) {
	socks, err := TCPSockets(ns)
	if err != nil {
		return 0, 0, err
	}
	for _, s := range socks {
		if s.Remote == dst {
			bytes += s.SendQ
			sockets++
		}
	}
	return bytes, sockets, nil
}
