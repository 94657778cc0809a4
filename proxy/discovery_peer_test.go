package proxy_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"mxedge/edge/peertest"
	"mxedge/pki"
	"mxedge/proxy"
	"mxedge/proxy/packet"
	"mxedge/proxy/radsec"
	"mxedge/proxy/radsectest"
)

// TestDiscoveryThroughRadsecproxy: the realm's NAPTR → SRV → A lead to radsecproxy, the realm's
// RadSec server (its certificate carries the NAIRealm), which relays over classic RADIUS/TLS to
// the home server. The discovered pool re-keys User-Password across both hops: the home server
// decrypts what the NAS sent.
func TestDiscoveryThroughRadsecproxy(t *testing.T) {
	peertest.Require(t, "radsecproxy")
	e := newRealmEnv(t)

	// The home server: the lab's server certificate carries IP:127.0.0.1 for radsecproxy's
	// CertificateNameCheck.
	home, err := radsectest.Start(e.lab.ServerTLS(), radsec.DefaultSecret)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(home.Close)
	var mu sync.Mutex
	var passwords []string
	home.SetReply(func(_ *packet.Builder, req packet.Packet) {
		v, _ := req.Attr(packet.AttrUserPassword)
		pw, err := packet.DecryptUserPassword(nil, v, []byte(radsec.DefaultSecret), req.Authenticator())
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			passwords = append(passwords, "error: "+err.Error())
			return
		}
		passwords = append(passwords, strings.TrimRight(string(pw), "\x00")) // RFC 2865 §5.2 padding
	})

	realm := "rp.example"
	is, err := e.lab.CA.Issue(pki.IssueOptions{CommonName: "radsecproxy." + realm, NAIRealms: []string{realm}, Usage: pki.UsageServer | pki.UsageClient})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "rp.pem"), filepath.Join(dir, "rp.key")
	if err := pki.WriteCertificates(cert, true, is.Cert); err != nil {
		t.Fatal(err)
	}
	if err := pki.WriteKey(key, is.Key, true); err != nil {
		t.Fatal(err)
	}
	port := peertest.FreePort(t)
	rp := peertest.StartRadsecproxy(t, peertest.RadsecproxyOptions{
		ListenTLS: fmt.Sprintf("127.0.0.1:%d", port),
		Upstream:  home.Addr().String(),
		Cert:      cert, Key: key, CA: e.lab.CAFile,
	})
	srv := "_radsec._tcp." + realm + "."
	e.zone.add(t,
		fmt.Sprintf(`%s. 300 IN NAPTR 10 10 "s" "x-eduroam:radius.tls" "" %s`, realm, srv),
		fmt.Sprintf(`%s 300 IN SRV 0 0 %d radsecproxy.%s.`, srv, port, realm),
		fmt.Sprintf(`radsecproxy.%s. 300 IN A 127.0.0.1`, realm),
	)
	d := e.discovery(t, func(o *proxy.DiscoveryOptions) { o.Services = []string{"x-eduroam:radius.tls"} })
	pool, err := d.Discover(context.Background(), realm)
	if err != nil {
		t.Fatalf("discover %s: %v\nradsecproxy log:\n%s", realm, err, rp.LogTail(30))
	}
	secret := proxy.Secret("nas-secret")
	auth := []byte("0123456789abcdef")
	for _, pw := range []string{"correct horse", "battery staple"} {
		b := packet.New(nil, packet.CodeAccessRequest, 9, auth)
		b.AddString(packet.AttrUserName, "alice@"+realm)
		b.Add(packet.AttrUserPassword, packet.EncryptUserPassword(nil, []byte(pw), secret, auth))
		b.AddMA()
		pkt, err := b.Finish(secret, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := forwardPacket(t, pool, secret, pkt).Code(); got != packet.CodeAccessAccept {
			t.Fatalf("answer %v\n%s", got, rp.LogTail(30))
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(passwords) != 2 || passwords[0] != "correct horse" || passwords[1] != "battery staple" {
		t.Fatalf("home server decrypted %q", passwords)
	}
}
