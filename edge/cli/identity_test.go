package cli

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"mxedge/edge"
	"mxedge/edge/control"
	"mxedge/edge/identity"
)

func fakeIdentity(now time.Time) edge.IdentityStatus {
	ok, bad := now.Add(-3*time.Second), now.Add(-90*time.Second)
	return edge.IdentityStatus{Schema: identity.StatusSchema, Time: now, Sessions: 12, Dropped: map[string]uint64{},
		Sinks: []identity.SinkStatus{
			{Name: "jims", Type: "https", State: "up", Queued: 0, Enqueued: 30, Sent: 30,
				SentByType: map[string]uint64{"connect": 12, "update": 10, "disconnect": 8}, LastOK: &ok},
			{Name: "siem", Type: "syslog", State: "down", Queued: 17, Enqueued: 17, Failed: 4, Downs: 1, Coalesced: 2, Dropped: 1,
				SentByType: map[string]uint64{"connect": 0, "update": 0, "disconnect": 0},
				LastError:  "identity: syslog: dial tcp 192.0.2.9:6514: connect: connection refused", LastErrAt: &bad},
		}}
}

func TestIdentityStatusCommand(t *testing.T) {
	env := testOpsEnv()
	st := fakeIdentity(env.now())
	sock := startFakeDaemon(t, control.Options{Identity: func() any { return st }})
	out, err := runOps(t, newIdentityCmdEnv(env), "status", "--socket", sock)
	if err != nil {
		t.Fatal(err)
	}
	opsGolden(t, "identity_status.golden", out)

	out, err = runOps(t, newIdentityCmdEnv(env), "status", "--socket", sock, "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	opsGolden(t, "identity_status_v1.golden", out)
	var doc map[string]any
	if err := json.Unmarshal([]byte(out), &doc); err != nil || doc["schema"] != "mxedge.identity.v1" {
		t.Fatalf("json: %v %s", err, out)
	}
	s0 := doc["sinks"].([]any)[0].(map[string]any)
	for _, k := range []string{"queued", "sent_by_type", "failed_attempts", "last_error", "last_error_at", "last_success_at", "coalesced", "dropped", "down_transitions"} {
		if _, ok := s0[k]; !ok {
			t.Errorf("json lacks %q (every key is always present): %s", k, out)
		}
	}
	if y, err := runOps(t, newIdentityCmdEnv(env), "status", "--socket", sock, "-o", "yaml"); err != nil || !strings.HasPrefix(y, "schema: mxedge.identity.v1") {
		t.Fatalf("yaml: %v %s", err, y)
	}
	if _, err := runOps(t, newIdentityCmdEnv(env), "status", "--socket", sock, "-o", "xml"); err == nil || !strings.Contains(err.Error(), "want text, json or yaml") {
		t.Fatalf("bad -o: %v", err)
	}
	// A daemon built without identity push answers 503; the command says so.
	sock = startFakeDaemon(t, control.Options{})
	if _, err := runOps(t, newIdentityCmdEnv(env), "status", "--socket", sock); err == nil || !strings.Contains(err.Error(), "identity push not available") {
		t.Fatalf("no identity: %v", err)
	}
}
