package resolve

import (
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// zone is a programmable authoritative-and-recursive stand-in served by a
// real miekg/dns server on loopback (UDP and TCP on one port).
type zone struct {
	mu         sync.Mutex
	rrs        map[zkey][]dns.RR
	rcode      map[string]int  // name → forced RCODE
	silent     map[string]bool // name → never answer; "*" → never answer anything
	silentType map[zkey]bool   // name+type → never answer
	truncUDP   map[string]bool // name → answer UDP with TC=1 and nothing else
	noChase    bool            // stop at CNAMEs instead of adding the target's records
	delay      time.Duration   // before answering (singleflight test)
	queries    map[zkey]int
	soaMin     uint32
}

type zkey struct {
	name  string
	qtype uint16
}

func newZone() *zone {
	return &zone{
		rrs: map[zkey][]dns.RR{}, rcode: map[string]int{}, silent: map[string]bool{},
		truncUDP: map[string]bool{}, silentType: map[zkey]bool{}, queries: map[zkey]int{}, soaMin: 60,
	}
}

// with changes the zone's settings under its lock (the server reads them
// concurrently).
func (z *zone) with(f func(*zone)) {
	z.mu.Lock()
	defer z.mu.Unlock()
	f(z)
}

// set replaces the records of the owner/type of the first record.
func (z *zone) set(t testing.TB, records ...string) {
	t.Helper()
	z.mu.Lock()
	defer z.mu.Unlock()
	cleared := map[zkey]bool{}
	for _, s := range records {
		rr, err := dns.NewRR(s)
		if err != nil {
			t.Fatalf("bad RR %q: %v", s, err)
		}
		k := zkey{strings.ToLower(rr.Header().Name), rr.Header().Rrtype}
		if !cleared[k] {
			z.rrs[k] = nil
			cleared[k] = true
		}
		z.rrs[k] = append(z.rrs[k], rr)
	}
}

func (z *zone) remove(name string, qtype uint16) {
	z.mu.Lock()
	defer z.mu.Unlock()
	delete(z.rrs, zkey{dns.Fqdn(name), qtype})
}

func (z *zone) setRcode(name string, rcode int) {
	z.mu.Lock()
	defer z.mu.Unlock()
	if rcode == dns.RcodeSuccess {
		delete(z.rcode, dns.Fqdn(name))
		return
	}
	z.rcode[dns.Fqdn(name)] = rcode
}

func (z *zone) setSilent(name string, on bool) {
	z.mu.Lock()
	defer z.mu.Unlock()
	if name != "*" {
		name = dns.Fqdn(name)
	}
	z.silent[name] = on
}

func (z *zone) count(name string, qtype uint16) int {
	z.mu.Lock()
	defer z.mu.Unlock()
	return z.queries[zkey{dns.Fqdn(name), qtype}]
}

func (z *zone) total() int {
	z.mu.Lock()
	defer z.mu.Unlock()
	n := 0
	for _, c := range z.queries {
		n += c
	}
	return n
}

func (z *zone) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	if len(req.Question) != 1 {
		return
	}
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	z.mu.Lock()
	z.queries[zkey{name, q.Qtype}]++
	silent := z.silent["*"] || z.silent[name] || z.silentType[zkey{name, q.Qtype}]
	delay := z.delay
	z.mu.Unlock()
	if silent {
		return // the client must time out
	}
	if delay > 0 {
		time.Sleep(delay)
	}
	resp := z.answer(req, w.LocalAddr().Network() == "udp")
	_ = w.WriteMsg(resp)
}

func (z *zone) answer(req *dns.Msg, udp bool) *dns.Msg {
	z.mu.Lock()
	defer z.mu.Unlock()
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	resp := new(dns.Msg)
	resp.SetReply(req)
	resp.RecursionAvailable = true
	if rc, ok := z.rcode[name]; ok {
		resp.Rcode = rc
		if rc == dns.RcodeNameError {
			resp.Ns = []dns.RR{z.soa()}
		}
		return resp
	}
	if udp && z.truncUDP[name] {
		resp.Truncated = true
		return resp
	}
	cur := name
	for range 10 {
		if rrs := z.rrs[zkey{cur, q.Qtype}]; len(rrs) > 0 {
			resp.Answer = append(resp.Answer, rrs...)
			return resp
		}
		cn := z.rrs[zkey{cur, dns.TypeCNAME}]
		if len(cn) == 0 {
			break
		}
		resp.Answer = append(resp.Answer, cn[0])
		cur = strings.ToLower(cn[0].(*dns.CNAME).Target)
		if z.noChase {
			return resp
		}
	}
	exists := false
	for k := range z.rrs {
		if k.name == cur {
			exists = true
		}
	}
	if !exists && len(resp.Answer) == 0 {
		resp.Rcode = dns.RcodeNameError
	}
	resp.Ns = []dns.RR{z.soa()}
	return resp
}

func (z *zone) soa() dns.RR {
	return &dns.SOA{
		Hdr: dns.RR_Header{Name: "test.", Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: 3600},
		Ns:  "ns.test.", Mbox: "hostmaster.test.", Serial: 1, Refresh: 3600, Retry: 600, Expire: 86400,
		Minttl: z.soaMin,
	}
}

// startServer serves z on 127.0.0.1 over UDP and TCP (same port) until the
// test ends, and checks that its goroutines are gone afterwards.
func startServer(t testing.TB, z *zone) string {
	t.Helper()
	base := runtime.NumGoroutine()
	var (
		pc  net.PacketConn
		ln  net.Listener
		err error
	)
	for range 20 {
		pc, err = net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ln, err = net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			break
		}
		pc.Close()
	}
	if err != nil {
		t.Fatalf("no port free for UDP and TCP: %v", err)
	}
	var wg sync.WaitGroup
	var servers []*dns.Server
	for _, s := range []*dns.Server{{PacketConn: pc, Handler: z}, {Listener: ln, Handler: z}} {
		started := make(chan struct{})
		s.NotifyStartedFunc = func() { close(started) }
		servers = append(servers, s)
		wg.Go(func() { _ = s.ActivateAndServe() })
		<-started
	}
	t.Cleanup(func() {
		for _, s := range servers {
			_ = s.Shutdown()
		}
		wg.Wait()
		waitGoroutines(t, base)
	})
	return pc.LocalAddr().String()
}

// waitGoroutines fails the test if the goroutine count does not return to
// base within a second (server and resolver goroutines must all end).
func waitGoroutines(t testing.TB, base int) {
	t.Helper()
	deadline := time.Now().Add(time.Second)
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Errorf("goroutines: %d, baseline %d\n%s", runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// clock is an injectable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}
