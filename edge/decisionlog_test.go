package edge_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mxedge/edge"
	"mxedge/edge/config"
	"mxedge/pki/pkitest"
)

// TestDecisionLogFromRadclient: radclient as the NAS, the cloud (a RadSec responder) accepting
// one user and rejecting another; the daemon's log gets one "access decision" line for each, with
// the NAS port and SSID the request carried and who decided. A reload to log.level: debug takes
// effect without a restart (requests and replies dumped, secrets redacted), and
// log.decisions: rejects then leaves the accepts out.
func TestDecisionLogFromRadclient(t *testing.T) {
	lab := pkitest.Must(t)
	up := startUpstream(t, lab)
	dir := t.TempDir()
	c := writeConfig(t, dir, lab, `  - {name: sw1, address: 127.0.0.1, secret: "a-secret-nobody-guesses-42", site: hq}`, up)
	logs := &syncBuffer{}
	level := new(slog.LevelVar)
	e, err := edge.New(c, edge.Options{Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: level})), LogLevel: level,
		MetricsAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); e.Run(ctx) }()
	<-e.Ready()
	t.Cleanup(func() { cancel(); <-done })
	auth := e.AuthAddrs()[0].String()
	req := func(user string) []string {
		return []string{`User-Name = "` + user + `"`, `User-Password = "pw"`, `NAS-Port = 7`, `NAS-Port-Id = "GigabitEthernet1/0/7"`,
			`Called-Station-Id = "AA-BB-CC-DD-EE-FF:corp-wifi"`, `Calling-Station-Id = "02-00-00-00-00-09"`, `Message-Authenticator = 0x00`}
	}
	replies := radclient(t, auth, "auth", "a-secret-nobody-guesses-42", req("alice"), req("reject"))
	if len(replies) != 2 {
		t.Fatalf("replies %+v", replies)
	}
	wantLine := func(substr string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(logs.String(), substr) {
			if time.Now().After(deadline) {
				t.Fatalf("no %q in the log:\n%s", substr, logs.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	wantLine(`msg="access decision" code=Access-Accept nas=sw1 port=GigabitEthernet1/0/7 ssid=corp-wifi mac=02:00:00:00:00:09 user=alice method=pap decider=cloud upstream=up site=hq`)
	wantLine(`msg="access decision" code=Access-Reject nas=sw1 port=GigabitEthernet1/0/7 ssid=corp-wifi mac=02:00:00:00:00:09 user=reject method=pap decider=cloud upstream=up site=hq`)
	if strings.Contains(logs.String(), `"pw"`) || strings.Contains(logs.String(), "a-secret-nobody") {
		t.Fatal("a secret in the log")
	}

	// log.level and log.decisions apply on reload.
	doc, err := os.ReadFile(c.Path)
	if err != nil {
		t.Fatal(err)
	}
	next := filepath.Join(dir, "next.yaml")
	if err := os.WriteFile(next, append([]byte("log: {level: debug, decisions: rejects}\n"), doc...), 0o600); err != nil {
		t.Fatal(err)
	}
	nc, err := config.Load(next)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Reload(context.Background(), nc); err != nil {
		t.Fatal(err)
	}
	if level.Level() != slog.LevelDebug {
		t.Fatalf("level %v after the reload, want debug", level.Level())
	}
	before := strings.Count(logs.String(), `msg="access decision" code=Access-Accept`)
	radclient(t, auth, "auth", "a-secret-nobody-guesses-42", req("bob"), req("reject"))
	// The decision is logged after its answer has left (the observer runs at the end of the
	// reader's burst, docs/decisions.md), so radclient may return before the line is written.
	rejects := func() int {
		return strings.Count(strings.SplitAfter(logs.String(), "user=alice")[1], "code=Access-Reject")
	}
	for deadline := time.Now().Add(10 * time.Second); rejects() < 2; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the second reject is not logged:\n%s", logs.String())
		}
	}
	if after := strings.Count(logs.String(), `msg="access decision" code=Access-Accept`); after != before {
		t.Fatalf("an accept logged under log.decisions: rejects:\n%s", logs.String())
	}
	// At debug level every request and cloud reply is dumped by attribute name, secrets by length.
	wantLine(`User-Password = <16 octets hidden>`)
	wantLine(`NAS-Port-Id = \"GigabitEthernet1/0/7\"`)
	wantLine(`msg="upstream reply" nas=sw1 upstream=up code=Access-Accept`)
	if strings.Contains(logs.String(), `"pw"`) {
		t.Fatal("the password in the debug dump")
	}
	// Every line written is counted: an accept and a reject, then (rejects only) a reject.
	resp, err := http.Get("http://" + e.Metrics().Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if want := `mxedge_decision_log_lines_total{outcome="written"} 3`; !strings.Contains(string(body), want) {
		t.Fatalf("no %q in the scrape:\n%s", want, body)
	}
}
