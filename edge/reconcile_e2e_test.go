package edge_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mxedge/edge/control"
	"mxedge/edge/peertest"
	"mxedge/pki/pkitest"
)

// TestE2EReconcileAfterWANCut: the cloud (FreeRADIUS over RadSec) dies; one MAB client is
// admitted from the cache and one with the default VLAN, and the session table marks both. When
// the cloud is back and health fails back, mxedge sends each a CoA reauthenticate (the NAS is
// vendor cisco: Cisco-AVPair subscriber:command=reauthenticate) to the NAS stand-in (FreeRADIUS
// with a CoA listener), oldest first and no faster than the configured rate; the table records
// both as reconciled and `mxedge status` shows the round.
func TestE2EReconcileAfterWANCut(t *testing.T) {
	certs := peertest.NewCerts(t)
	coaPort := peertest.FreePort(t)
	nas := peertest.StartFreeRADIUS(t, peertest.FreeRADIUSOptions{
		CoAAddr:    fmt.Sprintf("127.0.0.1:%d", coaPort),
		UDPClients: []peertest.Client{{Addr: "127.0.0.1", Secret: nasSecret}}, // the NAS's secret in mxedge
		ServerCert: certs.ServerCert, ServerKey: certs.ServerKey, CA: certs.CA,
	})
	const rate = 2.0
	x := startE2E(t, 1, func(*pkitest.Lab) string {
		return fmt.Sprintf("survivability:\n  default_mab_vlan: \"41\"\n  failback_probes: 1\ndynamic_authorization:\n  reconcile: {rate: %v}\n", rate)
	})
	x.rewrite(t, func(s string) string {
		return replaceOnce(s, "    vendor: cisco\n", fmt.Sprintf("    vendor: cisco\n    coa_port: %d\n", coaPort))
	})
	mab := func(mac, dashed string) []string {
		return []string{`User-Name = "` + mac + `"`, `User-Password = "` + mac + `"`, `Calling-Station-Id = "` + dashed + `"`,
			`NAS-Port-Id = "Gi1/0/` + mac[len(mac)-1:] + `"`, `Message-Authenticator = 0x00`}
	}
	if r := radclient(t, x.auth, "auth", nasSecret, mab("aabbccddeeff", "AA-BB-CC-DD-EE-FF"))[0]; r.Code != "Access-Accept" {
		t.Fatalf("MAB through the cloud: %s", r.Code)
	}
	waitSession(t, x, func(s control.Session) bool { return s.DecidedBy == "cloud" }, "--mac", "aabbccddeeff")
	if err := x.edge.Cache().Flush(); err != nil {
		t.Fatal(err)
	}

	x.fr[0].Kill() // the WAN cut: the cloud vanishes
	waitFor(t, "cloud loss noticed", 10*time.Second, func() bool { return x.edge.Health().Local() })
	if r := radclient(t, x.auth, "auth", nasSecret, mab("aabbccddeeff", "AA-BB-CC-DD-EE-FF"))[0]; r.Code != "Access-Accept" {
		t.Fatalf("cached MAB during the outage: %s", r.Code)
	}
	if r := radclient(t, x.auth, "auth", nasSecret, mab("020000000007", "02-00-00-00-00-07"))[0]; r.Code != "Access-Accept" || r.Get("Tunnel-Private-Group-Id") != "41" {
		t.Fatalf("unknown MAB during the outage: %s %v", r.Code, r.Attrs)
	}
	cached := waitSession(t, x, func(s control.Session) bool { return s.Reconcile == "needed" }, "--mac", "aabbccddeeff")
	def := waitSession(t, x, func(s control.Session) bool { return s.Reconcile == "needed" }, "--mac", "02:00:00:00:00:07")
	if recs, _ := nas.CoA(); len(recs) != 0 {
		t.Fatalf("CoA during the outage: %v", recs)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := x.fr[0].Restart(ctx); err != nil { // the WAN is back
		t.Fatal(err)
	}
	waitFor(t, "reconciliation of both sessions", 30*time.Second, func() bool {
		recs, _ := nas.CoA()
		return len(recs) == 2
	})
	waitSession(t, x, func(s control.Session) bool { return s.Reconcile == "reconciled" }, "--mac", "aabbccddeeff")
	waitSession(t, x, func(s control.Session) bool { return s.Reconcile == "reconciled" }, "--mac", "02:00:00:00:00:07")
	recs, _ := nas.CoA()
	for i, want := range []string{cached.CallingStationID, def.CallingStationID} {
		m := recs[i].Map
		if m["Calling-Station-Id"] != want || m["Cisco-AVPair"] != "subscriber:command=reauthenticate" || m["NAS-IP-Address"] != "127.0.0.1" {
			t.Errorf("CoA %d (oldest first): %v, want Calling-Station-Id %s", i, m, want)
		}
	}
	p := x.edge.Status().Reconcile
	if p == nil || p.Sent != 2 || p.ACK != 2 || p.Rounds < 1 || p.Pending != 0 {
		t.Fatalf("reconcile progress %+v", p)
	}
	// Paced: the second request left no sooner than 1/rate after the first (the outcomes' times
	// are the NAS's answers, each within a loopback round trip of its request).
	evs := x.edge.Events().Recent(50)
	var at []time.Time
	for _, ev := range evs {
		if ev.Type == "NAC CoA Reauthenticate" && strings.HasPrefix(ev.Reason, "ack from reconcile") {
			at = append(at, ev.Time)
		}
	}
	if len(at) != 2 {
		t.Fatalf("reconciliation events %d, want 2: %+v", len(at), evs)
	}
	if gap := at[1].Sub(at[0]); gap < time.Duration(float64(time.Second)/rate)-50*time.Millisecond {
		t.Errorf("second request %v after the first, faster than %v/s", gap, rate)
	}
	out := mxedgeCLI(t, "status", "--socket", filepath.Join(x.lab.Dir, "control.sock"))
	if !strings.Contains(out, "0 pending, 2 sent (2 ack, 0 nak, 0 no answer), 0 skipped") {
		t.Errorf("status lacks reconciliation progress:\n%s", out)
	}
}

func waitFor(t *testing.T, what string, d time.Duration, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if ok() {
			return
		}
	}
	t.Fatalf("%s: not within %v", what, d)
}
