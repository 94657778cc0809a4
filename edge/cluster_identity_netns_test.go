package edge_test

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"mxedge/cache"
	"mxedge/edge/identity"
	"mxedge/edge/peertest"
	"mxedge/proxy/packet"
)

// clusterStopNoUser is the Accounting-Request Stop of clusterAcct without User-Name and
// Framed-IP-Address: a NAS failing over to another edge may send only the session's keys (RFC
// 2866 §5.13 allows zero or one User-Name in an Accounting-Request).
func clusterStopNoUser(t testing.TB, id uint8, mac, asid string) packet.Packet {
	m, _ := cache.NormalizeMAC(mac)
	b := packet.New(nil, packet.CodeAccountingRequest, id, nil)
	b.AddUint32(packet.AttrAcctStatusType, acctStop)
	b.AddString(packet.AttrAcctSessionID, asid)
	b.AddString(packet.AttrCallingStationID, strings.ToUpper(strings.ReplaceAll(m, ":", "-")))
	b.AddUint32(packet.AttrNASPort, 50112)
	p, err := b.Finish([]byte(nasSecret), nil)
	if err != nil {
		t.Fatalf("accounting request: %v", err)
	}
	return p
}

// TestE2ENetnsClusterIdentity: identity push whichever edge a session used. Two clustered edges,
// each with a radius-accounting identity sink (a real FreeRADIUS on the NAS's LAN, one port per
// edge). The session is authorized and started through edge-a, and its Stop (without User-Name)
// reaches edge-b. edge-a's sink gets the connect (a Start copy), edge-b's the disconnect carrying
// the user and address edge-b only knows from edge-a's replicated record, and neither edge
// pushes what it merely merged from the other (edge/identity.go, tableObserver).
func TestE2ENetnsClusterIdentity(t *testing.T) {
	peertest.Require(t, "freeradius", "ip")
	copyPort := func(i int) netip.AddrPort { return netip.AddrPortFrom(peertest.SiteNASAddr, uint16(1913+i)) }
	syslogAddr := func(i int) netip.AddrPort { return netip.AddrPortFrom(peertest.SiteNASAddr, uint16(6514+i)) }
	cs := startClusterSite(t, 2, 0, clusterSiteOptions{extra: func(i int) string {
		return fmt.Sprintf(`identity:
  backoff_min: 50ms
  backoff_max: 500ms
  sinks:
    - name: rsso
      type: radius-accounting
      address: "%s"
      secret: copy-secret
    - name: siem
      type: syslog
      transport: tcp
      address: "%s"
`, copyPort(i), syslogAddr(i))
	}})
	var copies []*peertest.FreeRADIUS
	var syslogs []*peertest.Rsyslog
	for i := range 2 {
		syslogs = append(syslogs, peertest.StartRsyslog(t, peertest.RsyslogOptions{NetNS: cs.site.LAN, TCPAddr: syslogAddr(i).String()}))
		copies = append(copies, peertest.StartFreeRADIUS(t, peertest.FreeRADIUSOptions{
			NetNS: cs.site.LAN, UDPAcctAddr: copyPort(i).String(), AccountingLog: true,
			ServerCert: cs.lab.ServerCert, ServerKey: cs.lab.ServerKey, CA: cs.lab.CAFile,
			UDPClients: []peertest.Client{{Addr: "198.18.10.0/24", Secret: "copy-secret"}}}))
	}
	clusterWait(t, 20*time.Second, "two members alive on both edges", func() bool {
		return aliveMembers(cs.status(t, cs.edges[0])) == 2 && aliveMembers(cs.status(t, cs.edges[1])) == 2
	})
	ctx := t.Context()
	authA := cs.nasTo(t, 0)
	acctA := newWANNASFrom(t, cs.site.LAN, peertest.SiteNASAddr, netip.AddrPortFrom(peertest.SiteLANAddr(0), 1813))
	acctB := newWANNASFrom(t, cs.site.LAN, peertest.SiteNASAddr, netip.AddrPortFrom(peertest.SiteLANAddr(1), 1813))
	k := cs.known[0]
	var cloud bool
	for range 20 {
		if cloud, _, _ = authorize(t, authA, k); cloud {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !cloud {
		t.Fatalf("%s: no cloud answer through edge-a", k.mac)
	}
	asid := "ID-" + k.mac
	if _, ans, ok := acctA.exchange(ctx, func(id uint8) packet.Packet { return clusterAcct(t, id, k.mac, asid, acctStart) }, authRetry); !ok ||
		ans.p.Code() != packet.CodeAccountingResponse {
		t.Fatal("Accounting Start through edge-a: no Accounting-Response")
	}
	clusterWait(t, 10*time.Second, "edge-a's session on edge-b", func() bool {
		ss := cs.sessionsOn(t, cs.edges[1], k.mac)
		return len(ss) == 1 && ss[0].State == "active" && ss[0].Origin == "edge-a"
	})
	if _, ans, ok := acctB.exchange(ctx, func(id uint8) packet.Packet { return clusterStopNoUser(t, id, k.mac, asid) }, authRetry); !ok ||
		ans.p.Code() != packet.CodeAccountingResponse {
		t.Fatal("Accounting Stop through edge-b: no Accounting-Response")
	}
	clusterWait(t, 10*time.Second, "edge-b's Stop on edge-a", func() bool {
		ss := cs.sessionsOn(t, cs.edges[0], k.mac)
		return len(ss) == 1 && ss[0].State == "stopped"
	})
	got := func(i int) []peertest.AcctRecord {
		recs, err := copies[i].Accounting()
		if err != nil {
			t.Fatalf("%s's accounting copy: %v", cs.edges[i].name, err)
		}
		var out []peertest.AcctRecord
		for _, r := range recs {
			if r.SessionID() == asid {
				out = append(out, r)
			}
		}
		return out
	}
	events := func(i int) []peertest.SyslogRecord {
		recs, err := syslogs[i].Records()
		if err != nil {
			t.Fatalf("%s's syslog receiver: %v", cs.edges[i].name, err)
		}
		var out []peertest.SyslogRecord
		for _, r := range recs {
			if r.SD[identity.SyslogSDID]["session_id"] == asid {
				out = append(out, r)
			}
		}
		return out
	}
	clusterWait(t, 10*time.Second, "an event and a copy at each edge's sinks", func() bool {
		return len(got(0)) >= 1 && len(got(1)) >= 1 && len(events(0)) >= 1 && len(events(1)) >= 1
	})
	// Both edges now hold the stopped record; a push of a merged change would come within the
	// sinks' delivery time (backoff_max 500 ms). Give it several times that before counting.
	time.Sleep(3 * time.Second)
	mac, _ := cache.NormalizeMAC(k.mac)
	ea, eb := events(0), events(1)
	if len(ea) != 1 || ea[0].MsgID != "connect" {
		t.Fatalf("edge-a's syslog: %+v, want one connect (edge-a saw the Start, not the Stop)", ea)
	}
	if len(eb) != 1 || eb[0].MsgID != "disconnect" {
		t.Fatalf("edge-b's syslog: %+v, want one disconnect (edge-b saw the Stop, not the Start)", eb)
	}
	for i, r := range []peertest.SyslogRecord{ea[0], eb[0]} {
		sd := r.SD[identity.SyslogSDID]
		if sd["user"] != k.mac || sd["mac"] != mac || sd["ip"] != "10.9.0.7" || sd["vlan"] != k.vlan {
			t.Errorf("%s's %s event lacks the session's user, MAC, address or VLAN: %v", cs.edges[i].name, r.MsgID, sd)
		}
	}
	// The accounting copy is the NAS's own packet, re-signed (edge/identity/acct.go): one per
	// edge, each from the edge that acknowledged it.
	a, b := got(0), got(1)
	if len(a) != 1 || a[0].StatusType() != "Start" || a[0].Map["User-Name"] != k.mac {
		t.Fatalf("edge-a's accounting copy: %+v, want one Start", a)
	}
	if len(b) != 1 || b[0].StatusType() != "Stop" || !strings.EqualFold(b[0].Map["Calling-Station-Id"], dashed(k.mac)) {
		t.Fatalf("edge-b's accounting copy: %+v, want one Stop", b)
	}
}
