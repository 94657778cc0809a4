package proxy

import (
	"bytes"
	"log/slog"
	"net/netip"
	"strings"
	"testing"

	"mxedge/proxy/packet"
)

func TestSplitRealm(t *testing.T) {
	tests := []struct {
		user, realm string
		has         bool
	}{
		{"alice@example.edu", "example.edu", true},
		{"alice@", "", false},
		{"alice", "", false},
		{"", "", false},
		{`EXAMPLE\alice`, "EXAMPLE", true},
		{`\alice`, "", false},
		{"a@b@example.edu", "example.edu", true}, // the last '@' (RFC 7542 §2.1)
		{"@example.edu", "example.edu", true},
	}
	for _, tc := range tests {
		realm, has := SplitRealm(tc.user)
		if realm != tc.realm || has != tc.has {
			t.Errorf("SplitRealm(%q) = %q, %v; want %q, %v", tc.user, realm, has, tc.realm, tc.has)
		}
	}
}

func TestSSIDOf(t *testing.T) {
	tests := map[string]string{
		"AA-BB-CC-DD-EE-FF:eduroam":      "eduroam",
		"aa:bb:cc:dd:ee:ff:eduroam-test": "eduroam-test",
		"aabb.ccdd.eeff:corp:wifi":       "corp:wifi",
		"aabbccddeeff:x":                 "x",
		"AA-BB-CC-DD-EE-FF":              "",
		"192.0.2.1":                      "",
		"eduroam":                        "",
		"AA-BB-CC-DD-EE-FF-00:x":         "",
	}
	for in, want := range tests {
		if got := SSIDOf(in); got != want {
			t.Errorf("SSIDOf(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestValidateOperatorName(t *testing.T) {
	for _, ok := range []string{"1example.edu", "1abc-university.edu", "1a.b.c"} {
		if err := ValidateOperatorName(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "1", "example.edu", "2example.edu", "1example", "1-x.edu", "1ex_ample.edu", "1example..edu", "1" + strings.Repeat("a", 64) + ".edu"} {
		if err := ValidateOperatorName(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestRealmMatch(t *testing.T) {
	tests := []struct {
		m     RealmMatch
		realm string
		has   bool
		want  bool
	}{
		{RealmMatch{Kind: RealmExact, Value: "Example.EDU"}, "example.edu", true, true},
		{RealmMatch{Kind: RealmExact, Value: "example.edu"}, "staff.example.edu", true, false},
		{RealmMatch{Kind: RealmSuffix, Value: "example.edu"}, "STAFF.example.edu", true, true},
		{RealmMatch{Kind: RealmSuffix, Value: "example.edu"}, "example.edu", true, true},
		{RealmMatch{Kind: RealmSuffix, Value: "example.edu"}, "badexample.edu", true, false},
		{RealmMatch{Kind: RealmRegexp, Value: `.*\.ac\.uk`}, "OX.AC.UK", true, true},
		{RealmMatch{Kind: RealmRegexp, Value: `ac\.uk`}, "ox.ac.uk", true, false}, // whole realm
		{RealmMatch{Kind: RealmEmpty}, "", false, true},
		{RealmMatch{Kind: RealmEmpty}, "x.org", true, false},
		{RealmMatch{Kind: RealmSuffix, Value: "example.edu"}, "", false, false},
	}
	for _, tc := range tests {
		m := tc.m
		if err := m.compile(); err != nil {
			t.Fatal(err)
		}
		if got := m.matches(tc.realm, tc.has); got != tc.want {
			t.Errorf("%s %q on %q: %v, want %v", tc.m.Kind, tc.m.Value, tc.realm, got, tc.want)
		}
	}
	bad := RealmMatch{Kind: RealmRegexp, Value: "("}
	if err := bad.compile(); err == nil {
		t.Error("bad regexp accepted")
	}
}

func TestRoutesValidate(t *testing.T) {
	udpPool := PoolOptions{Upstreams: []UpstreamOptions{{Name: "n1", Host: "192.0.2.10", Secret: Secret("s"), UDP: &UDPOptions{}}}}
	tests := []struct {
		name string
		o    RoutesOptions
		want string
	}{
		{"unknown pool", RoutesOptions{Routes: []Route{{Target: TargetPool, Pool: "nope"}}}, `no pool named "nope"`},
		{"discovery absent", RoutesOptions{Routes: []Route{{Target: TargetDiscover}}}, "dynamic discovery is not enabled"},
		{"bad target", RoutesOptions{Routes: []Route{{Target: "x"}}}, "unknown target"},
		{"bad method", RoutesOptions{Routes: []Route{{Target: TargetReject, Match: RouteMatch{Methods: []Method{"ttls"}}}}}, "unknown method"},
		{"bad operator", RoutesOptions{Routes: []Route{{Target: TargetReject, OperatorName: "x.edu"}}}, "operator name"},
		{"udp host name", RoutesOptions{Pools: []NamedPool{{Name: "p", Options: PoolOptions{Upstreams: []UpstreamOptions{{Name: "n", Host: "nro.example", Secret: Secret("s"), UDP: &UDPOptions{}}}}}}}, "needs an IP address"},
		{"udp no secret", RoutesOptions{Pools: []NamedPool{{Name: "p", Options: PoolOptions{Upstreams: []UpstreamOptions{{Name: "n", Host: "192.0.2.1", UDP: &UDPOptions{}}}}}}}, "needs a shared secret"},
		{"reserved pool name", RoutesOptions{Pools: []NamedPool{{Name: DefaultPoolName, Options: udpPool}}}, "reserved"},
		// A route's label names its metrics series: two routes of one label would be one series.
		{"two routes of one name", RoutesOptions{Routes: []Route{{Name: "r", Target: TargetReject}, {Name: "r", Target: TargetReject}}}, `two routes named "r"`},
		{"a name like an unnamed route's label", RoutesOptions{Routes: []Route{{Target: TargetReject}, {Name: "#1", Target: TargetReject}}}, `two routes named "#1"`},
		{"ok", RoutesOptions{Pools: []NamedPool{{Name: "p", Options: udpPool}}, Routes: []Route{{Target: TargetPool, Pool: "p"}, {Target: TargetReject}}}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.o.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

// request builds a Request from a NAS at src for Decide and InputOf.
func routeRequest(t *testing.T, src string, code packet.Code, attrs map[uint8]string, ps []byte) *Request {
	t.Helper()
	b := packet.New(nil, code, 1, make([]byte, 16))
	b.AddMA()
	for typ, v := range attrs {
		b.AddString(typ, v)
	}
	if ps != nil {
		b.Add(packet.AttrProxyState, ps)
	}
	p, err := b.Finish([]byte("s"), nil)
	if err != nil {
		t.Fatal(err)
	}
	return &Request{Client: &Client{Name: "sw1", Site: "HQ", Secret: []byte("s")}, Src: netip.MustParseAddrPort(src), Packet: p}
}

func TestDecide(t *testing.T) {
	home := []RealmMatch{{Kind: RealmSuffix, Value: "myuniversity.edu"}}
	o := RoutesOptions{
		Pools: []NamedPool{{Name: "national", Options: PoolOptions{Upstreams: []UpstreamOptions{
			{Name: "nro1", Host: "192.0.2.10", Secret: Secret("s"), UDP: &UDPOptions{}}}}}},
		Routes: []Route{
			{Name: "mab-only-hq", Match: RouteMatch{Methods: []Method{MethodMAB}, Sites: []string{"hq"}}, Target: TargetPool, Pool: DefaultPoolName},
			{Name: "acct-lab", Match: RouteMatch{Types: []RequestType{TypeAccounting}, Clients: []string{"lab"}}, Target: TargetReject},
			{Name: "home", Match: RouteMatch{SSIDs: []string{"eduroam"}, Realms: home}, Target: TargetPool},
			{Name: "visitor", Match: RouteMatch{SSIDs: []string{"eduroam"}}, Target: TargetPool, Pool: "national", OperatorName: "1myuniversity.edu", RequestCUI: true},
		},
		ProxyStatePrefix: [4]byte{1, 2, 3, 4},
	}
	rt, err := NewRouteTable(o)
	if err != nil {
		t.Fatal(err)
	}
	called := func(ssid string) string { return "AA-BB-CC-DD-EE-FF:" + ssid }
	tests := []struct {
		name  string
		src   string
		code  packet.Code
		attrs map[uint8]string
		ps    []byte
		route string // "" for none
		loop  bool
	}{
		{"MAB at HQ", "10.0.0.1:1", packet.CodeAccessRequest, map[uint8]string{1: "aabbccddeeff", 2: "x", 31: "AA-BB-CC-DD-EE-FF"}, nil, "mab-only-hq", false},
		{"visitor", "10.0.0.1:1", packet.CodeAccessRequest, map[uint8]string{1: "v@other.org", 30: called("eduroam")}, nil, "visitor", false},
		{"home", "10.0.0.1:1", packet.CodeAccessRequest, map[uint8]string{1: "h@cs.myuniversity.edu", 30: called("eduroam")}, nil, "home", false},
		{"other ssid", "10.0.0.1:1", packet.CodeAccessRequest, map[uint8]string{1: "v@other.org", 30: called("corp")}, nil, "", false},
		{"our proxy-state", "10.0.0.1:1", packet.CodeAccessRequest, map[uint8]string{1: "v@other.org", 30: called("eduroam")}, []byte{1, 2, 3, 4, 0, 0, 0, 9}, "visitor", true},
		{"someone else's proxy-state", "10.0.0.1:1", packet.CodeAccessRequest, map[uint8]string{1: "v@other.org", 30: called("eduroam")}, []byte{9, 9, 9, 9, 0, 0, 0, 9}, "visitor", false},
		// A server of a pool may share its address with a NAS (one host, or loopback): the address
		// alone is no loop.
		{"from a pool server's address", "192.0.2.10:1812", packet.CodeAccessRequest, map[uint8]string{1: "v@other.org", 30: called("eduroam")}, nil, "visitor", false},
		{"our operator-name from a national server", "192.0.2.10:1812", packet.CodeAccessRequest, map[uint8]string{1: "h@myuniversity.edu", 30: called("eduroam"), 126: "1myuniversity.edu"}, nil, "home", true},
		{"our operator-name from a NAS", "10.0.0.1:1", packet.CodeAccessRequest, map[uint8]string{1: "h@myuniversity.edu", 30: called("eduroam"), 126: "1myuniversity.edu"}, nil, "home", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := routeRequest(t, tc.src, tc.code, tc.attrs, tc.ps)
			in := rt.InputOf(req)
			d := rt.Decide(&in)
			got := ""
			if d.Route != nil {
				got = d.Route.Name
			}
			if got != tc.route || d.Loop != tc.loop {
				t.Fatalf("route %q loop %v, want %q %v (input %+v)", got, d.Loop, tc.route, tc.loop, in)
			}
		})
	}
	t.Run("extra attributes", func(t *testing.T) {
		in := RouteInput{Type: TypeAuth}
		x := o.Routes[3].extra(&in)
		want := append([]byte{126, 19}, "1myuniversity.edu"...)
		want = append(want, 89, 3, 0)
		if !bytes.Equal(x, want) {
			t.Fatalf("extra %x, want %x", x, want)
		}
		in = RouteInput{Type: TypeAccounting, Operator: "1other.edu"}
		if x := o.Routes[3].extra(&in); x != nil {
			t.Fatalf("accounting with an Operator-Name got %x", x)
		}
	})
}

func TestFTicksLine(t *testing.T) {
	var buf bytes.Buffer
	rt, err := NewRouteTable(RoutesOptions{
		Routes: []Route{{Name: "v", Target: TargetReject, OperatorName: "1myuniversity.edu", FTicks: true}},
		FTicks: FTicksOptions{VisCountry: "NL", Key: []byte("0123456789abcdef"), Logger: slog.New(slog.NewTextHandler(&buf, nil))},
	})
	if err != nil {
		t.Fatal(err)
	}
	r := &rt.routes[0]
	in := RouteInput{Type: TypeAuth, Realm: "evil.org#RESULT=OK", Calling: "02-00-00-00-00-01"}
	rt.fticks(r, &in, packet.CodeAccessReject)
	rt.fticks(r, &in, packet.CodeAccessChallenge) // not logged
	line := buf.String()
	if strings.Count(line, "F-TICKS") != 1 {
		t.Fatalf("lines: %q", line)
	}
	// The realm cannot smuggle in an attribute; the MAC appears only hashed.
	if !strings.Contains(line, "F-TICKS/eduroam/1.0#REALM=evil.orgRESULTOK#VISCOUNTRY=NL#VISINST=1myuniversity.edu#CSI=") ||
		!strings.Contains(line, "#RESULT=FAIL#") || strings.Contains(line, "02-00-00-00-00-01") {
		t.Fatalf("line %q", line)
	}
}
