package edge_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"mxedge/edge/config"
	"mxedge/edge/peertest"
	"mxedge/pki/pkitest"
)

const nationalSecret = "national secret"

// eduroamLab is mxedge with the eduroam preset: FreeRADIUS as the cloud (RadSec) and two
// FreeRADIUS instances as the national roaming servers (RADIUS/UDP, on 127.0.0.2 and 127.0.0.3),
// which also proxy the institution's realm back to mxedge, as a national server does for
// home-roaming users.
type eduroamLab struct {
	*e2e
	national []*peertest.FreeRADIUS
	natAddr  []string // authentication addresses
}

func startEduroam(t *testing.T) *eduroamLab {
	t.Helper()
	peertest.Require(t, "freeradius", "radclient")
	lab := pkitest.Must(t)
	// The edge's port is known only once it runs: bind it first, hand it to mxedge by address.
	edgeAuth := peertest.FreePort(t)
	el := &eduroamLab{}
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
		Users: []peertest.User{{Name: "carol@partner.example", Password: "pw", Reply: []string{`Reply-Message = "partner IdP"`}}},
	})
	peertest.StartRadsecproxy(t, peertest.RadsecproxyOptions{
		ListenTLS: fmt.Sprintf("127.0.0.1:%d", rpPort), Upstream: fmt.Sprintf("127.0.0.1:%d", idpPort),
		Cert: lab.ServerCert, Key: lab.ServerKey, CA: lab.CAFile,
	})
	el.e2e = startE2EWith(t, 1, lab, func(*pkitest.Lab) string {
		return fmt.Sprintf(`pools:
  - name: partner
    servers:
      - {name: rp, transport: radsec, address: "127.0.0.1:%d"}
routes:
  - name: partner
    realm_suffixes: [partner.example]
    pool: partner
`, rpPort) + fmt.Sprintf(`eduroam:
  realms: [myuniversity.edu]
  operator_name: 1myuniversity.edu
  ssids: [eduroam, eduroam-test]
  visited_country: NL
  national_servers:
%s`, servers.String())
	}, fmt.Sprintf("127.0.0.1:%d", edgeAuth))
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
	})
}
