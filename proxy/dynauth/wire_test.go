package dynauth

import (
	"net/netip"
	"testing"

	"mxedge/proxy"
	"mxedge/proxy/packet"
)

func coaPacket(tb testing.TB, secret string, attrs func(b *packet.Builder)) packet.Packet {
	tb.Helper()
	b := packet.New(nil, packet.CodeCoARequest, 9, nil)
	b.AddMA()
	attrs(&b)
	p, err := b.Finish([]byte(secret), nil)
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// TestForwardStripsOperatorNASID: the copy for the NAS has no Operator-NAS-Identifier (RFC 8559),
// keeps every other attribute in order, and verifies with the NAS's secret only.
func TestForwardStripsOperatorNASID(t *testing.T) {
	req := coaPacket(t, "from", func(b *packet.Builder) {
		b.Add(attrExtended1, []byte{extOperatorNASID, 's', 'w'})
		b.AddString(packet.AttrUserName, "alice")
		b.Add(packet.AttrProxyState, []byte("ps"))
	})
	fwd, err := forward(req, []byte("from"), []byte("to"), 42)
	if err != nil {
		t.Fatal(err)
	}
	if fwd.ID() != 42 || fwd.Code() != packet.CodeCoARequest {
		t.Fatalf("id %d code %v", fwd.ID(), fwd.Code())
	}
	if _, ok := operatorNASID(fwd); ok {
		t.Error("Operator-NAS-Identifier reached the NAS")
	}
	if u, _ := fwd.Attr(packet.AttrUserName); string(u) != "alice" {
		t.Errorf("User-Name %q", u)
	}
	if ps, _ := fwd.Attr(packet.AttrProxyState); string(ps) != "ps" {
		t.Errorf("Proxy-State %q", ps)
	}
	if !packet.CheckRequestAuthenticator(fwd, []byte("to")) || packet.CheckRequestMA(fwd, []byte("to")) != packet.MAValid {
		t.Error("the copy does not verify with the NAS's secret")
	}
	if packet.CheckRequestAuthenticator(fwd, []byte("from")) {
		t.Error("the copy verifies with the requester's secret")
	}
	nak, err := NAK(req, []byte("from"), CauseSessionNotFound)
	if err != nil {
		t.Fatal(err)
	}
	if nak.Code() != packet.CodeCoANAK || !packet.CheckResponseAuthenticator(nak, req.Authenticator(), []byte("from")) {
		t.Errorf("NAK %v does not answer the request", nak.Code())
	}
	if ps, _ := nak.Attr(packet.AttrProxyState); string(ps) != "ps" {
		t.Errorf("NAK Proxy-State %q", ps)
	}
}

// TestSetTables: a reload's NAS table routes new requests; an invalid one is refused and the old
// one kept.
func TestSetTables(t *testing.T) {
	r, err := New(Options{NASes: []NAS{{Name: "a", Prefix: netip.MustParsePrefix("10.0.0.1/32"), Secret: proxy.Secret("s")}}})
	if err != nil {
		t.Fatal(err)
	}
	byIP := func(ip string) (string, uint32) {
		p := coaPacket(t, "x", func(b *packet.Builder) { b.Add(packet.AttrNASIPAddress, netip.MustParseAddr(ip).AsSlice()) })
		n, _, _, cause := r.route(p)
		if n == nil {
			return "", cause
		}
		return n.Name, cause
	}
	if n, c := byIP("10.0.0.1"); n != "a" || c != 0 {
		t.Fatalf("before: %q %d", n, c)
	}
	if err := r.SetTables(nil, []NAS{{Name: "b", Prefix: netip.MustParsePrefix("10.0.0.2/32"), Secret: proxy.Secret("s"), CoAPort: 1700}}); err != nil {
		t.Fatal(err)
	}
	if n, c := byIP("10.0.0.1"); n != "" || c != CauseRequestNotRoutable {
		t.Errorf("removed NAS still routed: %q %d", n, c)
	}
	if n, _ := byIP("10.0.0.2"); n != "b" {
		t.Errorf("new NAS not routed: %q", n)
	}
	if err := r.SetTables(nil, []NAS{{Name: "c", Prefix: netip.MustParsePrefix("10.0.0.3/32")}}); err == nil {
		t.Error("a NAS without a secret was accepted")
	}
	if n, _ := byIP("10.0.0.2"); n != "b" {
		t.Errorf("a refused reload replaced the table: %q", n)
	}
}

// FuzzForward: any request the listener would accept is either refused with an error or
// forwarded as a packet that parses and verifies with the NAS's secret; routing never panics.
func FuzzForward(f *testing.F) {
	f.Add([]byte(coaPacket(f, "from", func(b *packet.Builder) {
		b.Add(attrExtended1, []byte{extOperatorNASID, 'a'})
		b.AddString(packet.AttrUserName, "alice")
	})))
	f.Add([]byte(coaPacket(f, "from", func(b *packet.Builder) { b.Add(attrExtended1, []byte{}) })))
	r, err := New(Options{NASes: []NAS{{Name: "a", Prefix: netip.MustParsePrefix("10.0.0.0/8"), Secret: proxy.Secret("s")}}})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		p, err := packet.Parse(raw)
		if err != nil {
			return
		}
		r.route(p)
		sessionOf(p)
		fwd, err := forward(p, []byte("from"), []byte("to"), 1)
		if err != nil {
			return
		}
		q, err := packet.Parse(fwd)
		if err != nil {
			t.Fatalf("forwarded packet does not parse: %v", err)
		}
		if _, ok := operatorNASID(q); ok {
			t.Fatal("Operator-NAS-Identifier forwarded")
		}
		if packet.CheckRequestMA(q, []byte("to")) != packet.MAValid {
			t.Fatal("forwarded packet's Message-Authenticator does not verify")
		}
	})
}

// TestTrackingLimit: with the duplicate cache full, a request gets NAK 506 at once instead of
// growing the relay's state.
func TestTrackingLimit(t *testing.T) {
	r, err := New(Options{NASes: []NAS{{Name: "a", Prefix: netip.MustParsePrefix("127.0.0.1/32"), Secret: proxy.Secret("s"), Vendor: "cisco"}}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range maxTracked {
		r.dups[dupKey{origin: "filler", id: uint8(i), auth: [16]byte{byte(i >> 8), byte(i >> 16)}}] = &dupEntry{answer: packet.Packet{}}
	}
	o, err := r.Originate(t.Context(), "operator", ActionDisconnect, Target{NAS: "a", UserName: "u"})
	if err != nil {
		t.Fatal(err)
	}
	if o.Result != "nak" || o.ErrorCause != CauseResourcesUnavailable || len(r.dups) != maxTracked {
		t.Errorf("outcome %+v, %d tracked", o, len(r.dups))
	}
}
