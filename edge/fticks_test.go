package edge_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"mxedge/edge/config"
	"mxedge/edge/peertest"
)

// documentedFTicksRsyslog is the rsyslog file docs/routing.md gives for forwarding F-Ticks: the
// fenced block after the fticks-rsyslog marker.
func documentedFTicksRsyslog(t *testing.T) string {
	t.Helper()
	doc, err := os.ReadFile(filepath.Join("..", "docs", "routing.md"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)<!-- fticks-rsyslog:[^>]*-->\n```\n(.*?)```").FindSubmatch(doc)
	if m == nil {
		t.Fatal("docs/routing.md has no fticks-rsyslog block")
	}
	return string(m[1])
}

// TestFTicksThroughRsyslog: the F-Ticks path docs/routing.md documents, with real peers. mxedge
// (the eduroam lab, FreeRADIUS as national servers) sends its F-Ticks lines as syslog messages
// (eduroam.f_ticks_syslog) to a real rsyslogd running exactly the documented rsyslog file (only
// its ports and target changed, and a work directory added), which forwards them to a second
// rsyslogd, the federation's collector. The collector receives exactly the F-Ticks lines, in the
// federation's format, from mxedge, facility local1, and nothing else.
func TestFTicksThroughRsyslog(t *testing.T) {
	peertest.Require(t, "rsyslogd")
	collectorAddr := fmt.Sprintf("127.0.0.1:%d", peertest.FreePort(t))
	collector := peertest.StartRsyslog(t, peertest.RsyslogOptions{UDPAddr: collectorAddr})

	relayPort := peertest.FreePort(t)
	snippet := documentedFTicksRsyslog(t)
	_, cport, _ := strings.Cut(collectorAddr, ":")
	conf := snippet
	for _, r := range []struct{ old, new string }{
		{`input(type="imudp" address="127.0.0.1" port="514"`, fmt.Sprintf(`input(type="imudp" address="127.0.0.1" port="%d"`, relayPort)},
		{`target="fticks.example.org" port="514"`, fmt.Sprintf(`target="127.0.0.1" port="%s"`, cport)},
	} {
		if !strings.Contains(conf, r.old) {
			t.Fatalf("the documented rsyslog file no longer has %q:\n%s", r.old, snippet)
		}
		conf = strings.Replace(conf, r.old, r.new, 1)
	}
	relayDir := t.TempDir()
	peertest.StartRsyslog(t, peertest.RsyslogOptions{Dir: relayDir, UDPAddr: fmt.Sprintf("127.0.0.1:%d", relayPort),
		Config: fmt.Sprintf("global(workDirectory=%q)\n", relayDir) + conf})

	key := "f-ticks key of the visited institution"
	keyFile := filepath.Join(t.TempDir(), "fticks.key")
	if err := os.WriteFile(keyFile, []byte(key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	el := startEduroam(t, fmt.Sprintf("  f_ticks_syslog: 127.0.0.1:%d\n  f_ticks_key_file: %s\n", relayPort, keyFile))

	visitor := func(password string) []string {
		return []string{`User-Name = "visitor@visited.example"`, `User-Password = "` + password + `"`, `Message-Authenticator = 0x00`,
			`Called-Station-Id = "AA-BB-CC-DD-EE-FF:eduroam"`, `Calling-Station-Id = "02-00-00-00-00-09"`}
	}
	for _, q := range []struct {
		attrs []string
		code  string
	}{
		{visitor("pw"), "Access-Accept"},
		{visitor("wrong"), "Access-Reject"},
		// A home user: the cloud's answer, no F-Ticks line.
		{[]string{`User-Name = "homer@myuniversity.edu"`, `User-Password = "pw"`, `Message-Authenticator = 0x00`,
			`Called-Station-Id = "AA-BB-CC-DD-EE-FF:eduroam"`}, "Access-Accept"},
	} {
		if r := radclient(t, el.auth, "auth", nasSecret, q.attrs)[0]; r.Code != q.code {
			t.Fatalf("got %q, want %q", r.Code, q.code)
		}
	}
	m := hmac.New(sha256.New, []byte(key))
	m.Write([]byte("02-00-00-00-00-09"))
	csi := hex.EncodeToString(m.Sum(nil))
	want := []string{
		"F-TICKS/eduroam/1.0#REALM=visited.example#VISCOUNTRY=NL#VISINST=1myuniversity.edu#CSI=" + csi + "#RESULT=OK#",
		"F-TICKS/eduroam/1.0#REALM=visited.example#VISCOUNTRY=NL#VISINST=1myuniversity.edu#CSI=" + csi + "#RESULT=FAIL#",
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := collector.WaitRecords(ctx, len(want)); err != nil {
		t.Fatalf("%v\ncollector: %s", err, collector.LogTail(20))
	}
	// Anything more would have arrived with these: the home user's answer came before the wait.
	time.Sleep(200 * time.Millisecond)
	recs, err := collector.Records()
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != len(want) {
		t.Fatalf("the collector received %d messages, want %d: %+v", len(recs), len(want), recs)
	}
	for i, r := range recs {
		if got := strings.TrimSpace(r.Msg); got != want[i] {
			t.Errorf("message %d: %q, want %q", i, got, want[i])
		}
		if r.AppName != "mxedge" || r.Facility != "local1" || r.Severity != "info" {
			t.Errorf("message %d from app %q, facility %q, severity %q; want mxedge, local1, info", i, r.AppName, r.Facility, r.Severity)
		}
	}
	if n := fticksSent(t, el.scrape(t)); n != 2 {
		t.Fatalf("mxedge_fticks_syslog_lines_total{outcome=\"sent\"} = %v, want 2", n)
	}

	// A reload that points f_ticks_syslog at the collector itself: the next line goes there
	// directly, as an RFC 5424 message from mxedge.
	doc, err := os.ReadFile(el.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	doc = []byte(strings.Replace(string(doc), fmt.Sprintf("f_ticks_syslog: 127.0.0.1:%d", relayPort), "f_ticks_syslog: "+collectorAddr, 1))
	if err := os.WriteFile(el.cfgPath, doc, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(el.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := el.edge.Reload(t.Context(), cfg); err != nil {
		t.Fatal(err)
	}
	if r := radclient(t, el.auth, "auth", nasSecret, visitor("pw"))[0]; r.Code != "Access-Accept" {
		t.Fatalf("after reload: %q", r.Code)
	}
	recs, err = collector.WaitRecords(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	if r := recs[2]; r.Msg != want[0] || r.AppName != "mxedge" || r.MsgID != "F-TICKS" || r.Facility != "local1" {
		t.Fatalf("after reload the collector got %+v, want %q from mxedge, msgid F-TICKS, local1", r, want[0])
	}
}

// fticksSent reads mxedge_fticks_syslog_lines_total{outcome="sent"} from a scrape.
func fticksSent(t *testing.T, scrape []byte) float64 {
	t.Helper()
	return sum(families(t, scrape), "mxedge_fticks_syslog_lines_total", map[string]string{"outcome": "sent"})
}
