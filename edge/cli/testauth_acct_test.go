package cli

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"mxedge/edge/peertest"
)

// TestTestAuthFreeRADIUS: against FreeRADIUS, each outcome has its exit code, arbitrary attributes
// reach the server by dictionary name, and accounting Start/Interim/Stop land in its detail file.
func TestTestAuthFreeRADIUS(t *testing.T) {
	auth := fmt.Sprintf("127.0.0.1:%d", peertest.FreePort(t))
	acct := fmt.Sprintf("127.0.0.1:%d", peertest.FreePort(t))
	certs := peertest.NewCerts(t)
	fr := peertest.StartFreeRADIUS(t, peertest.FreeRADIUSOptions{
		UDPAuthAddr: auth, UDPAcctAddr: acct, AccountingLog: true,
		ServerCert: certs.ServerCert, ServerKey: certs.ServerKey, CA: certs.CA,
		Users: []peertest.User{
			{Name: "alice", Password: "pw", Reply: []string{`Tunnel-Type = VLAN`, `Tunnel-Medium-Type = IEEE-802`, `Tunnel-Private-Group-Id = "300"`}},
			{Name: "mallory", Password: "pw", Reject: true, Reply: []string{`Reply-Message = "go away"`}},
		},
	})
	silent, err := net.ListenPacket("udp", "127.0.0.1:0") // reads nothing, answers nothing
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	closed := fmt.Sprintf("127.0.0.1:%d", peertest.FreePort(t)) // nothing listens: ICMP port unreachable

	udp := []string{"--server", auth, "--secret", "testing123"}
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"accept", append(udp, "--user", "alice", "--password", "pw"), ExitTestAccept, `Tunnel-Private-Group-Id = "300"`},
		{"reject", append(udp, "--user", "mallory", "--password", "pw"), ExitTestReject, `Reply-Message = "go away"`},
		{"usage", append(udp, "--user", "alice", "--password", "pw", "-a", "No-Such-Attribute = 1"), ExitTestUsage, ""},
		{"timeout", []string{"--server", silent.LocalAddr().String(), "--secret", "s", "--user", "alice", "--password", "pw",
			"--timeout", "300ms", "--retries", "1"}, ExitTestTimeout, ""},
		{"unreachable", []string{"--server", closed, "--secret", "s", "--status", "--timeout", "2s"}, ExitTestError, ""},
		{"acct start", []string{"--server", acct, "--secret", "testing123", "--acct", "start", "--user", "alice", "--session-id", "S-1",
			"-a", "Framed-IP-Address = 10.1.2.3", "-a", "NAS-Port-Type = Wireless-802.11", "-a", "Cisco-AVPair = \"audit-session-id=42\"",
			"-a", "Class = 0x6162"}, ExitTestAccept, "Received Accounting-Response"},
		{"acct interim", []string{"--server", acct, "--secret", "testing123", "--acct", "interim", "--mac", "02:00:00:00:00:07",
			"--session-id", "S-2", "--session-time", "90s", "-a", "Acct-Input-Octets = 1234"}, ExitTestAccept, "Received Accounting-Response"},
		{"acct stop", []string{"--server", acct, "--secret", "testing123", "--acct", "stop", "--user", "alice", "--session-id", "S-1",
			"--session-time", "1h", "-a", "Acct-Terminate-Cause = Idle-Timeout"}, ExitTestAccept, "Received Accounting-Response"},
		{"acct wrong secret", []string{"--server", acct, "--secret", "wrong", "--acct", "start", "--user", "alice",
			"--timeout", "600ms", "--retries", "1"}, ExitTestTimeout, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := runTestAuthCmd(t, tc.args...)
			if got := exitCode(err); got != tc.code {
				t.Fatalf("exit %d (%v), want %d\n%s", got, err, tc.code, out)
			}
			if !strings.Contains(out, tc.want) {
				t.Fatalf("output lacks %q:\n%s", tc.want, out)
			}
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	recs, err := fr.WaitAccounting(ctx, 3)
	if err != nil || len(recs) != 3 {
		t.Fatalf("accounting records: %d (%v)", len(recs), err)
	}
	for i, want := range []map[string]string{
		{"Acct-Status-Type": "Start", "Acct-Session-Id": "S-1", "User-Name": "alice", "Framed-IP-Address": "10.1.2.3",
			"NAS-Port-Type": "Wireless-802.11", "Cisco-AVPair": "audit-session-id=42", "Class": "0x6162", "NAS-Identifier": "mxedge-test"},
		{"Acct-Status-Type": "Interim-Update", "Acct-Session-Id": "S-2", "User-Name": "020000000007",
			"Calling-Station-Id": "02-00-00-00-00-07", "Acct-Session-Time": "90", "Acct-Input-Octets": "1234"},
		{"Acct-Status-Type": "Stop", "Acct-Session-Id": "S-1", "Acct-Session-Time": "3600", "Acct-Terminate-Cause": "Idle-Timeout"},
	} {
		for k, v := range want {
			if got := recs[i].Map[k]; got != v {
				t.Errorf("record %d: %s = %q, want %q (all: %v)", i, k, got, v, recs[i].Map)
			}
		}
	}
}

func TestTestAuthAcctUsage(t *testing.T) {
	for _, args := range [][]string{
		{"--secret", "s", "--acct", "begin", "--user", "a"},
		{"--secret", "s", "--acct", "start"},
		{"--secret", "s", "--acct", "start", "--user", "a", "--password", "p"},
		{"--secret", "s", "--acct", "stop", "--user", "a", "--session-time", "-1s"},
		{"--secret", "s", "--acct", "start", "--status"},
	} {
		_, err := runTestAuthCmd(t, args...)
		if exitCode(err) != ExitTestUsage {
			t.Errorf("%v: exit %d (%v), want %d", args, exitCode(err), err, ExitTestUsage)
		}
	}
}
