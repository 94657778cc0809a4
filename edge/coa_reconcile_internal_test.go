package edge

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"mxedge/cache/session"
	"mxedge/edge/peertest"
	"mxedge/proxy"
	"mxedge/proxy/dynauth"
)

// TestReconcileThroughSessionTable: sessions the edge admitted locally (the session table marks
// them) are re-authorized after failback through FreeRADIUS as the NAS, oldest first, at the
// configured pace; a session that ended meanwhile is left alone, a site with reconciliation off
// is skipped, a vendor without a reauthenticate CoA gets a Disconnect; the table records each
// outcome, and the relay's session lookup routes a CoA that names only a MAC.
func TestReconcileThroughSessionTable(t *testing.T) {
	peertest.Require(t, "freeradius")
	certs := peertest.NewCerts(t)
	coaPort := peertest.FreePort(t)
	nas := peertest.StartFreeRADIUS(t, peertest.FreeRADIUSOptions{
		CoAAddr:    fmt.Sprintf("127.0.0.1:%d", coaPort),
		ServerCert: certs.ServerCert, ServerKey: certs.ServerKey, CA: certs.CA,
	})
	st, err := session.Open(session.Options{Path: filepath.Join(t.TempDir(), "sessions.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	table := sessionTable{s: st}
	relay, err := dynauth.New(dynauth.Options{
		Source: "127.0.0.1:0", Timeout: 200 * time.Millisecond, Retries: 1, Sessions: table,
		NASes: []dynauth.NAS{
			{Name: "sw1", Prefix: netip.MustParsePrefix("127.0.0.1/32"), Secret: proxy.Secret("testing123"), CoAPort: uint16(coaPort), Vendor: "cisco"},
			{Name: "ap1", Prefix: netip.MustParsePrefix("127.0.0.0/8"), Secret: proxy.Secret("testing123"), CoAPort: uint16(coaPort), Vendor: "juniper"},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := relay.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 2)
	go func() { done <- relay.Run(ctx) }()

	// Six sessions admitted locally (cache hit or default VLAN), one a second apart, and one the
	// cloud admitted.
	t0 := time.Now().Add(-time.Hour)
	accept := func(i int, nasName, addr, site string, d session.Decider) {
		t.Helper()
		mac := fmt.Sprintf("02:00:00:00:00:%02x", i)
		err := st.Apply([]session.Update{{Kind: session.KindAccept, At: t0.Add(time.Duration(i) * time.Second), Rec: session.Record{
			NAS: nasName, NASAddr: addr, Site: site, MAC: mac, CallingStationID: mac, UserName: fmt.Sprintf("user%d", i),
			AcctSessionID: fmt.Sprintf("s%d", i), Decider: d, Method: "mab"}}})
		if err != nil {
			t.Fatal(err)
		}
	}
	for i := 1; i <= 6; i++ {
		accept(i, "sw1", "127.0.0.1", "hq", session.DecidedCache)
	}
	accept(7, "sw1", "127.0.0.1", "hq", session.DecidedCloud)
	accept(8, "sw1", "127.0.0.1", "lab", session.DecidedDefault) // a site with reconciliation off
	accept(9, "ap1", "127.0.0.1", "hq", session.DecidedDefault)  // no reauthenticate for its vendor
	// Session 3 ended on its own before failback.
	if err := st.Apply([]session.Update{{Kind: session.KindStop, At: t0.Add(time.Minute), Rec: session.Record{
		NAS: "sw1", NASAddr: "127.0.0.1", AcctSessionID: "s3", MAC: "02:00:00:00:00:03"}}}); err != nil {
		t.Fatal(err)
	}

	const rate = 5.0
	rec, err := dynauth.NewReconciler(dynauth.ReconcileOptions{Sessions: table, Rate: rate,
		Site: func(site string) dynauth.SitePolicy {
			return dynauth.SitePolicy{Enabled: site != "lab", Disconnect: true}
		}}, relay)
	if err != nil {
		t.Fatal(err)
	}
	go func() { done <- rec.Run(ctx) }()
	start := time.Now()
	rec.Kick()
	deadline := time.Now().Add(20 * time.Second)
	for p := rec.Progress(); p.Rounds == 0 || p.Running; p = rec.Progress() {
		if time.Now().After(deadline) {
			t.Fatalf("reconciliation did not finish: %+v", p)
		}
		time.Sleep(20 * time.Millisecond)
	}
	took := time.Since(start)
	p := rec.Progress()
	// Sent: sessions 1, 2, 4, 5, 6 (reauthenticate) and 9 (disconnect); 8 skipped.
	if p.Sent != 6 || p.ACK != 6 || p.Skipped != 1 || p.NAK != 0 || p.Timeouts != 0 {
		t.Errorf("progress %+v", p)
	}
	// Six requests at 5/s: five gaps of 200ms at the least.
	if min := time.Duration(5 * float64(time.Second) / rate); took < min {
		t.Errorf("six requests in %v, faster than %v/s allows (%v)", took, rate, min)
	}
	recs, err := nas.CoA()
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, r := range recs {
		order = append(order, r.Map["Acct-Session-Id"]+"/"+r.Map["Cisco-AVPair"])
	}
	want := []string{"s1/subscriber:command=reauthenticate", "s2/subscriber:command=reauthenticate",
		"s4/subscriber:command=reauthenticate", "s5/subscriber:command=reauthenticate",
		"s6/subscriber:command=reauthenticate", "s9/"}
	if fmt.Sprint(order) != fmt.Sprint(want) {
		t.Errorf("the NAS got %v, want oldest first %v", order, want)
	}
	// The skipped one stays waiting: a later round, with the site switched on, takes it.
	if left, _ := st.NeedingReconcile(0); len(left) != 1 || left[0].AcctSessionID != "s8" {
		t.Errorf("still needing reconciliation: %v, want s8 alone", left)
	}
	for id, want := range map[string]session.Reconcile{"s1": session.ReconcileDone, "s3": session.ReconcileSuperseded,
		"s7": session.ReconcileNone, "s8": session.ReconcileNeeded, "s9": session.ReconcileDone} {
		rs, _ := st.Find(session.Query{AcctSessionID: id})
		if len(rs) != 1 || rs[0].Reconcile != want {
			t.Errorf("%s: %v, want %v", id, rs, want)
		}
	}

	// The relay's session lookup: a Disconnect naming only the MAC reaches sw1.
	o, err := relay.Originate(ctx, "operator", dynauth.ActionDisconnect, dynauth.Target{NAS: "sw1", CallingStationID: "02-00-00-00-00-05"})
	if err != nil || o.Result != "ack" {
		t.Errorf("disconnect: %+v %v", o, err)
	}
	if ref, ok := table.FindSession(dynauth.SessionQuery{CallingStationID: "02-00-00-00-00-05"}); !ok || ref.NAS != "sw1" || ref.NASAddr.String() != "127.0.0.1" {
		t.Errorf("FindSession by MAC: %+v %v", ref, ok)
	}
	if _, ok := table.FindSession(dynauth.SessionQuery{AcctSessionID: "s3"}); ok {
		t.Error("FindSession found a session that ended")
	}
	cancel()
	<-done
	<-done
}
