package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"mxedge/edge/config"
	"mxedge/pki"
	"mxedge/proxy/packet"
	"mxedge/proxy/radsec"
)

// ErrDoctor: at least one doctor check failed (exit non-zero).
var ErrDoctor = errors.New("doctor: checks failed")

// doctorEnv is what tests inject into doctor.
type doctorEnv struct {
	now func() time.Time
	// clockSynced reports whether the kernel considers the clock synchronized (NTP).
	clockSynced func() (bool, error)
	timeout     time.Duration
}

func defaultDoctorEnv() doctorEnv {
	return doctorEnv{now: time.Now, clockSynced: kernelClockSynced, timeout: 3 * time.Second}
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

func newDoctorCmd() *cobra.Command { return newDoctorCmdEnv(defaultDoctorEnv()) }

func newDoctorCmdEnv(env doctorEnv) *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "Check the configuration, certificates, files and the path to each upstream; one line per check",
		Long: `doctor checks what usually breaks a new installation, one PASS or FAIL line each with a hint:
the configuration (exactly what mxedge check and the daemon load), private key file permissions (0600),
each certificate (key matches, not expired, not expiring within 14 days), the system clock (NTP
synchronized), and for each upstream: name resolution, TCP reachability of its RadSec port (2083),
the TLS handshake with mxedge's client certificate and chain verification, and a Status-Server
exchange (which also checks the shared secret). It exits non-zero when any check fails.`,
		Args: cacheArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			d := &doctor{out: cmd.OutOrStdout(), env: env}
			d.run(cmd.Context(), path)
			if d.failed > 0 {
				fmt.Fprintf(d.out, "\n%d of %d checks failed\n", d.failed, d.checks)
				return fmt.Errorf("%w: %d of %d", ErrDoctor, d.failed, d.checks)
			}
			_, err := fmt.Fprintf(d.out, "\nall %d checks passed\n", d.checks)
			return err
		},
	}
	cmd.Flags().StringVarP(&path, "config", "c", DefaultConfigPath, "configuration file")
	return cmd
}

type doctor struct {
	out            io.Writer
	env            doctorEnv
	checks, failed int
}

func (d *doctor) pass(name, format string, a ...any) {
	d.checks++
	fmt.Fprintf(d.out, "PASS  %s: %s\n", name, fmt.Sprintf(format, a...))
}

func (d *doctor) fail(name, hint, format string, a ...any) {
	d.checks++
	d.failed++
	fmt.Fprintf(d.out, "FAIL  %s: %s\n", name, fmt.Sprintf(format, a...))
	if hint != "" {
		fmt.Fprintf(d.out, "      hint: %s\n", hint)
	}
}

func (d *doctor) run(ctx context.Context, path string) {
	raw, err := os.ReadFile(path)
	if err != nil {
		d.fail("config", "pass the file with --config", "%v", err)
		return
	}
	if _, err := config.Load(path); err != nil {
		msg := strings.ReplaceAll(err.Error(), "\n", "; ")
		d.fail("config", "fix the lines above; mxedge check --config "+path+" prints the same", "%s", msg)
	} else {
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
	var tcfg *tls.Config
	if t := f.Upstreams.TLS; t.Certificate != "" && t.Key != "" && t.CA != "" {
		tcfg = upstreamTLS(abs(t.CA), abs(t.Certificate), abs(t.Key))
	}
	res := d.resolver(f.Upstreams.DNS.Servers)
	for _, u := range f.Upstreams.Servers {
		d.upstream(ctx, u, tcfg, res)
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

// resolver uses the configured DNS servers, like the daemon, or the system's.
func (d *doctor) resolver(servers []string) *net.Resolver {
	if len(servers) == 0 {
		return net.DefaultResolver
	}
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var dl net.Dialer
		s := servers[0]
		if _, _, err := net.SplitHostPort(s); err != nil {
			s = net.JoinHostPort(s, "53")
		}
		return dl.DialContext(ctx, network, s)
	}}
}

func (d *doctor) upstream(ctx context.Context, u config.UpstreamFile, tcfg *tls.Config, res *net.Resolver) {
	host, portStr, err := net.SplitHostPort(u.Address)
	if err != nil {
		host, portStr = u.Address, "2083"
	}
	port, _ := strconv.Atoi(portStr)
	// DNS.
	var addrs []string
	check := "dns " + u.Name
	rctx, cancel := context.WithTimeout(ctx, d.env.timeout)
	defer cancel()
	switch {
	case net.ParseIP(host) != nil:
		addrs = []string{host}
		d.pass(check, "%s is an address, nothing to resolve", host)
	case u.SRV:
		_, srvs, err := res.LookupSRV(rctx, "radsec", "tcp", host)
		if err != nil || len(srvs) == 0 {
			d.fail(check, "check the name and upstreams.dns.servers; SRV needs _radsec._tcp."+host, "SRV _radsec._tcp.%s: %v", host, err)
			return
		}
		host, port = strings.TrimSuffix(srvs[0].Target, "."), int(srvs[0].Port)
		addrs, err = res.LookupHost(rctx, host)
		if err != nil {
			d.fail(check, "check the SRV target's A/AAAA records", "%s: %v", host, err)
			return
		}
		d.pass(check, "_radsec._tcp.%s -> %s:%d -> %s", strings.TrimSuffix(u.Address, ":"+portStr), host, port, strings.Join(addrs, ", "))
	default:
		addrs, err = res.LookupHost(rctx, host)
		if err != nil {
			d.fail(check, "check the name and the DNS servers (upstreams.dns.servers or /etc/resolv.conf)", "%s: %v", host, err)
			return
		}
		d.pass(check, "%s -> %s", host, strings.Join(addrs, ", "))
	}
	// TCP.
	target := net.JoinHostPort(addrs[0], strconv.Itoa(port))
	check = "tcp " + u.Name
	dl := net.Dialer{Timeout: d.env.timeout}
	nc, err := dl.DialContext(ctx, "tcp", target)
	if err != nil {
		d.fail(check, fmt.Sprintf("allow outbound TCP %d to %s in the firewall; is the upstream up?", port, addrs[0]), "%s: %v", target, err)
		return
	}
	d.pass(check, "connected to %s", target)
	// TLS.
	check = "tls " + u.Name
	if tcfg == nil {
		nc.Close()
		d.fail(check, "fix upstreams.tls first", "no usable client certificate, key and CA")
		return
	}
	cfg := tcfg.Clone()
	cfg.ServerName = host
	if u.ServerName != "" {
		cfg.ServerName = u.ServerName
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
	check = "radsec " + u.Name
	secret := u.Secret
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
