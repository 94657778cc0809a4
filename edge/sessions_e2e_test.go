package edge_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mxedge/edge/control"
	"mxedge/pki/pkitest"
)

// sessionsJSON runs `mxedge sessions -o json` against the daemon and decodes it.
func sessionsJSON(t *testing.T, x *e2e, args ...string) control.SessionList {
	t.Helper()
	out := mxedgeCLI(t, append([]string{"sessions", "-o", "json", "--socket", filepath.Join(x.lab.Dir, "control.sock")}, args...)...)
	var l control.SessionList
	if err := json.Unmarshal([]byte(out), &l); err != nil {
		t.Fatalf("sessions -o json: %v\n%s", err, out)
	}
	if l.Schema != "mxedge.sessions.v1" {
		t.Fatalf("schema %q", l.Schema)
	}
	return l
}

// waitSession polls `mxedge sessions` (the writer commits within its 100 ms batch delay) until ok
// accepts the one session the filter selects, for at most 5 s.
func waitSession(t *testing.T, x *e2e, ok func(control.Session) bool, args ...string) control.Session {
	t.Helper()
	var last control.SessionList
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		last = sessionsJSON(t, x, args...)
		if len(last.Sessions) == 1 && ok(last.Sessions[0]) {
			return last.Sessions[0]
		}
	}
	t.Fatalf("sessions %v: %+v", args, last.Sessions)
	return control.Session{}
}

func sessionAcct(status, asid string, extra ...string) []string {
	return append([]string{`Acct-Status-Type = ` + status, `Acct-Session-Id = "` + asid + `"`, `User-Name = "aabbccddeeff"`,
		`Calling-Station-Id = "AA-BB-CC-DD-EE-FF"`, `NAS-Port = 50101`, `NAS-Port-Id = "GigabitEthernet1/0/1"`,
		`Called-Station-Id = "00-11-22-33-44-55:corp"`, `Framed-IP-Address = 10.9.0.7`,
		`Framed-IPv6-Prefix = 2001:db8:1::/64`}, extra...)
}

// TestE2ESessions: radclient as the NAS, FreeRADIUS as the cloud. A MAB Access-Request the cloud
// accepts, then Accounting Start, Interim-Update and Stop: the session shows in `mxedge sessions`
// with the Accept's and the accounting's fields, ends at the Stop, and is counted in status.
func TestE2ESessions(t *testing.T) {
	x := startE2E(t, 1, nil)
	r := radclient(t, x.auth, "auth", nasSecret, []string{
		`User-Name = "aabbccddeeff"`, `User-Password = "aabbccddeeff"`, `Calling-Station-Id = "AA-BB-CC-DD-EE-FF"`,
		`NAS-Port = 50101`, `NAS-Port-Id = "GigabitEthernet1/0/1"`, `Called-Station-Id = "00-11-22-33-44-55:corp"`,
		`Message-Authenticator = 0x00`,
	})[0]
	if r.Code != "Access-Accept" {
		t.Fatalf("MAB: %s", r.Code)
	}
	s := waitSession(t, x, func(s control.Session) bool { return s.State == "authorized" }, "--mac", "aabb.ccdd.eeff")
	if s.NAS != "lab-switch" || s.NASAddress != "127.0.0.1" || s.Vendor != "cisco" || s.Site != "MistAA Test Site" ||
		s.NASPort == nil || *s.NASPort != 50101 || s.NASPortID != "GigabitEthernet1/0/1" || s.SSID != "corp" ||
		s.MAC != "aa:bb:cc:dd:ee:ff" || s.CallingStationID != "AA-BB-CC-DD-EE-FF" || s.UserName != "aabbccddeeff" ||
		s.Method != "mab" || s.VLAN != "400" || s.DecidedBy != "cloud" || s.Reconcile != "none" || s.AuthorizedAt.IsZero() {
		t.Fatalf("after the Accept: %+v", s)
	}

	if rs := radclient(t, x.acct, "acct", nasSecret, sessionAcct("Start", "0000001A", `Acct-Interim-Interval = 600`)); rs[0].Code != "Accounting-Response" {
		t.Fatalf("start: %s", rs[0].Code)
	}
	s = waitSession(t, x, func(s control.Session) bool { return s.State == "active" }, "--ip", "10.9.0.7")
	if s.ID == 0 || s.AcctSessionID != "0000001A" || s.FramedIPv6Prefix != "2001:db8:1::/64" || s.InterimSeconds != 600 ||
		s.VLAN != "400" || s.DecidedBy != "cloud" || s.StartedAt.IsZero() {
		t.Fatalf("after the Start (joined to the Accept): %+v", s)
	}
	id := s.ID
	radclient(t, x.acct, "acct", nasSecret, sessionAcct("Interim-Update", "0000001A", `Acct-Input-Octets = 1000`,
		`Acct-Output-Octets = 2000`, `Acct-Input-Gigawords = 1`, `Acct-Session-Time = 600`))
	s = waitSession(t, x, func(s control.Session) bool { return s.InputOctets == 1<<32+1000 }, "--user", "AABBCCDDEEFF")
	if s.ID != id || s.OutputOctets != 2000 || s.SessionTimeSeconds != 600 {
		t.Fatalf("after the Interim-Update: %+v", s)
	}
	radclient(t, x.acct, "acct", nasSecret, sessionAcct("Stop", "0000001A", `Acct-Input-Octets = 5000`,
		`Acct-Session-Time = 900`, `Acct-Terminate-Cause = User-Request`))
	s = waitSession(t, x, func(s control.Session) bool { return s.State == "stopped" }, "--nas", "lab-switch", "--state", "stopped")
	if s.ID != id || s.TerminateCause != 1 || s.SessionTimeSeconds != 900 || s.StoppedAt.IsZero() ||
		!s.ExpiresAt.Equal(s.StoppedAt.Add(5*time.Minute)) {
		t.Fatalf("after the Stop: %+v", s)
	}
	if l := sessionsJSON(t, x, "--state", "active"); len(l.Sessions) != 0 {
		t.Fatalf("still active: %+v", l.Sessions)
	}
	// The cloud got every record: the table watched, it did not consume.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if recs, err := x.fr[0].WaitAccounting(ctx, 3); err != nil || len(recs) != 3 {
		t.Fatalf("freeradius accounting: %d records, %v", len(recs), err)
	}
	st := x.edge.Status().Sessions
	if st == nil || st.Entries != 1 || st.Live != 0 || st.Starts != 1 || st.Stops != 1 || st.Dropped != 0 {
		t.Fatalf("status: %+v", st)
	}
	// It survives a restart.
	x.stop()
	x.start(t)
	if s := waitSession(t, x, func(s control.Session) bool { return true }, "--mac", "aa:bb:cc:dd:ee:ff"); s.ID != id || s.State != "stopped" {
		t.Fatalf("after a restart: %+v", s)
	}
}

// TestE2ESessionsAdmittedLocally: the cloud is killed; a MAB client the cloud admitted before is
// admitted from the cache, an unknown one gets the default VLAN. Both sessions are marked as
// decided locally and needing reconciliation, oldest first; their accounting is spooled and
// still joins them.
func TestE2ESessionsAdmittedLocally(t *testing.T) {
	x := startE2E(t, 1, func(*pkitest.Lab) string { return "survivability:\n  default_mab_vlan: \"41\"\n" })
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

	x.fr[0].Kill()
	for deadline := time.Now().Add(5 * time.Second); !x.edge.Health().Local() && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	if !x.edge.Health().Local() {
		t.Fatal("cloud loss not detected")
	}
	// Re-authentication of the cached client, then a client the cloud never saw.
	if r := radclient(t, x.auth, "auth", nasSecret, mab("aabbccddeeff", "AA-BB-CC-DD-EE-FF"))[0]; r.Code != "Access-Accept" {
		t.Fatalf("cached MAB during the outage: %s", r.Code)
	}
	if r := radclient(t, x.auth, "auth", nasSecret, mab("020000000007", "02-00-00-00-00-07"))[0]; r.Code != "Access-Accept" {
		t.Fatalf("unknown MAB during the outage: %s", r.Code)
	}
	cached := waitSession(t, x, func(s control.Session) bool { return s.DecidedBy == "cache" }, "--mac", "aabbccddeeff")
	def := waitSession(t, x, func(s control.Session) bool { return s.DecidedBy == "default" }, "--mac", "02:00:00:00:00:07")
	if cached.Reconcile != "needed" || cached.VLAN != "400" || def.Reconcile != "needed" || def.VLAN != "41" || def.Method != "mab" {
		t.Fatalf("local sessions:\n%+v\n%+v", cached, def)
	}
	// Accounting during the outage is spooled, acknowledged, and joins the session.
	if rs := radclient(t, x.acct, "acct", nasSecret, []string{`Acct-Status-Type = Start`, `Acct-Session-Id = "L1"`,
		`Calling-Station-Id = "02-00-00-00-00-07"`, `NAS-Port-Id = "Gi1/0/7"`, `Framed-IP-Address = 10.9.0.8`}); rs[0].Code != "Accounting-Response" {
		t.Fatalf("spooled start: %s", rs[0].Code)
	}
	s := waitSession(t, x, func(s control.Session) bool { return s.State == "active" }, "--ip", "10.9.0.8")
	if s.ID != def.ID || s.AcctSessionID != "L1" || s.DecidedBy != "default" || s.Reconcile != "needed" {
		t.Fatalf("spooled start joined: %+v", s)
	}
	// The reconciliation list, oldest Accept first.
	need, err := x.edge.Sessions().NeedingReconcile(0)
	if err != nil || len(need) != 2 || need[0].ID != cached.ID || need[1].ID != def.ID {
		t.Fatalf("needing reconciliation: %+v %v", need, err)
	}
	if st := x.edge.Status().Sessions; st.NeedReconcile != 2 || st.Live != 2 {
		t.Fatalf("status: %+v", st)
	}
	out := mxedgeCLI(t, "status", "--socket", filepath.Join(x.lab.Dir, "control.sock"))
	if want := fmt.Sprintf("sessions     %d live, 0 kept after their stop, 2 admitted locally awaiting reconciliation", 2); !strings.Contains(out, want) {
		t.Fatalf("status lacks %q:\n%s", want, out)
	}
}
