package edge_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"mxedge/edge/peertest"
	"mxedge/pki/pkitest"
	"mxedge/proxy"
	"mxedge/proxy/packet"
	"mxedge/proxy/radsec"
)

// The RADIUS/1.1 (RFC 9765) proof: two mxedge instances, A's upstream to B's RadSec listener, B
// forwarding to FreeRADIUS; radclient and eapol_test as the NAS on A. Between A and B a recording
// relay (wireTap) passes the TLS records' plaintext on unchanged and keeps every packet, so the
// test reads what the hop carried.

// listenerExtra is B's RadSec listener, for any peer certificate the lab CA signed.
func listenerExtra(version string) func(*pkitest.Lab) string {
	return func(lab *pkitest.Lab) string {
		return fmt.Sprintf(`
radsec:
  listen: ["127.0.0.1:0"]
  tls:
    certificate: %s
    key: %s
    ca: %s
    radius_version: %s
  peers:
    - name: edge-a
      address: 127.0.0.1
      cert_names: ["*"]
`, lab.ServerCert, lab.ServerKey, lab.CAFile, version)
	}
}

// startEdgeA runs a second mxedge whose one upstream is upstream, with radius_version version.
func startEdgeA(t *testing.T, lab *pkitest.Lab, upstream, version string) *e2e {
	t.Helper()
	dir := t.TempDir()
	x := &e2e{lab: lab, logs: &syncBuffer{}, metricsAddr: "127.0.0.1:0"}
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
  auth: ["127.0.0.1:0"]
  acct: ["127.0.0.1:0"]
request_timeout: 4s
clients:
  - name: lab-switch
    address: 127.0.0.1
    secret: %q
upstreams:
  tls:
    certificate: %s
    key: %s
    ca: %s
    radius_version: %s
  servers:
    - name: edge-b
      address: %s
`, filepath.Join(dir, "cache.db"), filepath.Join(dir, "control.sock"), nasSecret, lab.ClientCert, lab.ClientKey, lab.CAFile, version, upstream)
	x.cfgPath = filepath.Join(dir, "mxedge.yaml")
	if err := os.WriteFile(x.cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	x.start(t)
	t.Cleanup(func() {
		x.stop()
		if t.Failed() {
			t.Logf("edge A log:\n%s", tail(x.logs.String(), 80))
		}
	})
	return x
}

// waitUp waits for the edge's first upstream to carry requests and returns its status.
func waitUp(t *testing.T, x *e2e) proxy.UpstreamStatus {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		st := x.edge.Status().Upstreams[0]
		if st.State == proxy.StateUp && len(st.TLS) > 0 {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("upstream not up: %+v", st)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type tapped struct {
	fromA bool
	p     packet.Packet
}

// wireTap terminates A's TLS (ALPN allow) and opens one to B offering exactly what A negotiated, so
// both legs speak the same version and the packets pass unchanged.
type wireTap struct {
	ln      net.Listener
	mu      sync.Mutex
	packets []tapped
	alpn    []string // what each leg to A negotiated
	wg      sync.WaitGroup
}

func startTap(t *testing.T, lab *pkitest.Lab, to string) *wireTap {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	w := &wireTap{ln: ln}
	scfg := lab.ServerTLS()
	radsec.VersionAllow.Apply(scfg)
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		for {
			raw, err := ln.Accept()
			if err != nil {
				return
			}
			w.wg.Add(1)
			go func() {
				defer w.wg.Done()
				defer raw.Close()
				a := tls.Server(raw, scfg)
				if a.Handshake() != nil {
					return
				}
				proto := a.ConnectionState().NegotiatedProtocol
				ccfg := lab.ClientTLS()
				ccfg.ServerName = "localhost"
				if proto != "" {
					ccfg.NextProtos = []string{proto}
				}
				braw, err := net.Dial("tcp", to)
				if err != nil {
					return
				}
				defer braw.Close()
				b := tls.Client(braw, ccfg)
				if b.Handshake() != nil || b.ConnectionState().NegotiatedProtocol != proto {
					return
				}
				w.mu.Lock()
				w.alpn = append(w.alpn, proto)
				w.mu.Unlock()
				done := make(chan struct{}, 2)
				go func() { w.relay(a, b, true); done <- struct{}{} }()
				go func() { w.relay(b, a, false); done <- struct{}{} }()
				<-done
				raw.Close()
				braw.Close()
				<-done
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); w.wg.Wait() })
	return w
}

func (w *wireTap) relay(from, to net.Conn, fromA bool) {
	r := bufio.NewReader(from)
	for {
		p, err := radsec.ReadPacket(r)
		if err != nil {
			return
		}
		w.mu.Lock()
		w.packets = append(w.packets, tapped{fromA, append(packet.Packet(nil), p...)})
		w.mu.Unlock()
		if _, err := to.Write(p); err != nil {
			return
		}
	}
}

func (w *wireTap) snapshot() ([]tapped, []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]tapped(nil), w.packets...), append([]string(nil), w.alpn...)
}

// request finds the first request from A of code with User-Name user, and B's answer to it.
func (w *wireTap) exchange(t *testing.T, code packet.Code, user string) (req, resp packet.Packet) {
	t.Helper()
	ps, _ := w.snapshot()
	for _, tp := range ps {
		if !tp.fromA || tp.p.Code() != code {
			continue
		}
		if v, _ := tp.p.Attr(packet.AttrUserName); user != "" && string(v) != user {
			continue
		}
		req = tp.p
		for _, r := range ps {
			if !r.fromA && r.p.Token() == req.Token() && r.p.Code() != packet.CodeCoARequest {
				return req, r.p
			}
		}
		t.Fatalf("no answer on the hop to %v token %#x", code, req.Token())
	}
	t.Fatalf("no %v for %q on the hop", code, user)
	return nil, nil
}

// TestRADIUS11BetweenEdges: A (radius_version allow) and B (allow) negotiate ALPN radius/1.1, shown
// on both in their status; PAP, CHAP, EAP-TLS with MPPE keys, accounting and the Status-Server
// watchdog work through A → B → FreeRADIUS; on the hop every packet has a Token, Reserved-1 and
// Reserved-2 zero and no Message-Authenticator, User-Password and the MPPE keys are plain, and a
// CHAP request gained CHAP-Challenge.
func TestRADIUS11BetweenEdges(t *testing.T) {
	peertest.Require(t, "freeradius", "radclient", "eapol_test")
	b := startE2E(t, 1, listenerExtra("allow"))
	tap := startTap(t, b.lab, b.radsec)
	a := startEdgeA(t, b.lab, tap.ln.Addr().String(), "allow")

	st := waitUp(t, a)
	if st.TLS[0].RADIUS != "1.1" {
		t.Fatalf("A's upstream negotiated RADIUS/%s, want 1.1 (%+v)", st.TLS[0].RADIUS, st.TLS[0])
	}
	if _, alpn := tap.snapshot(); len(alpn) == 0 || alpn[0] != radsec.ALPN11 {
		t.Fatalf("ALPN on the hop: %q", alpn)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		conns := b.edge.Listener().Conns()
		if len(conns) > 0 && conns[0].TLS.RADIUS == "1.1" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("B's listener connections: %+v", conns)
		}
	}

	// What the operator sees: mxedge status, text and mxedge.status.v1, on both edges.
	sock := func(x *e2e) string { return filepath.Join(filepath.Dir(x.cfgPath), "control.sock") }
	if out := mxedgeCLI(t, "status", "--socket", sock(a)); !strings.Contains(out, "RADIUS/1.1") {
		t.Errorf("A's mxedge status does not show RADIUS/1.1:\n%s", out)
	}
	if out := mxedgeCLI(t, "status", "--socket", filepath.Join(b.lab.Dir, "control.sock"), "-o", "json"); !strings.Contains(out, `"radius_version": "1.1"`) {
		t.Errorf("B's mxedge status -o json does not show radius_version 1.1:\n%s", out)
	}

	// PAP.
	r := radclient(t, a.auth, "auth", nasSecret, []string{
		`User-Name = "alice"`, `User-Password = "s3cret pass\"word"`, `Message-Authenticator = 0x00`,
	})[0]
	if r.Code != "Access-Accept" {
		t.Fatalf("PAP: %q %+v", r.Code, r.Attrs)
	}
	wantAttr(t, r, "Tunnel-Private-Group-Id", "300")
	req, _ := tap.exchange(t, packet.CodeAccessRequest, "alice")
	if v, _ := req.Attr(packet.AttrUserPassword); string(v) != `s3cret pass"word` {
		t.Errorf("User-Password on the 1.1 hop = %q, want the password in the clear", v)
	}

	// CHAP: radclient's challenge is its Request Authenticator; the hop must carry it.
	r = radclient(t, a.auth, "auth", nasSecret, []string{
		`User-Name = "alice"`, `CHAP-Password = "s3cret pass\"word"`, `Message-Authenticator = 0x00`,
	})[0]
	if r.Code != "Access-Accept" {
		t.Fatalf("CHAP: %q %+v", r.Code, r.Attrs)
	}
	ps, _ := tap.snapshot()
	chap := false
	for _, tp := range ps {
		if tp.fromA && tp.p.Has(packet.AttrCHAPPassword) {
			v, ok := tp.p.Attr(packet.AttrCHAPChallenge)
			chap = ok && len(v) == packet.AuthLen
		}
	}
	if !chap {
		t.Error("the CHAP request crossed the 1.1 hop without a 16-octet CHAP-Challenge")
	}

	// Accounting.
	r = radclient(t, a.acct, "acct", nasSecret, []string{
		`User-Name = "alice"`, `Acct-Status-Type = Start`, `Acct-Session-Id = "v11-1"`, `NAS-IP-Address = 127.0.0.1`,
	})[0]
	if r.Code != "Accounting-Response" {
		t.Fatalf("accounting: %q", r.Code)
	}
	tap.exchange(t, packet.CodeAccountingRequest, "alice")

	// EAP-TLS: the MPPE keys FreeRADIUS hides for B are plain on the hop and hidden again for the
	// NAS by A; eapol_test checks them.
	host, port, _ := net.SplitHostPort(a.auth)
	pn, _ := strconv.Atoi(port)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := peertest.EapolTest(ctx, peertest.EapolOptions{
		Server: host, Port: pn, Secret: nasSecret,
		Identity: "edge.example.test", AnonymousIdentity: "anonymous@example.test",
		CACert: a.lab.CAFile, ClientCert: a.lab.ClientCert, PrivateKey: a.lab.ClientKey,
		TLS13: true, Timeout: 20 * time.Second,
	})
	if err != nil || !res.Success || !res.MPPEOK {
		t.Fatalf("eapol_test: %v success=%v mppe=%v\n%s", err, res.Success, res.MPPEOK, tail(res.Output, 30))
	}
	ps, _ = tap.snapshot()
	keys := 0
	for _, tp := range ps {
		if tp.fromA || tp.p.Code() != packet.CodeAccessAccept {
			continue
		}
		for it := tp.p.Attrs(); ; {
			typ, v, ok := it.Next()
			if !ok {
				break
			}
			if typ == packet.AttrVendorSpecific {
				packet.SplitVSA(v, func(s packet.VSA) {
					if s.Vendor == packet.VendorMicrosoft && (s.Type == 16 || s.Type == 17) {
						keys++
						if len(s.Value) != 32 {
							t.Errorf("MS-MPPE key %d on the hop is %d octets, want the 32-octet key in the clear", s.Type, len(s.Value))
						}
					}
				})
			}
		}
	}
	if keys < 2 {
		t.Fatalf("%d MS-MPPE keys on the hop, want Send and Recv", keys)
	}

	// The watchdog's Status-Server (the one A sends before a connection carries requests).
	if _, resp := tap.exchange(t, packet.CodeStatusServer, ""); resp.Code() != packet.CodeAccessAccept {
		t.Fatalf("Status-Server answered with %v", resp.Code())
	}

	// Every packet on the hop is RADIUS/1.1.
	ps, _ = tap.snapshot()
	tokens := map[uint32]bool{}
	for _, tp := range ps {
		p := tp.p
		if p[1] != 0 || strings.Trim(string(p[8:packet.HeaderLen]), "\x00") != "" {
			t.Errorf("%v: Reserved-1 %d, Reserved-2 %x", p.Code(), p[1], p[8:packet.HeaderLen])
		}
		if p.Has(packet.AttrMessageAuthenticator) {
			t.Errorf("%v token %#x carries Message-Authenticator on the 1.1 hop", p.Code(), p.Token())
		}
		if tp.fromA {
			if tokens[p.Token()] {
				t.Errorf("token %#x used twice", p.Token())
			}
			tokens[p.Token()] = true
		}
	}
	for _, tp := range ps {
		if !tp.fromA && !tokens[tp.p.Token()] {
			t.Errorf("%v from B with token %#x answers nothing A sent", tp.p.Code(), tp.p.Token())
		}
	}
	if len(ps) < 10 {
		t.Fatalf("only %d packets on the hop", len(ps))
	}
	t.Logf("%d RADIUS/1.1 packets on the hop, %d requests from A", len(ps), len(tokens))
}

// startFR starts FreeRADIUS with a RadSec listener and the e2e users.
func startFR(t *testing.T, lab *pkitest.Lab) string {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", peertest.FreePort(t))
	peertest.StartFreeRADIUS(t, peertest.FreeRADIUSOptions{
		RadSecAddr: addr, ServerCert: lab.ServerCert, ServerKey: lab.ServerKey, CA: lab.CAFile, Users: users,
	})
	return addr
}

// startRadsecproxyServer starts radsecproxy as a RadSec server forwarding to FreeRADIUS.
func startRadsecproxyServer(t *testing.T, lab *pkitest.Lab) string {
	t.Helper()
	fr := startFR(t, lab)
	addr := fmt.Sprintf("127.0.0.1:%d", peertest.FreePort(t))
	peertest.StartRadsecproxy(t, peertest.RadsecproxyOptions{
		ListenUDP: fmt.Sprintf("127.0.0.1:%d", peertest.FreePort(t)), ListenTLS: addr, Upstream: fr,
		Cert: lab.ServerCert, Key: lab.ServerKey, CA: lab.CAFile,
	})
	return addr
}

// papAlice sends alice's PAP request to the edge and returns the reply code ("" for none).
func papAlice(t *testing.T, x *e2e) string {
	t.Helper()
	return radclient(t, x.auth, "auth", nasSecret, []string{
		`User-Name = "alice"`, `User-Password = "s3cret pass\"word"`, `Message-Authenticator = 0x00`,
	})[0].Code
}

// TestRADIUS11Fallback: with allow, peers that know nothing of ALPN (FreeRADIUS 3.2, radsecproxy
// 1.9) get classic RADIUS/TLS and work; with require, the upstream connection to them is closed,
// logged and counted, and requests get what the product's rules give them (as for any
// unreachable cloud: accounting acknowledged, PAP decided locally); a listener on require refuses a classic client (radsecproxy) the same way,
// and accepts an mxedge that requires 1.1 too.
func TestRADIUS11Fallback(t *testing.T) {
	peertest.Require(t, "freeradius", "radclient", "radsecproxy")
	servers := map[string]func(*testing.T, *pkitest.Lab) string{"freeradius": startFR, "radsecproxy": startRadsecproxyServer}
	for _, name := range []string{"freeradius", "radsecproxy"} {
		t.Run("allow to "+name, func(t *testing.T) {
			lab := pkitest.Must(t)
			a := startEdgeA(t, lab, servers[name](t, lab), "allow")
			if st := waitUp(t, a); st.TLS[0].RADIUS != "1.0" {
				t.Fatalf("negotiated RADIUS/%s with %s", st.TLS[0].RADIUS, name)
			}
			if code := papAlice(t, a); code != "Access-Accept" {
				t.Fatalf("PAP through %s: %q", name, code)
			}
		})
		t.Run("require to "+name, func(t *testing.T) {
			lab := pkitest.Must(t)
			a := startEdgeA(t, lab, servers[name](t, lab), "require")
			deadline := time.Now().Add(10 * time.Second)
			for a.edge.Status().Upstreams[0].VersionRefused == 0 {
				if time.Now().After(deadline) {
					t.Fatalf("no refusal counted: %+v", a.edge.Status().Upstreams[0])
				}
				time.Sleep(20 * time.Millisecond)
			}
			if st := a.edge.Status().Upstreams[0]; st.State == proxy.StateUp {
				t.Fatalf("upstream up with require against %s", name)
			}
			if !strings.Contains(a.logs.String(), "upstream connection refused: radius version") {
				t.Fatal("refusal not logged")
			}
			m := &metricsEdge{e: a.edge, url: fmt.Sprintf("http://%s/metrics", a.edge.Metrics().Addr())}
			if n := sum(families(t, m.scrape(t)), "mxedge_radsec_version_refused_total", map[string]string{"direction": "upstream"}); n < 1 {
				t.Fatalf("mxedge_radsec_version_refused_total{direction=upstream} = %v", n)
			}
			// The product's rules for an unreachable cloud apply: accounting is spooled and
			// acknowledged; PAP gets the configured local decision (by default a deliberate,
			// logged non-answer, so the NAS fails over).
			r := radclient(t, a.acct, "acct", nasSecret, []string{
				`User-Name = "alice"`, `Acct-Status-Type = Start`, `Acct-Session-Id = "v11-req"`, `NAS-IP-Address = 127.0.0.1`,
			})[0]
			if r.Code != "Accounting-Response" {
				t.Fatalf("accounting unanswered: %q", r.Code)
			}
			papAlice(t, a)
			if !strings.Contains(a.logs.String(), `msg="access decision" code=none nas=lab-switch user=alice method=pap decider=policy reason=password-no-answer`) {
				t.Fatal("the PAP request got no logged local decision")
			}
		})
	}
	t.Run("listener require refuses radsecproxy", func(t *testing.T) {
		b := startE2E(t, 1, listenerExtra("require"))
		udp := fmt.Sprintf("127.0.0.1:%d", peertest.FreePort(t))
		peertest.StartRadsecproxy(t, peertest.RadsecproxyOptions{
			ListenUDP: udp, Clients: []peertest.Client{{Addr: "127.0.0.1", Secret: "proxy secret"}},
			Upstream: b.radsec, Cert: b.lab.ServerCert, Key: b.lab.ServerKey, CA: b.lab.CAFile,
		})
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		deadline := time.Now().Add(15 * time.Second)
		for b.edge.Listener().Stats().VersionRefused.Load() == 0 {
			if time.Now().After(deadline) {
				t.Fatal("the listener counted no refusal")
			}
			// radsecproxy connects when it has a request; it gets no answer from a listener
			// that refused it.
			peertest.Radclient(ctx, peertest.RadclientOptions{Server: udp, Kind: "auth", Secret: "proxy secret",
				Requests: []peertest.Request{{Attrs: []string{`User-Name = "alice"`, `User-Password = "x"`}}}, Timeout: time.Second})
		}
		if !strings.Contains(b.logs.String(), "radsec peer refused: radius version") {
			t.Fatal("refusal not logged")
		}
		if n := len(b.edge.Listener().Conns()); n != 0 {
			t.Fatalf("%d connections live on a require listener after a classic client", n)
		}
	})
	t.Run("listener require accepts require", func(t *testing.T) {
		b := startE2E(t, 1, listenerExtra("require"))
		a := startEdgeA(t, b.lab, b.radsec, "require")
		if st := waitUp(t, a); st.TLS[0].RADIUS != "1.1" {
			t.Fatalf("negotiated RADIUS/%s", st.TLS[0].RADIUS)
		}
		if code := papAlice(t, a); code != "Access-Accept" {
			t.Fatalf("PAP: %q", code)
		}
	})
}
