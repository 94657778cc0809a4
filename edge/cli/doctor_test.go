package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"mxedge/edge/lab"
	"mxedge/pki"
	"mxedge/pki/pkitest"
)

func testDoctorEnv(synced bool) doctorEnv {
	return doctorEnv{now: time.Now, clockSynced: func() (bool, error) { return synced, nil }, timeout: 2 * time.Second,
		stateDir: "/nonexistent/mxedge-state"}
}

// freeUDP is a loopback UDP address nothing listens on (bound, then released).
func freeUDP(t *testing.T) netip.AddrPort {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).AddrPort()
}

// doctorLab is a --dev lab (a real RadSec upstream and its PKI) whose configuration a test breaks.
type doctorLab struct {
	lab  *lab.Lab
	text string
}

func newDoctorLab(t *testing.T) *doctorLab {
	t.Helper()
	dir, err := os.MkdirTemp("", "mxdoc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	ctx, cancel := context.WithCancel(context.Background())
	// Ports of its own: the port checks must not meet a RADIUS server another test runs on 1812.
	l, err := lab.Start(ctx, lab.Options{Dir: dir, Auth: freeUDP(t), Acct: freeUDP(t)})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); l.Wait() })
	b, err := os.ReadFile(l.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	return &doctorLab{lab: l, text: string(b)}
}

// issue writes a client certificate from the lab CA with the given validity window.
func (d *doctorLab) issue(t *testing.T, name string, notBefore, notAfter time.Time) (string, string) {
	t.Helper()
	is, err := d.lab.PKI.CA.Issue(pki.IssueOptions{CommonName: name, Usage: pki.UsageClient, KeyType: pki.KeyECDSAP256,
		NotBefore: notBefore, NotAfter: notAfter})
	if err != nil {
		t.Fatal(err)
	}
	cert, key := filepath.Join(d.lab.Dir, name+".pem"), filepath.Join(d.lab.Dir, name+".key")
	if err := pki.WriteCertificates(cert, true, is.Cert); err != nil {
		t.Fatal(err)
	}
	if err := pki.WriteKey(key, is.Key, true); err != nil {
		t.Fatal(err)
	}
	return cert, key
}

func (d *doctorLab) run(t *testing.T, env doctorEnv, text string) (string, error) {
	t.Helper()
	path := filepath.Join(d.lab.Dir, "doctor.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := runOps(t, newDoctorCmdEnv(env), "--config", path)
	out = strings.ReplaceAll(out, d.lab.Dir, "LAB")
	out = strings.NewReplacer(d.lab.Auth.String(), "AUTH", d.lab.Acct.String(), "ACCT").Replace(out)
	return strings.ReplaceAll(out, d.lab.Upstream.String(), "UPSTREAM"), err
}

func TestDoctorHealthy(t *testing.T) {
	d := newDoctorLab(t)
	out, err := d.run(t, testDoctorEnv(true), d.text)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	// Certificate lifetimes are relative to now: keep the golden stable.
	out = dateRE.ReplaceAllString(out, "DATE")
	out = daysRE.ReplaceAllString(out, "(N days)")
	opsGolden(t, "doctor_ok.golden", out)
}

// TestDoctorDetects breaks one thing at a time and expects exactly the named checks to fail.
func TestDoctorDetects(t *testing.T) {
	d := newDoctorLab(t)
	p := d.lab.PKI
	other := pkitest.Must(t)
	closed := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		return ln.Addr().String()
	}()
	soonCert, soonKey := d.issue(t, "soon", time.Now().Add(-time.Hour), time.Now().Add(5*24*time.Hour))
	oldCert, oldKey := d.issue(t, "old", time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour))
	loose := filepath.Join(d.lab.Dir, "loose.key")
	kb, err := os.ReadFile(p.ClientKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(loose, kb, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(loose, 0o644); err != nil { // umask-proof
		t.Fatal(err)
	}
	upstream := d.lab.Upstream.String()
	tests := []struct {
		name   string
		synced bool
		edit   func(string) string
		fail   []string // checks expected to fail, in output order
		hint   string   // a hint that must appear
	}{
		{"config lint", true, func(s string) string { return s + "bogus_key: 1\n" }, []string{"config"}, "mxedge check"},
		{"key permissions", true, func(s string) string { return strings.Replace(s, "key: "+p.ClientKey, "key: "+loose, 1) },
			[]string{"permissions upstreams.tls.key"}, "chmod 600"},
		{"key mismatch", true, func(s string) string { return strings.Replace(s, "key: "+p.ClientKey, "key: "+p.ServerKey, 1) },
			[]string{"config", "certificate upstreams.tls", "tls lab-cloud"}, "different enrollments"},
		{"certificate expiring", true, func(s string) string {
			return strings.Replace(strings.Replace(s, "certificate: "+p.ClientCert, "certificate: "+soonCert, 1), "key: "+p.ClientKey, "key: "+soonKey, 1)
		}, []string{"certificate upstreams.tls"}, "renew it now"},
		{"certificate expired", true, func(s string) string {
			return strings.Replace(strings.Replace(s, "certificate: "+p.ClientCert, "certificate: "+oldCert, 1), "key: "+p.ClientKey, "key: "+oldKey, 1)
		}, []string{"config", "certificate upstreams.tls", "tls lab-cloud"}, "rejected mxedge's client certificate as expired"},
		{"clock not synchronized", false, func(s string) string { return s }, []string{"clock"}, "NTP"},
		{"name does not resolve", true, func(s string) string {
			return strings.Replace(s, "address: "+upstream, "address: mxedge-doctor.invalid:2083", 1)
		},
			[]string{"dns lab-cloud"}, "DNS servers"},
		{"port unreachable", true, func(s string) string { return strings.Replace(s, "address: "+upstream, "address: "+closed, 1) },
			[]string{"tcp lab-cloud"}, "firewall"},
		{"unknown upstream CA", true, func(s string) string { return strings.Replace(s, "ca: "+p.CAFile, "ca: "+other.CAFile, 1) },
			[]string{"tls lab-cloud"}, "upstreams.tls.ca does not contain"},
		{"server name mismatch", true, func(s string) string {
			return strings.Replace(s, "address: "+upstream, "address: "+upstream+"\n      server_name: cloud.example.com", 1)
		}, []string{"tls lab-cloud"}, "server_name"},
		{"client certificate not trusted upstream", true, func(s string) string {
			s = strings.Replace(s, "certificate: "+p.ClientCert, "certificate: "+other.ClientCert, 1)
			s = strings.Replace(s, "key: "+p.ClientKey, "key: "+other.ClientKey, 1)
			return s
		}, []string{"tls lab-cloud"}, "enrolled"},
		{"wrong shared secret", true, func(s string) string {
			return strings.Replace(s, "address: "+upstream, "address: "+upstream+"\n      secret: not-radsec", 1)
		}, []string{"radsec lab-cloud"}, "shared secret"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := d.run(t, testDoctorEnv(tc.synced), tc.edit(d.text))
			if !errors.Is(err, ErrDoctor) {
				t.Fatalf("err = %v, want ErrDoctor\n%s", err, out)
			}
			var failed []string
			for _, line := range strings.Split(out, "\n") {
				if name, ok := strings.CutPrefix(line, "FAIL  "); ok {
					failed = append(failed, name[:strings.Index(name, ": ")])
				}
			}
			if fmt.Sprint(failed) != fmt.Sprint(tc.fail) {
				t.Errorf("failed checks %q, want %q\n%s", failed, tc.fail, out)
			}
			if !strings.Contains(out, tc.hint) {
				t.Errorf("hint %q missing\n%s", tc.hint, out)
			}
		})
	}
}

var (
	dateRE = regexp.MustCompile(`\d{4}-\d{2}-\d{2}`)
	daysRE = regexp.MustCompile(`\(\d+ days\)`)
)
