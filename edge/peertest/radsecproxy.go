package peertest

// radsecproxy 1.9.2, the reference RadSec proxy.
//
// Used two ways: as the benchmark's anchor (UDP in, RadSec out to an
// upstream) and as a RadSec client of mxedge's listener (radclient → UDP →
// radsecproxy → RadSec → mxedge).
//
// Quirks:
//   - There is no ServerName option: radsecproxy checks the upstream's
//     certificate against the configured host (CertificateNameCheck on), so
//     the upstream certificate needs SAN IP:127.0.0.1 (or ::1). Certs.ServerCert
//     has both.
//   - `-f` keeps it in the foreground and sends every log line to stderr
//     (LogDestination is ignored); we capture that in Dir/radsecproxy.log.
//   - It never says "ready", and UDP cannot be probed by connecting, so
//     readiness is "every UDP listen address appears in /proc/net/udp{,6}
//     owned by a socket, every TLS listen address accepts TCP".
//   - It connects to a TLS upstream lazily, on the first request, and a
//     failed connect is only logged: a wrong certificate shows up as
//     requests without replies plus "TLS: ... verify" errors in LogTail.
//   - One UDP listener takes both Access- and Accounting-Requests; without an
//     accountingServer in the realm, accounting is silently dropped, so the
//     upstream is configured for both.
//   - A secret for a TLS peer other than "radsec" violates RFC 6614 §2.3 but
//     is accepted.
//   - TLS clients are identified by source address; their certificate must
//     chain to CA, the name is not checked (CertificateNameCheck off), so any
//     certificate from Certs works.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// RadsecproxyOptions configures one radsecproxy.
type RadsecproxyOptions struct {
	// Dir holds the configuration and log. The TB form defaults it to
	// t.TempDir(); the context form requires it.
	Dir string
	// ListenUDP is the UDP listener "127.0.0.1:PORT" (auth and acct).
	ListenUDP string
	// ListenAcct is an optional second UDP listener (radsecproxy routes by
	// packet code, so it takes both kinds too).
	ListenAcct string
	// ListenTLS is an optional RadSec listener.
	ListenTLS string
	// Clients are UDP clients (address or CIDR, secret). Default: 127.0.0.1
	// and ::1 with secret "testing123".
	Clients []Client
	// TLSClients are RadSec clients (by source address); an empty Secret is
	// "radsec". Default when ListenTLS is set: 127.0.0.1 and ::1.
	TLSClients []Client
	// Upstream is the RadSec server "127.0.0.1:PORT" every request goes to.
	Upstream string
	// UpstreamSecret defaults to "radsec".
	UpstreamSecret string
	// UpstreamStatusServer enables Status-Server probing of the upstream
	// (radsecproxy's StatusServer on). Default off, as radsecproxy's.
	UpstreamStatusServer bool
	// Cert and Key are presented both to the upstream (client certificate)
	// and to RadSec clients; CA verifies both directions.
	Cert, Key, CA string
	// LogLevel is 1–5. Default 3.
	LogLevel int
	// StartTimeout bounds the start. Default 10 s.
	StartTimeout time.Duration
}

// Radsecproxy is a running radsecproxy.
type Radsecproxy struct {
	opts RadsecproxyOptions
	proc *process
}

// StartRadsecproxy starts radsecproxy, fails tb with its log tail when it does
// not become ready, and stops it when the test ends.
func StartRadsecproxy(tb testing.TB, o RadsecproxyOptions) *Radsecproxy {
	tb.Helper()
	if o.Dir == "" {
		o.Dir = tb.TempDir()
	}
	return startForTest(tb, "radsecproxy", func(ctx context.Context) (*Radsecproxy, error) {
		return StartRadsecproxyContext(ctx, o)
	})
}

// StartRadsecproxyContext starts radsecproxy and waits until its listeners are
// open. The caller must call Stop.
func StartRadsecproxyContext(ctx context.Context, o RadsecproxyOptions) (*Radsecproxy, error) {
	if err := o.setDefaults(); err != nil {
		return nil, err
	}
	conf, err := o.config()
	if err != nil {
		return nil, err
	}
	confPath := filepath.Join(o.Dir, "radsecproxy.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		return nil, fmt.Errorf("peertest: radsecproxy: %w", err)
	}
	p, err := startProcess("radsecproxy", filepath.Join(o.Dir, "radsecproxy.log"), nil,
		"radsecproxy", "-f", "-c", confPath, "-d", strconv.Itoa(o.LogLevel))
	if err != nil {
		return nil, err
	}
	var checks []readyCheck
	for _, a := range []string{o.ListenUDP, o.ListenAcct} {
		if a != "" {
			checks = append(checks, udpBound(a))
		}
	}
	if o.ListenTLS != "" {
		checks = append(checks, tcpAccepting(o.ListenTLS))
	}
	if err := p.waitReady(ctx, o.StartTimeout, allReady(checks...)); err != nil {
		err = startError(p, err)
		_ = p.stop()
		return nil, err
	}
	return &Radsecproxy{opts: o, proc: p}, nil
}

func (o *RadsecproxyOptions) setDefaults() error {
	if o.Dir == "" {
		return errors.New("peertest: radsecproxy: Dir is required")
	}
	if o.ListenUDP == "" && o.ListenTLS == "" {
		return errors.New("peertest: radsecproxy: ListenUDP or ListenTLS is required")
	}
	if o.Upstream == "" {
		return errors.New("peertest: radsecproxy: Upstream is required")
	}
	for what, a := range map[string]string{"ListenUDP": o.ListenUDP, "ListenAcct": o.ListenAcct, "ListenTLS": o.ListenTLS, "Upstream": o.Upstream} {
		if a == "" {
			continue
		}
		if err := checkAddr("radsecproxy "+what, a); err != nil {
			return err
		}
	}
	if o.Cert == "" || o.Key == "" || o.CA == "" {
		return errors.New("peertest: radsecproxy: Cert, Key and CA are required")
	}
	for _, p := range []*string{&o.Cert, &o.Key, &o.CA, &o.Dir} {
		abs, err := filepath.Abs(*p)
		if err != nil {
			return fmt.Errorf("peertest: radsecproxy: %w", err)
		}
		*p = abs
	}
	if o.UpstreamSecret == "" {
		o.UpstreamSecret = DefaultRadSecSecret
	}
	if len(o.Clients) == 0 {
		o.Clients = []Client{{Addr: "127.0.0.1", Secret: "testing123"}, {Addr: "::1", Secret: "testing123"}}
	}
	if o.ListenTLS != "" && len(o.TLSClients) == 0 {
		o.TLSClients = []Client{{Addr: "127.0.0.1"}, {Addr: "::1"}}
	}
	if o.LogLevel == 0 {
		o.LogLevel = 3
	}
	if o.StartTimeout == 0 {
		o.StartTimeout = 10 * time.Second
	}
	return nil
}

func (o *RadsecproxyOptions) config() (string, error) {
	host, port, err := splitHostPort(o.Upstream)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	b.WriteString("# Generated by mxedge peertest.\n")
	for _, a := range []string{o.ListenUDP, o.ListenAcct} {
		if a != "" {
			fmt.Fprintf(&b, "ListenUDP %s\n", a)
		}
	}
	if o.ListenTLS != "" {
		fmt.Fprintf(&b, "ListenTLS %s\n", o.ListenTLS)
	}
	fmt.Fprintf(&b, "LogLevel %d\n\n", o.LogLevel)
	fmt.Fprintf(&b, "tls default {\n\tCACertificateFile %s\n\tCertificateFile %s\n\tCertificateKeyFile %s\n}\n\n",
		o.CA, o.Cert, o.Key)
	for i, c := range o.Clients {
		fmt.Fprintf(&b, "client udp%d {\n\ttype udp\n\thost %s\n\tsecret %s\n}\n", i, rspHost(c.Addr), rspQuote(c.Secret))
	}
	for i, c := range o.TLSClients {
		secret := c.Secret
		if secret == "" {
			secret = DefaultRadSecSecret
		}
		fmt.Fprintf(&b, "client tls%d {\n\ttype tls\n\thost %s\n\tsecret %s\n\ttls default\n\tCertificateNameCheck off\n}\n",
			i, rspHost(c.Addr), rspQuote(secret))
	}
	status := "off"
	if o.UpstreamStatusServer {
		status = "on"
	}
	fmt.Fprintf(&b, `
server upstream {
	type tls
	host %s
	port %d
	secret %s
	tls default
	CertificateNameCheck on
	StatusServer %s
}

realm * {
	server upstream
	accountingServer upstream
}
`, rspHost(host), port, rspQuote(o.UpstreamSecret), status)
	return b.String(), nil
}

// rspHost brackets an IPv6 address (or prefix): radsecproxy splits an
// unbracketed "::1" at its colons and finds no address.
func rspHost(h string) string {
	if strings.Contains(h, ":") && !strings.HasPrefix(h, "[") {
		if a, bits, ok := strings.Cut(h, "/"); ok {
			return "[" + a + "]/" + bits
		}
		return "[" + h + "]"
	}
	return h
}

// rspQuote quotes a radsecproxy value that contains whitespace.
func rspQuote(s string) string {
	if s != "" && !strings.ContainsAny(s, " \t\"#") {
		return s
	}
	return `"` + strings.ReplaceAll(s, `"`, `\"`) + `"`
}

// Stop terminates radsecproxy and waits for it.
func (r *Radsecproxy) Stop() error { return r.proc.stop() }

// Kill sends SIGKILL.
func (r *Radsecproxy) Kill() error { return r.proc.kill() }

// Pause freezes the proxy with SIGSTOP (a blackholed peer); Resume undoes it.
func (r *Radsecproxy) Pause() error { return r.proc.pause() }

// Resume continues a paused proxy.
func (r *Radsecproxy) Resume() error { return r.proc.resume() }

// Pid is the proxy's process id.
func (r *Radsecproxy) Pid() int { return r.proc.Pid() }

// LogTail returns the last n lines of the proxy's log.
func (r *Radsecproxy) LogTail(n int) string { return r.proc.logTail(n) }

// LogPath is the proxy's log file.
func (r *Radsecproxy) LogPath() string { return r.proc.logPath }

// CPUTime is the proxy's user+system CPU time, all threads.
func (r *Radsecproxy) CPUTime() (time.Duration, error) { return r.proc.cpuTime() }

// udpBound is a readyCheck that succeeds once a UDP socket is bound to addr
// (looked up in /proc/net/udp or udp6, proc(5)).
func udpBound(addr string) readyCheck {
	return func() error {
		host, port, err := splitHostPort(addr)
		if err != nil {
			return err
		}
		ip := net.ParseIP(host)
		if ip == nil {
			return fmt.Errorf("peertest: %q is not an IP address", host)
		}
		file, want := "/proc/net/udp", procNetAddr(ip, port)
		if ip.To4() == nil {
			file = "/proc/net/udp6"
		}
		ok, err := procNetHas(file, want)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("udp %s not bound yet", addr)
		}
		return nil
	}
}

// procNetAddr renders ip:port as /proc/net/udp's local_address: the address
// in host byte order as hex (little-endian words on x86), the port in hex.
func procNetAddr(ip net.IP, port int) string {
	var b strings.Builder
	if v4 := ip.To4(); v4 != nil {
		fmt.Fprintf(&b, "%02X%02X%02X%02X", v4[3], v4[2], v4[1], v4[0])
	} else {
		v6 := ip.To16()
		for w := 0; w < 16; w += 4 {
			fmt.Fprintf(&b, "%02X%02X%02X%02X", v6[w+3], v6[w+2], v6[w+1], v6[w])
		}
	}
	fmt.Fprintf(&b, ":%04X", port)
	return b.String()
}

// procNetHas reports whether a line of file has local address want.
func procNetHas(file, want string) (bool, error) {
	f, err := os.Open(file)
	if err != nil {
		return false, fmt.Errorf("peertest: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) > 1 && fs[1] == want {
			return true, nil
		}
	}
	return false, sc.Err()
}
