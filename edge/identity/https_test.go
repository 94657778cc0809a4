package identity

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"mxedge/edge/peertest"
)

// receiver is the identity service of the tests: HTTPS with a required, verified client
// certificate. It can go down (its listener closed: connections refused) and come back on the
// same address.
type receiver struct {
	tb   testing.TB
	addr string
	cfg  *tls.Config

	mu      sync.Mutex
	srv     *http.Server
	events  []Event
	clients map[string]int // client certificate CN -> batches
	tokens  map[string]int
}

func newReceiver(tb testing.TB, certs *peertest.Certs) *receiver {
	tb.Helper()
	pair, err := tls.LoadX509KeyPair(certs.ServerCert, certs.ServerKey)
	if err != nil {
		tb.Fatal(err)
	}
	pool := x509.NewCertPool()
	pem, _ := os.ReadFile(certs.CA)
	pool.AppendCertsFromPEM(pem)
	r := &receiver{tb: tb, cfg: &tls.Config{Certificates: []tls.Certificate{pair}, ClientCAs: pool,
		ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12},
		clients: map[string]int{}, tokens: map[string]int{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	r.addr = ln.Addr().String()
	r.serve(ln)
	tb.Cleanup(r.down)
	return r
}

func (r *receiver) url() string { return "https://" + r.addr + "/identity" }

func (r *receiver) serve(ln net.Listener) {
	srv := &http.Server{Handler: http.HandlerFunc(r.handle), TLSConfig: r.cfg.Clone()}
	r.mu.Lock()
	r.srv = srv
	r.mu.Unlock()
	go srv.ServeTLS(ln, "", "")
}

func (r *receiver) handle(w http.ResponseWriter, req *http.Request) {
	var b struct {
		Schema string  `json:"schema"`
		Edge   string  `json:"edge"`
		Events []Event `json:"events"`
	}
	if err := json.NewDecoder(req.Body).Decode(&b); err != nil || b.Schema != Schema {
		http.Error(w, "bad document", http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	r.events = append(r.events, b.Events...)
	r.clients[req.TLS.PeerCertificates[0].Subject.CommonName]++
	r.tokens[req.Header.Get("Authorization")]++
	r.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (r *receiver) down() {
	r.mu.Lock()
	srv := r.srv
	r.srv = nil
	r.mu.Unlock()
	if srv != nil {
		srv.Close()
	}
}

func (r *receiver) up() {
	r.tb.Helper()
	var ln net.Listener
	var err error
	for range 50 { // the port was ours a moment ago; bounded retry for TIME_WAIT races
		if ln, err = net.Listen("tcp", r.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		r.tb.Fatal(err)
	}
	r.serve(ln)
}

func (r *receiver) got() []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Event(nil), r.events...)
}

// waitFor polls cond (bounded by d).
func waitFor(tb testing.TB, d time.Duration, what string, cond func() bool) {
	tb.Helper()
	end := time.Now().Add(d)
	for !cond() {
		if time.Now().After(end) {
			tb.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func clientTLS(tb testing.TB, certs *peertest.Certs) *tls.Config {
	tb.Helper()
	pair, err := tls.LoadX509KeyPair(certs.ClientCert, certs.ClientKey)
	if err != nil {
		tb.Fatal(err)
	}
	pool := x509.NewCertPool()
	pem, _ := os.ReadFile(certs.CA)
	pool.AppendCertsFromPEM(pem)
	return &tls.Config{Certificates: []tls.Certificate{pair}, RootCAs: pool, MinVersion: tls.VersionTLS12}
}

func httpsOptions(dir, url string, cfg *tls.Config) Options {
	return Options{Dir: dir, BackoffMin: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond,
		Sinks: []SinkOptions{{Name: "jims", Type: TypeHTTPS, Batch: 7, Timeout: 2 * time.Second,
			HTTPS: &HTTPSOptions{URL: url, TLS: cfg, Edge: "edge-1"}}}}
}

// session i's three events: connect, address change, disconnect.
func lifecycle(p *Pusher, i int, phase int) {
	a := netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)})
	b := netip.AddrFrom4([4]byte{10, 2, byte(i >> 8), byte(i)})
	s := &Session{NAS: "sw1", SessionID: fmt.Sprintf("s%03d", i), UserName: fmt.Sprintf("u%d@example.com", i), Site: "hq"}
	switch phase {
	case 0:
		c := *s
		c.Addrs = []netip.Addr{a}
		p.SessionChanged(nil, &c)
	case 1:
		prev, c := *s, *s
		prev.Addrs, c.Addrs = []netip.Addr{a}, []netip.Addr{b}
		p.SessionChanged(&prev, &c)
	case 2:
		prev, c := *s, *s
		prev.Addrs, c.Addrs, c.Ended = []netip.Addr{b}, []netip.Addr{b}, true
		p.SessionChanged(&prev, &c)
	}
}

// checkOrder says every session's events arrived connect, update, disconnect, each exactly once
// (duplicates allowed only as repeats of an event already seen, at-least-once).
func checkOrder(tb testing.TB, evs []Event, sessions int) {
	tb.Helper()
	seen := map[string]bool{}
	next := map[string]int{}
	want := []string{"connect", "update", "disconnect"}
	for _, e := range evs {
		if seen[e.ID] {
			continue
		}
		seen[e.ID] = true
		n := next[e.SessionID]
		if n >= 3 || e.Type != want[n] {
			tb.Fatalf("session %s: event %d is %s (%s), want %s", e.SessionID, n, e.Type, e.ID, want[min(n, 2)])
		}
		next[e.SessionID] = n + 1
	}
	if len(next) != sessions {
		tb.Fatalf("%d sessions arrived, want %d", len(next), sessions)
	}
	for s, n := range next {
		if n != 3 {
			tb.Fatalf("session %s: %d events, want 3", s, n)
		}
	}
}

func runPusher(tb testing.TB, p *Pusher) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.Run(ctx)
	}()
	return func() {
		cancel()
		<-done
	}
}

// TestHTTPSDownAndBack: the receiver goes away with events queued and comes back: every event
// arrives, in order per session, over mutual TLS; then the same across a restart of the pusher.
func TestHTTPSDownAndBack(t *testing.T) {
	certs := peertest.NewCerts(t)
	rcv := newReceiver(t, certs)
	dir := t.TempDir()
	o := httpsOptions(dir, rcv.url(), clientTLS(t, certs))
	o.Domains = Domains{Missing: "none"}
	var smu sync.Mutex
	var states []string
	o.OnSinkState = func(name, typ string, up bool, err string) {
		smu.Lock()
		defer smu.Unlock()
		states = append(states, fmt.Sprintf("%s %s up=%t %t", name, typ, up, err != ""))
	}
	p, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	stop := runPusher(t, p)
	const n = 40
	for i := range n {
		lifecycle(p, i, 0)
	}
	waitFor(t, 10*time.Second, "connects", func() bool { return len(rcv.got()) >= n })

	rcv.down()
	for i := range n {
		lifecycle(p, i, 1)
	}
	waitFor(t, 10*time.Second, "sink down", func() bool { s := p.Status()[0]; return s.State == "down" && s.Queued == n })
	for i := range n {
		lifecycle(p, i, 2)
	}
	time.Sleep(300 * time.Millisecond) // a few capped retries against a closed port
	st := p.Status()[0]
	if st.Failed < 2 || st.LastError == "" || st.Queued != 2*n {
		t.Fatalf("while down: %+v", st)
	}
	rcv.up()
	waitFor(t, 10*time.Second, "all events", func() bool { return p.Status()[0].Queued == 0 })
	checkOrder(t, rcv.got(), n)
	st = p.Status()[0]
	if st.State != "up" || st.Sent < 3*n || st.SentByType["connect"] < n || st.SentByType["disconnect"] < n || st.Downs != 1 {
		t.Fatalf("after: %+v", st)
	}
	if rcv.clients["client.example"] == 0 || len(rcv.clients) != 1 {
		t.Fatalf("client certificates seen: %v", rcv.clients)
	}
	smu.Lock()
	got := strings.Join(states, "; ")
	smu.Unlock()
	name := o.Sinks[0].Name
	if want := name + " https up=false true; " + name + " https up=true false"; got != want {
		t.Fatalf("sink state callbacks %q, want %q", got, want)
	}
	ev := rcv.got()[0]
	if ev.Domain != "example.com" || ev.User != "u0" || ev.IPAddresses[0] != "10.1.0.0" || ev.NAS != "sw1" {
		t.Fatalf("first event %+v", ev)
	}

	// Restart with events queued: they were durable before they counted as queued.
	rcv.down()
	for i := n; i < 2*n; i++ {
		for ph := range 3 {
			lifecycle(p, i, ph)
		}
	}
	waitFor(t, 10*time.Second, "queued", func() bool { return p.Status()[0].Queued == 3*n })
	stop()
	p.Close()
	rcv.mu.Lock()
	rcv.events = nil
	rcv.mu.Unlock()
	p, err = New(o)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if q := p.Status()[0].Queued; q != 3*n {
		t.Fatalf("reopened queue holds %d, want %d", q, 3*n)
	}
	rcv.up()
	stop = runPusher(t, p)
	defer stop()
	waitFor(t, 10*time.Second, "replayed", func() bool { return p.Status()[0].Queued == 0 })
	checkOrder(t, rcv.got(), n)
}

// TestHTTPSBearerTokenAndRefusal: a token from a file is sent; a receiver that refuses (non-2xx)
// keeps the events queued and the reason in last_error.
func TestHTTPSBearerTokenAndRefusal(t *testing.T) {
	certs := peertest.NewCerts(t)
	rcv := newReceiver(t, certs)
	tok := filepath.Join(t.TempDir(), "token")
	os.WriteFile(tok, []byte("s3cret-token\n"), 0o600)
	o := httpsOptions(t.TempDir(), rcv.url()+"?x=1", clientTLS(t, certs))
	o.Sinks[0].HTTPS.TokenFile = tok
	p, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	stop := runPusher(t, p)
	defer stop()
	lifecycle(p, 1, 0)
	waitFor(t, 5*time.Second, "event", func() bool { return len(rcv.got()) == 1 })
	if rcv.tokens["Bearer s3cret-token"] != 1 {
		t.Fatalf("tokens %v", rcv.tokens)
	}
	os.WriteFile(tok, []byte("\n"), 0o600)
	lifecycle(p, 1, 2)
	waitFor(t, 5*time.Second, "failure", func() bool { return p.Status()[0].State == "down" })
	if st := p.Status()[0]; !strings.Contains(st.LastError, "empty") || st.Queued != 1 {
		t.Fatalf("status %+v", st)
	}
}

func TestHTTPSValidate(t *testing.T) {
	for _, tc := range []struct {
		o    HTTPSOptions
		want string
	}{
		{HTTPSOptions{URL: "http://x/"}, "scheme must be https"},
		{HTTPSOptions{URL: "https:///p"}, "no host"},
		{HTTPSOptions{URL: "https://x/", TLS: &tls.Config{InsecureSkipVerify: true}}, "cannot be turned off"},
		{HTTPSOptions{URL: "https://x/", TokenFile: "/nonexistent/token"}, "token file"},
	} {
		if err := tc.o.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.o, err, tc.want)
		}
	}
}

// TestKill9 runs a pusher in a child process (this test binary re-executed), lets it queue
// events against a dead receiver, kills it with SIGKILL and starts a new pusher on the same
// queue: every event the child reported committed arrives, in order per session.
func TestKill9(t *testing.T) {
	if os.Getenv("MXEDGE_IDENTITY_CHILD") != "" {
		killChild()
		return
	}
	certs := peertest.NewCerts(t)
	rcv := newReceiver(t, certs)
	rcv.down()
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestKill9$", "-test.count=1")
	cmd.Env = append(os.Environ(), "MXEDGE_IDENTITY_CHILD=1", "CHILD_DIR="+dir, "CHILD_URL="+rcv.url(),
		"CHILD_CA="+certs.CA, "CHILD_CERT="+certs.ClientCert, "CHILD_KEY="+certs.ClientKey)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// The child prints "committed N" lines; kill it mid-stream after a few.
	buf := make([]byte, 4096)
	var text string
	committed := 0
	for committed < 150 {
		k, err := out.Read(buf)
		if err != nil {
			t.Fatalf("child output ended: %v (%q)", err, text)
		}
		text += string(buf[:k])
		for _, l := range strings.Split(text, "\n") {
			if v, ok := strings.CutPrefix(l, "committed "); ok {
				if c, err := strconv.Atoi(v); err == nil && c > committed {
					committed = c
				}
			}
		}
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	werr := cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(werr, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child did not die of SIGKILL: %v", werr)
	}
	o := httpsOptions(dir, rcv.url(), clientTLS(t, certs))
	p, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	queued := p.Status()[0].Queued
	if queued < committed {
		t.Fatalf("after kill -9: %d queued, the child had committed %d", queued, committed)
	}
	rcv.up()
	stop := runPusher(t, p)
	defer stop()
	waitFor(t, 20*time.Second, "replay", func() bool { return p.Status()[0].Queued == 0 })
	evs := rcv.got()
	// Sessions are complete up to what was committed: check each arrived session's order.
	seen, next := map[string]bool{}, map[string]int{}
	want := []string{"connect", "update", "disconnect"}
	for _, e := range evs {
		if seen[e.ID] {
			continue
		}
		seen[e.ID] = true
		if n := next[e.SessionID]; n > 2 || e.Type != want[n] {
			t.Fatalf("session %s: event %d is %s", e.SessionID, n, e.Type)
		}
		next[e.SessionID]++
	}
	if len(seen) < committed {
		t.Fatalf("%d distinct events arrived, %d were committed before the kill", len(seen), committed)
	}
	t.Logf("child committed %d before SIGKILL; %d queued after; %d distinct delivered", committed, queued, len(seen))
}

// killChild is the child of TestKill9: it queues session lifecycles against a receiver that is
// down and prints how many events are committed (queued on disk) as it goes, until killed.
func killChild() {
	pair, _ := tls.LoadX509KeyPair(os.Getenv("CHILD_CERT"), os.Getenv("CHILD_KEY"))
	pool := x509.NewCertPool()
	pem, _ := os.ReadFile(os.Getenv("CHILD_CA"))
	pool.AppendCertsFromPEM(pem)
	o := httpsOptions(os.Getenv("CHILD_DIR"), os.Getenv("CHILD_URL"), &tls.Config{Certificates: []tls.Certificate{pair}, RootCAs: pool})
	o.Logger = slog.New(slog.DiscardHandler)
	p, err := New(o)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	go p.Run(context.Background())
	go func() {
		// What the queue holds on disk, as the offers keep coming: the parent kills mid-stream.
		for {
			fmt.Printf("committed %d\n", p.Status()[0].Queued)
			time.Sleep(time.Millisecond)
		}
	}()
	for i := 0; i < 100_000; i++ { // bounded; the parent kills it long before
		for ph := range 3 {
			lifecycle(p, i, ph)
		}
		time.Sleep(100 * time.Microsecond)
	}
	os.Exit(0)
}

// TestDeadSinkDoesNotStallOthers: with one sink's receiver gone, the other sink keeps delivering
// as the events come, and the dead one keeps them queued.
func TestDeadSinkDoesNotStallOthers(t *testing.T) {
	certs := peertest.NewCerts(t)
	rcv := newReceiver(t, certs)
	dead := newReceiver(t, certs)
	dead.down()
	o := httpsOptions(t.TempDir(), rcv.url(), clientTLS(t, certs))
	o.Sinks = append(o.Sinks, SinkOptions{Name: "gone", Type: TypeHTTPS, Timeout: time.Second,
		HTTPS: &HTTPSOptions{URL: dead.url(), TLS: clientTLS(t, certs)}})
	p, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	stop := runPusher(t, p)
	defer stop()
	for i := range 30 {
		lifecycle(p, i, 0)
		want := i + 1
		waitFor(t, 5*time.Second, "live sink keeps up", func() bool { return len(rcv.got()) == want })
	}
	// The last batch is removed from the live sink's queue just after its receiver has it.
	waitFor(t, 5*time.Second, "live sink empty", func() bool { return p.Status()[0].Queued == 0 })
	st := p.Status()
	if st[0].State != "up" || st[1].State != "down" || st[1].Queued != 30 {
		t.Fatalf("status %+v", st)
	}
}

// TestStopDuringBackoff: a pusher waiting out a long backoff stops when asked, not when the wait ends.
func TestStopDuringBackoff(t *testing.T) {
	certs := peertest.NewCerts(t)
	rcv := newReceiver(t, certs)
	rcv.down()
	o := httpsOptions(t.TempDir(), rcv.url(), clientTLS(t, certs))
	o.BackoffMin, o.BackoffMax = time.Hour, time.Hour
	p, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	stop := runPusher(t, p)
	lifecycle(p, 1, 0)
	waitFor(t, 5*time.Second, "down", func() bool { return p.Status()[0].State == "down" })
	lifecycle(p, 1, 1) // a wake during the backoff
	waitFor(t, 5*time.Second, "queued", func() bool { return p.Status()[0].Queued == 2 })
	done := make(chan struct{})
	go func() { stop(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return within 10 s of its cancel while in a one-hour backoff")
	}
}
