package pki

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestVerifyRevokedMatchesOpenSSL: `openssl verify -crl_check` and Verify
// with a Checker agree on a CRL written by CreateCRL.
func TestVerifyRevokedMatchesOpenSSL(t *testing.T) {
	ca := newRoot(t, KeyECDSAP256)
	good := issue(t, ca, IssueOptions{CommonName: "good", Usage: UsageClient})
	revoked := issue(t, ca, IssueOptions{CommonName: "revoked", Usage: UsageClient})
	der, err := ca.CreateCRL(CRLOptions{Number: 1, Revoked: []RevokedCert{{Serial: revoked.Cert.SerialNumber, ReasonCode: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	caFile, crlFile := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca.crl")
	must(t, WriteCertificates(caFile, false, ca.Cert))
	must(t, WriteFileAtomic(crlFile, EncodeCRL(der), CertFileMode, false))
	c, err := NewChecker(CheckerOptions{CRLFiles: []string{crlFile}, Issuers: []*x509.Certificate{ca.Cert}, Policy: HardFail})
	if err != nil {
		t.Fatal(err)
	}
	c.Refresh(t.Context())
	for _, tt := range []struct {
		name string
		is   *Issued
		want string
	}{{"good", good, ReasonOK}, {"revoked", revoked, ReasonRevoked}} {
		t.Run(tt.name, func(t *testing.T) {
			certFile := filepath.Join(dir, tt.name+".pem")
			must(t, WriteCertificates(certFile, false, tt.is.Cert))
			out, err := exec.Command(opensslBin(t), "verify", "-crl_check", "-CRLfile", crlFile, "-CAfile", caFile, "-purpose", "sslclient", certFile).CombinedOutput()
			got := ReasonOK
			if err != nil {
				got = "other: " + string(out)
				if bytes.Contains(out, []byte("error 23 at")) {
					got = ReasonRevoked
				}
			}
			if got != tt.want {
				t.Errorf("openssl: %s, want %s", got, tt.want)
			}
			v, _ := Verify([]*x509.Certificate{tt.is.Cert}, VerifyOptions{Roots: pool(ca.Cert), Usage: UsageClient, Revocation: c})
			if v.Reason != tt.want {
				t.Errorf("pki: %s (%v), want %s", v.Reason, v.Err, tt.want)
			}
		})
	}
}

// TestOpenSSLClientTLS: openssl s_client, with a client certificate and
// key file from this package, against a Go TLS server using our server
// certificate: each side verifies the other's chain.
func TestOpenSSLClientTLS(t *testing.T) {
	for _, kt := range []KeyType{KeyECDSAP256, KeyRSA2048} {
		t.Run(string(kt), func(t *testing.T) {
			root := newRoot(t, kt)
			inter := newIntermediate(t, root)
			srv := issue(t, inter, IssueOptions{CommonName: "radsec.test", DNSNames: []string{"radsec.test"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, Usage: UsageServer, KeyType: kt})
			cli := issue(t, inter, IssueOptions{CommonName: "nas-1", UPNs: []string{"nas-1@corp.test"}, Usage: UsageClient, KeyType: kt})
			dir := t.TempDir()
			files := writeIdentity(t, dir, root, srv, false)
			cliCert, cliKey := filepath.Join(dir, "cli.pem"), filepath.Join(dir, "cli.key")
			must(t, WriteCertificates(cliCert, false, cli.Cert, cli.Chain[0]))
			must(t, WriteKey(cliKey, cli.Key, false))
			r, err := NewReloader(ReloaderOptions{CertFile: files.cert, KeyFile: files.key, CAFiles: []string{files.ca}})
			if err != nil {
				t.Fatal(err)
			}
			ln, err := tls.Listen("tcp", "127.0.0.1:0", r.ServerConfig(&tls.Config{ClientAuth: tls.RequireAndVerifyClientCert}))
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			type result struct {
				peer *x509.Certificate
				err  error
			}
			res := make(chan result, 1)
			go func() {
				c, err := ln.Accept()
				if err != nil {
					res <- result{err: err}
					return
				}
				defer c.Close()
				tc := c.(*tls.Conn)
				tc.SetDeadline(time.Now().Add(10 * time.Second))
				if err := tc.Handshake(); err != nil {
					res <- result{err: err}
					return
				}
				line, _ := bufio.NewReader(tc).ReadString('\n')
				tc.Write([]byte("pong:" + line))
				res <- result{peer: tc.ConnectionState().PeerCertificates[0]}
			}()
			ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, opensslBin(t), "s_client", "-connect", ln.Addr().String(),
				"-cert", cliCert, "-cert_chain", cliCert, "-key", cliKey, "-CAfile", files.ca, "-verify_return_error", "-verify_ip", "127.0.0.1",
				"-purpose", "sslserver", "-quiet")
			cmd.Stdin = strings.NewReader("ping\n")
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("s_client: %v\n%s", err, out)
			}
			rr := <-res
			if rr.err != nil {
				t.Fatalf("server: %v", rr.err)
			}
			if !rr.peer.Equal(cli.Cert) {
				t.Error("server saw another client certificate")
			}
			if !bytes.Contains(out, []byte("pong:ping")) {
				t.Errorf("s_client output lacks echo:\n%s", out)
			}
		})
	}
}

// TestOpenSSLServerTLS: a Go client with our client certificate against
// openssl s_server using our server certificate and PKCS#8 key file, which
// requires and verifies the client certificate.
func TestOpenSSLServerTLS(t *testing.T) {
	root := newRoot(t, KeyRSA2048)
	srv := issue(t, root, IssueOptions{CommonName: "srv", IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, Usage: UsageServer, KeyType: KeyRSA2048})
	cli := issue(t, root, IssueOptions{CommonName: "cli", Usage: UsageClient, KeyType: KeyECDSAP384})
	files := writeIdentity(t, t.TempDir(), root, srv, false)
	// Reserve a port for s_server; it cannot be told to use :0 and report.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, opensslBin(t), "s_server", "-accept", addr, "-cert", files.cert, "-key", files.key,
		"-CAfile", files.ca, "-Verify", "2", "-verify_return_error", "-purpose", "sslclient", "-naccept", "1", "-rev")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cancel()
		_ = cmd.Wait()
	}()
	var c *tls.Conn
	deadline := time.Now().Add(10 * time.Second)
	cfg := &tls.Config{RootCAs: pool(root.Cert), ServerName: "127.0.0.1",
		Certificates: []tls.Certificate{{Certificate: cli.DERChain(), PrivateKey: cli.Key}}}
	for {
		c, err = tls.DialWithDialer(&net.Dialer{Timeout: time.Second}, "tcp", addr, cfg)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("dial s_server: %v\n%s", err, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	// -rev echoes each line reversed once the handshake (with our client
	// certificate verified) is complete.
	fmt.Fprint(c, "mxedge\n")
	br := bufio.NewReader(c)
	var got string
	for !strings.Contains(got, "egdexm") {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("read: %v (got %q)\n%s", err, got, out.String())
		}
		got += line
	}
	if !c.ConnectionState().PeerCertificates[0].Equal(srv.Cert) {
		t.Error("wrong server certificate")
	}
	_, _ = io.WriteString(c, "Q\n")
}
