package survivability

import (
	"bytes"
	"context"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"mxedge/cache"
	"mxedge/proxy"
	"mxedge/proxy/packet"
)

func TestHealthTransitions(t *testing.T) {
	var changes []string
	h := NewHealth(HealthOptions{FailbackProbes: 3, OnChange: func(from, to Mode, _ string) {
		changes = append(changes, from.String()+">"+to.String())
	}})
	h.UpstreamUp("a")
	h.UpstreamUp("b")
	h.TimedOut()
	h.Answered()
	h.UpstreamDown("a", "dead")
	if h.Local() {
		t.Fatal("one upstream left: still proxying")
	}
	h.UpstreamDown("b", "dead")
	if !h.Local() || h.Mode() != ModeDown {
		t.Fatal("all upstreams down: not local")
	}
	h.UpstreamUp("b") // first outage: the proven connection fails back at once
	if h.Mode() != ModeUp {
		t.Fatalf("after the first outage: %v", h.Mode())
	}
	h.UpstreamDown("b", "flap") // a second outage within the flap window: hold-down
	h.UpstreamUp("b")
	h.Probe("b", true)
	h.Probe("b", false) // a bad probe restarts the count
	h.Probe("b", true)
	h.Probe("b", true)
	if h.Mode() != ModeRecovering {
		t.Fatalf("failback before 3 consecutive probes: %v", h.Mode())
	}
	h.UpstreamDown("b", "flap") // a flap during recovery goes back down
	h.UpstreamUp("b")
	for range 3 {
		h.Probe("b", true)
	}
	if h.Mode() != ModeRecovering {
		t.Fatalf("hold-down did not grow after a further flap: %v", h.Mode())
	}
	for range 3 {
		h.Probe("b", true)
	}
	if h.Mode() != ModeUp {
		t.Fatalf("after 6 probes: %v", h.Mode())
	}
	want := "up>suspect suspect>up up>down down>up up>down down>recovering recovering>down down>recovering recovering>up"
	if got := strings.Join(changes, " "); got != want {
		t.Fatalf("transitions\n got %s\nwant %s", got, want)
	}
	if h.Transitions(ModeDown) != 3 {
		t.Fatal("transition counter")
	}
}

// memCache is a deliberately careless cache: it returns the first record whose MAC or identity
// matches, whatever its method, so the tests see that the Authorizer checks for itself.
type memCache []cache.Record

func (m memCache) LookupMAB(mac string) (cache.Record, bool, error) {
	for _, r := range m {
		if r.MAC == mac {
			return r, true, nil
		}
	}
	return cache.Record{}, false, nil
}

func (m memCache) LookupEAPTLS(identity, mac string) (cache.Record, bool, error) {
	for _, r := range m {
		if r.MAC == mac || strings.EqualFold(r.Identity, identity) {
			return r, true, nil
		}
	}
	return cache.Record{}, false, nil
}

type memSpool struct{ n int }

func (s *memSpool) Admit(*proxy.Request)                                {}
func (s *memSpool) Account(*proxy.Request) (packet.Packet, bool, error) { s.n++; return nil, true, nil }

func TestEngineDecisions(t *testing.T) {
	// An imported record may carry User-Name: it is never replayed.
	known := cache.Record{MAC: "aa:bb:cc:dd:ee:ff", Identity: "aabbccddeeff", Method: cache.MethodMAB,
		Attrs: append(DefaultVLANAttrs("generic", "300"), cache.Attr{Type: packet.AttrUserName, Value: []byte("printer")})}
	laptop := cache.Record{MAC: "02:00:00:00:00:99", Identity: "laptop.lab.test", Method: cache.MethodEAPTLS, Attrs: DefaultVLANAttrs("generic", "301")}
	var events []Event
	newEngine := func(failClosed bool, spool AccountingSpool) *Engine {
		a, err := NewAuthorizer(AuthorizerOptions{Cache: memCache{laptop, known}, DefaultMABVLAN: "41", FailClosed: failClosed})
		if err != nil {
			t.Fatal(err)
		}
		e, err := NewEngine(EngineOptions{Health: NewHealth(HealthOptions{}), Authorizer: a,
			Accounting: spool, Events: func(ev Event) { events = append(events, ev) }})
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	client := &proxy.Client{Name: "sw1", Vendor: "aruba", Prefix: netip.MustParsePrefix("10.0.0.1/32"), Secret: proxy.Secret(secret)}
	serve := func(e *Engine, p packet.Packet) packet.Packet {
		t.Helper()
		resp, err := e.Serve(context.Background(), &proxy.Request{Client: client, Packet: p}, proxy.ErrNoUpstream)
		if err != nil {
			t.Fatal(err)
		}
		if resp != nil && (!packet.CheckResponseAuthenticator(resp, p.Authenticator(), secret) || resp[20] != packet.AttrMessageAuthenticator) {
			t.Fatal("local answer not signed for the NAS")
		}
		return resp
	}
	open := newEngine(false, nil)
	hit := serve(open, request(t, s(1, "aabbccddeeff"), s(2, "aabbccddeeff"), s(31, "AA-BB-CC-DD-EE-FF")))
	if v, _ := hit.Attr(packet.AttrTunnelPrivateGroupID); hit.Code() != packet.CodeAccessAccept || string(v) != "300" {
		t.Fatalf("cache hit: %v %q", hit.Code(), v)
	}
	if hit.Has(packet.AttrUserName) {
		t.Fatal("cache hit replayed User-Name")
	}
	// MAB from the laptop's MAC: its EAP-TLS record is not a MAB record.
	spoof := serve(open, request(t, s(1, "020000000099"), s(2, "020000000099"), s(31, "02-00-00-00-00-99")))
	if v, _ := spoof.Attr(packet.AttrTunnelPrivateGroupID); spoof.Code() != packet.CodeAccessAccept || string(v) != "41" || spoof.Has(packet.AttrUserName) {
		t.Fatalf("MAB from an EAP-TLS client's MAC: %v %q", spoof.Code(), v)
	}
	// MAB without credentials from the printer's MAC is a password login, refused.
	bare := serve(open, request(t, s(1, "aabbccddeeff"), s(31, "AA-BB-CC-DD-EE-FF")))
	if bare.Code() != packet.CodeAccessReject || bare.Has(packet.AttrTunnelPrivateGroupID) || bare.Has(packet.AttrUserName) {
		t.Fatalf("MAB without a password: %v", bare.Code())
	}
	miss := serve(open, request(t, s(1, "020000000009"), s(2, "020000000009"), s(31, "02-00-00-00-00-09")))
	if v, _ := miss.Attr(packet.AttrTunnelPrivateGroupID); miss.Code() != packet.CodeAccessAccept || string(v) != "41" {
		t.Fatalf("cache miss: %v %q", miss.Code(), v)
	}
	if v, ok := miss.Attr(packet.AttrVendorSpecific); !ok || len(v) != 4+2+4 {
		t.Fatalf("aruba NAS: Aruba-User-Vlan missing (%x)", v)
	}
	closed := serve(newEngine(true, nil), request(t, s(1, "020000000009"), s(2, "020000000009"), s(31, "02-00-00-00-00-09")))
	if closed.Code() != packet.CodeAccessReject {
		t.Fatalf("fail-closed miss: %v", closed.Code())
	}
	pap := serve(open, request(t, s(1, "alice"), s(2, "password")))
	if m, _ := pap.Attr(packet.AttrReplyMessage); pap.Code() != packet.CodeAccessReject || string(m) != ReplyUnsupported {
		t.Fatalf("PAP: %v %q", pap.Code(), m)
	}
	peap := serve(open, request(t, s(1, "bob"), attr{79, []byte{2, 1, 0, 6, 25, 0}}))
	if peap.Code() != packet.CodeAccessReject {
		t.Fatal("EAP without a local EAP handler must be rejected")
	}

	ab := packet.New(nil, packet.CodeAccountingRequest, 5, nil)
	ab.AddUint32(packet.AttrAcctStatusType, 1)
	acct, _ := ab.Finish(secret, nil)
	if serve(open, acct) != nil {
		t.Fatal("accounting acknowledged without a spool")
	}
	sp := &memSpool{}
	if r := serve(newEngine(false, sp), acct); r == nil || r.Code() != packet.CodeAccountingResponse || sp.n != 1 {
		t.Fatal("spooled accounting not acknowledged")
	}

	reasons := []string{}
	for _, ev := range events {
		reasons = append(reasons, ev.Reason)
	}
	want := "cache-hit default-vlan unsupported-method default-vlan failmode-closed unsupported-method local-eap-unavailable no-spool spooled"
	if got := strings.Join(reasons, " "); got != want {
		t.Fatalf("events\n got %s\nwant %s", got, want)
	}
	if events[3].VLAN != "41" || !events[3].Allowed || events[3].NAS != "sw1" || events[3].MAC != "02:00:00:00:00:09" {
		t.Fatalf("event %+v", events[3])
	}
	// Every local access decision is the guide's Allowed or Denied; accounting has no type.
	types := []string{}
	for _, ev := range events {
		types = append(types, ev.Type)
	}
	wantTypes := []string{TypeAccessAllowed, TypeAccessAllowed, TypeAccessDenied, TypeAccessAllowed, TypeAccessDenied,
		TypeAccessDenied, TypeAccessDenied, "", ""}
	if !slices.Equal(types, wantTypes) {
		t.Fatalf("event types\n got %q\nwant %q", types, wantTypes)
	}
	_ = time.Second
}

func TestDefaultVLANAttrs(t *testing.T) {
	tests := []struct {
		vendor, vlan string
		n            int
	}{
		{"generic", "41", 3}, {"cisco", "employee", 3}, {"aruba", "41", 4}, {"aruba", "employee", 4},
		{"juniper", "employee", 4}, {"juniper", "41", 3}, {"generic", "", 0},
	}
	for _, tt := range tests {
		if got := DefaultVLANAttrs(tt.vendor, tt.vlan); len(got) != tt.n {
			t.Errorf("%s/%q: %d attributes, want %d", tt.vendor, tt.vlan, len(got), tt.n)
		}
	}
}

// TestAnswersSignedWithKeySchedule: a NAS from the server's ClientTable gets its local answers
// signed with its secret's key schedule (proxy.Client.MAKey), octet for octet the answers its
// secret alone signs (RFC 3579 §3.2), Access-Accept and Access-Reject alike.
func TestAnswersSignedWithKeySchedule(t *testing.T) {
	a, err := NewAuthorizer(AuthorizerOptions{Cache: memCache{}, DefaultMABVLAN: "41"})
	if err != nil {
		t.Fatal(err)
	}
	e, err := NewEngine(EngineOptions{Health: NewHealth(HealthOptions{}), Authorizer: a})
	if err != nil {
		t.Fatal(err)
	}
	keyed := benchClient(t, secret)
	if keyed.MAKey() == nil {
		t.Fatal("a ClientTable client without a key schedule")
	}
	bare := proxy.Client{Name: keyed.Name, Vendor: keyed.Vendor, Prefix: keyed.Prefix, Secret: keyed.Secret}
	for _, tc := range []struct {
		name string
		req  packet.Packet
		code packet.Code
	}{
		{"accept", request(t, s(1, "020000000009"), s(2, "020000000009"), s(31, "02-00-00-00-00-09")), packet.CodeAccessAccept},
		{"reject", request(t, s(1, "alice"), s(2, "password")), packet.CodeAccessReject},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var answers []packet.Packet
			for _, c := range []*proxy.Client{keyed, &bare} {
				resp, err := e.Serve(context.Background(), &proxy.Request{Client: c, Packet: tc.req}, proxy.ErrNoUpstream)
				if err != nil || resp.Code() != tc.code {
					t.Fatalf("%v %v", resp, err)
				}
				if packet.CheckResponseMA(resp, tc.req.Authenticator(), secret) != packet.MAValid ||
					!packet.CheckResponseAuthenticator(resp, tc.req.Authenticator(), secret) {
					t.Fatal("answer not signed for the NAS")
				}
				answers = append(answers, resp)
			}
			if !bytes.Equal(answers[0], answers[1]) {
				t.Fatalf("signed with the key schedule\n%x\nwith the secret\n%x", answers[0], answers[1])
			}
		})
	}
}
