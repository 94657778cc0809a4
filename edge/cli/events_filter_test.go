package cli

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"mxedge/edge/control"
	"mxedge/edge/events"
)

func TestEventsFilters(t *testing.T) {
	sock := startFakeDaemon(t, control.Options{Events: fakeBus()})
	env := testOpsEnv()
	for _, tc := range []struct {
		args []string
		want []string // identities printed, in order
	}{
		{[]string{"--mac", "02-00-00-00-00-09"}, []string{"host/laptop 9"}},
		{[]string{"--mac", "0200.0000.0001"}, []string{"020000000001"}},
		{[]string{"--verdict", "reject"}, []string{"alice", "bob@example.com"}},
		{[]string{"--nas", "wlc-2"}, []string{"host/laptop 9", "bob@example.com"}},
		{[]string{"--nas", "wlc-2", "-n", "1"}, []string{"bob@example.com"}},
		{[]string{"--nas", "wlc-2", "--limit", "1"}, []string{"bob@example.com"}},
		{[]string{"--since", "90s"}, []string{"host/laptop 9", "bob@example.com"}},
		{[]string{"--since", "2026-11-22T11:58:00Z"}, []string{"alice", "host/laptop 9", "bob@example.com"}},
		{[]string{"--type", "denied"}, []string{"alice"}},
		{[]string{"--user", "ALICE"}, []string{"alice"}},
		{[]string{"--user", "bob"}, []string{"bob@example.com"}}, // the certificate's CN
		{[]string{"--site", "HQ", "--method", "mab"}, []string{"020000000001"}},
		{[]string{"--site", "nowhere"}, nil},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			out, err := runOps(t, newEventsCmdEnv(env), append(tc.args, "--socket", sock, "-o", "json")...)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
				if line == "" {
					continue
				}
				assertPublicSchema(t, line, "mxedge.event.v1", false)
				var d eventDoc
				if err := jsonUnmarshal(line, &d); err != nil {
					t.Fatal(err)
				}
				got = append(got, d.Identity)
			}
			if strings.Join(got, "|") != strings.Join(tc.want, "|") {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
	for _, bad := range [][]string{{"--mac", "zz"}, {"--since", "yesterday"}, {"--since", "-5m"}, {"--verdict", "maybe"}} {
		_, err := runOps(t, newEventsCmdEnv(env), append(bad, "--socket", sock)...)
		if !errors.Is(err, ErrUsage) {
			t.Errorf("%v: err = %v, want a usage error", bad, err)
		}
	}
}

func TestEventsSchemaGolden(t *testing.T) {
	sock := startFakeDaemon(t, control.Options{Events: fakeBus()})
	for _, f := range []string{"json", "yaml"} {
		out, err := runOps(t, newEventsCmdEnv(testOpsEnv()), "--socket", sock, "-o", f)
		if err != nil {
			t.Fatal(err)
		}
		opsGolden(t, "events_v1."+f+".golden", out)
	}
}

// TestEventsFollowFiltered: the backlog's last match, then only the live events that match.
func TestEventsFollowFiltered(t *testing.T) {
	bus := fakeBus()
	sock := startFakeDaemon(t, control.Options{Events: bus})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := newEventsCmdEnv(testOpsEnv())
	pr := &syncBuffer{}
	cmd.SetOut(pr)
	cmd.SetArgs([]string{"--socket", sock, "--follow", "-n", "1", "--nas", "sw-core"})
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx) }()
	waitUntil(t, func() bool { return bus.Subscribers() == 1 && strings.Count(pr.String(), "\n") == 1 })
	if !strings.Contains(pr.String(), "alice") {
		t.Fatalf("backlog: %q, want alice's event only", pr.String())
	}
	bus.Publish(events.Event{Time: opsT0.Add(time.Second), Allowed: true, Method: "mab", MAC: "02:00:00:00:00:03", NAS: "wlc-2", Source: "local"})
	bus.Publish(events.Event{Time: opsT0.Add(2 * time.Second), Allowed: true, Method: "mab", MAC: "02:00:00:00:00:04", NAS: "sw-core", Source: "local"})
	waitUntil(t, func() bool { return strings.Count(pr.String(), "\n") == 2 })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("follow ended with %v", err)
	}
	if out := pr.String(); strings.Contains(out, "02:00:00:00:00:03") || !strings.Contains(out, "02:00:00:00:00:04") {
		t.Fatalf("followed:\n%s", out)
	}
}
