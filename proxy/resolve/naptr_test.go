package resolve

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/miekg/dns"
)

var services = []string{ServiceAuthTLS, ServiceEduroamTLS}

// TestDiscover: RFC 7585 NAPTR → SRV → A/AAAA, only the configured service tags, in NAPTR order,
// with an "a" record on the RadSec port.
func TestDiscover(t *testing.T) {
	e := newEnv(t, nil)
	e.z.set(t,
		`example.org. 300 IN NAPTR 50 10 "s" "x-eduroam:radius.tls" "" _radsec._tcp.eduroam.example.org.`,
		`example.org. 300 IN NAPTR 10 10 "s" "aaa+auth:radius.tls.tcp" "" _radiustls._tcp.example.org.`,
		`example.org. 300 IN NAPTR 5 10 "s" "aaa+auth:radius.dtls.udp" "" _radiusdtls._udp.example.org.`,
		`example.org. 300 IN NAPTR 5 10 "u" "aaa+auth:radius.tls.tcp" "!^.*$!radsec://x!" .`,
		`example.org. 300 IN NAPTR 60 10 "a" "AAA+AUTH:RADIUS.TLS.TCP" "" plain.example.org.`,
	)
	e.z.set(t, `_radiustls._tcp.example.org. 300 IN SRV 10 0 2084 rs1.example.org.`)
	e.z.set(t, `_radsec._tcp.eduroam.example.org. 300 IN SRV 0 0 2083 rs2.example.org.`)
	e.z.set(t, `_radiusdtls._udp.example.org. 300 IN SRV 0 0 2083 dtls.example.org.`)
	e.z.set(t, `rs1.example.org. 300 IN A 192.0.2.1`)
	e.z.set(t, `rs2.example.org. 300 IN A 192.0.2.2`)
	e.z.set(t, `plain.example.org. 300 IN AAAA 2001:db8::3`)
	e.z.set(t, `dtls.example.org. 300 IN A 192.0.2.99`)

	ts, err := e.r.Discover(context.Background(), "Example.ORG", services)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"192.0.2.1:2084", "192.0.2.2:2083", "[2001:db8::3]:2083"}
	if got := addrs(ts); !slices.Equal(got, want) {
		t.Fatalf("targets %v, want %v (NAPTR order, DTLS and regexp records skipped)", got, want)
	}
	if ts[0].Host != "rs1.example.org" || ts[2].Host != "plain.example.org" {
		t.Fatalf("hosts %q %q", ts[0].Host, ts[2].Host)
	}
	if !(ts[0].Priority < ts[1].Priority && ts[1].Priority < ts[2].Priority) {
		t.Fatalf("priorities %d %d %d do not keep NAPTR order", ts[0].Priority, ts[1].Priority, ts[2].Priority)
	}
	// Order keeps the NAPTR rank whatever the rotation.
	for n := range uint64(5) {
		if got := addrs(Order(ts, n)); !slices.Equal(got, want) {
			t.Fatalf("Order(%d) = %v", n, got)
		}
	}
	// Only eduroam configured: the eduroam record alone.
	ts, err = e.r.Discover(context.Background(), "example.org", []string{ServiceEduroamTLS})
	if err != nil || !slices.Equal(addrs(ts), []string{"192.0.2.2:2083"}) {
		t.Fatalf("eduroam only: %v %v", addrs(ts), err)
	}
}

// TestDiscoverNegative: a realm without NAPTR fails with ErrNotFound and the failure is
// remembered for NegativeTTL (one query, not one per request); a realm whose NAPTRs name no
// configured service fails with ErrServiceUnavailable.
func TestDiscoverNegative(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.NegativeTTL = 20 * time.Second; o.MinTTL = time.Second })
	e.z.with(func(z *zone) { z.soaMin = 3600 })
	ctx := context.Background()
	for range 5 {
		_, err := e.r.Discover(ctx, "nowhere.example", services)
		if !errors.Is(err, ErrNotFound) || !IsNotFound(err) {
			t.Fatalf("err = %v, want ErrNotFound", err)
		}
	}
	if n := e.z.count("nowhere.example", dns.TypeNAPTR); n != 1 {
		t.Fatalf("%d NAPTR queries for a remembered failure, want 1", n)
	}
	e.clock.Advance(21 * time.Second)
	e.z.set(t, `nowhere.example. 300 IN NAPTR 10 10 "s" "aaa+auth:radius.tls.tcp" "" _radiustls._tcp.nowhere.example.`)
	e.z.set(t, `_radiustls._tcp.nowhere.example. 300 IN SRV 0 0 2083 rs.nowhere.example.`)
	e.z.set(t, `rs.nowhere.example. 300 IN A 192.0.2.7`)
	ts, err := e.r.Discover(ctx, "nowhere.example", services)
	if err != nil || !slices.Equal(addrs(ts), []string{"192.0.2.7:2083"}) {
		t.Fatalf("after the negative TTL: %v %v", addrs(ts), err)
	}

	e.z.set(t, `other.example. 300 IN NAPTR 10 10 "s" "aaa+acct:radius.tls.tcp" "" _x._tcp.other.example.`)
	if _, err := e.r.Discover(ctx, "other.example", services); !errors.Is(err, ErrServiceUnavailable) {
		t.Fatalf("err = %v, want ErrServiceUnavailable", err)
	}
	if _, err := e.r.Discover(ctx, "192.0.2.1", services); !errors.Is(err, ErrInvalidName) {
		t.Fatalf("address as realm: %v", err)
	}
}

// TestDiscoverTTL: each step lives for its own TTL; after the shortest expires only that step is
// asked again; InvalidateRealm expires the chain; a failure after success keeps the last good
// answer with a *StaleError.
func TestDiscoverTTL(t *testing.T) {
	e := newEnv(t, nil)
	e.z.set(t, `ttl.example. 3600 IN NAPTR 10 10 "s" "aaa+auth:radius.tls.tcp" "" _radiustls._tcp.ttl.example.`)
	e.z.set(t, `_radiustls._tcp.ttl.example. 60 IN SRV 0 0 2083 rs.ttl.example.`)
	e.z.set(t, `rs.ttl.example. 600 IN A 192.0.2.8`)
	ctx := context.Background()
	discover := func() []string {
		t.Helper()
		ts, err := e.r.Discover(ctx, "ttl.example", services)
		if err != nil {
			t.Fatal(err)
		}
		return addrs(ts)
	}
	discover()
	e.clock.Advance(61 * time.Second)
	discover()
	if n, s := e.z.count("ttl.example", dns.TypeNAPTR), e.z.count("_radiustls._tcp.ttl.example", dns.TypeSRV); n != 1 || s != 2 {
		t.Fatalf("NAPTR asked %d times (want 1), SRV %d (want 2)", n, s)
	}
	e.r.InvalidateRealm("ttl.example")
	discover()
	if n, a := e.z.count("ttl.example", dns.TypeNAPTR), e.z.count("rs.ttl.example", dns.TypeA); n != 2 || a != 2 {
		t.Fatalf("after InvalidateRealm: NAPTR %d (want 2), A %d (want 2)", n, a)
	}
	e.z.setRcode("ttl.example", dns.RcodeServerFailure)
	e.r.InvalidateRealm("ttl.example")
	ts, err := e.r.Discover(ctx, "ttl.example", services)
	var se *StaleError
	if !errors.As(err, &se) || !errors.Is(err, ErrServerFailure) || !slices.Equal(addrs(ts), []string{"192.0.2.8:2083"}) {
		t.Fatalf("SERVFAIL after success: %v %v", addrs(ts), err)
	}
}

// FuzzMatchNAPTR: any NAPTR RRset is filtered without panicking, and what is kept is ordered and
// of a configured service.
func FuzzMatchNAPTR(f *testing.F) {
	f.Add(uint16(10), uint16(10), "s", "aaa+auth:radius.tls.tcp", "", "_radiustls._tcp.example.org.")
	f.Add(uint16(1), uint16(0), "a", "x-eduroam:radius.tls", "!x!y!", ".")
	f.Fuzz(func(t *testing.T, order, pref uint16, flags, service, regexp, repl string) {
		recs := []dns.RR{
			&dns.NAPTR{Hdr: dns.RR_Header{Rrtype: dns.TypeNAPTR}, Order: order, Preference: pref, Flags: flags, Service: service, Regexp: regexp, Replacement: repl},
			&dns.NAPTR{Hdr: dns.RR_Header{Rrtype: dns.TypeNAPTR}, Order: 7, Preference: 7, Flags: "s", Service: ServiceAuthTLS, Replacement: "b.example."},
		}
		out := matchNAPTR(recs, services)
		for i, n := range out {
			if i > 0 && out[i-1].Order > n.Order {
				t.Fatalf("unordered: %v", out)
			}
			if n.Regexp != "" {
				t.Fatalf("kept a regexp record: %v", n)
			}
		}
	})
}

// TestDiscoverForgetsFailures: realms come from requests, so the failures of made-up ones must
// not stay for forgetAfter: once expired, the next sweep drops them; last good answers stay.
func TestDiscoverForgetsFailures(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.NegativeTTL = 30 * time.Second })
	e.z.set(t, `good.example. 300 IN NAPTR 10 10 "s" "aaa+auth:radius.tls.tcp" "" _radiustls._tcp.good.example.`)
	e.z.set(t, `_radiustls._tcp.good.example. 300 IN SRV 0 0 2083 rs.good.example.`)
	e.z.set(t, `rs.good.example. 300 IN A 192.0.2.9`)
	ctx := context.Background()
	if _, err := e.r.Discover(ctx, "good.example", services); err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		if _, err := e.r.Discover(ctx, fmt.Sprintf("bogus%d.example", i), services); !errors.Is(err, ErrNotFound) {
			t.Fatalf("bogus realm: %v", err)
		}
	}
	entries := func() int { e.r.mu.Lock(); defer e.r.mu.Unlock(); return len(e.r.entries) }
	if n := entries(); n < 50 {
		t.Fatalf("%d entries after 50 failures", n)
	}
	e.clock.Advance(sweepEvery + time.Minute)
	if _, err := e.r.Discover(ctx, "good.example", services); err != nil { // runs the sweep
		t.Fatal(err)
	}
	if n := entries(); n > 5 {
		t.Fatalf("%d entries left after the failures expired, want the good realm's few", n)
	}
}
