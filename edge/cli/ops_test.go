package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"mxedge/cache"
	"mxedge/edge"
	"mxedge/edge/control"
	"mxedge/edge/events"
	"mxedge/proxy"
)

var opsT0 = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

func testOpsEnv() opsEnv {
	return opsEnv{now: func() time.Time { return opsT0 }, timeout: 2 * time.Second}
}

// fakeStatus is the real edge.Status type, so the test breaks if its JSON changes under the CLI.
func fakeStatus() edge.Status {
	return edge.Status{
		Mode: "down", Since: opsT0.Add(-5 * time.Minute), Started: opsT0.Add(-26 * time.Hour),
		Upstreams: []proxy.UpstreamStatus{
			{Name: "cloud-a", State: proxy.StateDown, Since: opsT0.Add(-5 * time.Minute), Addr: netip.MustParseAddrPort("192.0.2.10:2083"),
				RTT: 23400 * time.Microsecond, Answered: 1200, Failures: 3, LastError: "radsec: dial 192.0.2.10:2083: i/o timeout"},
			{Name: "cloud-b", State: proxy.StateConnecting, Addr: netip.MustParseAddrPort("192.0.2.11:2083")},
		},
		Cache:    cache.Stats{Entries: 4211},
		Received: 5000, Forwarded: 4800, Answered: 4700, Local: 120,
		Dropped:  map[string]uint64{"bad-authenticator": 7, "unknown-client": 2},
		Spool:    17,
		Sessions: &edge.SessionStatus{Entries: 130, Live: 120, NeedReconcile: 4, Starts: 300, Stops: 180, Dropped: 2},
		Certs: []edge.CertExpiry{
			{File: "/etc/mxedge/edge.pem", Subject: "CN=edge-01.example.com", NotAfter: opsT0.Add(200 * 24 * time.Hour), Days: 200},
			{File: "/etc/mxedge/eap.pem", Subject: "CN=radius.example.com", NotAfter: opsT0.Add(9 * 24 * time.Hour), Days: 9},
		},
	}
}

func fakeClients() []control.NASClient {
	return []control.NASClient{
		{Name: "sw-core", Address: "10.1.0.0/24", Site: "HQ", Requests: 4000, Responses: 3990, BadAuthenticator: 0, Duplicates: 10, LastSeen: opsT0.Add(-3 * time.Second)},
		{Name: "wlc-2", Address: "10.2.0.5/32", Site: "Branch 2", Requests: 1000, Responses: 0, BadAuthenticator: 7, MissingMA: 1, LastSeen: opsT0.Add(-2 * time.Hour)},
		{Name: "radsec:ap-fleet", Address: "radsec", Requests: 0},
	}
}

func fakeBus() *events.Bus {
	bus := events.New(events.Options{})
	for _, ev := range []events.Event{
		{Time: opsT0.Add(-3 * time.Minute), Allowed: true, Method: "mab", MAC: "02:00:00:00:00:01", Identity: "020000000001", NAS: "sw-core", Site: "HQ", VLAN: "41", Source: "upstream", Upstream: "cloud-a",
			Type: "NAC Client Access Allowed"},
		{Time: opsT0.Add(-2 * time.Minute), Allowed: false, Method: "pap", Identity: "alice", NAS: "sw-core", Site: "HQ", Source: "upstream", Upstream: "cloud-a",
			Type: "NAC Client Access Denied"},
		{Time: opsT0.Add(-time.Minute), Allowed: true, Method: "eap-tls", MAC: "02:00:00:00:00:09", Identity: "host/laptop 9", NAS: "wlc-2", VLAN: "300", Source: "local", Reason: "cache-hit",
			Type: "NAC Client Access Allowed", CertSerial: "5f3a9c01", CertCN: "host/laptop 9", CertIssuer: "CN=Org Root CA,O=Example", CertNotAfter: opsT0.AddDate(1, 0, 0)},
		{Time: opsT0, Allowed: false, Method: "eap-tls", MAC: "02:00:00:00:00:0a", Identity: "bob@example.com", NAS: "wlc-2", Source: "local", Reason: "cert-expired",
			Type: "NAC User Certificate Expired", CertSerial: "00c4", CertCN: "bob", CertIssuer: "CN=Org Root CA,O=Example", CertNotAfter: opsT0.AddDate(0, 0, -1)},
	} {
		bus.Publish(ev)
	}
	return bus
}

// startFakeDaemon runs a control socket with the fake sources.
func startFakeDaemon(t *testing.T, o control.Options) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "mxops")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	o.Path, o.Group = filepath.Join(dir, "control.sock"), "-"
	s, err := control.NewServer(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("control Run: %v", err)
		}
	})
	return o.Path
}

func runOps(t *testing.T, cmd *cobra.Command, args ...string) (string, error) {
	t.Helper()
	var out, errw bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errw)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(context.Background())
	return out.String(), err
}

func opsGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs (run with -update to accept):\n--- got\n%s--- want\n%s", name, got, want)
	}
}

func TestOpsCommandsGolden(t *testing.T) {
	sock := startFakeDaemon(t, control.Options{
		Status:  func() any { return fakeStatus() },
		Events:  fakeBus(),
		Clients: fakeClients,
	})
	env := testOpsEnv()
	tests := []struct {
		golden string
		cmd    func() *cobra.Command
		args   []string
	}{
		{"status.golden", func() *cobra.Command { return newStatusCmdEnv(env) }, nil},
		{"status_json.golden", func() *cobra.Command { return newStatusCmdEnv(env) }, []string{"--json"}},
		{"events.golden", func() *cobra.Command { return newEventsCmdEnv(env) }, nil},
		{"events_last2.golden", func() *cobra.Command { return newEventsCmdEnv(env) }, []string{"-n", "2"}},
		{"events_json.golden", func() *cobra.Command { return newEventsCmdEnv(env) }, []string{"--json"}},
		{"clients.golden", func() *cobra.Command { return newClientsCmdEnv(env) }, nil},
		{"clients_json.golden", func() *cobra.Command { return newClientsCmdEnv(env) }, []string{"--json"}},
	}
	for _, tc := range tests {
		t.Run(tc.golden, func(t *testing.T) {
			out, err := runOps(t, tc.cmd(), append(tc.args, "--socket", sock)...)
			if err != nil {
				t.Fatal(err)
			}
			opsGolden(t, tc.golden, out)
		})
	}
}

// TestStatusMinimal: a daemon that serves only /v1/status (no clients endpoint, an empty document).
func TestStatusMinimal(t *testing.T) {
	sock := startFakeDaemon(t, control.Options{})
	out, err := runOps(t, newStatusCmdEnv(testOpsEnv()), "--socket", sock)
	if err != nil {
		t.Fatal(err)
	}
	opsGolden(t, "status_minimal.golden", out)
}

func TestOpsNotRunning(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "control.sock")
	for _, cmd := range []func() *cobra.Command{
		func() *cobra.Command { return newStatusCmdEnv(testOpsEnv()) },
		func() *cobra.Command { return newEventsCmdEnv(testOpsEnv()) },
		func() *cobra.Command { return newClientsCmdEnv(testOpsEnv()) },
	} {
		c := cmd()
		t.Run(c.Name(), func(t *testing.T) {
			_, err := runOps(t, c, "--socket", sock)
			if !errors.Is(err, control.ErrNoDaemon) || !strings.HasPrefix(err.Error(), "mxedge is not running (control socket "+sock+": ") {
				t.Fatalf("err = %v", err)
			}
		})
	}
}

func TestEventsFollowCommand(t *testing.T) {
	bus := fakeBus()
	sock := startFakeDaemon(t, control.Options{Events: bus})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := newEventsCmdEnv(testOpsEnv())
	pr := &syncBuffer{}
	cmd.SetOut(pr)
	cmd.SetArgs([]string{"--socket", sock, "--follow", "-n", "1"})
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx) }()
	waitUntil(t, func() bool { return bus.Subscribers() == 1 && strings.Count(pr.String(), "\n") == 1 })
	bus.Publish(events.Event{Time: opsT0.Add(time.Second), Allowed: true, Method: "mab", MAC: "02:00:00:00:00:02", NAS: "sw-core", Source: "local", Reason: "default-vlan",
		Type: "NAC Client Access Allowed"})
	waitUntil(t, func() bool { return strings.Count(pr.String(), "\n") == 2 })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("follow ended with %v", err)
	}
	opsGolden(t, "events_follow.golden", pr.String())
}

// syncBuffer is a bytes.Buffer safe for a writer and a polling reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func waitUntil(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// FuzzStatusView: whatever a daemon (of any version) answers on /v1/status, status prints it or
// returns an error, never panics.
func FuzzStatusView(f *testing.F) {
	b, _ := json.Marshal(fakeStatus())
	f.Add(b)
	f.Add([]byte(`{"upstreams":[{"State":-7},{"State":"weird"},{"State":99}],"certificates":[{"not_after":"2020-01-01T00:00:00Z"}]}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var st statusView
		if json.Unmarshal(b, &st) != nil {
			return
		}
		_ = writeStatus(io.Discard, st, opsT0)
	})
}

// FuzzEventLine: a followed stream's line decodes and prints, or is an error.
func FuzzEventLine(f *testing.F) {
	for _, ev := range fakeBus().Recent(0) {
		b, _ := json.Marshal(ev)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var ev events.Event
		if json.Unmarshal(b, &ev) != nil {
			return
		}
		_ = writeEvent(io.Discard, ev)
	})
}
