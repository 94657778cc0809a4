package edge_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"mxedge/cache"
	"mxedge/edge/peertest"
	"mxedge/pki"
	"mxedge/pki/pkitest"
	"mxedge/proxy/packet"
)

// hostileCert issues a client certificate named cn from ca and writes it and its key into dir.
func hostileCert(t *testing.T, ca *pki.CA, dir, cn string) (certFile, keyFile string) {
	t.Helper()
	iss, err := ca.Issue(pki.IssueOptions{CommonName: cn, Usage: pki.UsageClient})
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, cn+".pem"), filepath.Join(dir, cn+".key")
	if err := pki.WriteCertificates(certFile, true, iss.Cert); err != nil {
		t.Fatal(err)
	}
	if err := pki.WriteKey(keyFile, iss.Key, true); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// identityRequest is an Access-Request carrying an EAP-Response/Identity from a station, as a NAS
// sends the first packet of an 802.1X authentication (RFC 3579 §3.1).
func identityRequest(t *testing.T, id uint8, mac string) []byte {
	t.Helper()
	var auth [16]byte
	rand.Read(auth[:])
	b := packet.New(nil, packet.CodeAccessRequest, id, auth[:])
	b.AddString(packet.AttrUserName, "anonymous")
	b.AddString(packet.AttrCallingStationID, mac)
	b.Add(packet.AttrEAPMessage, append([]byte{2, id, 0, 5 + 9, 1}, "anonymous"...))
	b.AddMA()
	p, err := b.Finish([]byte(nasSecret), nil)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestE2EHostileSurvivability tries the local authority as an attacker on a switch port would,
// with real peers: a laptop authenticated by EAP-TLS through the cloud (FreeRADIUS, which names it
// in User-Name) from 02:00:00:00:00:99 and a MAB printer are cached; then
//
//	(c) before the cut, an EAP-TLS login with the laptop's outer identity and a certificate the
//	    cloud rejects, and a PAP login with the printer's MAC and a wrong password, erase nothing;
//	(a) during the cut, MAB requests spoofing the laptop's MAC get neither its VLAN nor its name;
//	(b) an EAP-TLS login with another certificate of the org CA from the laptop's MAC gets the
//	    default VLAN;
//	(d) after 1,000 EAP-Response/Identity messages from spoofed MACs, local EAP-TLS is still served;
//
// while the laptop (eapol_test, MPPE keys OK) and the printer (radclient) keep their cached VLANs
// throughout the cut: the positive control.
func TestE2EHostileSurvivability(t *testing.T) {
	peertest.Require(t, "eapol_test")
	x := startE2E(t, 1, func(lab *pkitest.Lab) string {
		// password_logins: reject, so that a request refused as a password login is an
		// Access-Reject the test can see rather than the default silence.
		return fmt.Sprintf(`survivability:
  default_mab_vlan: "41"
  default_dot1x_vlan: "51"
  password_logins: reject
  eap_tls:
    certificate: %s
    key: %s
    ca: %s
`, lab.ServerCert, lab.ServerKey, lab.CAFile)
	})
	const laptopMAC, laptopID = "02:00:00:00:00:99", "edge.example.test" // the lab client certificate
	dir := t.TempDir()
	intruderCert, intruderKey := hostileCert(t, x.lab.CA, dir, "intruder.example.test")
	rogueCA, err := pki.NewCA(pki.CAOptions{CommonName: "attacker CA"})
	if err != nil {
		t.Fatal(err)
	}
	rogueCert, rogueKey := hostileCert(t, rogueCA, dir, laptopID)

	host, port, _ := net.SplitHostPort(x.auth)
	p, _ := strconv.Atoi(port)
	eapol := func(identity, cert, key, mac string) peertest.EapolResult {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		res, err := peertest.EapolTest(ctx, peertest.EapolOptions{
			Server: host, Port: p, Secret: nasSecret, Identity: identity,
			CACert: x.lab.CAFile, ClientCert: cert, PrivateKey: key, CallingStationID: mac,
			TLS13: true, Timeout: 20 * time.Second,
		})
		if err != nil {
			t.Fatalf("eapol_test: %v\n%s", err, res.Output)
		}
		return res
	}
	laptop := func(stage string) {
		t.Helper()
		res := eapol(laptopID, x.lab.ClientCert, x.lab.ClientKey, laptopMAC)
		if !res.Success || !res.MPPEOK {
			t.Fatalf("%s: laptop success=%v mppe=%v\n%s", stage, res.Success, res.MPPEOK, tail(res.Output, 30))
		}
		if v := res.Get("Tunnel-Private-Group-Id"); v != "300" && v != "333030" {
			t.Fatalf("%s: laptop VLAN %q, want its cached 300", stage, v)
		}
	}
	mab := func(user, password, mac string) []string {
		r := []string{`User-Name = "` + user + `"`, `Calling-Station-Id = "` + mac + `"`, `Message-Authenticator = 0x00`}
		if password != "" {
			r = append(r, `User-Password = "`+password+`"`)
		}
		return r
	}
	printer := func(stage string) {
		t.Helper()
		r := radclient(t, x.auth, "auth", nasSecret, mab("aabbccddeeff", "aabbccddeeff", "AA-BB-CC-DD-EE-FF"))[0]
		if r.Code != "Access-Accept" || r.Get("Tunnel-Private-Group-Id") != "400" {
			t.Fatalf("%s: printer %s VLAN %q, want Access-Accept with its cached 400", stage, r.Code, r.Get("Tunnel-Private-Group-Id"))
		}
	}
	store := x.edge.Cache()
	cached := func(stage string) {
		t.Helper()
		waitLearned(t, x.edge, stage+": the laptop and the printer cached", func(c *cache.Store) bool {
			_, eap, _ := c.LookupEAPTLS(laptopID, laptopMAC)
			_, mab, _ := c.LookupMAB("aa:bb:cc:dd:ee:ff")
			return eap && mab
		})
		if rec, ok, _ := store.LookupEAPTLS(laptopID, laptopMAC); !ok || rec.MAC != laptopMAC || rec.Method != cache.MethodEAPTLS {
			t.Fatalf("%s: laptop not cached: %+v", stage, rec)
		}
		if _, ok, _ := store.LookupMAB("aa:bb:cc:dd:ee:ff"); !ok {
			t.Fatalf("%s: printer not cached", stage)
		}
	}

	// Learned through the cloud.
	laptop("through the cloud")
	printer("through the cloud")
	cached("learned")

	// (c) Unverified Rejects before the cut.
	if res := eapol(laptopID, rogueCert, rogueKey, "02:00:00:00:00:66"); res.Success {
		t.Fatal("the cloud accepted the rogue certificate")
	}
	if r := radclient(t, x.auth, "auth", nasSecret, mab("aabbccddeeff", "wrong password", "AA-BB-CC-DD-EE-FF"))[0]; r.Code != "Access-Reject" {
		t.Fatalf("the cloud answered a wrong MAB password with %s", r.Code)
	}
	cached("after unverified rejects")

	// The cut: the cloud is gone.
	x.fr[0].Kill()
	deadline := time.Now().Add(5 * time.Second)
	for !x.edge.Health().Local() && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if !x.edge.Health().Local() {
		t.Fatal("cloud loss not detected")
	}
	laptop("cut")
	printer("cut")

	// (a) MAB spoofing the laptop's MAC: without credentials (refused as a password login), and
	// with the MAC as its password (MAB proves no more than the MAC: the default MAB VLAN).
	for _, tt := range []struct {
		name     string
		req      []string
		wantCode string
		wantVLAN string
	}{
		{"no credentials", mab("020000000099", "", "02-00-00-00-00-99"), "Access-Reject", ""},
		{"call-check without credentials", append(mab("020000000099", "", "02-00-00-00-00-99"), `Service-Type = Call-Check`), "Access-Reject", ""},
		{"mac as password", mab("020000000099", "020000000099", "02-00-00-00-00-99"), "Access-Accept", "41"},
	} {
		r := radclient(t, x.auth, "auth", nasSecret, tt.req)[0]
		if r.Code != tt.wantCode || r.Get("Tunnel-Private-Group-Id") != tt.wantVLAN {
			t.Errorf("(a) MAB spoofing the laptop, %s: %s VLAN %q, want %s %q", tt.name, r.Code, r.Get("Tunnel-Private-Group-Id"), tt.wantCode, tt.wantVLAN)
		}
		if u, ok := r.Lookup("User-Name"); ok {
			t.Errorf("(a) MAB spoofing the laptop, %s: User-Name %q replayed", tt.name, u)
		}
	}
	// CHAP MAB (radclient computes CHAP-Password from the password): the printer proves its MAC
	// and keeps its VLAN; CHAP of another password is a password login.
	chap := func(password string) peertest.Reply {
		return radclient(t, x.auth, "auth", nasSecret, []string{`User-Name = "aabbccddeeff"`, `CHAP-Password = "` + password + `"`,
			`Calling-Station-Id = "AA-BB-CC-DD-EE-FF"`, `Message-Authenticator = 0x00`})[0]
	}
	if r := chap("aabbccddeeff"); r.Code != "Access-Accept" || r.Get("Tunnel-Private-Group-Id") != "400" {
		t.Errorf("CHAP MAB of the printer during the cut: %s VLAN %q, want its cached 400", r.Code, r.Get("Tunnel-Private-Group-Id"))
	}
	if r := chap("wrong password"); r.Code != "Access-Reject" {
		t.Errorf("CHAP with the printer's MAC and a wrong password during the cut: %s", r.Code)
	}
	// A PAP login with the printer's MAC and a wrong password does not skip its password.
	if r := radclient(t, x.auth, "auth", nasSecret, mab("aabbccddeeff", "wrong password", "AA-BB-CC-DD-EE-FF"))[0]; r.Code != "Access-Reject" {
		t.Errorf("PAP with the printer's MAC and a wrong password during the cut: %s", r.Code)
	}

	// (b) Another certificate of the org CA from the laptop's MAC, claiming the laptop's identity
	// as its outer identity: authenticated as itself, so the default 802.1X VLAN.
	res := eapol(laptopID, intruderCert, intruderKey, laptopMAC)
	if !res.Success || !res.MPPEOK {
		t.Fatalf("(b) intruder not served locally: success=%v mppe=%v\n%s", res.Success, res.MPPEOK, tail(res.Output, 30))
	}
	if v := res.Get("Tunnel-Private-Group-Id"); v != "51" && v != "3531" {
		t.Errorf("(b) intruder VLAN %q, want the default 51", v)
	}
	if u := res.Get("User-Name"); u != "'intruder.example.test'" && u != "intruder.example.test" {
		t.Errorf("(b) intruder named %q, want only its own certificate identity", u)
	}

	// (d) A flood of EAP-Response/Identity from 1,000 spoofed MACs, from four NAS sockets.
	var answered atomic.Int64
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				t.Error(err)
				return
			}
			defer conn.Close()
			for i := range 250 {
				mac := fmt.Sprintf("06:66:00:%02x:%02x:%02x", w, i>>8, i&0xff)
				r := exchangeOn(t, conn, x.auth, identityRequest(t, uint8(i), mac), 2*time.Second)
				if r != nil && r[0] == byte(packet.CodeAccessChallenge) {
					answered.Add(1)
				}
			}
		})
	}
	wg.Wait()
	t.Logf("(d) %d of 1000 spoofed EAP-Response/Identity answered with an EAP-TLS Start", answered.Load())
	laptop("after the identity flood")
	printer("after the identity flood")
	cached("end")
}
