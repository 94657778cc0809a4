package survival

import (
	"bufio"
	"context"
	crand "crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"mxedge/bench"
	"mxedge/edge/peertest"
	"mxedge/pki"
	"mxedge/pki/pkitest"
	"mxedge/proxy/packet"
)

// Knobs of BenchmarkEAPTLSEapol.
const (
	eapolRunsEnv = "MXEDGE_SURVIVAL_EAPOL_RUNS"  // authentications per eapol_test process, default 100
	eapolProcEnv = "MXEDGE_SURVIVAL_EAPOL_PROCS" // eapol_test processes in parallel, default 4
	eapolKeysEnv = "MXEDGE_SURVIVAL_EAPOL_KEYS"  // certificate key types, default "ecdsa-p256,rsa-2048"
	// eapolBaseEnv names a second mxedge binary (e.g. a reference build of main) measured in the
	// same run as "mxedge-base", so a change is judged against its base under the same load.
	eapolBaseEnv = "MXEDGE_SURVIVAL_BASE_BIN"
)

// eapolRow is one server, key type and TLS version measured with eapol_test.
type eapolRow struct {
	server, key, tls string
	ok, failed       int
	rounds           int // RADIUS round trips eapol_test made (Access-Requests sent)
	cpu              CPU
	idle             float64 // the server's CPU when idle, in µs per second, measured before the runs
	wall             time.Duration
	// floor is the server's CPU per EAP-Response/Identity answered with the EAP-TLS Start, sent at
	// this row's rate of RADIUS round trips: the per-packet work under every round trip
	// (floorRun). 0: not measured.
	floor float64
	// switches is how many times the server's threads went off a CPU during the row (voluntary
	// and involuntary context switches, /proc/PID/task/*/status): each is a thread put to sleep and
	// woken again, the scheduler's share of a round trip at a low packet rate.
	switches int64
	// echo is what a Go UDP echo server in a process of its own (echoServer) costs per round trip
	// at this row's rate, in µs, and echoSwitches its context switches per round trip: the
	// runtime's and the kernel's share of floor, under any Go RADIUS server. 0: not measured.
	echo, echoSwitches float64
}

// perAuth is the server's CPU per authentication in µs.
func (r eapolRow) perAuth() float64 { return PerOp(r.cpu.Server, r.ok) }

// idlePerAuth is what the server spends per authentication while idle (timers, housekeeping),
// at this row's rate: part of perAuth that does not depend on the EAP-TLS work.
func (r eapolRow) idlePerAuth() float64 {
	if r.ok == 0 {
		return 0
	}
	return r.idle * r.wall.Seconds() / float64(r.ok)
}

var (
	mppeOK      = regexp.MustCompile(`MPPE keys OK: (\d+)\s+mismatch: 0`)
	radiusSends = regexp.MustCompile(`(?m)^Sending RADIUS message to authentication server`)
)

// eapolTargets are the targets in docs/performance.md per key type: mxedge's CPU per authentication (µs, 0: none)
// and FreeRADIUS's over mxedge's.
var eapolTargets = map[pki.KeyType]struct {
	maxMicros, minRatio float64
}{
	pki.KeyECDSAP256: {600, 4},
	pki.KeyRSA2048:   {0, 1.5},
}

// BenchmarkEAPTLSEapol: full EAP-TLS authentications by a real supplicant, eapol_test
// (wpa_supplicant 2.10 on OpenSSL 3.0), against mxedge's local EAP-TLS server and FreeRADIUS 3.2
// with the same certificates — per key type (ECDSA P-256 and RSA-2048: CA, server and client
// certificates of that type, from pkitest), TLS 1.2 and 1.3 — one server after the other: P
// processes in parallel, each authenticating N times (-r N-1; neither server resumes sessions:
// mxedge sends no session ticket, FreeRADIUS's cache is off). An authentication counts when
// eapol_test's MPPE keys match the Access-Accept's. The server's CPU (whole process, /proc) per
// authentication is the figure; the ratio is FreeRADIUS's over mxedge's in the same run. Each
// server's idle CPU is measured first, so the table can say how much of a row is housekeeping
// at that row's rate rather than EAP-TLS. With MXEDGE_SURVIVAL_BASE_BIN a second mxedge binary
// runs as "mxedge-base" in the same run, and the table gives base/new.
//
//	make build && go test -run '^$' -bench EAPTLSEapol -benchtime 1x ./bench/survival/
func BenchmarkEAPTLSEapol(b *testing.B) {
	peertest.Require(b, "eapol_test")
	runs := envInts(b, eapolRunsEnv, []int{100}, 1, 10_000)[0]
	procs := envInts(b, eapolProcEnv, []int{4}, 1, 64)[0]
	keys := eapolKeys(b)
	base := os.Getenv(eapolBaseEnv)
	var rows []eapolRow
	defer func() {
		if len(rows) > 0 {
			fmt.Printf("\nBenchmarkEAPTLSEapol: eapol_test, %d processes × %d full authentications per server, key type and TLS version; %d CPUs, load average %s\n",
				procs, runs, runtime.NumCPU(), bench.LoadAvg())
			writeEapolTable(os.Stdout, rows)
		}
	}()
	for _, kt := range keys {
		lab, err := pkitest.New(b.TempDir(), kt)
		if err != nil {
			b.Fatal(err)
		}
		servers := startEAPServers(b, lab, false)
		if base != "" {
			p, addr, _ := startEdgeWith(b, lab, 0, true, edgeVariant{bin: base})
			servers = append(servers, eapServer{name: "mxedge-base", addr: addr, cpu: p.CPUTime, pid: p.Pid,
				logs: func() string { return p.LogTail(20) }})
		}
		idle := idleCPU(b, servers, 2*time.Second)
		for i, tv := range []string{"1.2", "1.3"} {
			b.Run(string(kt)+"/tls"+tv, func(b *testing.B) {
				order := slices.Clone(servers)
				if i%2 == 1 { // alternate, so drift on the shared machine does not favour one server
					slices.Reverse(order)
				}
				got := map[string]eapolRow{} // per server, every repetition summed
				for b.Loop() {
					for _, s := range order {
						r := eapolRun(b, lab, s, string(kt), tv, procs, runs)
						r.idle = idle[s.name]
						if r.ok > 0 && r.rounds > 0 {
							rate := float64(r.rounds) / r.wall.Seconds()
							r.floor = floorRun(b, s, rate, floorWindow)
							if s.name == "mxedge" {
								r.echo, r.echoSwitches = echoFloor(b, rate, floorWindow)
							}
						}
						rows = append(rows, r)
						g := got[s.name]
						g.ok += r.ok
						g.cpu.Server += r.cpu.Server
						got[s.name] = g
					}
				}
				mx, fr := got["mxedge"].perAuth(), got["freeradius"].perAuth()
				b.ReportMetric(0, "ns/op")
				b.ReportMetric(mx, "mxedge-µs/auth")
				b.ReportMetric(fr, "freeradius-µs/auth")
				if mx > 0 {
					b.ReportMetric(fr/mx, "freeradius/mxedge")
				}
				if r, ok := got["mxedge-base"]; ok && mx > 0 {
					b.ReportMetric(r.perAuth()/mx, "base/mxedge")
				}
			})
		}
	}
}

// eapolKeys reads MXEDGE_SURVIVAL_EAPOL_KEYS.
func eapolKeys(tb testing.TB) []pki.KeyType {
	tb.Helper()
	s := os.Getenv(eapolKeysEnv)
	if s == "" {
		return []pki.KeyType{pki.KeyECDSAP256, pki.KeyRSA2048}
	}
	var out []pki.KeyType
	for _, f := range strings.Split(s, ",") {
		kt := pki.KeyType(strings.TrimSpace(f))
		if err := kt.Validate(); err != nil {
			tb.Fatalf("%s=%q: %v", eapolKeysEnv, s, err)
		}
		out = append(out, kt)
	}
	return out
}

// floorWindow is how long floorRun sends.
const floorWindow = 3 * time.Second

// floorRun sends, at rate per second for d, the first packet of an EAP conversation: an
// EAP-Response/Identity with Message-Authenticator (RFC 3579 §3.2), always from the same station,
// which every EAP-TLS server answers at once with an Access-Challenge carrying the EAP-TLS Start
// (RFC 5216 §2.1.1) and no TLS work, replacing the previous one's conversation. It returns the
// server's CPU per answer in µs: receiving, validating and answering one RADIUS packet at the rate
// eapol_test drives it, the floor under every round trip of a real conversation.
func floorRun(tb testing.TB, s eapServer, rate float64, d time.Duration) float64 {
	tb.Helper()
	raddr, err := net.ResolveUDPAddr("udp", s.addr)
	if err != nil {
		tb.Fatal(err)
	}
	conn, err := net.DialUDP("udp", nil, raddr)
	if err != nil {
		tb.Fatal(err)
	}
	defer conn.Close()
	secret := []byte(nasSecret)
	buf := make([]byte, packet.MaxLen)
	w, err := StartWindow(s.cpu)
	if err != nil {
		tb.Fatal(err)
	}
	answered := 0
	paced(rate, d, func(i int) {
		var auth [packet.AuthLen]byte
		_, _ = crand.Read(auth[:])
		id := uint8(i)
		req := identityRequest(tb, id, auth[:])
		if _, err := conn.Write(req); err != nil {
			tb.Fatal(err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(time.Second))
		for {
			n, err := conn.Read(buf)
			if err != nil {
				break // unanswered: counted by its absence
			}
			resp, err := packet.Parse(buf[:n])
			if err != nil || resp.ID() != id || !packet.CheckResponseAuthenticator(resp, auth[:], secret) {
				continue
			}
			if resp.Code() == packet.CodeAccessChallenge {
				answered++
			}
			break
		}
	})
	cpu, err := w.Stop()
	if err != nil {
		tb.Fatal(err)
	}
	if answered == 0 {
		tb.Errorf("%s: no Access-Challenge to an EAP-Response/Identity\n%s", s.name, s.logs())
		return 0
	}
	return PerOp(cpu.Server, answered)
}

// paced calls send(i) for i = 0, 1, … at rate per second for d, each at its due time from the
// start (a late call does not move the later ones).
func paced(rate float64, d time.Duration, send func(i int)) {
	every := time.Duration(float64(time.Second) / rate)
	t0 := time.Now()
	for i := 0; time.Since(t0) < d; i++ {
		if wait := time.Until(t0.Add(time.Duration(i) * every)); wait > 0 {
			time.Sleep(wait)
		}
		send(i)
	}
}

// identityRequest is the EAP-Response/Identity of floorRun and echoFloor: Message-Authenticator
// (RFC 3579 §3.2), always the same station and identity (RFC 3748 §5.1).
func identityRequest(tb testing.TB, id uint8, auth []byte) packet.Packet {
	b := packet.New(nil, packet.CodeAccessRequest, id, auth)
	b.AddMA()
	b.AddString(packet.AttrUserName, "anonymous")
	b.AddString(packet.AttrCallingStationID, "02-00-00-bb-00-01")
	b.Add(packet.AttrEAPMessage, append([]byte{2, id, 0, 5 + 9, 1}, "anonymous"...))
	req, err := b.Finish([]byte(nasSecret), nil)
	if err != nil {
		tb.Fatal(err)
	}
	return req
}

// echoServerEnv, when set, makes the test binary an echo server (TestMain): echoFloor runs it as a
// process of its own, like the servers measured.
const echoServerEnv = "MXEDGE_SURVIVAL_ECHO_SERVER"

// TestMain runs the package's tests and benchmarks, or the echo server of echoFloor.
func TestMain(m *testing.M) {
	if os.Getenv(echoServerEnv) != "" {
		echoServer()
		return
	}
	os.Exit(m.Run())
}

// echoServer answers every datagram on a loopback port with itself, one goroutine reading and
// writing through the standard library, until its standard input closes. It prints its address.
func echoServer() {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(c.LocalAddr())
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}()
	buf := make([]byte, packet.MaxLen)
	for {
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			os.Exit(1)
		}
		_, _ = c.WriteToUDPAddrPort(buf[:n], from)
	}
}

// echoFloor starts echoServer and sends it floorRun's EAP-Response/Identity at rate per second for
// d. It returns the echo process's CPU per round trip in µs (its threads' run time,
// /proc/PID/task/*/schedstat) and its context switches per round trip: what receiving and
// answering one datagram costs a Go process at this rate before any RADIUS work.
func echoFloor(tb testing.TB, rate float64, d time.Duration) (float64, float64) {
	tb.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), echoServerEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatalf("survival: echo server: %v", err)
	}
	defer func() {
		_ = stdin.Close()
		_ = cmd.Wait()
	}()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		tb.Fatalf("survival: echo server: %v", err)
	}
	conn, err := net.Dial("udp", strings.TrimSpace(line))
	if err != nil {
		tb.Fatal(err)
	}
	defer conn.Close()
	req := identityRequest(tb, 1, make([]byte, packet.AuthLen))
	pid := cmd.Process.Pid
	c0, err1 := taskRunTime(pid)
	s0, err2 := taskSwitches(pid)
	if err := errors.Join(err1, err2); err != nil {
		tb.Fatal(err)
	}
	buf := make([]byte, packet.MaxLen)
	echoed := 0
	paced(rate, d, func(int) {
		if _, err := conn.Write(req); err != nil {
			tb.Fatal(err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(time.Second))
		if n, err := conn.Read(buf); err == nil && n == len(req) {
			echoed++
		}
	})
	c1, err1 := taskRunTime(pid)
	s1, err2 := taskSwitches(pid)
	if err := errors.Join(err1, err2); err != nil {
		tb.Fatal(err)
	}
	if echoed == 0 {
		tb.Error("survival: echo server answered nothing")
		return 0, 0
	}
	return float64((c1 - c0).Microseconds()) / float64(echoed), float64(s1-s0) / float64(echoed)
}

// idleCPU measures each server's CPU over d while nothing is sent to it, in µs per second.
// It reads the threads' scheduler run time (/proc/PID/task/*/schedstat, in ns), since an idle
// process takes a few ms per second, below the 10 ms resolution of /proc/PID/stat.
func idleCPU(tb testing.TB, servers []eapServer, d time.Duration) map[string]float64 {
	tb.Helper()
	c0 := make([]time.Duration, len(servers))
	for i, s := range servers {
		c, err := taskRunTime(s.pid())
		if err != nil {
			tb.Fatal(err)
		}
		c0[i] = c
	}
	t0 := time.Now()
	time.Sleep(d)
	wall := time.Since(t0)
	out := make(map[string]float64, len(servers))
	for i, s := range servers {
		c, err := taskRunTime(s.pid())
		if err != nil {
			tb.Fatal(err)
		}
		out[s.name] = float64((c - c0[i]).Microseconds()) / wall.Seconds()
	}
	return out
}

// taskRunTime sums the run time of pid's threads from /proc/PID/task/*/schedstat (first field, ns).
func taskRunTime(pid int) (time.Duration, error) {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return 0, fmt.Errorf("survival: %w", err)
	}
	var sum time.Duration
	for _, t := range tasks {
		b, err := os.ReadFile(dir + "/" + t.Name() + "/schedstat")
		if err != nil {
			continue // the thread exited in between
		}
		f := strings.Fields(string(b))
		if len(f) == 0 {
			return 0, fmt.Errorf("survival: %s/%s/schedstat: empty", dir, t.Name())
		}
		ns, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("survival: %s/%s/schedstat: %w", dir, t.Name(), err)
		}
		sum += time.Duration(ns)
	}
	return sum, nil
}

// taskSwitches sums the context switches of pid's threads (voluntary_ctxt_switches and
// nonvoluntary_ctxt_switches in /proc/PID/task/*/status, proc(5)).
func taskSwitches(pid int) (int64, error) {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return 0, fmt.Errorf("survival: %w", err)
	}
	var sum int64
	for _, t := range tasks {
		b, err := os.ReadFile(dir + "/" + t.Name() + "/status")
		if err != nil {
			continue // the thread exited in between
		}
		for _, line := range strings.Split(string(b), "\n") {
			k, v, ok := strings.Cut(line, ":")
			if !ok || (k != "voluntary_ctxt_switches" && k != "nonvoluntary_ctxt_switches") {
				continue
			}
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("survival: %s/%s/status: %w", dir, t.Name(), err)
			}
			sum += n
		}
	}
	return sum, nil
}

// eapolRun measures one server and TLS version: procs eapol_test processes of runs
// authentications each.
func eapolRun(b testing.TB, lab *pkitest.Lab, s eapServer, key, tv string, procs, runs int) eapolRow {
	b.Helper()
	host, portStr, _ := cutHostPort(s.addr)
	port, _ := strconv.Atoi(portStr)
	o := peertest.EapolOptions{Server: host, Port: port, Secret: nasSecret, Identity: "anonymous",
		CACert: lab.CAFile, ClientCert: lab.ClientCert, PrivateKey: lab.ClientKey, Repeat: runs - 1,
		Timeout: 10 * time.Second, Dir: b.TempDir()}
	if tv == "1.3" {
		o.TLS13Only = true
	} else {
		o.TLS12Only = true
	}
	stopPerf := perfUntilStopped(b, s.name+"-"+key+"-tls"+tv, s.pid())
	sw0, err := taskSwitches(s.pid())
	if err != nil {
		b.Fatal(err)
	}
	w, err := StartWindow(s.cpu)
	if err != nil {
		b.Fatal(err)
	}
	t0 := time.Now()
	row := eapolRow{server: s.name, key: key, tls: tv}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for p := range procs {
		wg.Go(func() {
			po := o
			po.CallingStationID = fmt.Sprintf("02:00:00:aa:00:%02x", p)
			res, err := peertest.EapolTest(context.Background(), po)
			ok := 0
			if m := mppeOK.FindStringSubmatch(res.Output); m != nil {
				ok, _ = strconv.Atoi(m[1])
			}
			mu.Lock()
			defer mu.Unlock()
			if ok == runs {
				row.rounds += len(radiusSends.FindAllStringIndex(res.Output, -1))
			}
			row.ok += ok
			row.failed += runs - ok
			if err != nil || !res.Success {
				b.Logf("%s TLS %s: eapol_test: %v, %d of %d authenticated\n%s", s.name, tv, err, ok, runs, tail(res.Output, 15))
			}
		})
	}
	wg.Wait()
	row.wall = time.Since(t0)
	if row.cpu, err = w.Stop(); err != nil {
		b.Fatal(err)
	}
	sw1, err := taskSwitches(s.pid())
	if err != nil {
		b.Fatal(err)
	}
	row.switches = sw1 - sw0
	stopPerf()
	if row.ok == 0 {
		b.Errorf("%s TLS %s: no authentication succeeded\n%s", s.name, tv, s.logs())
	}
	return row
}

// perfUntilStopped records pid with `perf record -g` into $MXEDGE_SURVIVAL_PERF/NAME.data from now
// until the returned function is called (nothing when PerfEnv is unset). A row's length is not known
// in advance, so unlike StartPerf it runs until interrupted; at most 10 minutes.
func perfUntilStopped(tb testing.TB, name string, pid int) func() {
	tb.Helper()
	dir := os.Getenv(PerfEnv)
	if dir == "" {
		return func() {}
	}
	out := filepath.Join(dir, name+".data")
	cmd := exec.Command("perf", "record", "-q", "-F", "1999", "-g", "-p", strconv.Itoa(pid), "-o", out, "--", "sleep", "600")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		tb.Fatalf("survival: perf: %v", err)
	}
	return func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait() // interrupted: a non-zero status is expected
		tb.Logf("perf profile of %s: %s", name, out)
	}
}

func cutHostPort(addr string) (host, port string, ok bool) {
	for i := len(addr) - 1; i >= 0; i-- {
		if addr[i] == ':' {
			return addr[:i], addr[i+1:], true
		}
	}
	return addr, "", false
}

func tail(s string, n int) string {
	lines := 0
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == '\n' {
			if lines++; lines > n {
				return s[i+1:]
			}
		}
	}
	return s
}

// writeEapolTable prints the rows and, per key type and TLS version over all repetitions,
// FreeRADIUS's CPU per authentication over mxedge's (and mxedge-base's over mxedge's when measured). "rtt" is RADIUS
// round trips per authentication (of the eapol_test processes that authenticated every time),
// "idle" the share of the row's CPU per authentication the server spends when idle, "floor" the
// server's CPU per EAP-TLS Start answered at the row's packet rate (floorRun) and
// "rtt×floor" what the round trips alone cost at that rate, "cs/rt" the server's context switches per
// round trip (taskSwitches: threads put to sleep and woken), "echo" and "cs" what a Go UDP echo
// server costs per round trip at the row's rate (echoFloor; mxedge rows only).
func writeEapolTable(w *os.File, rows []eapolRow) {
	fmt.Fprintf(w, "%-11s %-10s %4s %6s %6s %8s %5s %12s %6s %6s %9s %5s %6s %5s %6s\n", "server", "key", "tls", "auths", "failed", "auths/s", "rtt",
		"srv µs/auth", "idle", "floor", "rtt×floor", "cs/rt", "echo", "cs", "other")
	for _, r := range rows {
		rtt, cs := 0.0, 0.0
		if r.ok > 0 {
			rtt = float64(r.rounds) / float64(r.ok)
		}
		if r.rounds > 0 {
			cs = float64(r.switches) / float64(r.rounds)
		}
		fmt.Fprintf(w, "%-11s %-10s %4s %6d %6d %8.1f %5.1f %12.0f %6.0f %6.0f %9.0f %5.1f %6.0f %5.1f %6.2f\n", r.server, r.key, r.tls, r.ok, r.failed,
			float64(r.ok)/r.wall.Seconds(), rtt, r.perAuth(), r.idlePerAuth(), r.floor, rtt*r.floor, cs, r.echo, r.echoSwitches, r.cpu.OtherCores)
	}
	type cell struct{ key, tls string }
	var cells []cell
	sums := map[cell]map[string]eapolRow{} // repetitions summed: CPU and authentications
	for _, r := range rows {
		c := cell{r.key, r.tls}
		if sums[c] == nil {
			sums[c] = map[string]eapolRow{}
			cells = append(cells, c)
		}
		g := sums[c][r.server]
		g.ok += r.ok
		g.cpu.Server += r.cpu.Server
		sums[c][r.server] = g
	}
	for _, c := range cells {
		per := func(server string) float64 { return sums[c][server].perAuth() }
		mx, fr := per("mxedge"), per("freeradius")
		if mx <= 0 || fr <= 0 {
			continue
		}
		t := eapolTargets[pki.KeyType(c.key)]
		line := fmt.Sprintf("%s TLS %s: mxedge %.0f µs/auth", c.key, c.tls, mx)
		if t.maxMicros > 0 {
			line += fmt.Sprintf(" (≤%.0f %s)", t.maxMicros, verdict(mx <= t.maxMicros))
		}
		line += fmt.Sprintf(", freeradius/mxedge %.2f", fr/mx)
		if t.minRatio > 0 {
			line += fmt.Sprintf(" (≥%.1f %s)", t.minRatio, verdict(fr/mx >= t.minRatio))
		}
		if base := per("mxedge-base"); base > 0 {
			line += fmt.Sprintf(", mxedge-base %.0f µs/auth, base/mxedge %.2f", base, base/mx)
		}
		fmt.Fprintln(w, line)
	}
}
