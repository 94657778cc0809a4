package resolve

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

type env struct {
	r     *Resolver
	z     *zone
	clock *clock
	logs  *logSink
	hosts string
}

// newEnv starts a zone server and a Resolver pointed at it with a fake clock
// and an empty hosts file. mod adjusts the Options.
func newEnv(t testing.TB, mod func(*Options)) *env {
	t.Helper()
	z := newZone()
	addr := startServer(t, z)
	e := &env{z: z, clock: newClock(), logs: &logSink{}, hosts: filepath.Join(t.TempDir(), "hosts")}
	writeFile(t, e.hosts, "")
	o := Options{
		Servers:   []string{addr},
		HostsFile: e.hosts,
		Timeout:   300 * time.Millisecond,
		Attempts:  1,
		Now:       e.clock.Now,
		Logger:    slog.New(e.logs),
	}
	if mod != nil {
		mod(&o)
	}
	r, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	e.r = r
	return e
}

func writeFile(t testing.TB, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func addrs(ts []Target) []string {
	var out []string
	for _, t := range ts {
		out = append(out, t.Addr.String())
	}
	return out
}

func mustResolve(t testing.TB, e *env, host string, port uint16, srv bool) []Target {
	t.Helper()
	ts, err := e.r.Resolve(context.Background(), host, port, srv)
	if err != nil {
		t.Fatalf("Resolve(%q): %v", host, err)
	}
	return ts
}

// logSink is a slog.Handler that keeps records for assertions.
type logSink struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (l *logSink) Enabled(context.Context, slog.Level) bool { return true }
func (l *logSink) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.recs = append(l.recs, r.Clone())
	return nil
}
func (l *logSink) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logSink) WithGroup(string) slog.Handler      { return l }

// warns returns "upstream/reason" of each Warn record.
func (l *logSink) warns() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, r := range l.recs {
		if r.Level != slog.LevelWarn {
			continue
		}
		var up, why string
		r.Attrs(func(a slog.Attr) bool {
			switch a.Key {
			case "upstream":
				up = a.Value.String()
			case "reason":
				why = a.Value.String()
			}
			return true
		})
		out = append(out, up+"/"+why)
	}
	return out
}

func TestResolveHostBothFamilies(t *testing.T) {
	e := newEnv(t, nil)
	e.z.set(t, "radsec.example. 300 IN A 192.0.2.2", "radsec.example. 300 IN A 192.0.2.1")
	e.z.set(t, "radsec.example. 300 IN AAAA 2001:db8::1")
	ts := mustResolve(t, e, "RadSec.Example.", 2083, false)
	want := []string{"[2001:db8::1]:2083", "192.0.2.1:2083", "192.0.2.2:2083"}
	if got := addrs(ts); !slices.Equal(got, want) {
		t.Fatalf("addrs = %v, want %v", got, want)
	}
	for _, tg := range ts {
		if tg.Host != "radsec.example" || tg.Priority != 0 || tg.Weight != 0 {
			t.Errorf("target %+v: want Host radsec.example, no priority/weight", tg)
		}
	}
}

func TestResolveOneFamily(t *testing.T) {
	e := newEnv(t, nil)
	e.z.set(t, "v4.example. 300 IN A 192.0.2.1")
	ts, err := e.r.Resolve(context.Background(), "v4.example", 2083, false)
	if err != nil || !slices.Equal(addrs(ts), []string{"192.0.2.1:2083"}) {
		t.Fatalf("got %v, %v", addrs(ts), err) // AAAA NODATA is not a failure
	}
}

func TestResolveIPLiteral(t *testing.T) {
	e := newEnv(t, nil)
	for _, tc := range []struct{ host, want, name string }{
		{"192.0.2.7", "192.0.2.7:2083", "192.0.2.7"},
		{"2001:db8::7", "[2001:db8::7]:2083", "2001:db8::7"},
		{"[2001:db8::7]", "[2001:db8::7]:2083", "2001:db8::7"},
	} {
		t.Run(tc.host, func(t *testing.T) {
			for _, srv := range []bool{false, true} {
				ts := mustResolve(t, e, tc.host, 2083, srv)
				if len(ts) != 1 || ts[0].Addr.String() != tc.want || ts[0].Host != tc.name {
					t.Fatalf("srv=%v: got %+v", srv, ts)
				}
			}
		})
	}
	if n := e.z.total(); n != 0 {
		t.Fatalf("IP literals caused %d DNS queries", n)
	}
}

func TestResolveInvalid(t *testing.T) {
	e := newEnv(t, nil)
	for _, tc := range []struct {
		host string
		port uint16
		want error
	}{
		{"", 2083, ErrInvalidName},
		{"bad host", 2083, ErrInvalidName},
		{"a..b", 2083, ErrInvalidName},
		{strings.Repeat("a", 64) + ".example", 2083, ErrInvalidName},
		{"192.0.2.1:2083", 2083, ErrInvalidName},
		{"ok.example", 0, nil},
		{"192.0.2.1", 0, nil},
	} {
		_, err := e.r.Resolve(context.Background(), tc.host, tc.port, false)
		if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) {
			t.Errorf("Resolve(%q, %d) = %v, want %v", tc.host, tc.port, err, tc.want)
		}
	}
	if n := e.z.total(); n != 0 {
		t.Fatalf("invalid input caused %d queries", n)
	}
}

func TestTTLHonoured(t *testing.T) {
	tests := []struct {
		name     string
		ttl      int
		fresh    time.Duration // still cached after this long
		requery  time.Duration // queried again after this long
		minTTL   time.Duration
		maxTTL   time.Duration
		negative time.Duration
	}{
		{name: "record ttl", ttl: 60, fresh: 59 * time.Second, requery: 60 * time.Second},
		{name: "zero ttl clamped to MinTTL", ttl: 0, fresh: 4 * time.Second, requery: 5 * time.Second},
		{name: "huge ttl clamped to MaxTTL", ttl: 7 * 86400, fresh: 59 * time.Minute, requery: time.Hour},
		{name: "custom clamp", ttl: 1, minTTL: 30 * time.Second, maxTTL: 40 * time.Second, fresh: 29 * time.Second, requery: 30 * time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(o *Options) { o.MinTTL, o.MaxTTL = tc.minTTL, tc.maxTTL })
			e.z.set(t, "ttl.example. "+strconv.Itoa(tc.ttl)+" IN A 192.0.2.1")
			mustResolve(t, e, "ttl.example", 2083, false)
			if n := e.z.count("ttl.example", dns.TypeA); n != 1 {
				t.Fatalf("A queries = %d, want 1", n)
			}
			e.clock.Advance(tc.fresh)
			mustResolve(t, e, "ttl.example", 2083, false)
			if n := e.z.count("ttl.example", dns.TypeA); n != 1 {
				t.Fatalf("after %v: A queries = %d, want 1 (cached)", tc.fresh, n)
			}
			e.z.set(t, "ttl.example. 60 IN A 192.0.2.9")
			e.clock.Advance(tc.requery - tc.fresh)
			ts := mustResolve(t, e, "ttl.example", 2083, false)
			if n := e.z.count("ttl.example", dns.TypeA); n != 2 {
				t.Fatalf("after %v: A queries = %d, want 2", tc.requery, n)
			}
			if got := addrs(ts); !slices.Equal(got, []string{"192.0.2.9:2083"}) {
				t.Fatalf("after re-query: %v", got)
			}
		})
	}
}

// failure programs one kind of DNS failure for name.
type failure struct {
	name  string
	apply func(t testing.TB, z *zone, name string)
	want  error
	why   string // logged reason
}

var failures = []failure{
	{"servfail", func(_ testing.TB, z *zone, n string) { z.setRcode(n, dns.RcodeServerFailure) }, ErrServerFailure, "servfail"},
	{"refused", func(_ testing.TB, z *zone, n string) { z.setRcode(n, dns.RcodeRefused) }, ErrServerFailure, "servfail"},
	{"nxdomain", func(_ testing.TB, z *zone, n string) { z.setRcode(n, dns.RcodeNameError) }, ErrNotFound, "nxdomain"},
	{"timeout", func(_ testing.TB, z *zone, n string) { z.setSilent(n, true) }, ErrTimeout, "timeout"},
	{"nodata", func(t testing.TB, z *zone, n string) { z.remove(n, dns.TypeA); z.set(t, n+". 60 IN TXT x") }, ErrNoAnswer, "nodata"},
}

func TestLastGoodOnFailure(t *testing.T) {
	for _, f := range failures {
		t.Run(f.name, func(t *testing.T) {
			e := newEnv(t, nil)
			e.z.set(t, "up.example. 60 IN A 192.0.2.1")
			good := mustResolve(t, e, "up.example", 2083, false)

			f.apply(t, e.z, "up.example")
			e.clock.Advance(61 * time.Second)
			ts, err := e.r.Resolve(context.Background(), "up.example", 2083, false)
			var stale *StaleError
			if !errors.As(err, &stale) {
				t.Fatalf("err = %v, want *StaleError", err)
			}
			if !errors.Is(err, f.want) || stale.Host != "up.example" {
				t.Fatalf("err = %v (host %q), want wrapping %v", err, stale.Host, f.want)
			}
			if !slices.Equal(ts, good) {
				t.Fatalf("targets = %v, want last good %v", ts, good)
			}
			if w := e.logs.warns(); !slices.Contains(w, "up.example/"+f.why) {
				t.Fatalf("warn logs = %v, want up.example/%s", w, f.why)
			}

			// The failure is remembered for NegativeTTL: no new query, still stale.
			before := e.z.total()
			e.clock.Advance(29 * time.Second)
			ts, err = e.r.Resolve(context.Background(), "up.example", 2083, false)
			if !errors.As(err, &stale) || !slices.Equal(ts, good) || e.z.total() != before {
				t.Fatalf("within NegativeTTL: %v %v, queries %d→%d", ts, err, before, e.z.total())
			}
			nWarn := len(e.logs.warns())

			// Recovery after NegativeTTL.
			e.z.setRcode("up.example", dns.RcodeSuccess)
			e.z.setSilent("up.example", false)
			e.z.set(t, "up.example. 60 IN A 192.0.2.5")
			e.clock.Advance(time.Second)
			ts, err = e.r.Resolve(context.Background(), "up.example", 2083, false)
			if err != nil || !slices.Equal(addrs(ts), []string{"192.0.2.5:2083"}) {
				t.Fatalf("after recovery: %v, %v", addrs(ts), err)
			}
			if len(e.logs.warns()) != nWarn {
				t.Fatalf("recovery logged a warning: %v", e.logs.warns())
			}
		})
	}
}

func TestFailureWithoutLastGood(t *testing.T) {
	for _, f := range failures {
		t.Run(f.name, func(t *testing.T) {
			e := newEnv(t, nil)
			f.apply(t, e.z, "up.example")
			ts, err := e.r.Resolve(context.Background(), "up.example", 2083, false)
			var stale *StaleError
			if ts != nil || err == nil || errors.As(err, &stale) || !errors.Is(err, f.want) {
				t.Fatalf("got %v, %v; want nil and a plain error wrapping %v", ts, err, f.want)
			}
		})
	}
}

func TestPartialFamilyFailure(t *testing.T) {
	e := newEnv(t, nil)
	e.z.set(t, "dual.example. 60 IN A 192.0.2.1")
	e.z.set(t, "dual.example. 60 IN AAAA 2001:db8::1")
	mustResolve(t, e, "dual.example", 2083, false)

	// AAAA now times out; A has moved. The fresh A and the last good AAAA.
	e.z.set(t, "dual.example. 60 IN A 192.0.2.2")
	e.clock.Advance(61 * time.Second)
	silenceType(e.z, "dual.example.", dns.TypeAAAA)
	ts, err := e.r.Resolve(context.Background(), "dual.example", 2083, false)
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("err = %v, want a stale error wrapping ErrTimeout", err)
	}
	if got, want := addrs(ts), []string{"[2001:db8::1]:2083", "192.0.2.2:2083"}; !slices.Equal(got, want) {
		t.Fatalf("addrs = %v, want %v", got, want)
	}
}

func silenceType(z *zone, name string, qtype uint16) {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.silentType[zkey{name, qtype}] = true
}

func TestNegativeTTLFromSOA(t *testing.T) {
	e := newEnv(t, nil)
	e.z.with(func(z *zone) { z.soaMin = 10 })
	e.z.setRcode("gone.example", dns.RcodeNameError)
	if _, err := e.r.Resolve(context.Background(), "gone.example", 2083, false); !errors.Is(err, ErrNotFound) {
		t.Fatalf("err = %v", err)
	}
	n := e.z.total()
	e.clock.Advance(9 * time.Second)
	e.r.Resolve(context.Background(), "gone.example", 2083, false)
	if e.z.total() != n {
		t.Fatal("re-queried within the SOA negative TTL")
	}
	e.clock.Advance(time.Second)
	e.r.Resolve(context.Background(), "gone.example", 2083, false)
	if e.z.total() == n {
		t.Fatal("not re-queried after the SOA negative TTL (RFC 2308 §5)")
	}
}

func TestInvalidate(t *testing.T) {
	e := newEnv(t, nil)
	e.z.set(t, "up.example. 3600 IN A 192.0.2.1")
	mustResolve(t, e, "up.example", 2083, false)
	e.z.set(t, "up.example. 3600 IN A 192.0.2.2")
	if got := addrs(mustResolve(t, e, "up.example", 2083, false)); got[0] != "192.0.2.1:2083" {
		t.Fatalf("cached answer not used: %v", got)
	}
	e.r.Invalidate("UP.example.")
	if got := addrs(mustResolve(t, e, "up.example", 2083, false)); got[0] != "192.0.2.2:2083" {
		t.Fatalf("after Invalidate: %v, want the new address", got)
	}

	// Invalidate also clears a remembered failure, and keeps the last good.
	e.z.setRcode("up.example", dns.RcodeServerFailure)
	e.r.Invalidate("up.example")
	ts, err := e.r.Resolve(context.Background(), "up.example", 2083, false)
	if !errors.Is(err, ErrServerFailure) || addrs(ts)[0] != "192.0.2.2:2083" {
		t.Fatalf("got %v, %v", addrs(ts), err)
	}
	e.z.setRcode("up.example", dns.RcodeSuccess)
	e.r.Invalidate("up.example")
	if _, err := e.r.Resolve(context.Background(), "up.example", 2083, false); err != nil {
		t.Fatalf("after recovery and Invalidate: %v", err)
	}
	e.r.Invalidate("192.0.2.1") // IP literals and junk are no-ops
	e.r.Invalidate("bad name")
}

func TestSRV(t *testing.T) {
	e := newEnv(t, nil)
	e.z.set(t,
		"_radsec._tcp.nac.example. 300 IN SRV 20 0 2083 backup.example.",
		"_radsec._tcp.nac.example. 300 IN SRV 10 70 2083 pop-b.example.",
		"_radsec._tcp.nac.example. 300 IN SRV 10 30 12083 POP-A.example.")
	e.z.set(t, "pop-a.example. 300 IN A 192.0.2.10")
	e.z.set(t, "pop-b.example. 300 IN A 192.0.2.20", "pop-b.example. 300 IN A 192.0.2.21")
	e.z.set(t, "backup.example. 300 IN AAAA 2001:db8::30")
	ts := mustResolve(t, e, "nac.example", 2083, true)
	want := []Target{
		{netip.MustParseAddrPort("192.0.2.20:2083"), 10, 70, "pop-b.example"},
		{netip.MustParseAddrPort("192.0.2.21:2083"), 10, 70, "pop-b.example"},
		{netip.MustParseAddrPort("192.0.2.10:12083"), 10, 30, "pop-a.example"},
		{netip.MustParseAddrPort("[2001:db8::30]:2083"), 20, 0, "backup.example"},
	}
	if !slices.Equal(ts, want) {
		t.Fatalf("targets\n got %v\nwant %v", ts, want)
	}
	if e.z.count("nac.example", dns.TypeA) != 0 {
		t.Fatal("SRV present but the A record of the name was queried")
	}

	// A target that fails to resolve is left out, with a stale error.
	e.z.setRcode("pop-a.example", dns.RcodeNameError)
	e.r.Invalidate("nac.example")
	ts, err := e.r.Resolve(context.Background(), "nac.example", 2083, true)
	if !errors.Is(err, ErrNotFound) || len(ts) != 4 {
		t.Fatalf("target failure: %v, %v (the last good A of pop-a stays)", ts, err)
	}

	// The SRV lookup fails: last good SRV set, targets still resolved.
	e.z.setRcode("_radsec._tcp.nac.example", dns.RcodeServerFailure)
	e.z.setRcode("pop-a.example", dns.RcodeSuccess)
	e.r.Invalidate("nac.example")
	ts, err = e.r.Resolve(context.Background(), "nac.example", 2083, true)
	var stale *StaleError
	if !errors.As(err, &stale) || !errors.Is(err, ErrServerFailure) || !slices.Equal(ts, want) {
		t.Fatalf("SRV failure: %v, %v", ts, err)
	}
}

func TestSRVFallbackAndNoService(t *testing.T) {
	e := newEnv(t, nil)
	e.z.set(t, "plain.example. 300 IN A 192.0.2.1")
	e.z.set(t, "_radsec._tcp.none.example. 300 IN SRV 0 0 0 .")
	e.z.set(t, "none.example. 300 IN A 192.0.2.2")

	ts := mustResolve(t, e, "plain.example", 2083, true)
	if got := addrs(ts); !slices.Equal(got, []string{"192.0.2.1:2083"}) || ts[0].Host != "plain.example" {
		t.Fatalf("RFC 2782 fallback: %v", ts)
	}
	if _, err := e.r.Resolve(context.Background(), "plain.example", 0, true); !errors.Is(err, ErrNotFound) {
		t.Fatalf("port 0 disables the fallback: err = %v", err)
	}
	if _, err := e.r.Resolve(context.Background(), "none.example", 2083, true); !errors.Is(err, ErrServiceUnavailable) {
		t.Fatalf(`SRV target ".": err = %v`, err)
	}
}

func TestHostsFile(t *testing.T) {
	e := newEnv(t, nil)
	writeFile(t, e.hosts, "127.0.0.1 localhost\n::1 localhost ip6-localhost\n192.0.2.50 lab-radsec # lab\n")
	ts := mustResolve(t, e, "localhost", 2083, false)
	if got := addrs(ts); !slices.Equal(got, []string{"[::1]:2083", "127.0.0.1:2083"}) {
		t.Fatalf("localhost: %v", got)
	}
	if n := e.z.total(); n != 0 {
		t.Fatalf("hosts-file names went to DNS (%d queries)", n)
	}
	// SRV targets are looked up in the hosts file too.
	e.z.set(t, "_radsec._tcp.lab.example. 60 IN SRV 0 0 2083 lab-radsec.")
	if got := addrs(mustResolve(t, e, "lab.example", 2083, true)); !slices.Equal(got, []string{"192.0.2.50:2083"}) {
		t.Fatalf("SRV target from hosts: %v", got)
	}
	// Changes are picked up after the re-check interval.
	writeFile(t, e.hosts, "192.0.2.51 lab-radsec\n")
	os.Chtimes(e.hosts, time.Now().Add(time.Minute), time.Now().Add(time.Minute))
	e.clock.Advance(hostsRecheck)
	if got := addrs(mustResolve(t, e, "lab-radsec", 2083, false)); !slices.Equal(got, []string{"192.0.2.51:2083"}) {
		t.Fatalf("after edit: %v", got)
	}
}

func TestCNAME(t *testing.T) {
	for _, noChase := range []bool{false, true} {
		t.Run(map[bool]string{false: "in-answer", true: "re-query"}[noChase], func(t *testing.T) {
			e := newEnv(t, nil)
			e.z.with(func(z *zone) { z.noChase = noChase })
			e.z.set(t, "alias.example. 30 IN CNAME mid.example.")
			e.z.set(t, "mid.example. 300 IN CNAME real.example.")
			e.z.set(t, "real.example. 300 IN A 192.0.2.1")
			ts := mustResolve(t, e, "alias.example", 2083, false)
			if got := addrs(ts); !slices.Equal(got, []string{"192.0.2.1:2083"}) || ts[0].Host != "alias.example" {
				t.Fatalf("got %v", ts)
			}
			e.clock.Advance(29 * time.Second)
			mustResolve(t, e, "alias.example", 2083, false)
			if n := e.z.count("alias.example", dns.TypeA); n != 1 {
				t.Fatalf("A queries for the alias = %d before the CNAME TTL, want 1", n)
			}
			e.clock.Advance(time.Second) // the CNAME's 30s bounds the A record's 300s
			mustResolve(t, e, "alias.example", 2083, false)
			if n := e.z.count("alias.example", dns.TypeA); n != 2 {
				t.Fatalf("A queries for the alias = %d after the CNAME TTL, want 2", n)
			}
		})
	}
}

func TestCNAMELoop(t *testing.T) {
	e := newEnv(t, nil)
	e.z.with(func(z *zone) { z.noChase = true })
	e.z.set(t, "a.example. 60 IN CNAME b.example.")
	e.z.set(t, "b.example. 60 IN CNAME a.example.")
	if _, err := e.r.Resolve(context.Background(), "a.example", 2083, false); !errors.Is(err, ErrServerFailure) {
		t.Fatalf("CNAME loop: err = %v", err)
	}
	if n := e.z.total(); n > 2*maxChase {
		t.Fatalf("CNAME loop cost %d queries", n)
	}
}

func TestTCPOnTruncation(t *testing.T) {
	e := newEnv(t, nil)
	e.z.with(func(z *zone) { z.truncUDP["big.example."] = true })
	var recs []string
	for i := 1; i <= 40; i++ {
		recs = append(recs, "big.example. 60 IN A 192.0.2."+strconv.Itoa(i))
	}
	e.z.set(t, recs...)
	ts := mustResolve(t, e, "big.example", 2083, false)
	if len(ts) != 40 {
		t.Fatalf("got %d targets over TCP, want 40", len(ts))
	}
	if n := e.z.count("big.example", dns.TypeA); n != 2 {
		t.Fatalf("A queries = %d, want 2 (UDP truncated, then TCP)", n)
	}
}

func TestServerFailover(t *testing.T) {
	dead := newZone()
	dead.setSilent("*", true)
	deadAddr := startServer(t, dead)
	e := newEnv(t, func(o *Options) {
		o.Servers = append([]string{deadAddr}, o.Servers...)
		o.Timeout = 200 * time.Millisecond
	})
	e.z.set(t, "up.example. 60 IN A 192.0.2.1")
	if got := addrs(mustResolve(t, e, "up.example", 2083, false)); !slices.Equal(got, []string{"192.0.2.1:2083"}) {
		t.Fatalf("got %v", got)
	}
	if dead.count("up.example", dns.TypeA) != 1 {
		t.Fatal("first server not tried")
	}
}

func TestAttempts(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Attempts = 3; o.Timeout = 20 * time.Millisecond })
	e.z.setSilent("up.example", true)
	_, err := e.r.Resolve(context.Background(), "up.example", 2083, false)
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("err = %v", err)
	}
	if n := e.z.count("up.example", dns.TypeA); n != 3 {
		t.Fatalf("A queries = %d, want 3 attempts", n)
	}
}

func TestContextCancel(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Timeout = 5 * time.Second })
	e.z.set(t, "up.example. 60 IN A 192.0.2.1")
	mustResolve(t, e, "up.example", 2083, false)
	e.z.setSilent("up.example", true)
	e.clock.Advance(time.Minute)

	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(20*time.Millisecond, cancel)
	start := time.Now()
	ts, err := e.r.Resolve(ctx, "up.example", 2083, false)
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Resolve took %v after cancel", d)
	}
	if !errors.Is(err, context.Canceled) || len(ts) != 1 {
		t.Fatalf("got %v, %v; want last good and context.Canceled", ts, err)
	}
	// The cancellation is not remembered as a DNS failure.
	e.z.setSilent("up.example", false)
	if _, err := e.r.Resolve(context.Background(), "up.example", 2083, false); err != nil {
		t.Fatalf("after cancel: %v", err)
	}
	if w := e.logs.warns(); len(w) != 0 {
		t.Fatalf("cancellation logged as failure: %v", w)
	}
}

func TestConcurrentSharedFetch(t *testing.T) {
	e := newEnv(t, nil)
	e.z.with(func(z *zone) { z.delay = 30 * time.Millisecond })
	e.z.set(t, "up.example. 60 IN A 192.0.2.1")
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if _, err := e.r.Resolve(context.Background(), "up.example", 2083, false); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := e.z.count("up.example", dns.TypeA); n != 1 {
		t.Fatalf("A queries = %d, want 1 shared", n)
	}
}

func TestConcurrentRace(t *testing.T) {
	e := newEnv(t, nil)
	e.z.set(t, "_radsec._tcp.nac.example. 5 IN SRV 10 1 2083 a.example.", "_radsec._tcp.nac.example. 5 IN SRV 10 1 2083 b.example.")
	e.z.set(t, "a.example. 5 IN A 192.0.2.1")
	e.z.set(t, "b.example. 5 IN AAAA 2001:db8::2")
	e.z.set(t, "up.example. 5 IN A 192.0.2.3")
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 50 {
				switch (g + i) % 5 {
				case 0:
					e.r.Invalidate("nac.example")
				case 1:
					e.clock.Advance(time.Second)
				case 2:
					if i%10 == 2 {
						e.z.setRcode("a.example", dns.RcodeServerFailure)
					} else {
						e.z.setRcode("a.example", dns.RcodeSuccess)
					}
				}
				ts, err := e.r.Resolve(context.Background(), "nac.example", 2083, true)
				var stale *StaleError
				if len(ts) == 0 || (err != nil && !errors.As(err, &stale)) {
					t.Errorf("nac.example: %v, %v", ts, err)
				}
				_ = Order(ts, uint64(i))
				if _, err := e.r.Resolve(context.Background(), "up.example", 2083, false); err != nil {
					t.Errorf("up.example: %v", err)
				}
			}
		})
	}
	wg.Wait()
}

func TestSweepForgetsUnused(t *testing.T) {
	e := newEnv(t, nil)
	e.z.set(t, "old.example. 60 IN A 192.0.2.1")
	e.z.set(t, "new.example. 60 IN A 192.0.2.2")
	mustResolve(t, e, "old.example", 2083, false)
	e.clock.Advance(forgetAfter + sweepEvery)
	mustResolve(t, e, "new.example", 2083, false)
	e.r.mu.Lock()
	_, ok := e.r.entries[qkey{"old.example.", dns.TypeA}]
	e.r.mu.Unlock()
	if ok {
		t.Fatal("entry unused for a day was not forgotten")
	}
}
