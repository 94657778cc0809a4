package pki

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"
)

type identityFiles struct{ cert, key, ca string }

func writeIdentity(t testing.TB, dir string, ca *CA, is *Issued, force bool) identityFiles {
	t.Helper()
	f := identityFiles{filepath.Join(dir, "srv.pem"), filepath.Join(dir, "srv.key"), filepath.Join(dir, "ca.pem")}
	must(t, WriteCertificates(f.cert, force, append([]*x509.Certificate{is.Cert}, is.Chain...)...))
	must(t, WriteKey(f.key, is.Key, force))
	must(t, WriteCertificates(f.ca, force, ca.Root()))
	return f
}

// echoServer accepts TLS connections and echoes lines until stopped;
// stop closes everything and waits for every goroutine.
func echoServer(t testing.TB, cfg *tls.Config) (string, func()) {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() {
				defer c.Close()
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					if _, err := c.Write(append(sc.Bytes(), '\n')); err != nil {
						return
					}
				}
			})
		}
	})
	var once sync.Once
	stop := func() {
		once.Do(func() {
			ln.Close()
			mu.Lock()
			for _, c := range conns {
				c.Close()
			}
			mu.Unlock()
			wg.Wait()
		})
	}
	t.Cleanup(stop)
	return ln.Addr().String(), stop
}

func echo(t testing.TB, c *tls.Conn, msg string) {
	t.Helper()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte(msg + "\n")); err != nil {
		t.Fatalf("write: %v", err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || line != msg+"\n" {
		t.Fatalf("echo %q: %q %v", msg, line, err)
	}
}

// TestReloaderLive: a reload changes the certificate for new handshakes
// while an established connection keeps working.
func TestReloaderLive(t *testing.T) {
	base := runtime.NumGoroutine()
	ca := newRoot(t, KeyECDSAP256)
	ca2 := newRoot(t, KeyECDSAP256)
	cli := issue(t, ca, IssueOptions{CommonName: "cli", Usage: UsageClient})
	srv1 := issue(t, ca, IssueOptions{CommonName: "srv-1", IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, Usage: UsageServer})
	srv2 := issue(t, ca, IssueOptions{CommonName: "srv-2", IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, Usage: UsageServer})
	dir := t.TempDir()
	files := writeIdentity(t, dir, ca, srv1, false)
	r, err := NewReloader(ReloaderOptions{CertFile: files.cert, KeyFile: files.key, CAFiles: []string{files.ca}})
	if err != nil {
		t.Fatal(err)
	}
	addr, stop := echoServer(t, r.ServerConfig(&tls.Config{ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12}))
	defer stop()
	dial := func(t testing.TB, client *Issued) (*tls.Conn, error) {
		cfg := &tls.Config{RootCAs: pool(ca.Cert), ServerName: "127.0.0.1",
			Certificates: []tls.Certificate{{Certificate: client.DERChain(), PrivateKey: client.Key}}}
		c, err := tls.Dial("tcp", addr, cfg)
		if err != nil {
			return nil, err
		}
		// TLS 1.3 reports client-certificate rejection on first read.
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write([]byte("hello\n")); err != nil {
			c.Close()
			return nil, err
		}
		if _, err := bufio.NewReader(c).ReadString('\n'); err != nil {
			c.Close()
			return nil, err
		}
		return c, nil
	}
	c1, err := dial(t, cli)
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	if cn := c1.ConnectionState().PeerCertificates[0].Subject.CommonName; cn != "srv-1" {
		t.Fatalf("first handshake got %s", cn)
	}

	// A bad reload (key of another cert) keeps the old material.
	must(t, WriteKey(files.key, srv2.Key, true))
	if err := r.Reload(); !errors.Is(err, ErrKeyMismatch) {
		t.Fatalf("mismatched reload: %v", err)
	}
	if r.Current().Certificate.Leaf.Subject.CommonName != "srv-1" {
		t.Fatal("failed reload replaced the material")
	}
	// Complete the rotation, and trust only ca2 for clients from now on.
	must(t, WriteCertificates(files.cert, true, srv2.Cert))
	must(t, WriteCertificates(files.ca, true, ca2.Cert))
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	c2, err := dial(t, issue(t, ca2, IssueOptions{CommonName: "cli2", Usage: UsageClient}))
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if cn := c2.ConnectionState().PeerCertificates[0].Subject.CommonName; cn != "srv-2" {
		t.Errorf("new handshake got %s", cn)
	}
	if c, err := dial(t, cli); err == nil {
		c.Close()
		t.Error("client of the old CA still accepted after CA reload")
	}
	// The connection made before the reload is untouched.
	echo(t, c1, "still here")
	c1.Close()
	c2.Close()
	stop()
	for i := 0; runtime.NumGoroutine() > base && i < 200; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > base {
		t.Errorf("goroutines %d, baseline %d", n, base)
	}
}

// TestReloaderPoll: Run notices changed files.
func TestReloaderPoll(t *testing.T) {
	ca := newRoot(t, KeyECDSAP256)
	srv1 := issue(t, ca, IssueOptions{CommonName: "srv-1", Usage: UsageServer})
	srv2 := issue(t, ca, IssueOptions{CommonName: "srv-2", Usage: UsageServer})
	files := writeIdentity(t, t.TempDir(), ca, srv1, false)
	r, err := NewReloader(ReloaderOptions{CertFile: files.cert, KeyFile: files.key, PollInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	must(t, WriteKey(files.key, srv2.Key, true))
	must(t, WriteCertificates(files.cert, true, srv2.Cert))
	future := time.Now().Add(2 * time.Second) // coarse mtime filesystems
	os.Chtimes(files.cert, future, future)
	os.Chtimes(files.key, future, future)
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, _ := r.GetCertificate(nil)
		if c.Leaf.Subject.CommonName == "srv-2" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("poll did not reload")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
}

// TestReloaderVerifyConnection: typed reasons through tls.Config.
func TestReloaderVerifyConnection(t *testing.T) {
	ca := newRoot(t, KeyECDSAP256)
	other := newRoot(t, KeyECDSAP256)
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.pem")
	must(t, WriteCertificates(caFile, false, ca.Cert))
	r, err := NewReloader(ReloaderOptions{CAFiles: []string{caFile}})
	if err != nil {
		t.Fatal(err)
	}
	vc := r.VerifyConnection(VerifyOptions{Usage: UsageServer})
	good := issue(t, ca, IssueOptions{CommonName: "s", IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, Usage: UsageServer})
	bad := issue(t, other, IssueOptions{CommonName: "s", IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, Usage: UsageServer})
	if err := vc(tls.ConnectionState{ServerName: "127.0.0.1", PeerCertificates: []*x509.Certificate{good.Cert}}); err != nil {
		t.Errorf("good: %v", err)
	}
	if err := vc(tls.ConnectionState{ServerName: "10.0.0.1", PeerCertificates: []*x509.Certificate{good.Cert}}); !errors.Is(err, ErrNameMismatch) {
		t.Errorf("wrong name: %v", err)
	}
	if err := vc(tls.ConnectionState{ServerName: "127.0.0.1", PeerCertificates: []*x509.Certificate{bad.Cert}}); !errors.Is(err, ErrUnknownAuthority) {
		t.Errorf("other CA: %v", err)
	}
	if _, err := NewReloader(ReloaderOptions{CertFile: "x"}); err == nil {
		t.Error("cert without key accepted")
	}
}
