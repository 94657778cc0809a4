package edge_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"mxedge/edge"
	"mxedge/edge/config"
	"mxedge/pki"
	"mxedge/pki/pkitest"
	"mxedge/proxy/packet"
	"mxedge/proxy/radsectest"
)

// goEdge runs mxedge in front of Go responders (no external peers), for lifecycle tests.
type goEdge struct {
	e    *edge.Edge
	auth string
	stop context.CancelFunc
	done chan struct{}
	logs *syncBuffer
}

func writeConfig(t *testing.T, dir string, lab *pkitest.Lab, clients string, upstream *radsectest.Responder) *config.Config {
	t.Helper()
	doc := fmt.Sprintf(`
cache: {path: %s}
control: {socket: %s}
listen: {auth: ["127.0.0.1:0"], acct: ["127.0.0.1:0"]}
clients:
%s
upstreams:
  tls: {certificate: %s, key: %s, ca: %s}
  servers:
    - {name: up, address: "%s"}
`, filepath.Join(dir, "cache.db"), filepath.Join(dir, "control.sock"), clients, lab.ClientCert, lab.ClientKey, lab.CAFile, upstream.Addr())
	path := filepath.Join(dir, "mxedge.yaml")
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func startGoEdge(t *testing.T, c *config.Config) *goEdge {
	t.Helper()
	g := &goEdge{logs: &syncBuffer{}}
	e, err := edge.New(c, edge.Options{Logger: slog.New(slog.NewTextHandler(g.logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	g.e, g.auth = e, e.AuthAddrs()[0].String()
	ctx, cancel := context.WithCancel(context.Background())
	g.stop, g.done = cancel, make(chan struct{})
	go func() { defer close(g.done); e.Run(ctx) }()
	<-e.Ready()
	t.Cleanup(func() { cancel(); <-g.done })
	return g
}

func request(t *testing.T, secret, user string, id uint8) packet.Packet {
	t.Helper()
	auth := make([]byte, 16)
	auth[0], auth[1] = id, byte(time.Now().UnixNano())
	b := packet.New(nil, packet.CodeAccessRequest, id, auth)
	b.AddMA()
	b.AddString(packet.AttrUserName, user)
	p, err := b.Finish([]byte(secret), nil)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// burst sends n requests concurrently and returns how many got an Access-Accept.
func burst(t *testing.T, to, secret string, n int, wait time.Duration) int {
	var ok atomic.Int32
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := exchangeUDP(t, "127.0.0.1:0", to, request(t, secret, fmt.Sprintf("u%d", i), uint8(i)), wait)
			if r != nil && r[0] == byte(packet.CodeAccessAccept) {
				ok.Add(1)
			}
		}()
	}
	wg.Wait()
	return int(ok.Load())
}

// TestReloadKeepsRequestsInFlight: a reload that changes the clients and the upstream does not drop
// the requests already on their way to the old upstream, and new requests use the new configuration.
func TestReloadKeepsRequestsInFlight(t *testing.T) {
	lab := pkitest.Must(t)
	dir := t.TempDir()
	oldUp, _ := radsectest.Start(lab.ServerTLS(), "radsec")
	newUp, _ := radsectest.Start(lab.ServerTLS(), "radsec")
	defer oldUp.Close()
	defer newUp.Close()
	oldUp.SetDelay(400 * time.Millisecond)
	c1 := writeConfig(t, dir, lab, `  - {name: nas, address: 127.0.0.1, secret: old-secret}`, oldUp)
	g := startGoEdge(t, c1)

	var inflight int
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); inflight = burst(t, g.auth, "old-secret", 30, 3*time.Second) }()
	time.Sleep(100 * time.Millisecond) // the burst is waiting on the slow old upstream
	c2 := writeConfig(t, dir, lab, `  - {name: nas, address: 127.0.0.1, secret: new-secret}`, newUp)
	if err := g.e.Reload(t.Context(), c2); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if inflight != 30 {
		t.Fatalf("%d of 30 requests in flight across the reload were answered", inflight)
	}
	if n := burst(t, g.auth, "new-secret", 5, 2*time.Second); n != 5 || newUp.Answered.Load() != 5 {
		t.Fatalf("after reload: %d answered, new upstream saw %d", n, newUp.Answered.Load())
	}
	if n := burst(t, g.auth, "old-secret", 1, 300*time.Millisecond); n != 0 {
		t.Fatal("old secret still accepted after reload")
	}
}

// TestGracefulShutdown: on shutdown the listeners close first and requests in flight still get their
// answers.
func TestGracefulShutdown(t *testing.T) {
	lab := pkitest.Must(t)
	up, _ := radsectest.Start(lab.ServerTLS(), "radsec")
	defer up.Close()
	up.SetDelay(500 * time.Millisecond)
	g := startGoEdge(t, writeConfig(t, t.TempDir(), lab, `  - {name: nas, address: 127.0.0.1, secret: s}`, up))
	var answered int
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); answered = burst(t, g.auth, "s", 20, 3*time.Second) }()
	time.Sleep(150 * time.Millisecond)
	start := time.Now()
	g.stop()
	<-g.done
	wg.Wait()
	if answered != 20 {
		t.Fatalf("%d of 20 requests in flight answered during shutdown", answered)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("shutdown took %v", d)
	}
	// The socket is closed: nothing answers any more.
	conn, _ := net.Dial("udp", g.auth)
	defer conn.Close()
	conn.Write(request(t, "s", "late", 1))
	conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if _, err := conn.Read(make([]byte, 100)); err == nil {
		t.Fatal("answered after shutdown")
	}
}

// TestExpiryWarning: a configured certificate within 7 days of expiry is reported at start-up.
func TestExpiryWarning(t *testing.T) {
	lab := pkitest.Must(t)
	dir := t.TempDir()
	soon, err := lab.CA.Issue(pki.IssueOptions{CommonName: "edge", Usage: pki.UsageClient, NotAfter: time.Now().Add(5 * 24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	pki.WriteCertificates(lab.ClientCert, true, soon.Cert)
	pki.WriteKey(lab.ClientKey, soon.Key, true)
	up, _ := radsectest.Start(lab.ServerTLS(), "radsec")
	defer up.Close()
	g := startGoEdge(t, writeConfig(t, dir, lab, `  - {name: nas, address: 127.0.0.1, secret: s}`, up))
	deadline := time.Now().Add(3 * time.Second)
	for !strings.Contains(g.logs.String(), "certificate expires soon") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(g.logs.String(), "certificate expires soon") || !strings.Contains(g.logs.String(), "level=WARN") {
		t.Fatalf("no expiry warning:\n%s", g.logs.String())
	}
	var found bool
	for _, c := range g.e.Status().Certs {
		if c.File == lab.ClientCert && c.Days == 4 || c.Days == 5 {
			found = true
		}
	}
	if !found {
		t.Fatalf("status certificates: %+v", g.e.Status().Certs)
	}
}
