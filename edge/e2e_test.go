package edge_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"mxedge/cache"
	"mxedge/edge"
	"mxedge/edge/cli"
	"mxedge/edge/config"
	"mxedge/edge/peertest"
	"mxedge/pki/pkitest"
	"mxedge/proxy"
	"mxedge/proxy/packet"
	"mxedge/survivability"
)

// The end-to-end tests run real peers nobody here wrote: radclient and eapol_test as the NAS and
// supplicant, FreeRADIUS 3.2 as the RadSec upstream, radsecproxy as a RadSec client of mxedge.

const nasSecret = "nas secret"

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
}

var users = []peertest.User{
	{Name: "alice", Password: "s3cret pass\"word", Reply: vlanReply},
	{Name: "mallory", Password: "x", Reject: true},
	{Name: "aabbccddeeff", MAB: true, Reply: mabReply},
	// EAP-TLS identity (the lab client certificate). The cloud names the identity it authorized in
	// User-Name, as Mist does with "Include User-Name": mxedge learns EAP-TLS clients only so.
	{Name: "edge.example.test", Reply: append([]string{`User-Name := "edge.example.test"`}, vlanReply...)},
	{Name: "mpsk-user", Password: "pw", Reply: mpskReply},
	{Name: "homer@myuniversity.edu", Password: "pw", Reply: vlanReply}, // an eduroam home user
}

type e2e struct {
	cfgPath string
	frAddr  []string
	lab     *pkitest.Lab
	fr      []*peertest.FreeRADIUS
	edge    *edge.Edge
	auth    string
	acct    string
	radsec  string
	logs    *syncBuffer
	// metricsAddr, when set before start, serves /metrics there (edge.Options.MetricsAddr).
	metricsAddr string
	cancel      context.CancelFunc
	done        chan struct{}
}

// start runs mxedge from the configuration file until stop.
func (x *e2e) start(t *testing.T) {
	t.Helper()
	c, err := config.Load(x.cfgPath)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	logger := slog.New(slog.NewTextHandler(x.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e, err := edge.New(c, edge.Options{Logger: logger, MetricsAddr: x.metricsAddr})
	if err != nil {
		t.Fatal(err)
	}
	x.edge = e
	x.auth = e.AuthAddrs()[0].String()
	x.acct = e.Server().Addrs(proxy.PortAcct)[0].String()
	if l := e.Listener(); l != nil {
		x.radsec = l.Addrs()[0].String()
	}
	ctx, cancel := context.WithCancel(context.Background())
	x.cancel = cancel
	x.done = make(chan struct{})
	go func() {
		defer close(x.done)
		e.Run(ctx)
	}()
	select {
	case <-e.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("mxedge not ready")
	}
}

// rewrite edits the configuration file and restarts mxedge with it.
func (x *e2e) rewrite(t *testing.T, edit func(string) string) {
	t.Helper()
	b, err := os.ReadFile(x.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(x.cfgPath, []byte(edit(string(b))), 0o600); err != nil {
		t.Fatal(err)
	}
	x.stop()
	x.start(t)
}

func replaceOnce(s, old, new string) string { return strings.Replace(s, old, new, 1) }

// stop shuts mxedge down gracefully (idempotent).
func (x *e2e) stop() {
	if x.cancel != nil {
		x.cancel()
		<-x.done
		x.cancel = nil
	}
}

// waitLearned commits what the cache has queued until learned holds, for up to 5 s: the cache
// learns an answer after it has left for the NAS (proxy/router.go), so a NAS holding its answer
// may look before the learning has been queued.
func waitLearned(t *testing.T, e *edge.Edge, what string, learned func(*cache.Store) bool) {
	t.Helper()
	waitFor(t, what, 5*time.Second, func() bool {
		if err := e.Cache().Flush(); err != nil {
			t.Fatalf("cache flush: %v", err)
		}
		return learned(e.Cache())
	})
}

// cachedMAB is waitLearned's condition for a MAB client learned under mac.
func cachedMAB(mac string) func(*cache.Store) bool {
	return func(c *cache.Store) bool {
		_, ok, _ := c.LookupMAB(mac)
		return ok
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startE2E starts n FreeRADIUS RadSec upstreams and mxedge in front of them.
func startE2E(t *testing.T, n int, extra func(*pkitest.Lab) string) *e2e {
	t.Helper()
	return startE2EWith(t, n, pkitest.Must(t), extra)
}

// startE2EWith is startE2E with given certificate files.
func startE2EWith(t *testing.T, n int, lab *pkitest.Lab, extra func(*pkitest.Lab) string, authListen ...string) *e2e {
	t.Helper()
	x := newE2EWith(t, n, lab, extra, authListen...)
	x.start(t)
	return x
}

// newE2EWith is startE2EWith without starting mxedge: the caller sets what start reads, then
// calls start.
func newE2EWith(t *testing.T, n int, lab *pkitest.Lab, extra func(*pkitest.Lab) string, authListen ...string) *e2e {
	t.Helper()
	peertest.Require(t, "freeradius", "radclient")
	x := &e2e{lab: lab, logs: &syncBuffer{}}
	var servers strings.Builder
	for i := range n {
		port := peertest.FreePort(t)
		fr := peertest.StartFreeRADIUS(t, peertest.FreeRADIUSOptions{
			RadSecAddr: fmt.Sprintf("127.0.0.1:%d", port),
			ServerCert: lab.ServerCert, ServerKey: lab.ServerKey, CA: lab.CAFile,
			Users: users, AccountingLog: true, Debug: os.Getenv("FR_DEBUG") != "",
		})
		x.fr = append(x.fr, fr)
		x.frAddr = append(x.frAddr, fmt.Sprintf("127.0.0.1:%d", port))
		fmt.Fprintf(&servers, "    - name: fr%d\n      address: 127.0.0.1:%d\n      priority: %d\n", i, port, i)
	}
	auth := "127.0.0.1:0"
	if len(authListen) > 0 {
		auth = authListen[0]
	}
	cfg := fmt.Sprintf(`
cache:
  path: %s
control:
  socket: %s
metrics:
  listen: ""
log:
  level: debug
listen:
  auth: [%q]
  acct: ["127.0.0.1:0"]
request_timeout: 4s
clients:
  - name: lab-switch
    address: 127.0.0.1
    secret: %q
    vendor: cisco
    site: MistAA Test Site
upstreams:
  tls:
    certificate: %s
    key: %s
    ca: %s
  servers:
%s`, filepath.Join(lab.Dir, "cache.db"), filepath.Join(lab.Dir, "control.sock"), auth, nasSecret, lab.ClientCert, lab.ClientKey, lab.CAFile, servers.String())
	if extra != nil {
		cfg += extra(lab)
	}
	path := filepath.Join(t.TempDir(), "mxedge.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	x.cfgPath = path
	t.Cleanup(func() {
		x.stop()
		if t.Failed() {
			t.Logf("mxedge log:\n%s", x.logs.String())
			for i, fr := range x.fr {
				n := 40
				if os.Getenv("FR_DEBUG") != "" {
					n = 2000
				}
				t.Logf("freeradius %d log:\n%s", i, fr.LogTail(n))
				if os.Getenv("FR_DEBUG") != "" {
					b, _ := os.ReadFile(fr.LogPath())
					os.WriteFile(fmt.Sprintf("/tmp/fr%d.log", i), b, 0o644)
				}
			}
		}
	})
	return x
}

func radclient(t *testing.T, server, kind, secret string, reqs ...[]string) []peertest.Reply {
	t.Helper()
	var rs []peertest.Request
	for _, r := range reqs {
		rs = append(rs, peertest.Request{Attrs: r})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	replies, out, err := peertest.Radclient(ctx, peertest.RadclientOptions{
		Server: server, Kind: kind, Secret: secret, Requests: rs, Retries: 0, Timeout: 5 * time.Second,
	})
	if err != nil {
		t.Fatalf("radclient: %v\n%s", err, out)
	}
	return replies
}

func wantAttr(t *testing.T, r peertest.Reply, name, value string) {
	t.Helper()
	if got, ok := r.Lookup(name); !ok || got != value {
		t.Errorf("%s = %q, want %q (reply %+v)", name, got, value, r.Attrs)
	}
}

func TestE2EProxyToFreeRADIUS(t *testing.T) {
	x := startE2E(t, 1, nil)
	st := x.edge.Server().Stats()

	t.Run("PAP accept with VLAN and vendor attributes", func(t *testing.T) {
		r := radclient(t, x.auth, "auth", nasSecret, []string{
			`User-Name = "alice"`, `User-Password = "s3cret pass\"word"`, `Message-Authenticator = 0x00`,
			`NAS-IP-Address = 127.0.0.1`, `Calling-Station-Id = "02-00-00-00-00-01"`,
		})[0]
		if r.Code != "Access-Accept" {
			t.Fatalf("got %q: %+v", r.Code, r.Attrs)
		}
		// FreeRADIUS accepted the password: User-Password was re-encrypted with the RadSec secret.
		wantAttr(t, r, "Tunnel-Type", "VLAN")
		wantAttr(t, r, "Tunnel-Medium-Type", "IEEE-802")
		wantAttr(t, r, "Tunnel-Private-Group-Id", "300")
		wantAttr(t, r, "Cisco-AVPair", "shell:priv-lvl=15")
		wantAttr(t, r, "Aruba-User-Role", "employee")
		wantAttr(t, r, "Filter-Id", "corp")
		wantAttr(t, r, "Session-Timeout", "3600")
		if _, ok := r.Lookup("Message-Authenticator"); !ok {
			t.Error("reply lacks Message-Authenticator")
		}
	})
	t.Run("PAP wrong password rejected", func(t *testing.T) {
		r := radclient(t, x.auth, "auth", nasSecret, []string{`User-Name = "alice"`, `User-Password = "nope"`, `Message-Authenticator = 0x00`})[0]
		if r.Code != "Access-Reject" {
			t.Fatalf("got %q", r.Code)
		}
	})
	t.Run("MAB", func(t *testing.T) {
		r := radclient(t, x.auth, "auth", nasSecret, []string{
			`User-Name = "aabbccddeeff"`, `User-Password = "aabbccddeeff"`, `Calling-Station-Id = "AA-BB-CC-DD-EE-FF"`,
			`Service-Type = Call-Check`, `Message-Authenticator = 0x00`,
		})[0]
		if r.Code != "Access-Accept" {
			t.Fatalf("got %q: %+v", r.Code, r.Attrs)
		}
		wantAttr(t, r, "Tunnel-Private-Group-Id", "400")
		wantAttr(t, r, "Cisco-AVPair", "device-traffic-class=voice")
		wantAttr(t, r, "PaloAlto-User-Group", "iot")
	})
	t.Run("wrong NAS secret dropped", func(t *testing.T) {
		before := x.edge.Server().NASStats("lab-switch").BadAuthenticator.Load()
		r := radclient(t, x.auth, "auth", "not the secret", []string{`User-Name = "alice"`, `User-Password = "x"`, `Message-Authenticator = 0x00`})[0]
		if r.Code != "" {
			t.Fatalf("answered %q", r.Code)
		}
		if x.edge.Server().NASStats("lab-switch").BadAuthenticator.Load() != before+1 {
			t.Fatal("bad-authenticator not counted for the NAS")
		}
	})
	t.Run("missing Message-Authenticator dropped", func(t *testing.T) {
		before := st.Dropped[proxy.DropMissingMA].Load()
		r := radclient(t, x.auth, "auth", nasSecret, []string{`User-Name = "alice"`, `User-Password = "s3cret pass\"word"`})[0]
		if r.Code != "" {
			t.Fatalf("answered %q", r.Code)
		}
		if st.Dropped[proxy.DropMissingMA].Load() != before+1 {
			t.Fatal("not counted")
		}
	})
	t.Run("bad Message-Authenticator dropped", func(t *testing.T) {
		before := st.Dropped[proxy.DropBadAuthenticator].Load()
		p := nasRequest(t, "alice")
		p[len(p)-1] ^= 1 // the MA is the last attribute here
		if exchangeUDP(t, "127.0.0.1:0", x.auth, p, 500*time.Millisecond) != nil {
			t.Fatal("answered")
		}
		if st.Dropped[proxy.DropBadAuthenticator].Load() != before+1 {
			t.Fatal("not counted")
		}
	})
	t.Run("unknown client dropped", func(t *testing.T) {
		before := st.Dropped[proxy.DropUnknownClient].Load()
		if exchangeUDP(t, "127.0.0.2:0", x.auth, nasRequest(t, "alice"), 500*time.Millisecond) != nil {
			t.Fatal("answered an unknown client")
		}
		if st.Dropped[proxy.DropUnknownClient].Load() != before+1 {
			t.Fatal("not counted")
		}
		if !strings.Contains(x.logs.String(), "reason=unknown-client") {
			t.Fatal("not logged")
		}
	})
	t.Run("retransmission answered from the duplicate cache", func(t *testing.T) {
		before := st.DuplicateAnswered.Load()
		fwd := st.Forwarded.Load()
		p := nasRequest(t, "aabbccddeeff")
		conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		r1 := exchangeOn(t, conn, x.auth, p, 5*time.Second)
		r2 := exchangeOn(t, conn, x.auth, p, 5*time.Second)
		if r1 == nil || !bytes.Equal(r1, r2) {
			t.Fatal("retransmission not answered identically")
		}
		if st.DuplicateAnswered.Load() != before+1 || st.Forwarded.Load() != fwd+1 {
			t.Fatal("retransmission was forwarded again")
		}
	})
	t.Run("Status-Server", func(t *testing.T) {
		r := radclient(t, x.auth, "status", nasSecret, []string{`Message-Authenticator = 0x00`})[0]
		if r.Code != "Access-Accept" {
			t.Fatalf("got %q", r.Code)
		}
	})
	t.Run("accounting", func(t *testing.T) {
		r := radclient(t, x.acct, "acct", nasSecret, []string{
			`Acct-Status-Type = Start`, `Acct-Session-Id = "e2e-1"`, `User-Name = "alice"`, `NAS-IP-Address = 127.0.0.1`,
		})[0]
		if r.Code != "Accounting-Response" {
			t.Fatalf("got %q", r.Code)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		recs, err := x.fr[0].WaitAccounting(ctx, 1)
		if err != nil || recs[0].SessionID() != "e2e-1" {
			t.Fatalf("upstream accounting: %v %+v", err, recs)
		}
	})
}

// nasRequest builds an Access-Request with Message-Authenticator (last) for MAB user.
func nasRequest(t *testing.T, user string) packet.Packet {
	t.Helper()
	var auth [16]byte
	rand.Read(auth[:])
	b := packet.New(nil, packet.CodeAccessRequest, 7, auth[:])
	b.AddString(packet.AttrUserName, user)
	b.Add(packet.AttrUserPassword, packet.EncryptUserPassword(nil, []byte(user), []byte(nasSecret), auth[:]))
	calling := "aa-bb-cc-dd-ee-ff"
	if m, err := cache.NormalizeMAC(user); err == nil {
		calling = m
	}
	b.AddString(packet.AttrCallingStationID, calling)
	b.AddMA()
	p, err := b.Finish([]byte(nasSecret), nil)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func exchangeUDP(t *testing.T, from, to string, p []byte, wait time.Duration) []byte {
	t.Helper()
	conn, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(from)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	return exchangeOn(t, conn, to, p, wait)
}

func exchangeOn(t *testing.T, conn *net.UDPConn, to string, p []byte, wait time.Duration) []byte {
	t.Helper()
	if _, err := conn.WriteToUDPAddrPort(p, netip.MustParseAddrPort(to)); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 4096)
	n, _, err := conn.ReadFromUDPAddrPort(buf)
	if err != nil {
		return nil
	}
	return append([]byte(nil), buf[:n]...)
}

// TestE2EFailover: the primary is killed mid-run (RST) and then the secondary blackholed after the
// primary returns; no request goes unanswered and the dead upstream is noticed within 3 s.
func TestE2EFailover(t *testing.T) {
	x := startE2E(t, 2, nil)
	mab := []string{`User-Name = "aabbccddeeff"`, `User-Password = "aabbccddeeff"`, `Message-Authenticator = 0x00`}
	stop := make(chan struct{})
	var sent, accepted atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		// A steady stream of MAB requests from a Go NAS (radclient is one process per request).
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			sent.Add(1)
			if r := exchangeUDP(t, "127.0.0.1:0", x.auth, nasRequest(t, "aabbccddeeff"), 5*time.Second); r != nil && r[0] == byte(packet.CodeAccessAccept) {
				accepted.Add(1)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	time.Sleep(500 * time.Millisecond)
	x.fr[0].Kill()
	time.Sleep(1500 * time.Millisecond)
	if r := radclient(t, x.auth, "auth", nasSecret, mab)[0]; r.Code != "Access-Accept" {
		t.Fatalf("after killing the primary: %q", r.Code)
	}
	ups := x.edge.Router().Pool().Upstreams()
	if st := ups[0].Status(); st.State == proxy.StateUp {
		t.Fatalf("killed upstream still up: %+v", st)
	}
	close(stop)
	wg.Wait()
	if sent.Load() != accepted.Load() {
		t.Fatalf("%d requests sent, %d accepted: requests were lost across the failover", sent.Load(), accepted.Load())
	}
	t.Logf("%d requests across the failover, all accepted", sent.Load())
}

// TestE2EBlackhole freezes the primary (SIGSTOP: TCP stays open, nothing answers, no RST) and checks
// it is declared dead within 3 s and requests keep being answered by the secondary.
func TestE2EBlackhole(t *testing.T) {
	x := startE2E(t, 2, nil)
	ups := x.edge.Router().Pool().Upstreams()
	if r := radclient(t, x.auth, "auth", nasSecret, []string{`User-Name = "alice"`, `User-Password = "s3cret pass\"word"`, `Message-Authenticator = 0x00`})[0]; r.Code != "Access-Accept" {
		t.Fatalf("before: %q", r.Code)
	}
	if err := x.fr[0].Pause(); err != nil {
		t.Fatal(err)
	}
	defer x.fr[0].Resume()
	cut := time.Now()
	// The request in flight at the cut is re-sent to the secondary when the primary is declared dead.
	r := exchangeUDP(t, "127.0.0.1:0", x.auth, nasRequest(t, "aabbccddeeff"), 6*time.Second)
	if r == nil || r[0] != byte(packet.CodeAccessAccept) {
		t.Fatalf("request at the cut: %v", r)
	}
	answered := time.Since(cut)
	var detected time.Duration
	for time.Since(cut) < 5*time.Second {
		if st := ups[0].Status(); st.State != proxy.StateUp {
			detected = st.Since.Sub(cut)
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if detected <= 0 || detected > 3*time.Second {
		t.Fatalf("blackhole detected after %v (want ≤ 3s)", detected)
	}
	t.Logf("blackhole: detected after %v, request at the cut answered after %v", detected.Round(time.Millisecond), answered.Round(time.Millisecond))
	// Once the primary answers again it comes back into service.
	x.fr[0].Resume()
	deadline := time.Now().Add(15 * time.Second)
	for ups[0].Status().State != proxy.StateUp && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if ups[0].Status().State != proxy.StateUp {
		t.Fatal("primary did not come back")
	}
}

// TestE2EEAPTLSPassThrough: eapol_test's EAP-TLS through mxedge to FreeRADIUS; the MS-MPPE keys that
// FreeRADIUS sends (encrypted with the RadSec secret) reach the supplicant's NAS side re-encrypted
// with the NAS secret, which eapol_test verifies.
func TestE2EEAPTLSPassThrough(t *testing.T) {
	peertest.Require(t, "eapol_test")
	x := startE2E(t, 1, nil)
	host, port, _ := net.SplitHostPort(x.auth)
	p, _ := strconv.Atoi(port)
	for _, tls13 := range []bool{false, true} {
		t.Run(fmt.Sprintf("tls13=%v", tls13), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			res, err := peertest.EapolTest(ctx, peertest.EapolOptions{
				Server: host, Port: p, Secret: nasSecret,
				Identity: "edge.example.test", AnonymousIdentity: "anonymous@example.test",
				CACert: x.lab.CAFile, ClientCert: x.lab.ClientCert, PrivateKey: x.lab.ClientKey,
				TLS13: tls13, TLS12Only: !tls13, Timeout: 20 * time.Second,
			})
			if err != nil {
				t.Fatalf("eapol_test: %v\n%s", err, res.Output)
			}
			if !res.Success || !res.MPPEOK {
				t.Fatalf("success=%v mppe=%v\n%s", res.Success, res.MPPEOK, tail(res.Output, 30))
			}
		})
	}
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// TestE2ERadSecListener: radclient → radsecproxy (UDP in, RadSec out) → mxedge's RadSec listener →
// FreeRADIUS over RadSec.
func TestE2ERadSecListener(t *testing.T) {
	peertest.Require(t, "radsecproxy")
	x := startE2E(t, 1, func(lab *pkitest.Lab) string {
		return fmt.Sprintf(`
radsec:
  listen: ["127.0.0.1:0"]
  tls:
    certificate: %s
    key: %s
    ca: %s
  peers:
    - name: radsecproxy
      address: 127.0.0.1
      cert_names: ["localhost"]
`, lab.ServerCert, lab.ServerKey, lab.CAFile)
	})
	udp := peertest.FreePort(t)
	peertest.StartRadsecproxy(t, peertest.RadsecproxyOptions{
		ListenUDP: fmt.Sprintf("127.0.0.1:%d", udp),
		Clients:   []peertest.Client{{Addr: "127.0.0.1", Secret: "proxy secret"}},
		Upstream:  x.radsec,
		Cert:      x.lab.ServerCert, Key: x.lab.ServerKey, CA: x.lab.CAFile,
	})
	r := radclient(t, fmt.Sprintf("127.0.0.1:%d", udp), "auth", "proxy secret", []string{
		`User-Name = "alice"`, `User-Password = "s3cret pass\"word"`, `Message-Authenticator = 0x00`,
	})[0]
	if r.Code != "Access-Accept" {
		t.Fatalf("got %q %+v", r.Code, r.Attrs)
	}
	wantAttr(t, r, "Tunnel-Private-Group-Id", "300")
	if !strings.Contains(x.logs.String(), "radsec peer connected") {
		t.Fatal("listener did not log the peer")
	}
}

// TestE2ECacheLearning: a MAB Access-Accept from FreeRADIUS is learned with its VLAN, survives a
// restart, and an Access-Reject for a cached client removes it.
func TestE2ECacheLearning(t *testing.T) {
	x := startE2E(t, 1, nil)
	r := radclient(t, x.auth, "auth", nasSecret, []string{
		`User-Name = "aabbccddeeff"`, `User-Password = "aabbccddeeff"`, `Calling-Station-Id = "AA-BB-CC-DD-EE-FF"`,
		`Message-Authenticator = 0x00`,
	})[0]
	if r.Code != "Access-Accept" {
		t.Fatalf("MAB: %q", r.Code)
	}
	store := x.edge.Cache()
	waitLearned(t, x.edge, "the accepted MAB client cached", func(c *cache.Store) bool {
		_, ok, _ := c.LookupMAC("aa-bb-cc-dd-ee-ff")
		return ok
	})
	rec, ok, err := store.LookupMAC("aa-bb-cc-dd-ee-ff")
	if err != nil || !ok {
		t.Fatalf("not learned: %v %v", ok, err)
	}
	if survivability.VLAN(rec.Attrs) != "400" || rec.Method != cache.MethodMAB || rec.NAS != "lab-switch" || rec.Site != "MistAA Test Site" {
		t.Fatalf("record %+v", rec)
	}
	// The operator sees it with `mxedge cache show`, through the daemon's control socket.
	out := mxedgeCLI(t, "cache", "show", "--socket", filepath.Join(x.lab.Dir, "control.sock"), "AA-BB-CC-DD-EE-FF")
	for _, want := range []string{"aa:bb:cc:dd:ee:ff", "mab", "lab-switch", "Tunnel-Private-Group-Id", "400", "Cisco-AVPair"} {
		if !strings.Contains(out, want) {
			t.Fatalf("cache show lacks %q:\n%s", want, out)
		}
	}
	// A client the cloud does not know, planted in the cache as if learned earlier.
	if err := store.Upsert(cache.Record{MAC: "11:22:33:44:55:66", Identity: "112233445566", Method: cache.MethodMAB,
		Attrs: []cache.Attr{{Type: 81, Value: []byte("99")}}}); err != nil {
		t.Fatal(err)
	}

	x.stop()
	x.start(t)
	store = x.edge.Cache()
	if rec, ok, _ := store.LookupMAC("aabbccddeeff"); !ok || survivability.VLAN(rec.Attrs) != "400" {
		t.Fatal("learned entry lost across a restart")
	}
	if _, ok, _ := store.LookupMAC("112233445566"); !ok {
		t.Fatal("planted entry lost across a restart")
	}
	r = radclient(t, x.auth, "auth", nasSecret, []string{
		`User-Name = "112233445566"`, `User-Password = "112233445566"`, `Calling-Station-Id = "11-22-33-44-55-66"`,
		`Message-Authenticator = 0x00`,
	})[0]
	if r.Code != "Access-Reject" {
		t.Fatalf("unknown MAB: %q", r.Code)
	}
	waitLearned(t, x.edge, "a client the cloud rejected gone from the cache", func(c *cache.Store) bool {
		_, ok, _ := c.LookupMAC("112233445566")
		return !ok
	})
	if out := mxedgeCLI(t, "cache", "list", "--socket", filepath.Join(x.lab.Dir, "control.sock")); strings.Contains(out, "11:22:33:44:55:66") {
		t.Fatalf("cache list still shows the rejected client:\n%s", out)
	}
}

// mxedgeCLI runs an mxedge command in-process and returns its output.
func mxedgeCLI(t *testing.T, args ...string) string {
	t.Helper()
	cmd := cli.New(cli.BuildInfo{})
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	if err := cmd.Execute(); err != nil {
		t.Fatalf("mxedge %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	return out.String()
}

// TestE2EPKIFromCLI: certificates made with `mxedge pki` (ca init, issue server, issue client) work
// with the real peers in every role — FreeRADIUS as RadSec and EAP-TLS server, mxedge as RadSec
// client and listener, radsecproxy as RadSec client, eapol_test as EAP-TLS supplicant.
func TestE2EPKIFromCLI(t *testing.T) {
	peertest.Require(t, "radsecproxy", "eapol_test")
	dir := t.TempDir()
	f := func(name string) string { return filepath.Join(dir, name) }
	mxedgeCLI(t, "pki", "ca", "init", "--out", dir, "--cn", "mxedge e2e CA")
	ca := []string{"--ca-cert", f("ca.pem"), "--ca-key", f("ca.key")}
	mxedgeCLI(t, append([]string{"pki", "issue", "server", "--cn", "localhost", "--dns", "localhost", "--ip", "127.0.0.1",
		"--out-cert", f("server.pem"), "--out-key", f("server.key")}, ca...)...)
	mxedgeCLI(t, append([]string{"pki", "issue", "client", "--cn", "edge.example.test",
		"--out-cert", f("client.pem"), "--out-key", f("client.key")}, ca...)...)
	mxedgeCLI(t, append([]string{"pki", "issue", "client", "--cn", "radsecproxy.example.test",
		"--out-cert", f("rp.pem"), "--out-key", f("rp.key")}, ca...)...)
	if out := mxedgeCLI(t, "pki", "verify", "--ca", f("ca.pem"), "--purpose", "client", f("client.pem")); !strings.Contains(out, "OK") {
		t.Fatalf("pki verify: %s", out)
	}
	lab := &pkitest.Lab{Dir: dir, CAFile: f("ca.pem"), ServerCert: f("server.pem"), ServerKey: f("server.key"),
		ClientCert: f("client.pem"), ClientKey: f("client.key")}
	x := startE2EWith(t, 1, lab, func(lab *pkitest.Lab) string {
		return fmt.Sprintf(`
radsec:
  listen: ["127.0.0.1:0"]
  tls: {certificate: %s, key: %s, ca: %s}
  peers:
    - name: radsecproxy
      address: 127.0.0.1
      cert_names: ["radsecproxy.example.test"]
`, lab.ServerCert, lab.ServerKey, lab.CAFile)
	})
	udp := peertest.FreePort(t)
	peertest.StartRadsecproxy(t, peertest.RadsecproxyOptions{
		ListenUDP: fmt.Sprintf("127.0.0.1:%d", udp),
		Clients:   []peertest.Client{{Addr: "127.0.0.1", Secret: "proxy secret"}},
		Upstream:  x.radsec,
		Cert:      f("rp.pem"), Key: f("rp.key"), CA: f("ca.pem"),
	})
	r := radclient(t, fmt.Sprintf("127.0.0.1:%d", udp), "auth", "proxy secret", []string{
		`User-Name = "alice"`, `User-Password = "s3cret pass\"word"`, `Message-Authenticator = 0x00`,
	})[0]
	if r.Code != "Access-Accept" {
		t.Fatalf("radsecproxy → mxedge listener → FreeRADIUS with CLI-made certificates: %q", r.Code)
	}
	host, port, _ := net.SplitHostPort(x.auth)
	p, _ := strconv.Atoi(port)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := peertest.EapolTest(ctx, peertest.EapolOptions{
		Server: host, Port: p, Secret: nasSecret, Identity: "edge.example.test",
		CACert: f("ca.pem"), ClientCert: f("client.pem"), PrivateKey: f("client.key"), Timeout: 20 * time.Second,
	})
	if err != nil || !res.Success || !res.MPPEOK {
		t.Fatalf("eapol_test with CLI-made certificates: %v success=%v mppe=%v\n%s", err, res.Success, res.MPPEOK, tail(res.Output, 30))
	}
}
