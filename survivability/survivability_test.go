package survivability

import (
	"bytes"
	"crypto/md5"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"mxedge/cache"
	"mxedge/proxy"
	"mxedge/proxy/packet"
)

var secret = []byte("nas-secret")

type attr struct {
	t uint8
	v []byte
}

func request(t *testing.T, attrs ...attr) packet.Packet {
	t.Helper()
	auth := bytes.Repeat([]byte{9}, 16)
	b := packet.New(nil, packet.CodeAccessRequest, 1, auth)
	b.AddMA()
	for _, a := range attrs {
		if a.t == packet.AttrUserPassword {
			b.Add(a.t, packet.EncryptUserPassword(nil, a.v, secret, auth))
			continue
		}
		b.Add(a.t, a.v)
	}
	p, err := b.Finish(secret, nil)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func s(t uint8, v string) attr { return attr{t, []byte(v)} }

// chapResponse is a CHAP-Password value for password under challenge (RFC 2865 §5.3).
func chapResponse(ident byte, password string, challenge []byte) []byte {
	h := md5.New()
	h.Write([]byte{ident})
	h.Write([]byte(password))
	h.Write(challenge)
	return h.Sum([]byte{ident})
}

func TestClassify(t *testing.T) {
	callCheck := attr{packet.AttrServiceType, []byte{0, 0, 0, 10}}
	eapTLS := attr{packet.AttrEAPMessage, []byte{2, 5, 0, 6, 13, 0}}
	eapPEAP := attr{packet.AttrEAPMessage, []byte{2, 5, 0, 6, 25, 0}}
	reqAuth := bytes.Repeat([]byte{9}, 16) // request()'s Request Authenticator
	challenge := bytes.Repeat([]byte{7}, 16)
	tests := []struct {
		name   string
		attrs  []attr
		method Method
		mac    string
	}{
		{"cisco call-check", []attr{s(1, "aabbccddeeff"), s(2, "aabbccddeeff"), callCheck, s(31, "AA-BB-CC-DD-EE-FF")}, MethodMAB, "aa:bb:cc:dd:ee:ff"},
		{"password in another notation", []attr{s(1, "aa:bb:cc:dd:ee:ff"), s(2, "AABB.CCDD.EEFF"), s(31, "aabb.ccdd.eeff")}, MethodMAB, "aa:bb:cc:dd:ee:ff"},
		{"chap of the mac, request authenticator", []attr{s(1, "aabbccddeeff"), {packet.AttrCHAPPassword, chapResponse(3, "aabbccddeeff", reqAuth)}, s(31, "aa-bb-cc-dd-ee-ff")}, MethodMAB, "aa:bb:cc:dd:ee:ff"},
		{"chap of the mac, chap-challenge", []attr{s(1, "AABBCCDDEEFF"), {packet.AttrCHAPPassword, chapResponse(3, "AABBCCDDEEFF", challenge)}, {packet.AttrCHAPChallenge, challenge}, s(31, "aa-bb-cc-dd-ee-ff")}, MethodMAB, "aa:bb:cc:dd:ee:ff"},
		{"chap of another password", []attr{s(1, "aabbccddeeff"), {packet.AttrCHAPPassword, chapResponse(3, "secret", reqAuth)}, s(31, "aa-bb-cc-dd-ee-ff")}, MethodOther, "aa:bb:cc:dd:ee:ff"},
		{"chap under the wrong challenge", []attr{s(1, "aabbccddeeff"), {packet.AttrCHAPPassword, chapResponse(3, "aabbccddeeff", reqAuth)}, {packet.AttrCHAPChallenge, challenge}, s(31, "aa-bb-cc-dd-ee-ff")}, MethodOther, "aa:bb:cc:dd:ee:ff"},
		{"no password", []attr{s(1, "aa:bb:cc:dd:ee:ff"), s(31, "aabb.ccdd.eeff")}, MethodOther, "aa:bb:cc:dd:ee:ff"},
		{"call-check without the mac as password", []attr{s(1, "aabbccddeeff"), s(2, "secret"), callCheck, s(31, "AA-BB-CC-DD-EE-FF")}, MethodOther, "aa:bb:cc:dd:ee:ff"},
		{"mac as password, no calling-station", []attr{s(1, "AABBCCDDEEFF"), s(2, "aa-bb-cc-dd-ee-ff")}, MethodOther, ""},
		{"user-name another mac", []attr{s(1, "020000000001"), s(2, "020000000001"), s(31, "aa-bb-cc-dd-ee-ff")}, MethodOther, "aa:bb:cc:dd:ee:ff"},
		{"pap user", []attr{s(1, "alice"), s(2, "password"), s(31, "02-00-00-00-00-01")}, MethodOther, "02:00:00:00:00:01"},
		{"mac user wrong password", []attr{s(1, "aabbccddeeff"), s(2, "secret")}, MethodOther, ""},
		{"eap-tls", []attr{s(1, "anonymous@example.com"), eapTLS, s(31, "02-00-00-00-00-02")}, MethodEAPTLS, "02:00:00:00:00:02"},
		{"peap", []attr{s(1, "bob"), eapPEAP}, MethodEAPOther, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Classify(request(t, tt.attrs...), secret)
			if c.Method != tt.method || c.MAC != tt.mac {
				t.Fatalf("Classify = %+v, want method %v mac %q", c, tt.method, tt.mac)
			}
		})
	}
	if c := Classify(request(t, attr{packet.AttrNASPort, []byte{0, 0, 0x01, 0x02}}), secret); c.NASPort != "258" {
		t.Fatalf("NAS-Port: %q", c.NASPort)
	}
	if c := Classify(request(t, s(87, "ge-0/0/1")), secret); c.NASPort != "ge-0/0/1" {
		t.Fatalf("NAS-Port-Id: %q", c.NASPort)
	}
}

func TestAnonymous(t *testing.T) {
	for id, want := range map[string]bool{"anonymous": true, "@example.com": true, "Anonymous@example.com": true, "": true,
		"alice@example.com": false, "host/laptop.example.com": false} {
		if Anonymous(id) != want {
			t.Errorf("Anonymous(%q) = %v", id, !want)
		}
	}
}

func TestReplyAttrsRoundTrip(t *testing.T) {
	b := packet.New(nil, packet.CodeAccessAccept, 1, nil)
	b.AddMA()
	b.Add(packet.AttrTunnelType, []byte{0, 0, 0, 13})
	b.Add(packet.AttrTunnelMediumType, []byte{1, 0, 0, 6})
	b.AddTagged(packet.AttrTunnelPrivateGroupID, 1, []byte("300"))
	b.AddVSA(9, 1, []byte("shell:priv-lvl=15"))
	b.AddVSA(311, 16, bytes.Repeat([]byte{1}, 34)) // MS-MPPE-Send-Key: never replayed
	b.AddString(packet.AttrFilterID, "corp")
	b.AddString(packet.AttrClass, "session") // per-session: never replayed
	p, _ := b.Finish(secret, bytes.Repeat([]byte{1}, 16))
	attrs := ReplyAttrs(p)
	if len(attrs) != 5 {
		t.Fatalf("kept %d attributes: %+v", len(attrs), attrs)
	}
	if VLAN(attrs) != "300" || ReplyVLAN(p) != "300" {
		t.Fatalf("VLAN = %q, ReplyVLAN = %q", VLAN(attrs), ReplyVLAN(p))
	}
	rb := packet.New(nil, packet.CodeAccessAccept, 1, nil)
	rb.AddMA()
	AppendAttrs(&rb, attrs)
	q, _ := rb.Finish(secret, bytes.Repeat([]byte{1}, 16))
	// Everything but the dropped attributes comes back byte for byte.
	var want, got [][]byte
	for it := p.Attrs(); ; {
		off := it.Offset()
		typ, v, ok := it.Next()
		if !ok {
			break
		}
		if typ == packet.AttrClass || typ == packet.AttrMessageAuthenticator || (typ == 26 && v[3] == 0x37) {
			continue
		}
		want = append(want, p[off:off+2+len(v)])
	}
	for it := q.Attrs(); ; {
		off := it.Offset()
		typ, v, ok := it.Next()
		if !ok {
			break
		}
		if typ != packet.AttrMessageAuthenticator {
			got = append(got, q[off:off+2+len(v)])
		}
	}
	if len(got) != len(want) {
		t.Fatalf("replayed %d attributes, want %d", len(got), len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("attribute %d: %x, want %x", i, got[i], want[i])
		}
	}
}

type fakeCache struct {
	learned   []cache.Record
	forgotten []string // "mab:" + MAC or "eap-tls:" + identity
}

func (f *fakeCache) Learn(r cache.Record)      { f.learned = append(f.learned, r) }
func (f *fakeCache) ForgetMAB(mac string)      { f.forgotten = append(f.forgotten, "mab:"+mac) }
func (f *fakeCache) ForgetIdentity(who string) { f.forgotten = append(f.forgotten, "eap-tls:"+who) }

func TestLearner(t *testing.T) {
	client := &proxy.Client{Name: "sw1", Site: "HQ", Prefix: netip.MustParsePrefix("10.0.0.1/32"), Secret: proxy.Secret(secret)}
	reply := func(code packet.Code, req packet.Packet, attrs ...attr) packet.Packet {
		b := packet.NewResponse(nil, req, code)
		for _, a := range attrs {
			b.Add(a.t, a.v)
		}
		p, _ := b.Finish(secret, req.Authenticator())
		return p
	}
	port := func(n byte) attr { return attr{packet.AttrNASPort, []byte{0, 0, 0, n}} }
	mab := request(t, s(1, "aabbccddeeff"), s(2, "aabbccddeeff"), s(31, "aa-bb-cc-dd-ee-ff"), port(1))
	eap := request(t, s(1, "laptop.example.com"), attr{79, []byte{2, 7, 0, 6, 13, 0}}, s(31, "02-00-00-00-00-02"), port(2))
	pap := request(t, s(1, "alice"), s(2, "pw"))
	papMAC := request(t, s(1, "aabbccddeeff"), s(2, "wrong"), s(31, "aa-bb-cc-dd-ee-ff"), port(3))
	vlan := attr{packet.AttrTunnelPrivateGroupID, []byte("41")}
	accept := func(req packet.Packet, attrs ...attr) proxy.Result {
		return proxy.Result{Response: reply(packet.CodeAccessAccept, req, attrs...)}
	}
	rejectOf := func(req packet.Packet, attrs ...attr) proxy.Result {
		return proxy.Result{Response: reply(packet.CodeAccessReject, req, attrs...)}
	}
	type step struct {
		req packet.Packet
		res proxy.Result
	}
	tests := []struct {
		name      string
		steps     []step
		advance   time.Duration // between steps
		learned   []string      // method/mac/identity
		forgotten []string
	}{
		{"mab accept", []step{{mab, accept(mab, vlan)}}, 0, []string{"mab/aa:bb:cc:dd:ee:ff/aabbccddeeff"}, nil},
		{"eap-tls accept names the identity", []step{{eap, accept(eap, s(1, "Laptop.Example.com"), vlan)}}, 0,
			[]string{"eap-tls/02:00:00:00:00:02/Laptop.Example.com"}, nil},
		{"eap-tls accept without user-name", []step{{eap, accept(eap, vlan)}}, 0, nil, nil},
		{"eap-tls accept with anonymous user-name", []step{{eap, accept(eap, s(1, "anonymous@example.com"), vlan)}}, 0, nil, nil},
		{"pap accept", []step{{pap, accept(pap, vlan)}}, 0, nil, nil},
		{"challenge", []step{{eap, proxy.Result{Response: reply(packet.CodeAccessChallenge, eap)}}}, 0, nil, nil},
		{"mab reject", []step{{mab, rejectOf(mab)}}, 0, nil, []string{"mab:aa:bb:cc:dd:ee:ff"}},
		{"eap-tls reject without user-name", []step{{eap, rejectOf(eap)}}, 0, nil, nil},
		{"eap-tls reject naming the identity", []step{{eap, rejectOf(eap, s(1, "laptop.example.com"))}}, 0, nil, []string{"eap-tls:laptop.example.com"}},
		{"pap reject with a mac user-name", []step{{papMAC, rejectOf(papMAC)}}, 0, nil, nil},
		{"forgets rate-limited per port", []step{{mab, rejectOf(mab)}, {mab, rejectOf(mab)}, {eap, rejectOf(eap, s(1, "x"))}}, time.Second,
			nil, []string{"mab:aa:bb:cc:dd:ee:ff", "eap-tls:x"}},
		{"forgets again after the limit", []step{{mab, rejectOf(mab)}, {mab, rejectOf(mab)}}, ForgetEvery, nil,
			[]string{"mab:aa:bb:cc:dd:ee:ff", "mab:aa:bb:cc:dd:ee:ff"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeCache{}
			now := time.Unix(1_700_000_000, 0)
			l, err := NewLearner(LearnerOptions{Cache: f, Now: func() time.Time { return now }})
			if err != nil {
				t.Fatal(err)
			}
			for _, st := range tt.steps {
				l.Observe(&proxy.Request{Client: client, Packet: st.req}, st.res)
				now = now.Add(tt.advance)
			}
			var learned []string
			for _, r := range f.learned {
				learned = append(learned, r.Method.String()+"/"+r.MAC+"/"+r.Identity)
				if r.NAS != "sw1" || r.Site != "HQ" || VLAN(r.Attrs) != "41" {
					t.Errorf("record %+v", r)
				}
				for _, a := range r.Attrs {
					if a.Type == packet.AttrUserName {
						t.Errorf("User-Name stored for replay: %+v", r)
					}
				}
			}
			if !slices.Equal(learned, tt.learned) || !slices.Equal(f.forgotten, tt.forgotten) {
				t.Fatalf("learned %v forgotten %v; want %v, %v", learned, f.forgotten, tt.learned, tt.forgotten)
			}
		})
	}
}

func TestLearnerOptionsValidate(t *testing.T) {
	if _, err := NewLearner(LearnerOptions{}); err == nil {
		t.Fatal("a learner without a cache was accepted")
	}
}

// TestAppendAttrsEncoding: cached attributes are encoded exactly as RADIUS carries them.
func TestAppendAttrsEncoding(t *testing.T) {
	tests := []struct {
		name string
		attr cache.Attr
		want []byte // encoded attribute
	}{
		{"tunnel-type", cache.Attr{Type: packet.AttrTunnelType, Value: []byte{0, 0, 13}}, []byte{64, 6, 0, 0, 0, 13}},
		{"tunnel-type tagged", cache.Attr{Type: packet.AttrTunnelType, Tag: 1, Value: []byte{0, 0, 13}}, []byte{64, 6, 1, 0, 0, 13}},
		{"group-id", cache.Attr{Type: packet.AttrTunnelPrivateGroupID, Value: []byte("30")}, []byte{81, 4, '3', '0'}},
		{"group-id tagged", cache.Attr{Type: packet.AttrTunnelPrivateGroupID, Tag: 2, Value: []byte("30")}, []byte{81, 5, 2, '3', '0'}},
		{"vsa", cache.Attr{Type: packet.AttrVendorSpecific, Vendor: 9, VendorType: 1, Value: []byte("a=b")}, []byte{26, 11, 0, 0, 0, 9, 1, 5, 'a', '=', 'b'}},
		{"opaque vsa", cache.Attr{Type: packet.AttrVendorSpecific, Vendor: 9, Value: []byte{0xff}}, []byte{26, 7, 0, 0, 0, 9, 0xff}},
		{"filter-id", cache.Attr{Type: packet.AttrFilterID, Value: []byte("staff")}, []byte{11, 7, 's', 't', 'a', 'f', 'f'}},
	}
	for _, tt := range tests {
		b := packet.New(nil, packet.CodeAccessAccept, 1, nil)
		AppendAttrs(&b, []cache.Attr{tt.attr})
		p, err := b.Finish(secret, make([]byte, 16))
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if got := []byte(p[packet.HeaderLen:]); !bytes.Equal(got, tt.want) {
			t.Errorf("%s: % x, want % x", tt.name, got, tt.want)
		}
	}
	if v := VLAN(DefaultVLANAttrs("generic", "42")); v != "42" {
		t.Errorf("VLAN(triplet) = %q", v)
	}
}

func TestAuthorizerOptionsValidate(t *testing.T) {
	long := string(make([]byte, 254))
	for _, o := range []AuthorizerOptions{{DefaultMABVLAN: long}, {DefaultDot1XVLAN: long}} {
		if err := o.Validate(); err == nil {
			t.Errorf("%d-octet VLAN accepted", len(long))
		}
	}
	if err := (&AuthorizerOptions{DefaultMABVLAN: "guest", DefaultDot1XVLAN: "42"}).Validate(); err != nil {
		t.Error(err)
	}
	if _, err := NewAuthorizer(AuthorizerOptions{}); err == nil {
		t.Error("an authorizer without a cache was accepted")
	}
}

// TestLearnerEvents: one event per cloud decision (a challenge is none), learned or not, with the
// site from the request's client.
func TestLearnerEvents(t *testing.T) {
	client := &proxy.Client{Name: "sw1", Site: "HQ", Prefix: netip.MustParsePrefix("10.0.0.1/32"), Secret: proxy.Secret(secret)}
	reply := func(code packet.Code, req packet.Packet, attrs ...attr) packet.Packet {
		b := packet.NewResponse(nil, req, code)
		for _, a := range attrs {
			b.Add(a.t, a.v)
		}
		p, _ := b.Finish(secret, req.Authenticator())
		return p
	}
	mab := request(t, s(1, "aabbccddeeff"), s(2, "aabbccddeeff"), s(31, "aa-bb-cc-dd-ee-ff"))
	eap := request(t, s(1, "anonymous@example.com"), attr{79, []byte{2, 7, 0, 6, 13, 0}}, s(31, "02-00-00-00-00-02"))
	pap := request(t, s(1, "alice"), s(2, "pw"))
	vlan := attr{packet.AttrTunnelPrivateGroupID, []byte("41")}
	var evs []Event
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	l, err := NewLearner(LearnerOptions{Cache: &fakeCache{}, Events: func(ev Event) { evs = append(evs, ev) }, Now: func() time.Time { return t0 }})
	if err != nil {
		t.Fatal(err)
	}
	l.Observe(&proxy.Request{Client: client, Packet: mab}, proxy.Result{Response: reply(packet.CodeAccessAccept, mab, vlan), Upstream: "nac1"})
	l.Observe(&proxy.Request{Client: client, Packet: eap}, proxy.Result{Response: reply(packet.CodeAccessAccept, eap, s(1, "laptop.example.com"), vlan)})
	l.Observe(&proxy.Request{Client: client, Packet: pap}, proxy.Result{Response: reply(packet.CodeAccessAccept, pap, vlan)})
	l.Observe(&proxy.Request{Client: client, Packet: eap}, proxy.Result{Response: reply(packet.CodeAccessAccept, eap, vlan)})
	l.Observe(&proxy.Request{Client: client, Packet: eap}, proxy.Result{Response: reply(packet.CodeAccessChallenge, eap)})
	l.Observe(&proxy.Request{Client: client, Packet: mab}, proxy.Result{Response: reply(packet.CodeAccessReject, mab)})
	if len(evs) != 5 {
		t.Fatalf("%d events, want 5: %+v", len(evs), evs)
	}
	want := Event{Time: t0, Allowed: true, Method: "mab", MAC: "aa:bb:cc:dd:ee:ff", Identity: "aabbccddeeff", NAS: "sw1", Site: "HQ",
		VLAN: "41", Source: SourceUpstream, Upstream: "nac1"}
	if evs[0] != want {
		t.Errorf("MAB event %+v, want %+v", evs[0], want)
	}
	if evs[1].Method != "eap-tls" || evs[2].Method != "pap" || evs[3].Method != "eap-tls" || evs[4].Allowed || evs[4].VLAN != "" || evs[4].Method != "mab" {
		t.Errorf("events %+v", evs)
	}
}

// TestForgetPortTable: the per-port limit remembers at most maxForgetPorts ports; beyond that,
// removals wait until entries age out rather than let the table grow.
func TestForgetPortTable(t *testing.T) {
	f := &fakeCache{}
	now := time.Unix(1_700_000_000, 0)
	l, err := NewLearner(LearnerOptions{Cache: f, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	for i := range maxForgetPorts {
		if !l.forgetDue("sw1", Classification{NASPort: fmt.Sprint(i)}) {
			t.Fatalf("port %d refused", i)
		}
	}
	if l.forgetDue("sw1", Classification{NASPort: "new"}) {
		t.Fatal("a port beyond the table was allowed a removal")
	}
	now = now.Add(ForgetEvery)
	if !l.forgetDue("sw1", Classification{NASPort: "new"}) {
		t.Fatal("aged-out ports not pruned")
	}
	if len(l.forgot) != 1 {
		t.Fatalf("%d ports remembered after pruning, want 1", len(l.forgot))
	}
}
