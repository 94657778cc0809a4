package edge

import (
	"context"
	"net/netip"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"mxedge/cache/session"
	"mxedge/proxy"
	"mxedge/proxy/packet"
	"mxedge/survivability"
)

var trackerT0 = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

func testTracker(t *testing.T) (*sessionTracker, *session.Store) {
	t.Helper()
	s, err := session.Open(session.Options{Path: filepath.Join(t.TempDir(), "sessions.db"), NoSync: true,
		Now: func() time.Time { return trackerT0 }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return newSessionTracker(s, nil), s
}

func runTracker(t *testing.T, tr *sessionTracker) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { tr.Run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })
}

var testClient = &proxy.Client{Name: "sw1", Vendor: "cisco", Site: "hq", Secret: proxy.Secret("s3cret")}

func acctPacket(t testing.TB, id uint8, status uint32, add func(*packet.Builder)) packet.Packet {
	t.Helper()
	b := packet.New(nil, packet.CodeAccountingRequest, id, nil)
	b.AddUint32(packet.AttrAcctStatusType, status)
	if add != nil {
		add(&b)
	}
	p, err := b.Finish(testClient.Secret, nil)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func acctResponse(t testing.TB, req packet.Packet) packet.Packet {
	t.Helper()
	b := packet.NewResponse(nil, req, packet.CodeAccountingResponse)
	p, err := b.Finish(testClient.Secret, req.Authenticator())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func request(p packet.Packet) *proxy.Request {
	return &proxy.Request{Client: testClient, Src: netip.MustParseAddrPort("[::ffff:10.0.0.1]:1645"), Packet: p, Received: trackerT0}
}

func waitFind(t *testing.T, s *session.Store, q session.Query, ok func([]session.Record) bool) []session.Record {
	t.Helper()
	var rs []session.Record
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		var err error
		if rs, err = s.Find(q); err != nil {
			t.Fatal(err)
		}
		if ok(rs) {
			return rs
		}
	}
	t.Fatalf("Find(%+v): %+v", q, rs)
	return nil
}

// TestTrackerAccountingFields: every accounting attribute the table keeps is read from a real
// Accounting-Request (RFC 2866 §5, RFC 2869 §5.1 gigawords, RFC 3162 §2.3 prefix, RFC 6911
// §3.1 address), and Accounting-On ends the NAS's sessions.
func TestTrackerAccountingFields(t *testing.T) {
	tr, s := testTracker(t)
	runTracker(t, tr)
	start := acctPacket(t, 1, acctStart, func(b *packet.Builder) {
		b.AddString(packet.AttrAcctSessionID, "S-1")
		b.AddString(attrAcctMultiSessionID, "M-1")
		b.AddString(packet.AttrUserName, "alice@example.com")
		b.AddString(packet.AttrCallingStationID, "0200.0000.0001")
		b.AddString(packet.AttrCalledStationID, "001122334455:guest wifi")
		b.AddUint32(packet.AttrNASPort, 7)
		b.Add(attrFramedIPAddress, []byte{10, 9, 0, 7})
		b.Add(attrFramedIPv6Address, netip.MustParseAddr("2001:db8::7").AsSlice())
		b.Add(attrFramedIPv6Prefix, []byte{0, 56, 0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0})
		b.AddUint32(attrAcctInterim, 300)
		b.Add(packet.AttrClass, []byte("cls"))
	})
	tr.observe(request(start), acctResponse(t, start), true)
	stop := acctPacket(t, 2, acctStop, func(b *packet.Builder) {
		b.AddString(packet.AttrAcctSessionID, "S-1")
		b.AddUint32(attrAcctInputOctets, 5)
		b.AddUint32(attrAcctInputGiga, 2)
		b.AddUint32(attrAcctOutputOctets, 6)
		b.AddUint32(attrAcctSessionTime, 61)
		b.AddUint32(attrAcctTerminateCause, 4) // Idle-Timeout
	})
	tr.observe(request(stop), acctResponse(t, stop), true)
	r := waitFind(t, s, session.Query{AcctSessionID: "S-1", NAS: "sw1"}, func(rs []session.Record) bool {
		return len(rs) == 1 && rs[0].State == session.StateStopped
	})[0]
	want := session.Record{NAS: "sw1", NASAddr: "10.0.0.1", Vendor: "cisco", Site: "hq", UserName: "alice@example.com",
		CallingStationID: "0200.0000.0001", MAC: "02:00:00:00:00:01", CalledStationID: "001122334455:guest wifi", SSID: "guest wifi",
		NASPort: 7, HasNASPort: true, AcctSessionID: "S-1", AcctMultiSessionID: "M-1", FramedIP: netip.MustParseAddr("10.9.0.7"),
		FramedIPv6: netip.MustParseAddr("2001:db8::7"), FramedIPv6Prefix: netip.MustParsePrefix("2001:db8:1::/56"),
		Interim: 5 * time.Minute, InputOctets: 2<<32 + 5, OutputOctets: 6, SessionTime: 61, TerminateCause: 4, Class: []byte("cls")}
	got := r
	got.ID, got.State, got.Started, got.Updated, got.Stopped, got.Expires = 0, 0, time.Time{}, time.Time{}, time.Time{}, time.Time{}
	if got.NAS != want.NAS || got.NASAddr != want.NASAddr || got.SSID != want.SSID || got.MAC != want.MAC ||
		got.FramedIPv6Prefix != want.FramedIPv6Prefix || got.FramedIPv6 != want.FramedIPv6 || got.InputOctets != want.InputOctets ||
		got.OutputOctets != want.OutputOctets || got.TerminateCause != want.TerminateCause || got.Interim != want.Interim ||
		got.AcctMultiSessionID != want.AcctMultiSessionID || string(got.Class) != "cls" || got.UserName != want.UserName ||
		!got.HasNASPort || got.NASPort != 7 || got.FramedIP != want.FramedIP {
		t.Fatalf("record\n got %+v\nwant %+v", got, want)
	}
	// Accounting-On from the NAS ends what it had; unknown status types are counted, not stored.
	s2 := acctPacket(t, 3, acctStart, func(b *packet.Builder) { b.AddString(packet.AttrAcctSessionID, "S-2") })
	tr.observe(request(s2), acctResponse(t, s2), true)
	waitFind(t, s, session.Query{NAS: "sw1", State: session.StateActive}, func(rs []session.Record) bool { return len(rs) == 1 })
	on := acctPacket(t, 4, acctOn, nil)
	tr.observe(request(on), acctResponse(t, on), true)
	odd := acctPacket(t, 5, 15, nil) // Failed (RFC 2866 §5.1)
	tr.observe(request(odd), acctResponse(t, odd), true)
	waitFind(t, s, session.Query{NAS: "sw1", State: session.StateActive}, func(rs []session.Record) bool { return len(rs) == 0 })
	for deadline := time.Now().Add(5 * time.Second); tr.Stats().Ignored != 1 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	if st := tr.Stats(); st.Ignored != 1 || st.Dropped != 0 || st.Received != 5 {
		t.Fatalf("tracker stats %+v", st)
	}
}

// TestTrackerLocalDecider: a local Accept is attributed to the decision published just before it
// (cache hit, default VLAN); one whose decision was lost is "policy", never "cloud".
func TestTrackerLocalDecider(t *testing.T) {
	tr, s := testTracker(t)
	runTracker(t, tr)
	accept := func(mac string) (*proxy.Request, packet.Packet) {
		b := packet.New(nil, packet.CodeAccessRequest, 9, make([]byte, 16))
		b.AddString(packet.AttrUserName, mac)
		b.AddString(packet.AttrCallingStationID, mac)
		req, _ := b.Finish(nil, nil)
		rb := packet.NewResponse(nil, req, packet.CodeAccessAccept)
		rb.AddTagged(packet.AttrTunnelPrivateGroupID, 1, []byte("41"))
		resp, err := rb.Finish(testClient.Secret, req.Authenticator())
		if err != nil {
			t.Fatal(err)
		}
		return request(req), resp
	}
	for _, tc := range []struct {
		mac, reason string
		want        session.Decider
	}{
		{"02-00-00-00-00-0a", survivability.ReasonCacheHit, session.DecidedCache},
		{"02-00-00-00-00-0b", survivability.ReasonDefaultVLAN, session.DecidedDefault},
		{"02-00-00-00-00-0c", "", session.DecidedPolicy},
	} {
		req, resp := accept(tc.mac)
		m := "02:00:00:00:00:" + tc.mac[len(tc.mac)-2:]
		if tc.reason != "" {
			tr.decided(survivability.Event{Allowed: true, Source: survivability.SourceLocal, Method: "mab", NAS: "sw1", MAC: m, Reason: tc.reason})
		}
		tr.observe(req, resp, false)
		r := waitFind(t, s, session.Query{MAC: m}, func(rs []session.Record) bool { return len(rs) == 1 })[0]
		if r.Decider != tc.want || r.Reconcile != session.ReconcileNeeded || r.VLAN != "41" {
			t.Errorf("%s: %+v", tc.mac, r)
		}
	}
}

// TestTrackerNeverBlocks: with the writer stalled, the request path drops and counts instead of
// waiting, and in steady state it allocates nothing per packet.
func TestTrackerNeverBlocks(t *testing.T) {
	tr, _ := testTracker(t)
	p := acctPacket(t, 1, acctInterim, func(b *packet.Builder) { b.AddString(packet.AttrAcctSessionID, "S") })
	req, resp := request(p), acctResponse(t, p)
	for range sessionQueueSize + 100 { // nobody runs the writer
		tr.observe(req, resp, true)
	}
	if st := tr.Stats(); st.Dropped != 100 || st.Queue != sessionQueueSize {
		t.Fatalf("stalled writer: %+v", st)
	}
	for len(tr.q) > 0 {
		tr.bufs.Put((<-tr.q).buf)
	}
	allocs := testing.AllocsPerRun(1000, func() {
		tr.observe(req, resp, true)
		tr.bufs.Put((<-tr.q).buf) // what the writer does with the buffer
	})
	if !raceEnabled && allocs != 0 {
		t.Fatalf("%v allocations per observed packet, want 0", allocs)
	}
	t.Logf("%v allocations per observed packet (race detector: %v)", allocs, raceEnabled)
}

// BenchmarkSessionObserve is the request path's share of the session table: the copy into a pooled
// buffer and the non-blocking send (the writer's parse and commit are bench/sessions').
func BenchmarkSessionObserve(b *testing.B) {
	tr := newSessionTracker(nil, nil)
	p := acctPacket(b, 1, acctInterim, func(bl *packet.Builder) {
		bl.AddString(packet.AttrAcctSessionID, "0000001A")
		bl.AddString(packet.AttrCallingStationID, "02-00-00-00-00-01")
		bl.AddString(packet.AttrUserName, "alice@example.com")
		bl.AddUint32(attrAcctInputOctets, 123456)
	})
	req, resp := request(p), acctResponse(b, p)
	b.ReportAllocs()
	for b.Loop() {
		tr.observe(req, resp, true)
		tr.bufs.Put((<-tr.q).buf)
	}
}

// TestTrackerBatchesWithoutWaking: the writer, which no longer wakes for each packet, commits a
// lone packet after its batch delay, and a burst in transactions of at most sessionBatchMax.
func TestTrackerBatchesWithoutWaking(t *testing.T) {
	tr, s := testTracker(t)
	runTracker(t, tr)
	acct := func(i int) *proxy.Request {
		return request(acctPacket(t, uint8(i), acctStart, func(b *packet.Builder) {
			b.AddString(packet.AttrAcctSessionID, "B"+string(rune('A'+i%26))+string(rune('A'+i/26%26))+string(rune('A'+i/676)))
		}))
	}
	p := acct(0)
	began := time.Now()
	tr.observe(p, acctResponse(t, p.Packet), true)
	waitFind(t, s, session.Query{AcctSessionID: "BAAA"}, func(rs []session.Record) bool { return len(rs) == 1 })
	if d := time.Since(began); d < sessionBatchDelay/2 {
		t.Fatalf("a lone packet committed after %v, before its batch delay %v", d, sessionBatchDelay)
	}
	// A full batch commits without waiting for the delay: send more than one and time the last.
	batches := tr.Stats().Batches
	for i := 1; i <= 3*sessionBatchMax; i++ {
		p := acct(i)
		tr.observe(p, acctResponse(t, p.Packet), true)
	}
	waitFind(t, s, session.Query{NAS: "sw1"}, func(rs []session.Record) bool { return len(rs) == 3*sessionBatchMax+1 })
	if st := tr.Stats(); st.Dropped != 0 || st.Received != 3*sessionBatchMax+1 || st.Batches-batches < 3 {
		t.Fatalf("stats %+v (batches before %d)", st, batches)
	}
}

// BenchmarkTrackerAddLocalMAB is the session writer's parse of one local MAB grant: the decision
// the Engine publishes and the Access-Accept the front door observes, turned into an update
// (the table's commit is cache/session's BenchmarkApplyLocalMAB).
func BenchmarkTrackerAddLocalMAB(b *testing.B) {
	tr := newSessionTracker(nil, nil)
	rb := packet.New(nil, packet.CodeAccessRequest, 9, make([]byte, 16))
	rb.AddString(packet.AttrUserName, "020000000a0b")
	rb.AddString(packet.AttrCallingStationID, "02-00-00-00-0a-0b")
	rb.AddUint32(packet.AttrNASPort, 50101)
	rb.AddString(packet.AttrCalledStationID, "00-11-22-33-44-55:corp")
	req, err := rb.Finish(testClient.Secret, nil)
	if err != nil {
		b.Fatal(err)
	}
	ab := packet.NewResponse(nil, req, packet.CodeAccessAccept)
	ab.AddTagged(packet.AttrTunnelPrivateGroupID, 1, []byte("41"))
	resp, err := ab.Finish(testClient.Secret, req.Authenticator())
	if err != nil {
		b.Fatal(err)
	}
	r := request(req)
	batch := make([]session.Update, 0, 1)
	b.ReportAllocs()
	for b.Loop() {
		tr.decided(survivability.Event{Allowed: true, Source: survivability.SourceLocal, Method: "mab", NAS: "sw1",
			MAC: "02:00:00:00:0a:0b", Reason: survivability.ReasonCacheHit})
		batch = tr.add(batch, <-tr.q)
		tr.observe(r, resp, false)
		batch = tr.add(batch, <-tr.q)
		if len(batch) != 1 || batch[0].Rec.Decider != session.DecidedCache {
			b.Fatalf("batch %+v", batch)
		}
		batch = batch[:0]
	}
}
