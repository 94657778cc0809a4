package edge_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"mxedge/edge"
	"mxedge/pki"
	"mxedge/pki/pkitest"
	"mxedge/proxy"
	"mxedge/proxy/packet"
	"mxedge/proxy/radsectest"
)

// TestEdgeDiscovery: with discovery enabled in the file, the edge's Discovery finds a realm
// through the configured DNS server (miekg/dns on loopback: NAPTR → SRV → A) and its pool
// answers; a realm without NAPTR is refused with ErrNoUpstream; Run stops every realm's
// connections.
func TestEdgeDiscovery(t *testing.T) {
	lab := pkitest.Must(t)
	up := startUpstream(t, lab)
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

	records := map[string]string{
		"campus.example.":              `campus.example. 60 IN NAPTR 10 10 "s" "x-eduroam:radius.tls" "" _radsec._tcp.campus.example.`,
		"_radsec._tcp.campus.example.": fmt.Sprintf(`_radsec._tcp.campus.example. 60 IN SRV 0 0 %d rs.campus.example.`, realmSrv.Addr().Port()),
		"rs.campus.example.":           `rs.campus.example. 60 IN A 127.0.0.1`,
	}
	dnsAddr := startRealmDNS(t, records)

	dir := t.TempDir()
	doc := lifecycleDoc(dir, lab, up, "s", "") + fmt.Sprintf(`  dns: {servers: ["%s"]}
discovery:
  enabled: true
  services: [x-eduroam:radius.tls]
`, dnsAddr)
	c := loadDoc(t, filepath.Join(dir, "mxedge.yaml"), doc)
	if err := edge.Check(c); err != nil {
		t.Fatal(err)
	}
	baseline := runtime.NumGoroutine()
	e, err := edge.New(c, edge.Options{})
	if err != nil {
		t.Fatal(err)
	}
	stop := runEdge(t, e)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pool, err := e.Discovery().Discover(ctx, "campus.example")
	if err != nil {
		t.Fatal(err)
	}
	secret := proxy.Secret("s")
	b := packet.New(nil, packet.CodeAccessRequest, 1, make([]byte, 16))
	b.AddString(packet.AttrUserName, "student@campus.example")
	pkt, err := b.Finish(secret, nil)
	if err != nil {
		t.Fatal(err)
	}
	res := make(chan proxy.Result, 1)
	now := time.Now()
	pool.Forward(&proxy.Request{Client: &proxy.Client{Name: "nas", Secret: secret}, Packet: pkt, Received: now, Deadline: now.Add(2 * time.Second)},
		func(r proxy.Result) { res <- r })
	if r := <-res; r.Err != nil || r.Response.Code() != packet.CodeAccessAccept || realmSrv.Requests.Load() != 1 {
		t.Fatalf("forward: %v %v (realm server saw %d)", r.Err, r.Response, realmSrv.Requests.Load())
	}
	if _, err := e.Discovery().Discover(ctx, "elsewhere.example"); !errors.Is(err, proxy.ErrNoUpstream) {
		t.Fatalf("undiscoverable realm: %v", err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > baseline && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > baseline {
		buf := make([]byte, 1<<20)
		t.Fatalf("%d goroutines after Run, %d before New:\n%s", n, baseline, bytes.TrimSpace(buf[:runtime.Stack(buf, true)]))
	}
}
