package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
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
	"time"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"mxedge/edge/config"
	"mxedge/edge/mgmt"
	"mxedge/pki"
	"mxedge/proxy/packet"
	"mxedge/proxy/radsec"
	"mxedge/proxy/resolve"
)

// ErrDoctor: at least one doctor check failed (exit non-zero).
var ErrDoctor = errors.New("doctor: checks failed")

// doctorEnv is what tests inject into doctor.
type doctorEnv struct {
	now func() time.Time
	// clockSynced reports whether the kernel considers the clock synchronized (NTP).
	clockSynced func() (bool, error)
	timeout     time.Duration
	// stateDir is where a registered edge keeps its regfile (mgmt.DefaultStateDir).
	stateDir string
	// resolvConf and hostsFile are the resolver's files (resolve.DefaultResolvConf, DefaultHostsFile).
	resolvConf, hostsFile string
}

func defaultDoctorEnv() doctorEnv {
	return doctorEnv{now: time.Now, clockSynced: kernelClockSynced, timeout: 3 * time.Second, stateDir: mgmt.DefaultStateDir}
}

// kernelClockSynced asks adjtimex(2): TIME_ERROR (5) means the clock is not synchronized (no NTP
// daemon disciplines it), so certificate validity checks against it are unreliable.
func kernelClockSynced() (bool, error) {
	var tx syscall.Timex
	state, err := syscall.Adjtimex(&tx)
	if err != nil {
		return false, err
	}
	const timeError = 5
	return state != timeError, nil
}

// alertWait is how long doctor waits for a TLS 1.3 server to reject the client certificate.
const alertWait = 300 * time.Millisecond

// minCertDays is how close to expiry a certificate fails the check.
const minCertDays = 14

// doctorKinds are the names --skip takes: the first word of the checks' names ("upstream" is
// dns, tcp, tls and radsec together).
var doctorKinds = []string{"config", "clock", "registration", "permissions", "certificate", "port", "dns", "tcp", "tls", "radsec", "upstream"}

func newDoctorCmd() *cobra.Command { return newDoctorCmdEnv(defaultDoctorEnv()) }

func newDoctorCmdEnv(env doctorEnv) *cobra.Command {
	var path, format string
	var skip []string
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "Check the configuration, certificates, files, ports and the path to each upstream; one line per check",
		Long: `doctor checks what usually breaks a new installation, one PASS, WARN, FAIL or SKIP line each with a
hint. It reads the configuration the daemon runs (on a registered edge the cloud configuration its
regfile names, unless --config says otherwise) and checks: the configuration (exactly what mxedge
check and the daemon load; warnings are WARN), the registration files' permissions (0600), private
key and secret file permissions (0600), each certificate (key matches, not expired, not expiring
within 14 days), the system clock (NTP synchronized), whether each RADIUS, RadSec and metrics
listen port is free (or held by mxedge itself), and for each upstream, through the daemon's own
resolver (upstreams.dns.servers, else /etc/resolv.conf, and /etc/hosts): name resolution, TCP
reachability of its RadSec port, the TLS handshake with mxedge's client certificate and chain
verification, and a Status-Server exchange (which also checks the shared secret).

--skip KIND[,KIND] leaves out checks that do not apply (e.g. clock in a container whose clock the
host disciplines): ` + strings.Join(doctorKinds, ", ") + `.
-o json or -o yaml prints the mxedge.doctor.v1 document (docs/operations.md).

Exit status: 0 when no check failed (warnings allowed), 1 when any check failed, 2 on a usage error.`,
		Example: `  mxedge doctor
  mxedge doctor --skip clock -o json`,
		Args: cacheArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			enc, err := reportEncoder(format)
			if err != nil {
				return err
			}
			skipped := map[string]bool{}
			for _, k := range skip {
				if !slices.Contains(doctorKinds, k) {
					return fmt.Errorf("%w: --skip %q is not one of %s", ErrUsage, k, strings.Join(doctorKinds, ", "))
				}
				skipped[k] = true
			}
			path, reg, err := mgmt.ConfigPath(env.stateDir, path, cmd.Flags().Changed("config"))
			if err != nil {
				return err
			}
			d := &doctor{env: env, skip: skipped}
			d.run(cmd.Context(), path, reg)
			r := doctorReport{Schema: doctorSchema, Config: path, Checks: d.checks}
			for _, c := range d.checks {
				switch c.Status {
				case statusOK:
					r.Summary.OK++
				case statusWarn:
					r.Summary.Warn++
				case statusFail:
					r.Summary.Fail++
				case statusSkipped:
					r.Summary.Skipped++
				}
			}
			out := cmd.OutOrStdout()
			if enc != nil {
				if err := enc(out, r); err != nil {
					return err
				}
			} else {
				r.text(out)
			}
			if r.Summary.Fail > 0 {
				return fmt.Errorf("%w: %d of %d", ErrDoctor, r.Summary.Fail, len(r.Checks)-r.Summary.Skipped)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&path, "config", "c", DefaultConfigPath, "configuration file (default: the cloud configuration of a registered edge, else "+DefaultConfigPath+")")
	cmd.Flags().StringSliceVar(&skip, "skip", nil, "leave out these kinds of checks: "+strings.Join(doctorKinds, ", "))
	cmd.Flags().StringVarP(&format, "output", "o", "text", "output format: text, json or yaml")
	return cmd
}

// Check statuses of mxedge.doctor.v1.
const (
	statusOK      = "ok"
	statusWarn    = "warn"
	statusFail    = "fail"
	statusSkipped = "skipped"
)

// doctorCheck is one check's result.
type doctorCheck struct {
	Name   string `json:"name" yaml:"name"`
	Status string `json:"status" yaml:"status"` // ok, warn, fail, skipped
	Detail string `json:"detail" yaml:"detail"`
	Hint   string `json:"hint" yaml:"hint"` // what to do; "" when ok
}

// doctorReport is `mxedge doctor -o json`.
type doctorReport struct {
	Schema  string        `json:"schema" yaml:"schema"`
	Config  string        `json:"config" yaml:"config"` // the file checked
	Checks  []doctorCheck `json:"checks" yaml:"checks"`
	Summary struct {
		OK      int `json:"ok" yaml:"ok"`
		Warn    int `json:"warn" yaml:"warn"`
		Fail    int `json:"fail" yaml:"fail"`
		Skipped int `json:"skipped" yaml:"skipped"`
	} `json:"summary" yaml:"summary"`
}

var statusWords = map[string]string{statusOK: "PASS", statusWarn: "WARN", statusFail: "FAIL", statusSkipped: "SKIP"}

func (r doctorReport) text(w io.Writer) {
	for _, c := range r.Checks {
		fmt.Fprintf(w, "%s  %s: %s\n", statusWords[c.Status], c.Name, c.Detail)
		if c.Hint != "" && c.Status != statusOK && c.Status != statusSkipped {
			fmt.Fprintf(w, "      hint: %s\n", c.Hint)
		}
	}
	ran := len(r.Checks) - r.Summary.Skipped
	switch {
	case r.Summary.Fail > 0:
		fmt.Fprintf(w, "\n%d of %d checks failed\n", r.Summary.Fail, ran)
	default:
		fmt.Fprintf(w, "\nall %d checks passed", ran)
		if r.Summary.Warn > 0 {
			fmt.Fprintf(w, ", %d with warnings", r.Summary.Warn)
		}
		if r.Summary.Skipped > 0 {
			fmt.Fprintf(w, ", %d skipped", r.Summary.Skipped)
		}
		fmt.Fprintln(w)
	}
}

type doctor struct {
	env    doctorEnv
	skip   map[string]bool
	checks []doctorCheck
}

// skipped records name as skipped when its kind is in --skip.
func (d *doctor) skipped(name string) bool {
	kind, _, _ := strings.Cut(name, " ")
	upstream := kind == "dns" || kind == "tcp" || kind == "tls" || kind == "radsec"
	if d.skip[kind] || upstream && d.skip["upstream"] {
		d.checks = append(d.checks, doctorCheck{Name: name, Status: statusSkipped, Detail: "--skip " + kind})
		return true
	}
	return false
}

func (d *doctor) add(status, name, hint, format string, a ...any) {
	if d.skipped(name) {
		return
	}
	d.checks = append(d.checks, doctorCheck{Name: name, Status: status, Detail: fmt.Sprintf(format, a...), Hint: hint})
}

func (d *doctor) pass(name, format string, a ...any) { d.add(statusOK, name, "", format, a...) }

func (d *doctor) warn(name, hint, format string, a ...any) {
	d.add(statusWarn, name, hint, format, a...)
}

func (d *doctor) fail(name, hint, format string, a ...any) {
	d.add(statusFail, name, hint, format, a...)
}

// doctorUpstream is one upstream as the daemon would dial it.
type doctorUpstream struct {
	name, host, serverName, secret string
	port                           uint16
	srv                            bool
	tls                            *tls.Config // nil: no usable client certificate, key and CA
}

func (d *doctor) run(ctx context.Context, path string, reg *mgmt.Registration) {
	raw, err := os.ReadFile(path)
	if err != nil {
		d.fail("config", "pass the file with --config", "%v", err)
		return
	}
	cfg, err := config.Load(path)
	switch {
	case err != nil:
		msg := strings.ReplaceAll(err.Error(), "\n", "; ")
		d.fail("config", "fix the lines above; mxedge check --config "+path+" prints the same", "%s", msg)
	case len(cfg.Warnings()) > 0:
		ws := make([]string, len(cfg.Warnings()))
		for i, w := range cfg.Warnings() {
			ws[i] = w.Error()
		}
		d.warn("config", "mxedge check --strict --config "+path+" fails on these", "%s is valid, with warnings: %s", path, strings.Join(ws, "; "))
	default:
		d.pass("config", "%s is valid", path)
	}
	// The remaining checks read the file leniently, so that one bad line does not hide the rest.
	var f config.File
	if err := yaml.Unmarshal(raw, &f); err != nil {
		return
	}
	dir := filepath.Dir(path)
	abs := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(dir, p)
	}
	d.clock()
	if reg != nil {
		d.keyMode("registration regfile", mgmt.RegfilePath(d.env.stateDir))
		if reg.Key != "" {
			d.keyMode("registration key", reg.Key)
		}
	}
	type pair struct{ name, cert, key string }
	pairs := []pair{{"upstreams.tls", f.Upstreams.TLS.Certificate, f.Upstreams.TLS.Key}}
	if len(f.RadSec.Listen) > 0 {
		pairs = append(pairs, pair{"radsec.tls", f.RadSec.TLS.Certificate, f.RadSec.TLS.Key})
	}
	if t := f.Survivability.EAPTLS; t.Certificate != "" {
		pairs = append(pairs, pair{"survivability.eap_tls", t.Certificate, t.Key})
	}
	for _, p := range pairs {
		if p.key != "" {
			d.keyMode("permissions "+p.name+".key", abs(p.key))
		}
		if p.cert != "" && p.key != "" {
			d.certificate("certificate "+p.name, abs(p.cert), abs(p.key))
		}
	}
	for i, c := range f.Clients {
		if c.SecretFile != "" {
			d.keyMode(fmt.Sprintf("permissions clients[%d].secret_file", i), abs(c.SecretFile))
		}
	}
	d.ports(f)
	// The upstreams as the daemon dials them: from the validated configuration when it loads (the
	// same tls.Config, name and port), else read leniently from the file.
	var ups []doctorUpstream
	dns := resolve.Options{Servers: f.Upstreams.DNS.Servers, Timeout: time.Duration(f.Upstreams.DNS.Timeout)}
	if cfg != nil {
		b := cfg.Built()
		dns = resolve.Options{Servers: b.DNS.Servers, Timeout: b.DNS.Timeout}
		for _, u := range b.Pool.Upstreams {
			ups = append(ups, doctorUpstream{name: u.Name, host: u.Host, port: u.Port, srv: u.SRV, serverName: u.ServerName,
				secret: string(u.Secret), tls: u.TLS})
		}
	} else {
		var tcfg *tls.Config
		if t := f.Upstreams.TLS; t.Certificate != "" && t.Key != "" && t.CA != "" {
			tcfg = upstreamTLS(abs(t.CA), abs(t.Certificate), abs(t.Key))
		}
		for _, u := range f.Upstreams.Servers {
			host, ps, err := net.SplitHostPort(u.Address)
			if err != nil {
				host, ps = u.Address, "2083"
			}
			port, _ := strconv.ParseUint(ps, 10, 16)
			ups = append(ups, doctorUpstream{name: u.Name, host: host, port: uint16(port), srv: u.SRV, serverName: u.ServerName,
				secret: u.Secret, tls: tcfg})
		}
	}
	dns.ResolvConf, dns.HostsFile = d.env.resolvConf, d.env.hostsFile
	res, err := resolve.New(dns)
	if err != nil {
		for _, u := range ups {
			d.fail("dns "+u.name, "check upstreams.dns.servers, or /etc/resolv.conf", "the daemon's resolver: %v", err)
		}
		return
	}
	for _, u := range ups {
		d.upstream(ctx, u, res)
	}
}

func (d *doctor) clock() {
	ok, err := d.env.clockSynced()
	switch {
	case err != nil:
		d.fail("clock", "run chronyd or systemd-timesyncd", "cannot read the kernel clock state: %v", err)
	case !ok:
		d.fail("clock", "enable NTP (chronyd, systemd-timesyncd): TLS certificate validity depends on the clock",
			"system clock is not synchronized (local time %s)", d.env.now().UTC().Format(time.RFC3339))
	default:
		d.pass("clock", "system clock is synchronized")
	}
}

// keyMode fails a secret file readable or writable by group or others.
func (d *doctor) keyMode(name, path string) {
	fi, err := os.Stat(path)
	if err != nil {
		d.fail(name, "check the path in the configuration", "%v", err)
		return
	}
	if m := fi.Mode().Perm(); m&0o077 != 0 {
		d.fail(name, fmt.Sprintf("chmod 600 %s (owner mxedge)", path), "%s is mode %04o: readable by others", path, m)
		return
	}
	d.pass(name, "%s is mode %04o", path, fi.Mode().Perm())
}

func (d *doctor) certificate(name, certPath, keyPath string) {
	pair, err := pki.LoadKeyPair(certPath, keyPath)
	if errors.Is(err, pki.ErrKeyMismatch) {
		d.fail(name, "the key and certificate files are from different enrollments: re-issue or pick the matching pair", "%v", err)
		return
	}
	if err != nil {
		d.fail(name, "check the paths and that the files are PEM", "%v", err)
		return
	}
	leaf := pair.Leaf
	now := d.env.now()
	days := int(leaf.NotAfter.Sub(now).Hours() / 24)
	switch {
	case now.After(leaf.NotAfter):
		d.fail(name, "renew it (mxedge pki csr, then install the signed certificate)", "%s expired on %s", certPath, leaf.NotAfter.UTC().Format(time.DateOnly))
	case now.Before(leaf.NotBefore):
		d.fail(name, "check the system clock, or wait", "%s is not valid before %s", certPath, leaf.NotBefore.UTC().Format(time.RFC3339))
	case days < minCertDays:
		d.fail(name, "renew it now (mxedge pki csr)", "%s expires in %d days (%s)", certPath, days, leaf.NotAfter.UTC().Format(time.DateOnly))
	default:
		d.pass(name, "%q, key matches, expires %s (%d days)", leaf.Subject.CommonName, leaf.NotAfter.UTC().Format(time.DateOnly), days)
	}
}

// upstreamTLS loads the upstream client TLS material; nil when it does not load (reported by the
// config and certificate checks).
func upstreamTLS(ca, cert, key string) *tls.Config {
	pair, err := pki.LoadKeyPair(cert, key)
	if err != nil {
		return nil
	}
	cas, err := pki.LoadCertificates(ca)
	if err != nil {
		return nil
	}
	pool := x509.NewCertPool()
	for _, c := range cas {
		pool.AddCert(c)
	}
	return &tls.Config{Certificates: []tls.Certificate{pair}, RootCAs: pool, MinVersion: tls.VersionTLS12}
}

func (d *doctor) upstream(ctx context.Context, u doctorUpstream, res *resolve.Resolver) {
	// DNS, through the daemon's resolver (proxy/resolve): configured servers or resolv.conf, the
	// hosts file, SRV with its A/AAAA fallback, exactly as the pool resolves.
	check := "dns " + u.name
	rctx, cancel := context.WithTimeout(ctx, d.env.timeout)
	targets, err := res.Resolve(rctx, u.host, u.port, u.srv)
	cancel()
	if err != nil || len(targets) == 0 {
		hint := "check the name and the DNS servers (upstreams.dns.servers or /etc/resolv.conf)"
		if u.srv {
			hint += "; SRV needs _radsec._tcp." + u.host
		}
		d.fail(check, hint, "%s (servers %s): %v", u.host, strings.Join(res.Servers(), ", "), err)
		return
	}
	addrs := make([]string, len(targets))
	for i, t := range targets {
		addrs[i] = t.Addr.String()
	}
	if _, err := netip.ParseAddr(strings.Trim(u.host, "[]")); err == nil {
		d.pass(check, "%s is an address, nothing to resolve", u.host)
	} else {
		d.pass(check, "%s -> %s", u.host, strings.Join(addrs, ", "))
	}
	// TCP.
	target := addrs[0]
	check = "tcp " + u.name
	dl := net.Dialer{Timeout: d.env.timeout}
	if d.skipped(check) {
		for _, name := range []string{"tls " + u.name, "radsec " + u.name} {
			d.checks = append(d.checks, doctorCheck{Name: name, Status: statusSkipped, Detail: "needs tcp (--skip tcp)"})
		}
		return
	}
	nc, err := dl.DialContext(ctx, "tcp", target)
	if err != nil {
		d.fail(check, fmt.Sprintf("allow outbound TCP %d to %s in the firewall; is the upstream up?", targets[0].Addr.Port(), targets[0].Addr.Addr()), "%s: %v", target, err)
		return
	}
	d.pass(check, "connected to %s", target)
	// TLS.
	check = "tls " + u.name
	if u.tls == nil {
		nc.Close()
		d.fail(check, "fix upstreams.tls first", "no usable client certificate, key and CA")
		return
	}
	cfg := u.tls.Clone()
	cfg.ServerName = targets[0].Host
	if u.serverName != "" {
		cfg.ServerName = u.serverName
	}
	tc := tls.Client(nc, cfg)
	hctx, hcancel := context.WithTimeout(ctx, d.env.timeout)
	err = tc.HandshakeContext(hctx)
	hcancel()
	if err != nil {
		tc.Close()
		d.fail(check, tlsHint(err), "%s: %v", target, err)
		return
	}
	st := tc.ConnectionState()
	if st.Version == tls.VersionTLS13 {
		// In TLS 1.3 the client's handshake ends before the server has checked the client
		// certificate (RFC 8446 §4.4.2); a server that rejects it says so with an alert right
		// after. A RadSec server never speaks first, so a short read sees that alert or nothing.
		_ = tc.SetReadDeadline(time.Now().Add(alertWait))
		var one [1]byte
		_, rerr := tc.Read(one[:])
		_ = tc.SetReadDeadline(time.Time{})
		if rerr != nil && !errors.Is(rerr, os.ErrDeadlineExceeded) {
			tc.Close()
			d.fail(check, tlsHint(rerr), "%s: %v", target, rerr)
			return
		}
	}
	leaf := st.PeerCertificates[0]
	root := st.VerifiedChains[0][len(st.VerifiedChains[0])-1]
	d.pass(check, "%s, server %q verified by %q, server certificate expires %s", tls.VersionName(st.Version),
		leaf.Subject.CommonName, root.Subject.CommonName, leaf.NotAfter.UTC().Format(time.DateOnly))
	// RadSec Status-Server: proves the upstream speaks RADIUS to us and that the secret matches.
	check = "radsec " + u.name
	if d.skipped(check) {
		tc.Close()
		return
	}
	secret := u.secret
	if secret == "" {
		secret = radsec.DefaultSecret
	}
	if err := statusServer(ctx, tc, []byte(secret), d.env.timeout); err != nil {
		hint := "the upstream accepted TLS but does not answer Status-Server (RFC 5997): check its RadSec client entry for this edge"
		var ae tls.AlertError
		switch {
		case errors.Is(err, radsec.ErrBadReply):
			hint = "the answer does not verify: the upstream uses another shared secret (upstreams.servers[].secret)"
		case errors.As(err, &ae), strings.Contains(err.Error(), "remote error"):
			hint = tlsHint(err)
		}
		d.fail(check, hint, "%v", err)
		return
	}
	d.pass(check, "Status-Server answered")
}

// statusServer sends one Status-Server over an established TLS connection and closes it.
func statusServer(ctx context.Context, nc net.Conn, secret []byte, timeout time.Duration) error {
	c := radsec.NewConn(nc, radsec.ConnOptions{Secret: secret, DeadAfter: timeout})
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(rctx) }()
	defer func() { c.Close(); cancel(); <-done }()
	res := make(chan error, 1)
	if err := c.Exchange(func(dst []byte, id uint8) (packet.Packet, error) { return radsec.StatusServer(dst, id, secret) },
		time.Now().Add(timeout), func(_ packet.Packet, err error) { res <- err }); err != nil {
		return err
	}
	select {
	case err := <-res:
		// The request fails with "connection closed"; why it closed (a TLS alert from a server
		// that rejected our certificate after a TLS 1.3 handshake) is the connection's error.
		if err != nil && !errors.Is(err, radsec.ErrBadReply) && !errors.Is(err, radsec.ErrTimeout) {
			select {
			case <-c.Done():
				if cerr := c.Err(); cerr != nil && !errors.Is(cerr, err) {
					err = fmt.Errorf("%w: %w", err, cerr)
				}
			case <-time.After(timeout):
			}
		}
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// tlsHint explains the usual TLS failures.
func tlsHint(err error) string {
	var ua x509.UnknownAuthorityError
	var hn x509.HostnameError
	var ci x509.CertificateInvalidError
	var ae tls.AlertError
	switch {
	case errors.As(err, &ua):
		return "upstreams.tls.ca does not contain the CA that signed the upstream's certificate"
	case errors.As(err, &hn):
		return "the upstream's certificate does not name this address: set upstreams.servers[].server_name"
	case errors.As(err, &ci) && ci.Reason == x509.Expired:
		return "the upstream's certificate is expired or not yet valid: check this system's clock, then the upstream"
	case strings.Contains(err.Error(), "remote error: tls: expired certificate"):
		return "the upstream rejected mxedge's client certificate as expired: renew it, and check this system's clock"
	case errors.As(err, &ae), strings.Contains(err.Error(), "remote error"):
		return "the upstream rejected mxedge's client certificate: is this edge's certificate enrolled with the cloud NAC?"
	}
	return "the upstream is not a RadSec (TLS) server on this port, or the TLS versions do not overlap"
}
