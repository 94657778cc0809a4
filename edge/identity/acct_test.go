package identity

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"mxedge/edge/peertest"
	"mxedge/proxy/packet"
)

const nasSecret = "nas-secret"

// acctRequest builds an Accounting-Request as a NAS signs it with nasSecret.
func acctRequest(tb testing.TB, id uint8, status uint32, session, user, mac string, ip netip.Addr) packet.Packet {
	tb.Helper()
	b := packet.New(nil, packet.CodeAccountingRequest, id, nil)
	b.AddUint32(packet.AttrAcctStatusType, status)
	b.AddString(packet.AttrAcctSessionID, session)
	b.AddString(packet.AttrUserName, user)
	b.AddString(packet.AttrCallingStationID, mac)
	b.AddString(packet.AttrCalledStationID, "00-11-22-33-44-55:Corp")
	b.Add(packet.AttrNASIPAddress, []byte{192, 0, 2, 1})
	if ip.IsValid() {
		b.Add(attrFramedIPAddress, ip.AsSlice())
	}
	p, err := b.Finish([]byte(nasSecret), nil)
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// TestAccountingCopyFreeRADIUS: the accounting the tracker sees is copied to a real FreeRADIUS
// with another secret; its detail file shows every record, in order per session, with
// Acct-Delay-Time; FreeRADIUS accepts only correctly re-signed requests. The server starts only
// after records are queued: they wait and arrive.
func TestAccountingCopyFreeRADIUS(t *testing.T) {
	port := peertest.FreePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	p, err := New(Options{Dir: t.TempDir(), BackoffMin: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond,
		NASSecret: func(string) []byte { return []byte(nasSecret) },
		// The copy's clock runs 3 s ahead of the tracker's receipt stamps: every record waited 3 s.
		Now: func() time.Time { return time.Now().Add(3 * time.Second) },
		Sinks: []SinkOptions{{Name: "rsso", Type: TypeAccounting, Filter: Filter{Sites: []string{"hq"}},
			Accounting: &AccountingOptions{Address: addr, Secret: []byte("copy-secret"), Timeout: 400 * time.Millisecond}}}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	tr := NewTracker(TrackerOptions{Observer: p})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); tr.Run(ctx) }()
	defer func() { cancel(); <-done }()
	stop := runPusher(t, p)
	defer stop()

	const n = 10
	id := uint8(0)
	send := func(site string, status uint32, i int) {
		id++
		ip := netip.AddrFrom4([4]byte{10, 9, 0, byte(i)})
		tr.Accounting("sw1", site, netip.MustParseAddr("192.0.2.1"), time.Now(),
			acctRequest(t, id, status, fmt.Sprintf("%s-%02d", site, i), fmt.Sprintf("user%d@corp.example", i), "aa-bb-cc-00-00-0"+fmt.Sprint(i%10), ip))
	}
	for i := range n {
		send("hq", 1, i)
		send("hq", 3, i)
		send("branch", 1, i) // filtered out: another site
	}
	waitFor(t, 5*time.Second, "queued while the server is down", func() bool { return p.Status()[0].Queued == 2*n })
	waitFor(t, 5*time.Second, "down", func() bool { return p.Status()[0].State == "down" })
	for i := range n {
		send("hq", 2, i)
	}
	certs := peertest.NewCerts(t)
	fr := peertest.StartFreeRADIUS(t, peertest.FreeRADIUSOptions{UDPAcctAddr: addr, AccountingLog: true,
		ServerCert: certs.ServerCert, ServerKey: certs.ServerKey, CA: certs.CA,
		UDPClients: []peertest.Client{{Addr: "127.0.0.1", Secret: "copy-secret"}}})
	wctx, wcancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer wcancel()
	recs, err := fr.WaitAccounting(wctx, 3*n)
	if err != nil {
		t.Fatalf("%v\n%s", err, fr.LogTail(30))
	}
	waitFor(t, 5*time.Second, "acknowledged", func() bool { return p.Status()[0].Queued == 0 })
	next := map[string]int{}
	delayed := 0
	for _, r := range recs {
		want := []string{"Start", "Interim-Update", "Stop"}[min(next[r.SessionID()], 2)]
		if r.StatusType() != want {
			t.Fatalf("session %s: %s, want %s", r.SessionID(), r.StatusType(), want)
		}
		next[r.SessionID()]++
		if r.DelayTime() >= 3 {
			delayed++
		}
		if r.Map["Framed-IP-Address"] == "" || r.Map["Called-Station-Id"] != "00-11-22-33-44-55:Corp" {
			t.Fatalf("record %v", r.Map)
		}
	}
	if len(next) != n {
		t.Fatalf("%d sessions copied, want %d", len(next), n)
	}
	if delayed != len(recs) {
		t.Fatalf("%d of %d records carry the wait in Acct-Delay-Time", delayed, len(recs))
	}
	waitFor(t, 5*time.Second, "counted", func() bool {
		st := p.Status()[0]
		return st.SentByType["connect"] >= n && st.SentByType["disconnect"] >= n && st.State == "up"
	})
	st := p.Status()[0]
	// A copy signed with a secret the server does not share is not acknowledged: it stays queued.
	bad, err := New(Options{Dir: t.TempDir(), BackoffMin: 20 * time.Millisecond, BackoffMax: 100 * time.Millisecond,
		Sinks: []SinkOptions{{Name: "wrong", Type: TypeAccounting,
			Accounting: &AccountingOptions{Address: addr, Secret: []byte("not-the-secret"), Timeout: 300 * time.Millisecond}}}})
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	bstop := runPusher(t, bad)
	defer bstop()
	bad.Accounting(&Session{NAS: "sw1", SessionID: "x"}, time.Now(), acctRequest(t, 1, 1, "x", "u", "aa-bb-cc-dd-ee-ff", netip.Addr{}))
	waitFor(t, 5*time.Second, "unacknowledged copy", func() bool { s := bad.Status()[0]; return s.State == "down" && s.Queued == 1 })
	if got, _ := fr.Accounting(); len(got) != len(recs) {
		t.Fatalf("FreeRADIUS logged a wrongly signed copy: %d records", len(got))
	}
	t.Logf("%d records copied, %d with Acct-Delay-Time >= 3; %d failed attempts while down", len(recs), delayed, st.Failed)
}
