package edge_test

// Sessions in a cluster of edges (docs/cluster.md): the site of cluster_netns_test.go with three
// edges, FreeRADIUS as the cloud behind the router, the Go NAS on the LAN for Access- and
// Accounting-Requests, and FreeRADIUS on the NAS's address as its CoA listener (the NAS
// stand-in, `listen { type = coa }`), which logs every CoA-Request and Disconnect-Request it
// receives: that log is the count of what reached the NAS. radclient on the NAS's host is the
// on-prem Dynamic Authorization client.

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mxedge/cache"
	"mxedge/edge/control"
	"mxedge/edge/peertest"
	"mxedge/proxy/packet"
)

const coaSecret = "ops secret"

// sessionsOn returns what `mxedge sessions -o json --mac mac` prints on e.
func (cs *clusterSite) sessionsOn(t *testing.T, e *clusterEdge, mac string) []control.Session {
	t.Helper()
	out, err := exec.Command(cs.bin, "sessions", "-o", "json", "--mac", mac, "--socket", e.socket).Output()
	if err != nil {
		t.Fatalf("mxedge sessions on %s: %v", e.name, err)
	}
	var l control.SessionList
	if err := json.Unmarshal(out, &l); err != nil {
		t.Fatalf("mxedge sessions on %s: %v\n%s", e.name, err, out)
	}
	return l.Sessions
}

// clusterAcct is an Accounting-Request of the client mac's session asid, as the switch sends it
// after MAB (mabRequest): the same port, Calling-Station-Id and User-Name.
func clusterAcct(t testing.TB, id uint8, mac, asid string, status uint32) packet.Packet {
	m, _ := cache.NormalizeMAC(mac)
	b := packet.New(nil, packet.CodeAccountingRequest, id, nil)
	b.AddUint32(packet.AttrAcctStatusType, status)
	b.AddString(packet.AttrAcctSessionID, asid)
	b.AddString(packet.AttrUserName, mac)
	b.AddString(packet.AttrCallingStationID, strings.ToUpper(strings.ReplaceAll(m, ":", "-")))
	b.AddString(87, "GigabitEthernet1/0/12") // NAS-Port-Id, RFC 2869 §5.17
	b.AddUint32(packet.AttrNASPort, 50112)
	b.Add(8, []byte{10, 9, 0, 7}) // Framed-IP-Address, RFC 2865 §5.8
	p, err := b.Finish([]byte(nasSecret), nil)
	if err != nil {
		t.Fatalf("accounting request: %v", err)
	}
	return p
}

// radclientIn runs radclient on the NAS's host (the LAN namespace) and returns its output.
func radclientIn(t *testing.T, ns, server, kind, secret string, attrs ...string) string {
	t.Helper()
	bin, err := peertest.LookPath("radclient")
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "req")
	if err := os.WriteFile(f, []byte(strings.Join(attrs, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, _ := exec.Command("ip", "netns", "exec", ns, bin, "-x", "-c", "1", "-r", "3", "-t", "2", "-f", f, server, kind, secret).CombinedOutput()
	return string(out)
}

// coaFor counts the CoA-Requests (reauthenticate) and Disconnect-Requests that reached the NAS for
// Calling-Station-Id calling.
func coaFor(recs []peertest.AcctRecord, calling string) (reauth, disconnect int) {
	for _, r := range recs {
		if !strings.EqualFold(r.Map["Calling-Station-Id"], calling) {
			continue
		}
		if r.Map["Cisco-AVPair"] == "subscriber:command=reauthenticate" {
			reauth++
		} else {
			disconnect++
		}
	}
	return reauth, disconnect
}

func dashed(mac string) string {
	m, _ := cache.NormalizeMAC(mac)
	return strings.ToUpper(strings.ReplaceAll(m, ":", "-"))
}

// TestE2ENetnsClusterSessions: a session begun through edge-a is on edge-c, which routes a
// Disconnect naming only the session to the NAS; after an outage of every WAN link, the sessions
// edge-a and edge-b admitted locally are re-authorized exactly once across the cluster, each by the
// edge that admitted it, and every edge shows them reconciled.
func TestE2ENetnsClusterSessions(t *testing.T) {
	peertest.Require(t, "freeradius", "radclient", "ip")
	cs := startClusterSite(t, 3, 0, clusterSiteOptions{coa: true})
	b, c := cs.edges[1], cs.edges[2]
	ctx := t.Context()
	nas := peertest.StartFreeRADIUS(t, peertest.FreeRADIUSOptions{
		NetNS: cs.site.LAN, CoAAddr: netip.AddrPortFrom(peertest.SiteNASAddr, 3799).String(),
		UDPClients: []peertest.Client{{Addr: "198.18.10.0/24", Secret: nasSecret}},
		ServerCert: cs.lab.ServerCert, ServerKey: cs.lab.ServerKey, CA: cs.lab.CAFile,
	})
	clusterWait(t, 20*time.Second, "three members alive on every edge", func() bool {
		for _, e := range cs.edges {
			if aliveMembers(cs.status(t, e)) != 3 {
				return false
			}
		}
		return true
	})

	// 1. A session through edge-a: MAB answered by the cloud, then Accounting Start.
	authA, acctA := cs.nasTo(t, 0), newWANNASFrom(t, cs.site.LAN, peertest.SiteNASAddr, netip.AddrPortFrom(peertest.SiteLANAddr(0), 1813))
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
	asid := "CL-" + k.mac
	if _, ans, ok := acctA.exchange(ctx, func(id uint8) packet.Packet { return clusterAcct(t, id, k.mac, asid, acctStart) }, authRetry); !ok ||
		ans.p.Code() != packet.CodeAccountingResponse {
		t.Fatalf("Accounting Start through edge-a: no Accounting-Response")
	}
	var onC control.Session
	took := clusterWait(t, 10*time.Second, "edge-a's session on edge-c", func() bool {
		ss := cs.sessionsOn(t, c, k.mac)
		if len(ss) == 1 && ss[0].State == "active" && ss[0].AcctSessionID == asid {
			onC = ss[0]
			return true
		}
		return false
	})
	t.Logf("session: begun through edge-a, on edge-c (mxedge sessions) %s after the Accounting-Response", ms(took))
	if onC.Origin != "edge-a" || onC.Edge != "edge-a" || onC.AdmittedBy != "edge-a" || onC.DecidedBy != "cloud" || onC.NASAddress != peertest.SiteNASAddr.String() {
		t.Errorf("edge-c's copy: %+v", onC)
	}

	// A Disconnect to edge-c naming only the session (no NAS attribute): edge-c finds the NAS in
	// its copy of the table and the NAS ACKs.
	t0 := time.Now()
	out := radclientIn(t, cs.site.LAN, peertest.SiteLANAddr(2).String()+":3799", "disconnect", coaSecret,
		`Acct-Session-Id = "`+asid+`"`, `Calling-Station-Id = "`+dashed(k.mac)+`"`, "Message-Authenticator = 0x00")
	if !strings.Contains(out, "Received Disconnect-ACK") {
		t.Fatalf("Disconnect through edge-c:\n%s", out)
	}
	t.Logf("disconnect: sent to edge-c, ACKed by the NAS through edge-c in %s", ms(time.Since(t0)))
	recs, _ := nas.CoA()
	if _, d := coaFor(recs, dashed(k.mac)); d != 1 {
		t.Fatalf("the NAS received %d Disconnect-Requests for %s, want 1: %+v", d, k.mac, recs)
	}

	// 2. Every WAN link cut: edge-a admits an unknown client (default VLAN), edge-b one the cloud
	// had authorized through edge-a (from its replicated cache).
	cached := cs.known[1]
	for range 20 {
		if cloud, _, _ = authorize(t, authA, cached); cloud {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !cloud {
		t.Fatalf("%s: no cloud answer through edge-a", cached.mac)
	}
	clusterWait(t, 10*time.Second, cached.mac+" in edge-b's cache", func() bool { return cs.cached(b, cached.mac) })
	for i := range 3 {
		if err := cs.site.CutWAN(ctx, i); err != nil {
			t.Fatal(err)
		}
	}
	clusterWait(t, 15*time.Second, "every edge sees no edge reach the cloud", func() bool {
		for _, e := range cs.edges {
			for _, m := range cs.status(t, e).Members {
				if m.ReachesCloud {
					return false
				}
			}
		}
		return true
	})
	// Each edge's pool of peers reaching the cloud follows that view every 500 ms (edge/cluster.go).
	time.Sleep(time.Second)
	var rnd [3]byte
	rand.Read(rnd[:])
	unknown := knownMAC{mac: "02cc00" + hexs(rnd[:])} // never seen by the cloud: the default VLAN
	authB := cs.nasTo(t, 1)
	if cloud, local, vlan := authorize(t, authA, unknown); cloud || !local || vlan != netnsDefaultVLAN {
		t.Fatalf("unknown %s through edge-a in the outage: cloud=%v local=%v VLAN %q", unknown.mac, cloud, local, vlan)
	}
	if cloud, local, vlan := authorize(t, authB, cached); cloud || !local || vlan != cached.vlan {
		t.Fatalf("cached %s through edge-b in the outage: cloud=%v local=%v VLAN %q", cached.mac, cloud, local, vlan)
	}
	admitted := map[string]string{unknown.mac: "edge-a", cached.mac: "edge-b"}
	var last string
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("last sessions seen: %s", last)
		}
	})
	took = clusterWait(t, 10*time.Second, "both local admissions on every edge, needing reconciliation", func() bool {
		for _, e := range cs.edges {
			for mac, by := range admitted {
				ss := cs.sessionsOn(t, e, mac)
				last = fmt.Sprintf("%s %s: %+v", e.name, mac, ss)
				if len(ss) != 1 || ss[0].Reconcile != "needed" || ss[0].AdmittedBy != by {
					return false
				}
			}
		}
		return true
	})
	t.Logf("outage: the 2 local admissions (edge-a default VLAN, edge-b cache) on every edge %s after the second answer", ms(took))

	// 3. The WAN back: each session re-authorized once, by the edge that admitted it.
	for i := range 3 {
		if err := cs.site.RestoreWAN(ctx, i); err != nil {
			t.Fatal(err)
		}
	}
	restored := time.Now()
	took = clusterWait(t, 60*time.Second, "both sessions reconciled on every edge", func() bool {
		for _, e := range cs.edges {
			for mac := range admitted {
				ss := cs.sessionsOn(t, e, mac)
				last = fmt.Sprintf("%s %s: %+v", e.name, mac, ss)
				if len(ss) != 1 || ss[0].Reconcile != "reconciled" {
					return false
				}
			}
		}
		return true
	})
	t.Logf("failback: both sessions reconciled on every edge %s after the WAN links were restored", ms(took))
	time.Sleep(3 * time.Second) // room for a second re-authorization, should an edge send one
	recs, _ = nas.CoA()
	for mac, by := range admitted {
		if r, _ := coaFor(recs, dashed(mac)); r != 1 {
			t.Errorf("the NAS received %d reauthenticate CoA-Requests for %s (admitted by %s), want exactly 1", r, mac, by)
		}
	}
	sent := map[string]uint64{}
	for _, e := range cs.edges {
		var st struct {
			Reconcile *struct {
				Sent uint64 `json:"sent"`
			} `json:"reconcile"`
		}
		out, err := exec.Command(cs.bin, "status", "-o", "json", "--socket", e.socket).Output()
		if err != nil || json.Unmarshal(out, &st) != nil || st.Reconcile == nil {
			t.Fatalf("mxedge status on %s: %v\n%s", e.name, err, out)
		}
		sent[e.name] = st.Reconcile.Sent
		for mac := range admitted {
			if ss := cs.sessionsOn(t, e, mac); len(ss) != 1 || ss[0].ReconcileAttempts != 1 {
				t.Errorf("%s on %s: %+v, want one reconciliation attempt", mac, e.name, ss)
			}
		}
	}
	total := 0
	for _, r := range recs {
		if r.Map["Cisco-AVPair"] == "subscriber:command=reauthenticate" {
			total++
		}
	}
	t.Logf("failback: %d reauthenticate CoA-Requests reached the NAS for the 2 sessions; sent per edge %v; WAN restored at %s",
		total, sent, restored.Format("15:04:05.000"))
	if total != 2 {
		t.Errorf("%d reauthenticate CoA-Requests at the NAS, want 2", total)
	}
	if sent["edge-a"] != 1 || sent["edge-b"] != 1 || sent["edge-c"] != 0 {
		t.Errorf("reconciliation requests sent per edge %v, want edge-a 1, edge-b 1, edge-c 0", sent)
	}

	// The session replication metrics pass promtool.
	scrape := cs.scrape(t, 2)
	check := exec.Command(promtool(t), "check", "metrics")
	check.Stdin = strings.NewReader(scrape)
	if out, err := check.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
	for _, want := range []string{`mxedge_cluster_session_records_total{result="merged"}`, "mxedge_cluster_session_replication_lag_seconds"} {
		if !strings.Contains(scrape, "\n"+want) {
			t.Errorf("edge-c's metrics lack %s; its session lines:\n%s", want, grepLines(scrape, "session"))
		}
	}
	st := cs.status(t, c)
	if st.Replication.Sessions == nil || st.Replication.Sessions.Merged == 0 || st.Replication.Sessions.NeedReconcile != 0 {
		t.Errorf("edge-c's session replication %+v", st.Replication.Sessions)
	}
	text, err := exec.Command(cs.bin, "cluster", "status", "--socket", c.socket).CombinedOutput()
	if err != nil || !strings.Contains(string(text), "\nSessions: ") ||
		!strings.Contains(string(text), "reconciliation: 0 sessions admitted locally waiting, 0 of them this edge's to reconcile") {
		t.Errorf("mxedge cluster status on edge-c (%v):\n%s", err, text)
	}
	t.Logf("edge-c: %s", grepLines(string(text), "Sessions:"))

	// 4. The admitter dies: another outage, edge-b admits a client locally and is killed; when the
	// WAN is back, edge-a (the lowest-named edge reaching the cloud) takes the session over after
	// the takeover wait and re-authorizes it once.
	for i := range 3 {
		if err := cs.site.CutWAN(ctx, i); err != nil {
			t.Fatal(err)
		}
	}
	clusterWait(t, 15*time.Second, "every edge sees no edge reach the cloud", func() bool {
		for _, e := range cs.edges {
			for _, m := range cs.status(t, e).Members {
				if m.ReachesCloud {
					return false
				}
			}
		}
		return true
	})
	time.Sleep(time.Second) // the peer pools follow
	rand.Read(rnd[:])
	orphan := knownMAC{mac: "02dd00" + hexs(rnd[:])}
	if cloud, local, _ := authorize(t, authB, orphan); cloud || !local {
		t.Fatalf("%s through edge-b in the second outage: cloud=%v local=%v", orphan.mac, cloud, local)
	}
	clusterWait(t, 10*time.Second, "edge-b's admission on edge-a and edge-c", func() bool {
		for _, e := range []*clusterEdge{cs.edges[0], c} {
			ss := cs.sessionsOn(t, e, orphan.mac)
			if len(ss) != 1 || ss[0].Reconcile != "needed" || ss[0].AdmittedBy != "edge-b" {
				return false
			}
		}
		return true
	})
	if err := b.mx.Kill(); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := cs.site.RestoreWAN(ctx, i); err != nil {
			t.Fatal(err)
		}
	}
	took = clusterWait(t, 90*time.Second, "edge-b's orphaned session re-authorized", func() bool {
		recs, _ := nas.CoA()
		r, _ := coaFor(recs, dashed(orphan.mac))
		return r > 0
	})
	time.Sleep(3 * time.Second)
	recs, _ = nas.CoA()
	if r, _ := coaFor(recs, dashed(orphan.mac)); r != 1 {
		t.Errorf("the NAS received %d reauthenticate CoA-Requests for edge-b's orphaned session, want exactly 1", r)
	}
	for _, e := range []*clusterEdge{cs.edges[0], c} {
		if ss := cs.sessionsOn(t, e, orphan.mac); len(ss) != 1 || ss[0].Reconcile != "reconciled" {
			t.Errorf("edge-b's orphaned session on %s: %+v", e.name, ss)
		}
	}
	for _, e := range []*clusterEdge{cs.edges[0], c} {
		var st struct {
			Reconcile *struct {
				Sent uint64 `json:"sent"`
			} `json:"reconcile"`
		}
		out, err := exec.Command(cs.bin, "status", "-o", "json", "--socket", e.socket).Output()
		if err != nil || json.Unmarshal(out, &st) != nil || st.Reconcile == nil {
			t.Fatalf("mxedge status on %s: %v\n%s", e.name, err, out)
		}
		sent[e.name] = st.Reconcile.Sent
	}
	t.Logf("takeover: edge-b killed; its session re-authorized once, %s after the WAN was restored (takeover wait 30 s); requests sent in all by edge-a %d, edge-c %d",
		ms(took), sent["edge-a"], sent["edge-c"])
	if sent["edge-a"] != 2 || sent["edge-c"] != 0 {
		t.Errorf("after the takeover edge-a sent %d, edge-c %d reconciliation requests in all, want 2 and 0", sent["edge-a"], sent["edge-c"])
	}
}

func hexs(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, v := range b {
		out = append(out, digits[v>>4], digits[v&0xf])
	}
	return string(out)
}
