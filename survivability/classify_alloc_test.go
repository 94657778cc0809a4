package survivability

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"mxedge/cache"
	"mxedge/proxy"
	"mxedge/proxy/packet"
)

// arubaRequest is an Aruba-style MAB Access-Request: User-Name = User-Password = Calling-Station-Id.
func arubaRequest(tb testing.TB, secret []byte, user, station string) packet.Packet {
	tb.Helper()
	auth := []byte("0123456789abcdef")
	b := packet.New(nil, packet.CodeAccessRequest, 1, auth)
	b.AddMA()
	b.AddString(packet.AttrUserName, user)
	b.Add(packet.AttrUserPassword, packet.EncryptUserPassword(nil, []byte(user), secret, auth))
	b.AddUint32(packet.AttrNASPort, 7)
	b.AddString(packet.AttrCallingStationID, station)
	p, err := b.Finish(secret, nil)
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// TestClassifyAllocations: classifying runs for every cloud decision, on the upstream
// connection's reader: a MAB request costs the two strings its Classification carries (MAC,
// User-Name), a password login with a MAC as Calling-Station-Id the same; NAS-Port 7 none.
func TestClassifyAllocations(t *testing.T) {
	secret := []byte("s3cret")
	for _, tc := range []struct {
		name, user string
		method     Method
	}{
		{"mab", "02-00-5E-00-00-01", MethodMAB},
		{"pap", "alice", MethodOther},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := arubaRequest(t, secret, tc.user, "02-00-5E-00-00-01")
			if c := Classify(p, secret); c.Method != tc.method || c.MAC != "02:00:5e:00:00:01" {
				t.Fatalf("classified %+v", c)
			}
			if n := testing.AllocsPerRun(100, func() { Classify(p, secret) }); n > 2 {
				t.Fatalf("%v allocations per Classify, want at most 2", n)
			}
		})
	}
}

func BenchmarkClassifyMAB(b *testing.B) {
	secret := []byte("s3cret")
	p := arubaRequest(b, secret, "02-00-5E-00-00-01", "02-00-5E-00-00-01")
	b.ReportAllocs()
	for b.Loop() {
		Classify(p, secret)
	}
}

// memEngine is an Engine over a memCache holding one MAB client, 02:00:5e:00:00:01 on VLAN 300,
// with default VLAN 41 for the others, and its Authorizer.
func memEngine(tb testing.TB, secret []byte) (*Authorizer, *Engine) {
	tb.Helper()
	known := cache.Record{MAC: "02:00:5e:00:00:01", Identity: "02-00-5E-00-00-01", Method: cache.MethodMAB,
		Attrs: DefaultVLANAttrs("aruba", "300")}
	a, err := NewAuthorizer(AuthorizerOptions{Cache: memCache{known}, DefaultMABVLAN: "41"})
	if err != nil {
		tb.Fatal(err)
	}
	e, err := NewEngine(EngineOptions{Health: NewHealth(HealthOptions{}), Authorizer: a, Events: func(Event) {}})
	if err != nil {
		tb.Fatal(err)
	}
	return a, e
}

// BenchmarkEngineMAB: one local MAB answer (Classify, Authorize, the decision event, the signed
// Access-Accept), for a cached client and for one given the default VLAN. The cache is memCache,
// so bbolt's share (cache.BenchmarkLookupMAC1M) is not in it.
func BenchmarkEngineMAB(b *testing.B) {
	secret := []byte("s3cret")
	_, e := memEngine(b, secret)
	client := benchClient(b, secret)
	for _, tc := range []struct{ name, mac string }{{"cache-hit", "02-00-5E-00-00-01"}, {"default-vlan", "02-00-5E-00-00-02"}} {
		b.Run(tc.name, func(b *testing.B) {
			req := &proxy.Request{Client: client, Packet: arubaRequest(b, secret, tc.mac, tc.mac)}
			b.ReportAllocs()
			for b.Loop() {
				if resp, err := e.Serve(context.Background(), req, proxy.ErrNoUpstream); err != nil || resp.Code() != packet.CodeAccessAccept {
					b.Fatal(resp, err)
				}
			}
		})
	}
}

// BenchmarkEngineMABStore is BenchmarkEngineMAB over a real cache.Store: the closed-loop
// benchmark's decision (bench/survival, LocalMABClosed), half of the MACs cached with the RFC 3580
// VLAN triplet and half not, bbolt's read transaction and the record's decoding included.
func BenchmarkEngineMABStore(b *testing.B) {
	secret := []byte("s3cret")
	store := openStore(b)
	const cached = 20_000 // a B+tree as deep as the closed loop's 100,000 (three levels)
	recs := make([]cache.Record, cached)
	for i := range recs {
		mac := benchMABMAC(i)
		recs[i] = cache.Record{MAC: mac, Identity: strings.ReplaceAll(mac, ":", ""), Method: cache.MethodMAB,
			NAS: "127.0.0.1", Attrs: []cache.Attr{ // as bench/survival.FillCache writes them
				{Type: packet.AttrTunnelType, Tag: 1, Value: []byte{0, 0, 13}},
				{Type: packet.AttrTunnelMediumType, Tag: 1, Value: []byte{0, 0, 6}},
				{Type: packet.AttrTunnelPrivateGroupID, Tag: 1, Value: []byte("300")},
			}}
	}
	if rep, err := store.Merge(recs); err != nil || rep.Bad+rep.Expired != 0 {
		b.Fatal(rep, err)
	}
	a, err := NewAuthorizer(AuthorizerOptions{Cache: store, DefaultMABVLAN: "41"})
	if err != nil {
		b.Fatal(err)
	}
	e, err := NewEngine(EngineOptions{Health: NewHealth(HealthOptions{}), Authorizer: a, Events: func(Event) {}})
	if err != nil {
		b.Fatal(err)
	}
	client := benchClient(b, secret)
	reqs := make([]*proxy.Request, 1024)
	for i := range reqs {
		mac := benchMABMAC(i * 7919 % (2 * cached)) // from cached on: not in the cache
		station := strings.ToUpper(strings.ReplaceAll(mac, ":", "-"))
		reqs[i] = &proxy.Request{Client: client, Packet: arubaRequest(b, secret, strings.ReplaceAll(mac, ":", ""), station)}
	}
	hits := 0
	for _, req := range reqs {
		resp, err := e.Serve(context.Background(), req, proxy.ErrNoUpstream)
		if err != nil {
			b.Fatal(err)
		}
		if v, _ := resp.Attr(packet.AttrTunnelPrivateGroupID); string(v) == "\x01300" {
			hits++
		}
	}
	if hits < len(reqs)/3 || hits > 2*len(reqs)/3 {
		b.Fatalf("%d cache hits of %d requests, want about half", hits, len(reqs))
	}
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		req := reqs[i%len(reqs)]
		i++
		if resp, err := e.Serve(context.Background(), req, proxy.ErrNoUpstream); err != nil || resp.Code() != packet.CodeAccessAccept {
			b.Fatal(resp, err)
		}
	}
}

// benchMABMAC is the i-th MAC of BenchmarkEngineMABStore, in the canonical notation.
func benchMABMAC(i int) string {
	return fmt.Sprintf("02:00:00:%02x:%02x:%02x", byte(i>>16), byte(i>>8), byte(i))
}

// benchClient is the NAS of the engine benchmarks, from a ClientTable as the server has it.
func benchClient(b testing.TB, secret []byte) *proxy.Client {
	b.Helper()
	t, err := proxy.NewClientTable([]proxy.Client{{Name: "sw1", Vendor: "aruba", Prefix: netip.MustParsePrefix("10.0.0.1/32"), Secret: proxy.Secret(secret)}}, nil)
	if err != nil {
		b.Fatal(err)
	}
	return t.Lookup(netip.MustParseAddr("10.0.0.1"))
}

// TestLocalMABAllocations: a local MAB answer over a cache that allocates nothing (memCache)
// costs the two strings of its Classification (MAC, User-Name) and the answer's buffer; a cache
// hit one more, the VLAN of its event, a default-VLAN answer none: the attributes and the VLAN of
// a default are memoized (Authorizer.defaultAttrs).
func TestLocalMABAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not exact under the race detector")
	}
	secret := []byte("s3cret")
	a, e := memEngine(t, secret)
	client := benchClient(t, secret)
	for _, tc := range []struct {
		name, mac, vlan  string
		authorize, serve float64
	}{
		{"cache-hit", "02-00-5E-00-00-01", "300", 1, 4},
		{"default-vlan", "02-00-5E-00-00-02", "41", 0, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mac, _ := cache.NormalizeMAC(tc.mac)
			p := Proof{Method: cache.MethodMAB, MAC: mac}
			if v := a.Authorize(p, client.Vendor, client.Site); !v.Allowed || v.VLAN != tc.vlan {
				t.Fatalf("verdict %+v", v)
			}
			if n := testing.AllocsPerRun(100, func() { a.Authorize(p, client.Vendor, client.Site) }); n != tc.authorize {
				t.Errorf("%v allocations per Authorize, want %v", n, tc.authorize)
			}
			req := &proxy.Request{Client: client, Packet: arubaRequest(t, secret, tc.mac, tc.mac)}
			n := testing.AllocsPerRun(100, func() {
				if resp, err := e.Serve(context.Background(), req, proxy.ErrNoUpstream); err != nil || resp.Code() != packet.CodeAccessAccept {
					t.Fatal(resp, err)
				}
			})
			if n != tc.serve {
				t.Errorf("%v allocations per local MAB answer, want %v", n, tc.serve)
			}
		})
	}
}
