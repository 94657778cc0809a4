package mgmt_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"mxedge/edge/mgmt"
	"mxedge/pki"
)

// listener is the daemon side of certificate sync: ApplyServerTLS re-reads the files as a reload
// of survivability.eap_tls does, and a TLS server hands new handshakes the current certificate,
// as the local EAP-TLS listener does.
type listener struct {
	files   mgmt.ServerTLSFiles
	cur     atomic.Pointer[tls.Certificate]
	applied atomic.Int32
	fail    atomic.Bool
}

func (l *listener) apply() error {
	if l.fail.Load() {
		return errors.New("reload refused")
	}
	tc, err := pki.LoadKeyPairWithPassword(l.files.CertFile, l.files.KeyFile, l.files.KeyPassword)
	if err != nil {
		return err
	}
	if _, err := pki.LoadCertificates(l.files.CAFile); err != nil {
		return err
	}
	l.cur.Store(&tc)
	l.applied.Add(1)
	return nil
}

// serve runs a TLS echo server on loopback presenting l's current certificate.
func (l *listener) serve(t *testing.T) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return l.cur.Load(), nil },
		MinVersion:     tls.VersionTLS12,
	})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { defer c.Close(); _, _ = io.Copy(c, c) })
		}
	})
	return ln.Addr().String()
}

type orgPKI struct {
	ca, other *pki.CA
}

func newOrgPKI(t *testing.T) *orgPKI {
	t.Helper()
	ca, err := pki.NewCA(pki.CAOptions{CommonName: "org CA"})
	if err != nil {
		t.Fatal(err)
	}
	other, err := pki.NewCA(pki.CAOptions{CommonName: "someone else's CA"})
	if err != nil {
		t.Fatal(err)
	}
	return &orgPKI{ca: ca, other: other}
}

// bundle issues a server certificate from ca for name and returns it as the controller sends it.
func (o *orgPKI) bundle(t *testing.T, ca *pki.CA, name string, tweak func(*pki.IssueOptions)) *mgmt.ServerCertificates {
	t.Helper()
	opts := pki.IssueOptions{CommonName: name, DNSNames: []string{name}, Usage: pki.UsageServer}
	if tweak != nil {
		tweak(&opts)
	}
	is, err := ca.Issue(opts)
	if err != nil {
		t.Fatal(err)
	}
	key, err := pki.EncodeKey(is.Key)
	if err != nil {
		t.Fatal(err)
	}
	return &mgmt.ServerCertificates{OrgCA: string(pki.EncodeCertificates(o.ca.Cert)),
		Certificate: string(pki.EncodeCertificates(is.Cert)), Key: string(key)}
}

func newCertSyncEnv(t *testing.T, password pki.Password) (*syncEnv, *listener) {
	t.Helper()
	dir := t.TempDir()
	l := &listener{files: mgmt.ServerTLSFiles{CertFile: filepath.Join(dir, "server.crt"), KeyFile: filepath.Join(dir, "server.key"),
		CAFile: filepath.Join(dir, "org-ca.pem"), KeyPassword: password}}
	env := newSyncEnv(t, func(o *mgmt.SyncOptions) {
		o.ServerTLS = &l.files
		o.ApplyServerTLS = l.apply
		o.MergeCache = nil
	})
	return env, l
}

// peerCN handshakes with addr and returns the server certificate's CN and the connection.
func peerCN(t *testing.T, addr string) (string, *tls.Conn) {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true}) // the test reads which certificate is served
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.ConnectionState().PeerCertificates[0].Subject.CommonName, c
}

func echo(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatalf("write on a connection made before the rotation: %v", err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != msg {
		t.Fatalf("echo %q, %v", buf, err)
	}
}

// TestServerCertRotation: the cloud delivers a bundle, the edge installs and applies it (key
// 0600); a second bundle rotates it: new handshakes get the new certificate while a connection
// made before keeps working on the old one. An unchanged bundle is not applied again, not even by
// a restarted Syncer.
func TestServerCertRotation(t *testing.T) {
	org := newOrgPKI(t)
	env, l := newCertSyncEnv(t, nil)
	ctx := context.Background()

	if err := env.s.SyncOnce(ctx); err != nil || l.applied.Load() != 0 {
		t.Fatalf("no certificates in the cloud: %v, applied %d", err, l.applied.Load())
	}
	first := org.bundle(t, org.ca, "radius-a.site.example", nil)
	env.srv.SetCertificates(first)
	if err := env.s.SyncOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if l.applied.Load() != 1 {
		t.Fatalf("applied %d times, want 1", l.applied.Load())
	}
	for path, want := range map[string]string{l.files.CertFile: first.Certificate, l.files.KeyFile: first.Key, l.files.CAFile: first.OrgCA} {
		if b, _ := os.ReadFile(path); string(b) != want {
			t.Errorf("%s does not hold what the cloud sent", path)
		}
	}
	if fi, err := os.Stat(l.files.KeyFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, %v", fi.Mode(), err)
	}
	addr := l.serve(t)
	cn, inFlight := peerCN(t, addr)
	if cn != "radius-a.site.example" {
		t.Fatalf("served %q", cn)
	}

	second := org.bundle(t, org.ca, "radius-b.site.example", nil)
	env.srv.SetCertificates(second)
	if err := env.s.SyncOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if cn, _ := peerCN(t, addr); cn != "radius-b.site.example" {
		t.Fatalf("after rotation new handshakes get %q", cn)
	}
	echo(t, inFlight, "conversation in flight")
	if got := inFlight.ConnectionState().PeerCertificates[0].Subject.CommonName; got != "radius-a.site.example" {
		t.Fatalf("the connection in flight changed certificate to %q", got)
	}
	st := env.s.Status()
	if st.ServerCertsRejected != 0 || st.ServerCertsApplied.IsZero() || st.ServerCertNotAfter.IsZero() {
		t.Fatalf("status %+v", st)
	}

	// Unchanged: a 304 now, and after a restart (no ETag yet) the same bytes are not applied again.
	if err := env.s.SyncOnce(ctx); err != nil || l.applied.Load() != 2 {
		t.Fatalf("unchanged bundle: %v, applied %d", err, l.applied.Load())
	}
	restarted := newSyncer(t, env.srv, env.reg, func(o *mgmt.SyncOptions) {
		o.ServerTLS, o.ApplyServerTLS, o.MergeCache = &l.files, l.apply, nil
	})
	if err := restarted.s.SyncOnce(ctx); err != nil || l.applied.Load() != 2 {
		t.Fatalf("restarted syncer: %v, applied %d, want still 2", err, l.applied.Load())
	}
	if n := env.srv.Requests("GET " + mgmt.PathCertificates(env.reg.EdgeID)); n < 5 {
		t.Fatalf("certificates fetched %d times", n)
	}
}

// TestServerCertBadBundleKeepsLastGood: every kind of bad bundle is rejected, logged and counted;
// the files on disk and the certificate served stay the last good ones; a reload that fails puts
// the previous files back. A good bundle afterwards is applied.
func TestServerCertBadBundleKeepsLastGood(t *testing.T) {
	org := newOrgPKI(t)
	env, l := newCertSyncEnv(t, nil)
	ctx := context.Background()
	good := org.bundle(t, org.ca, "radius.site.example", nil)
	env.srv.SetCertificates(good)
	if err := env.s.SyncOnce(ctx); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Dir(l.files.CertFile)
	before := dirState(t, dir)
	addr := l.serve(t)

	other := org.bundle(t, org.ca, "radius-other.site.example", nil)
	mismatched := *good
	mismatched.Key = other.Key
	tests := []struct {
		name string
		b    *mgmt.ServerCertificates
	}{
		{"client EKU", org.bundle(t, org.ca, "radius.site.example", func(o *pki.IssueOptions) { o.Usage = pki.UsageClient })},
		{"signed by another CA", org.bundle(t, org.other, "radius.site.example", nil)},
		{"expired", org.bundle(t, org.ca, "radius.site.example", func(o *pki.IssueOptions) {
			o.NotBefore, o.NotAfter = time.Now().Add(-48*time.Hour), time.Now().Add(-time.Hour)
		})},
		{"key of another certificate", &mismatched},
		{"garbage", &mgmt.ServerCertificates{OrgCA: "nope", Certificate: "nope", Key: "nope"}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env.srv.SetCertificates(tt.b)
			err := env.s.SyncOnce(ctx)
			if !errors.Is(err, mgmt.ErrCertificatesRejected) {
				t.Fatalf("SyncOnce = %v, want ErrCertificatesRejected", err)
			}
			if got := dirState(t, dir); !equalState(got, before) {
				t.Fatalf("files changed by a rejected bundle:\n%v\nwant\n%v", got, before)
			}
			if l.applied.Load() != 1 {
				t.Fatal("a rejected bundle was applied")
			}
			if st := env.s.Status(); st.ServerCertsRejected != i+1 {
				t.Fatalf("rejected count %d, want %d", st.ServerCertsRejected, i+1)
			}
			if cn, _ := peerCN(t, addr); cn != "radius.site.example" {
				t.Fatalf("serving %q", cn)
			}
		})
	}
	if !strings.Contains(env.logs.String(), "server certificates rejected: keeping the last good") {
		t.Fatalf("rejection not logged:\n%s", env.logs)
	}

	// A bundle that validates but whose reload fails: the previous files are put back.
	l.fail.Store(true)
	env.srv.SetCertificates(other)
	if err := env.s.SyncOnce(ctx); !errors.Is(err, mgmt.ErrCertificatesRejected) {
		t.Fatalf("failed reload: %v", err)
	}
	if got := dirState(t, dir); !equalState(got, before) {
		t.Fatalf("files not restored after a failed reload:\n%v\nwant\n%v", got, before)
	}
	l.fail.Store(false)
	if err := env.s.SyncOnce(ctx); err != nil || l.applied.Load() != 2 {
		t.Fatalf("good bundle after the bad ones: %v, applied %d", err, l.applied.Load())
	}
	if cn, _ := peerCN(t, addr); cn != "radius-other.site.example" {
		t.Fatalf("serving %q after the good bundle", cn)
	}
}

// equalState compares dirState maps.
func equalState(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestServerCertEncryptedKey: the cloud may deliver a passphrase-protected key, PKCS#8 (openssl
// pkcs8 -topk8 -v2 aes-256-cbc) or legacy PEM (openssl ec -aes256); it opens with the passphrase
// the edge holds, is written as delivered (still encrypted, 0600), and the passphrase never
// reaches the log. A wrong passphrase rejects the bundle.
func TestServerCertEncryptedKey(t *testing.T) {
	org := newOrgPKI(t)
	const pass = "edge-held-passphrase"
	for _, form := range []string{"pkcs8", "legacy"} {
		t.Run(form, func(t *testing.T) {
			env, l := newCertSyncEnv(t, pki.Password(pass))
			b := org.bundle(t, org.ca, "radius.site.example", nil)
			b.Key = string(encryptWithOpenSSL(t, []byte(b.Key), form, pass))
			env.srv.SetCertificates(b)
			if err := env.s.SyncOnce(context.Background()); err != nil {
				t.Fatal(err)
			}
			if l.applied.Load() != 1 || l.cur.Load() == nil {
				t.Fatal("encrypted key not applied")
			}
			onDisk, _ := os.ReadFile(l.files.KeyFile)
			if !bytes.Equal(onDisk, []byte(b.Key)) || !bytes.Contains(onDisk, []byte("ENCRYPTED")) {
				t.Fatal("the key on disk is not the encrypted key as delivered")
			}
			if strings.Contains(env.logs.String(), pass) {
				t.Fatalf("the passphrase reached the log:\n%s", env.logs)
			}

			wrong, _ := newCertSyncEnv(t, pki.Password("not-it"))
			wrong.srv.SetCertificates(b)
			if err := wrong.s.SyncOnce(context.Background()); !errors.Is(err, mgmt.ErrCertificatesRejected) || !errors.Is(err, pki.ErrBadPassword) {
				t.Fatalf("wrong passphrase: %v", err)
			}
		})
	}
}

// encryptWithOpenSSL protects a PEM key with openssl, as an operator or a controller would.
func encryptWithOpenSSL(t *testing.T, key []byte, form, pass string) []byte {
	t.Helper()
	dir := t.TempDir()
	in, out := filepath.Join(dir, "in.key"), filepath.Join(dir, "out.key")
	if err := os.WriteFile(in, key, 0o600); err != nil {
		t.Fatal(err)
	}
	args := map[string][]string{
		"pkcs8":  {"pkcs8", "-topk8", "-v2", "aes-256-cbc", "-in", in, "-out", out, "-passout", "pass:" + pass},
		"legacy": {"ec", "-aes256", "-in", in, "-out", out, "-passout", "pass:" + pass},
	}[form]
	if b, err := exec.Command("openssl", args...).CombinedOutput(); err != nil {
		t.Fatalf("openssl %v: %v\n%s", args, err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
