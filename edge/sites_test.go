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
	"mxedge/proxy"
	"mxedge/proxy/packet"
	"mxedge/survivability"
)

// siteClients replaces the e2e NAS (127.0.0.1) by three, one per site: hq (cisco, 127.0.0.1),
// branch (juniper, 127.0.0.2) and lab (cisco, 127.0.0.3).
func siteClients(cfg string) string {
	return replaceOnce(cfg, "    site: MistAA Test Site\n", fmt.Sprintf(`    site: hq
  - name: branch-switch
    address: 127.0.0.2
    secret: %q
    vendor: juniper
    site: branch
  - name: lab-switch-2
    address: 127.0.0.3
    secret: %q
    vendor: cisco
    site: lab
`, nasSecret, nasSecret))
}

// siteSurvival is the survivability block of the sites test, with local EAP-TLS from lab;
// hqPassword is hq's password_logins.
func siteSurvival(lab *pkitest.Lab, accounts, hqPassword string) string {
	return fmt.Sprintf(`survivability:
  default_mab_vlan: "41"
  default_dot1x_vlan: "51"
  password_logins: reject
  eap_tls:
    certificate: %s
    key: %s
    ca: %s
  sites:
    - name: hq
      default_mab_vlan: "100"
      default_dot1x_vlan: corp-hq
      password_logins: %s
      local_accounts: %s
    - name: branch
      default_mab_vlan: branch-iot
      caching_period: 3d
    - name: lab
      enabled: false
      default_mab_vlan: "999"
`, lab.ServerCert, lab.ServerKey, lab.CAFile, hqPassword, accounts)
}

// waitLocal waits for the edge to notice the cut.
func waitLocal(t *testing.T, x *e2e) {
	t.Helper()
	deadline := time.Now().Add(6 * time.Second)
	for !x.edge.Health().Local() && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if !x.edge.Health().Local() {
		t.Fatal("WAN cut not detected within 6 s")
	}
}

// TestE2ESitesThroughWANCut: three sites behind one edge, through a WAN cut. Unknown MAB clients
// get their own site's default VLAN (rendered for their NAS's vendor), a known client keeps its
// cached VLAN at any enabled site, and the site with survivability disabled gets the no-upstream
// outcome for its Access-Requests while its accounting is still spooled; eapol_test with a
// certificate the cloud never authorized gets hq's default 802.1X VLAN. Then the password-login
// policies, with radclient as the NAS: local (argon2id accounts file, rate-limited), no-answer
// (radclient times out) and reject, switched by reload during the same outage.
func TestE2ESitesThroughWANCut(t *testing.T) {
	peertest.Require(t, "eapol_test")
	x := startE2E(t, 1, nil)
	accounts := filepath.Join(t.TempDir(), "admins")
	if err := os.WriteFile(accounts, []byte("# device admins\nnetadmin:"+survivability.HashArgon2id([]byte("switch admin pw"), []byte("e2e-salt-e2e-salt"))+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	rl := startRelay(t, x.frAddr[0])
	x.rewrite(t, func(cfg string) string {
		return siteClients(replaceOnce(cfg, "address: "+x.frAddr[0], "address: "+rl.Addr())) + siteSurvival(x.lab, accounts, "local")
	})
	if r := exchangeUDP(t, "127.0.0.1:0", x.auth, nasRequest(t, "aabbccddeeff"), 3*time.Second); r == nil || r[0] != byte(packet.CodeAccessAccept) {
		t.Fatal("known client not accepted by the cloud before the cut")
	}
	waitLearned(t, x.edge, "the accepted MAB client cached", cachedMAB("aa:bb:cc:dd:ee:ff"))
	rl.Cut()
	rl.Reset()
	waitLocal(t, x)

	mab := func(from, mac string) packet.Packet {
		t.Helper()
		r := exchangeUDP(t, from+":0", x.auth, nasRequest(t, mac), 3*time.Second)
		if r == nil {
			t.Fatalf("MAB %s from %s: no answer", mac, from)
		}
		p, err := packet.Parse(r)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		site, from, mac string
		code            packet.Code
		vlan            string
	}{
		{"hq", "127.0.0.1", "021111111111", packet.CodeAccessAccept, "100"},
		{"branch", "127.0.0.2", "022222222222", packet.CodeAccessAccept, "branch-iot"},
		{"lab", "127.0.0.3", "023333333333", packet.CodeAccessReject, ""},
		{"hq", "127.0.0.1", "aabbccddeeff", packet.CodeAccessAccept, "400"},     // cached
		{"branch", "127.0.0.2", "aabbccddeeff", packet.CodeAccessAccept, "400"}, // learned at hq, served at branch
		{"lab", "127.0.0.3", "aabbccddeeff", packet.CodeAccessReject, ""},       // survivability off: not even a cached client
	}
	for _, tt := range tests {
		t.Run("mab/"+tt.site+"/"+tt.mac, func(t *testing.T) {
			p := mab(tt.from, tt.mac)
			v, _ := p.Attr(packet.AttrTunnelPrivateGroupID)
			if p.Code() != tt.code || string(v) != tt.vlan {
				t.Fatalf("%v VLAN %q, want %v %q", p.Code(), v, tt.code, tt.vlan)
			}
		})
	}
	// The juniper NAS gets a named VLAN as Egress-VLAN-Name too (survivability/vendor.go).
	if ev, ok := mab("127.0.0.2", "022222222223").Attr(packet.AttrEgressVLANName); !ok || string(ev) != "2branch-iot" {
		t.Fatalf("branch (juniper): Egress-VLAN-Name %q", ev)
	}
	// A certificate the cloud never authorized, verified locally at hq: hq's default 802.1X VLAN.
	host, port, _ := net.SplitHostPort(x.auth)
	eapPort, _ := strconv.Atoi(port)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	res, err := peertest.EapolTest(ctx, peertest.EapolOptions{
		Server: host, Port: eapPort, Secret: nasSecret, Identity: "edge.example.test", AnonymousIdentity: "anonymous@example.test",
		CACert: x.lab.CAFile, ClientCert: x.lab.ClientCert, PrivateKey: x.lab.ClientKey, TLS12Only: true, Timeout: 20 * time.Second,
	})
	cancel()
	if err != nil || !res.Success || !res.MPPEOK {
		t.Fatalf("local EAP-TLS at hq: %v success=%v mppe=%v\n%s", err, res.Success, res.MPPEOK, tail(res.Output, 30))
	}
	if v := res.Get("Tunnel-Private-Group-Id"); v != "corp-hq" && v != "636f72702d6871" {
		t.Fatalf("local EAP-TLS at hq: VLAN %q, want hq's default 802.1X VLAN corp-hq", v)
	}
	// The disabled site's accounting is still acknowledged from the spool.
	before := x.edge.Spool().Len()
	if r := exchangeUDP(t, "127.0.0.3:0", x.acct, acctRequest(t, 9, "lab-sess", 1), 3*time.Second); r == nil || r[0] != byte(packet.CodeAccountingResponse) {
		t.Fatal("disabled site's accounting not acknowledged during the outage")
	}
	if x.edge.Spool().Len() != before+1 {
		t.Fatal("disabled site's accounting not spooled")
	}

	login := func(password string, timeout time.Duration) peertest.Reply {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		replies, out, err := peertest.Radclient(ctx, peertest.RadclientOptions{Server: x.auth, Kind: "auth", Secret: nasSecret,
			Requests: []peertest.Request{{Attrs: []string{`User-Name = "netadmin"`, fmt.Sprintf("User-Password = %q", password),
				`NAS-Identifier = "hq-switch"`, `Message-Authenticator = 0x00`}}},
			Retries: 0, Timeout: timeout})
		if err != nil {
			t.Fatalf("radclient: %v\n%s", err, out)
		}
		return replies[0]
	}
	t.Run("password/local", func(t *testing.T) {
		if r := login("switch admin pw", 5*time.Second); r.Code != "Access-Accept" {
			t.Fatalf("right password: %q", r.Code)
		}
		for i := range 5 {
			if r := login(fmt.Sprintf("guess %d", i), 5*time.Second); r.Code != "Access-Reject" {
				t.Fatalf("wrong password %d: %q", i, r.Code)
			}
		}
		if r := login("switch admin pw", 5*time.Second); r.Code != "Access-Reject" {
			t.Fatalf("right password after 5 failures: %q, want Access-Reject (rate limited)", r.Code)
		}
		if logs := x.logs.String(); strings.Contains(logs, "switch admin pw") || strings.Contains(logs, "guess 1") ||
			!strings.Contains(logs, "reason=rate-limited") || !strings.Contains(logs, "reason=local-account") {
			t.Fatal("local logins: a password reached the log, or an attempt was not logged")
		}
	})
	reload := func(t *testing.T, hqPassword string) {
		t.Helper()
		b, err := os.ReadFile(x.cfgPath)
		if err != nil {
			t.Fatal(err)
		}
		doc := string(b)
		doc = doc[:strings.Index(doc, "survivability:\n")] + siteSurvival(x.lab, accounts, hqPassword)
		if err := os.WriteFile(x.cfgPath, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := config.Load(x.cfgPath)
		if err != nil {
			t.Fatal(err)
		}
		if err := x.edge.Reload(context.Background(), cfg); err != nil {
			t.Fatal(err)
		}
		waitLocal(t, x)
	}
	t.Run("password/no-answer", func(t *testing.T) {
		reload(t, "no-answer")
		dropped := x.edge.Server().Stats().Dropped[proxy.DropUnanswered].Load()
		start := time.Now()
		if r := login("switch admin pw", time.Second); r.Code != "" {
			t.Fatalf("no-answer policy: radclient got %q", r.Code)
		}
		if d := time.Since(start); d < time.Second {
			t.Fatalf("radclient gave up after %v, before its timeout", d)
		}
		// A deliberate drop, counted (radclient -r 1: one try).
		if n := x.edge.Server().Stats().Dropped[proxy.DropUnanswered].Load() - dropped; n < 1 {
			t.Fatalf("%d unanswered drops counted, want the login's", n)
		}
		if !strings.Contains(x.logs.String(), "reason=password-no-answer") {
			t.Fatal("the unanswered login was not logged as a local decision")
		}
		// MAB is not a password login: still the site's default VLAN.
		if v, _ := mab("127.0.0.1", "021111111112").Attr(packet.AttrTunnelPrivateGroupID); string(v) != "100" {
			t.Fatalf("MAB under no-answer: VLAN %q", v)
		}
	})
	t.Run("password/reject", func(t *testing.T) {
		reload(t, "reject")
		r := login("switch admin pw", 5*time.Second)
		if r.Code != "Access-Reject" {
			t.Fatalf("reject policy: %q", r.Code)
		}
		wantAttr(t, r, "Reply-Message", survivability.ReplyUnsupported)
	})
}
