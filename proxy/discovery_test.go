package proxy_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"mxedge/pki"
	"mxedge/pki/pkitest"
	"mxedge/proxy"
	"mxedge/proxy/packet"
	"mxedge/proxy/radsectest"
	"mxedge/proxy/resolve"
)

// dnsZone is an authoritative stand-in for the realms' zones, served by a miekg/dns server on
// loopback; it counts the questions it was asked.
type dnsZone struct {
	mu      sync.Mutex
	rrs     map[string][]dns.RR // "name/type"
	queries map[string]int
}

func (z *dnsZone) key(name string, qtype uint16) string {
	return strings.ToLower(dns.Fqdn(name)) + "/" + dns.TypeToString[qtype]
}

func (z *dnsZone) add(t testing.TB, records ...string) {
	t.Helper()
	z.mu.Lock()
	defer z.mu.Unlock()
	for _, s := range records {
		rr, err := dns.NewRR(s)
		if err != nil {
			t.Fatal(err)
		}
		k := z.key(rr.Header().Name, rr.Header().Rrtype)
		z.rrs[k] = append(z.rrs[k], rr)
	}
}

func (z *dnsZone) count(name string, qtype uint16) int {
	z.mu.Lock()
	defer z.mu.Unlock()
	return z.queries[z.key(name, qtype)]
}

func (z *dnsZone) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	resp := new(dns.Msg)
	resp.SetReply(req)
	if len(req.Question) != 1 {
		resp.Rcode = dns.RcodeFormatError
		_ = w.WriteMsg(resp)
		return
	}
	q := req.Question[0]
	z.mu.Lock()
	k := z.key(q.Name, q.Qtype)
	z.queries[k]++
	resp.Answer = append(resp.Answer, z.rrs[k]...)
	exists := false
	for kk := range z.rrs {
		if strings.HasPrefix(kk, strings.ToLower(dns.Fqdn(q.Name))+"/") {
			exists = true
		}
	}
	z.mu.Unlock()
	if !exists {
		resp.Rcode = dns.RcodeNameError
		resp.Ns = []dns.RR{&dns.SOA{Hdr: dns.RR_Header{Name: "test.", Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: 60},
			Ns: "ns.test.", Mbox: "h.test.", Serial: 1, Minttl: 60}}
	}
	_ = w.WriteMsg(resp)
}

// startDNS serves z over UDP on 127.0.0.1 until the test ends.
func startDNS(t testing.TB, z *dnsZone) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	s := &dns.Server{PacketConn: pc, Handler: z, NotifyStartedFunc: func() { close(started) }}
	done := make(chan struct{})
	go func() { defer close(done); _ = s.ActivateAndServe() }()
	<-started
	t.Cleanup(func() { _ = s.Shutdown(); <-done })
	return pc.LocalAddr().String()
}

// realmDNS adapts proxy/resolve to proxy.RealmResolver, as the edge does, counting the calls.
type realmDNS struct {
	r     *resolve.Resolver
	calls atomic.Int64
}

func (a *realmDNS) Discover(ctx context.Context, realm string, services []string) ([]proxy.Target, error) {
	a.calls.Add(1)
	ts, err := a.r.Discover(ctx, realm, services)
	out := make([]proxy.Target, 0, len(ts))
	for _, t := range resolve.Order(ts, 0) {
		out = append(out, proxy.Target{Addr: t.Addr, Host: t.Host})
	}
	return out, err
}

func (a *realmDNS) InvalidateRealm(realm string) { a.r.InvalidateRealm(realm) }

// realmEnv is a DNS zone, a CA and the discovery under test.
type realmEnv struct {
	zone  *dnsZone
	dns   *realmDNS
	lab   *pkitest.Lab
	clock *fakeClock
}

type fakeClock struct {
	mu  sync.Mutex
	off time.Duration
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.off)
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.off += d
	c.mu.Unlock()
}

func newRealmEnv(t *testing.T) *realmEnv {
	t.Helper()
	z := &dnsZone{rrs: map[string][]dns.RR{}, queries: map[string]int{}}
	addr := startDNS(t, z)
	hosts := filepath.Join(t.TempDir(), "hosts")
	if err := os.WriteFile(hosts, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := resolve.New(resolve.Options{Servers: []string{addr}, HostsFile: hosts, Timeout: 500 * time.Millisecond, Attempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	return &realmEnv{zone: z, dns: &realmDNS{r: r}, lab: pkitest.Must(t), clock: &fakeClock{}}
}

// server starts a RadSec responder whose certificate carries the given NAIRealm and DNS SANs, and
// publishes realm → NAPTR → SRV → A for it. It returns the responder and a handshake counter.
func (e *realmEnv) server(t *testing.T, realm string, naiRealms, dnsNames []string) (*radsectest.Responder, *atomic.Int64) {
	t.Helper()
	is, err := e.lab.CA.Issue(pki.IssueOptions{CommonName: "rs." + realm, DNSNames: dnsNames, NAIRealms: naiRealms, Usage: pki.UsageServer})
	if err != nil {
		t.Fatal(err)
	}
	cfg := e.lab.ServerTLS()
	cfg.Certificates = []tls.Certificate{{Certificate: [][]byte{is.Cert.Raw}, PrivateKey: is.Key, Leaf: is.Cert}}
	var hellos atomic.Int64
	cfg.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) { hellos.Add(1); return nil, nil }
	r, err := radsectest.Start(cfg, "radsec")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	srv := "_radiustls._tcp." + realm + "."
	e.zone.add(t,
		fmt.Sprintf(`%s. 300 IN NAPTR 10 10 "s" "aaa+auth:radius.tls.tcp" "" %s`, realm, srv),
		fmt.Sprintf(`%s 300 IN SRV 0 0 %d rs.%s.`, srv, r.Addr().Port(), realm),
		fmt.Sprintf(`rs.%s. 300 IN A 127.0.0.1`, realm),
	)
	return r, &hellos
}

func (e *realmEnv) discovery(t *testing.T, mod func(*proxy.DiscoveryOptions)) *proxy.Discovery {
	t.Helper()
	o := proxy.DiscoveryOptions{
		Resolver: e.dns,
		Upstream: proxy.UpstreamOptions{TLS: e.lab.ClientTLS(), DeadAfter: 500 * time.Millisecond, DialTimeout: time.Second},
		Now:      e.clock.Now,
	}
	if mod != nil {
		mod(&o)
	}
	d, err := proxy.NewDiscovery(o)
	if err != nil {
		t.Fatal(err)
	}
	base := runtime.NumGoroutine()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		waitGoroutinesProxy(t, base)
	})
	return d
}

func waitGoroutinesProxy(t *testing.T, base int) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Errorf("goroutines %d, baseline %d\n%s", runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// forward sends one Access-Request for user through pool and returns the NAS-side answer.
func forward(t *testing.T, pool *proxy.Pool, user string) packet.Packet {
	t.Helper()
	secret := proxy.Secret("nas-secret")
	b := packet.New(nil, packet.CodeAccessRequest, 7, make([]byte, 16))
	b.AddString(packet.AttrUserName, user)
	pkt, err := b.Finish(secret, nil)
	if err != nil {
		t.Fatal(err)
	}
	return forwardPacket(t, pool, secret, pkt)
}

// forwardPacket sends pkt, from a NAS with secret, through pool and returns the NAS-side answer.
func forwardPacket(t *testing.T, pool *proxy.Pool, secret proxy.Secret, pkt packet.Packet) packet.Packet {
	t.Helper()
	now := time.Now()
	req := &proxy.Request{Client: &proxy.Client{Name: "nas", Secret: secret}, Packet: pkt, Received: now, Deadline: now.Add(2 * time.Second)}
	res := make(chan proxy.Result, 1)
	pool.Forward(req, func(r proxy.Result) { res <- r })
	select {
	case r := <-res:
		if r.Err != nil {
			t.Fatalf("Forward: %v", r.Err)
		}
		return r.Response
	case <-time.After(5 * time.Second):
		t.Fatal("no result")
	}
	return nil
}

// TestDiscoveryRealm: a realm found by NAPTR → SRV → A whose server proves the realm (NAIRealm
// SAN) gets a pool that forwards; the same pool serves the next request; the realm is listed.
func TestDiscoveryRealm(t *testing.T) {
	e := newRealmEnv(t)
	r, _ := e.server(t, "good.example", []string{"good.example"}, nil)
	d := e.discovery(t, nil)
	ctx := context.Background()
	pool, err := d.Discover(ctx, "Good.Example")
	if err != nil {
		t.Fatal(err)
	}
	if got := forward(t, pool, "alice").Code(); got != packet.CodeAccessAccept {
		t.Fatalf("answer %v", got)
	}
	again, err := d.Discover(ctx, "good.example")
	if err != nil || again != pool {
		t.Fatalf("second Discover: %p %v, want the same pool %p", again, err, pool)
	}
	if got := forward(t, again, "reject").Code(); got != packet.CodeAccessReject {
		t.Fatalf("answer %v", got)
	}
	if r.Requests.Load() != 2 {
		t.Fatalf("responder saw %d requests", r.Requests.Load())
	}
	rs := d.Realms()
	if len(rs) != 1 || rs[0].Realm != "good.example" || rs[0].Upstream.State != proxy.StateUp || rs[0].Upstream.Addr != netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), r.Addr().Port()) {
		t.Fatalf("realms %+v", rs)
	}
}

// TestDiscoveryCertificate: the certificate must name the realm, never just the DNS target: a
// server of another realm (reachable through the realm's own NAPTR), a certificate naming only the
// DNS target, and an untrusted CA are refused and the refusal is remembered; a configured
// server_name rule is honoured instead of the NAIRealm.
func TestDiscoveryCertificate(t *testing.T) {
	e := newRealmEnv(t)
	_, wrongHellos := e.server(t, "victim.example", []string{"attacker.example"}, nil)
	e.server(t, "dnsonly.example", nil, []string{"rs.dnsonly.example"})
	e.server(t, "wild.example", []string{"*.wild.example"}, nil)
	e.server(t, "sub.wild.example", []string{"*.wild.example"}, nil)
	d := e.discovery(t, nil)
	ctx := context.Background()

	for _, realm := range []string{"victim.example", "dnsonly.example", "wild.example"} {
		_, err := d.Discover(ctx, realm)
		if !errors.Is(err, proxy.ErrRealmCertificate) || !errors.Is(err, proxy.ErrDiscovery) || !errors.Is(err, proxy.ErrNoUpstream) {
			t.Fatalf("%s: err = %v, want ErrRealmCertificate", realm, err)
		}
	}
	if _, err := d.Discover(ctx, "sub.wild.example"); err != nil {
		t.Fatalf("one-label wildcard NAIRealm: %v", err)
	}
	// Remembered: no new handshake for the refused realm.
	n := wrongHellos.Load()
	if _, err := d.Discover(ctx, "victim.example"); !errors.Is(err, proxy.ErrRealmCertificate) {
		t.Fatalf("remembered failure: %v", err)
	}
	if wrongHellos.Load() != n {
		t.Fatalf("a remembered failure made %d new handshakes", wrongHellos.Load()-n)
	}

	rule := e.discovery(t, func(o *proxy.DiscoveryOptions) { o.ServerName = "rs.{realm}" })
	if _, err := rule.Discover(ctx, "dnsonly.example"); err != nil {
		t.Fatalf("server_name rule: %v", err)
	}
	if _, err := rule.Discover(ctx, "victim.example"); !errors.Is(err, proxy.ErrRealmCertificate) {
		t.Fatalf("server_name rule, no such DNS SAN: %v", err)
	}

	other := pkitest.Must(t)
	untrusted := e.discovery(t, func(o *proxy.DiscoveryOptions) { o.Upstream.TLS = other.ClientTLS() })
	_, err := untrusted.Discover(ctx, "sub.wild.example")
	var ua x509.UnknownAuthorityError
	if !errors.As(err, &ua) {
		t.Fatalf("untrusted CA: %v", err)
	}
}

// TestDiscoveryNegative: a realm without NAPTR fails at once, wrapping the DNS reason, and is not
// looked up again until NegativeTTL has passed.
func TestDiscoveryNegative(t *testing.T) {
	e := newRealmEnv(t)
	d := e.discovery(t, func(o *proxy.DiscoveryOptions) { o.NegativeTTL = 30 * time.Second })
	ctx := context.Background()
	for range 3 {
		_, err := d.Discover(ctx, "nowhere.example")
		if !errors.Is(err, resolve.ErrNotFound) || !errors.Is(err, proxy.ErrDiscovery) || !errors.Is(err, proxy.ErrNoUpstream) {
			t.Fatalf("err = %v", err)
		}
	}
	if c := e.dns.calls.Load(); c != 1 {
		t.Fatalf("%d discoveries for a remembered failure, want 1", c)
	}
	if q := e.zone.count("nowhere.example", dns.TypeNAPTR); q != 1 {
		t.Fatalf("%d NAPTR queries, want 1", q)
	}
	e.clock.Advance(31 * time.Second)
	// The realm appears: the next request after NegativeTTL discovers it.
	e.server(t, "nowhere.example", []string{"nowhere.example"}, nil)
	e.dns.r.InvalidateRealm("nowhere.example") // the resolver's own negative cache runs on the real clock
	if _, err := d.Discover(ctx, "nowhere.example"); err != nil {
		t.Fatalf("after NegativeTTL: %v", err)
	}
	if c := e.dns.calls.Load(); c < 2 {
		t.Fatalf("discoveries %d", c)
	}
}

// TestDiscoveryIdle: a realm's connections close IdleTimeout after its last request and the next
// request opens a new pool; a realm in use is not closed.
func TestDiscoveryIdle(t *testing.T) {
	e := newRealmEnv(t)
	r, hellos := e.server(t, "idle.example", []string{"idle.example"}, nil)
	d := e.discovery(t, func(o *proxy.DiscoveryOptions) { o.IdleTimeout = 2 * time.Second })
	ctx := context.Background()
	pool, err := d.Discover(ctx, "idle.example")
	if err != nil {
		t.Fatal(err)
	}
	forward(t, pool, "alice")
	// Used every half IdleTimeout for three IdleTimeouts: stays open.
	for range 6 {
		e.clock.Advance(time.Second)
		if p, err := d.Discover(ctx, "idle.example"); err != nil || p != pool {
			t.Fatalf("in use: %p %v", p, err)
		}
		time.Sleep(300 * time.Millisecond) // let the sweeper (every second) run
	}
	if len(d.Realms()) != 1 {
		t.Fatal("a realm in use was closed")
	}
	e.clock.Advance(3 * time.Second)
	deadline := time.Now().Add(5 * time.Second)
	for len(d.Realms()) != 0 || pool.Upstreams()[0].Status().Connections != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("idle realm not closed: %+v", d.Realms())
		}
		time.Sleep(20 * time.Millisecond)
	}
	n := hellos.Load()
	p2, err := d.Discover(ctx, "idle.example")
	if err != nil || p2 == pool {
		t.Fatalf("after idle close: %p %v (old %p)", p2, err, pool)
	}
	forward(t, p2, "bob")
	if hellos.Load() != n+1 || r.Requests.Load() != 2 {
		t.Fatalf("handshakes %d→%d, requests %d", n, hellos.Load(), r.Requests.Load())
	}
}

// TestDiscoveryValidate: the options' errors name what is wrong.
func TestDiscoveryValidate(t *testing.T) {
	lab := pkitest.Must(t)
	ok := proxy.DiscoveryOptions{Resolver: &realmDNS{}, Upstream: proxy.UpstreamOptions{TLS: lab.ClientTLS()}}
	tests := []struct {
		name string
		mod  func(*proxy.DiscoveryOptions)
		want string
	}{
		{"ok", func(*proxy.DiscoveryOptions) {}, ""},
		{"no resolver", func(o *proxy.DiscoveryOptions) { o.Resolver = nil }, "no resolver"},
		{"no tls", func(o *proxy.DiscoveryOptions) { o.Upstream.TLS = nil }, "no TLS"},
		{"rule", func(o *proxy.DiscoveryOptions) { o.ServerName = "radsec.example" }, "{realm}"},
		{"tag", func(o *proxy.DiscoveryOptions) { o.Services = []string{"aaa+auth: x"} }, "bad service tag"},
		{"negative", func(o *proxy.DiscoveryOptions) { o.IdleTimeout = -1 }, "negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := ok
			tt.mod(&o)
			err := o.Validate()
			if (err == nil) != (tt.want == "") || err != nil && !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate = %v, want %q", err, tt.want)
			}
		})
	}
}

// TestDiscoveryBogusRealms: failures of made-up realms are bounded and never lock out a realm that
// works.
func TestDiscoveryBogusRealms(t *testing.T) {
	e := newRealmEnv(t)
	e.server(t, "real.example", []string{"real.example"}, nil)
	d := e.discovery(t, func(o *proxy.DiscoveryOptions) { o.MaxRealms = 2 })
	ctx := context.Background()
	for i := range 10 {
		if _, err := d.Discover(ctx, fmt.Sprintf("made-up-%d.example", i)); errors.Is(err, proxy.ErrTooManyRealms) || !errors.Is(err, proxy.ErrDiscovery) {
			t.Fatalf("made-up realm %d: %v", i, err)
		}
	}
	if _, err := d.Discover(ctx, "real.example"); err != nil {
		t.Fatalf("a working realm after 10 failures: %v", err)
	}
}

// TestDiscoverySetOptions: a reload's options (here the CA that makes a realm's server trusted)
// apply to the next realm opened, and the failures they may fix are forgotten.
func TestDiscoverySetOptions(t *testing.T) {
	e := newRealmEnv(t)
	e.server(t, "reload.example", []string{"reload.example"}, nil)
	other := pkitest.Must(t)
	base := proxy.DiscoveryOptions{Resolver: e.dns, Upstream: proxy.UpstreamOptions{TLS: other.ClientTLS(), DeadAfter: 500 * time.Millisecond}}
	d := e.discovery(t, func(o *proxy.DiscoveryOptions) { *o = base })
	ctx := context.Background()
	if _, err := d.Discover(ctx, "reload.example"); err == nil {
		t.Fatal("a server of an untrusted CA was accepted")
	}
	fixed := base
	fixed.Upstream.TLS = e.lab.ClientTLS()
	if err := d.SetOptions(fixed); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Discover(ctx, "reload.example"); err != nil {
		t.Fatalf("after SetOptions: %v", err)
	}
	bad := fixed
	bad.ServerName = "no-placeholder"
	if err := d.SetOptions(bad); err == nil {
		t.Fatal("SetOptions accepted invalid options")
	}
}
