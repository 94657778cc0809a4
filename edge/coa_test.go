package edge_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mxedge/edge/cli"
	"mxedge/edge/peertest"
	"mxedge/pki/pkitest"
	"mxedge/proxy/packet"
	"mxedge/proxy/radsectest"
	"mxedge/survivability"
)

// TestE2ECoARelay: the daemon as built from a configuration file relays CoA and Disconnect to a
// NAS (FreeRADIUS as the stand-in, its CoA port set per client with coa_port), from radclient as
// an on-prem Dynamic Authorization client and from the cloud over the upstream RadSec connection,
// and each outcome is a NAC event.
func TestE2ECoARelay(t *testing.T) {
	peertest.Require(t, "freeradius", "radclient")
	certs := peertest.NewCerts(t)
	coaPort := peertest.FreePort(t)
	nas := peertest.StartFreeRADIUS(t, peertest.FreeRADIUSOptions{
		CoAAddr:    fmt.Sprintf("127.0.0.1:%d", coaPort),
		ServerCert: certs.ServerCert, ServerKey: certs.ServerKey, CA: certs.CA,
	})
	lab := pkitest.Must(t)
	cloud, err := radsectest.Start(lab.ServerTLS(), "radsec")
	if err != nil {
		t.Fatal(err)
	}
	defer cloud.Close()
	clients := fmt.Sprintf(`  - {name: sw1, address: 127.0.0.1, secret: testing123, vendor: cisco, coa_port: %d}
dynamic_authorization:
  listen: ["127.0.0.1:0"]
  timeout: 200ms
  retries: 1
  clients:
    - {name: ops, address: 127.0.0.1, secret: ops-secret}
`, coaPort)
	dir := t.TempDir()
	g := startGoEdge(t, writeConfig(t, dir, lab, clients, cloud))
	addrs := g.e.DynAuth().Addrs()
	if len(addrs) != 1 {
		t.Fatalf("dynamic authorization listeners %v", addrs)
	}
	found := false
	for _, l := range g.e.Status().Listeners {
		found = found || l == "dynauth udp "+addrs[0].String()
	}
	if !found {
		t.Errorf("status listeners %v lack the dynamic authorization listener", g.e.Status().Listeners)
	}

	rep := radclient(t, addrs[0].String(), "disconnect", "ops-secret",
		[]string{"Message-Authenticator = 0x00", "NAS-IP-Address = 127.0.0.1", `User-Name = "alice"`, `Calling-Station-Id = "aa-bb-cc-dd-ee-ff"`})[0]
	if rep.Code != "Disconnect-ACK" {
		t.Fatalf("radclient disconnect: %q %v", rep.Code, rep.Attrs)
	}
	rep = radclient(t, addrs[0].String(), "coa", "ops-secret",
		[]string{"Message-Authenticator = 0x00", "NAS-IP-Address = 127.0.0.1", `User-Name = "silent"`})[0]
	if rep.Code != "CoA-NAK" || rep.Get("Error-Cause") != "Resources-Unavailable" {
		t.Fatalf("radclient coa to a NAS that does not answer: %q %v", rep.Code, rep.Attrs)
	}

	// mxedge test coa, radclient-style, against the same listener.
	out := mxedgeCLI(t, "test", "coa", "disconnect", "--server", addrs[0].String(), "--secret", "ops-secret",
		"--nas-ip", "127.0.0.1", "--mac", "aa-bb-cc-dd-ee-ff", "--user", "alice")
	if !strings.HasPrefix(out, "Received Disconnect-ACK from "+addrs[0].String()) {
		t.Errorf("mxedge test coa disconnect printed %q", out)
	}
	tc := cli.New(cli.BuildInfo{})
	var tbuf bytes.Buffer
	tc.SetOut(&tbuf)
	tc.SetErr(&tbuf)
	tc.SetArgs([]string{"test", "coa", "coa", "--server", addrs[0].String(), "--secret", "ops-secret", "--nas-ip", "192.0.2.9", "--user", "bob"})
	if err := tc.Execute(); err == nil || !strings.Contains(tbuf.String(), "Error-Cause = Proxy-Request-Not-Routable") {
		t.Errorf("test coa to an unknown NAS: %v\n%s", err, tbuf.String())
	}

	// The cloud's CoA on the upstream connection, answered on it.
	var req packet.Packet
	build := func(id uint8, secret []byte) (packet.Packet, error) {
		b := packet.New(nil, packet.CodeCoARequest, id, nil)
		b.AddMA()
		b.AddString(packet.AttrNASIdentifier, "sw1")
		b.AddString(packet.AttrUserName, "bob")
		p, err := b.Finish(secret, nil)
		req = p
		return p, err
	}
	var resp packet.Packet
	for range 100 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		resp, err = cloud.SendRequest(ctx, build)
		cancel()
		if !errors.Is(err, radsectest.ErrNoConn) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("cloud CoA: %v", err)
	}
	if resp.Code() != packet.CodeCoAACK || !packet.CheckResponseAuthenticator(resp, req.Authenticator(), []byte("radsec")) {
		t.Fatalf("cloud CoA answered %v (or not signed for the cloud)", resp.Code())
	}
	if recs, _ := nas.CoA(); len(recs) != 4 {
		t.Errorf("the NAS logged %d requests, want 4", len(recs))
	}

	// An operator, through the control socket: mxedge coa reauth renders Cisco's AVPair.
	sock := filepath.Join(dir, "control.sock")
	out = mxedgeCLI(t, "coa", "reauth", "--socket", sock, "--nas", "sw1", "--mac", "aa-bb-cc-dd-ee-ff")
	if !strings.HasPrefix(out, "CoA-Request to sw1: ack") {
		t.Errorf("mxedge coa reauth printed %q", out)
	}
	recs, _ := nas.CoA()
	if len(recs) != 5 || recs[4].Map["Cisco-AVPair"] != "subscriber:command=reauthenticate" ||
		recs[4].Map["Calling-Station-Id"] != "aa-bb-cc-dd-ee-ff" {
		t.Errorf("the NAS got %v", recs[len(recs)-1].Map)
	}
	cmd := cli.New(cli.BuildInfo{})
	var buf bytes.Buffer
	cmd.SetOut(&buf)
	cmd.SetErr(&buf)
	cmd.SetArgs([]string{"coa", "disconnect", "--socket", sock, "--nas", "sw1", "--user", "nosession"})
	if err := cmd.Execute(); err == nil || !strings.Contains(buf.String(), "Disconnect-Request to sw1: nak (Error-Cause 503 Session Context Not Found)") {
		t.Errorf("a NAK: err %v, printed %q", err, buf.String())
	}
	cmd = cli.New(cli.BuildInfo{})
	cmd.SetOut(&buf)
	cmd.SetErr(&buf)
	cmd.SetArgs([]string{"coa", "disconnect", "--socket", sock, "--mac", "aa-bb-cc-dd-ee-ff"})
	if err := cmd.Execute(); err == nil || !strings.Contains(err.Error(), "--nas") {
		t.Errorf("no NAS and no session found: %v", err)
	}

	st := g.e.DynAuth().Stats()
	naks := st.NAKs()
	// ACKs: radclient's disconnect, test coa's, the cloud's CoA, coa reauth; NAKs: 506 (silent
	// NAS), 502 (test coa to an unknown NAS), 503 (the NAS has no session for "nosession").
	if st.ACK.Load() != 4 || st.Timeouts.Load() != 1 || naks[506] != 1 || naks[502] != 1 || naks[503] != 1 {
		t.Errorf("relay counters: ack %d timeouts %d naks %v", st.ACK.Load(), st.Timeouts.Load(), naks)
	}
	evs := g.e.Events().Recent(10)
	var disc, reauth int
	for _, ev := range evs {
		switch ev.Type {
		case survivability.TypeCoADisconnect:
			disc++
			if ev.Identity == "alice" && (ev.NAS != "sw1" || !ev.Allowed || ev.MAC != "aa-bb-cc-dd-ee-ff") {
				t.Errorf("disconnect event %+v", ev)
			}
		case survivability.TypeCoAReauthenticate:
			reauth++
			if ev.Upstream == "up" && (!ev.Allowed || ev.Source != "upstream") {
				t.Errorf("cloud CoA event %+v", ev)
			}
			if ev.Identity == "silent" && (ev.Allowed || ev.Reason != "timeout from ops by nas-ip-address error-cause 506") {
				t.Errorf("timeout event %+v", ev)
			}
		}
	}
	if disc != 3 || reauth != 4 {
		t.Errorf("events: %d disconnect, %d reauthenticate, want 3 and 4: %+v", disc, reauth, evs)
	}
}
