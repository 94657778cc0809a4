package peertest

import (
	"context"
	"crypto/hmac"
	"crypto/md5"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// vlanReply is the VLAN triplet (RFC 3580 §3.31) plus vendor attributes.
var vlanReply = []string{
	`Tunnel-Type = VLAN`,
	`Tunnel-Medium-Type = IEEE-802`,
	`Tunnel-Private-Group-Id = "300"`,
	`Cisco-AVPair = "shell:priv-lvl=15"`,
	`Aruba-User-Role = "employee"`,
	`Filter-Id = "corp"`,
	`Session-Timeout = 3600`,
}

var mabReply = []string{
	`Tunnel-Type = VLAN`,
	`Tunnel-Medium-Type = IEEE-802`,
	`Tunnel-Private-Group-Id = "400"`,
	`Cisco-AVPair = "device-traffic-class=voice"`,
	`PaloAlto-User-Group = "iot"`,
	`Juniper-Local-User-Name = "printer"`,
}

var testUsers = []User{
	{Name: "alice", Password: "s3cret pass\"word", Reply: vlanReply},
	{Name: "mallory", Password: "x", Reject: true, Reply: []string{`Reply-Message = "go away"`}},
	{Name: "aabbccddeeff", MAB: true, Reply: mabReply},
	{Name: "client.example", Reply: vlanReply}, // EAP-TLS identity
}

func loop(port int) string { return "127.0.0.1:" + strconv.Itoa(port) }

func requireAll(t *testing.T) {
	t.Helper()
	Require(t, "freeradius", "radclient", "radsecproxy", "eapol_test")
}

// TestRadSecThroughRadsecproxy drives FreeRADIUS's RadSec listener through
// radsecproxy (UDP in, RadSec out) with radclient: PAP, MAB in both styles,
// rejects, and accounting.
func TestRadSecThroughRadsecproxy(t *testing.T) {
	requireAll(t)
	certs := NewCerts(t)
	radsec, udp := FreePort(t), FreePort(t)
	fr := StartFreeRADIUS(t, FreeRADIUSOptions{
		RadSecAddr: loop(radsec),
		ServerCert: certs.ServerCert, ServerKey: certs.ServerKey, CA: certs.CA,
		Users:         testUsers,
		AccountingLog: true,
	})
	rp := StartRadsecproxy(t, RadsecproxyOptions{
		ListenUDP: loop(udp),
		Clients:   []Client{{Addr: "127.0.0.1", Secret: "nas secret"}},
		Upstream:  loop(radsec),
		Cert:      certs.ServerCert, Key: certs.ServerKey, CA: certs.CA,
	})

	tests := []struct {
		name  string
		attrs []string
		code  string
		want  map[string]string // attribute → value; "" value = must be absent
	}{
		{
			name:  "pap accept",
			attrs: []string{`User-Name = "alice"`, `User-Password = "s3cret pass\"word"`, `Message-Authenticator = 0x00`},
			code:  "Access-Accept",
			want: map[string]string{
				"Tunnel-Type": "VLAN", "Tunnel-Medium-Type": "IEEE-802", "Tunnel-Private-Group-Id": "300",
				"Cisco-AVPair": "shell:priv-lvl=15", "Aruba-User-Role": "employee", "Filter-Id": "corp",
				"Session-Timeout": "3600",
			},
		},
		{
			name:  "pap wrong password",
			attrs: []string{`User-Name = "alice"`, `User-Password = "wrong"`},
			code:  "Access-Reject",
			want:  map[string]string{"Tunnel-Private-Group-Id": "", "Cisco-AVPair": ""},
		},
		{
			name:  "unknown user",
			attrs: []string{`User-Name = "nobody"`, `User-Password = "x"`},
			code:  "Access-Reject",
		},
		{
			name:  "reject user",
			attrs: []string{`User-Name = "mallory"`, `User-Password = "x"`},
			code:  "Access-Reject",
			want:  map[string]string{"Reply-Message": "go away"},
		},
		{
			name: "mab password is mac",
			attrs: []string{`User-Name = "aabbccddeeff"`, `User-Password = "aabbccddeeff"`,
				`Calling-Station-Id = "AA-BB-CC-DD-EE-FF"`, `Service-Type = Call-Check`, `Message-Authenticator = 0x00`},
			code: "Access-Accept",
			want: map[string]string{
				"Tunnel-Type": "VLAN", "Tunnel-Medium-Type": "IEEE-802", "Tunnel-Private-Group-Id": "400",
				"Cisco-AVPair": "device-traffic-class=voice", "PaloAlto-User-Group": "iot",
				"Juniper-Local-User-Name": "printer",
			},
		},
		{
			name:  "mab wrong password",
			attrs: []string{`User-Name = "aabbccddeeff"`, `User-Password = "001122334455"`},
			code:  "Access-Reject",
		},
		{
			name: "mab call-check by calling-station-id",
			attrs: []string{`User-Name = "AA:BB:CC:DD:EE:FF"`, `Service-Type = Call-Check`,
				`Calling-Station-Id = "aa:bb:cc:dd:ee:ff"`, `Message-Authenticator = 0x00`},
			code: "Access-Accept",
			want: map[string]string{"Tunnel-Private-Group-Id": "400", "Cisco-AVPair": "device-traffic-class=voice"},
		},
		{
			name: "mab unknown mac",
			attrs: []string{`User-Name = "001122334455"`, `Service-Type = Call-Check`,
				`Calling-Station-Id = "00-11-22-33-44-55"`},
			code: "Access-Reject",
		},
	}
	reqs := make([]Request, len(tests))
	for i, tc := range tests {
		reqs[i] = Request{Attrs: tc.attrs}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	replies, raw, err := Radclient(ctx, RadclientOptions{
		Server: loop(udp), Secret: "nas secret", Requests: reqs, Parallel: 4, Retries: 1, Timeout: 2 * time.Second,
	})
	if err != nil {
		t.Fatalf("radclient: %v\n%s", err, raw)
	}
	if len(replies) != len(tests) {
		t.Fatalf("%d replies for %d requests", len(replies), len(tests))
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := replies[i]
			if r.Code != tc.code {
				t.Fatalf("code %q, want %q\nradclient:\n%s\nradsecproxy:\n%s\nfreeradius:\n%s",
					r.Code, tc.code, raw, rp.LogTail(20), fr.LogTail(20))
			}
			for name, want := range tc.want {
				got, ok := r.Lookup(name)
				switch {
				case want == "" && ok:
					t.Errorf("%s = %q present, want absent", name, got)
				case want != "" && got != want:
					t.Errorf("%s = %q, want %q (attrs %v)", name, got, want, r.Attrs)
				}
			}
		})
	}

	t.Run("accounting", func(t *testing.T) {
		var acct []Request
		for i, st := range []string{"Start", "Interim-Update", "Stop"} {
			acct = append(acct, Request{Attrs: []string{
				`User-Name = "alice"`, `Acct-Status-Type = ` + st, `Acct-Session-Id = "sess-1"`,
				`Acct-Delay-Time = ` + strconv.Itoa(i*5), `NAS-IP-Address = 192.0.2.10`,
				`Calling-Station-Id = "aa-bb-cc-dd-ee-ff"`,
			}})
		}
		replies, raw, err := Radclient(ctx, RadclientOptions{
			Server: loop(udp), Kind: "acct", Secret: "nas secret", Requests: acct, Retries: 1,
		})
		if err != nil {
			t.Fatalf("radclient: %v\n%s", err, raw)
		}
		for i, r := range replies {
			if r.Code != "Accounting-Response" {
				t.Fatalf("request %d: code %q\n%s\n%s", i, r.Code, raw, rp.LogTail(20))
			}
		}
		recs, err := fr.WaitAccounting(ctx, 3)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) != 3 {
			t.Fatalf("%d accounting records, want 3: %+v", len(recs), recs)
		}
		for i, st := range []string{"Start", "Interim-Update", "Stop"} {
			r := recs[i]
			if r.StatusType() != st || r.SessionID() != "sess-1" || r.UserName() != "alice" || r.DelayTime() != i*5 {
				t.Errorf("record %d = %s/%s/%s/%d, want %s/sess-1/alice/%d",
					i, r.StatusType(), r.SessionID(), r.UserName(), r.DelayTime(), st, i*5)
			}
			if got := r.Map["NAS-IP-Address"]; got != "192.0.2.10" {
				t.Errorf("record %d NAS-IP-Address = %q", i, got)
			}
		}
	})

	t.Run("eap-tls over radsec", func(t *testing.T) {
		// eapol_test → UDP → radsecproxy → RadSec → FreeRADIUS: the MPPE keys
		// survive a proxy's re-encryption (RFC 2548 §2.4.2) and EAP-Message
		// with State is relayed round after round.
		res, err := EapolTest(ctx, EapolOptions{
			Port: udp, Secret: "nas secret", Identity: "client.example",
			CACert: certs.CA, ClientCert: certs.ClientCert, PrivateKey: certs.ClientKey,
			TLS13: true, FragmentSize: 500,
		})
		if err != nil {
			t.Fatal(err)
		}
		if !res.Success || !res.MPPEOK || res.TLSVersion != "TLSv1.3" {
			t.Fatalf("success=%v mppe=%v version=%q\n%s\n%s", res.Success, res.MPPEOK, res.TLSVersion,
				tail(res.Output, 30), rp.LogTail(10))
		}
	})

	t.Run("cpu time", func(t *testing.T) {
		for name, f := range map[string]func() (time.Duration, error){"freeradius": fr.CPUTime, "radsecproxy": rp.CPUTime} {
			d, err := f()
			if err != nil || d < 0 {
				t.Errorf("%s cpu time %v, %v", name, d, err)
			}
		}
	})
}

// TestEAPTLS runs eapol_test against FreeRADIUS's UDP listener with TLS 1.2
// and TLS 1.3 and checks the MPPE keys and the Access-Accept attributes.
func TestEAPTLS(t *testing.T) {
	requireAll(t)
	certs := NewCerts(t)
	auth := FreePort(t)
	StartFreeRADIUS(t, FreeRADIUSOptions{
		UDPAuthAddr: loop(auth),
		UDPClients:  []Client{{Addr: "127.0.0.1", Secret: "eap secret"}},
		ServerCert:  certs.ServerCert, ServerKey: certs.ServerKey, CA: certs.CA,
		Users: testUsers,
	})
	base := EapolOptions{
		Port: auth, Secret: "eap secret", Identity: "client.example",
		CACert: certs.CA, ClientCert: certs.ClientCert, PrivateKey: certs.ClientKey,
		Timeout: 10 * time.Second,
	}
	tests := []struct {
		name    string
		mod     func(*EapolOptions)
		version string
	}{
		{"tls1.2", func(o *EapolOptions) { o.TLS12Only = true }, "TLSv1.2"},
		{"tls1.3", func(o *EapolOptions) { o.TLS13 = true }, "TLSv1.3"},
		{"tls1.3 only small fragments", func(o *EapolOptions) { o.TLS13Only = true; o.FragmentSize = 300 }, "TLSv1.3"},
		{"tls1.2 repeated", func(o *EapolOptions) { o.TLS12Only = true; o.Repeat = 1 }, "TLSv1.2"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := base
			tc.mod(&o)
			res, err := EapolTest(context.Background(), o)
			if err != nil {
				t.Fatal(err)
			}
			if !res.Success || !res.MPPEOK {
				t.Fatalf("success=%v mppe=%v\n%s", res.Success, res.MPPEOK, tail(res.Output, 30))
			}
			if res.TLSVersion != tc.version {
				t.Errorf("TLS version %q, want %q", res.TLSVersion, tc.version)
			}
			// Tunnel-Private-Group-Id "300" printed as hex by eapol_test.
			if got := res.Get("Tunnel-Private-Group-Id"); got != "333030" {
				t.Errorf("Tunnel-Private-Group-Id = %q in %+v", got, res.Accept)
			}
		})
	}

	t.Run("untrusted client cert", func(t *testing.T) {
		other, err := NewCertsDir(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		o := base
		o.ClientCert, o.PrivateKey = other.ClientCert, other.ClientKey
		o.Timeout = 5 * time.Second
		res, err := EapolTest(context.Background(), o)
		if err != nil {
			t.Fatal(err)
		}
		if res.Success {
			t.Fatalf("EAP-TLS with a certificate from another CA succeeded")
		}
	})
}

// TestRadsecproxyTLSListener chains two radsecproxies: radclient → UDP →
// radsecproxy A → RadSec → radsecproxy B (ListenTLS) → RadSec → FreeRADIUS.
// It proves the harness can run radsecproxy as a RadSec server and client.
func TestRadsecproxyTLSListener(t *testing.T) {
	requireAll(t)
	certs := NewCerts(t)
	radsec, tlsB, udpA := FreePort(t), FreePort(t), FreePort(t)
	StartFreeRADIUS(t, FreeRADIUSOptions{
		RadSecAddr: loop(radsec),
		ServerCert: certs.ServerCert, ServerKey: certs.ServerKey, CA: certs.CA,
		Users: testUsers,
	})
	StartRadsecproxy(t, RadsecproxyOptions{
		ListenTLS: loop(tlsB), Upstream: loop(radsec),
		Cert: certs.ServerCert, Key: certs.ServerKey, CA: certs.CA,
	})
	StartRadsecproxy(t, RadsecproxyOptions{
		ListenUDP: loop(udpA), Upstream: loop(tlsB),
		Cert: certs.ServerCert, Key: certs.ServerKey, CA: certs.CA,
	})
	replies, raw, err := Radclient(context.Background(), RadclientOptions{
		Server: loop(udpA), Secret: "testing123", Retries: 1,
		Requests: []Request{{Attrs: []string{`User-Name = "alice"`, `User-Password = "s3cret pass\"word"`}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if replies[0].Code != "Access-Accept" || replies[0].Get("Tunnel-Private-Group-Id") != "300" {
		t.Fatalf("reply %+v\n%s", replies[0], raw)
	}
}

// TestLifecycle covers Pause (blackhole), Resume, Kill and Stop, Status-Server
// and the no-reply result of Radclient.
func TestLifecycle(t *testing.T) {
	Require(t, "freeradius", "radclient")
	certs := NewCerts(t)
	auth, acct := FreePort(t), FreePort(t)
	opts := FreeRADIUSOptions{
		Dir:         t.TempDir(),
		UDPAuthAddr: loop(auth), UDPAcctAddr: loop(acct),
		ServerCert: certs.ServerCert, ServerKey: certs.ServerKey, CA: certs.CA,
		Users: testUsers, Threads: 2, MaxRequests: 65536,
	}
	fr := StartFreeRADIUS(t, opts)
	ctx := context.Background()
	pap := []Request{{Attrs: []string{`User-Name = "alice"`, `User-Password = "s3cret pass\"word"`}}}
	send := func(kind string, port int, reqs []Request, timeout time.Duration) Reply {
		t.Helper()
		r, raw, err := Radclient(ctx, RadclientOptions{Server: loop(port), Kind: kind, Secret: "testing123", Requests: reqs, Timeout: timeout})
		if err != nil {
			t.Fatalf("radclient: %v\n%s", err, raw)
		}
		return r[0]
	}

	status := []Request{{Attrs: []string{`Message-Authenticator = 0x00`}}}
	if r := send("status", auth, status, 2*time.Second); r.Code != "Access-Accept" {
		t.Fatalf("Status-Server on auth port: %q", r.Code)
	}
	if r := send("status", acct, status, 2*time.Second); r.Code != "Accounting-Response" {
		t.Fatalf("Status-Server on acct port: %q", r.Code)
	}

	if err := fr.Pause(); err != nil {
		t.Fatal(err)
	}
	if r := send("auth", auth, pap, 300*time.Millisecond); r.Code != "" {
		t.Fatalf("paused server answered %q", r.Code)
	}
	if err := fr.Resume(); err != nil {
		t.Fatal(err)
	}
	if r := send("auth", auth, pap, 2*time.Second); r.Code != "Access-Accept" {
		t.Fatalf("after resume: %q\n%s", r.Code, fr.LogTail(10))
	}

	pid := fr.Pid()
	if err := fr.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Fatalf("pid %d still exists after Kill: %v", pid, err)
	}
	if err := fr.Stop(); err != nil { // idempotent after Kill
		t.Fatal(err)
	}
	if d, err := fr.CPUTime(); err != nil || d <= 0 {
		t.Errorf("CPUTime after exit = %v, %v", d, err)
	}
	if r := send("auth", auth, pap, 200*time.Millisecond); r.Code != "" {
		t.Fatalf("killed server answered %q", r.Code)
	}

	// The upstream comes back: same Dir, same port. Readiness must wait for
	// this run's ready line, not find the previous run's in the shared log.
	fr2 := StartFreeRADIUS(t, opts)
	if fr2.Pid() == pid {
		t.Fatal("restart reused the pid")
	}
	if r := send("auth", auth, pap, 2*time.Second); r.Code != "Access-Accept" {
		t.Fatalf("after restart: %q\n%s", r.Code, fr2.LogTail(10))
	}
}

// TestStartFailureShowsLog checks that a configuration FreeRADIUS rejects
// fails the start with the log tail, and that a port in use is reported.
func TestStartFailureShowsLog(t *testing.T) {
	Require(t, "freeradius")
	certs := NewCerts(t)
	dir := t.TempDir()
	_, err := StartFreeRADIUSContext(context.Background(), FreeRADIUSOptions{
		Dir: dir, UDPAuthAddr: loop(FreePort(t)),
		ServerCert: certs.ServerCert, ServerKey: filepath.Join(dir, "missing-key.pem"), CA: certs.CA,
	})
	if err == nil {
		t.Fatal("start with a missing key succeeded")
	}
	if !errors.Is(err, ErrExited) || !strings.Contains(err.Error(), "log tail") || !strings.Contains(err.Error(), "missing-key.pem") {
		t.Fatalf("error does not carry the log tail: %v", err)
	}
}

// fakeTB records Fatalf instead of stopping the test.
type fakeTB struct {
	testing.TB
	fatal string
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.fatal = fmt.Sprintf(format, args...)
}

func TestRequireNamesPackage(t *testing.T) {
	tb := &fakeTB{TB: t}
	Require(tb, "radclient", "no-such-peer-binary")
	if !strings.Contains(tb.fatal, "no-such-peer-binary") || strings.Contains(tb.fatal, "radclient:") {
		t.Fatalf("Fatalf message %q", tb.fatal)
	}
	if _, err := LookPath("eapol_test-missing"); !errors.Is(err, ErrMissingBinary) {
		t.Fatalf("LookPath error %v", err)
	}
	if msg := lookPathMsg("radclient"); !strings.Contains(msg, "freeradius-utils") {
		t.Fatalf("package hint %q", msg)
	}
}

// lookPathMsg is the error text for a binary as if it were missing.
func lookPathMsg(bin string) string {
	return fmt.Sprintf("%v", missingErr(bin))
}

func TestFreePort(t *testing.T) {
	seen := map[int]bool{}
	for range 20 {
		p := FreePort(t)
		if p <= 0 || p > 65535 {
			t.Fatalf("port %d", p)
		}
		seen[p] = true
	}
	if len(seen) < 2 {
		t.Fatalf("FreePort returned the same port every time")
	}
}

func TestUsersFile(t *testing.T) {
	got := usersFile([]User{
		{Name: "alice", Password: `pa"ss`, Reply: []string{`Filter-Id = "a"`, `Session-Timeout = 60`}},
		{Name: "bob", Reject: true},
		{Name: "aa-bb-cc-dd-ee-01", MAB: true, Reply: []string{`Tunnel-Private-Group-Id = "9"`}},
		{Name: "not-a-mac", MAB: true},
	})
	want := []string{
		"\"alice\" Cleartext-Password := \"pa\\\"ss\"\n\tFilter-Id = \"a\",\n\tSession-Timeout = 60\n",
		"\"bob\" Auth-Type := Reject\n",
		"\"aa-bb-cc-dd-ee-01\" Cleartext-Password := \"aa-bb-cc-dd-ee-01\", Tmp-String-0 := \"peertest-mab\"\n\tTunnel-Private-Group-Id = \"9\"\n",
		"DEFAULT Service-Type == Call-Check, Calling-Station-Id =~ \"^[aA][aA][-:.]?[bB][bB][-:.]?[cC][cC][-:.]?[dD][dD][-:.]?[eE][eE][-:.]?01$\", Auth-Type := Accept\n",
	}
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Errorf("users file lacks\n%s\ngot:\n%s", w, got)
		}
	}
	if strings.Count(got, "DEFAULT") != 1 {
		t.Errorf("want one DEFAULT entry (not-a-mac has none):\n%s", got)
	}
}

func TestMACRegexp(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"aabbccddeeff", "^[aA][aA][-:.]?[bB][bB][-:.]?[cC][cC][-:.]?[dD][dD][-:.]?[eE][eE][-:.]?[fF][fF]$"},
		{"00:11:22:33:44:55", "^00[-:.]?11[-:.]?22[-:.]?33[-:.]?44[-:.]?55$"},
		{"0011.2233.4455", "^00[-:.]?11[-:.]?22[-:.]?33[-:.]?44[-:.]?55$"},
		{"alice", ""},
		{"aabbccddee", ""},
	}
	for _, tc := range tests {
		if got := macRegexp(tc.in); got != tc.want {
			t.Errorf("macRegexp(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestProcNetAddr(t *testing.T) {
	tests := []struct {
		ip   string
		port int
		want string
	}{
		{"127.0.0.1", 1812, "0100007F:0714"},
		{"::1", 2083, "00000000000000000000000001000000:0823"},
	}
	if runtime.GOARCH != "amd64" && runtime.GOARCH != "arm64" {
		t.Fatalf("procNetAddr assumes a little-endian host; GOARCH %s", runtime.GOARCH)
	}
	for _, tc := range tests {
		if got := procNetAddr(parseIP(t, tc.ip), tc.port); got != tc.want {
			t.Errorf("procNetAddr(%s, %d) = %s, want %s", tc.ip, tc.port, got, tc.want)
		}
	}
}

func TestParseProcStatCPU(t *testing.T) {
	// Field 2 contains spaces and a ')' to check the parsing anchor.
	line := "1234 (free radius) x) S 1 1234 1234 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 3 0 100 0 0\n"
	d, err := parseProcStatCPU(line)
	if err != nil || d != 3*time.Second {
		t.Fatalf("parseProcStatCPU = %v, %v; want 3s", d, err)
	}
	if _, err := parseProcStatCPU("1 (x) S 1 2"); err == nil {
		t.Fatal("short stat parsed")
	}
	self, err := procCPUTime(os.Getpid())
	if err != nil || self < 0 {
		t.Fatalf("own cpu time %v, %v", self, err)
	}
}

func TestParseRadclient(t *testing.T) {
	out := `(0) /tmp/req: Expected Access-Accept got Access-Reject
Sent Access-Request Id 206 from 0.0.0.0:60856 to 127.0.0.1:45527 length 45
	User-Name = "alice"
	User-Password = "secret"
Received Access-Accept Id 206 from 127.0.0.1:45527 to 127.0.0.1:60856 length 62
	Tunnel-Type:0 = VLAN
	Tunnel-Private-Group-Id:0 = "300"
	Cisco-AVPair = "shell:priv-lvl=15"
	Reply-Message = "say \"hi\"\n"
	Cisco-AVPair = "ip:inacl#1=permit ip any any"
`
	r := parseRadclient(out)
	if r.Code != "Access-Accept" || r.ID != 206 {
		t.Fatalf("code %q id %d", r.Code, r.ID)
	}
	want := []Attr{
		{Name: "Tunnel-Type", Tag: "0", Value: "VLAN"},
		{Name: "Tunnel-Private-Group-Id", Tag: "0", Value: "300"},
		{Name: "Cisco-AVPair", Value: "shell:priv-lvl=15"},
		{Name: "Reply-Message", Value: "say \"hi\"\n"},
		{Name: "Cisco-AVPair", Value: "ip:inacl#1=permit ip any any"},
	}
	if !slices.Equal(r.Attrs, want) {
		t.Fatalf("attrs\n%+v\nwant\n%+v", r.Attrs, want)
	}
	if got := r.All("Cisco-AVPair"); len(got) != 2 {
		t.Fatalf("All = %v", got)
	}
	if r := parseRadclient("Sent Access-Request Id 1\n(0) No reply from server for ID 1 socket 3\n"); r.Code != "" || r.ID != -1 {
		t.Fatalf("no-reply parsed as %+v", r)
	}
	// radclient's source port can be the closed server port it sends to; it then reads its
	// own request back, which is no reply.
	own := "Sent Access-Request Id 7 from 127.0.0.1:40000 to 127.0.0.1:40000 length 20\n" +
		"Received Access-Request Id 7 from 127.0.0.1:40000 to 127.0.0.1:40000 length 20\n" +
		"\tUser-Name = \"alice\"\n"
	if r := parseRadclient(own); r.Code != "" || r.ID != -1 || len(r.Attrs) != 0 {
		t.Fatalf("own request parsed as %+v", r)
	}
	if !ownRequest(own) {
		t.Fatal("ownRequest missed radclient's own datagram")
	}
}

func TestParseDetail(t *testing.T) {
	in := `Sun Nov 22 17:28:51 2026
	User-Name = "alice"
	Acct-Status-Type = Start
	Acct-Session-Id = "s1"
	Acct-Delay-Time = 7
	Timestamp = 1795368531

Sun Nov 22 17:28:52 2026
	User-Name = "bob"
	Acct-Status-Type = Stop

Sun Nov 22 17:28:53 2026
	User-Name = "partial"
`
	recs, err := parseDetail(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 {
		t.Fatalf("%d records, want 2 (the unterminated one is still being written)", len(recs))
	}
	if recs[0].SessionID() != "s1" || recs[0].DelayTime() != 7 || recs[0].StatusType() != "Start" || recs[1].UserName() != "bob" {
		t.Fatalf("records %+v", recs)
	}
}

func TestParseEapolAccept(t *testing.T) {
	out := `RADIUS message: code=11 (Access-Challenge) identifier=3 length=100
   Attribute 79 (EAP-Message) length=8
      Value: 01020304
RADIUS message: code=2 (Access-Accept) identifier=4 length=193
   Attribute 64 (Tunnel-Type) length=6
      Value: 0000000d
   Attribute 1 (User-Name) length=16
      Value: 'client.example'
STA 02:00:00:00:00:01: Received RADIUS packet matched
`
	got := parseEapolAccept(out)
	want := []EapolAttr{{64, "Tunnel-Type", "0000000d"}, {1, "User-Name", "client.example"}}
	if !slices.Equal(got, want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	if !mppeAllOK("MPPE keys OK: 2  mismatch: 0\n", 2) || !mppeAllOK("MPPE keys OK: 1  mismatch: 0\n", 1) ||
		mppeAllOK("MPPE keys OK: 1  mismatch: 0\n", 2) || mppeAllOK("MPPE keys OK: 0  mismatch: 1\n", 1) ||
		mppeAllOK("SUCCESS\n", 1) {
		t.Fatal("mppeAllOK")
	}
}

func FuzzParseRadclient(f *testing.F) {
	f.Add("Received Access-Accept Id 1 from a to b length 20\n\tTunnel-Type:0 = VLAN\n\tX = \"a\\\"b\"\n")
	f.Add("Received\n\t = \n\t\"\n")
	f.Fuzz(func(t *testing.T, s string) {
		r := parseRadclient(s)
		for _, a := range r.Attrs {
			if a.Name == "" {
				t.Fatalf("empty attribute name from %q", s)
			}
		}
	})
}

func FuzzParseDetail(f *testing.F) {
	f.Add("Sun\n\tA = \"b\"\n\n")
	f.Add("\t\n \nx\n\tA =\n\n")
	f.Fuzz(func(t *testing.T, s string) {
		recs, _ := parseDetail(strings.NewReader(s))
		for _, r := range recs {
			if len(r.Map) > len(r.Attrs) {
				t.Fatalf("map larger than list")
			}
		}
	})
}

func FuzzParseProcStat(f *testing.F) {
	f.Add("1 (a) S 1 1 1 0 -1 0 0 0 0 0 5 5 0 0")
	f.Add("1 (a")
	f.Fuzz(func(t *testing.T, s string) {
		d, err := parseProcStatCPU(s)
		if err == nil && d < 0 {
			t.Fatalf("negative %v from %q", d, s)
		}
	})
}

func parseIP(t *testing.T, s string) net.IP {
	t.Helper()
	ip := net.ParseIP(s)
	if ip == nil {
		t.Fatalf("bad IP %q", s)
	}
	return ip
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// TestContextFormStops starts radsecproxy and FreeRADIUS through the context
// constructors (as the bench program does), stops them, and checks that the
// processes and the harness goroutines are gone.
func TestContextFormStops(t *testing.T) {
	Require(t, "freeradius", "radsecproxy")
	certs := NewCerts(t)
	before := runtime.NumGoroutine()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	radsec := FreePort(t)
	fr, err := StartFreeRADIUSContext(ctx, FreeRADIUSOptions{
		Dir: t.TempDir(), RadSecAddr: loop(radsec),
		ServerCert: certs.ServerCert, ServerKey: certs.ServerKey, CA: certs.CA,
	})
	if err != nil {
		t.Fatal(err)
	}
	rp, err := StartRadsecproxyContext(ctx, RadsecproxyOptions{
		Dir: t.TempDir(), ListenUDP: loop(FreePort(t)), Upstream: loop(radsec),
		Cert: certs.ServerCert, Key: certs.ServerKey, CA: certs.CA,
	})
	if err != nil {
		fr.Stop()
		t.Fatal(err)
	}
	pids := []int{fr.Pid(), rp.Pid()}
	if err := errors.Join(rp.Stop(), fr.Stop()); err != nil {
		t.Fatal(err)
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("pid %d still exists after Stop: %v", pid, err)
		}
	}
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Errorf("goroutines %d after Stop, %d before", n, before)
	}

	// A start that cannot finish in time reports ctx's error and leaves no
	// process behind.
	short, cancelShort := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancelShort()
	_, err = StartFreeRADIUSContext(short, FreeRADIUSOptions{
		Dir: t.TempDir(), UDPAuthAddr: loop(FreePort(t)),
		ServerCert: certs.ServerCert, ServerKey: certs.ServerKey, CA: certs.CA,
	})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("start with an expired context: %v", err)
	}
}

// TestRadSecStatusServer sends Status-Server (RFC 5997 §3) to FreeRADIUS's
// RadSec listener from a Go TLS client with the client certificate, as an
// upstream watchdog does, and checks that a client without a certificate is
// refused (RFC 6614 §2.3, require_client_cert).
func TestRadSecStatusServer(t *testing.T) {
	Require(t, "freeradius")
	certs := NewCerts(t)
	radsec := FreePort(t)
	StartFreeRADIUS(t, FreeRADIUSOptions{
		RadSecAddr: loop(radsec),
		ServerCert: certs.ServerCert, ServerKey: certs.ServerKey, CA: certs.CA,
	})
	pool := x509.NewCertPool()
	caPEM, err := os.ReadFile(certs.CA)
	if err != nil || !pool.AppendCertsFromPEM(caPEM) {
		t.Fatalf("CA: %v", err)
	}
	cert, err := tls.LoadX509KeyPair(certs.ClientCert, certs.ClientKey)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		certs   []tls.Certificate
		version uint16
		answer  bool
	}{
		{"tls1.3 with client cert", []tls.Certificate{cert}, tls.VersionTLS13, true},
		{"tls1.2 with client cert", []tls.Certificate{cert}, tls.VersionTLS12, true},
		{"no client cert", nil, tls.VersionTLS13, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := &net.Dialer{Timeout: 2 * time.Second}
			conn, err := tls.DialWithDialer(d, "tcp", loop(radsec), &tls.Config{
				RootCAs: pool, Certificates: tc.certs, ServerName: "127.0.0.1",
				MinVersion: tc.version, MaxVersion: tc.version,
			})
			if err != nil {
				if tc.answer {
					t.Fatal(err)
				}
				return
			}
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
			if _, err := conn.Write(statusServer(DefaultRadSecSecret, 7)); err != nil {
				if tc.answer {
					t.Fatal(err)
				}
				return
			}
			var hdr [20]byte
			_, err = io.ReadFull(conn, hdr[:])
			switch {
			case tc.answer && err != nil:
				t.Fatalf("no answer to Status-Server: %v", err)
			case tc.answer && (hdr[0] != 2 || hdr[1] != 7):
				t.Fatalf("answer code %d id %d, want Access-Accept id 7", hdr[0], hdr[1])
			case !tc.answer && err == nil:
				t.Fatalf("answered without a client certificate: code %d", hdr[0])
			}
		})
	}
}

// statusServer builds a Status-Server packet with Message-Authenticator
// (RFC 5997 §3, RFC 3579 §3.2).
func statusServer(secret string, id byte) []byte {
	pkt := make([]byte, 20, 38)
	pkt[0], pkt[1] = 12, id
	_, _ = rand.Read(pkt[4:20])
	pkt = append(pkt, 80, 18)
	pkt = append(pkt, make([]byte, 16)...)
	binary.BigEndian.PutUint16(pkt[2:4], uint16(len(pkt)))
	mac := hmac.New(md5.New, []byte(secret))
	mac.Write(pkt)
	copy(pkt[22:], mac.Sum(nil))
	return pkt
}
