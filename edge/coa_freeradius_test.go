package edge_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mxedge/edge/peertest"
	"mxedge/pki/pkitest"
	"mxedge/proxy/dynauth"
)

// TestE2EFreeRADIUSOriginatesCoA: FreeRADIUS as the cloud originates a CoA-Request after an
// Access-Accept (sites-available/originate-coa style) to a RadSec home server of type coa: a TLS
// connection of its own to mxedge's RadSec listener, where it is a peer with
// dynamic_authorization. mxedge relays it to the NAS (FreeRADIUS as the stand-in) and the answer
// back to the cloud on that connection.
func TestE2EFreeRADIUSOriginatesCoA(t *testing.T) {
	certs := peertest.NewCerts(t)
	coaPort := peertest.FreePort(t)
	nas := peertest.StartFreeRADIUS(t, peertest.FreeRADIUSOptions{
		CoAAddr:    fmt.Sprintf("127.0.0.1:%d", coaPort),
		UDPClients: []peertest.Client{{Addr: "127.0.0.1", Secret: nasSecret}},
		ServerCert: certs.ServerCert, ServerKey: certs.ServerKey, CA: certs.CA,
	})
	x := startE2E(t, 1, func(lab *pkitest.Lab) string {
		return fmt.Sprintf("radsec:\n  listen: [\"127.0.0.1:0\"]\n  tls: {certificate: %s, key: %s, ca: %s}\n  peers:\n    - {name: fr-cloud, address: 127.0.0.1, cert_names: [\"localhost\"], dynamic_authorization: true}\n",
			lab.ServerCert, lab.ServerKey, lab.CAFile)
	})
	x.rewrite(t, func(s string) string {
		return replaceOnce(s, "    vendor: cisco\n", fmt.Sprintf("    vendor: cisco\n    coa_port: %d\n", coaPort))
	})
	fr := x.fr[0]
	if err := fr.Stop(); err != nil {
		t.Fatal(err)
	}
	raddb := filepath.Join(fr.Dir(), "raddb")
	edit := func(name string, f func(string) string) {
		t.Helper()
		p := filepath.Join(raddb, name)
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(f(string(b))), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	host, port, _ := strings.Cut(x.radsec, ":")
	edit("radiusd.conf", func(s string) string { return strings.Replace(s, "proxy_requests = no", "proxy_requests = yes", 1) })
	edit("proxy.conf", func(s string) string {
		return s + fmt.Sprintf(`
home_server mxedge-coa {
	type = coa
	ipaddr = %s
	port = %s
	proto = tcp
	secret = radsec
	status_check = none
	tls {
		private_key_file = %q
		certificate_file = %q
		ca_file = %q
		fragment_size = 8192
	}
	coa {
		irt = 2
		mrt = 16
		mrc = 5
		mrd = 30
	}
}
home_server_pool mxedge-coa {
	type = fail-over
	home_server = mxedge-coa
}
`, host, port, x.lab.ServerKey, x.lab.ServerCert, x.lab.CAFile)
	})
	edit("sites-enabled/peertest", func(s string) string {
		return strings.Replace(s, "	post-auth {\n", `	post-auth {
		if (&User-Name == "alice") {
			update coa {
				&User-Name := "%{User-Name}"
				&NAS-IP-Address := 127.0.0.1
				&Calling-Station-Id := "02-00-00-00-00-0a"
				&Home-Server-Pool := "mxedge-coa"
			}
		}
`, 1)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := fr.Restart(ctx); err != nil {
		t.Fatalf("freeradius with a coa home server: %v\n%s", err, fr.LogTail(40))
	}
	waitFor(t, "the upstream back", 10*time.Second, func() bool { return !x.edge.Health().Local() })
	r := radclient(t, x.auth, "auth", nasSecret, []string{`User-Name = "alice"`, `User-Password = "s3cret pass\"word"`, `Message-Authenticator = 0x00`})[0]
	if r.Code != "Access-Accept" {
		t.Fatalf("alice: %s", r.Code)
	}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if recs, _ := nas.CoA(); len(recs) == 1 {
			if m := recs[0].Map; m["User-Name"] != "alice" || m["Calling-Station-Id"] != "02-00-00-00-00-0a" {
				t.Fatalf("the NAS got %v", m)
			}
			waitFor(t, "the relayed ACK", 5*time.Second, func() bool {
				evs := x.edge.Events().Recent(20)
				for _, ev := range evs {
					if ev.Reason == "ack from radsec:fr-cloud by nas-ip-address" {
						return true
					}
				}
				return false
			})
			// FreeRADIUS retransmits a CoA it got no answer to after irt (2 s): none arriving in
			// 3 s means the ACK reached it on its connection.
			time.Sleep(3 * time.Second)
			if st := x.edge.DynAuth().Stats(); st.DuplicateAnswered.Load() != 0 || st.Dropped[dynauth.DropDuplicate].Load() != 0 {
				t.Errorf("FreeRADIUS retransmitted: %d answered again", st.DuplicateAnswered.Load())
			}
			return
		}
	}
	t.Fatalf("no CoA reached the NAS\nfreeradius:\n%s", fr.LogTail(60))
}
