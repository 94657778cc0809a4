package resolve

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func TestDiscover(t *testing.T) {
	e := newEnv(t, nil)
	e.z.set(t,
		`uni.example. 300 IN NAPTR 100 10 "s" "x-eduroam:radius.tls" "" _radsec._tcp.eduroam.uni.example.`,
		`uni.example. 300 IN NAPTR 200 10 "a" "x-eduroam:radius.tls" "" last.uni.example.`,
		`uni.example. 300 IN NAPTR 50 10 "s" "aaa+auth:radius.tls.tcp" "" _radsec._tcp.other.uni.example.`,
		`uni.example. 300 IN NAPTR 10 10 "u" "x-eduroam:radius.tls" "!^.*$!radsec://x!" .`,
	)
	e.z.set(t,
		"_radsec._tcp.eduroam.uni.example. 300 IN SRV 0 20 2083 rad1.uni.example.",
		"_radsec._tcp.eduroam.uni.example. 300 IN SRV 0 80 2083 rad2.uni.example.",
		"_radsec._tcp.eduroam.uni.example. 300 IN SRV 5 0 12083 rad3.uni.example.")
	e.z.set(t, "rad1.uni.example. 300 IN A 192.0.2.1")
	e.z.set(t, "rad2.uni.example. 300 IN A 192.0.2.2")
	e.z.set(t, "rad3.uni.example. 300 IN AAAA 2001:db8::3")
	e.z.set(t, "last.uni.example. 300 IN A 192.0.2.9")

	ts, err := e.r.Discover(context.Background(), "Uni.Example", ServiceEduroam)
	if err != nil {
		t.Fatal(err)
	}
	want := []Target{
		{netip.MustParseAddrPort("192.0.2.2:2083"), 0, 80, "rad2.uni.example"},
		{netip.MustParseAddrPort("192.0.2.1:2083"), 0, 20, "rad1.uni.example"},
		{netip.MustParseAddrPort("[2001:db8::3]:12083"), 1, 0, "rad3.uni.example"},
		{netip.MustParseAddrPort("192.0.2.9:2083"), 2, 0, "last.uni.example"},
	}
	if !slices.Equal(ts, want) {
		t.Fatalf("targets\n got %v\nwant %v", ts, want)
	}
	if e.z.count("_radsec._tcp.other.uni.example", dns.TypeSRV) != 0 {
		t.Fatal("NAPTR of another service followed")
	}

	// The RFC 7585 tag selects the other record.
	e.z.set(t, "_radsec._tcp.other.uni.example. 300 IN SRV 0 0 2083 rad1.uni.example.")
	ts, err = e.r.Discover(context.Background(), "uni.example", ServiceRADIUSTLS)
	if err != nil || len(ts) != 1 || ts[0].Addr.String() != "192.0.2.1:2083" {
		t.Fatalf("aaa+auth: %v, %v", ts, err)
	}

	// NAPTR lookup fails: last good; Invalidate forces the NAPTR re-query.
	e.z.setRcode("uni.example", dns.RcodeServerFailure)
	e.r.Invalidate("uni.example")
	ts, err = e.r.Discover(context.Background(), "uni.example", ServiceEduroam)
	var stale *StaleError
	if !errors.As(err, &stale) || !errors.Is(err, ErrServerFailure) || !slices.Equal(ts, want) {
		t.Fatalf("NAPTR failure: %v, %v", ts, err)
	}
	if n := e.z.count("uni.example", dns.TypeNAPTR); n != 2 {
		t.Fatalf("NAPTR queries = %d, want 2 (one cached, one after Invalidate)", n)
	}
}

func TestDiscoverNoRecords(t *testing.T) {
	e := newEnv(t, nil)
	e.z.set(t, "plain.example. 300 IN A 192.0.2.1")
	e.z.set(t, `other.example. 300 IN NAPTR 100 10 "s" "aaa+acct:radius.tls.tcp" "" _radsec._tcp.other.example.`)
	for _, tc := range []struct {
		realm string
		want  error
	}{
		{"missing.example", ErrNotFound},
		{"plain.example", ErrNoAnswer},
		{"other.example", ErrNoAnswer},
		{"192.0.2.1", ErrInvalidName},
	} {
		ts, err := e.r.Discover(context.Background(), tc.realm, ServiceEduroam)
		if ts != nil || !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, %v; want %v", tc.realm, ts, err, tc.want)
		}
	}
	if _, err := e.r.Discover(context.Background(), "plain.example", ""); err == nil {
		t.Error("empty service accepted")
	}
}

func TestDiscoverSRVStale(t *testing.T) {
	e := newEnv(t, nil)
	e.z.set(t, `r.example. 300 IN NAPTR 100 10 "s" "x-eduroam:radius.tls" "" _radsec._tcp.r.example.`)
	e.z.set(t, "_radsec._tcp.r.example. 60 IN SRV 0 0 2083 rad.r.example.")
	e.z.set(t, "rad.r.example. 60 IN A 192.0.2.1")
	good, err := e.r.Discover(context.Background(), "r.example", ServiceEduroam)
	if err != nil {
		t.Fatal(err)
	}
	e.z.setSilent("_radsec._tcp.r.example", true)
	e.clock.Advance(61 * time.Second)
	ts, err := e.r.Discover(context.Background(), "r.example", ServiceEduroam)
	if !errors.Is(err, ErrTimeout) || !slices.Equal(ts, good) {
		t.Fatalf("SRV timeout: %v, %v; want last good %v", ts, err, good)
	}
}
