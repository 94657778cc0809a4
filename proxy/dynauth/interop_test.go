package dynauth_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"mxedge/edge/peertest"
	"mxedge/proxy"
	"mxedge/proxy/dynauth"
)

const (
	nasSecret = "testing123" // FreeRADIUS's UDP client secret in peertest
	daSecret  = "coa-client-secret"
)

// sessionsMap is a session table keyed by Acct-Session-Id or Calling-Station-Id, enough to route
// by session; the edge's end-to-end tests use the real table.
type sessionsMap map[string]dynauth.SessionRef

func (m sessionsMap) FindSession(q dynauth.SessionQuery) (dynauth.SessionRef, bool) {
	for _, k := range []string{q.AcctSessionID, q.CallingStationID, q.UserName} {
		if r, ok := m[k]; ok && k != "" {
			return r, true
		}
	}
	return dynauth.SessionRef{}, false
}

type outcomes struct {
	mu  sync.Mutex
	all []dynauth.Outcome
}

func (o *outcomes) DynAuthOutcome(x dynauth.Outcome) {
	o.mu.Lock()
	o.all = append(o.all, x)
	o.mu.Unlock()
}

func (o *outcomes) last() dynauth.Outcome {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.all) == 0 {
		return dynauth.Outcome{}
	}
	return o.all[len(o.all)-1]
}

type lab struct {
	relay *dynauth.Relay
	nas   *peertest.FreeRADIUS
	addr  string // the relay's Dynamic Authorization listener
	seen  *outcomes
}

// startLab runs FreeRADIUS as the NAS "sw1" (its CoA listener on loopback, answering by
// peertest.CoAPolicy) and the relay in front of it, for radclient as the on-prem CoA client.
func startLab(t *testing.T, tune func(*dynauth.Options)) *lab {
	t.Helper()
	peertest.Require(t, "freeradius", "radclient")
	certs := peertest.NewCerts(t)
	coaPort := peertest.FreePort(t)
	nas := peertest.StartFreeRADIUS(t, peertest.FreeRADIUSOptions{
		CoAAddr:    fmt.Sprintf("127.0.0.1:%d", coaPort),
		ServerCert: certs.ServerCert, ServerKey: certs.ServerKey, CA: certs.CA,
	})
	seen := &outcomes{}
	o := dynauth.Options{
		Listen: []string{"127.0.0.1:0"},
		Source: "127.0.0.1:0",
		Clients: []proxy.Client{{Name: "coa-client", Prefix: netip.MustParsePrefix("127.0.0.1/32"),
			Secret: proxy.Secret(daSecret), RequireMessageAuthenticator: true, LimitProxyState: true}},
		NASes: []dynauth.NAS{
			{Name: "sw1", Prefix: netip.MustParsePrefix("127.0.0.1/32"), Secret: proxy.Secret(nasSecret), CoAPort: uint16(coaPort), Vendor: "cisco"},
			// A NAS network known only as a prefix: routable by NAS-IP-Address alone.
			{Name: "floor2", Prefix: netip.MustParsePrefix("10.9.0.0/16"), Secret: proxy.Secret(nasSecret)},
		},
		// Generous for a loaded machine: a FreeRADIUS slower than this gets a retransmission
		// (absorbed), slower than all three waits a 506 the tests would not expect.
		Timeout:  400 * time.Millisecond,
		Retries:  2,
		Sessions: sessionsMap{"sess-42": {NAS: "sw1", NASAddr: netip.MustParseAddr("127.0.0.1")}},
		Observer: seen,
	}
	if tune != nil {
		tune(&o)
	}
	r, err := dynauth.New(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return &lab{relay: r, nas: nas, addr: r.Addrs()[0].String(), seen: seen}
}

func (l *lab) send(t *testing.T, kind, secret string, attrs ...string) peertest.Reply {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	replies, raw, err := peertest.Radclient(ctx, peertest.RadclientOptions{
		Server: l.addr, Kind: kind, Secret: secret, Timeout: 8 * time.Second,
		Requests: []peertest.Request{{Attrs: attrs}},
	})
	if err != nil {
		t.Fatalf("radclient: %v\n%s", err, raw)
	}
	return replies[0]
}

const ma = "Message-Authenticator = 0x00"

// TestRadclientThroughRelay: radclient as the on-prem CoA client, the relay, FreeRADIUS as the
// NAS. Every answer radclient prints was verified by radclient with its own secret, and every
// request FreeRADIUS logged was verified by FreeRADIUS with the NAS's: the relay re-signed both ways.
func TestRadclientThroughRelay(t *testing.T) {
	l := startLab(t, nil)
	cases := []struct {
		name, kind string
		attrs      []string
		code       string
		cause      string
		route      string
		reached    bool // the NAS logged the request
	}{
		{"disconnect by NAS-IP-Address", "disconnect", []string{ma, `NAS-IP-Address = 127.0.0.1`, `User-Name = "alice"`},
			"Disconnect-ACK", "", dynauth.RouteNASIP, true},
		{"coa by NAS-Identifier", "coa", []string{ma, `NAS-Identifier = "sw1"`, `User-Name = "bob"`, `Cisco-AVPair = "subscriber:command=reauthenticate"`},
			"CoA-ACK", "", dynauth.RouteNASID, true},
		{"coa by Operator-NAS-Identifier, removed before the NAS", "coa", []string{ma, `Operator-NAS-Identifier = 0x737731`, `User-Name = "carol"`},
			"CoA-ACK", "", dynauth.RouteOperatorNASID, true},
		{"disconnect by session", "disconnect", []string{ma, `Acct-Session-Id = "sess-42"`, `User-Name = "dave"`},
			"Disconnect-ACK", "", dynauth.RouteSession, true},
		{"NAK from the NAS relayed with its Error-Cause", "coa", []string{ma, `NAS-IP-Address = 127.0.0.1`, `User-Name = "nosession"`},
			"CoA-NAK", "Session-Context-Not-Found", dynauth.RouteNASIP, true},
		{"unknown NAS: 502", "disconnect", []string{ma, `NAS-IP-Address = 192.0.2.7`, `User-Name = "erin"`},
			"Disconnect-NAK", "Proxy-Request-Not-Routable", dynauth.RouteNASIP, false},
		{"NAS known only as a prefix, by name: 502", "coa", []string{ma, `NAS-Identifier = "floor2"`, `User-Name = "erin"`},
			"CoA-NAK", "Proxy-Request-Not-Routable", dynauth.RouteNASID, false},
		{"unknown session: 503", "disconnect", []string{ma, `Acct-Session-Id = "no-such"`},
			"Disconnect-NAK", "Session-Context-Not-Found", dynauth.RouteSession, false},
		{"nothing to route by: 502", "coa", []string{ma, `Reply-Message = "x"`},
			"CoA-NAK", "Proxy-Request-Not-Routable", dynauth.RouteNone, false},
	}
	reached := 0
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rep := l.send(t, c.kind, daSecret, c.attrs...)
			if rep.Code != c.code {
				t.Fatalf("answer %q, want %q (%v)", rep.Code, c.code, rep.Attrs)
			}
			if got := rep.Get("Error-Cause"); got != c.cause {
				t.Errorf("Error-Cause %q, want %q", got, c.cause)
			}
			if got := l.seen.last().Route; got != c.route {
				t.Errorf("route %q, want %q", got, c.route)
			}
			if c.reached {
				reached++
			}
			recs, err := l.nas.CoA()
			if err != nil {
				t.Fatal(err)
			}
			if len(recs) != reached {
				t.Fatalf("the NAS logged %d requests, want %d", len(recs), reached)
			}
			if c.reached {
				last := recs[len(recs)-1]
				if _, ok := last.Map["Operator-NAS-Identifier"]; ok {
					t.Errorf("Operator-NAS-Identifier reached the NAS: %v", last.Map)
				}
				if strings.Contains(c.name, "reauthenticate") || c.kind == "coa" && c.route == dynauth.RouteNASID {
					if last.Map["Cisco-AVPair"] != "subscriber:command=reauthenticate" {
						t.Errorf("vendor attribute not relayed: %v", last.Map)
					}
				}
			}
		})
	}
	st := l.relay.Stats()
	if st.ACK.Load() != 4 {
		t.Errorf("ACK counter %d, want 4", st.ACK.Load())
	}
	naks := st.NAKs()
	if naks[503] != 2 || naks[502] != 3 {
		t.Errorf("NAKs by Error-Cause %v, want 503:2 502:3", naks)
	}
	if n := st.NAS("sw1").Requests.Load(); n != 5 {
		t.Errorf("requests to sw1: %d, want 5", n)
	}
}

// TestRelayTimeout: a NAS that never answers gets the request retransmitted, then the requester
// gets NAK 506 (Resources Unavailable).
func TestRelayTimeout(t *testing.T) {
	l := startLab(t, nil)
	start := time.Now()
	rep := l.send(t, "disconnect", daSecret, ma, `NAS-IP-Address = 127.0.0.1`, `User-Name = "silent"`)
	if rep.Code != "Disconnect-NAK" || rep.Get("Error-Cause") != "Resources-Unavailable" {
		t.Fatalf("answer %q %v, want Disconnect-NAK with Resources-Unavailable", rep.Code, rep.Attrs)
	}
	st := l.relay.Stats()
	if st.Retransmissions.Load() != 2 || st.Timeouts.Load() != 1 {
		t.Errorf("retransmissions %d timeouts %d, want 2 and 1", st.Retransmissions.Load(), st.Timeouts.Load())
	}
	recs, _ := l.nas.CoA()
	// FreeRADIUS absorbs our retransmissions as duplicates (same ID and authenticator): it logs one.
	if len(recs) != 1 {
		t.Errorf("the NAS logged %d requests, want 1", len(recs))
	}
	if o := l.seen.last(); o.Result != "timeout" || o.ErrorCause != 506 || o.NAS != "sw1" {
		t.Errorf("outcome %+v", o)
	}
	// 400ms + 800ms + 1600ms of waiting at the least.
	if d := time.Since(start); d < 2800*time.Millisecond {
		t.Errorf("answered after %v: the retransmissions did not back off", d)
	}
}

// TestRelayBlastRADIUS: the listener's checks, with radclient sending what a misconfigured or
// hostile CoA client would.
func TestRelayBlastRADIUS(t *testing.T) {
	l := startLab(t, nil)
	cases := []struct {
		name   string
		secret string
		attrs  []string
		reason dynauth.DropReason
	}{
		{"no Message-Authenticator", daSecret, []string{`NAS-IP-Address = 127.0.0.1`, `User-Name = "alice"`}, dynauth.DropMissingMA},
		{"wrong secret", "not-the-secret", []string{ma, `NAS-IP-Address = 127.0.0.1`}, dynauth.DropBadAuthenticator},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := l.relay.Stats().Dropped[c.reason].Load()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			replies, raw, err := peertest.Radclient(ctx, peertest.RadclientOptions{
				Server: l.addr, Kind: "coa", Secret: c.secret, Timeout: 500 * time.Millisecond,
				Requests: []peertest.Request{{Attrs: c.attrs}},
			})
			if err != nil {
				t.Fatalf("radclient: %v\n%s", err, raw)
			}
			if replies[0].Code != "" {
				t.Fatalf("answered %q, want no answer", replies[0].Code)
			}
			if got := l.relay.Stats().Dropped[c.reason].Load() - before; got != 1 {
				t.Errorf("%v drops: %d, want 1", c.reason, got)
			}
		})
	}
	if recs, _ := l.nas.CoA(); len(recs) != 0 {
		t.Errorf("the NAS got %d requests, want none", len(recs))
	}
	// With require_message_authenticator off, the same request without it is relayed.
	l2 := startLab(t, func(o *dynauth.Options) { o.Clients[0].RequireMessageAuthenticator = false })
	if rep := l2.send(t, "coa", daSecret, `NAS-IP-Address = 127.0.0.1`, `User-Name = "alice"`); rep.Code != "CoA-ACK" {
		t.Errorf("without require_message_authenticator: %q, want CoA-ACK", rep.Code)
	}
}

// TestOriginate: the edge's own requests (operator, reconciliation) rendered per vendor, sent to
// FreeRADIUS as the NAS, with the NAS's verdict as the outcome.
func TestOriginate(t *testing.T) {
	l := startLab(t, nil)
	ctx := context.Background()
	o, err := l.relay.Originate(ctx, "operator", dynauth.ActionReauthenticate,
		dynauth.Target{NAS: "sw1", CallingStationID: "aa-bb-cc-dd-ee-ff", AcctSessionID: "s-1"})
	if err != nil {
		t.Fatal(err)
	}
	if o.Result != "ack" || o.NAS != "sw1" || o.From != "operator" || o.Code != "CoA-Request" {
		t.Errorf("outcome %+v", o)
	}
	recs, _ := l.nas.CoA()
	if len(recs) != 1 {
		t.Fatalf("the NAS logged %d requests", len(recs))
	}
	m := recs[0].Map
	if m["Cisco-AVPair"] != "subscriber:command=reauthenticate" || m["NAS-IP-Address"] != "127.0.0.1" ||
		m["Acct-Session-Id"] != "s-1" || m["Calling-Station-Id"] != "aa-bb-cc-dd-ee-ff" || m["Event-Timestamp"] == "" {
		t.Errorf("the NAS got %v", m)
	}
	o, err = l.relay.Originate(ctx, "operator", dynauth.ActionDisconnect, dynauth.Target{NAS: "sw1", UserName: "nosession"})
	if err != nil {
		t.Fatal(err)
	}
	if o.Result != "nak" || o.ErrorCause != 503 || o.Code != "Disconnect-Request" {
		t.Errorf("outcome %+v", o)
	}
	for _, c := range []struct {
		name string
		a    dynauth.Action
		t    dynauth.Target
		want error
	}{
		{"prefix NAS without an address", dynauth.ActionDisconnect, dynauth.Target{NAS: "floor2", UserName: "u"}, dynauth.ErrNASAddress},
		{"no reauthenticate for generic", dynauth.ActionReauthenticate, dynauth.Target{NAS: "floor2", NASAddr: netip.MustParseAddr("10.9.1.1"), UserName: "u"}, dynauth.ErrNoVendorAction},
		{"unknown NAS", dynauth.ActionDisconnect, dynauth.Target{NAS: "nope", UserName: "u"}, dynauth.ErrUnknownNAS},
		{"no session", dynauth.ActionDisconnect, dynauth.Target{NAS: "sw1"}, dynauth.ErrNoSessionID},
	} {
		if _, err := l.relay.Originate(ctx, "operator", c.a, c.t); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
}

// TestRender: the vendor table docs/coa.md documents.
func TestRender(t *testing.T) {
	for _, c := range []struct {
		vendor string
		a      dynauth.Action
		ok     bool
		code   string
		vsa    string
	}{
		{"generic", dynauth.ActionDisconnect, true, "Disconnect-Request", ""},
		{"juniper", dynauth.ActionDisconnect, true, "Disconnect-Request", ""},
		{"cisco", dynauth.ActionReauthenticate, true, "CoA-Request", "9/1 subscriber:command=reauthenticate"},
		{"cisco", dynauth.ActionBouncePort, true, "CoA-Request", "9/1 subscriber:command=bounce-host-port"},
		{"aruba", dynauth.ActionBouncePort, true, "CoA-Request", "14823/40 \x00\x00\x00\x0a"},
		{"hpe", dynauth.ActionBouncePort, true, "CoA-Request", "11/23 \x00\x00\x00\x0a"},
		{"aruba", dynauth.ActionReauthenticate, false, "", ""},
		{"juniper", dynauth.ActionReauthenticate, false, "", ""},
		{"juniper", dynauth.ActionBouncePort, false, "", ""},
		{"mist", dynauth.ActionReauthenticate, false, "", ""},
	} {
		r, ok := dynauth.Render(c.vendor, c.a)
		if ok != c.ok {
			t.Errorf("%s %s: defined %v, want %v", c.vendor, c.a, ok, c.ok)
			continue
		}
		if !ok {
			continue
		}
		vsa := ""
		for _, v := range r.VSAs {
			vsa = fmt.Sprintf("%d/%d %s", v.Vendor, v.Type, v.Value)
		}
		if r.Code.String() != c.code || vsa != c.vsa {
			t.Errorf("%s %s: %v %q, want %s %q", c.vendor, c.a, r.Code, vsa, c.code, c.vsa)
		}
	}
}
