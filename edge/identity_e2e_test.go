package edge_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"mxedge/edge"
	"mxedge/edge/control"
	"mxedge/edge/events"
	"mxedge/edge/identity"
	"mxedge/edge/peertest"
	"mxedge/pki/pkitest"
	"mxedge/proxy/packet"
)

// identityReceiver is an identity service: HTTPS, client certificate required and verified.
type identityReceiver struct {
	mu     sync.Mutex
	events []identity.Event
	srv    *http.Server
	addr   string
}

func startIdentityReceiver(t *testing.T, lab *pkitest.Lab) *identityReceiver {
	return startIdentityReceiverAt(t, lab, "127.0.0.1:0")
}

// startIdentityReceiverAt listens on addr.
func startIdentityReceiverAt(t *testing.T, lab *pkitest.Lab, addr string) *identityReceiver {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(lab.ServerCert, lab.ServerKey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pem, _ := os.ReadFile(lab.CAFile)
	pool.AppendCertsFromPEM(pem)
	r := &identityReceiver{}
	r.srv = &http.Server{TLSConfig: &tls.Config{Certificates: []tls.Certificate{pair}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert},
		Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			var b struct {
				Schema string           `json:"schema"`
				Events []identity.Event `json:"events"`
			}
			if json.NewDecoder(req.Body).Decode(&b) != nil || b.Schema != identity.Schema {
				http.Error(w, "bad", http.StatusBadRequest)
				return
			}
			r.mu.Lock()
			r.events = append(r.events, b.Events...)
			r.mu.Unlock()
		})}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	r.addr = ln.Addr().String()
	go r.srv.ServeTLS(ln, "", "")
	t.Cleanup(func() { r.srv.Close() })
	return r
}

func (r *identityReceiver) bySession(id string) []identity.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []identity.Event
	for _, e := range r.events {
		if e.SessionID == id {
			out = append(out, e)
		}
	}
	return out
}

func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(d); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("timed out after %v: %s", d, what)
		}
	}
}

// TestE2EIdentityPush: a NAS (radclient) authenticates a MAB client through mxedge and sends the
// session's accounting; the identity service (HTTPS, mutual TLS), rsyslog (TCP) and a FreeRADIUS
// accounting-copy receiver all get the session's connect, address change and disconnect. Then
// the cloud goes away and a session accounted while the edge decides locally is pushed the same.
func TestE2EIdentityPush(t *testing.T) {
	peertest.Require(t, "rsyslogd")
	var rcv *identityReceiver
	var rs *peertest.Rsyslog
	var copyFR *peertest.FreeRADIUS
	x := startE2E(t, 1, func(lab *pkitest.Lab) string {
		rcv = startIdentityReceiver(t, lab)
		tcp := fmt.Sprintf("127.0.0.1:%d", peertest.FreePort(t))
		rs = peertest.StartRsyslog(t, peertest.RsyslogOptions{TCPAddr: tcp})
		acct := fmt.Sprintf("127.0.0.1:%d", peertest.FreePort(t))
		copyFR = peertest.StartFreeRADIUS(t, peertest.FreeRADIUSOptions{UDPAcctAddr: acct, AccountingLog: true,
			ServerCert: lab.ServerCert, ServerKey: lab.ServerKey, CA: lab.CAFile,
			UDPClients: []peertest.Client{{Addr: "127.0.0.1", Secret: "copy-secret"}}})
		return fmt.Sprintf(`
identity:
  user: identity
  domains:
    sites: {"MistAA Test Site": mist.example}
  backoff_min: 50ms
  backoff_max: 500ms
  sinks:
    - name: jims
      type: https
      url: https://%s/identity
      tls: {ca: %s, certificate: %s, key: %s}
    - name: siem
      type: syslog
      transport: tcp
      address: %s
    - name: rsso
      type: radius-accounting
      address: %s
      secret: copy-secret
`, rcv.addr, lab.CAFile, lab.ClientCert, lab.ClientKey, tcp, acct)
	})
	mab := []string{"User-Name=aabbccddeeff", "User-Password=aabbccddeeff", "Calling-Station-Id=aa-bb-cc-dd-ee-ff", "Message-Authenticator=0x00"}
	if r := radclient(t, x.auth, "auth", nasSecret, mab); r[0].Code != "Access-Accept" {
		t.Fatalf("MAB: %+v", r[0])
	}
	acct := func(status, session, ip string) []string {
		a := []string{"Acct-Status-Type=" + status, "Acct-Session-Id=" + session, "User-Name=aabbccddeeff",
			"Calling-Station-Id=aa-bb-cc-dd-ee-ff", "Called-Station-Id=00-11-22-33-44-55:Corp", "NAS-Port=7"}
		if ip != "" {
			a = append(a, "Framed-IP-Address="+ip)
		}
		return a
	}
	if x.edge.Sessions() == nil {
		t.Fatal("the session table is off: the events would come from the identity tracker")
	}
	sendAcct := func(reqs ...[]string) {
		t.Helper()
		for _, r := range radclient(t, x.acct, "acct", nasSecret, reqs...) {
			if r.Code != "Accounting-Response" {
				t.Fatalf("accounting: %+v", r)
			}
		}
	}
	sendAcct(acct("Start", "e2e-1", "10.5.0.1"), acct("Interim-Update", "e2e-1", "10.5.0.2"))
	waitUntil(t, 10*time.Second, "connect and update", func() bool { return len(rcv.bySession("e2e-1")) == 2 })
	time.Sleep(10 * time.Millisecond)                                                    // the re-authentication's time must differ from the first
	if r := radclient(t, x.auth, "auth", nasSecret, mab); r[0].Code != "Access-Accept" { // the rekey case
		t.Fatalf("MAB again: %+v", r[0])
	}
	waitUntil(t, 10*time.Second, "reauth", func() bool { return len(rcv.bySession("e2e-1")) == 3 })
	sendAcct(acct("Stop", "e2e-1", "10.5.0.2"))
	waitUntil(t, 10*time.Second, "https events", func() bool { return len(rcv.bySession("e2e-1")) == 4 })
	evs := rcv.bySession("e2e-1")
	if evs[2].Reason != "reauth" {
		t.Fatalf("third event %+v, want the re-authentication", evs[2])
	}
	for i, want := range []string{"connect", "update", "update", "disconnect"} {
		e := evs[i]
		if e.Type != want || e.NAS != "lab-switch" || e.MAC != "aa:bb:cc:dd:ee:ff" || e.SSID != "Corp" || e.NASPort != "7" ||
			e.Domain != "mist.example" || e.DomainSource != "site" || e.Method != "mab" || e.AuthorizedBy != "cloud" || e.VLAN != "400" {
			t.Fatalf("event %d: %+v", i, e)
		}
	}
	if evs[0].IPAddresses[0] != "10.5.0.1" || evs[1].IPAddresses[0] != "10.5.0.2" || evs[1].Reason != "address-changed" {
		t.Fatalf("addresses: %+v", evs)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	recs, err := rs.WaitRecords(ctx, 4)
	if err != nil || recs[0].MsgID != "connect" || recs[0].SD[identity.SyslogSDID]["ip"] != "10.5.0.1" {
		t.Fatalf("rsyslog: %v %+v", err, recs)
	}
	copies, err := copyFR.WaitAccounting(ctx, 3)
	if err != nil || copies[0].StatusType() != "Start" || copies[2].StatusType() != "Stop" || copies[0].SessionID() != "e2e-1" {
		t.Fatalf("accounting copy: %v %+v", err, copies)
	}

	// The cloud goes away: accounting is spooled and acknowledged locally, and pushed the same.
	x.fr[0].Stop()
	waitUntil(t, 15*time.Second, "survivability", func() bool { return x.edge.Health().Local() })
	for _, r := range radclient(t, x.acct, "acct", nasSecret, acct("Start", "e2e-2", "10.5.0.9"), acct("Stop", "e2e-2", "10.5.0.9")) {
		if r.Code != "Accounting-Response" {
			t.Fatalf("accounting during the outage: %+v", r)
		}
	}
	waitUntil(t, 10*time.Second, "events during the outage", func() bool { return len(rcv.bySession("e2e-2")) == 2 })
	if _, err := copyFR.WaitAccounting(ctx, 5); err != nil {
		t.Fatal(err)
	}

	waitUntil(t, 10*time.Second, "every sink counted and empty", func() bool {
		for _, s := range x.edge.IdentityStatus().Sinks {
			if s.State != "up" || s.Queued != 0 || s.SentByType["disconnect"] != 2 || (s.Type != identity.TypeAccounting && s.SentByType["update"] != 2) {
				return false
			}
		}
		return true
	})
	raw, err := control.Dial(filepath.Join(x.lab.Dir, "control.sock")).Identity(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got edge.IdentityStatus
	if err := json.Unmarshal(raw, &got); err != nil || got.Schema != identity.StatusSchema || len(got.Sinks) != 3 {
		t.Fatalf("/v1/identity: %v %s", err, raw)
	}
}

// identityAcct is an Accounting-Request with a Framed-IP-Address, as a NAS signs it.
func identityAcct(t *testing.T, id uint8, session string, status uint32, ip [4]byte) []byte {
	t.Helper()
	b := packet.New(nil, packet.CodeAccountingRequest, id, nil)
	b.AddUint32(packet.AttrAcctStatusType, status)
	b.AddString(packet.AttrAcctSessionID, session)
	b.AddString(packet.AttrUserName, "bob@corp.example")
	b.AddString(packet.AttrCallingStationID, "02-00-00-00-00-09")
	b.Add(8, ip[:]) // Framed-IP-Address
	p, err := b.Finish([]byte(nasSecret), nil)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestE2EIdentityKill9: the mxedge binary acknowledges accounting for 40 sessions while its
// identity service is down, holds their 80 events in its queue, is killed with SIGKILL, and
// restarted; when the service comes up every event arrives, in order per session.
func TestE2EIdentityKill9(t *testing.T) {
	const sessions = 40
	rport := peertest.FreePort(t)
	raddr := fmt.Sprintf("127.0.0.1:%d", rport)
	acctPort := peertest.FreePort(t)
	x := startE2E(t, 1, func(lab *pkitest.Lab) string {
		return fmt.Sprintf(`
identity:
  backoff_min: 50ms
  backoff_max: 300ms
  sinks:
    - name: jims
      type: https
      url: https://%s/identity
      tls: {ca: %s, certificate: %s, key: %s}
`, raddr, lab.CAFile, lab.ClientCert, lab.ClientKey)
	})
	x.stop()
	b, _ := os.ReadFile(x.cfgPath)
	os.WriteFile(x.cfgPath, []byte(replaceOnce(string(b), `acct: ["127.0.0.1:0"]`, fmt.Sprintf(`acct: ["127.0.0.1:%d"]`, acctPort))), 0o600)
	bin := filepath.Join(t.TempDir(), "mxedge")
	if out, err := exec.Command("go", "build", "-o", bin, "mxedge").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	start := func() *exec.Cmd {
		before := strings.Count(x.logs.String(), "mxedge started")
		cmd := exec.Command(bin, "run", "--config", x.cfgPath)
		cmd.Stderr = x.logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		waitUntil(t, 20*time.Second, "mxedge started", func() bool { return strings.Count(x.logs.String(), "mxedge started") > before })
		return cmd
	}
	status := func() identity.SinkStatus {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		raw, err := control.Dial(filepath.Join(x.lab.Dir, "control.sock")).Identity(ctx)
		if err != nil {
			return identity.SinkStatus{}
		}
		var st edge.IdentityStatus
		if json.Unmarshal(raw, &st) != nil || len(st.Sinks) != 1 {
			return identity.SinkStatus{}
		}
		return st.Sinks[0]
	}
	cmd := start()
	nas := newAcctNAS(fmt.Sprintf("127.0.0.1:%d", acctPort))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for s := range sessions {
		wg.Go(func() {
			ip := [4]byte{10, 77, 0, byte(s)}
			id := fmt.Sprintf("k9id-%d", s)
			if !nas.send(ctx, id+"/start", identityAcct(t, uint8(2*s), id, 1, ip)) ||
				!nas.send(ctx, id+"/stop", identityAcct(t, uint8(2*s+1), id, 2, ip)) {
				t.Errorf("session %s not acknowledged", id)
			}
		})
	}
	wg.Wait()
	waitUntil(t, 20*time.Second, "80 events queued", func() bool { s := status(); return s.Queued == 2*sessions && s.State == "down" })
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	start()
	if q := status().Queued; q != 2*sessions {
		t.Fatalf("after kill -9 and restart: %d queued, want %d", q, 2*sessions)
	}
	rcv := startIdentityReceiverAt(t, x.lab, raddr)
	waitUntil(t, 20*time.Second, "delivery after the restart", func() bool { return status().Queued == 0 })
	for s := range sessions {
		evs := rcv.bySession(fmt.Sprintf("k9id-%d", s))
		seen := map[string]bool{}
		var types []string
		for _, e := range evs {
			if !seen[e.ID] {
				seen[e.ID] = true
				types = append(types, e.Type)
			}
		}
		if strings.Join(types, ",") != "connect,disconnect" {
			t.Fatalf("session %d: %v", s, types)
		}
	}
	// The restarted edge found the sink down, then back: both are NAC events.
	var seen []string
	ectx, ecancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer ecancel()
	err := control.Dial(filepath.Join(x.lab.Dir, "control.sock")).Events(ectx, 100, false, func(ev events.Event) error {
		if ev.Method == "identity" {
			seen = append(seen, ev.Type+" ("+ev.Reason+")")
		}
		return nil
	})
	if err != nil || len(seen) < 2 || !strings.HasPrefix(seen[0], "Identity Sink Down (https sink jims: ") ||
		seen[len(seen)-1] != "Identity Sink Up (https sink jims)" {
		t.Fatalf("identity sink events %q (%v)", seen, err)
	}
}
