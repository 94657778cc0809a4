package cli

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"mxedge/cache"
	"mxedge/proxy/packet"
	"mxedge/proxy/radsec"
	"mxedge/survivability/eaptls"
)

// testAuthFlags are the options of `mxedge test auth`.
type testAuthFlags struct {
	server, secret         string
	radsec                 bool
	ca, cert, key, name    string
	user, password, mac    string
	status, eapTLS         bool
	identity               string
	anonymous              bool
	eapCA, eapCert, eapKey string
	nasID, calling, called string
	timeout                time.Duration
	retries                int
	verbose                bool
	acct, sessionID        string        // --acct start|interim|stop, --session-id
	sessionTime            time.Duration // --session-time (Interim, Stop)
	attrs                  []string      // --attr, radclient syntax
	extra                  []extraAttr   // parsed from attrs by mode
}

// extraAttr is one --attr: a standard attribute (vendor 0) or a vendor sub-attribute, and its wire
// value.
type extraAttr struct {
	vendor uint32
	code   uint8
	value  []byte
}

// Errors of test auth. A reject is not a failure of the tool, but the exit status says it.
var (
	// ErrRejected: the server answered Access-Reject (exit non-zero, like radtest).
	ErrRejected = errors.New("test auth: access rejected")
	// ErrNoAnswer: nothing valid came back within the timeout.
	ErrNoAnswer = errors.New("test auth: no answer")
)

func newTestCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "test",
		Short: "Diagnostics that send real traffic",
		Args:  cacheArgs(cobra.NoArgs),
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newTestAuthCmd(), newTestCoACmd())
	return cmd
}

func newTestAuthCmd() *cobra.Command {
	f := &testAuthFlags{}
	cmd := &cobra.Command{
		Use:   "auth",
		Short: "Send one authentication (PAP, MAB, Status-Server or EAP-TLS) and print the reply by attribute name",
		Long: `auth is a radtest-style client. It sends one request to a RADIUS server over UDP (--server
host:port --secret S) or to a RadSec server over TLS (--radsec --ca --cert --key; the secret defaults to
"radsec", RFC 6614 §2.3) and prints the reply code and attributes by name. Every request carries
Message-Authenticator, and replies are checked (Response Authenticator, Message-Authenticator).

  PAP          --user NAME --password PW
  MAB          --mac 02:00:00:00:00:01  (User-Name = User-Password = the MAC, Service-Type = Call-Check)
  Status-Server --status                 (RFC 5997)
  EAP-TLS      --eap-tls --identity NAME [--anonymous] with a client certificate: --eap-cert/--eap-key
               (default --cert/--key) and the server's CA in --eap-ca (default --ca)

PAP, MAB, EAP-TLS and accounting requests carry any further attribute given with --attr, by its
dictionary name and in radclient's syntax: -a 'Called-Station-Id = "aa-bb-cc-dd-ee-ff:corp"'
-a 'Cisco-AVPair = "audit-session-id=1"' -a 'Tunnel-Private-Group-Id:1 = 41'. One the tool sets by
default (NAS-Port-Type, NAS-Identifier, ...) replaces the default.

Accounting: --acct start|interim|stop sends an Accounting-Request (RFC 2866) for --user or --mac
(User-Name, and Calling-Station-Id from the MAC) to 127.0.0.1:1813 unless --server says otherwise,
with Acct-Session-Id (--session-id, random by default), Acct-Session-Time (--session-time, interim
and stop) and Acct-Terminate-Cause = User-Request on stop unless -a sets it.

Exit status:
  0  Access-Accept, Accounting-Response, or any answer to --status
  1  Access-Reject
  2  usage: bad flags or attribute
  3  timeout: no valid answer within --timeout (a wrong secret looks like this over UDP)
  4  any other error: ICMP port unreachable, unreadable certificate or key, TLS handshake failure,
     a reply that does not verify`,
		Args: cacheArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.acct != "" && !cmd.Flags().Changed("server") {
				f.server = "127.0.0.1:1813"
			}
			return testAuthExit(runTestAuth(cmd.Context(), cmd.OutOrStdout(), f))
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.server, "server", "127.0.0.1:1812", "server host:port (RadSec: port 2083)")
	fl.StringVar(&f.secret, "secret", "", `shared secret (RadSec default "radsec")`)
	fl.BoolVar(&f.radsec, "radsec", false, "use RadSec (RADIUS over TLS, RFC 6614)")
	fl.StringVar(&f.ca, "ca", "", "CA bundle (PEM) to verify the RadSec server, and the EAP-TLS server by default")
	fl.StringVar(&f.cert, "cert", "", "client certificate (PEM) for RadSec, and EAP-TLS by default")
	fl.StringVar(&f.key, "key", "", "client key (PEM) for --cert")
	fl.StringVar(&f.name, "server-name", "", "name the RadSec server certificate must carry (default: the --server host)")
	fl.StringVar(&f.user, "user", "", "PAP User-Name")
	fl.StringVar(&f.password, "password", "", "PAP User-Password")
	fl.StringVar(&f.mac, "mac", "", "MAB: the client MAC address, any notation")
	fl.BoolVar(&f.status, "status", false, "send Status-Server")
	fl.BoolVar(&f.eapTLS, "eap-tls", false, "authenticate with EAP-TLS")
	fl.StringVar(&f.identity, "identity", "", "EAP identity (the certificate identifies the client)")
	fl.BoolVar(&f.anonymous, "anonymous", false, "send anonymous@REALM as the outer identity (realm from --identity)")
	fl.StringVar(&f.eapCA, "eap-ca", "", "CA bundle to verify the EAP-TLS server (default --ca)")
	fl.StringVar(&f.eapCert, "eap-cert", "", "EAP-TLS client certificate (default --cert)")
	fl.StringVar(&f.eapKey, "eap-key", "", "EAP-TLS client key (default --key)")
	fl.StringVar(&f.nasID, "nas-id", "mxedge-test", "NAS-Identifier to send")
	fl.StringVar(&f.calling, "calling-station-id", "", "Calling-Station-Id to send (MAB: default the MAC)")
	fl.StringVar(&f.called, "called-station-id", "", "Called-Station-Id to send")
	fl.DurationVar(&f.timeout, "timeout", 3*time.Second, "wait for each answer (UDP: split across retries)")
	fl.IntVar(&f.retries, "retries", 2, "UDP retransmissions")
	fl.BoolVarP(&f.verbose, "verbose", "v", false, "print the round-trip time and the requests sent")
	fl.StringVar(&f.acct, "acct", "", "send an Accounting-Request: start, interim or stop (default server port 1813)")
	fl.StringVar(&f.sessionID, "session-id", "", "Acct-Session-Id (default: random)")
	fl.DurationVar(&f.sessionTime, "session-time", 0, "Acct-Session-Time of interim and stop")
	_ = cmd.RegisterFlagCompletionFunc("acct", fixedCompletions("start", "interim", "stop"))
	fl.StringArrayVarP(&f.attrs, "attr", "a", nil,
		`add an attribute to the request by dictionary name, as radclient reads it ("Name = value", "Name:tag = value"); repeatable`)
	return cmd
}

// mode returns which request to send, or a usage error.
func (f *testAuthFlags) mode() (string, error) {
	var modes []string
	if f.user != "" || f.password != "" {
		modes = append(modes, "pap")
	}
	if f.mac != "" {
		modes = append(modes, "mab")
	}
	if f.status {
		modes = append(modes, "status")
	}
	if f.eapTLS {
		modes = append(modes, "eap-tls")
	}
	if f.acct != "" {
		// --user or --mac name the session's user: accounting is its own mode.
		modes = slices.DeleteFunc(modes, func(m string) bool { return m == "pap" || m == "mab" })
		modes = append(modes, "acct")
	}
	switch {
	case len(modes) == 0:
		return "", fmt.Errorf("%w: choose one of --user/--password (PAP), --mac (MAB), --status, --eap-tls, --acct", ErrUsage)
	case len(modes) > 1:
		return "", fmt.Errorf("%w: choose only one of PAP, MAB, Status-Server, EAP-TLS, accounting (got %s)", ErrUsage, strings.Join(modes, ", "))
	case modes[0] == "pap" && f.user == "":
		return "", fmt.Errorf("%w: PAP needs --user", ErrUsage)
	case modes[0] == "eap-tls" && f.identity == "":
		return "", fmt.Errorf("%w: EAP-TLS needs --identity", ErrUsage)
	case modes[0] == "acct":
		if err := f.checkAcct(); err != nil {
			return "", err
		}
	}
	if f.radsec && (f.cert == "" || f.key == "" || f.ca == "") {
		return "", fmt.Errorf("%w: --radsec needs --ca, --cert and --key", ErrUsage)
	}
	if !f.radsec && f.secret == "" {
		return "", fmt.Errorf("%w: RADIUS over UDP needs --secret", ErrUsage)
	}
	if f.timeout <= 0 || f.retries < 0 {
		return "", fmt.Errorf("%w: --timeout must be positive and --retries not negative", ErrUsage)
	}
	f.extra = f.extra[:0]
	for _, s := range f.attrs {
		def, v, err := packet.Builtin().ParseAttr(nil, s)
		switch {
		case err != nil:
			return "", fmt.Errorf("%w: --attr: %w", ErrUsage, err)
		case def.Encrypt != packet.SchemeNone:
			return "", fmt.Errorf("%w: --attr %s: attributes hidden with the secret are not supported (use --password)", ErrUsage, def.Name)
		case def.Vendor == 0 && def.Code >= 241 && def.Code <= 246:
			return "", fmt.Errorf("%w: --attr %s: extended attributes are not supported", ErrUsage, def.Name)
		case len(v) > 247 || def.Vendor == 0 && len(v) > 253:
			return "", fmt.Errorf("%w: --attr %s: value longer than an attribute holds", ErrUsage, def.Name)
		}
		f.extra = append(f.extra, extraAttr{vendor: def.Vendor, code: def.Code, value: v})
	}
	return modes[0], nil
}

// addExtra appends the --attr attributes.
func (f *testAuthFlags) addExtra(b *packet.Builder) {
	for _, a := range f.extra {
		if a.vendor != 0 {
			b.AddVSA(a.vendor, a.code, a.value)
		} else {
			b.Add(a.code, a.value)
		}
	}
}

func runTestAuth(ctx context.Context, out io.Writer, f *testAuthFlags) error {
	mode, err := f.mode()
	if err != nil {
		return err
	}
	var ex exchanger
	if f.radsec {
		ex, err = dialRadSec(ctx, f)
	} else {
		ex, err = dialUDP(f)
	}
	if err != nil {
		return err
	}
	defer ex.close()
	var resp, req packet.Packet
	var extra []string
	start := time.Now()
	switch mode {
	case "status":
		req, resp, err = ex.exchange(ctx, func(dst []byte, id uint8) (packet.Packet, error) {
			return radsec.StatusServer(dst, id, ex.secret())
		})
	case "pap", "mab":
		req, resp, err = ex.exchange(ctx, func(dst []byte, id uint8) (packet.Packet, error) {
			return f.buildPassword(dst, id, mode, ex.secret())
		})
	case "eap-tls":
		req, resp, extra, err = runEAPTLS(ctx, ex, f)
	case "acct":
		req, resp, err = ex.exchange(ctx, func(dst []byte, id uint8) (packet.Packet, error) {
			return f.buildAccounting(dst, id, ex.secret())
		})
	}
	if err != nil {
		return err
	}
	if f.verbose {
		fmt.Fprintf(out, "Sent %s (id %d) to %s\n", req.Code(), req.ID(), ex.peer())
	}
	fmt.Fprintf(out, "Received %s from %s", resp.Code(), ex.peer())
	if f.verbose {
		fmt.Fprintf(out, " (id %d) in %s", resp.ID(), time.Since(start).Round(10*time.Microsecond))
	}
	fmt.Fprintln(out)
	writeReplyAttrs(out, resp)
	for _, l := range extra {
		fmt.Fprintln(out, l)
	}
	if resp.Code() == packet.CodeAccessReject {
		return ErrRejected
	}
	return nil
}

// buildPassword builds a PAP or MAB Access-Request. Message-Authenticator comes first, as
// BlastRADIUS mitigations (and RFC 3579 §3.2 readers) prefer.
func (f *testAuthFlags) buildPassword(dst []byte, id uint8, mode string, secret []byte) (packet.Packet, error) {
	var auth [packet.AuthLen]byte
	if _, err := rand.Read(auth[:]); err != nil {
		return nil, err
	}
	user, pw, calling := f.user, f.password, f.calling
	b := packet.New(dst, packet.CodeAccessRequest, id, auth[:])
	b.AddMA()
	if mode == "mab" {
		mac, err := cache.NormalizeMAC(f.mac)
		if err != nil {
			return nil, fmt.Errorf("%w: --mac: %w", ErrUsage, err)
		}
		// Cisco's form: User-Name and User-Password are the bare hex digits, the
		// Calling-Station-Id is dashed upper case.
		bare := strings.ReplaceAll(mac, ":", "")
		user, pw = bare, bare
		if calling == "" {
			calling = strings.ToUpper(strings.ReplaceAll(mac, ":", "-"))
		}
		b.AddUint32(packet.AttrServiceType, 10) // Call-Check
	}
	b.AddString(packet.AttrUserName, user)
	b.Add(packet.AttrUserPassword, packet.EncryptUserPassword(nil, []byte(pw), secret, auth[:]))
	f.addNASAttrs(&b, calling)
	return b.Finish(secret, nil)
}

// addNASAttrs adds what a NAS sends with every request; an --attr of the same attribute replaces
// the default.
func (f *testAuthFlags) addNASAttrs(b *packet.Builder, calling string) {
	if f.nasID != "" && !f.hasExtra(0, packet.AttrNASIdentifier) {
		b.AddString(packet.AttrNASIdentifier, f.nasID)
	}
	if !f.hasExtra(0, packet.AttrNASIPAddress) {
		b.Add(packet.AttrNASIPAddress, []byte{127, 0, 0, 1})
	}
	if calling != "" && !f.hasExtra(0, packet.AttrCallingStationID) {
		b.AddString(packet.AttrCallingStationID, calling)
	}
	if f.called != "" && !f.hasExtra(0, packet.AttrCalledStationID) {
		b.AddString(packet.AttrCalledStationID, f.called)
	}
	if !f.hasExtra(0, packet.AttrNASPortType) {
		b.AddUint32(packet.AttrNASPortType, 15) // Ethernet
	}
	f.addExtra(b)
}

// exchanger sends one request and returns the verified answer.
type exchanger interface {
	exchange(ctx context.Context, build radsec.BuildFunc) (req, resp packet.Packet, err error)
	secret() []byte
	peer() string
	close()
}

// udpExchanger is RADIUS over UDP (RFC 2865) with retransmission of the same packet.
type udpExchanger struct {
	conn    *net.UDPConn
	addr    string
	key     []byte
	timeout time.Duration
	retries int
	id      uint8
}

func dialUDP(f *testAuthFlags) (*udpExchanger, error) {
	ua, err := net.ResolveUDPAddr("udp", f.server)
	if err != nil {
		return nil, fmt.Errorf("test auth: server %s: %w", f.server, err)
	}
	c, err := net.DialUDP("udp", nil, ua)
	if err != nil {
		return nil, fmt.Errorf("test auth: %w", err)
	}
	var id [1]byte
	_, _ = rand.Read(id[:])
	return &udpExchanger{conn: c, addr: ua.String(), key: []byte(f.secret), timeout: f.timeout, retries: f.retries, id: id[0]}, nil
}

func (u *udpExchanger) secret() []byte { return u.key }
func (u *udpExchanger) peer() string   { return u.addr }
func (u *udpExchanger) close()         { _ = u.conn.Close() }

func (u *udpExchanger) exchange(ctx context.Context, build radsec.BuildFunc) (packet.Packet, packet.Packet, error) {
	u.id++
	req, err := build(nil, u.id)
	if err != nil {
		return nil, nil, fmt.Errorf("test auth: build request: %w", err)
	}
	per := u.timeout / time.Duration(u.retries+1)
	buf := make([]byte, packet.MaxLen)
	var bad error
	for try := 0; try <= u.retries; try++ {
		if err := ctx.Err(); err != nil {
			return nil, nil, err
		}
		if _, err := u.conn.Write(req); err != nil {
			return nil, nil, fmt.Errorf("test auth: send to %s: %w", u.addr, err)
		}
		_ = u.conn.SetReadDeadline(time.Now().Add(per))
		for {
			n, err := u.conn.Read(buf)
			if err != nil {
				if errors.Is(err, os.ErrDeadlineExceeded) {
					break
				}
				// ICMP port unreachable surfaces here on a connected socket.
				return nil, nil, fmt.Errorf("%w from %s: %w", ErrNoAnswer, u.addr, err)
			}
			resp, err := packet.Parse(append([]byte(nil), buf[:n]...))
			if err != nil || resp.ID() != req.ID() {
				continue
			}
			if err := verifyReply(req, resp, u.key); err != nil {
				bad = err // a reply signed with another secret: keep waiting, report it at the end
				continue
			}
			return req, resp, nil
		}
	}
	if bad != nil {
		return nil, nil, bad
	}
	return nil, nil, fmt.Errorf("%w from %s within %v (%d tries): wrong secret, a firewall, or this host is not a client of the server",
		ErrNoAnswer, u.addr, u.timeout, u.retries+1)
}

// verifyReply checks the Response Authenticator (RFC 2865 §3) and Message-Authenticator (RFC 3579
// §3.2). A wrong secret fails both.
func verifyReply(req, resp packet.Packet, secret []byte) error {
	check := packet.CheckResponseMA
	if req.Code() == packet.CodeStatusServer {
		check = packet.CheckStatusReplyMA
	}
	if !packet.CheckResponseAuthenticator(resp, req.Authenticator(), secret) || check(resp, req.Authenticator(), secret) == packet.MAInvalid {
		return fmt.Errorf("test auth: the %s does not verify with this secret (wrong --secret?)", resp.Code())
	}
	return nil
}

// radsecExchanger is RADIUS over TLS (RFC 6614) on one multiplexed connection.
type radsecExchanger struct {
	conn    *radsec.Conn
	addr    string
	key     []byte
	timeout time.Duration
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

func dialRadSec(ctx context.Context, f *testAuthFlags) (*radsecExchanger, error) {
	cfg, err := clientTLS(f.ca, f.cert, f.key)
	if err != nil {
		return nil, err
	}
	host, _, err := net.SplitHostPort(f.server)
	if err != nil {
		return nil, fmt.Errorf("%w: --server %q: %w", ErrUsage, f.server, err)
	}
	cfg.ServerName = host
	if f.name != "" {
		cfg.ServerName = f.name
	}
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: f.timeout}, Config: cfg}
	dctx, cancel := context.WithTimeout(ctx, f.timeout)
	nc, err := d.DialContext(dctx, "tcp", f.server)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("test auth: radsec %s: %w", f.server, err)
	}
	secret := f.secret
	if secret == "" {
		secret = radsec.DefaultSecret
	}
	r := &radsecExchanger{addr: nc.RemoteAddr().String(), key: []byte(secret), timeout: f.timeout}
	r.conn = radsec.NewConn(nc, radsec.ConnOptions{Secret: r.key, DeadAfter: f.timeout})
	rctx, rcancel := context.WithCancel(context.Background())
	r.cancel = rcancel
	r.wg.Add(1)
	go func() { defer r.wg.Done(); _ = r.conn.Run(rctx) }()
	return r, nil
}

func (r *radsecExchanger) secret() []byte { return r.key }
func (r *radsecExchanger) peer() string   { return r.addr }

func (r *radsecExchanger) close() {
	r.conn.Close()
	r.cancel()
	r.wg.Wait()
}

func (r *radsecExchanger) exchange(ctx context.Context, build radsec.BuildFunc) (packet.Packet, packet.Packet, error) {
	type result struct {
		resp packet.Packet
		err  error
	}
	var req packet.Packet
	capture := func(dst []byte, id uint8) (packet.Packet, error) {
		p, err := build(dst, id)
		if err == nil {
			req = append(packet.Packet(nil), p...)
		}
		return p, err
	}
	done := make(chan result, 1)
	if err := r.conn.Exchange(capture, time.Now().Add(r.timeout), func(resp packet.Packet, err error) {
		done <- result{append(packet.Packet(nil), resp...), err}
	}); err != nil {
		return nil, nil, fmt.Errorf("test auth: radsec %s: %w", r.addr, err)
	}
	select {
	case res := <-done:
		if errors.Is(res.err, radsec.ErrTimeout) {
			return nil, nil, fmt.Errorf("%w from %s within %v", ErrNoAnswer, r.addr, r.timeout)
		}
		if errors.Is(res.err, radsec.ErrBadReply) {
			return nil, nil, fmt.Errorf("test auth: the reply does not verify with secret %q (wrong --secret?)", r.key)
		}
		if res.err != nil {
			return nil, nil, fmt.Errorf("test auth: radsec %s: %w", r.addr, res.err)
		}
		return req, res.resp, nil
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	}
}

// clientTLS builds a TLS client configuration from PEM files; empty cert means none.
func clientTLS(caFile, certFile, keyFile string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("test auth: --ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("test auth: --ca %s: no PEM certificate", caFile)
		}
		cfg.RootCAs = pool
	}
	if certFile != "" || keyFile != "" {
		c, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("test auth: client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{c}
	}
	return cfg, nil
}

// maxEAPRounds bounds an EAP-TLS conversation (a handshake with a long chain at 1 KiB fragments
// takes about a dozen).
const maxEAPRounds = 50

// runEAPTLS drives one EAP-TLS conversation (RFC 3579: EAP-Message fragments in Access-Request,
// State echoed from each Access-Challenge) and returns the final request and reply.
func runEAPTLS(ctx context.Context, ex exchanger, f *testAuthFlags) (packet.Packet, packet.Packet, []string, error) {
	caFile, certFile, keyFile := orFlag(f.eapCA, f.ca), orFlag(f.eapCert, f.cert), orFlag(f.eapKey, f.key)
	if caFile == "" {
		return nil, nil, nil, fmt.Errorf("%w: EAP-TLS needs the server's CA (--eap-ca or --ca)", ErrUsage)
	}
	tcfg, err := clientTLS(caFile, certFile, keyFile)
	if err != nil {
		return nil, nil, nil, err
	}
	outer := f.identity
	if f.anonymous {
		outer = "anonymous"
		if _, realm, ok := strings.Cut(f.identity, "@"); ok {
			outer += "@" + realm
		}
	}
	c := eaptls.NewClient(&eaptls.ClientConfig{Identity: outer, Certificates: tcfg.Certificates, RootCAs: tcfg.RootCAs,
		HandshakeTimeout: f.timeout * 5})
	defer c.Close()
	eap := c.Identity(0)
	var state []byte
	calling := f.calling
	for round := 0; round < maxEAPRounds; round++ {
		req, resp, err := ex.exchange(ctx, func(dst []byte, id uint8) (packet.Packet, error) {
			var auth [packet.AuthLen]byte
			if _, err := rand.Read(auth[:]); err != nil {
				return nil, err
			}
			b := packet.New(dst, packet.CodeAccessRequest, id, auth[:])
			b.AddMA()
			b.AddString(packet.AttrUserName, outer)
			for rest := eap; len(rest) > 0; {
				n := min(len(rest), 253) // RFC 3579 §3.1: split across EAP-Message attributes
				b.Add(packet.AttrEAPMessage, rest[:n])
				rest = rest[n:]
			}
			if state != nil {
				b.Add(packet.AttrState, state)
			}
			b.AddUint32(packet.AttrServiceType, 2) // Framed-User
			f.addNASAttrs(&b, calling)
			return b.Finish(ex.secret(), nil)
		})
		if err != nil {
			return nil, nil, nil, err
		}
		msg := eapMessage(resp)
		switch resp.Code() {
		case packet.CodeAccessChallenge:
			state, _ = resp.Attr(packet.AttrState)
			state = append([]byte(nil), state...)
			next, done, err := c.Step(msg)
			if err != nil {
				return nil, nil, nil, fmt.Errorf("test auth: EAP-TLS: %w", err)
			}
			if done {
				return nil, nil, nil, errors.New("test auth: EAP-TLS ended inside an Access-Challenge")
			}
			eap = next
		case packet.CodeAccessAccept:
			var extra []string
			if _, _, err := c.Step(msg); err != nil {
				extra = append(extra, fmt.Sprintf("EAP: the Access-Accept's EAP-Message did not end the conversation: %v", err))
			} else if res := c.Result(); res != nil {
				extra = append(extra, fmt.Sprintf("EAP-TLS: %s, server certificate %s", tls.VersionName(res.Version),
					res.PeerCertificates[0].Subject.CommonName))
				extra = append(extra, mppeCheck(resp, req, ex.secret(), res.MSK))
			}
			return req, resp, extra, nil
		default:
			return req, resp, nil, nil
		}
	}
	return nil, nil, nil, fmt.Errorf("test auth: EAP-TLS did not finish in %d rounds", maxEAPRounds)
}

func orFlag(v, def string) string {
	if v != "" {
		return v
	}
	return def
}

// eapMessage concatenates the EAP-Message attributes of p (RFC 3579 §3.1).
func eapMessage(p packet.Packet) []byte {
	var out []byte
	for it := p.Attrs(); ; {
		t, v, ok := it.Next()
		if !ok {
			return out
		}
		if t == packet.AttrEAPMessage {
			out = append(out, v...)
		}
	}
}

const (
	vendorMS       = packet.VendorMicrosoft
	msMPPESendKey  = 16 // MS-MPPE-Send-Key, RFC 2548 §2.4.2
	msMPPERecvKey  = 17 // MS-MPPE-Recv-Key, RFC 2548 §2.4.3
	eapCodeSuccess = 3
	eapCodeFailure = 4
	eapCodeRequest = 1
)

// mppeCheck compares the MS-MPPE keys of the Access-Accept (RFC 2548 §2.4) with the MSK the
// supplicant derived, as eapol_test does: a mismatch means a proxy re-keyed them wrongly.
func mppeCheck(resp, req packet.Packet, secret []byte, msk [64]byte) string {
	wantRecv, wantSend := eaptls.MPPEKeys(msk)
	var recv, send []byte
	for it := resp.Attrs(); ; {
		t, v, ok := it.Next()
		if !ok {
			break
		}
		if t != packet.AttrVendorSpecific {
			continue
		}
		packet.SplitVSA(v, func(s packet.VSA) {
			if s.Vendor != vendorMS {
				return
			}
			d, err := packet.DecryptSalted(nil, s.Value, secret, req.Authenticator())
			if err != nil {
				return
			}
			switch s.Type {
			case msMPPERecvKey:
				recv = d
			case msMPPESendKey:
				send = d
			}
		})
	}
	switch {
	case recv == nil && send == nil:
		return "MPPE keys: none in the Access-Accept"
	case bytes.Equal(recv, wantRecv) && bytes.Equal(send, wantSend):
		return "MPPE keys: match the supplicant's"
	}
	return "MPPE keys: MISMATCH with the supplicant's (a proxy re-encrypted them with the wrong secret?)"
}

// writeReplyAttrs prints every attribute by name, one per line, radclient style.
func writeReplyAttrs(w io.Writer, p packet.Packet) {
	for it := p.Attrs(); ; {
		t, v, ok := it.Next()
		if !ok {
			return
		}
		switch t {
		case packet.AttrMessageAuthenticator:
			fmt.Fprintln(w, "  Message-Authenticator = (verified)")
		case packet.AttrEAPMessage:
			fmt.Fprintf(w, "  EAP-Message = %s\n", describeEAP(v))
		case packet.AttrState:
			fmt.Fprintf(w, "  State = (%d octets)\n", len(v))
		case packet.AttrClass:
			fmt.Fprintf(w, "  Class = %s\n", printable(v))
		case packet.AttrProxyState:
			fmt.Fprintf(w, "  Proxy-State = 0x%x\n", v)
		case packet.AttrVendorSpecific:
			if !packet.SplitVSA(v, func(s packet.VSA) {
				a := cache.Attr{Type: t, Vendor: s.Vendor, VendorType: s.Type, Value: s.Value}
				if def, ok := packet.Builtin().Attr(s.Vendor, s.Type); ok && def.Encrypt != packet.SchemeNone {
					// Hidden with the secret (MS-MPPE-Send-Key, Aruba-MPSK-Passphrase, …).
					fmt.Fprintf(w, "  %s = (encrypted, %d octets)\n", def.Name, len(s.Value))
					return
				}
				fmt.Fprintf(w, "  %s = %s\n", attrName(a), attrValue(a))
			}) {
				fmt.Fprintf(w, "  Vendor-Specific = 0x%x\n", v)
			}
		default:
			a := cache.Attr{Type: t, Value: v}
			if def, ok := packet.Builtin().Attr(0, t); ok && def.Tagged {
				// RFC 2868 §3.1: an integer always carries its tag; a string when it is 0x01–0x1F.
				switch {
				case def.Type == packet.TypeInteger && len(v) == 4:
					a.Tag, a.Value = v[0], v[1:]
				case def.Type != packet.TypeInteger && len(v) > 1 && v[0] >= 1 && v[0] <= 0x1f:
					a.Tag, a.Value = v[0], v[1:]
				}
			}
			fmt.Fprintf(w, "  %s = %s\n", attrName(a), attrValue(a))
		}
	}
}

// describeEAP names an EAP packet's code (RFC 3748 §4).
func describeEAP(v []byte) string {
	if len(v) < 4 {
		return fmt.Sprintf("(%d octets)", len(v))
	}
	switch v[0] {
	case eapCodeSuccess:
		return fmt.Sprintf("EAP-Success (id %d)", v[1])
	case eapCodeFailure:
		return fmt.Sprintf("EAP-Failure (id %d)", v[1])
	case eapCodeRequest:
		return fmt.Sprintf("EAP-Request (id %d, %d octets)", v[1], binary.BigEndian.Uint16(v[2:4]))
	}
	return fmt.Sprintf("(%d octets)", len(v))
}
