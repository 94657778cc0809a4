package localeap

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"mxedge/cache"
	"mxedge/pki"
	"mxedge/proxy"
	"mxedge/proxy/packet"
	"mxedge/survivability"
	"mxedge/survivability/eaptls"
)

const testMAC = "02-00-00-00-00-01"

func TestAuthenticateInProcess(t *testing.T) {
	l := testLab(t)
	h, evs := newHandler(t, l.options(t))
	tests := []struct {
		client   string
		version  uint16
		identity string
	}{
		{cliECDSA, tls.VersionTLS12, "alice"},
		{cliECDSA, tls.VersionTLS13, "alice"},
		{cliRSA, tls.VersionTLS12, "bob"},
		{cliRSA, tls.VersionTLS13, "bob"},
		{cliChain, tls.VersionTLS13, "carol"},
	}
	for _, tt := range tests {
		t.Run(tt.client+"/"+tls.VersionName(tt.version), func(t *testing.T) {
			cfg := l.clientConfig(tt.client)
			cfg.MinVersion, cfg.MaxVersion = tt.version, tt.version
			cfg.FragmentSize = 200
			req, resp, res := authenticate(t, h, cfg, testMAC)
			if resp.Code() != packet.CodeAccessAccept {
				t.Fatalf("got %v, events %+v", resp.Code(), evs.all())
			}
			if res == nil || res.Version != tt.version {
				t.Fatalf("supplicant result %+v", res)
			}
			recv, send, salts := mppeKeys(t, req, resp)
			wantRecv, wantSend := eaptls.MPPEKeys(res.MSK)
			if !bytes.Equal(recv, wantRecv) || !bytes.Equal(send, wantSend) {
				t.Error("MS-MPPE keys do not match the supplicant's MSK")
			}
			if len(salts) != 2 || bytes.Equal(salts[0], salts[1]) || salts[0][0]&0x80 == 0 || salts[1][0]&0x80 == 0 {
				t.Errorf("salts %x: want two distinct with the high bit set", salts)
			}
			if u, _ := resp.Attr(packet.AttrUserName); string(u) != tt.identity {
				t.Errorf("User-Name %q, want %q", u, tt.identity)
			}
			if got, _ := resp.Attr(packet.AttrTunnelPrivateGroupID); string(got) != "100" {
				t.Errorf("VLAN %q, want the default 100", got)
			}
			if eap, _ := replyEAP(t, req, resp); !bytes.Equal(eap[:1], []byte{3}) {
				t.Errorf("EAP %x, want EAP-Success", eap)
			}
			ev := evs.wait(t, time.Second)
			want := Event{Time: ev.Time, Allowed: true, Method: MethodEAPTLS, MAC: "02:00:00:00:00:01", Identity: tt.identity, NAS: "nas1",
				VLAN: "100", Reason: ReasonDefaultVLAN, Source: survivability.SourceLocal}
			if ev != want {
				t.Errorf("event %+v, want %+v", ev, want)
			}
		})
	}
	if st := h.Stats(); st.Conversations != 0 || st.Accepted != uint64(len(tests)) {
		t.Errorf("stats %+v", st)
	}
}

func TestCertificateRejected(t *testing.T) {
	l := testLab(t)
	h, evs := newHandler(t, l.options(t))
	tests := []struct{ client, reason string }{
		{cliExpired, pki.ReasonExpired},
		{cliOther, pki.ReasonUnknownCA},
		{cliRevoked, pki.ReasonRevoked},
		{cliEKU, pki.ReasonWrongEKU},
	}
	for _, tt := range tests {
		t.Run(tt.client, func(t *testing.T) {
			req, resp, _ := authenticate(t, h, l.clientConfig(tt.client), testMAC)
			if resp.Code() != packet.CodeAccessReject {
				t.Fatalf("got %v", resp.Code())
			}
			if eap, _ := replyEAP(t, req, resp); len(eap) != 4 || eap[0] != 4 {
				t.Errorf("EAP %x, want EAP-Failure", eap)
			}
			if m, _ := resp.Attr(packet.AttrReplyMessage); len(m) == 0 {
				t.Error("no Reply-Message")
			}
			ev := evs.wait(t, time.Second)
			if ev.Allowed || ev.Reason != tt.reason || ev.Identity != l.clients[tt.client].issued.Cert.Subject.CommonName {
				t.Errorf("event %+v, want reason %s", ev, tt.reason)
			}
		})
	}
}

func TestCacheDecision(t *testing.T) {
	l := testLab(t)
	// alice's laptop is cached on testMAC; the RSA client's certificate names someone else.
	cached := cache.Record{MAC: testMAC, Identity: "ALICE", Method: cache.MethodEAPTLS, Attrs: []cache.Attr{
		{Type: packet.AttrTunnelType, Value: []byte{0, 0, 13}},
		{Type: packet.AttrTunnelMediumType, Value: []byte{0, 0, 6}},
		{Type: packet.AttrTunnelPrivateGroupID, Value: []byte("300")},
		{Type: packet.AttrUserName, Value: []byte("stale-name")},
		{Type: packet.AttrFilterID, Value: []byte("staff")},
	}}
	// A MAB record of the same MAC is no authorization for a certificate.
	mab := cache.Record{MAC: testMAC, Identity: "020000000001", Method: cache.MethodMAB, Attrs: survivability.DefaultVLANAttrs("generic", "500")}
	tests := []struct {
		name     string
		client   string
		mac      string
		failShut bool
		code     packet.Code
		reason   string
		vlan     string
		filter   string
	}{
		{"hit", cliECDSA, testMAC, false, packet.CodeAccessAccept, ReasonCacheHit, "300", "staff"},
		{"hit-fail-closed", cliECDSA, testMAC, true, packet.CodeAccessAccept, ReasonCacheHit, "300", "staff"},
		{"hit-other-mac", cliECDSA, "02:00:00:00:00:02", false, packet.CodeAccessAccept, ReasonCacheHit, "300", "staff"},
		{"other-certificate-same-mac", cliRSA, testMAC, false, packet.CodeAccessAccept, ReasonDefaultVLAN, "100", ""},
		{"other-certificate-fail-closed", cliRSA, testMAC, true, packet.CodeAccessReject, ReasonFailClosed, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := l.options(t)
			o.Authorizer = authorizer(t, records{mab, cached}, tt.failShut)
			h, evs := newHandler(t, o)
			_, resp, _ := authenticate(t, h, l.clientConfig(tt.client), tt.mac)
			if resp.Code() != tt.code {
				t.Fatalf("got %v, want %v", resp.Code(), tt.code)
			}
			ev := evs.wait(t, time.Second)
			if ev.Reason != tt.reason || ev.VLAN != tt.vlan || ev.Allowed != (tt.code == packet.CodeAccessAccept) {
				t.Errorf("event %+v, want reason %s vlan %q", ev, tt.reason, tt.vlan)
			}
			if tt.code != packet.CodeAccessAccept {
				if resp.Has(packet.AttrUserName) || resp.Has(packet.AttrVendorSpecific) {
					t.Error("reject carries User-Name or keys")
				}
				return
			}
			if got, _ := resp.Attr(packet.AttrTunnelPrivateGroupID); string(got) != tt.vlan {
				t.Errorf("VLAN %q, want %q", got, tt.vlan)
			}
			if f, _ := resp.Attr(packet.AttrFilterID); string(f) != tt.filter {
				t.Errorf("Filter-Id %q, want %q", f, tt.filter)
			}
			var names []string
			for it := resp.Attrs(); ; {
				typ, v, ok := it.Next()
				if !ok {
					break
				}
				if typ == packet.AttrUserName {
					names = append(names, string(v))
				}
			}
			if !slices.Equal(names, []string{ev.Identity}) {
				t.Errorf("User-Name %q, want only the certificate identity %q", names, ev.Identity)
			}
		})
	}
}

// identityResponse is an EAP-Response/Identity.
func identityResponse(id uint8, name string) []byte {
	b, _ := eaptls.Packet{Code: eaptls.CodeResponse, Identifier: id, Type: eaptls.TypeIdentity, Data: []byte(name)}.Marshal()
	return b
}

// startConversation sends an EAP-Response/Identity and returns the EAP-TLS Start and State.
func startConversation(t testing.TB, h *Handler) (start, state []byte) {
	t.Helper()
	return startConversationFrom(t, h, testMAC)
}

// stationMAC is the MAC of the i-th test station.
func stationMAC(i int) string { return fmt.Sprintf("02:00:00:00:%02x:%02x", i>>8&0xff, i&0xff) }

// startConversationFrom starts a conversation for the station with MAC mac.
func startConversationFrom(t testing.TB, h *Handler, mac string) (start, state []byte) {
	t.Helper()
	req := accessRequest(t, 1, identityResponse(7, "anonymous"), nil, mac, true)
	resp := h.Serve(req)
	if resp == nil || resp.Code() != packet.CodeAccessChallenge {
		t.Fatalf("start: %v", resp)
	}
	start, state = replyEAP(t, req, resp)
	if len(state) < 16 {
		t.Fatalf("State of %d bytes, want ≥ 16", len(state))
	}
	return start, state
}

func TestNak(t *testing.T) {
	l := testLab(t)
	h, evs := newHandler(t, l.options(t))
	start, state := startConversation(t, h)
	for _, nak := range [][]byte{
		{2, start[1], 0, 6, 3, 25}, // legacy Nak asking for PEAP
		{2, start[1], 0, 6, 3, 0},  // Nak with no alternative
		{2, start[1], 0, 5, 254},   // expanded Nak (truncated: still a refusal)
	} {
		if state == nil {
			start, state = startConversation(t, h)
			nak[1] = start[1]
		}
		req := accessRequest(t, 2, nak, state, testMAC, true)
		resp := h.Serve(req)
		if resp == nil || resp.Code() != packet.CodeAccessReject {
			t.Fatalf("nak %x: %v", nak, resp)
		}
		if m, _ := resp.Attr(packet.AttrReplyMessage); string(m) != nakReplyMessage {
			t.Errorf("Reply-Message %q", m)
		}
		if eap, _ := replyEAP(t, req, resp); !bytes.Equal(eap, []byte{4, start[1], 0, 4}) {
			t.Errorf("EAP %x, want EAP-Failure with the Nak's identifier", eap)
		}
		if ev := evs.wait(t, time.Second); ev.Reason != ReasonNak || ev.Identity != "anonymous" {
			t.Errorf("event %+v", ev)
		}
		state = nil
	}
}

func TestMessageAuthenticatorRequired(t *testing.T) {
	l := testLab(t)
	h, evs := newHandler(t, l.options(t))
	if resp := h.Serve(accessRequest(t, 1, identityResponse(1, "x"), nil, testMAC, false)); resp != nil {
		t.Errorf("request without Message-Authenticator answered: code %v", resp.Code())
	}
	req := accessRequest(t, 1, identityResponse(1, "x"), nil, testMAC, true)
	req.Packet[len(req.Packet)-1] ^= 1 // corrupt the MA
	if resp := h.Serve(req); resp != nil {
		t.Errorf("request with a bad Message-Authenticator answered: code %v", resp.Code())
	}
	if st := h.Stats(); st.Discarded != 2 || st.Started != 0 {
		t.Errorf("stats %+v", st)
	}
	if len(evs.all()) != 0 {
		t.Errorf("events for discarded requests: %+v", evs.all())
	}
}

func TestUnknownAndReplayedState(t *testing.T) {
	l := testLab(t)
	h, evs := newHandler(t, l.options(t))
	// A State we never issued.
	req := accessRequest(t, 1, []byte{2, 9, 0, 6, 13, 0}, bytes.Repeat([]byte{1}, 16), testMAC, true)
	resp := h.Serve(req)
	if resp == nil || resp.Code() != packet.CodeAccessReject {
		t.Fatalf("unknown State: %v", resp)
	}
	if eap, _ := replyEAP(t, req, resp); !bytes.Equal(eap, []byte{4, 9, 0, 4}) {
		t.Errorf("EAP %x", eap)
	}
	if ev := evs.wait(t, time.Second); ev.Reason != ReasonUnknownState {
		t.Errorf("event %+v", ev)
	}
	// A live State presented by another NAS.
	start, state := startConversation(t, h)
	req = accessRequest(t, 2, []byte{2, start[1], 0, 6, 13, 0}, state, testMAC, true)
	req.Client.Name = "nas2"
	if resp := h.Serve(req); resp == nil || resp.Code() != packet.CodeAccessReject {
		t.Fatalf("State from another NAS: %v", resp)
	}
	if ev := evs.wait(t, time.Second); ev.Reason != ReasonUnknownState || ev.NAS != "nas2" {
		t.Errorf("event %+v", ev)
	}
	// The State of a finished conversation, replayed.
	nak := []byte{2, start[1], 0, 6, 3, 25}
	h.Serve(accessRequest(t, 2, nak, state, testMAC, true))
	evs.wait(t, time.Second)
	resp = h.Serve(accessRequest(t, 3, nak, state, testMAC, true))
	if resp == nil || resp.Code() != packet.CodeAccessReject {
		t.Fatalf("replayed State: %v", resp)
	}
	if ev := evs.wait(t, time.Second); ev.Reason != ReasonUnknownState {
		t.Errorf("event %+v", ev)
	}
	if st := h.Stats(); st.UnknownState != 3 {
		t.Errorf("stats %+v", st)
	}
}

func TestMalformed(t *testing.T) {
	l := testLab(t)
	tests := []struct {
		name   string
		eap    []byte
		state  bool // send the State of a started conversation
		reason string
	}{
		{"short", []byte{2, 1}, false, ReasonMalformed},
		{"bad length", []byte{2, 1, 0, 200, 1, 'x'}, false, ReasonMalformed},
		{"tls without state", []byte{2, 1, 0, 6, 13, 0}, false, ReasonMalformed},
		{"request code", []byte{1, 1, 0, 5, 1}, false, ReasonMalformed},
		{"success code", []byte{3, 1, 0, 4}, false, ReasonMalformed},
		{"tls garbage", nil, true, ReasonTLS},
		{"fragment overflow", nil, true, ReasonMalformed},
		{"wrong identifier", nil, true, ReasonMalformed},
		{"other type", nil, true, ReasonMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, evs := newHandler(t, l.options(t))
			eap, state := tt.eap, []byte(nil)
			if tt.state {
				var start []byte
				start, state = startConversation(t, h)
				id := start[1]
				switch tt.name {
				case "tls garbage":
					eap = append([]byte{2, id, 0, 0, 13, 0}, bytes.Repeat([]byte{0x16, 3, 3, 0, 1, 0xff}, 4)...)
				case "fragment overflow": // L says 10 octets, 20 follow
					eap = append([]byte{2, id, 0, 0, 13, 0x80, 0, 0, 0, 10}, make([]byte, 20)...)
				case "wrong identifier":
					eap = []byte{2, id + 5, 0, 6, 13, 0}
				case "other type":
					eap = []byte{2, id, 0, 6, 4, 0}
				}
				eap[2], eap[3] = byte(len(eap)>>8), byte(len(eap))
			}
			req := accessRequest(t, 2, eap, state, testMAC, true)
			resp := h.Serve(req)
			if resp == nil || resp.Code() != packet.CodeAccessReject {
				t.Fatalf("got %v", resp)
			}
			if got, _ := replyEAP(t, req, resp); len(got) != 4 || got[0] != 4 {
				t.Errorf("EAP %x, want EAP-Failure", got)
			}
			if ev := evs.wait(t, time.Second); ev.Reason != tt.reason || ev.Allowed {
				t.Errorf("event %+v, want %s", ev, tt.reason)
			}
			if st := h.Stats(); st.Conversations != 0 {
				t.Errorf("conversation left behind: %+v", st)
			}
		})
	}
	t.Run("no eap", func(t *testing.T) {
		h, evs := newHandler(t, l.options(t))
		resp := h.Serve(accessRequest(t, 2, nil, nil, testMAC, true))
		if resp == nil || resp.Code() != packet.CodeAccessReject || resp.Has(packet.AttrEAPMessage) {
			t.Fatalf("got %v", resp)
		}
		if ev := evs.wait(t, time.Second); ev.Reason != ReasonMalformed {
			t.Errorf("event %+v", ev)
		}
	})
}

func TestEAPRetransmission(t *testing.T) {
	l := testLab(t)
	h, evs := newHandler(t, l.options(t))
	c := eaptls.NewClient(l.clientConfig(cliECDSA))
	defer c.Close()
	start, state := startConversation(t, h)
	hello, _, err := c.Step(start)
	if err != nil {
		t.Fatal(err)
	}
	req := accessRequest(t, 2, hello, state, testMAC, true)
	first, _ := replyEAP(t, req, h.Serve(req))
	// The NAS retransmitted its EAP-Request, the supplicant answered again, and the NAS sent
	// that in a new Access-Request: the same EAP-Request comes back.
	req = accessRequest(t, 3, hello, state, testMAC, true)
	again, _ := replyEAP(t, req, h.Serve(req))
	if !bytes.Equal(first, again) {
		t.Error("EAP retransmission not answered with the same request")
	}
	eap := first
	for i := 4; ; i++ {
		next, done, err := c.Step(eap)
		if done {
			if err != nil {
				t.Fatalf("supplicant: %v", err)
			}
			break
		}
		req := accessRequest(t, uint8(i), next, state, testMAC, true)
		resp := h.Serve(req)
		eap, _ = replyEAP(t, req, resp)
	}
	if ev := evs.wait(t, time.Second); !ev.Allowed {
		t.Errorf("event %+v", ev)
	}
}

func TestTooManyConversations(t *testing.T) {
	l := testLab(t)
	o := l.options(t)
	o.MaxConversations = 3
	h, evs := newHandler(t, o)
	// Three conversations past their first step hold every slot.
	for i := range 3 {
		start, state := startConversationFrom(t, h, stationMAC(i))
		c := eaptls.NewClient(l.clientConfig(cliECDSA))
		t.Cleanup(c.Close)
		hello, _, _ := c.Step(start)
		h.Serve(accessRequest(t, 2, hello, state, stationMAC(i), true))
	}
	req := accessRequest(t, 9, identityResponse(1, "x"), nil, stationMAC(9), true)
	resp := h.Serve(req)
	if resp == nil || resp.Code() != packet.CodeAccessReject {
		t.Fatalf("got %v", resp)
	}
	if ev := evs.wait(t, time.Second); ev.Reason != ReasonTooMany {
		t.Errorf("event %+v", ev)
	}
	if st := h.Stats(); st.Overflow != 1 || st.Conversations != 3 {
		t.Errorf("stats %+v", st)
	}
}

// fakeClock is an injectable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestConversationTimeout(t *testing.T) {
	l := testLab(t)
	clock := &fakeClock{t: time.Now()}
	o := l.options(t)
	o.Now, o.MaxConversations, o.ConversationTimeout = clock.now, 2, time.Minute
	h, evs := newHandler(t, o)
	// In the middle of the handshake (a goroutine per conversation in crypto/tls), then abandoned.
	c := eaptls.NewClient(l.clientConfig(cliECDSA))
	start, state := startConversation(t, h)
	hello, _, _ := c.Step(start)
	req := accessRequest(t, 2, hello, state, testMAC, true)
	replyEAP(t, req, h.Serve(req))
	c.Close()

	// The next packet after the deadline is refused as timed out.
	start2, state2 := startConversationFrom(t, h, stationMAC(2))
	clock.add(2 * time.Minute)
	resp := h.Serve(accessRequest(t, 3, []byte{2, start2[1], 0, 6, 13, 0}, state2, stationMAC(2), true))
	if resp == nil || resp.Code() != packet.CodeAccessReject {
		t.Fatalf("late packet: %v", resp)
	}
	// Run's sweep ends the other one by itself, before or after the late packet.
	macs := map[string]bool{}
	for range 2 {
		ev := evs.wait(t, 3*time.Second)
		if ev.Reason != ReasonTimeout {
			t.Errorf("event %+v", ev)
		}
		macs[ev.MAC] = true
	}
	if !macs["02:00:00:00:00:01"] || !macs[stationMAC(2)] {
		t.Errorf("timeout events for %v", macs)
	}
	if st := h.Stats(); st.Conversations != 0 || st.Expired != 2 {
		t.Errorf("stats %+v", st)
	}
	// A full table is swept on admission too: fill it, expire, start again.
	startConversationFrom(t, h, stationMAC(3))
	startConversationFrom(t, h, stationMAC(4))
	clock.add(2 * time.Minute)
	startConversationFrom(t, h, stationMAC(5))
	if st := h.Stats(); st.Overflow != 0 || st.Conversations != 1 {
		t.Errorf("stats %+v", st)
	}
}

// TestNoLeak: conversations abandoned mid-handshake cost no goroutine once expired.
func TestNoLeak(t *testing.T) {
	l := testLab(t)
	clock := &fakeClock{t: time.Now()}
	o := l.options(t)
	o.Now = clock.now
	h, evs := newHandler(t, o)
	before := runtime.NumGoroutine()
	for i := range 5 {
		c := eaptls.NewClient(l.clientConfig(cliRSA))
		start, state := startConversationFrom(t, h, stationMAC(i))
		hello, _, _ := c.Step(start)
		req := accessRequest(t, 2, hello, state, stationMAC(i), true)
		h.Serve(req)
		c.Close()
	}
	if h.Stats().Conversations != 5 {
		t.Fatalf("stats %+v", h.Stats())
	}
	clock.add(time.Hour)
	for range 5 {
		if ev := evs.wait(t, 3*time.Second); ev.Reason != ReasonTimeout {
			t.Errorf("event %+v", ev)
		}
	}
	waitGoroutines(t, before)
}

func TestIdentityOrder(t *testing.T) {
	leaf := &x509.Certificate{Subject: pkix.Name{CommonName: "cn-name"}, EmailAddresses: []string{"mail@example.test"}, DNSNames: []string{"host.example.test"}}
	l := testLab(t)
	upn, err := l.root.Issue(pki.IssueOptions{CommonName: "cn", UPNs: []string{"user@corp.example"}, Usage: pki.UsageClient})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		cert  *x509.Certificate
		order []string
		want  string
	}{
		{leaf, defaultIdentityOrder(), "cn-name"},
		{leaf, []string{IdentityEmail, IdentityCN}, "mail@example.test"},
		{leaf, []string{IdentityUPN, IdentityDNS}, "host.example.test"},
		{leaf, []string{IdentityUPN}, ""},
		{upn.Cert, []string{IdentityUPN, IdentityCN}, "user@corp.example"},
		{nil, defaultIdentityOrder(), ""},
	}
	for _, tt := range tests {
		if got := certIdentity(tt.cert, tt.order); got != tt.want {
			t.Errorf("certIdentity(%v) = %q, want %q", tt.order, got, tt.want)
		}
	}
}

func TestValidate(t *testing.T) {
	l := testLab(t)
	good := l.options(t)
	tests := []struct {
		name   string
		change func(*Options)
	}{
		{"no certificate", func(o *Options) { o.Certificates = nil }},
		{"no roots", func(o *Options) { o.Verify.Roots = nil }},
		{"identity source", func(o *Options) { o.IdentityOrder = []string{"cn", "uid"} }},
		{"timeout", func(o *Options) { o.ConversationTimeout = -1 }},
		{"max", func(o *Options) { o.MaxConversations = -1 }},
		{"max per nas", func(o *Options) { o.MaxConversationsPerNAS = -1 }},
		{"first step", func(o *Options) { o.FirstStepTimeout = -1 }},
		{"fragment", func(o *Options) { o.FragmentSize = 10 }},
		{"tls 1.1", func(o *Options) { o.MinVersion = tls.VersionTLS11 }},
		{"skew", func(o *Options) { o.Verify.ClockSkew = -time.Second }},
	}
	if err := good.Validate(); err != nil {
		t.Fatalf("good options: %v", err)
	}
	for _, tt := range tests {
		o := good
		tt.change(&o)
		if _, err := New(o); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: %v, want ErrConfig", tt.name, err)
		}
	}
}

// TestConcurrent runs authentications in parallel through one handler (run with -race).
func TestConcurrent(t *testing.T) {
	l := testLab(t)
	h, evs := newHandler(t, l.options(t))
	var wg sync.WaitGroup
	const workers, each = 6, 3
	errs := make(chan string, workers*each)
	for w := range workers {
		wg.Go(func() {
			for range each {
				cfg := l.clientConfig([]string{cliECDSA, cliRSA, cliChain}[w%3])
				_, resp, _ := authenticate(t, h, cfg, stationMAC(w))
				if resp.Code() != packet.CodeAccessAccept {
					errs <- resp.Code().String()
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Errorf("authentication ended with %s", e)
	}
	if n := len(evs.all()); n != workers*each {
		t.Errorf("%d events, want %d", n, workers*each)
	}
	if st := h.Stats(); st.Conversations != 0 || st.Accepted != workers*each {
		t.Errorf("stats %+v", st)
	}
}

// TestConversationBounds: a station's new EAP-Response/Identity replaces its conversation; at the
// per-NAS cap a new conversation displaces the oldest one still waiting for its ClientHello, never
// one in its handshake; a conversation without a first step expires after FirstStepTimeout.
func TestConversationBounds(t *testing.T) {
	l := testLab(t)
	clock := &fakeClock{t: time.Now()}
	o := l.options(t)
	o.Now, o.MaxConversationsPerNAS, o.FirstStepTimeout = clock.now, 4, 5*time.Second
	h, evs := newHandler(t, o)

	// Replacement: the old State is gone, the new one works.
	_, old := startConversationFrom(t, h, stationMAC(1))
	start, state := startConversationFrom(t, h, stationMAC(1))
	if st := h.Stats(); st.Conversations != 1 || st.Replaced != 1 {
		t.Fatalf("after a second Identity: %+v", st)
	}
	if resp := h.Serve(accessRequest(t, 2, []byte{2, start[1], 0, 6, 13, 0}, old, stationMAC(1), true)); resp.Code() != packet.CodeAccessReject {
		t.Fatalf("replaced State: %v", resp.Code())
	}
	if ev := evs.wait(t, time.Second); ev.Reason != ReasonUnknownState {
		t.Fatalf("event %+v", ev)
	}
	// The same MAC on another NAS is another station (accessRequest's NAS is nas1: use a second
	// client).
	other := accessRequest(t, 1, identityResponse(7, "anonymous"), nil, stationMAC(1), true)
	other.Client = &proxy.Client{Name: "nas2", Prefix: other.Client.Prefix, Secret: other.Client.Secret, Vendor: "generic"}
	if resp := h.Serve(other); resp.Code() != packet.CodeAccessChallenge {
		t.Fatalf("other NAS: %v", resp.Code())
	}
	if st := h.Stats(); st.Conversations != 2 || st.Replaced != 1 {
		t.Fatalf("same MAC on another NAS: %+v", st)
	}

	// A legitimate supplicant on nas1 in its handshake.
	c := eaptls.NewClient(l.clientConfig(cliECDSA))
	defer c.Close()
	hello, _, _ := c.Step(start)
	req := accessRequest(t, 3, hello, state, stationMAC(1), true)
	resp := h.Serve(req)
	if resp.Code() != packet.CodeAccessChallenge {
		t.Fatalf("handshake: %v", resp.Code())
	}
	// A flood of Identity messages from spoofed MACs on nas1: all answered with a Start, each
	// displacing the oldest fresh one; the handshake keeps its slot.
	for i := range 1000 {
		startConversationFrom(t, h, stationMAC(100+i))
		if i%100 == 0 {
			clock.add(time.Millisecond)
		}
	}
	if st := h.Stats(); st.Conversations != 5 || st.Overflow != 0 || st.Displaced != 1000-3 {
		t.Fatalf("after the flood: %+v", st)
	}
	// The supplicant finishes its handshake.
	eap, _ := replyEAP(t, req, resp)
	for id := uint8(4); ; id++ {
		out, done, err := c.Step(eap)
		if done || id > 200 {
			t.Fatalf("supplicant stopped mid-conversation: %v", err)
		}
		req = accessRequest(t, id, out, state, stationMAC(1), true)
		resp = h.Serve(req)
		if resp.Code() != packet.CodeAccessChallenge {
			break
		}
		eap, _ = replyEAP(t, req, resp)
	}
	if resp.Code() != packet.CodeAccessAccept {
		t.Fatalf("after the flood: %v, events %+v", resp.Code(), evs.all())
	}
	// The flood's conversations expire after FirstStepTimeout, not ConversationTimeout.
	clock.add(5 * time.Second)
	h.sweep(clock.now())
	if st := h.Stats(); st.Conversations != 0 {
		t.Fatalf("after the first-step timeout: %+v", st)
	}
}

// TestConversationCaps: at a cap one conversation waiting for its first step makes room for a new
// one, never more; the global cap displaces across NASes.
func TestConversationCaps(t *testing.T) {
	l := testLab(t)
	tests := []struct {
		name             string
		perNAS, total    int
		nas2             bool // alternate two NASes
		wantConvs        int
		wantDisplaced    uint64
		startsAfterFills int
	}{
		{"per-nas and total equal", 2, 2, false, 2, 1, 1},
		{"per-nas", 2, 10, false, 2, 3, 3},
		{"total across nases", 10, 3, true, 3, 3, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := l.options(t)
			o.MaxConversationsPerNAS, o.MaxConversations = tt.perNAS, tt.total
			h, _ := newHandler(t, o)
			for i := range tt.wantConvs + tt.startsAfterFills {
				req := accessRequest(t, 1, identityResponse(7, "anonymous"), nil, stationMAC(i), true)
				if tt.nas2 && i%2 == 1 {
					req.Client = &proxy.Client{Name: "nas2", Prefix: req.Client.Prefix, Secret: req.Client.Secret, Vendor: "generic"}
				}
				if resp := h.Serve(req); resp.Code() != packet.CodeAccessChallenge {
					t.Fatalf("start %d: %v", i, resp.Code())
				}
			}
			if st := h.Stats(); st.Conversations != tt.wantConvs || st.Displaced != tt.wantDisplaced || st.Overflow != 0 {
				t.Fatalf("stats %+v, want %d conversations, %d displaced", st, tt.wantConvs, tt.wantDisplaced)
			}
		})
	}
}
