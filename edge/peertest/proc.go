package peertest

// Process handling shared by every peer.
//
// Quirks:
//   - Peers run with Setpgid so that Stop can signal the whole process group
//     (-pid): FreeRADIUS may fork helpers (exec module) and a stray child must
//     not outlive the test.
//   - /proc/PID/stat utime+stime already aggregate all threads of a process
//     (the thread group); that is what the benchmark wants. It has clock-tick
//     resolution (USER_HZ, 100 on Linux regardless of CONFIG_HZ), so measure
//     over seconds, not milliseconds. After the process has been reaped the
//     figure comes from the kernel's rusage instead.
//   - Pdeathsig=SIGKILL makes the kernel kill a peer when the test binary dies
//     (a panic or -timeout), so no FreeRADIUS outlives `go test`. It fires
//     when the OS thread that forked exits; Go only retires threads that a
//     goroutine locked and left locked, which nothing here does.
//   - Pause (SIGSTOP) is the cheap blackhole: the kernel keeps completing TCP
//     handshakes on the listening socket but nothing is answered and no RST
//     is sent. Stop sends SIGCONT after SIGTERM so a paused peer still exits.
//   - FreePort checks that the port is free for both TCP and UDP because the
//     FreeRADIUS and radsecproxy listeners of one test may use either.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// clockTicks is USER_HZ, the unit of /proc/PID/stat times. It is part of the
// Linux user-space ABI (100 on every architecture Go supports).
const clockTicks = 100

// stopGrace is how long Stop waits after SIGTERM before it sends SIGKILL.
const stopGrace = 5 * time.Second

// Errors returned by the harness.
var (
	// ErrNotReady reports that a peer did not become ready before its deadline.
	ErrNotReady = errors.New("peertest: peer not ready")
	// ErrExited reports that a peer exited while it was being started.
	ErrExited = errors.New("peertest: peer exited during start")
	// ErrMissingBinary reports that a peer's program is not installed.
	ErrMissingBinary = errors.New("peertest: program not installed")
)

// debianPackage names the Debian package that installs each peer program.
var debianPackage = map[string]string{
	"freeradius":  "freeradius",
	"radiusd":     "freeradius",
	"radclient":   "freeradius-utils",
	"radsecproxy": "radsecproxy",
	"eapol_test":  "eapoltest",
	"openssl":     "openssl",
	"ip":          "iproute2",
	"rsyslogd":    "rsyslog",
}

// LookPath finds a peer program on PATH or in the sbin directories, which are
// not on PATH for every user but hold freeradius and radsecproxy on Debian.
func LookPath(bin string) (string, error) {
	if p, err := exec.LookPath(bin); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/local/sbin", "/usr/bin", "/usr/local/bin"} {
		p := dir + "/" + bin
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", missingErr(bin)
}

// missingErr names the Debian package that installs bin.
func missingErr(bin string) error {
	pkg := debianPackage[bin]
	if pkg == "" {
		pkg = bin
	}
	return fmt.Errorf("%w: %s (install the Debian package %q: apt-get install -y --no-install-recommends %s)",
		ErrMissingBinary, bin, pkg, pkg)
}

// Require fails the test at once (never skips) when one of bins is missing,
// naming the Debian package to install.
func Require(tb testing.TB, bins ...string) {
	tb.Helper()
	var missing []string
	for _, b := range bins {
		if _, err := LookPath(b); err != nil {
			missing = append(missing, err.Error())
		}
	}
	if len(missing) > 0 {
		tb.Fatalf("real peers are required and missing:\n  %s", strings.Join(missing, "\n  "))
	}
}

// FreePort returns a loopback port that is currently free for both TCP and
// UDP. Another process may take it before it is used; the window is small.
func FreePort(tb testing.TB) int {
	tb.Helper()
	p, err := FreePortErr()
	if err != nil {
		tb.Fatalf("free port: %v", err)
	}
	return p
}

// FreePortErr is FreePort for code without a testing.TB.
func FreePortErr() (int, error) {
	var lastErr error
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("peertest: listen: %w", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		l.Close()
		if err != nil {
			lastErr = err
			continue
		}
		u.Close()
		return port, nil
	}
	return 0, fmt.Errorf("peertest: no port free for tcp and udp: %w", lastErr)
}

// process is one running peer.
type process struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	logFile *os.File
	// logStart is the log's size before this run: a restart in the same Dir
	// appends, and readiness must not match the previous run's lines.
	logStart int64

	done    chan struct{} // closed once cmd.Wait has returned
	waitErr error         // valid after done

	stopOnce sync.Once
	stopErr  error
	stopping chan struct{} // closed when Stop or Kill begins: exit is expected
}

// startProcess starts bin with args in its own process group, stdout and
// stderr appended to logPath.
func startProcess(name, logPath string, env []string, bin string, args ...string) (*process, error) {
	path, err := LookPath(bin)
	if err != nil {
		return nil, err
	}
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("peertest: %s log: %w", name, err)
	}
	var logStart int64
	if st, err := lf.Stat(); err == nil {
		logStart = st.Size()
	}
	cmd := exec.Command(path, args...)
	cmd.Stdout = lf
	cmd.Stderr = lf
	cmd.Stdin = nil
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("peertest: start %s: %w", name, err)
	}
	p := &process{
		name: name, cmd: cmd, logPath: logPath, logFile: lf, logStart: logStart,
		done: make(chan struct{}), stopping: make(chan struct{}),
	}
	go func() {
		p.waitErr = cmd.Wait()
		lf.Close()
		close(p.done)
	}()
	return p, nil
}

// Pid is the peer's process id (also its process group id).
func (p *process) Pid() int { return p.cmd.Process.Pid }

// exited reports whether the process has ended.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// signalGroup sends sig to the whole process group.
func (p *process) signalGroup(sig syscall.Signal) error {
	err := syscall.Kill(-p.cmd.Process.Pid, sig)
	if errors.Is(err, syscall.ESRCH) {
		return nil
	}
	return err
}

// stop sends SIGTERM to the group, waits up to stopGrace, then SIGKILL.
// Safe to call more than once and after kill.
func (p *process) stop() error {
	p.stopOnce.Do(func() {
		close(p.stopping)
		if !p.exited() {
			_ = p.signalGroup(syscall.SIGTERM)
			// A paused peer (Pause) only acts on SIGTERM once continued.
			_ = p.signalGroup(syscall.SIGCONT)
			select {
			case <-p.done:
			case <-time.After(stopGrace):
				_ = p.signalGroup(syscall.SIGKILL)
				<-p.done
				p.stopErr = fmt.Errorf("peertest: %s ignored SIGTERM for %v, killed", p.name, stopGrace)
			}
		}
		// Reap anything left in the group (helpers forked by the peer).
		_ = p.signalGroup(syscall.SIGKILL)
	})
	return p.stopErr
}

// kill sends SIGKILL to the group and waits for the process to be reaped, as
// a crashed or powered-off upstream would disappear.
func (p *process) kill() error {
	p.stopOnce.Do(func() {
		close(p.stopping)
		err := p.signalGroup(syscall.SIGKILL)
		<-p.done
		p.stopErr = err
	})
	return p.stopErr
}

// pause stops the process group with SIGSTOP: sockets stay open and the
// kernel still completes TCP handshakes, but nothing is read or answered —
// a blackholed peer.
func (p *process) pause() error { return p.signalGroup(syscall.SIGSTOP) }

// resume continues a paused process group.
func (p *process) resume() error { return p.signalGroup(syscall.SIGCONT) }

// cpuTime returns user+system CPU time of the process and all its threads.
func (p *process) cpuTime() (time.Duration, error) {
	if p.exited() {
		st := p.cmd.ProcessState
		if st == nil {
			return 0, fmt.Errorf("peertest: %s: no process state", p.name)
		}
		return st.UserTime() + st.SystemTime(), nil
	}
	return procCPUTime(p.cmd.Process.Pid)
}

// procCPUTime reads utime+stime of pid (all threads) from /proc/PID/stat.
func procCPUTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, fmt.Errorf("peertest: cpu time: %w", err)
	}
	return parseProcStatCPU(string(b))
}

// parseProcStatCPU extracts utime+stime from a /proc/PID/stat line. The
// command name (field 2) is in parentheses and may contain spaces or ')', so
// fields are counted from the last ')' (proc(5)).
func parseProcStatCPU(s string) (time.Duration, error) {
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, errors.New("peertest: cpu time: malformed stat")
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); utime is field 14, stime field 15.
	const utimeIdx, stimeIdx = 14 - 3, 15 - 3
	if len(f) <= stimeIdx {
		return 0, errors.New("peertest: cpu time: short stat")
	}
	ut, err1 := strconv.ParseUint(f[utimeIdx], 10, 64)
	st, err2 := strconv.ParseUint(f[stimeIdx], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("peertest: cpu time: %w", err)
	}
	const maxTicks = 1 << 40 // ~350 years of CPU: anything above is garbage
	if ut > maxTicks || st > maxTicks {
		return 0, errors.New("peertest: cpu time: implausible stat")
	}
	return time.Duration(ut+st) * (time.Second / clockTicks), nil
}

// logTail returns the last n lines of the peer's log.
func (p *process) logTail(n int) string { return fileTail(p.logPath, n) }

// fileTail returns the last n lines of a file (or an error note).
func fileTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if n > 0 && len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// logContains reports whether this run's part of the peer's log contains s.
func (p *process) logContains(s string) bool {
	f, err := os.Open(p.logPath)
	if err != nil {
		return false
	}
	defer f.Close()
	if _, err := f.Seek(p.logStart, io.SeekStart); err != nil {
		return false
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		if strings.Contains(sc.Text(), s) {
			return true
		}
	}
	return false
}

// readyCheck reports nil once the peer is ready.
type readyCheck func() error

// waitReady polls check until it succeeds, the process exits, ctx ends or
// timeout passes.
func (p *process) waitReady(ctx context.Context, timeout time.Duration, check readyCheck) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		if last = check(); last == nil {
			// The peer may have failed right after printing its ready line
			// (e.g. a second listener that cannot bind).
			if p.exited() {
				return fmt.Errorf("%w: %s: %v", ErrExited, p.name, p.waitErr)
			}
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("%w: %s: %v", ErrExited, p.name, p.waitErr)
		case <-ctx.Done():
			return fmt.Errorf("peertest: %s start: %w", p.name, ctx.Err())
		case <-deadline.C:
			return fmt.Errorf("%w: %s after %v: %v", ErrNotReady, p.name, timeout, last)
		case <-tick.C:
		}
	}
}

// tcpAccepting is a readyCheck that succeeds when addr accepts TCP.
func tcpAccepting(addr string) readyCheck {
	return func() error {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err != nil {
			return err
		}
		c.Close()
		return nil
	}
}

// allReady combines checks.
func allReady(checks ...readyCheck) readyCheck {
	return func() error {
		for _, c := range checks {
			if err := c(); err != nil {
				return err
			}
		}
		return nil
	}
}

// startError decorates a start failure with the peer's log tail.
func startError(p *process, err error) error {
	return fmt.Errorf("%w\n--- %s log tail (%s) ---\n%s", err, p.name, p.logPath, p.logTail(40))
}

// checkAddr validates a listener address: an IP literal and a port.
func checkAddr(what, addr string) error {
	host, _, err := splitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if net.ParseIP(host) == nil {
		return fmt.Errorf("peertest: %s %q: host must be an IP address", what, addr)
	}
	return nil
}

// splitHostPort splits "host:port" into host and a numeric port.
func splitHostPort(addr string) (string, int, error) {
	h, ps, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("peertest: address %q: %w", addr, err)
	}
	port, err := strconv.Atoi(ps)
	if err != nil || port <= 0 || port > 65535 {
		return "", 0, fmt.Errorf("peertest: address %q: bad port", addr)
	}
	return h, port, nil
}

// Client is a RADIUS client (NAS) allowed to talk to a peer: an IP address
// or CIDR and its shared secret.
type Client struct {
	Addr   string // "127.0.0.1", "::1" or a CIDR
	Secret string
}

// startForTest starts a peer for a test: the binary must be installed (the test fails, naming the
// package, otherwise), a failed start fails the test, and the peer is stopped when the test ends.
func startForTest[P interface{ Stop() error }](tb testing.TB, bin string, start func(context.Context) (P, error)) P {
	tb.Helper()
	Require(tb, bin)
	p, err := start(tb.Context())
	if err != nil {
		tb.Fatalf("start %s: %v", bin, err)
	}
	tb.Cleanup(func() {
		if err := p.Stop(); err != nil {
			tb.Errorf("stop %s: %v", bin, err)
		}
	})
	return p
}
