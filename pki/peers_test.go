package pki_test

// Certificates made by package pki against the real peers: FreeRADIUS as EAP-TLS and RadSec server, eapol_test as the
// EAP-TLS supplicant, radsecproxy as a RadSec client of FreeRADIUS. The
// harness is edge/peertest, imported by this external test package only:
// package pki itself stays a leaf.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"mxedge/edge/peertest"
	"mxedge/pki"
)

type peerPKI struct {
	root, inter                       *pki.CA
	caFile                            string
	serverCert, serverKey             string
	clientCert, clientKey             string
	otherClientCert, otherClientKey   string
	expiredClientCert, expiredClientK string
}

func writePair(t *testing.T, dir, name string, is *pki.Issued) (string, string) {
	t.Helper()
	c, k := filepath.Join(dir, name+".pem"), filepath.Join(dir, name+".key")
	if err := pki.WriteCertificates(c, false, append([]*x509.Certificate{is.Cert}, is.Chain...)...); err != nil {
		t.Fatal(err)
	}
	if err := pki.WriteKey(k, is.Key, false); err != nil {
		t.Fatal(err)
	}
	return c, k
}

// newPeerPKI: ECDSA root → ECDSA intermediate → RSA server certificate
// (sent with its chain), and RSA client certificates straight under the
// root (wpa_supplicant sends only the leaf).
func newPeerPKI(t *testing.T) *peerPKI {
	t.Helper()
	dir := t.TempDir()
	p := &peerPKI{}
	var err error
	if p.root, err = pki.NewCA(pki.CAOptions{CommonName: "mxedge peer root", Organization: "mxedge"}); err != nil {
		t.Fatal(err)
	}
	if p.inter, err = pki.NewCA(pki.CAOptions{CommonName: "mxedge peer issuing", Parent: p.root}); err != nil {
		t.Fatal(err)
	}
	p.caFile = filepath.Join(dir, "ca.pem")
	if err := pki.WriteCertificates(p.caFile, false, p.root.Cert); err != nil {
		t.Fatal(err)
	}
	// radsecproxy uses one certificate to accept and to connect, and
	// OpenSSL enforces the EKU of each role: server and client.
	srv, err := p.inter.Issue(pki.IssueOptions{CommonName: "localhost", DNSNames: []string{"localhost"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")}, Usage: pki.UsageServer | pki.UsageClient, KeyType: pki.KeyRSA2048})
	if err != nil {
		t.Fatal(err)
	}
	p.serverCert, p.serverKey = writePair(t, dir, "server", srv)
	cli, err := p.root.Issue(pki.IssueOptions{CommonName: "client.example", UPNs: []string{"client@corp.example"},
		Emails: []string{"client@example.com"}, Usage: pki.UsageClient, KeyType: pki.KeyRSA2048})
	if err != nil {
		t.Fatal(err)
	}
	p.clientCert, p.clientKey = writePair(t, dir, "client", cli)
	other, err := pki.NewCA(pki.CAOptions{CommonName: "mxedge peer root", Organization: "mxedge"})
	if err != nil {
		t.Fatal(err)
	}
	oc, err := other.Issue(pki.IssueOptions{CommonName: "client.example", Usage: pki.UsageClient})
	if err != nil {
		t.Fatal(err)
	}
	p.otherClientCert, p.otherClientKey = writePair(t, dir, "other", oc)
	now := time.Now()
	ec, err := p.root.Issue(pki.IssueOptions{CommonName: "client.example", Usage: pki.UsageClient,
		NotBefore: now.Add(-48 * time.Hour), NotAfter: now.Add(-time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	p.expiredClientCert, p.expiredClientK = writePair(t, dir, "expired", ec)
	return p
}

func loop(port int) string { return "127.0.0.1:" + strconv.Itoa(port) }

func tail(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(l[max(0, len(l)-n):], "\n")
}

func TestPeers(t *testing.T) {
	peertest.Require(t, "freeradius", "eapol_test", "radsecproxy")
	p := newPeerPKI(t)
	auth, radsec, udp := peertest.FreePort(t), peertest.FreePort(t), peertest.FreePort(t)
	fr := peertest.StartFreeRADIUS(t, peertest.FreeRADIUSOptions{
		UDPAuthAddr: loop(auth), RadSecAddr: loop(radsec),
		UDPClients: []peertest.Client{{Addr: "127.0.0.1", Secret: "eap secret"}},
		ServerCert: p.serverCert, ServerKey: p.serverKey, CA: p.caFile,
		Users: []peertest.User{{Name: "client.example", Reply: []string{`Filter-Id = "corp"`}}},
	})
	// radsecproxy: UDP in, RadSec to FreeRADIUS with our certificate as its
	// client identity, verifying FreeRADIUS's certificate against our root.
	rp := peertest.StartRadsecproxy(t, peertest.RadsecproxyOptions{
		ListenUDP: loop(udp), Upstream: loop(radsec),
		Clients: []peertest.Client{{Addr: "127.0.0.1", Secret: "nas secret"}},
		Cert:    p.serverCert, Key: p.serverKey, CA: p.caFile,
	})
	eap := func(t *testing.T, port int, secret, cert, key string, mod func(*peertest.EapolOptions)) peertest.EapolResult {
		t.Helper()
		o := peertest.EapolOptions{Port: port, Secret: secret, Identity: "client.example",
			CACert: p.caFile, ClientCert: cert, PrivateKey: key, Timeout: 10 * time.Second}
		if mod != nil {
			mod(&o)
		}
		res, err := peertest.EapolTest(t.Context(), o)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	tests := []struct {
		name        string
		port        int
		secret      string
		cert, key   string
		mod         func(*peertest.EapolOptions)
		wantSuccess bool
		version     string
	}{
		{"eap-tls 1.2", auth, "eap secret", p.clientCert, p.clientKey, func(o *peertest.EapolOptions) { o.TLS12Only = true }, true, "TLSv1.2"},
		{"eap-tls 1.3", auth, "eap secret", p.clientCert, p.clientKey, func(o *peertest.EapolOptions) { o.TLS13 = true }, true, "TLSv1.3"},
		{"eap-tls via radsecproxy radsec", udp, "nas secret", p.clientCert, p.clientKey, func(o *peertest.EapolOptions) { o.TLS13 = true }, true, "TLSv1.3"},
		{"client of another CA", auth, "eap secret", p.otherClientCert, p.otherClientKey, func(o *peertest.EapolOptions) { o.Timeout = 5 * time.Second }, false, ""},
		{"expired client", auth, "eap secret", p.expiredClientCert, p.expiredClientK, func(o *peertest.EapolOptions) { o.Timeout = 5 * time.Second }, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := eap(t, tt.port, tt.secret, tt.cert, tt.key, tt.mod)
			if res.Success != tt.wantSuccess {
				t.Fatalf("success=%v, want %v\n%s\n--- freeradius\n%s\n--- radsecproxy\n%s", res.Success, tt.wantSuccess,
					tail(res.Output, 25), fr.LogTail(15), rp.LogTail(10))
			}
			if tt.wantSuccess && !res.MPPEOK {
				t.Errorf("MPPE keys mismatch\n%s", tail(res.Output, 10))
			}
			if tt.version != "" && res.TLSVersion != tt.version {
				t.Errorf("TLS version %q, want %q", res.TLSVersion, tt.version)
			}
		})
	}

	// A Go RadSec client with our client certificate: FreeRADIUS must accept
	// it (TLS 1.2 fails the handshake otherwise), and our Verify, fed through
	// the Reloader's VerifyConnection, accepts FreeRADIUS's chain (leaf +
	// intermediate) for the server role and name 127.0.0.1.
	t.Run("go radsec client", func(t *testing.T) {
		r, err := pki.NewReloader(pki.ReloaderOptions{CertFile: p.clientCert, KeyFile: p.clientKey, CAFiles: []string{p.caFile}})
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
			cfg := &tls.Config{InsecureSkipVerify: true, ServerName: "127.0.0.1", MinVersion: v, MaxVersion: v,
				GetClientCertificate: r.GetClientCertificate,
				VerifyConnection:     r.VerifyConnection(pki.VerifyOptions{Usage: pki.UsageServer, RequireSHA256: true})}
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			c, err := (&tls.Dialer{Config: cfg}).DialContext(ctx, "tcp", loop(radsec))
			cancel()
			if err != nil {
				t.Fatalf("TLS %x: %v\n%s", v, err, fr.LogTail(10))
			}
			cs := c.(*tls.Conn).ConnectionState()
			if len(cs.PeerCertificates) != 2 {
				t.Errorf("FreeRADIUS sent %d certificates, want leaf + intermediate", len(cs.PeerCertificates))
			}
			c.Close()
		}
	})
}
