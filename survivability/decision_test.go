package survivability

import (
	"bytes"
	"net/netip"
	"path/filepath"
	"reflect"
	"testing"

	"mxedge/cache"
	"mxedge/proxy"
	"mxedge/proxy/packet"
)

// openStore opens a client cache in a temporary directory.
func openStore(t testing.TB) *cache.Store {
	t.Helper()
	s, err := cache.Open(cache.Options{Path: filepath.Join(t.TempDir(), "cache.db"), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestDecisionOverLearnedCache: the cloud's decisions go through the Learner into a real cache, and
// the Authorizer then serves each record only to its method and proven identity; unverified
// Rejects erase nothing.
func TestDecisionOverLearnedCache(t *testing.T) {
	store := openStore(t)
	l, err := NewLearner(LearnerOptions{Cache: store})
	if err != nil {
		t.Fatal(err)
	}
	client := &proxy.Client{Name: "sw1", Vendor: "cisco", Prefix: netip.MustParsePrefix("10.0.0.1/32"), Secret: proxy.Secret(secret)}
	observe := func(req packet.Packet, code packet.Code, attrs ...attr) {
		t.Helper()
		b := packet.NewResponse(nil, req, code)
		for _, a := range attrs {
			b.Add(a.t, a.v)
		}
		resp, err := b.Finish(secret, req.Authenticator())
		if err != nil {
			t.Fatal(err)
		}
		l.Observe(&proxy.Request{Client: client, Packet: req}, proxy.Result{Response: resp})
		if err := store.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	vlan := func(v string) attr { return attr{packet.AttrTunnelPrivateGroupID, []byte(v)} }
	eapTLS := attr{packet.AttrEAPMessage, []byte{2, 9, 0, 6, 13, 0}}
	const laptopMAC, printerMAC = "02:00:00:00:00:99", "02:00:00:00:00:50"
	laptop := request(t, s(1, "laptop.lab.test"), eapTLS, s(31, "02-00-00-00-00-99"))
	printer := request(t, s(1, "020000000050"), s(2, "020000000050"), s(31, "02-00-00-00-00-50"))
	observe(laptop, packet.CodeAccessAccept, s(1, "laptop.lab.test"), vlan("300"))
	observe(printer, packet.CodeAccessAccept, vlan("400"))

	// Unverified Rejects before the cut: an attacker's EAP-TLS with the laptop's outer identity
	// (the cloud's Reject names nobody), a PAP login with the printer's MAC and a wrong password.
	observe(request(t, s(1, "laptop.lab.test"), eapTLS, s(31, "02-00-00-00-00-66")), packet.CodeAccessReject)
	observe(request(t, s(1, "020000000050"), s(2, "guess"), s(31, "02-00-00-00-00-50")), packet.CodeAccessReject)
	// An Accept without User-Name teaches nothing: the outer identity is the supplicant's choice.
	observe(request(t, s(1, "ceo.lab.test"), eapTLS, s(31, "02-00-00-00-00-77")), packet.CodeAccessAccept, vlan("999"))

	for _, failClosed := range []bool{false, true} {
		a, err := NewAuthorizer(AuthorizerOptions{Cache: store, DefaultMABVLAN: "41", DefaultDot1XVLAN: "51", FailClosed: failClosed})
		if err != nil {
			t.Fatal(err)
		}
		miss := func(def string) (bool, string, string) {
			if failClosed {
				return false, "", ReasonFailClosed
			}
			return true, def, ReasonDefaultVLAN
		}
		tests := []struct {
			name  string
			proof Proof
			want  func() (bool, string, string)
		}{
			{"laptop", Proof{Method: cache.MethodEAPTLS, MAC: laptopMAC, Identity: "Laptop.Lab.Test"}, func() (bool, string, string) { return true, "300", ReasonCacheHit }},
			{"laptop from another port", Proof{Method: cache.MethodEAPTLS, MAC: "02:00:00:00:00:01", Identity: "laptop.lab.test"}, func() (bool, string, string) { return true, "300", ReasonCacheHit }},
			{"printer", Proof{Method: cache.MethodMAB, MAC: printerMAC}, func() (bool, string, string) { return true, "400", ReasonCacheHit }},
			{"mab spoofing the laptop", Proof{Method: cache.MethodMAB, MAC: laptopMAC}, func() (bool, string, string) { return miss("41") }},
			{"other certificate on the laptop's mac", Proof{Method: cache.MethodEAPTLS, MAC: laptopMAC, Identity: "intruder.lab.test"}, func() (bool, string, string) { return miss("51") }},
			{"certificate named like the printer", Proof{Method: cache.MethodEAPTLS, MAC: printerMAC, Identity: "020000000050"}, func() (bool, string, string) { return miss("51") }},
			{"outer identity never learned", Proof{Method: cache.MethodEAPTLS, MAC: "02:00:00:00:00:77", Identity: "ceo.lab.test"}, func() (bool, string, string) { return miss("51") }},
			{"eap-tls without identity", Proof{Method: cache.MethodEAPTLS, MAC: laptopMAC}, func() (bool, string, string) { return false, "", ReasonFailClosed }},
			{"other method", Proof{Method: cache.MethodOther, MAC: printerMAC}, func() (bool, string, string) { return false, "", ReasonFailClosed }},
		}
		for _, tt := range tests {
			v := a.Authorize(tt.proof, "cisco", "")
			allowed, vl, reason := tt.want()
			if v.Allowed != allowed || v.VLAN != vl || v.Reason != reason {
				t.Errorf("failClosed=%v %s: %+v, want allowed=%v vlan=%q %s", failClosed, tt.name, v, allowed, vl, reason)
			}
			for _, at := range v.Attrs {
				if at.Vendor == 0 && at.Type == packet.AttrUserName {
					t.Errorf("%s: User-Name in the verdict", tt.name)
				}
			}
		}
	}

	// The cloud's authoritative Rejects do remove: a MAB Reject the printer's MAB record, an
	// EAP-TLS Reject naming the laptop its EAP-TLS record.
	observe(printer, packet.CodeAccessReject)
	observe(laptop, packet.CodeAccessReject, s(1, "LAPTOP.lab.test"))
	if _, ok, _ := store.LookupMAB(printerMAC); ok {
		t.Error("MAB Reject did not forget the printer")
	}
	if _, ok, _ := store.LookupEAPTLS("laptop.lab.test", laptopMAC); ok {
		t.Error("Reject naming the laptop did not forget it")
	}
}

// FuzzLocalDecision: classification never panics and calls MAB only what proved its MAC; what is
// learned from a reply is replayed byte for byte, and never a User-Name.
func FuzzLocalDecision(f *testing.F) {
	auth := bytes.Repeat([]byte{9}, 16)
	seed := func(code packet.Code, attrs ...attr) []byte {
		b := packet.New(nil, code, 1, auth)
		for _, a := range attrs {
			if a.t == packet.AttrUserPassword {
				b.Add(a.t, packet.EncryptUserPassword(nil, a.v, secret, auth))
				continue
			}
			b.Add(a.t, a.v)
		}
		p, _ := b.Finish(secret, nil)
		return p
	}
	mab := seed(packet.CodeAccessRequest, s(1, "aabbccddeeff"), s(2, "aabbccddeeff"), s(31, "AA-BB-CC-DD-EE-FF"))
	chap := seed(packet.CodeAccessRequest, s(1, "aabbccddeeff"), attr{packet.AttrCHAPPassword, chapResponse(1, "aabbccddeeff", auth)}, s(31, "aabb.ccdd.eeff"))
	eap := seed(packet.CodeAccessRequest, s(1, "anonymous"), attr{packet.AttrEAPMessage, []byte{2, 1, 0, 6, 13, 0}}, s(31, "02-00-00-00-00-01"))
	reply := seed(packet.CodeAccessAccept, s(1, "laptop"), attr{packet.AttrTunnelType, []byte{1, 0, 0, 13}},
		attr{packet.AttrTunnelPrivateGroupID, []byte("\x01300")}, attr{packet.AttrVendorSpecific, []byte{0, 0, 0, 9, 1, 5, 'a', '=', 'b'}},
		attr{packet.AttrVendorSpecific, []byte{0, 0, 0x39, 0xe7, 1, 5, 'r', 'o', 'l'}}, s(packet.AttrFilterID, "corp"), s(packet.AttrClass, "c"))
	f.Add(mab, reply)
	f.Add(chap, reply)
	f.Add(eap, reply)
	f.Fuzz(func(t *testing.T, reqRaw, replyRaw []byte) {
		if req, err := packet.Parse(reqRaw); err == nil {
			c := Classify(req, secret)
			if c.Method == MethodMAB {
				if m, err := cache.NormalizeMAC(c.UserName); err != nil || m != c.MAC || c.MAC == "" {
					t.Fatalf("MAB without User-Name = Calling-Station-Id: %+v", c)
				}
			}
		}
		rep, err := packet.Parse(replyRaw)
		if err != nil {
			return
		}
		learned := ReplyAttrs(rep)
		for _, a := range learned {
			if !Replayable(a) || a.Vendor == 0 && a.Type == packet.AttrUserName {
				t.Fatalf("learned a non-replayable attribute %+v", a)
			}
		}
		b := packet.New(nil, packet.CodeAccessAccept, 1, nil)
		AppendAttrs(&b, learned)
		q, err := b.Finish(secret, auth)
		if err != nil {
			return // more than one packet holds once VSAs are split per sub-attribute
		}
		if relearned := ReplyAttrs(q); !reflect.DeepEqual(relearned, learned) && len(learned) > 0 {
			t.Fatalf("replayed attributes differ\nlearned  %+v\nreplayed %+v", learned, relearned)
		}
		// Standard attributes come back byte for byte, in order.
		var want, got [][]byte
		collect := func(p packet.Packet, out *[][]byte, all bool) {
			for it := p.Attrs(); ; {
				off := it.Offset()
				typ, v, ok := it.Next()
				if !ok {
					return
				}
				if typ == packet.AttrVendorSpecific || typ == packet.AttrMessageAuthenticator {
					continue
				}
				if all || Replayable(cache.Attr{Type: typ}) {
					*out = append(*out, p[off:off+2+len(v)])
				}
			}
		}
		collect(rep, &want, false)
		collect(q, &got, true)
		if len(want) != len(got) {
			t.Fatalf("replayed %d standard attributes, learned %d", len(got), len(want))
		}
		for i := range want {
			if !bytes.Equal(want[i], got[i]) {
				t.Fatalf("attribute %d replayed as %x, learned from %x", i, got[i], want[i])
			}
		}
	})
}
