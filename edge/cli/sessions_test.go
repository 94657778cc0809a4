package cli

import (
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"mxedge/cache/session"
	"mxedge/edge"
	"mxedge/edge/control"
)

// fakeSessions are real records rendered by edge.SessionWire, so the golden files follow the
// daemon's wire format.
func fakeSessions() []control.Session {
	rs := []session.Record{
		{ID: 1, NAS: "sw-core", NASAddr: "10.1.0.2", Vendor: "cisco", Site: "HQ", NASPort: 50101, HasNASPort: true,
			NASPortID: "GigabitEthernet1/0/1", CallingStationID: "02-00-00-00-00-01", MAC: "02:00:00:00:00:01",
			UserName: "020000000001", Method: "mab", VLAN: "41", Class: []byte{0xca, 0xfe}, Decider: session.DecidedCloud,
			AcctSessionID: "0000001A", FramedIP: netip.MustParseAddr("10.9.0.7"), State: session.StateActive,
			InputOctets: 123456, OutputOctets: 654321, SessionTime: 600, Interim: 10 * time.Minute,
			Authorized: opsT0.Add(-11 * time.Minute), Started: opsT0.Add(-10 * time.Minute), Updated: opsT0.Add(-30 * time.Second),
			Expires: opsT0.Add(30 * time.Minute)},
		{ID: 2, NAS: "wlc-2", NASAddr: "10.2.0.5", Vendor: "aruba", Site: "Branch 2", CalledStationID: "00-11-22-33-44-55:corp",
			SSID: "corp", CallingStationID: "02-00-00-00-00-09", MAC: "02:00:00:00:00:09", UserName: "host/laptop 9",
			Method: "eap-tls", VLAN: "300", Decider: session.DecidedCache, Reconcile: session.ReconcileNeeded,
			FramedIPv6: netip.MustParseAddr("2001:db8::9"), State: session.StateAuthorized,
			Authorized: opsT0.Add(-2 * time.Minute), Updated: opsT0.Add(-2 * time.Minute), Expires: opsT0.Add(88 * time.Minute)},
		{ID: 3, NAS: "sw-core", NASAddr: "10.1.0.2", Site: "HQ", NASPort: 50102, HasNASPort: true, MAC: "02:00:00:00:00:02",
			Decider: session.DecidedUnknown, AcctSessionID: "0000001B", State: session.StateStopped, TerminateCause: 1,
			SessionTime: 30, Started: opsT0.Add(-5 * time.Minute), Updated: opsT0.Add(-time.Minute), Stopped: opsT0.Add(-time.Minute),
			Expires: opsT0.Add(4 * time.Minute)},
	}
	out := make([]control.Session, len(rs))
	for i := range rs {
		out[i] = edge.SessionWire(&rs[i])
	}
	return out
}

func TestSessionsGolden(t *testing.T) {
	var got []control.SessionQuery
	sock := startFakeDaemon(t, control.Options{Sessions: func(_ context.Context, q control.SessionQuery) ([]control.Session, error) {
		got = append(got, q)
		if _, err := edge.SessionQuery(q); err != nil {
			return nil, err
		}
		if q.NAS == "nobody" {
			return nil, nil
		}
		return fakeSessions(), nil
	}})
	env := testOpsEnv()
	for _, tc := range []struct {
		golden string
		args   []string
	}{
		{"sessions.golden", nil},
		{"sessions_v1.json.golden", []string{"-o", "json"}},
		{"sessions_v1.yaml.golden", []string{"-o", "yaml"}},
		{"sessions_v1_empty.json.golden", []string{"--json", "--nas", "nobody"}},
	} {
		t.Run(tc.golden, func(t *testing.T) {
			out, err := runOps(t, newSessionsCmdEnv(env), append(tc.args, "--socket", sock)...)
			if err != nil {
				t.Fatal(err)
			}
			opsGolden(t, tc.golden, out)
			if len(tc.args) > 0 {
				assertPublicSchema(t, out, "mxedge.sessions.v1", tc.args[len(tc.args)-1] == "yaml")
			}
		})
	}
	// The JSON document is the mxedge.sessions.v1 schema (docs/output.md), snake_case, times RFC 3339 UTC.
	out, err := runOps(t, newSessionsCmdEnv(env), "--json", "--socket", sock)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Schema   string           `json:"schema"`
		Sessions []map[string]any `json:"sessions"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Schema != "mxedge.sessions.v1" || len(doc.Sessions) != 3 || doc.Sessions[0]["updated_at"] != "2026-11-22T11:59:30Z" ||
		doc.Sessions[0]["nas_port"] != float64(50101) || doc.Sessions[1]["decided_by"] != "cache" || doc.Sessions[1]["reconcile"] != "needed" {
		t.Fatalf("document: %s", out)
	}
	// Every key is present in every session (docs/output.md): an absent time or port is null.
	for i, s := range doc.Sessions {
		if len(s) != len(doc.Sessions[0]) {
			t.Errorf("session %d has %d keys, the first %d", i, len(s), len(doc.Sessions[0]))
		}
	}
	if v, ok := doc.Sessions[1]["nas_port"]; !ok || v != nil {
		t.Errorf("absent nas_port: %v %v, want null", v, ok)
	}
	if v, ok := doc.Sessions[1]["stopped_at"]; !ok || v != nil {
		t.Errorf("absent stopped_at: %v %v, want null", v, ok)
	}
	// Every filter reaches the daemon.
	got = nil
	if _, err := runOps(t, newSessionsCmdEnv(env), "--socket", sock, "--nas", "sw-core", "--site", "HQ", "--mac", "0200.0000.0001",
		"--user", "Alice", "--ip", "10.9.0.7", "--state", "active", "--limit", "5"); err != nil {
		t.Fatal(err)
	}
	want := control.SessionQuery{NAS: "sw-core", Site: "HQ", MAC: "0200.0000.0001", User: "Alice", IP: "10.9.0.7", State: "active", Limit: 5}
	if len(got) != 1 || got[0] != want {
		t.Fatalf("query %+v, want %+v", got, want)
	}
	// Bad filters are usage errors naming the filter, before the daemon is asked.
	for _, args := range [][]string{{"--mac", "zz"}, {"--ip", "10.0.0"}, {"--state", "gone"}, {"-o", "xml"}, {"--json", "-o", "yaml"}, {"--limit", "-1"}} {
		got = nil
		_, err := runOps(t, newSessionsCmdEnv(env), append(args, "--socket", sock)...)
		if !errors.Is(err, ErrUsage) || !strings.Contains(err.Error(), strings.TrimPrefix(args[len(args)-2], "--")) && args[len(args)-2] != "-o" {
			t.Errorf("%v: %v, want a usage error naming it", args, err)
		}
		if len(got) != 0 {
			t.Errorf("%v: the daemon was asked", args)
		}
	}
}

func TestSessionsNoDaemon(t *testing.T) {
	_, err := runOps(t, newSessionsCmdEnv(testOpsEnv()), "--socket", t.TempDir()+"/none.sock")
	if err == nil || !strings.Contains(err.Error(), "mxedge is not running") {
		t.Fatalf("no daemon: %v", err)
	}
}

// TestSessionsCompletion: --state completes its three values.
func TestSessionsCompletion(t *testing.T) {
	out, err := runOps(t, New(BuildInfo{}), "__complete", "sessions", "--state", "")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"authorized\n", "active\n", "stopped\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("completion lacks %q:\n%s", want, out)
		}
	}
}
