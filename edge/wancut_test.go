package edge_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"mxedge/cache"
	"mxedge/edge/peertest"
	"mxedge/pki/pkitest"
	"mxedge/proxy/packet"
	"mxedge/survivability"
)

// relay is a TCP relay standing in for the WAN: Cut makes it a blackhole (bytes are read and
// dropped, nothing is answered, no RST — what a dead WAN link looks like), Restore forwards again,
// Reset closes every connection (an RST).
type relay struct {
	ln     net.Listener
	target string
	cut    atomic.Bool
	mu     sync.Mutex
	conns  []net.Conn
}

func startRelay(t *testing.T, target string) *relay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &relay{ln: ln, target: target}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if r.cut.Load() {
				// A new connection into a dead WAN: the handshake never completes.
				r.track(c)
				go io.Copy(io.Discard, c)
				continue
			}
			u, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			r.track(c)
			r.track(u)
			go r.pipe(c, u)
			go r.pipe(u, c)
		}
	}()
	t.Cleanup(func() { ln.Close(); r.Reset() })
	return r
}

func (r *relay) track(c net.Conn) {
	r.mu.Lock()
	r.conns = append(r.conns, c)
	r.mu.Unlock()
}

func (r *relay) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if err != nil {
			dst.Close()
			return
		}
		if r.cut.Load() {
			continue // blackholed
		}
		if _, err := dst.Write(buf[:n]); err != nil {
			return
		}
	}
}

func (r *relay) Addr() string { return r.ln.Addr().String() }
func (r *relay) Cut()         { r.cut.Store(true) }
func (r *relay) Restore()     { r.cut.Store(false) }
func (r *relay) Reset() {
	r.mu.Lock()
	for _, c := range r.conns {
		c.Close()
	}
	r.conns = nil
	r.mu.Unlock()
}

type mabResult struct {
	sent, answered atomic.Int64
	wrongVLAN      atomic.Int64
	slow           atomic.Int64 // answered after more than 5 s or not at all
}

// mabStream sends MAB requests at a steady rate, alternating a client the cloud authorized (VLAN
// 400, cached) and unknown ones, and checks each answer's VLAN against want(known).
func mabStream(t *testing.T, to string, stop <-chan struct{}, want func(known bool) string, res *mabResult) {
	var wg sync.WaitGroup
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-stop:
			wg.Wait()
			return
		case <-tick.C:
		}
		known := i%2 == 0
		mac := "aabbccddeeff"
		if !known {
			mac = fmt.Sprintf("0200%08x", i)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			res.sent.Add(1)
			start := time.Now()
			r := exchangeUDP(t, "127.0.0.1:0", to, nasRequest(t, mac), 5*time.Second)
			if r == nil {
				res.slow.Add(1)
				return
			}
			res.answered.Add(1)
			if time.Since(start) > 5*time.Second {
				res.slow.Add(1)
			}
			p, err := packet.Parse(r)
			if err != nil {
				t.Error(err)
				return
			}
			v, _ := p.Attr(packet.AttrTunnelPrivateGroupID)
			// Unknown clients: the cloud rejects them, the edge gives them the default VLAN; any
			// answer will do. Known clients keep their VLAN throughout.
			if w := want(known); w != "*" && (p.Code() != packet.CodeAccessAccept || string(v) != w) {
				res.wrongVLAN.Add(1)
				t.Logf("%s (known=%v): %v VLAN %q, want %q", mac, known, p.Code(), v, w)
			}
		}()
	}
}

// TestE2EWANCut: the WAN to the cloud NAC is blackholed while MAB requests stream in; the edge
// notices within 3 s, answers every request within 5 s (cached clients keep their VLAN, unknown
// ones get the default VLAN), and fails back once the WAN returns.
func TestE2EWANCut(t *testing.T) {
	x := startE2E(t, 1, nil)
	// Put the relay between mxedge and FreeRADIUS and learn the known client.
	rl := startRelay(t, x.frAddr[0])
	x.rewrite(t, func(cfg string) string {
		return replaceOnce(cfg, "address: "+x.frAddr[0], "address: "+rl.Addr()) +
			"survivability:\n  default_mab_vlan: \"41\"\n"
	})
	if r := exchangeUDP(t, "127.0.0.1:0", x.auth, nasRequest(t, "aabbccddeeff"), 3*time.Second); r == nil || r[0] != byte(packet.CodeAccessAccept) {
		t.Fatal("known client not accepted before the cut")
	}
	waitLearned(t, x.edge, "the accepted MAB client cached", cachedMAB("aa:bb:cc:dd:ee:ff"))
	health := x.edge.Health()

	var res mabResult
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		mabStream(t, x.auth, stop, func(known bool) string {
			if known {
				return "400"
			}
			return "*"
		}, &res)
	}()
	// radclient, the NAS nobody here wrote, streams MAB requests too: 40 clients (cached and unknown)
	// sent one after another 150 times, across the cut.
	var rfile strings.Builder
	for i := range 40 {
		mac := "aabbccddeeff"
		if i%2 == 1 {
			mac = fmt.Sprintf("0300%08x", i)
		}
		fmt.Fprintf(&rfile, "User-Name = \"%s\", User-Password = \"%s\", Calling-Station-Id = \"%s\", Message-Authenticator = 0x00\n\n", mac, mac, mac)
	}
	reqFile := filepath.Join(t.TempDir(), "mab.txt")
	os.WriteFile(reqFile, []byte(rfile.String()), 0o600)
	rc := exec.Command("radclient", "-p", "1", "-c", "150", "-r", "1", "-t", "5", "-f", reqFile, x.auth, "auth", nasSecret)
	// Separate buffers: radclient's stdout is block-buffered and its stderr is not, so one shared
	// buffer splits "Received Access-…" lines with the stderr lines of upstream Rejects.
	var rcOut, rcErr lockedWriter
	rc.Stdout, rc.Stderr = &rcOut, &rcErr
	if err := rc.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	cutAt := time.Now()
	rl.Cut()
	var detected time.Duration
	for time.Since(cutAt) < 6*time.Second {
		if health.Local() {
			detected = time.Since(cutAt)
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if detected == 0 {
		t.Fatal("WAN cut not detected within 6 s")
	}
	// An unknown client during the outage gets the default VLAN.
	r := exchangeUDP(t, "127.0.0.1:0", x.auth, nasRequest(t, "021111111111"), 3*time.Second)
	if p, _ := packet.Parse(r); p == nil || p.Code() != packet.CodeAccessAccept {
		t.Fatal("unknown client not accepted locally")
	} else if v, _ := p.Attr(packet.AttrTunnelPrivateGroupID); string(v) != "41" {
		t.Fatalf("unknown client VLAN %q, want the default 41", v)
	}
	time.Sleep(2 * time.Second)
	rl.Restore()
	rl.Reset() // the blackholed connection is gone; mxedge reconnects through the restored WAN
	restoredAt := time.Now()
	var failback time.Duration
	for time.Since(restoredAt) < 20*time.Second {
		if health.Mode() == survivability.ModeUp {
			failback = time.Since(restoredAt)
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond)
	close(stop)
	<-done
	if failback == 0 {
		t.Fatal("no failback within 20 s of the WAN returning")
	}
	rc.Wait()
	out := rcOut.String()
	received := strings.Count(out, "Received Access-")
	if strings.Contains(out+rcErr.String(), "No reply") || received != 40*150 {
		t.Fatalf("radclient: %d of %d answered\n%s", received, 40*150, tailString(out, 20))
	}
	if res.slow.Load() != 0 || res.wrongVLAN.Load() != 0 {
		t.Fatalf("%d requests unanswered within 5 s, %d wrong answers (of %d)", res.slow.Load(), res.wrongVLAN.Load(), res.sent.Load())
	}
	t.Logf("WAN cut: detected after %v; failback %v after restore; %d requests from the Go NAS and %d from radclient, all answered within 5 s, cached VLAN kept",
		detected.Round(time.Millisecond), failback.Round(time.Millisecond), res.sent.Load(), received)
}

// TestE2ELocalEAPTLS: a supplicant authorized by the cloud over EAP-TLS is learned; with the cloud
// gone (RST), the same supplicant authenticates against mxedge's local EAP-TLS server — eapol_test
// reports success and matching MPPE keys — and gets its cached VLAN.
func TestE2ELocalEAPTLS(t *testing.T) {
	peertest.Require(t, "eapol_test")
	x := startE2E(t, 1, func(lab *pkitest.Lab) string {
		return fmt.Sprintf(`survivability:
  default_dot1x_vlan: "51"
  eap_tls:
    certificate: %s
    key: %s
    ca: %s
`, lab.ServerCert, lab.ServerKey, lab.CAFile)
	})
	host, port, _ := net.SplitHostPort(x.auth)
	p, _ := strconv.Atoi(port)
	eapol := func(tls13 bool, anonymous string) peertest.EapolResult {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		res, err := peertest.EapolTest(ctx, peertest.EapolOptions{
			Server: host, Port: p, Secret: nasSecret, Identity: "edge.example.test", AnonymousIdentity: anonymous,
			CACert: x.lab.CAFile, ClientCert: x.lab.ClientCert, PrivateKey: x.lab.ClientKey,
			TLS13: tls13, TLS12Only: !tls13, Timeout: 20 * time.Second,
		})
		if err != nil {
			t.Fatalf("eapol_test: %v\n%s", err, res.Output)
		}
		return res
	}
	// Through the cloud with a plain outer identity (FreeRADIUS's policy keys on it).
	if res := eapol(false, ""); !res.Success || !res.MPPEOK {
		t.Fatalf("through the cloud: success=%v mppe=%v\n%s", res.Success, res.MPPEOK, tail(res.Output, 40))
	}
	waitLearned(t, x.edge, "the EAP-TLS client cached", func(c *cache.Store) bool {
		_, ok, _ := c.LookupMAC("02:00:00:00:00:01")
		return ok
	})
	if rec, ok, _ := x.edge.Cache().LookupMAC("02:00:00:00:00:01"); !ok || survivability.VLAN(rec.Attrs) != "300" || rec.Method != cache.MethodEAPTLS {
		t.Fatalf("EAP-TLS client not learned: %+v", rec)
	}
	x.fr[0].Kill()
	deadline := time.Now().Add(5 * time.Second)
	for !x.edge.Health().Local() && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if !x.edge.Health().Local() {
		t.Fatal("cloud loss not detected")
	}
	for _, tls13 := range []bool{false, true} {
		res := eapol(tls13, "anonymous@example.test")
		if !res.Success || !res.MPPEOK {
			t.Fatalf("local EAP-TLS (tls13=%v): success=%v mppe=%v\n%s", tls13, res.Success, res.MPPEOK, tail(res.Output, 30))
		}
		if v := res.Get("Tunnel-Private-Group-Id"); v != "300" && v != "333030" {
			t.Fatalf("local EAP-TLS VLAN %q, want the cached 300", v)
		}
	}
}

// acctRequest builds an Accounting-Request for a session.
func acctRequest(t *testing.T, id uint8, session string, status uint32) []byte {
	t.Helper()
	b := packet.New(nil, packet.CodeAccountingRequest, id, nil)
	b.AddUint32(packet.AttrAcctStatusType, status)
	b.AddString(packet.AttrAcctSessionID, session)
	b.AddString(packet.AttrUserName, "alice")
	b.AddMA()
	p, err := b.Finish([]byte(nasSecret), nil)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestE2EAccountingAcrossOutage: accounting sent while the WAN is cut is acknowledged once spooled,
// survives a restart of mxedge during the outage, and reaches FreeRADIUS after recovery — every
// record, once, each session's Start/Interim/Stop in order, with Acct-Delay-Time counting the time
// spent in the spool.
func TestE2EAccountingAcrossOutage(t *testing.T) {
	x := startE2E(t, 1, nil)
	rl := startRelay(t, x.frAddr[0])
	x.rewrite(t, func(cfg string) string { return replaceOnce(cfg, "address: "+x.frAddr[0], "address: "+rl.Addr()) })
	rl.Cut()
	rl.Reset()
	deadline := time.Now().Add(6 * time.Second)
	for !x.edge.Health().Local() && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if !x.edge.Health().Local() {
		t.Fatal("outage not detected")
	}
	const sessions = 10
	send := func(round uint32) {
		for s := range sessions {
			p := acctRequest(t, uint8(int(round)*sessions+s), fmt.Sprintf("sess-%d", s), round)
			r := exchangeUDP(t, "127.0.0.1:0", x.acct, p, 3*time.Second)
			if r == nil || r[0] != byte(packet.CodeAccountingResponse) {
				t.Fatalf("session %d status %d not acknowledged during the outage", s, round)
			}
		}
	}
	send(1) // Start
	send(3) // Interim-Update
	// mxedge restarts during the outage: the spool survives and it resumes answering locally.
	x.stop()
	x.start(t)
	if !x.edge.Health().Local() {
		t.Fatal("restarted during the outage but not in survivability mode")
	}
	if n := x.edge.Spool().Len(); n != 2*sessions {
		t.Fatalf("spool holds %d records after the restart, want %d", n, 2*sessions)
	}
	send(2) // Stop
	time.Sleep(1100 * time.Millisecond)
	rl.Restore()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	recs, err := x.fr[0].WaitAccounting(ctx, 3*sessions)
	if err != nil {
		t.Fatalf("after recovery FreeRADIUS has %d of %d records: %v", len(recs), 3*sessions, err)
	}
	time.Sleep(500 * time.Millisecond)
	recs, _ = x.fr[0].Accounting()
	if len(recs) != 3*sessions {
		t.Fatalf("FreeRADIUS recorded %d records, want %d (duplicates?)", len(recs), 3*sessions)
	}
	order := map[string][]string{}
	for _, r := range recs {
		order[r.SessionID()] = append(order[r.SessionID()], r.StatusType())
		if d := r.DelayTime(); d < 1 {
			t.Errorf("session %s %s: Acct-Delay-Time %d does not count the time in the spool", r.SessionID(), r.StatusType(), d)
		}
	}
	for s := range sessions {
		got := strings.Join(order[fmt.Sprintf("sess-%d", s)], ",")
		if got != "Start,Interim-Update,Stop" {
			t.Fatalf("session %d arrived as %s", s, got)
		}
	}
	if n := x.edge.Spool().Len(); n != 0 {
		t.Fatalf("%d records left in the spool", n)
	}
}

// TestE2ERefusedAndFlapping: an upstream that refuses connections (RST) is detected at once; a link
// that flaps does not flap the mode faster than the failback hold-down, and every request is answered.
func TestE2ERefusedAndFlapping(t *testing.T) {
	x := startE2E(t, 1, nil)
	rl := startRelay(t, x.frAddr[0])
	x.rewrite(t, func(cfg string) string {
		return replaceOnce(cfg, "address: "+x.frAddr[0], "address: "+rl.Addr()) + "survivability:\n  default_mab_vlan: \"41\"\n"
	})
	health := x.edge.Health()
	var res mabResult
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		mabStream(t, x.auth, stop, func(known bool) string { return "*" }, &res)
	}()
	// Refused: the relay closes every connection and refuses new ones.
	rl.ln.Close()
	start := time.Now()
	rl.Reset()
	for !health.Local() && time.Since(start) < 3*time.Second {
		time.Sleep(5 * time.Millisecond)
	}
	refused := time.Since(start)
	if !health.Local() {
		t.Fatal("refused upstream not detected within 3 s")
	}
	// Flapping: bring the relay back and cut it every 700 ms for 5 s.
	ln, err := net.Listen("tcp", rl.Addr())
	if err != nil {
		t.Fatal(err)
	}
	rl.ln = ln
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", rl.target)
			if err != nil {
				c.Close()
				continue
			}
			rl.track(c)
			rl.track(u)
			go rl.pipe(c, u)
			go rl.pipe(u, c)
		}
	}()
	before := health.Transitions(survivability.ModeUp)
	for i := 0; i < 7; i++ {
		time.Sleep(700 * time.Millisecond)
		if i%2 == 0 {
			rl.Cut()
		} else {
			rl.Restore()
			rl.Reset()
		}
	}
	rl.Restore()
	flapsUp := health.Transitions(survivability.ModeUp) - before
	close(stop)
	<-done
	if res.slow.Load() != 0 {
		t.Fatalf("%d of %d requests unanswered within 5 s", res.slow.Load(), res.sent.Load())
	}
	if flapsUp > 1 {
		t.Fatalf("mode went up %d times while the link flapped every 700 ms", flapsUp)
	}
	t.Logf("refused: detected after %v; flapping link: %d failbacks in 5 s; %d requests all answered", refused.Round(time.Millisecond), flapsUp, res.sent.Load())
}

type lockedWriter struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedWriter) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func tailString(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
