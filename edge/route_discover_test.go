package edge_test

import (
	"crypto/tls"
	"fmt"
	"net"
	"path/filepath"
	"testing"

	"github.com/miekg/dns"

	"mxedge/edge"
	"mxedge/edge/events"
	"mxedge/edge/peertest"
	"mxedge/pki"
	"mxedge/pki/pkitest"
	"mxedge/proxy/radsectest"
)

// TestRouteDiscover: a `discover: true` route sends a realm's requests, from a NAS (radclient),
// to the RadSec server RFC 7585 discovery finds for it (NAPTR, SRV, A from miekg/dns on
// loopback), not to the cloud; a realm discovery cannot find gets Access-Reject, and the cloud
// never sees either.
func TestRouteDiscover(t *testing.T) {
	peertest.Require(t, "radclient")
	lab := pkitest.Must(t)
	cloud := startUpstream(t, lab)
	is, err := lab.CA.Issue(pki.IssueOptions{CommonName: "rs.campus.example", NAIRealms: []string{"campus.example"}, Usage: pki.UsageServer})
	if err != nil {
		t.Fatal(err)
	}
	cfg := lab.ServerTLS()
	cfg.Certificates = []tls.Certificate{{Certificate: [][]byte{is.Cert.Raw}, PrivateKey: is.Key, Leaf: is.Cert}}
	realmSrv, err := radsectest.Start(cfg, "radsec")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(realmSrv.Close)
	dnsAddr := startRealmDNS(t, map[string]string{
		"campus.example.":              `campus.example. 60 IN NAPTR 10 10 "s" "x-eduroam:radius.tls" "" _radsec._tcp.campus.example.`,
		"_radsec._tcp.campus.example.": fmt.Sprintf(`_radsec._tcp.campus.example. 60 IN SRV 0 0 %d rs.campus.example.`, realmSrv.Addr().Port()),
		"rs.campus.example.":           `rs.campus.example. 60 IN A 127.0.0.1`,
	})
	dir := t.TempDir()
	doc := lifecycleDoc(dir, lab, cloud, "s", "") + fmt.Sprintf(`  dns: {servers: ["%s"]}
discovery:
  enabled: true
  services: [x-eduroam:radius.tls]
routes:
  - name: federation
    realm_suffixes: [campus.example, elsewhere.example]
    discover: true
`, dnsAddr)
	c := loadDoc(t, filepath.Join(dir, "mxedge.yaml"), doc)
	if err := edge.Check(c); err != nil {
		t.Fatal(err)
	}
	e, err := edge.New(c, edge.Options{})
	if err != nil {
		t.Fatal(err)
	}
	stop := runEdge(t, e)
	defer stop()
	auth := e.AuthAddrs()[0].String()
	before := cloud.Requests.Load()

	r := radclient(t, auth, "auth", "s", []string{`User-Name = "student@campus.example"`, `User-Password = "pw"`, `Message-Authenticator = 0x00`})[0]
	if r.Code != "Access-Accept" || realmSrv.Requests.Load() != 1 {
		t.Fatalf("discovered realm: %q, realm server saw %d", r.Code, realmSrv.Requests.Load())
	}
	r = radclient(t, auth, "auth", "s", []string{`User-Name = "x@elsewhere.example"`, `User-Password = "pw"`, `Message-Authenticator = 0x00`})[0]
	if r.Code != "Access-Reject" {
		t.Fatalf("undiscoverable realm: %q", r.Code)
	}
	if got := cloud.Requests.Load(); got != before {
		t.Fatalf("the cloud saw %d requests of discovered realms", got-before)
	}
	// The route's counters: two requests, the discovered server's Accept, one discovery failure;
	// the two decisions are one event each, the discovered server's as external.
	rc := e.Router().Routes().Stats().Routes[0]
	if m, a, f := rc.Matched.Load(), rc.Answers[0].Load(), rc.DiscoveryFailed.Load(); m != 2 || a != 1 || f != 1 {
		t.Fatalf("route counters: matched %d, accepts %d, discovery failures %d; want 2, 1, 1", m, a, f)
	}
	var external int
	for _, ev := range e.Events().Recent(100) {
		if ev.Source == events.SourceExternal && ev.Route == "federation" && ev.Pool == "discover" && ev.Realm == "campus.example" && ev.Allowed {
			external++
		}
	}
	if external != 1 {
		t.Fatalf("%d external events for the discovered realm, want 1", external)
	}
}

// startRealmDNS serves records (name -> one RR) on a loopback UDP port; other names are NXDOMAIN.
func startRealmDNS(t *testing.T, records map[string]string) string {
	t.Helper()
	mux := dns.NewServeMux()
	mux.HandleFunc(".", func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		if s, ok := records[r.Question[0].Name]; ok {
			rr, _ := dns.NewRR(s)
			if rr.Header().Rrtype == r.Question[0].Qtype {
				m.Answer = append(m.Answer, rr)
			}
		} else {
			m.Rcode = dns.RcodeNameError
		}
		_ = w.WriteMsg(m)
	})
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	srv := &dns.Server{PacketConn: pc, Handler: mux, NotifyStartedFunc: func() { close(started) }}
	go srv.ActivateAndServe()
	<-started
	t.Cleanup(func() { srv.Shutdown() })
	return pc.LocalAddr().String()
}
