package peertest

// FreeRADIUS 3.2 as a RadSec (RFC 6614) and UDP RADIUS server.
//
// Quirks of Debian 12's FreeRADIUS 3.2.1 met here:
//   - `-X` refuses TLS listeners ("Threading must be enabled for TLS
//     sockets"). The server runs as `freeradius -f -l stdout` (add `-xx` for
//     debug output), its output captured in Dir/freeradius.log.
//   - The stock configuration switches to user freerad, writes to
//     /var/log/freeradius and /var/run/freeradius, and its eap module points at
//     snakeoil certificates that are not installed. We copy
//     /etc/freeradius/3.0 to Dir/raddb (for the dictionaries, policy.d and
//     mods-available), then replace radiusd.conf, clients.conf, proxy.conf,
//     mods-enabled/ and sites-enabled/ with generated files: no user/group,
//     every path under Dir, and only the modules the site calls (always, pap,
//     files, eap with TLS only, detail), which keeps startup well under a
//     second and free of missing-file errors.
//   - The dictionary chain (raddb/dictionary → /usr/share/freeradius/dictionary)
//     loads every vendor dictionary, Cisco, Aruba, Juniper, Microsoft and
//     PaloAlto included; nothing extra is needed.
//   - `security { reject_delay }` defaults to 1 s; it is 0 here so Access-Reject
//     tests do not wait.
//   - The RadSec listener's `limit { idle_timeout }` is 0 (none) here: the stock
//     30 s closes idle connections, which tests of a persistent client would
//     otherwise trip over at random. FreeRADIUS may still close a RadSec
//     connection while it is saturated (see TESTING-PEERS.md).
//   - 3.2.1 predates the BlastRADIUS hardening (3.2.5): there is no
//     limit_proxy_state, Message-Authenticator is not required from clients
//     (require_message_authenticator = no is explicit here) and a reply only
//     carries one when the request did. Tests of mxedge's own
//     Message-Authenticator policy cannot lean on this upstream for that.
//   - `max_requests` (default 16384) drops requests under sustained load;
//     raise MaxRequests for benchmarks.
//   - The readiness line "Ready to process requests" is printed at info level
//     even without -x.
//   - The detail file is written record by record with a blank line after each;
//     Accounting() only returns complete records, so it is safe to call while
//     the server is writing.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// stockRaddb is the configuration copied as a template. It is only read.
const stockRaddb = "/etc/freeradius/3.0"

// freeradiusReadyLine is printed once all listeners are open.
const freeradiusReadyLine = "Ready to process requests"

// DefaultRadSecSecret is the shared secret RFC 6614 §2.3 fixes for RadSec.
const DefaultRadSecSecret = "radsec"

// User is one entry of FreeRADIUS's users file.
type User struct {
	// Name is the User-Name. For a MAB user it is the MAC address in the form
	// the NAS sends it (e.g. "aabbccddeeff" or "aa-bb-cc-dd-ee-ff").
	Name string
	// Password is the PAP password (Cleartext-Password). Empty for a
	// certificate-only (EAP-TLS) user, which then only contributes Reply.
	Password string
	// MAB marks a MAC-authentication-bypass user: the request's User-Name is
	// the MAC. It is accepted when its User-Password equals Name (the common
	// NAS behaviour), or when it carries no password at all; and, whatever the
	// User-Name, a request with Service-Type = Call-Check whose
	// Calling-Station-Id is this MAC in any separator style or case.
	MAB bool
	// Reply holds users-file reply items, e.g. `Tunnel-Type = VLAN`,
	// `Tunnel-Medium-Type = IEEE-802`, `Tunnel-Private-Group-Id = "300"`,
	// `Cisco-AVPair = "shell:priv-lvl=15"`, `Aruba-User-Role = "employee"`,
	// `Filter-Id = "corp"`, `Session-Timeout = 3600`.
	Reply []string
	// Reject makes every request for this user an Access-Reject (Reply items
	// such as Reply-Message are still sent).
	Reject bool
	// Check holds extra users-file check items, e.g. `Operator-Name == "1example.edu"`: a request
	// that fails one does not match the entry (and is rejected).
	Check []string
}

// ProxyRealm makes FreeRADIUS proxy requests for a realm (suffix after '@', FreeRADIUS's realm
// module) to a RADIUS/UDP home server, as a national roaming server does.
type ProxyRealm struct {
	Realm  string // e.g. "example.edu"
	Server string // "127.0.0.1:PORT", authentication
	Secret string
	// Source is the address the proxied requests leave from (home_server src_ipaddr).
	Source string
}

// FreeRADIUSOptions configures one FreeRADIUS instance.
type FreeRADIUSOptions struct {
	// Dir is where the configuration, logs and accounting file go. The TB
	// form defaults it to t.TempDir(); the context form requires it.
	Dir string
	// RadSecAddr, when set, is a RadSec (RFC 6614) listener "127.0.0.1:PORT":
	// TLS over TCP, type auth+acct, client certificate required and verified
	// against CA; the client may connect from any loopback address.
	RadSecAddr string
	// UDPAuthAddr and UDPAcctAddr, when set, are plain RADIUS listeners.
	UDPAuthAddr, UDPAcctAddr string
	// UDPClients may use the UDP listeners. Default: 127.0.0.1 and ::1 with
	// secret "testing123".
	UDPClients []Client
	// ServerCert, ServerKey and CA are PEM files. The server certificate is
	// presented on the RadSec listener; CA verifies RadSec client certificates
	// and EAP-TLS client certificates.
	ServerCert, ServerKey, CA string
	// RadSecSecret is the RadSec shared secret. Default "radsec".
	RadSecSecret string
	// EAPCert and EAPKey are the EAP-TLS server certificate and key.
	// Default: ServerCert and ServerKey.
	EAPCert, EAPKey string
	// Users is the users file.
	Users []User
	// MaxRequests is max_requests. Default 16384 (FreeRADIUS's), which drops
	// requests under sustained load of a few thousand per second.
	MaxRequests int
	// Threads is the thread pool size (start and max servers). Default:
	// FreeRADIUS's 5 to 32.
	Threads int
	// AccountingLog writes every Accounting-Request to Dir/acct/detail, which
	// Accounting() parses. A restart in the same Dir keeps appending to it.
	AccountingLog bool
	// Debug runs with -xx (debug output in the log).
	Debug bool
	// StartTimeout bounds the start. Default 15 s.
	StartTimeout time.Duration
	// NetNS, when set, runs the server in that network namespace (see
	// netns.go); the listener addresses are then that namespace's.
	NetNS string
	// RadSecClients are the addresses or CIDRs RadSec clients may connect
	// from. Default: 127.0.0.0/8 and ::1.
	RadSecClients []string
	// ProxyRealms are realms proxied to other servers over RADIUS/UDP.
	ProxyRealms []ProxyRealm
	// ReplyMessageAuthenticator puts Message-Authenticator in every Access-Accept and -Reject,
	// which FreeRADIUS 3.2.1 does on its own only for EAP (BlastRADIUS-hardened servers do it always).
	ReplyMessageAuthenticator bool
	// CoAAddr, when set, makes the server a NAS stand-in for RFC 5176: a
	// `listen { type = coa }` on that address for the UDPClients, whose
	// policy (CoAPolicy) ACKs or NAKs each CoA-Request and Disconnect-Request;
	// every request received is written to Dir/coa/detail, which CoA() parses.
	CoAAddr string
}

// CoAPolicy is the NAS stand-in's answer to a CoA-Request or
// Disconnect-Request, chosen by its User-Name:
//   - "nosession": NAK with Error-Cause Session-Context-Not-Found (503);
//   - "silent": no answer at all (a NAS that ignores us);
//   - anything else, or none: ACK.
const CoAPolicy = "nosession: NAK 503; silent: no answer; otherwise ACK"

// FreeRADIUS is a running FreeRADIUS.
type FreeRADIUS struct {
	opts       FreeRADIUSOptions
	proc       *process
	raddb      string
	detailPath string
}

// StartFreeRADIUS starts FreeRADIUS, fails tb with its log tail when it does
// not become ready, and stops it when the test ends.
func StartFreeRADIUS(tb testing.TB, o FreeRADIUSOptions) *FreeRADIUS {
	tb.Helper()
	if o.Dir == "" {
		o.Dir = tb.TempDir()
	}
	return startForTest(tb, "freeradius", func(ctx context.Context) (*FreeRADIUS, error) {
		return StartFreeRADIUSContext(ctx, o)
	})
}

// StartFreeRADIUSContext starts FreeRADIUS and waits until it is ready. The
// caller must call Stop.
func StartFreeRADIUSContext(ctx context.Context, o FreeRADIUSOptions) (*FreeRADIUS, error) {
	if err := o.setDefaults(); err != nil {
		return nil, err
	}
	f := &FreeRADIUS{opts: o, raddb: filepath.Join(o.Dir, "raddb")}
	if o.AccountingLog {
		f.detailPath = filepath.Join(o.Dir, "acct", "detail")
	}
	if err := f.writeConfig(); err != nil {
		return nil, err
	}
	if err := f.run(ctx, f.args()); err != nil {
		return nil, err
	}
	return f, nil
}

// run starts the server process with args and waits until it is ready.
func (f *FreeRADIUS) run(ctx context.Context, args []string) error {
	o := f.opts
	bin := "freeradius"
	if o.NetNS != "" {
		var err error
		if bin, args, err = netnsCommand(o.NetNS, bin, args); err != nil {
			return err
		}
	}
	p, err := startProcess("freeradius", filepath.Join(o.Dir, "freeradius.log"), nil, bin, args...)
	if err != nil {
		return err
	}
	f.proc = p
	checks := []readyCheck{func() error {
		if !p.logContains(freeradiusReadyLine) {
			return errors.New("no \"" + freeradiusReadyLine + "\" in log yet")
		}
		return nil
	}}
	if o.RadSecAddr != "" {
		if o.NetNS != "" {
			checks = append(checks, tcpAcceptingIn(o.NetNS, o.RadSecAddr))
		} else {
			checks = append(checks, tcpAccepting(o.RadSecAddr))
		}
	}
	if err := p.waitReady(ctx, o.StartTimeout, allReady(checks...)); err != nil {
		err = startError(p, err)
		_ = p.stop()
		return err
	}
	return nil
}

// Restart kills the server if it still runs (SIGKILL, as a crash) and starts
// it again with the same configuration, directory and accounting log, then
// waits until it is ready. Stop then stops the new process. Not safe for use
// concurrently with Stop, Kill or Pid.
func (f *FreeRADIUS) Restart(ctx context.Context) error {
	_ = f.proc.kill()
	return f.run(ctx, f.args())
}

// args is the server's command line: foreground, logging to stdout.
func (f *FreeRADIUS) args() []string {
	args := []string{"-f", "-l", "stdout", "-d", f.raddb, "-n", "radiusd"}
	if f.opts.Debug {
		args = append(args, "-xx")
	}
	return args
}

func (o *FreeRADIUSOptions) setDefaults() error {
	if o.Dir == "" {
		return errors.New("peertest: freeradius: Dir is required")
	}
	if o.RadSecAddr == "" && o.UDPAuthAddr == "" && o.UDPAcctAddr == "" && o.CoAAddr == "" {
		return errors.New("peertest: freeradius: no listener (RadSecAddr, UDPAuthAddr, UDPAcctAddr)")
	}
	for what, a := range map[string]string{"RadSecAddr": o.RadSecAddr, "UDPAuthAddr": o.UDPAuthAddr, "UDPAcctAddr": o.UDPAcctAddr, "CoAAddr": o.CoAAddr} {
		if a == "" {
			continue
		}
		if err := checkAddr("freeradius "+what, a); err != nil {
			return err
		}
	}
	if o.ServerCert == "" || o.ServerKey == "" || o.CA == "" {
		// The eap module needs a certificate even when only UDP PAP is used.
		return errors.New("peertest: freeradius: ServerCert, ServerKey and CA are required")
	}
	for _, p := range []*string{&o.ServerCert, &o.ServerKey, &o.CA, &o.EAPCert, &o.EAPKey} {
		if *p == "" {
			continue
		}
		abs, err := filepath.Abs(*p)
		if err != nil {
			return fmt.Errorf("peertest: freeradius: %w", err)
		}
		*p = abs
	}
	if o.EAPCert == "" {
		o.EAPCert, o.EAPKey = o.ServerCert, o.ServerKey
	}
	if o.RadSecSecret == "" {
		o.RadSecSecret = DefaultRadSecSecret
	}
	if len(o.UDPClients) == 0 {
		o.UDPClients = []Client{{Addr: "127.0.0.1", Secret: "testing123"}, {Addr: "::1", Secret: "testing123"}}
	}
	if o.MaxRequests == 0 {
		o.MaxRequests = 16384
	}
	if o.StartTimeout == 0 {
		o.StartTimeout = 15 * time.Second
	}
	if len(o.RadSecClients) == 0 {
		o.RadSecClients = []string{"127.0.0.0/8", "::1"}
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return fmt.Errorf("peertest: freeradius: %w", err)
	}
	o.Dir = dir
	return nil
}

// Stop terminates FreeRADIUS (SIGTERM, then SIGKILL) and waits for it.
func (f *FreeRADIUS) Stop() error { return f.proc.stop() }

// Kill sends SIGKILL, as a crashed upstream would vanish: connections are
// reset by the kernel, nothing is flushed.
func (f *FreeRADIUS) Kill() error { return f.proc.kill() }

// Pause freezes the server with SIGSTOP to simulate a blackholed upstream:
// its RadSec port still completes TCP (and queues TLS) handshakes, but
// nothing is answered and no RST is sent. Resume undoes it; Stop works on a
// paused server.
func (f *FreeRADIUS) Pause() error { return f.proc.pause() }

// Resume continues a paused server.
func (f *FreeRADIUS) Resume() error { return f.proc.resume() }

// Pid is the server's process id.
func (f *FreeRADIUS) Pid() int { return f.proc.Pid() }

// Dir is the directory holding the configuration (raddb/) and logs.
func (f *FreeRADIUS) Dir() string { return f.opts.Dir }

// LogPath is the server's log file.
func (f *FreeRADIUS) LogPath() string { return f.proc.logPath }

// LogTail returns the last n lines of the server's log.
func (f *FreeRADIUS) LogTail(n int) string { return f.proc.logTail(n) }

// CPUTime is the server's user+system CPU time, all threads.
func (f *FreeRADIUS) CPUTime() (time.Duration, error) { return f.proc.cpuTime() }

// AcctRecord is one accounting request as FreeRADIUS logged it.
type AcctRecord struct {
	// Time is the detail header line (the time FreeRADIUS received it).
	Time string
	// Attrs are the attributes in logged order, values unquoted.
	Attrs []Attr
	// Map holds the first value of each attribute.
	Map map[string]string
}

// SessionID is Acct-Session-Id.
func (r AcctRecord) SessionID() string { return r.Map["Acct-Session-Id"] }

// StatusType is Acct-Status-Type (e.g. "Start", "Interim-Update", "Stop").
func (r AcctRecord) StatusType() string { return r.Map["Acct-Status-Type"] }

// DelayTime is Acct-Delay-Time (RFC 2866 §5.2), 0 when absent.
func (r AcctRecord) DelayTime() int {
	n, _ := strconv.Atoi(r.Map["Acct-Delay-Time"])
	return n
}

// UserName is User-Name.
func (r AcctRecord) UserName() string { return r.Map["User-Name"] }

// Accounting returns the accounting records received so far, in arrival
// order. It needs AccountingLog.
func (f *FreeRADIUS) Accounting() ([]AcctRecord, error) {
	if f.detailPath == "" {
		return nil, errors.New("peertest: freeradius: AccountingLog is off")
	}
	fh, err := os.Open(f.detailPath)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("peertest: accounting: %w", err)
	}
	defer fh.Close()
	return parseDetail(fh)
}

// WaitAccounting polls Accounting until at least n records arrived or ctx
// ends; it returns what it has either way.
func (f *FreeRADIUS) WaitAccounting(ctx context.Context, n int) ([]AcctRecord, error) {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		recs, err := f.Accounting()
		if err != nil || len(recs) >= n {
			return recs, err
		}
		select {
		case <-ctx.Done():
			return recs, fmt.Errorf("peertest: %d of %d accounting records: %w", len(recs), n, ctx.Err())
		case <-t.C:
		}
	}
}

// parseDetail parses FreeRADIUS detail records: a header line at column 0,
// attribute lines indented with a tab ("\tName = value"), a blank line after
// each record. A final record without its blank line is still being written
// and is left out.
func parseDetail(r io.Reader) ([]AcctRecord, error) {
	var out []AcctRecord
	var cur *AcctRecord
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.TrimSpace(line) == "":
			if cur != nil {
				out = append(out, *cur)
				cur = nil
			}
		case line[0] != ' ' && line[0] != '\t':
			if cur != nil { // header without a blank line before it
				out = append(out, *cur)
			}
			cur = &AcctRecord{Time: line, Map: map[string]string{}}
		default:
			if cur == nil {
				continue
			}
			a, ok := parseAttrLine(line)
			if !ok {
				continue
			}
			cur.Attrs = append(cur.Attrs, a)
			if _, dup := cur.Map[a.Name]; !dup {
				cur.Map[a.Name] = a.Value
			}
		}
	}
	if err := sc.Err(); err != nil {
		return out, fmt.Errorf("peertest: detail: %w", err)
	}
	return out, nil
}

// writeConfig generates Dir/raddb from the stock configuration.
func (f *FreeRADIUS) writeConfig() error {
	o := f.opts
	for _, d := range []string{"log", "run", "db", "acct", "coa"} {
		if err := os.MkdirAll(filepath.Join(o.Dir, d), 0o755); err != nil {
			return fmt.Errorf("peertest: freeradius: %w", err)
		}
	}
	if err := copyTree(stockRaddb, f.raddb, map[string]bool{"mods-enabled": true, "sites-enabled": true, "certs": true}); err != nil {
		return fmt.Errorf("peertest: freeradius: copy %s (run as a user who can read it): %w", stockRaddb, err)
	}
	for _, d := range []string{"mods-enabled", "sites-enabled"} {
		if err := os.MkdirAll(filepath.Join(f.raddb, d), 0o755); err != nil {
			return fmt.Errorf("peertest: freeradius: %w", err)
		}
	}
	files := map[string]string{
		"radiusd.conf":                f.radiusdConf(),
		"clients.conf":                f.clientsConf(),
		"proxy.conf":                  f.proxyConf(),
		"mods-enabled/realm":          "realm suffix {\n\tformat = suffix\n\tdelimiter = \"@\"\n}\n",
		"mods-enabled/always":         mustRead(filepath.Join(stockRaddb, "mods-available/always")),
		"mods-enabled/pap":            "pap {\n\tnormalise = yes\n}\n",
		"mods-enabled/chap":           "chap {\n}\n",
		"mods-enabled/files":          "files {\n\tmoddir = ${modconfdir}/${.:instance}\n\tfilename = ${moddir}/authorize\n}\n",
		"mods-enabled/eap":            f.eapConf(),
		"mods-enabled/detail":         f.detailConf(),
		"mods-enabled/coa_detail":     f.coaDetailConf(),
		"mods-enabled/attr_filter":    attrFilterConf,
		"mods-config/files/authorize": usersFile(o.Users),
		"sites-enabled/peertest":      f.siteConf(),
	}
	for name, body := range files {
		p := filepath.Join(f.raddb, name)
		_ = os.Remove(p) // the copied users file is a symlink target; replace, do not follow
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			return fmt.Errorf("peertest: freeradius: %w", err)
		}
	}
	return nil
}

// attrFilterConf keeps Access-Reject and Access-Challenge free of users-file
// reply items, as the stock default site does.
const attrFilterConf = `attr_filter attr_filter.access_reject {
	key = "%{User-Name}"
	filename = ${modconfdir}/${.:name}/access_reject
}
attr_filter attr_filter.access_challenge {
	key = "%{User-Name}"
	filename = ${modconfdir}/${.:name}/access_challenge
}
`

func mustRead(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		// Fall back to the definitions the site needs.
		return "always reject {\n\trcode = reject\n}\nalways ok {\n\trcode = ok\n}\nalways noop {\n\trcode = noop\n}\n"
	}
	return string(b)
}

func (f *FreeRADIUS) radiusdConf() string {
	o := f.opts
	threads := ""
	if o.Threads > 0 {
		threads = fmt.Sprintf("\tstart_servers = %d\n\tmax_servers = %d\n\tmin_spare_servers = %d\n\tmax_spare_servers = %d\n",
			o.Threads, o.Threads, 1, o.Threads)
	} else {
		threads = "\tstart_servers = 5\n\tmax_servers = 32\n\tmin_spare_servers = 3\n\tmax_spare_servers = 10\n"
	}
	return fmt.Sprintf(`# Generated by mxedge peertest. Everything lives under %[1]s.
prefix = /usr
exec_prefix = /usr
sysconfdir = /etc
localstatedir = %[1]s
sbindir = ${exec_prefix}/sbin
logdir = %[1]s/log
raddbdir = %[2]s
radacctdir = %[1]s/acct
name = radiusd
confdir = ${raddbdir}
modconfdir = ${confdir}/mods-config
certdir = ${confdir}/certs
cadir = ${confdir}/certs
run_dir = %[1]s/run
db_dir = %[1]s/db
libdir = /usr/lib/freeradius
pidfile = ${run_dir}/${name}.pid
max_request_time = 30
cleanup_delay = 5
max_requests = %[3]d
hostname_lookups = no
log {
	destination = files
	colourise = no
	file = ${logdir}/radius.log
	stripped_names = no
	auth = yes
	auth_badpass = no
	auth_goodpass = no
}
checkrad = ${sbindir}/checkrad
security {
	# no user/group: the temp dir belongs to whoever runs the test
	allow_core_dumps = no
	max_attributes = 200
	reject_delay = 0
	status_server = yes
}
proxy_requests = %[5]s
$INCLUDE proxy.conf
$INCLUDE clients.conf
thread pool {
%[4]s	max_requests_per_server = 0
	auto_limit_acct = no
}
modules {
	$INCLUDE mods-enabled/
}
instantiate {
}
policy {
	$INCLUDE policy.d/
}
$INCLUDE sites-enabled/
`, o.Dir, f.raddb, o.MaxRequests, threads, map[bool]string{true: "yes", false: "no"}[len(o.ProxyRealms) > 0])
}

// proxyConf declares a home server and pool per distinct server, and a realm per ProxyRealm.
func (f *FreeRADIUS) proxyConf() string {
	var b strings.Builder
	b.WriteString("proxy server {\n\tdefault_fallback = no\n}\n")
	servers := map[string]int{}
	for _, r := range f.opts.ProxyRealms {
		key := r.Server + "|" + r.Secret + "|" + r.Source
		i, ok := servers[key]
		if !ok {
			i = len(servers)
			servers[key] = i
			host, port, _ := splitHostPort(r.Server)
			src := ""
			if r.Source != "" {
				src = "\tsrc_ipaddr = " + r.Source + "\n"
			}
			fmt.Fprintf(&b, `home_server hs%[1]d {
	type = auth
	%[2]s = %[3]s
	port = %[4]d
%[5]s	secret = %[6]s
	response_window = 6
	zombie_period = 20
	status_check = none
}
home_server_pool pool%[1]d {
	type = fail-over
	home_server = hs%[1]d
}
`, i, ipKey(host), host, port, src, quote(r.Secret))
		}
		fmt.Fprintf(&b, "realm %s {\n\tauth_pool = pool%d\n\tnostrip\n}\n", quote(r.Realm), i)
	}
	return b.String()
}
func (f *FreeRADIUS) clientsConf() string {
	var b strings.Builder
	b.WriteString("# Generated by mxedge peertest: UDP clients.\n")
	for i, c := range f.opts.UDPClients {
		fmt.Fprintf(&b, "client udp%d {\n\t%s = %s\n\tsecret = %s\n\tshortname = udp%d\n\trequire_message_authenticator = no\n}\n",
			i, ipKey(c.Addr), c.Addr, quote(c.Secret), i)
	}
	return b.String()
}

// ipKey picks ipaddr or ipv6addr for an address or CIDR.
func ipKey(addr string) string {
	if strings.Contains(addr, ":") {
		return "ipv6addr"
	}
	return "ipaddr"
}

// tlsBlock is the tls { } section shared by the RadSec listener and the eap
// module's tls-common.
func tlsBlock(cert, key, ca, indent string, extra string) string {
	lines := []string{
		"private_key_file = " + quote(key),
		"certificate_file = " + quote(cert),
		"ca_file = " + quote(ca),
		`cipher_list = "DEFAULT"`,
		"cipher_server_preference = no",
		`tls_min_version = "1.2"`,
		`tls_max_version = "1.3"`,
		"auto_chain = yes",
	}
	var b strings.Builder
	for _, l := range lines {
		b.WriteString(indent + l + "\n")
	}
	b.WriteString(extra)
	return b.String()
}

func (f *FreeRADIUS) eapConf() string {
	o := f.opts
	return `# Generated by mxedge peertest: EAP-TLS only, no snakeoil.
eap {
	default_eap_type = tls
	timer_expire = 60
	ignore_unknown_eap_types = no
	cisco_accounting_username_bug = no
	max_sessions = ${max_requests}
	tls-config tls-common {
` + tlsBlock(o.EAPCert, o.EAPKey, o.CA, "\t\t", `		# fragment_size: FreeRADIUS default (1024)
		include_length = yes
		check_crl = no
		# check_cert_cn unset: any client certificate signed by CA is accepted
		cache {
			enable = no
		}
		verify {
		}
		ocsp {
			enable = no
		}
`) + `	}
	tls {
		tls = tls-common
	}
}
`
}

func (f *FreeRADIUS) detailConf() string {
	path := f.detailPath
	if path == "" {
		path = filepath.Join(f.opts.Dir, "acct", "detail")
	}
	return fmt.Sprintf("detail {\n\tfilename = %s\n\tescape_filenames = no\n\tpermissions = 0600\n\theader = \"%%t\"\n\tlocking = yes\n}\n", quote(path))
}

// coaDetailConf writes every CoA-Request and Disconnect-Request received.
func (f *FreeRADIUS) coaDetailConf() string {
	return fmt.Sprintf("detail coa_detail {\n\tfilename = %s\n\tescape_filenames = no\n\tpermissions = 0600\n\theader = \"%%t\"\n\tlocking = yes\n}\n",
		quote(filepath.Join(f.opts.Dir, "coa", "detail")))
}

// CoA returns the CoA-Requests and Disconnect-Requests received so far, as
// the NAS stand-in logged them (see CoAAddr).
func (f *FreeRADIUS) CoA() ([]AcctRecord, error) {
	fh, err := os.Open(filepath.Join(f.opts.Dir, "coa", "detail"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("peertest: coa detail: %w", err)
	}
	defer fh.Close()
	return parseDetail(fh)
}

func (f *FreeRADIUS) siteConf() string {
	o := f.opts
	var b strings.Builder
	b.WriteString("# Generated by mxedge peertest.\n")
	udp := func(addr, typ string) {
		host, port, _ := splitHostPort(addr) // checked by setDefaults
		fmt.Fprintf(&b, "listen {\n\ttype = %s\n\t%s = %s\n\tport = %d\n\tvirtual_server = peertest\n}\n", typ, ipKey(host), host, port)
	}
	if o.UDPAuthAddr != "" {
		udp(o.UDPAuthAddr, "auth")
	}
	if o.UDPAcctAddr != "" {
		udp(o.UDPAcctAddr, "acct")
	}
	if o.RadSecAddr != "" {
		host, port, _ := splitHostPort(o.RadSecAddr)
		// RFC 6614 §2.1: RadSec carries auth and acct on one TLS connection.
		fmt.Fprintf(&b, `listen {
	%s = %s
	port = %d
	type = auth+acct
	proto = tcp
	virtual_server = peertest
	clients = radsec
	limit {
		max_connections = 0
		lifetime = 0
		idle_timeout = 0
	}
	tls {
%s		fragment_size = 8192
		require_client_cert = yes
		cache {
			enable = no
		}
		verify {
		}
	}
}
`, ipKey(host), host, port, tlsBlock(o.ServerCert, o.ServerKey, o.CA, "\t\t", ""))
		b.WriteString("clients radsec {\n")
		for i, c := range o.RadSecClients {
			fmt.Fprintf(&b, "\tclient c%d {\n\t\t%s = %s\n\t\tproto = tls\n\t\tsecret = %s\n\t\trequire_message_authenticator = no\n\t}\n",
				i, ipKey(c), c, quote(o.RadSecSecret))
		}
		b.WriteString("}\n")
	}
	ma := ""
	if o.ReplyMessageAuthenticator {
		ma = "\t\tupdate reply {\n\t\t\t&Message-Authenticator := 0x00\n\t\t}\n"
	}
	if o.CoAAddr != "" {
		host, port, _ := splitHostPort(o.CoAAddr)
		fmt.Fprintf(&b, `listen {
	type = coa
	%s = %s
	port = %d
	virtual_server = peertest-coa
}
server peertest-coa {
	# recv-coa runs for CoA-Request and Disconnect-Request alike; "reject"
	# answers with the NAK of the request's kind.
	recv-coa {
		coa_detail
		if (&User-Name == "silent") {
			do_not_respond
		}
		if (&User-Name == "nosession") {
			update reply {
				&Error-Cause := Session-Context-Not-Found
			}
			reject
		}
		ok
	}
	send-coa {
		ok
	}
}
`, ipKey(host), host, port)
	}
	acct := "\t\tok\n"
	if o.AccountingLog {
		acct = "\t\tdetail\n\t\tok\n"
	}
	fmt.Fprintf(&b, `server peertest {
	authorize {
		# RFC 5997: answer Status-Server.
		if (&Packet-Type == Status-Server) {
			ok
			return
		}
		suffix
		if (&control:Proxy-To-Realm) {
			return
		}
		files
		# MAB without a password (Service-Type = Call-Check style).
		if (&control:Tmp-String-0 == "peertest-mab" && !&User-Password && !&CHAP-Password && !&EAP-Message) {
			update control {
				&Auth-Type := Accept
			}
		}
		eap {
			ok = return
			updated = return
		}
		# CHAP (RFC 2865 §5.3) against the same Cleartext-Password as PAP.
		chap
		pap
	}
	authenticate {
		Auth-Type PAP {
			pap
		}
		Auth-Type CHAP {
			chap
		}
		Auth-Type EAP {
			eap {
				handled = 1
			}
			# Users-file reply items belong in the Access-Accept only.
			if (handled && (&reply:Packet-Type == Access-Challenge)) {
				attr_filter.access_challenge.post-auth
				handled
			}
		}
	}
	preacct {
	}
	accounting {
%[1]s	}
	post-auth {
%[2]s		Post-Auth-Type REJECT {
			# No VLAN or vendor attributes in an Access-Reject.
			attr_filter.access_reject
			eap
%[2]s		}
	}
}
`, acct, ma)
	return b.String()
}

// usersFile renders users in FreeRADIUS users-file syntax (first match wins,
// rlm_files).
func usersFile(users []User) string {
	var b strings.Builder
	b.WriteString("# Generated by mxedge peertest.\n")
	entry := func(key string, checks []string, reply []string) {
		b.WriteString(key)
		if len(checks) > 0 {
			b.WriteString(" " + strings.Join(checks, ", "))
		}
		b.WriteString("\n")
		for i, r := range reply {
			b.WriteString("\t" + r)
			if i < len(reply)-1 {
				b.WriteString(",")
			}
			b.WriteString("\n")
		}
		b.WriteString("\n")
	}
	var mab []User
	for _, u := range users {
		var checks []string
		switch {
		case u.Reject:
			checks = append(checks, "Auth-Type := Reject")
		case u.MAB:
			checks = append(checks, "Cleartext-Password := "+quote(u.Name), `Tmp-String-0 := "peertest-mab"`)
			mab = append(mab, u)
		case u.Password != "":
			checks = append(checks, "Cleartext-Password := "+quote(u.Password))
		}
		checks = append(checks, u.Check...)
		entry(quote(u.Name), checks, u.Reply)
	}
	// Call-Check by Calling-Station-Id, whatever User-Name format the NAS used.
	for _, u := range mab {
		re := macRegexp(u.Name)
		if re == "" {
			continue
		}
		entry("DEFAULT", []string{"Service-Type == Call-Check", "Calling-Station-Id =~ " + quote(re), "Auth-Type := Accept"}, u.Reply)
	}
	return b.String()
}

// macRegexp matches a MAC in any of the usual separator styles and either
// case, or returns "" when s is not 12 hex digits.
func macRegexp(s string) string {
	var hex []byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9', c >= 'a' && c <= 'f', c >= 'A' && c <= 'F':
			hex = append(hex, c)
		case c == '-' || c == ':' || c == '.':
		default:
			return ""
		}
	}
	if len(hex) != 12 {
		return ""
	}
	var b strings.Builder
	b.WriteString("^")
	for i, c := range hex {
		if i > 0 && i%2 == 0 {
			b.WriteString("[-:.]?")
		}
		lc, uc := strings.ToLower(string(c)), strings.ToUpper(string(c))
		if lc == uc {
			b.WriteString(lc)
		} else {
			b.WriteString("[" + lc + uc + "]")
		}
	}
	b.WriteString("$")
	return b.String()
}

// quote renders s as a FreeRADIUS double-quoted string.
func quote(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	return `"` + r.Replace(s) + `"`
}

// copyTree copies the regular files, directories and relative symlinks of
// src to dst, skipping the top-level names in skip.
func copyTree(src, dst string, skip map[string]bool) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		if top, _, _ := strings.Cut(rel, string(filepath.Separator)); skip[top] {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		target := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(target, 0o755)
		case d.Type()&fs.ModeSymlink != 0:
			link, err := os.Readlink(path)
			if err != nil {
				return err
			}
			_ = os.Remove(target)
			return os.Symlink(link, target)
		case d.Type().IsRegular():
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			return os.WriteFile(target, b, 0o644)
		}
		return nil
	})
}
