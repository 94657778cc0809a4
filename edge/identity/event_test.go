package identity

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestChange(t *testing.T) {
	a := []netip.Addr{netip.MustParseAddr("10.0.0.5")}
	b := []netip.Addr{netip.MustParseAddr("10.0.0.6")}
	t0 := time.Unix(1000, 0)
	for _, tc := range []struct {
		name       string
		prev, cur  *Session
		kind       Kind
		reason     string
		wantChange bool
	}{
		{"start without address", nil, &Session{}, 0, "", false},
		{"start with address", nil, &Session{Addrs: a}, KindConnect, ReasonStart, true},
		{"address learned", &Session{}, &Session{Addrs: a}, KindConnect, ReasonAddressLearned, true},
		{"same address interim", &Session{Addrs: a}, &Session{Addrs: a}, 0, "", false},
		{"address changed", &Session{Addrs: a}, &Session{Addrs: b}, KindUpdate, ReasonAddressChanged, true},
		{"reauth", &Session{Addrs: a, AuthTime: t0}, &Session{Addrs: a, AuthTime: t0.Add(time.Hour)}, KindUpdate, ReasonReauth, true},
		{"stop", &Session{Addrs: a}, &Session{Addrs: a, Ended: true, EndReason: ReasonStop}, KindDisconnect, ReasonStop, true},
		{"expired", &Session{Addrs: a}, &Session{Addrs: a, Ended: true, EndReason: ReasonExpired}, KindDisconnect, ReasonExpired, true},
		{"stop of a session without address", &Session{}, &Session{Ended: true}, 0, "", false},
		{"gone", &Session{Addrs: a}, nil, KindDisconnect, ReasonExpired, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, r, ok := Change(tc.prev, tc.cur)
			if k != tc.kind || r != tc.reason || ok != tc.wantChange {
				t.Fatalf("Change = %v %q %v, want %v %q %v", k, r, ok, tc.kind, tc.reason, tc.wantChange)
			}
		})
	}
}

func TestDomainsSplit(t *testing.T) {
	d := Domains{SSIDs: map[string]string{"corp": "corp.example"}, Sites: map[string]string{"hq": "hq.example"}}
	for _, tc := range []struct {
		user, site, ssid     string
		name, domain, source string
	}{
		{"alice@example.com", "hq", "corp", "alice", "example.com", "realm"},
		{"EXAMPLE\\bob", "hq", "", "bob", "EXAMPLE", "realm"},
		{"carol", "hq", "corp", "carol", "corp.example", "ssid"},
		{"carol", "hq", "guest", "carol", "hq.example", "site"},
		{"dave", "branch", "", "dave", DefaultMissingDomain, "missing"},
		{"trailing@", "branch", "", "trailing@", DefaultMissingDomain, "missing"},
	} {
		n, dom, src := d.Split(tc.user, tc.site, tc.ssid)
		if n != tc.name || dom != tc.domain || src != tc.source {
			t.Errorf("Split(%q, %q, %q) = %q %q %q, want %q %q %q", tc.user, tc.site, tc.ssid, n, dom, src, tc.name, tc.domain, tc.source)
		}
	}
	if _, dom, _ := (Domains{Missing: "none"}).Split("x", "", ""); dom != "none" {
		t.Errorf("configured marker: got %q", dom)
	}
}

func TestUserSource(t *testing.T) {
	s := &Session{UserName: "anon@example.com", Identity: "alice@example.com", CUI: "cui-123", NAS: "sw1", SessionID: "s1"}
	for src, want := range map[string]string{"": "anon@example.com", "user-name": "anon@example.com", "identity": "alice@example.com", "cui": "cui-123"} {
		ev := build(KindConnect, ReasonStart, s, src, Domains{}, time.Unix(0, 0), 1)
		if ev.UserFull != want {
			t.Errorf("source %q: user %q, want %q", src, ev.UserFull, want)
		}
	}
}

func TestFormatSyslog(t *testing.T) {
	ev := Event{ID: "sw1/s1/1", Type: "connect", Reason: "start", Time: time.Date(2026, 12, 2, 1, 2, 3, 4000, time.UTC),
		User: `al"i]ce\`, Domain: "example.com", IPAddresses: []string{"10.0.0.5", "2001:db8::5"}, NAS: "sw1", SessionID: "s1"}
	got := string(FormatSyslog(&ev, 10, "edge 1", "mxedge"))
	want := `<86>1 2026-12-02T01:02:03.000004Z edge_1 mxedge - connect [identity@32473 type="connect" reason="start" user="al\"i\]ce\\" domain="example.com" ip="10.0.0.5" ip="2001:db8::5" nas="sw1" session_id="s1" id="sw1/s1/1"] connect user=al"i]ce\ domain=example.com ip=10.0.0.5,2001:db8::5`
	if got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
	if strings.Count(got, "[") != 1 {
		t.Fatal("one SD-ELEMENT expected")
	}
}

func TestNormalizeMAC(t *testing.T) {
	for in, want := range map[string]string{"AA-BB-CC-DD-EE-FF": "aa:bb:cc:dd:ee:ff", "aabb.ccdd.eeff": "aa:bb:cc:dd:ee:ff",
		"aabbccddeeff": "aa:bb:cc:dd:ee:ff", "alice": "alice", "": ""} {
		if got := NormalizeMAC(in); got != want {
			t.Errorf("NormalizeMAC(%q) = %q, want %q", in, got, want)
		}
	}
	if got := ssid("AA-BB-CC-DD-EE-FF:Corp WiFi"); got != "Corp WiFi" {
		t.Errorf("ssid = %q", got)
	}
}
