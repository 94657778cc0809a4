package identity

import (
	"net/netip"
	"testing"
	"time"

	"mxedge/proxy/packet"
)

type recorder struct {
	events []string
	last   *Session
	acct   int
}

func (r *recorder) SessionChanged(prev, cur *Session) {
	if k, reason, ok := Change(prev, cur); ok {
		r.events = append(r.events, k.String()+"/"+reason)
	}
	r.last = cur
}

func (r *recorder) Accounting(*Session, time.Time, packet.Packet) { r.acct++ }

func accept(tb testing.TB, mac, user, vlan string) (req, resp packet.Packet) {
	tb.Helper()
	b := packet.New(nil, packet.CodeAccessRequest, 1, make([]byte, 16))
	b.AddString(packet.AttrUserName, mac)
	b.AddString(packet.AttrCallingStationID, mac)
	req, _ = b.Finish([]byte(nasSecret), nil)
	rb := packet.NewResponse(nil, req, packet.CodeAccessAccept)
	rb.AddString(packet.AttrUserName, user)
	rb.Add(packet.AttrTunnelPrivateGroupID, append([]byte{1}, vlan...))
	resp, _ = rb.Finish([]byte(nasSecret), req.Authenticator())
	return req, resp
}

// TestTracker drives the tracker's handling directly (as Run does) with a test clock.
func TestTracker(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	rec := &recorder{}
	tr := NewTracker(TrackerOptions{Observer: rec, SessionTimeout: time.Hour, Now: func() time.Time { return now }})
	nas := netip.MustParseAddr("192.0.2.1")
	ip1, ip2 := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	mac := "AA-BB-CC-DD-EE-01"
	step := func(in input) {
		tr.handle(in)
	}
	acct := func(status uint32, sess string, ip netip.Addr) input {
		return input{acct: true, nas: "sw1", site: "hq", src: nas, received: now, req: acctRequest(t, 1, status, sess, "alice@corp.example", mac, ip)}
	}
	req, resp := accept(t, mac, "alice@corp.example", "300")
	step(input{nas: "sw1", site: "hq", received: now, req: req, resp: resp, authorizer: AuthorizerCloud})
	step(acct(1, "s1", netip.Addr{})) // Start without an address: nothing to map yet
	step(acct(3, "s1", ip1))          // the address learned
	step(acct(3, "s1", ip1))          // same address: nothing
	step(acct(3, "s1", ip2))          // another address
	now = now.Add(time.Minute)
	req, resp = accept(t, mac, "alice@corp.example", "300")
	step(input{nas: "sw1", site: "hq", received: now, req: req, resp: resp, authorizer: AuthorizerLocal}) // re-authentication
	step(acct(2, "s1", netip.Addr{}))                                                                     // Stop
	want := []string{"connect/address-learned", "update/address-changed", "update/reauth", "disconnect/stop"}
	if len(rec.events) != len(want) {
		t.Fatalf("events %v, want %v", rec.events, want)
	}
	for i := range want {
		if rec.events[i] != want[i] {
			t.Fatalf("events %v, want %v", rec.events, want)
		}
	}
	s := rec.last
	if s.MAC != "aa:bb:cc:dd:ee:01" || s.SSID != "Corp" || s.VLAN != "300" || s.Method != methodMAB || s.Authorizer != AuthorizerLocal ||
		s.NASAddress != "192.0.2.1" || s.Identity != "alice@corp.example" || s.Addrs[0] != ip2 {
		t.Fatalf("session %+v", s)
	}
	if rec.acct != 5 || len(tr.sessions) != 0 || len(tr.byMAC) != 0 {
		t.Fatalf("acct %d sessions %d index %d", rec.acct, len(tr.sessions), len(tr.byMAC))
	}

	// Expiry and Accounting-On.
	rec.events = nil
	step(acct(1, "s2", ip1))
	step(acct(1, "s3", ip2))
	now = now.Add(30 * time.Minute)
	step(acct(3, "s3", ip2))
	now = now.Add(40 * time.Minute)
	tr.Sweep()
	on := acctRequest(t, 9, acctOn, "", "", "", netip.Addr{})
	step(input{acct: true, nas: "sw1", site: "hq", received: now, req: on})
	want = []string{"connect/start", "connect/start", "disconnect/expired", "disconnect/stop"}
	if len(rec.events) != 4 || rec.events[2] != want[2] || rec.events[3] != want[3] {
		t.Fatalf("events %v, want %v", rec.events, want)
	}
	if tr.Dropped()[reasonNoAcctSessionID] != 0 {
		t.Fatal("Accounting-On counted as a record without session id")
	}
}

func TestTrackerBounds(t *testing.T) {
	rec := &recorder{}
	tr := NewTracker(TrackerOptions{Observer: rec, MaxSessions: 1})
	ip := netip.MustParseAddr("10.0.0.1")
	tr.handle(input{acct: true, nas: "sw1", req: acctRequest(t, 1, 1, "a", "u", "aa-bb-cc-dd-ee-ff", ip)})
	tr.handle(input{acct: true, nas: "sw1", req: acctRequest(t, 2, 1, "b", "u", "aa-bb-cc-dd-ee-fe", ip)})
	tr.handle(input{acct: true, nas: "sw1", req: acctRequest(t, 3, 3, "", "u", "aa-bb-cc-dd-ee-fe", ip)})
	d := tr.Dropped()
	if d[reasonTrackerTableFull] != 1 || d[reasonNoAcctSessionID] != 1 || len(rec.events) != 1 {
		t.Fatalf("dropped %v events %v", d, rec.events)
	}
	for range trackerInbox + 5 {
		tr.Accounting("sw1", "", netip.Addr{}, time.Now(), acctRequest(t, 1, 3, "a", "u", "x", ip))
	}
	if tr.Dropped()[reasonTrackerInboxFull] != 5 {
		t.Fatalf("inbox drops %v", tr.Dropped())
	}
}
