package edge_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"mxedge/edge/config"
	"mxedge/edge/peertest"
	"mxedge/pki/pkitest"
)

const (
	nationalSecret = "national secret"
	idpSecret      = "idp secret"
)

// eduroamLab is mxedge with the eduroam preset: FreeRADIUS as the cloud (RadSec) and two
// FreeRADIUS instances as the national roaming servers (RADIUS/UDP, on 127.0.0.2 and 127.0.0.3),
// which also proxy the institution's realm back to mxedge, as a national server does for
// home-roaming users.
type eduroamLab struct {
	*e2e
	national []*peertest.FreeRADIUS
	natAddr  []string // authentication addresses
}

// startEduroam starts the lab; eduroamExtra are more lines of the eduroam block (two spaces
// indented).
func startEduroam(t *testing.T, eduroamExtra ...string) *eduroamLab {
	t.Helper()
	peertest.Require(t, "freeradius", "radclient")
	lab := pkitest.Must(t)
	// The edge's port is known only once it runs: bind it first, hand it to mxedge by address.
	edgeAuth := peertest.FreePort(t)
	el := &eduroamLab{}
	// A second-level IdP: an institution's FreeRADIUS behind the national servers (RADIUS/UDP),
	// which accepts its student only with the visited institution's Operator-Name.
	idpAddr := fmt.Sprintf("127.0.0.1:%d", peertest.FreePort(t))
	peertest.StartFreeRADIUS(t, peertest.FreeRADIUSOptions{
		UDPAuthAddr: idpAddr, ServerCert: lab.ServerCert, ServerKey: lab.ServerKey, CA: lab.CAFile,
		UDPClients:                []peertest.Client{{Addr: "127.0.0.2", Secret: idpSecret}, {Addr: "127.0.0.3", Secret: idpSecret}},
		ReplyMessageAuthenticator: true,
		Users: []peertest.User{{Name: "student@idp.example", Password: "pw", Check: []string{`Operator-Name == "1myuniversity.edu"`},
			Reply: []string{`Reply-Message = "idp.example IdP via %{Operator-Name}"`}}},
	})
	var servers strings.Builder
	for i, ip := range []string{"127.0.0.2", "127.0.0.3"} {
		auth, acct := peertest.FreePort(t), peertest.FreePort(t)
		back := fmt.Sprintf("127.0.0.1:%d", edgeAuth)
		fr := peertest.StartFreeRADIUS(t, peertest.FreeRADIUSOptions{
			UDPAuthAddr: fmt.Sprintf("%s:%d", ip, auth), UDPAcctAddr: fmt.Sprintf("%s:%d", ip, acct),
			UDPClients: []peertest.Client{{Addr: "127.0.0.1", Secret: nationalSecret}},
			ServerCert: lab.ServerCert, ServerKey: lab.ServerKey, CA: lab.CAFile, AccountingLog: true,
			ReplyMessageAuthenticator: true,
			Users: []peertest.User{
				// The visitor's home IdP, reached through the federation: it accepts only requests
				// that carry the visited institution's Operator-Name and ask for a CUI.
				{Name: "visitor@visited.example", Password: "pw",
					Check: []string{`Operator-Name == "1myuniversity.edu"`, `Chargeable-User-Identity =* ANY`},
					Reply: []string{`Message-Authenticator = 0x00`, `Chargeable-User-Identity = "cui-visitor-1"`,
						fmt.Sprintf(`Reply-Message = "nro%d via %%{Operator-Name}"`, i+1)}},
				// EAP-TLS: rlm_files sees the outer identity.
				{Name: "anonymous@visited.example", Check: []string{`Operator-Name == "1myuniversity.edu"`},
					Reply: []string{`Chargeable-User-Identity = "cui-eaptls"`}},
			},
			ProxyRealms: []peertest.ProxyRealm{
				{Realm: "myuniversity.edu", Server: back, Secret: nationalSecret, Source: ip},
				{Realm: "elsewhere.example", Server: back, Secret: nationalSecret, Source: ip},
				{Realm: "loop.example", Server: back, Secret: nationalSecret, Source: ip},
				{Realm: "idp.example", Server: idpAddr, Secret: idpSecret, Source: ip},
			},
		})
		el.national = append(el.national, fr)
		el.natAddr = append(el.natAddr, fmt.Sprintf("%s:%d", ip, auth))
		fmt.Fprintf(&servers, "    - name: nro%d\n      address: %s:%d\n      accounting_port: %d\n      secret: %q\n      source: 127.0.0.1\n      priority: %d\n",
			i+1, ip, auth, acct, nationalSecret, i)
	}
	// A partner institution's IdP (FreeRADIUS over RadSec) behind radsecproxy as an intermediate
	// RadSec hop: a pool of its own, reached by a route of the operator's.
	idpPort, rpPort := peertest.FreePort(t), peertest.FreePort(t)
	peertest.StartFreeRADIUS(t, peertest.FreeRADIUSOptions{
		RadSecAddr: fmt.Sprintf("127.0.0.1:%d", idpPort),
		ServerCert: lab.ServerCert, ServerKey: lab.ServerKey, CA: lab.CAFile,
		Users: []peertest.User{{Name: "carol@partner.example", Password: "pw", Reply: []string{`Reply-Message = "partner IdP"`}},
			// A guest device the partner's NAC admits by MAB (route partner-guest): the cloud
			// never saw it, so the edge must not learn it.
			{Name: "020000000042", MAB: true, Reply: []string{`Tunnel-Type = VLAN`, `Tunnel-Medium-Type = IEEE-802`, `Tunnel-Private-Group-Id = "42"`}}},
	})
	peertest.StartRadsecproxy(t, peertest.RadsecproxyOptions{
		ListenTLS: fmt.Sprintf("127.0.0.1:%d", rpPort), Upstream: fmt.Sprintf("127.0.0.1:%d", idpPort),
		Cert: lab.ServerCert, Key: lab.ServerKey, CA: lab.CAFile,
	})
	el.e2e = newE2EWith(t, 1, lab, func(*pkitest.Lab) string {
		return fmt.Sprintf(`pools:
  - name: partner
    servers:
      - {name: rp, transport: radsec, address: "127.0.0.1:%d"}
routes:
  - name: partner
    realm_suffixes: [partner.example]
    pool: partner
  - name: partner-guest
    ssids: [partner-guest]
    methods: [mab]
    pool: partner
`, rpPort) + fmt.Sprintf(`eduroam:
  realms: [myuniversity.edu]
  operator_name: 1myuniversity.edu
  ssids: [eduroam, eduroam-test]
  visited_country: NL
  national_servers:
%s%s`, servers.String(), strings.Join(eduroamExtra, ""))
	}, fmt.Sprintf("127.0.0.1:%d", edgeAuth))
	el.metricsAddr = "127.0.0.1:0"
	el.start(t)
	return el
}

func TestE2EEduroam(t *testing.T) {
	el := startEduroam(t)
	routes := el.edge.Router().Routes()
	if routes == nil {
		t.Fatal("no routes")
	}
	visitor := func(user string) []string {
		return []string{`User-Name = "` + user + `"`, `User-Password = "pw"`, `Message-Authenticator = 0x00`,
			`Called-Station-Id = "AA-BB-CC-DD-EE-FF:eduroam"`, `Calling-Station-Id = "02-00-00-00-00-09"`}
	}

	t.Run("visitor to the national server, Operator-Name and CUI", func(t *testing.T) {
		r := radclient(t, el.auth, "auth", nasSecret, visitor("visitor@visited.example"))[0]
		if r.Code != "Access-Accept" {
			t.Fatalf("got %q %+v", r.Code, r.Attrs)
		}
		wantAttr(t, r, "Reply-Message", "nro1 via 1myuniversity.edu")
		wantAttr(t, r, "Chargeable-User-Identity", "0x6375692d76697369746f722d31") // "cui-visitor-1"; radclient prints octets
		if !strings.Contains(el.logs.String(), "F-TICKS/eduroam/1.0#REALM=visited.example#VISCOUNTRY=NL#VISINST=1myuniversity.edu#RESULT=OK#") {
			t.Error("no F-Ticks line for the visitor")
		}
	})
	t.Run("visitor of a second-level IdP behind the national server", func(t *testing.T) {
		r := radclient(t, el.auth, "auth", nasSecret, visitor("student@idp.example"))[0]
		if r.Code != "Access-Accept" {
			t.Fatalf("got %q %+v\nnational log:\n%s", r.Code, r.Attrs, el.national[0].LogTail(30))
		}
		// The IdP's answer, relayed by the national server; the password was re-keyed on each hop.
		wantAttr(t, r, "Reply-Message", "idp.example IdP via 1myuniversity.edu")
	})
	t.Run("visitor realm is case-insensitive", func(t *testing.T) {
		r := radclient(t, el.auth, "auth", nasSecret, visitor("visitor@VISITED.example"))[0]
		// The realm matched (it went to the national server, which knows only the lower-case
		// name and so rejects): a reject from the home IdP, with F-Ticks FAIL.
		if r.Code != "Access-Reject" {
			t.Fatalf("got %q", r.Code)
		}
		if !strings.Contains(el.logs.String(), "REALM=VISITED.example#VISCOUNTRY=NL#VISINST=1myuniversity.edu#RESULT=FAIL#") {
			t.Error("no F-Ticks FAIL line")
		}
	})
	t.Run("partner realm through radsecproxy to its IdP", func(t *testing.T) {
		r := radclient(t, el.auth, "auth", nasSecret, []string{`User-Name = "carol@partner.example"`, `User-Password = "pw"`,
			`Message-Authenticator = 0x00`})[0]
		if r.Code != "Access-Accept" {
			t.Fatalf("got %q %+v", r.Code, r.Attrs)
		}
		wantAttr(t, r, "Reply-Message", "partner IdP") // the password was re-keyed across both RadSec hops
	})
	t.Run("home user stays with the cloud", func(t *testing.T) {
		r := radclient(t, el.auth, "auth", nasSecret, []string{`User-Name = "homer@myuniversity.edu"`, `User-Password = "pw"`,
			`Message-Authenticator = 0x00`, `Called-Station-Id = "AA-BB-CC-DD-EE-FF:eduroam"`})[0]
		if r.Code != "Access-Accept" {
			t.Fatalf("got %q", r.Code)
		}
		wantAttr(t, r, "Tunnel-Private-Group-Id", "300") // the cloud's answer
	})
	t.Run("home-roaming user from the national server to the cloud", func(t *testing.T) {
		// The national server proxies its realm back to mxedge from 127.0.0.2.
		r := radclient(t, el.natAddr[0], "auth", nationalSecret, []string{`User-Name = "homer@myuniversity.edu"`, `User-Password = "pw"`,
			`Message-Authenticator = 0x00`})[0]
		if r.Code != "Access-Accept" {
			t.Fatalf("got %q %+v\nnational log:\n%s", r.Code, r.Attrs, el.national[0].LogTail(30))
		}
		wantAttr(t, r, "Tunnel-Private-Group-Id", "300")
	})
	t.Run("unknown realm from the national server rejected", func(t *testing.T) {
		r := radclient(t, el.natAddr[0], "auth", nationalSecret, []string{`User-Name = "x@elsewhere.example"`, `User-Password = "pw"`,
			`Message-Authenticator = 0x00`})[0]
		if r.Code != "Access-Reject" {
			t.Fatalf("got %q", r.Code)
		}
		wantAttr(t, r, "Reply-Message", "unknown realm")
	})
	t.Run("no realm on eduroam rejected", func(t *testing.T) {
		r := radclient(t, el.auth, "auth", nasSecret, visitor("visitor"))[0]
		if r.Code != "Access-Reject" {
			t.Fatalf("got %q", r.Code)
		}
		wantAttr(t, r, "Reply-Message", "eduroam needs an identity with a realm (user@realm)")
	})
	t.Run("other SSID goes to the cloud", func(t *testing.T) {
		r := radclient(t, el.auth, "auth", nasSecret, []string{`User-Name = "alice"`, `User-Password = "s3cret pass\"word"`,
			`Message-Authenticator = 0x00`, `Called-Station-Id = "AA-BB-CC-DD-EE-FF:corp"`})[0]
		if r.Code != "Access-Accept" {
			t.Fatalf("got %q", r.Code)
		}
	})
	sock := filepath.Join(el.lab.Dir, "control.sock")
	home := []string{`User-Name = "homer@myuniversity.edu"`, `User-Password = "pw"`, `Message-Authenticator = 0x00`,
		`Called-Station-Id = "AA-BB-CC-DD-EE-FF:eduroam"`, `Calling-Station-Id = "02-00-00-00-00-07"`}
	guestMAB := []string{`User-Name = "020000000042"`, `User-Password = "020000000042"`, `Calling-Station-Id = "02-00-00-00-00-42"`,
		`Called-Station-Id = "AA-BB-CC-DD-EE-FF:partner-guest"`, `Message-Authenticator = 0x00`}
	t.Run("one NAC event per decision of a pool that is not the cloud", func(t *testing.T) {
		cases := []struct {
			name   string
			server string // where radclient sends: the edge, or a national server that proxies to it
			secret string
			attrs  []string
			code   string
			want   nacEvent
		}{
			{"visitor accepted", el.auth, nasSecret, visitor("visitor@visited.example"), "Access-Accept",
				nacEvent{Decision: "accept", Type: "NAC Client Access Allowed", Source: "external", Route: "eduroam-visitor", Pool: "eduroam-national",
					Realm: "visited.example", NAS: "lab-switch", Site: "MistAA Test Site", MAC: "02:00:00:00:00:09", Identity: "visitor@visited.example", Method: "pap"}},
			{"visitor rejected", el.auth, nasSecret, append(visitor("visitor@visited.example")[:1:1], `User-Password = "wrong"`, `Message-Authenticator = 0x00`,
				`Called-Station-Id = "AA-BB-CC-DD-EE-FF:eduroam"`, `Calling-Station-Id = "02-00-00-00-00-09"`), "Access-Reject",
				nacEvent{Decision: "reject", Type: "NAC Client Access Denied", Source: "external", Route: "eduroam-visitor", Pool: "eduroam-national",
					Realm: "visited.example", NAS: "lab-switch", Site: "MistAA Test Site", MAC: "02:00:00:00:00:09", Identity: "visitor@visited.example", Method: "pap"}},
			{"guest admitted by the partner's NAC (MAB)", el.auth, nasSecret, guestMAB, "Access-Accept",
				nacEvent{Decision: "accept", Type: "NAC Client Access Allowed", Source: "external", Route: "partner-guest", Pool: "partner",
					NAS: "lab-switch", Site: "MistAA Test Site", MAC: "02:00:00:00:00:42", Identity: "020000000042", Method: "mab", VLAN: "42"}},
			{"home user: the cloud's decision", el.auth, nasSecret, home, "Access-Accept",
				nacEvent{Decision: "accept", Type: "NAC Client Access Allowed", Source: "upstream", NAS: "lab-switch", Site: "MistAA Test Site",
					MAC: "02:00:00:00:00:07", Identity: "homer@myuniversity.edu", Method: "pap", VLAN: "300"}},
			{"unknown realm from the national server: the route's reject", el.natAddr[0], nationalSecret,
				[]string{`User-Name = "x@elsewhere.example"`, `User-Password = "pw"`, `Message-Authenticator = 0x00`}, "Access-Reject",
				nacEvent{Decision: "reject", Type: "NAC Client Access Denied", Source: "route", Reason: "route-reject", Route: "eduroam-unknown-realm",
					Pool: "reject", Realm: "elsewhere.example", NAS: "eduroam-nro1", Identity: "x@elsewhere.example", Method: "pap"}},
			{"no realm on eduroam: the route's reject", el.auth, nasSecret, visitor("visitor"), "Access-Reject",
				nacEvent{Decision: "reject", Type: "NAC Client Access Denied", Source: "route", Reason: "route-reject", Route: "eduroam-no-realm",
					Pool: "reject", NAS: "lab-switch", Site: "MistAA Test Site", MAC: "02:00:00:00:00:09", Identity: "visitor", Method: "pap"}},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				before := len(nacEvents(t, sock))
				r := radclient(t, tc.server, "auth", tc.secret, tc.attrs)[0]
				if r.Code != tc.code {
					t.Fatalf("got %q, want %q", r.Code, tc.code)
				}
				evs := nacEvents(t, sock)[before:]
				if len(evs) != 1 {
					t.Fatalf("%d events, want exactly one: %+v", len(evs), evs)
				}
				got := evs[0]
				// The server that answered: a national server, radsecproxy, the cloud's FreeRADIUS; none
				// for the route's own reject.
				if answered := tc.want.Source == "external" || tc.want.Source == "upstream"; answered != (got.Upstream != "") {
					t.Errorf("upstream %q for source %s", got.Upstream, got.Source)
				}
				got.Upstream = ""
				if got != tc.want {
					t.Errorf("event\n got %+v\nwant %+v", got, tc.want)
				}
			})
		}
		// The decision log says who decided: the pool, its server and the route.
		waitLog(t, el.logs, "access decision", "user=visitor@visited.example", "decider=external", "upstream=nro1",
			"route=eduroam-visitor", "pool=eduroam-national", "realm=visited.example")
		waitLog(t, el.logs, "access decision", "code=Access-Reject", "nas=eduroam-nro1", "decider=route", "reason=route-reject",
			"route=eduroam-unknown-realm", "realm=elsewhere.example")
		// The partner's Accept was not learned: the cache holds only what the cloud granted, so the
		// guest's MAC is never granted locally from it while the cloud is unreachable. The decisions
		// are logged, so anything their observation would have learned is queued by now.
		store := el.edge.Cache()
		if err := store.Flush(); err != nil {
			t.Fatal(err)
		}
		if rec, ok, err := store.LookupMAC("02:00:00:00:00:42"); ok || err != nil {
			t.Fatalf("a decision of the partner's NAC was learned into the cache: %+v %v", rec, err)
		}
	})
	t.Run("a subdomain of an excluded realm stays with the cloud", func(t *testing.T) {
		// The guide's Exclude Realms include their subdomains: the cloud decides (it knows no such
		// user and rejects), never a national server.
		before := len(nacEvents(t, sock))
		r := radclient(t, el.auth, "auth", nasSecret, []string{`User-Name = "homer@staff.myuniversity.edu"`, `User-Password = "pw"`,
			`Message-Authenticator = 0x00`, `Called-Station-Id = "AA-BB-CC-DD-EE-FF:eduroam"`})[0]
		if r.Code != "Access-Reject" {
			t.Fatalf("got %q", r.Code)
		}
		evs := nacEvents(t, sock)[before:]
		if len(evs) != 1 || evs[0].Source != "upstream" || evs[0].Route != "" || evs[0].Identity != "homer@staff.myuniversity.edu" {
			t.Fatalf("events %+v, want one of the cloud's", evs)
		}
	})
	t.Run("route counters exact after a known sequence", func(t *testing.T) {
		before := routeSeries(t, el.scrape(t))
		for _, q := range []struct {
			server, secret string
			attrs          []string
		}{
			{el.auth, nasSecret, visitor("visitor@visited.example")}, // eduroam-visitor accept
			{el.auth, nasSecret, append(visitor("visitor@visited.example")[:1:1], `User-Password = "wrong"`, `Message-Authenticator = 0x00`, `Called-Station-Id = "AA-BB-CC-DD-EE-FF:eduroam"`)}, // eduroam-visitor reject
			{el.auth, nasSecret, visitor("visitor")}, // eduroam-no-realm
			{el.auth, nasSecret, home},               // eduroam-home, the cloud
			{el.natAddr[0], nationalSecret, []string{`User-Name = "homer@myuniversity.edu"`, `User-Password = "pw"`, `Message-Authenticator = 0x00`}}, // eduroam-home-roaming
			{el.natAddr[0], nationalSecret, []string{`User-Name = "x@elsewhere.example"`, `User-Password = "pw"`, `Message-Authenticator = 0x00`}},    // eduroam-unknown-realm
			{el.auth, nasSecret, []string{`User-Name = "carol@partner.example"`, `User-Password = "pw"`, `Message-Authenticator = 0x00`}},             // partner
			{el.auth, nasSecret, guestMAB}, // partner-guest
			{el.auth, nasSecret, []string{`User-Name = "alice"`, `User-Password = "s3cret pass\"word"`, `Message-Authenticator = 0x00`, `Called-Station-Id = "AA-BB-CC-DD-EE-FF:corp"`}}, // no route
		} {
			radclient(t, q.server, "auth", q.secret, q.attrs)
		}
		want := map[string]float64{
			`mxedge_route_requests_total{route="eduroam-visitor",target="eduroam-national"}`:              2,
			`mxedge_route_answers_total{code="accept",route="eduroam-visitor",target="eduroam-national"}`: 1,
			`mxedge_route_answers_total{code="reject",route="eduroam-visitor",target="eduroam-national"}`: 1,
			`mxedge_route_requests_total{route="eduroam-no-realm",target="reject"}`:                       1,
			`mxedge_route_rejects_total{route="eduroam-no-realm",target="reject"}`:                        1,
			`mxedge_route_requests_total{route="eduroam-home",target="default"}`:                          1,
			`mxedge_route_answers_total{code="accept",route="eduroam-home",target="default"}`:             1,
			`mxedge_route_requests_total{route="eduroam-home-roaming",target="default"}`:                  1,
			`mxedge_route_answers_total{code="accept",route="eduroam-home-roaming",target="default"}`:     1,
			`mxedge_route_requests_total{route="eduroam-unknown-realm",target="reject"}`:                  1,
			`mxedge_route_rejects_total{route="eduroam-unknown-realm",target="reject"}`:                   1,
			`mxedge_route_requests_total{route="partner",target="partner"}`:                               1,
			`mxedge_route_answers_total{code="accept",route="partner",target="partner"}`:                  1,
			`mxedge_route_requests_total{route="partner-guest",target="partner"}`:                         1,
			`mxedge_route_answers_total{code="accept",route="partner-guest",target="partner"}`:            1,
			`mxedge_route_unmatched_requests_total`:                                                       1,
		}
		after := routeSeries(t, el.scrape(t))
		if len(after) < 7*5+2 {
			t.Fatalf("only %d route series:\n%v", len(after), after)
		}
		for k, v := range after {
			if d := v - before[k]; d != want[k] {
				t.Errorf("%s: +%v, want +%v", k, d, want[k])
			}
		}
		for k := range want {
			if _, ok := after[k]; !ok {
				t.Errorf("%s not exported", k)
			}
		}
	})
	t.Run("loop refused", func(t *testing.T) {
		before := routes.Stats().Loops.Load()
		// The national server sends loop.example back to mxedge, which had sent it there.
		r := radclient(t, el.auth, "auth", nasSecret, visitor("someone@loop.example"))[0]
		if r.Code != "Access-Reject" {
			t.Fatalf("got %q", r.Code)
		}
		if routes.Stats().Loops.Load() != before+1 {
			t.Fatalf("loops counted %d, want %d", routes.Stats().Loops.Load(), before+1)
		}
		if got := routeSeries(t, el.scrape(t))["mxedge_route_loops_refused_total"]; got != float64(before+1) {
			t.Fatalf("mxedge_route_loops_refused_total %v, want %d", got, before+1)
		}
	})
	t.Run("visitor accounting to the national server with Operator-Name", func(t *testing.T) {
		r := radclient(t, el.acct, "acct", nasSecret, []string{`User-Name = "visitor@visited.example"`, `Acct-Status-Type = Start`,
			`Acct-Session-Id = "edu-1"`, `Called-Station-Id = "AA-BB-CC-DD-EE-FF:eduroam"`})[0]
		if r.Code != "Accounting-Response" {
			t.Fatalf("got %q", r.Code)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		recs, err := el.national[0].WaitAccounting(ctx, 1)
		if err != nil {
			t.Fatal(err)
		}
		if got := recs[0].Map["Operator-Name"]; got != "1myuniversity.edu" {
			t.Fatalf("Operator-Name %q in %v", got, recs[0].Map)
		}
	})
	t.Run("eapol_test EAP-TLS visitor through the national server", func(t *testing.T) {
		peertest.Require(t, "eapol_test")
		host, port, _ := net.SplitHostPort(el.auth)
		p, _ := strconv.Atoi(port)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		res, err := peertest.EapolTest(ctx, peertest.EapolOptions{
			Server: host, Port: p, Secret: nasSecret,
			Identity: "edge.example.test", AnonymousIdentity: "anonymous@visited.example",
			CACert: el.lab.CAFile, ClientCert: el.lab.ClientCert, PrivateKey: el.lab.ClientKey,
			CalledStationID: "AA-BB-CC-DD-EE-FF:eduroam-test", Timeout: 20 * time.Second,
		})
		if err != nil {
			t.Fatalf("eapol_test: %v\n%s", err, res.Output)
		}
		if !res.Success || !res.MPPEOK {
			t.Fatalf("success=%v mppe=%v\n%s", res.Success, res.MPPEOK, tail(res.Output, 30))
		}
		if !strings.Contains(res.Output, "cui-eaptls") && !strings.Contains(res.Output, "6375692d656170746c73") {
			t.Errorf("no CUI in the Access-Accept:\n%s", tail(res.Output, 40))
		}
	})
	t.Run("failover to the second national server", func(t *testing.T) {
		if err := el.national[0].Pause(); err != nil {
			t.Fatal(err)
		}
		defer el.national[0].Resume()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		replies, out, err := peertest.Radclient(ctx, peertest.RadclientOptions{
			Server: el.auth, Kind: "auth", Secret: nasSecret, Retries: 0, Timeout: 8 * time.Second,
			Requests: []peertest.Request{{Attrs: visitor("visitor@visited.example")}},
		})
		if err != nil {
			t.Fatalf("radclient: %v\n%s", err, out)
		}
		if replies[0].Code != "Access-Accept" {
			t.Fatalf("got %q", replies[0].Code)
		}
		wantAttr(t, replies[0], "Reply-Message", "nro2 via 1myuniversity.edu")
	})
	t.Run("national servers unreachable: reject, never a local grant", func(t *testing.T) {
		for _, fr := range el.national {
			if err := fr.Pause(); err != nil {
				t.Fatal(err)
			}
			defer fr.Resume()
		}
		fallback := el.edge.Server().Stats().Fallback.Load()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		start := time.Now()
		replies, out, err := peertest.Radclient(ctx, peertest.RadclientOptions{
			Server: el.auth, Kind: "auth", Secret: nasSecret, Retries: 0, Timeout: 10 * time.Second,
			Requests: []peertest.Request{{Attrs: visitor("visitor@visited.example")}},
		})
		if err != nil {
			t.Fatalf("radclient: %v\n%s", err, out)
		}
		if replies[0].Code != "Access-Reject" {
			t.Fatalf("got %q", replies[0].Code)
		}
		if got := el.edge.Server().Stats().Fallback.Load(); got != fallback {
			t.Fatalf("the local decision engine was asked (%d -> %d)", fallback, got)
		}
		t.Logf("rejected after %v", time.Since(start).Round(time.Millisecond))
	})
	t.Run("status shows the routes and the national servers", func(t *testing.T) {
		out := mxedgeCLI(t, "status", "--socket", filepath.Join(el.lab.Dir, "control.sock"))
		for _, want := range []string{"routes ", "eduroam-visitor ", "loops refused 1", "eduroam-national/nro1", "eduroam-national/nro2"} {
			if !strings.Contains(out, want) {
				t.Errorf("status lacks %q:\n%s", want, out)
			}
		}
		st := el.edge.Status()
		// Sorted by name: eduroam-national (two servers), partner (radsecproxy).
		if len(st.RoutePools) != 2 || len(st.RoutePools[0].Upstreams) != 2 || st.RoutePools[1].Name != "partner" {
			t.Fatalf("route pools %+v", st.RoutePools)
		}
	})
	t.Run("routes reload with the configuration", func(t *testing.T) {
		doc, err := os.ReadFile(el.cfgPath)
		if err != nil {
			t.Fatal(err)
		}
		doc = []byte(strings.Replace(string(doc), "routes:\n", "routes:\n  - name: block-visited\n    realms: [visited.example]\n    reject: true\n    reply_message: blocked by reload\n", 1))
		if err := os.WriteFile(el.cfgPath, doc, 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := config.Load(el.cfgPath)
		if err != nil {
			t.Fatal(err)
		}
		before := routeSeries(t, el.scrape(t))
		if err := el.edge.Reload(t.Context(), cfg); err != nil {
			t.Fatal(err)
		}
		r := radclient(t, el.auth, "auth", nasSecret, visitor("visitor@visited.example"))[0]
		if r.Code != "Access-Reject" {
			t.Fatalf("got %q", r.Code)
		}
		wantAttr(t, r, "Reply-Message", "blocked by reload")
		if el.edge.Router().Routes() == routes {
			t.Fatal("the route table was not replaced")
		}
		// The reload is no counter reset: the routes it kept count on; the new one starts at 1.
		after := routeSeries(t, el.scrape(t))
		for k, v := range before {
			if after[k] != v {
				t.Errorf("%s: %v before the reload, %v after", k, v, after[k])
			}
		}
		if k := `mxedge_route_rejects_total{route="block-visited",target="reject"}`; after[k] != 1 {
			t.Errorf("%s = %v, want 1", k, after[k])
		}
		if before[`mxedge_route_requests_total{route="eduroam-visitor",target="eduroam-national"}`] == 0 {
			t.Error("the visitor route had counted nothing before the reload")
		}
	})
}

// nacEvent is the part of an mxedge.event.v1 document these tests compare.
type nacEvent struct {
	Decision, Type, Source, Reason, Route, Pool, Realm string
	NAS, Site, MAC, Identity, Method, VLAN, Upstream   string
}

// nacEvents returns the daemon's recent NAC events, oldest first, as `mxedge events -o json`
// prints them.
func nacEvents(t *testing.T, sock string) []nacEvent {
	t.Helper()
	out := mxedgeCLI(t, "events", "-o", "json", "-n", "1000", "--socket", sock)
	var evs []nacEvent
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line == "" {
			continue
		}
		var d struct {
			Schema, Decision, Type, Source, Reason, Route, Pool, Realm, NAS, Site, MAC, Identity, Method, VLAN, Upstream string
		}
		if err := json.Unmarshal([]byte(line), &d); err != nil || d.Schema != "mxedge.event.v1" {
			t.Fatalf("events line %q: %v", line, err)
		}
		evs = append(evs, nacEvent{Decision: d.Decision, Type: d.Type, Source: d.Source, Reason: d.Reason, Route: d.Route, Pool: d.Pool,
			Realm: d.Realm, NAS: d.NAS, Site: d.Site, MAC: d.MAC, Identity: d.Identity, Method: d.Method, VLAN: d.VLAN, Upstream: d.Upstream})
	}
	return evs
}

// waitLog waits for a line of logs holding every one of parts (the decision log is written by its
// own goroutine, after the answer left).
func waitLog(t *testing.T, logs *syncBuffer, parts ...string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		for _, line := range strings.Split(logs.String(), "\n") {
			all := true
			for _, p := range parts {
				all = all && strings.Contains(line, p)
			}
			if all {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log line with all of %q", parts)
		}
	}
}

// scrape reads the edge's /metrics.
func (x *e2e) scrape(t *testing.T) []byte {
	t.Helper()
	m := x.edge.Metrics()
	if m == nil {
		t.Fatal("metrics are not served")
	}
	resp, err := http.Get("http://" + m.Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: %s %v", resp.Status, err)
	}
	return b
}

// routeSeries returns the mxedge_route_* samples of a scrape by series (name{labels, sorted}).
func routeSeries(t *testing.T, scrape []byte) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for name, mf := range families(t, scrape) {
		if !strings.HasPrefix(name, "mxedge_route_") {
			continue
		}
		for _, m := range mf.GetMetric() {
			var ls []string
			for _, l := range m.GetLabel() {
				ls = append(ls, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			slices.Sort(ls)
			key := name
			if len(ls) > 0 {
				key += "{" + strings.Join(ls, ",") + "}"
			}
			out[key] = m.GetCounter().GetValue()
		}
	}
	return out
}
