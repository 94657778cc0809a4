package cli

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"mxedge/pki"
)

// Under -update (see cli_test.go) with -run Pki, testdata/pki is regenerated:
// the fixed lab PKI and the golden outputs. The certificates have fixed
// validity windows and every verify golden uses --at, so the goldens do not
// change with the wall clock.

const (
	pkiTestdata = "testdata/pki"
	// pkiAt is the instant every golden verification runs at.
	pkiAt = "2027-01-01T00:00:00Z"
)

// runPKI runs `mxedge pki ARGS...` in-process and returns stdout, stderr
// and the error main would map to an exit code.
func runPKI(t testing.TB, args ...string) (string, string, error) {
	t.Helper()
	root := New(BuildInfo{})
	// Until root.go lists newPKICmd (and in case it does), attach it once.
	if c, _, err := root.Find([]string{"pki"}); err != nil || c.Name() != "pki" {
		root.AddCommand(newPKICmd())
	}
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(append([]string{"pki"}, args...))
	err := root.ExecuteContext(t.Context())
	return out.String(), errOut.String(), err
}

func mustRunPKI(t testing.TB, args ...string) string {
	t.Helper()
	out, errOut, err := runPKI(t, args...)
	if err != nil {
		t.Fatalf("mxedge pki %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, out, errOut)
	}
	return out
}

func pkiOpenSSL(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("openssl")
	if err != nil {
		t.Fatalf("openssl not on PATH (apt-get install openssl): %v", err)
	}
	return p
}

// checkPKIGolden compares got with testdata/pki/name, or rewrites it.
func checkPKIGolden(t testing.TB, name, got string) {
	t.Helper()
	path := filepath.Join(pkiTestdata, name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./edge/cli -run Pki -update)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs:\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

func pkiTD(name string) string { return filepath.Join(pkiTestdata, name) }

func pkiFileMode(t testing.TB, path string) os.FileMode {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Mode().Perm()
}

// TestPkiGenerateTestdata rebuilds the fixed lab PKI under -update; it
// runs first (file order) so the goldens below are made from the new files.
func TestPkiGenerateTestdata(t *testing.T) {
	if !*update {
		for _, f := range []string{"root.pem", "issuing.pem", "server.pem", "client.pem", "client.der", "expired.pem",
			"revoked.pem", "crl.pem", "stale.crl", "other-root.pem", "client.key", "server.key", "edge.csr"} {
			if _, err := os.Stat(pkiTD(f)); err != nil {
				t.Errorf("%v (regenerate with -run Pki -update)", err)
			}
		}
		return
	}
	day := func(y int, m time.Month, d int) time.Time { return time.Date(y, m, d, 0, 0, 0, 0, time.UTC) }
	root, err := pki.NewCA(pki.CAOptions{CommonName: "mxedge Test Root", Organization: "mxedge test",
		NotBefore: day(2026, 1, 1), NotAfter: day(2046, 1, 1)})
	pkiMust(t, err)
	issuing, err := pki.NewCA(pki.CAOptions{CommonName: "mxedge Test Issuing", Organization: "mxedge test", Parent: root,
		NotBefore: day(2026, 1, 1), NotAfter: day(2041, 1, 1)})
	pkiMust(t, err)
	other, err := pki.NewCA(pki.CAOptions{CommonName: "Other Root", NotBefore: day(2026, 1, 1), NotAfter: day(2046, 1, 1)})
	pkiMust(t, err)
	urls := pki.IssueOptions{CRLURLs: []string{"http://127.0.0.1/issuing.crl"}, OCSPURLs: []string{"http://127.0.0.1/ocsp"},
		IssuingCertURLs: []string{"http://127.0.0.1/issuing.crt"}}
	server, err := issuing.Issue(pki.IssueOptions{CommonName: "radius.example.net", Organization: "mxedge test",
		DNSNames: []string{"radius.example.net", "edge-1.example.net"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("2001:db8::1")},
		Usage: pki.UsageServer, KeyType: pki.KeyRSA2048, NotBefore: day(2026, 1, 1), NotAfter: day(2030, 1, 1),
		CRLURLs: urls.CRLURLs, OCSPURLs: urls.OCSPURLs, IssuingCertURLs: urls.IssuingCertURLs})
	pkiMust(t, err)
	client, err := issuing.Issue(pki.IssueOptions{CommonName: "edge-1.example.net", DNSNames: []string{"edge-1.example.net"},
		Emails: []string{"noc@example.net"}, UPNs: []string{"edge-1@corp.example"}, Usage: pki.UsageClient,
		KeyType: pki.KeyECDSAP384, NotBefore: day(2026, 1, 1), NotAfter: day(2030, 1, 1), CRLURLs: urls.CRLURLs})
	pkiMust(t, err)
	expired, err := issuing.Issue(pki.IssueOptions{CommonName: "expired.example.net", Usage: pki.UsageClient,
		NotBefore: day(2024, 1, 1), NotAfter: day(2025, 1, 1)})
	pkiMust(t, err)
	revoked, err := issuing.Issue(pki.IssueOptions{CommonName: "revoked.example.net", Usage: pki.UsageClient,
		NotBefore: day(2026, 1, 1), NotAfter: day(2030, 1, 1)})
	pkiMust(t, err)
	crl, err := issuing.CreateCRL(pki.CRLOptions{Number: 2, ThisUpdate: day(2026, 6, 1), NextUpdate: day(2040, 1, 1),
		Revoked: []pki.RevokedCert{{Serial: revoked.Cert.SerialNumber, RevokedAt: day(2026, 6, 1), ReasonCode: 1}}})
	pkiMust(t, err)
	stale, err := issuing.CreateCRL(pki.CRLOptions{Number: 1, ThisUpdate: day(2026, 1, 1), NextUpdate: day(2026, 2, 1)})
	pkiMust(t, err)
	key, err := pki.GenerateKey(pki.KeyECDSAP256)
	pkiMust(t, err)
	_, csr, err := pki.NewCSR(key, pki.CSROptions{CommonName: "edge-2.example.net", Organization: "Example Corp",
		DNSNames: []string{"edge-2.example.net"}, UPNs: []string{"edge-2@corp.example"}})
	pkiMust(t, err)

	write := func(name string, data []byte, mode os.FileMode) {
		pkiMust(t, pki.WriteFileAtomic(pkiTD(name), data, mode, true))
	}
	pkiMust(t, os.MkdirAll(pkiTestdata, 0o755))
	write("root.pem", pki.EncodeCertificates(root.Cert), 0o644)
	write("issuing.pem", pki.EncodeCertificates(issuing.Cert), 0o644)
	write("other-root.pem", pki.EncodeCertificates(other.Cert), 0o644)
	write("server.pem", pki.EncodeCertificates(server.Cert, issuing.Cert), 0o644)
	write("client.pem", pki.EncodeCertificates(client.Cert, issuing.Cert), 0o644)
	write("client.der", client.Cert.Raw, 0o644)
	write("expired.pem", pki.EncodeCertificates(expired.Cert, issuing.Cert), 0o644)
	write("revoked.pem", pki.EncodeCertificates(revoked.Cert, issuing.Cert), 0o644)
	write("crl.pem", pki.EncodeCRL(crl), 0o644)
	write("stale.crl", stale, 0o644) // DER on purpose
	write("edge.csr", csr, 0o644)
	pkiMust(t, pki.WriteKey(pkiTD("server.key"), server.Key, true))
	pkiMust(t, pki.WriteKey(pkiTD("client.key"), client.Key, true))
}

func pkiMust(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestPkiShowGolden(t *testing.T) {
	for _, tt := range []struct {
		golden string
		args   []string
	}{
		{"show-server.golden", []string{"show", pkiTD("server.pem")}},
		{"show-client-der.golden", []string{"show", pkiTD("client.der")}},
		{"show-client.json.golden", []string{"show", "--json", pkiTD("client.pem")}},
		{"show-root.golden", []string{"show", pkiTD("root.pem")}},
		{"show-csr.golden", []string{"show", pkiTD("edge.csr")}},
	} {
		t.Run(tt.golden, func(t *testing.T) {
			checkPKIGolden(t, tt.golden, mustRunPKI(t, tt.args...))
		})
	}
}

// opensslCert is what we read back from `openssl x509 -noout -text`.
type opensslCert struct {
	subject, issuer, serial, keyAlg, keyBits, sigAlg string
	notBefore, notAfter                              time.Time
	ku, eku, sans, crldp, ocsp, caIssuers            []string
	skid, akid, sha256, sha1                         string
}

var opensslEKUNames = map[string]string{
	"TLS Web Server Authentication": "serverAuth",
	"TLS Web Client Authentication": "clientAuth",
}

func opensslText(t testing.TB, path string) opensslCert {
	t.Helper()
	bin := pkiOpenSSL(t)
	out, err := exec.Command(bin, "x509", "-in", path, "-noout", "-text", "-fingerprint", "-sha256").CombinedOutput()
	if err != nil {
		t.Fatalf("openssl x509 -text %s: %v\n%s", path, err, out)
	}
	fp1, err := exec.Command(bin, "x509", "-in", path, "-noout", "-fingerprint", "-sha1").CombinedOutput()
	if err != nil {
		t.Fatalf("openssl x509 -fingerprint: %v\n%s", err, fp1)
	}
	var o opensslCert
	_, o.sha1, _ = strings.Cut(strings.TrimSpace(string(fp1)), "=")
	var lines []string
	for sc := bufio.NewScanner(bytes.NewReader(out)); sc.Scan(); {
		lines = append(lines, sc.Text())
	}
	indent := func(s string) int { return len(s) - len(strings.TrimLeft(s, " ")) }
	next := func(i int) string { // the first line of the block under line i
		if i+1 < len(lines) && indent(lines[i+1]) > indent(lines[i]) {
			return strings.TrimSpace(lines[i+1])
		}
		return ""
	}
	block := func(i int) []string {
		var b []string
		for j := i + 1; j < len(lines) && indent(lines[j]) > indent(lines[i]); j++ {
			b = append(b, strings.TrimSpace(lines[j]))
		}
		return b
	}
	ts := func(s string) time.Time {
		tm, err := time.Parse("Jan _2 15:04:05 2006 MST", strings.TrimSpace(s))
		if err != nil {
			t.Fatalf("openssl time %q: %v", s, err)
		}
		return tm
	}
	for i, l := range lines {
		s := strings.TrimSpace(l)
		switch {
		case strings.HasPrefix(s, "Subject: "):
			o.subject = strings.TrimPrefix(s, "Subject: ")
		case strings.HasPrefix(s, "Issuer: "):
			o.issuer = strings.TrimPrefix(s, "Issuer: ")
		case strings.HasPrefix(s, "Serial Number:"):
			o.serial = next(i)
		case strings.HasPrefix(s, "Not Before:"):
			o.notBefore = ts(strings.TrimPrefix(s, "Not Before:"))
		case strings.HasPrefix(s, "Not After :"):
			o.notAfter = ts(strings.TrimPrefix(s, "Not After :"))
		case strings.HasPrefix(s, "Public Key Algorithm: "):
			o.keyAlg = strings.TrimPrefix(s, "Public Key Algorithm: ")
		case strings.HasPrefix(s, "Public-Key: ("):
			o.keyBits = strings.TrimSuffix(strings.TrimPrefix(s, "Public-Key: ("), " bit)")
		case strings.HasPrefix(s, "Signature Algorithm: ") && o.sigAlg == "":
			o.sigAlg = strings.TrimPrefix(s, "Signature Algorithm: ")
		case strings.HasPrefix(s, "X509v3 Key Usage:"):
			o.ku = strings.Split(next(i), ", ")
		case strings.HasPrefix(s, "X509v3 Extended Key Usage:"):
			for _, n := range strings.Split(next(i), ", ") {
				if m, ok := opensslEKUNames[n]; ok {
					n = m
				}
				o.eku = append(o.eku, n)
			}
		case strings.HasPrefix(s, "X509v3 Subject Alternative Name:"):
			o.sans = strings.Split(next(i), ", ")
		case strings.HasPrefix(s, "X509v3 CRL Distribution Points:"):
			for _, b := range block(i) {
				if u, ok := strings.CutPrefix(b, "URI:"); ok {
					o.crldp = append(o.crldp, u)
				}
			}
		case strings.HasPrefix(s, "Authority Information Access:"):
			for _, b := range block(i) {
				if u, ok := strings.CutPrefix(b, "OCSP - URI:"); ok {
					o.ocsp = append(o.ocsp, u)
				}
				if u, ok := strings.CutPrefix(b, "CA Issuers - URI:"); ok {
					o.caIssuers = append(o.caIssuers, u)
				}
			}
		case strings.HasPrefix(s, "X509v3 Subject Key Identifier:"):
			o.skid = next(i)
		case strings.HasPrefix(s, "X509v3 Authority Key Identifier:"):
			o.akid = strings.TrimPrefix(next(i), "keyid:")
		case strings.HasPrefix(s, "sha256 Fingerprint="):
			o.sha256 = strings.TrimPrefix(s, "sha256 Fingerprint=")
		}
	}
	return o
}

// opensslSANs renders our SANs as openssl prints them: IPv6 in full
// upper-case groups.
func opensslSANs(s pki.SANs) []string {
	var out []string
	for _, p := range strings.Split(s.String(), ", ") {
		if ip, ok := strings.CutPrefix(p, "IP Address:"); ok {
			if a := net.ParseIP(ip); a != nil && a.To4() == nil {
				var g []string
				for i := 0; i < 16; i += 2 {
					g = append(g, strings.ToUpper(strconv.FormatInt(int64(a[i])<<8|int64(a[i+1]), 16)))
				}
				p = "IP Address:" + strings.Join(g, ":")
			}
		}
		if p != "" {
			out = append(out, p)
		}
	}
	return out
}

// TestPkiShowMatchesOpenSSL: every field `pki show --json` prints equals
// what `openssl x509 -noout -text -fingerprint` prints for the same file.
func TestPkiShowMatchesOpenSSL(t *testing.T) {
	for _, f := range []string{"root.pem", "issuing.pem", "server.pem", "client.pem", "client.der", "expired.pem", "other-root.pem"} {
		t.Run(f, func(t *testing.T) {
			path := pkiTD(f)
			if strings.HasSuffix(f, ".der") {
				// openssl x509 needs -inform DER; compare through a PEM copy.
				certs, err := pki.LoadCertificates(path)
				pkiMust(t, err)
				path = filepath.Join(t.TempDir(), "c.pem")
				pkiMust(t, pki.WriteCertificates(path, false, certs...))
			}
			var ds []pki.Description
			pkiMust(t, json.Unmarshal([]byte(mustRunPKI(t, "show", "--json", pkiTD(f))), &ds))
			d, o := ds[0], opensslText(t, path)
			eq := func(field, got, want string) {
				t.Helper()
				if got != want {
					t.Errorf("%s: pki show %q, openssl %q", field, got, want)
				}
			}
			list := func(field string, got, want []string) {
				t.Helper()
				eq(field, strings.Join(got, "|"), strings.Join(want, "|"))
			}
			eq("subject", d.Subject, o.subject)
			eq("issuer", d.Issuer, o.issuer)
			eq("serial", d.SerialHex, o.serial)
			eq("not before", d.NotBefore.Format(time.RFC3339), o.notBefore.UTC().Format(time.RFC3339))
			eq("not after", d.NotAfter.Format(time.RFC3339), o.notAfter.UTC().Format(time.RFC3339))
			wantAlg := map[string]string{"RSA": "rsaEncryption", "ECDSA": "id-ecPublicKey"}[d.KeyAlgorithm]
			eq("key algorithm", wantAlg, o.keyAlg)
			eq("key bits", strconv.Itoa(d.KeyBits), o.keyBits)
			eq("signature algorithm", d.SignatureAlgorithm, o.sigAlg)
			list("key usage", d.KeyUsage, o.ku)
			list("extended key usage", d.ExtKeyUsage, o.eku)
			list("SANs", opensslSANs(d.SANs), o.sans)
			list("CRL distribution points", d.CRLDistributionPoints, o.crldp)
			list("OCSP", d.OCSPServers, o.ocsp)
			list("CA issuers", d.IssuingCertURLs, o.caIssuers)
			eq("subject key id", d.SubjectKeyID, o.skid)
			eq("authority key id", d.AuthorityKeyID, o.akid)
			eq("SHA-256 fingerprint", d.SHA256Fingerprint, o.sha256)
			eq("SHA-1 fingerprint", d.SHA1Fingerprint, o.sha1)
			if f == "client.pem" && (len(d.SANs.UPNs) != 1 || !strings.Contains(strings.Join(o.sans, ","), "UPN::"+d.SANs.UPNs[0])) {
				t.Errorf("UPN: pki %v, openssl %v", d.SANs.UPNs, o.sans)
			}
		})
	}
}

// opensslReason maps `openssl verify` output to our event reason.
func opensslReason(out []byte, err error) string {
	if err == nil {
		return pki.ReasonOK
	}
	m := regexp.MustCompile(`error (\d+) at`).FindSubmatch(out)
	if m == nil {
		return "openssl: " + string(out)
	}
	switch string(m[1]) {
	case "9":
		return pki.ReasonNotYetValid
	case "10":
		return pki.ReasonExpired
	case "2", "20":
		return pki.ReasonUnknownCA
	case "26":
		return pki.ReasonWrongEKU
	case "23":
		return pki.ReasonRevoked
	case "3", "12":
		return pki.ReasonRevocationUnavailable
	case "62":
		return pki.ReasonNameMismatch
	}
	return "openssl error " + string(m[1]) + ": " + string(out)
}

// TestPkiVerifyGoldenAndOpenSSL: `pki verify` prints the golden verdict,
// returns an error wrapping the right sentinel on failure, and agrees with
// `openssl verify` on the verdict.
func TestPkiVerifyGoldenAndOpenSSL(t *testing.T) {
	at, err := time.Parse(time.RFC3339, pkiAt)
	pkiMust(t, err)
	epoch := strconv.FormatInt(at.Unix(), 10)
	for _, tt := range []struct {
		name     string
		args     []string
		want     string // reason
		openssl  []string
		sentinel error
	}{
		{"ok-client", []string{"--ca", pkiTD("root.pem"), "--purpose", "client", pkiTD("client.pem")}, pki.ReasonOK,
			[]string{"-CAfile", pkiTD("root.pem"), "-untrusted", pkiTD("client.pem"), "-purpose", "sslclient", pkiTD("client.pem")}, nil},
		{"ok-server-name", []string{"--ca", pkiTD("root.pem"), "--purpose", "server", "--name", "radius.example.net", "--key", pkiTD("server.key"), pkiTD("server.pem")}, pki.ReasonOK,
			[]string{"-CAfile", pkiTD("root.pem"), "-untrusted", pkiTD("server.pem"), "-purpose", "sslserver", "-verify_hostname", "radius.example.net", pkiTD("server.pem")}, nil},
		{"ok-der-untrusted", []string{"--ca", pkiTD("root.pem"), "--untrusted", pkiTD("issuing.pem"), pkiTD("client.der")}, pki.ReasonOK,
			[]string{"-CAfile", pkiTD("root.pem"), "-untrusted", pkiTD("issuing.pem"), pkiTD("client.der")}, nil},
		{"ok-crl", []string{"--ca", pkiTD("root.pem"), "--purpose", "client", "--crl", pkiTD("crl.pem"), pkiTD("client.pem")}, pki.ReasonOK,
			[]string{"-CAfile", pkiTD("root.pem"), "-untrusted", pkiTD("client.pem"), "-purpose", "sslclient", "-crl_check", "-CRLfile", pkiTD("crl.pem"), pkiTD("client.pem")}, nil},
		{"expired", []string{"--ca", pkiTD("root.pem"), "--purpose", "client", pkiTD("expired.pem")}, pki.ReasonExpired,
			[]string{"-CAfile", pkiTD("root.pem"), "-untrusted", pkiTD("expired.pem"), "-purpose", "sslclient", pkiTD("expired.pem")}, pki.ErrExpired},
		{"not-yet-valid", []string{"--ca", pkiTD("root.pem"), "--at", "2025-06-01T00:00:00Z", pkiTD("client.pem")}, pki.ReasonNotYetValid,
			[]string{"-CAfile", pkiTD("root.pem"), "-untrusted", pkiTD("client.pem"), "-attime", "1748736000", pkiTD("client.pem")}, pki.ErrNotYetValid},
		{"other-ca", []string{"--ca", pkiTD("other-root.pem"), "--purpose", "client", pkiTD("client.pem")}, pki.ReasonUnknownCA,
			[]string{"-CAfile", pkiTD("other-root.pem"), "-untrusted", pkiTD("client.pem"), "-purpose", "sslclient", pkiTD("client.pem")}, pki.ErrUnknownAuthority},
		{"wrong-purpose", []string{"--ca", pkiTD("root.pem"), "--purpose", "server", pkiTD("client.pem")}, pki.ReasonWrongEKU,
			[]string{"-CAfile", pkiTD("root.pem"), "-untrusted", pkiTD("client.pem"), "-purpose", "sslserver", pkiTD("client.pem")}, pki.ErrWrongUsage},
		{"name-mismatch", []string{"--ca", pkiTD("root.pem"), "--purpose", "server", "--name", "other.example.net", pkiTD("server.pem")}, pki.ReasonNameMismatch,
			[]string{"-CAfile", pkiTD("root.pem"), "-untrusted", pkiTD("server.pem"), "-purpose", "sslserver", "-verify_hostname", "other.example.net", pkiTD("server.pem")}, pki.ErrNameMismatch},
		{"revoked", []string{"--ca", pkiTD("root.pem"), "--crl", pkiTD("crl.pem"), pkiTD("revoked.pem")}, pki.ReasonRevoked,
			[]string{"-CAfile", pkiTD("root.pem"), "-untrusted", pkiTD("revoked.pem"), "-crl_check", "-CRLfile", pkiTD("crl.pem"), pkiTD("revoked.pem")}, pki.ErrRevoked},
		{"stale-crl", []string{"--ca", pkiTD("root.pem"), "--crl", pkiTD("stale.crl"), pkiTD("client.pem")}, pki.ReasonRevocationUnavailable,
			[]string{"-CAfile", pkiTD("root.pem"), "-untrusted", pkiTD("client.pem"), "-crl_check", "-CRLfile", pkiTD("stale.crl"), pkiTD("client.pem")}, pki.ErrRevocationUnavailable},
		{"key-mismatch", []string{"--ca", pkiTD("root.pem"), "--key", pkiTD("client.key"), pkiTD("server.pem")}, "key-mismatch", nil, pki.ErrKeyMismatch},
	} {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"verify", "--at", pkiAt}, tt.args...)
			out, _, err := runPKI(t, args...)
			checkPKIGolden(t, "verify-"+tt.name+".golden", out)
			switch {
			case tt.sentinel == nil && err != nil:
				t.Errorf("verify: %v", err)
			case tt.sentinel != nil && !errors.Is(err, tt.sentinel):
				t.Errorf("verify error %v, want %v", err, tt.sentinel)
			}
			if errors.Is(err, ErrUsage) {
				t.Errorf("a failed verification is not a usage error: %v", err)
			}
			wantLine := ": OK\n"
			if tt.want != pki.ReasonOK {
				wantLine = ": FAIL: " + tt.want + ": "
			}
			if !strings.Contains(out, wantLine) {
				t.Errorf("output lacks %q:\n%s", wantLine, out)
			}
			if tt.openssl == nil {
				return
			}
			oargs := append([]string{"verify"}, tt.openssl...)
			if !slices.Contains(oargs, "-attime") {
				oargs = append(oargs[:1], append([]string{"-attime", epoch}, oargs[1:]...)...)
			}
			oout, oerr := exec.Command(pkiOpenSSL(t), oargs...).CombinedOutput()
			if got := opensslReason(oout, oerr); got != tt.want {
				t.Errorf("openssl verify says %s, pki verify %s\n%s", got, tt.want, oout)
			}
		})
	}
}

// maskPKIVolatile replaces what changes per run (dates, hex fingerprints,
// serials, the temp dir) so the ca init output can be a golden file.
func maskPKIVolatile(s, dir string) string {
	s = strings.ReplaceAll(s, dir, "DIR")
	s = regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ`).ReplaceAllString(s, "TIME")
	s = regexp.MustCompile(`[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){7,}`).ReplaceAllString(s, "HEX")
	return s
}

// TestPkiCAInit: files and modes, the printed summary, refusal to
// overwrite without --force (naming the file and the flag), and --force.
func TestPkiCAInit(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "lab-ca")
	out := mustRunPKI(t, "ca", "init", "--out", dir, "--cn", "Example Lab CA", "--org", "Example",
		"--crl-url", "http://127.0.0.1/lab.crl", "--days", "30")
	checkPKIGolden(t, "ca-init.golden", maskPKIVolatile(out, dir))
	certPath, keyPath := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca.key")
	if m := pkiFileMode(t, keyPath); m != 0o600 {
		t.Errorf("ca.key mode %o, want 600", m)
	}
	if m := pkiFileMode(t, certPath); m != 0o644 {
		t.Errorf("ca.pem mode %o, want 644", m)
	}
	ca, err := pki.LoadCA(certPath, keyPath)
	pkiMust(t, err)
	d := pki.Describe(ca.Cert)
	if d.Subject != "O = Example, CN = Example Lab CA" || !d.IsCA || !d.SelfSigned || d.KeyAlgorithm != "ECDSA" || d.KeyBits != 256 {
		t.Errorf("CA: %+v", d)
	}
	if got := ca.Cert.NotAfter.Sub(ca.Cert.NotBefore); got < 30*24*time.Hour || got > 30*24*time.Hour+time.Hour {
		t.Errorf("validity %v, want 30 days", got)
	}
	keyBefore, _ := os.ReadFile(keyPath)

	_, _, err = runPKI(t, "ca", "init", "--out", dir)
	if !errors.Is(err, pki.ErrExists) || !strings.Contains(err.Error(), "--force") || !strings.Contains(err.Error(), filepath.Join(dir, "ca.")) {
		t.Fatalf("second init: %v, want a refusal naming the file and --force", err)
	}
	if keyAfter, _ := os.ReadFile(keyPath); !bytes.Equal(keyBefore, keyAfter) {
		t.Fatal("refused init changed ca.key")
	}

	mustRunPKI(t, "ca", "init", "--out", dir, "--key-type", "rsa-2048", "--force")
	if keyAfter, _ := os.ReadFile(keyPath); bytes.Equal(keyBefore, keyAfter) {
		t.Error("--force did not replace ca.key")
	}
	if m := pkiFileMode(t, keyPath); m != 0o600 {
		t.Errorf("ca.key mode after --force %o, want 600", m)
	}
	ca, err = pki.LoadCA(certPath, keyPath)
	pkiMust(t, err)
	if alg, bits := pki.PublicKeyInfo(ca.Cert.PublicKey); alg != "RSA" || bits != 2048 {
		t.Errorf("after --force: %s %d", alg, bits)
	}
}

// newPKILabCA runs `pki ca init` into a temp dir and returns the file paths.
func newPKILabCA(t testing.TB, extra ...string) (dir, cert, key string) {
	t.Helper()
	dir = t.TempDir()
	mustRunPKI(t, append([]string{"ca", "init", "--out", dir, "--cn", "Lab CA"}, extra...)...)
	return dir, filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca.key")
}

// TestPkiIssue: both kinds, EKU, SANs (UPN included), CRL URL inherited
// from the CA, 0600 keys, overwrite refusal and --force.
func TestPkiIssue(t *testing.T) {
	dir, caCert, caKey := newPKILabCA(t, "--crl-url", "http://127.0.0.1/lab.crl")
	for _, tt := range []struct {
		kind    string
		args    []string
		wantEKU string
		wantSAN string
	}{
		{"server", []string{"--cn", "radius.test", "--dns", "radius.test,alt.test", "--ip", "127.0.0.1"}, "serverAuth",
			"DNS:radius.test, DNS:alt.test, IP Address:127.0.0.1"},
		{"server", []string{"--cn", "192.0.2.7", "--key-type", "rsa-2048"}, "serverAuth", "IP Address:192.0.2.7"},
		{"client", []string{"--cn", "nas-1", "--upn", "nas-1@corp.test", "--email", "noc@corp.test", "--key-type", "ecdsa-p384"}, "clientAuth",
			"email:noc@corp.test, othername: UPN::nas-1@corp.test"},
	} {
		t.Run(tt.kind+"-"+tt.args[1], func(t *testing.T) {
			certPath, keyPath := filepath.Join(dir, tt.args[1]+".pem"), filepath.Join(dir, tt.args[1]+".key")
			args := append([]string{"issue", tt.kind, "--ca-cert", caCert, "--ca-key", caKey, "--days", "10",
				"--out-cert", certPath, "--out-key", keyPath}, tt.args...)
			out := mustRunPKI(t, args...)
			if !strings.Contains(out, "SHA-256 Fingerprint:") || !strings.Contains(out, certPath) {
				t.Errorf("output:\n%s", out)
			}
			if m := pkiFileMode(t, keyPath); m != 0o600 {
				t.Errorf("key mode %o, want 600", m)
			}
			if _, err := pki.LoadKeyPair(certPath, keyPath); err != nil {
				t.Fatal(err)
			}
			certs, err := pki.LoadCertificates(certPath)
			pkiMust(t, err)
			d := pki.Describe(certs[0])
			if strings.Join(d.ExtKeyUsage, ",") != tt.wantEKU || d.SANs.String() != tt.wantSAN {
				t.Errorf("EKU %v SANs %q, want %s %q", d.ExtKeyUsage, d.SANs.String(), tt.wantEKU, tt.wantSAN)
			}
			if strings.Join(d.CRLDistributionPoints, ",") != "http://127.0.0.1/lab.crl" {
				t.Errorf("CRL DP %v, want the CA's", d.CRLDistributionPoints)
			}
			if v := certs[0].NotAfter.Sub(certs[0].NotBefore); v < 10*24*time.Hour || v > 10*24*time.Hour+time.Hour {
				t.Errorf("validity %v, want 10 days", v)
			}
			mustRunPKI(t, "verify", "--ca", caCert, "--purpose", tt.kind, "--key", keyPath, certPath)

			// A second run refuses and leaves both files as they were.
			before, _ := os.ReadFile(keyPath)
			_, _, err = runPKI(t, args...)
			if !errors.Is(err, pki.ErrExists) || !strings.Contains(err.Error(), "--force") || !strings.Contains(err.Error(), dir) {
				t.Fatalf("re-issue: %v, want refusal naming the file and --force", err)
			}
			if after, _ := os.ReadFile(keyPath); !bytes.Equal(before, after) {
				t.Fatal("refused issue changed the key")
			}
			mustRunPKI(t, append(args, "--force")...)
			if after, _ := os.ReadFile(keyPath); bytes.Equal(before, after) {
				t.Error("--force kept the old key")
			}
			if m := pkiFileMode(t, keyPath); m != 0o600 {
				t.Errorf("key mode after --force %o, want 600", m)
			}
		})
	}
}

// TestPkiIssueFromIntermediate: the chain file holds leaf + intermediate
// (not the root) and verifies against the root alone.
func TestPkiIssueFromIntermediate(t *testing.T) {
	dir := t.TempDir()
	certPath, keyPath := filepath.Join(dir, "c.pem"), filepath.Join(dir, "c.key")
	// testdata has no issuing key on purpose; build one here.
	root, err := pki.NewCA(pki.CAOptions{CommonName: "R"})
	pkiMust(t, err)
	inter, err := pki.NewCA(pki.CAOptions{CommonName: "I", Parent: root})
	pkiMust(t, err)
	caCert, caKey, rootPath := filepath.Join(dir, "i.pem"), filepath.Join(dir, "i.key"), filepath.Join(dir, "r.pem")
	pkiMust(t, pki.WriteCertificates(caCert, false, inter.Cert, root.Cert))
	pkiMust(t, pki.WriteKey(caKey, inter.Key, false))
	pkiMust(t, pki.WriteCertificates(rootPath, false, root.Cert))
	mustRunPKI(t, "issue", "client", "--ca-cert", caCert, "--ca-key", caKey, "--cn", "c", "--out-cert", certPath, "--out-key", keyPath)
	certs, err := pki.LoadCertificates(certPath)
	pkiMust(t, err)
	if len(certs) != 2 || !certs[1].Equal(inter.Cert) {
		t.Fatalf("chain file has %d certificates, want leaf + intermediate", len(certs))
	}
	out := mustRunPKI(t, "verify", "--ca", rootPath, "--purpose", "client", certPath)
	if !strings.Contains(out, "    1 CN = I (intermediate)\n") || !strings.Contains(out, "    2 CN = R (trust anchor)\n") {
		t.Errorf("chain not shown:\n%s", out)
	}
}

// TestPkiKeyMismatch: a CA certificate with another CA's key, and a leaf
// with another key, are clear errors naming both files.
func TestPkiKeyMismatch(t *testing.T) {
	_, caCert, _ := newPKILabCA(t)
	_, _, otherKey := newPKILabCA(t)
	out := filepath.Join(t.TempDir(), "x")
	_, _, err := runPKI(t, "issue", "client", "--ca-cert", caCert, "--ca-key", otherKey, "--cn", "x", "--out-cert", out+".pem", "--out-key", out+".key")
	if !errors.Is(err, pki.ErrKeyMismatch) || !strings.Contains(err.Error(), caCert) || !strings.Contains(err.Error(), otherKey) {
		t.Fatalf("mismatched CA key: %v", err)
	}
	if _, serr := os.Stat(out + ".key"); serr == nil {
		t.Error("a key was written despite the error")
	}
}

// TestPkiCSRSign: the edge's key and CSR, signed by `pki sign`, verify as
// a client certificate; the key is created 0600 once and then reused.
func TestPkiCSRSign(t *testing.T) {
	dir, caCert, caKey := newPKILabCA(t)
	keyPath, csrPath, certPath := filepath.Join(dir, "edge.key"), filepath.Join(dir, "edge.csr"), filepath.Join(dir, "edge.pem")
	out := mustRunPKI(t, "csr", "--key", keyPath, "--cn", "edge-1.test", "--org", "Example", "--dns", "edge-1.test",
		"--ip", "10.0.0.1", "--upn", "edge-1@corp.test", "--out", csrPath)
	if !strings.Contains(out, "created, mode 0600") {
		t.Errorf("csr output:\n%s", out)
	}
	if m := pkiFileMode(t, keyPath); m != 0o600 {
		t.Errorf("key mode %o", m)
	}
	if o, err := exec.Command(pkiOpenSSL(t), "req", "-in", csrPath, "-noout", "-verify").CombinedOutput(); err != nil {
		t.Fatalf("openssl req -verify: %v\n%s", err, o)
	}
	// The printed public key fingerprint is the SHA-256 of the SPKI that
	// openssl extracts from the request.
	pub, err := exec.Command(pkiOpenSSL(t), "req", "-in", csrPath, "-noout", "-pubkey").Output()
	pkiMust(t, err)
	blk, _ := pem.Decode(pub)
	if blk == nil {
		t.Fatalf("openssl req -pubkey: %s", pub)
	}
	sum := sha256.Sum256(blk.Bytes)
	if fp := pkiColonHex(sum[:]); !strings.Contains(out, "Public Key SHA-256:  "+fp) {
		t.Errorf("csr output lacks the SPKI fingerprint %s:\n%s", fp, out)
	}
	show := mustRunPKI(t, "show", csrPath)
	if !strings.Contains(show, "othername: UPN::edge-1@corp.test") || !strings.Contains(show, "IP Address:10.0.0.1") {
		t.Errorf("show csr:\n%s", show)
	}

	key1, _ := os.ReadFile(keyPath)
	_, _, err = runPKI(t, "csr", "--key", keyPath, "--cn", "edge-1.test", "--out", csrPath)
	if !errors.Is(err, pki.ErrExists) || !strings.Contains(err.Error(), csrPath) {
		t.Fatalf("csr over existing: %v", err)
	}
	out = mustRunPKI(t, "csr", "--key", keyPath, "--cn", "edge-1.test", "--org", "Example", "--dns", "edge-1.test", "--upn", "edge-1@corp.test", "--ip", "10.0.0.1",
		"--key-type", "rsa-2048", "--out", csrPath, "--force")
	if key2, _ := os.ReadFile(keyPath); !bytes.Equal(key1, key2) || !strings.Contains(out, "existing key, kept") {
		t.Fatalf("csr replaced the existing key:\n%s", out)
	}

	mustRunPKI(t, "sign", "--ca-cert", caCert, "--ca-key", caKey, "--csr", csrPath, "--usage", "client", "--days", "7", "--out", certPath)
	out = mustRunPKI(t, "verify", "--ca", caCert, "--purpose", "client", "--key", keyPath, certPath)
	if !strings.HasPrefix(out, certPath+": OK\n") {
		t.Errorf("verify:\n%s", out)
	}
	certs, err := pki.LoadCertificates(certPath)
	pkiMust(t, err)
	d := pki.Describe(certs[0])
	if d.Subject != "O = Example, CN = edge-1.test" || d.SANs.String() != "DNS:edge-1.test, IP Address:10.0.0.1, othername: UPN::edge-1@corp.test" {
		t.Errorf("signed: %s / %s", d.Subject, d.SANs)
	}
	// openssl agrees with the verdict.
	if o, err := exec.Command(pkiOpenSSL(t), "verify", "-CAfile", caCert, "-purpose", "sslclient", certPath).CombinedOutput(); err != nil {
		t.Errorf("openssl verify: %v\n%s", err, o)
	}
	// Signing as server gives a certificate that fails as client.
	srvPath := filepath.Join(dir, "edge-srv.pem")
	mustRunPKI(t, "sign", "--ca-cert", caCert, "--ca-key", caKey, "--csr", csrPath, "--usage", "server", "--out", srvPath)
	if _, _, err := runPKI(t, "verify", "--ca", caCert, "--purpose", "client", srvPath); !errors.Is(err, pki.ErrWrongUsage) {
		t.Errorf("server cert as client: %v", err)
	}
}

// TestPkiVerifyBadCRL: a CRL signed by the wrong key, and one from an
// unknown issuer, are errors, not silent passes.
func TestPkiVerifyBadCRL(t *testing.T) {
	dir := t.TempDir()
	// Same name as the issuing CA, another key: the signature must fail.
	impostor, err := pki.NewCA(pki.CAOptions{CommonName: "mxedge Test Issuing", Organization: "mxedge test"})
	pkiMust(t, err)
	stranger, err := pki.NewCA(pki.CAOptions{CommonName: "Stranger"})
	pkiMust(t, err)
	for _, tt := range []struct {
		name string
		ca   *pki.CA
		want string
	}{{"wrong-key", impostor, "signature"}, {"unknown-issuer", stranger, "no configured issuer"}} {
		t.Run(tt.name, func(t *testing.T) {
			der, err := tt.ca.CreateCRL(pki.CRLOptions{Number: 1})
			pkiMust(t, err)
			crl := filepath.Join(dir, tt.name+".crl")
			pkiMust(t, os.WriteFile(crl, pki.EncodeCRL(der), 0o644))
			out, _, err := runPKI(t, "verify", "--at", pkiAt, "--ca", pkiTD("root.pem"), "--crl", crl, pkiTD("client.pem"))
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), crl) {
				t.Errorf("verify with %s CRL: %v\n%s", tt.name, err, out)
			}
		})
	}
}

// TestPkiUsageErrors: wrong invocations are ErrUsage (exit 2), with a
// message naming the flag.
func TestPkiUsageErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"ca", "init"}, "--out"},
		{[]string{"ca", "init", "--out", dir, "--key-type", "dsa-1024"}, "--key-type"},
		{[]string{"ca", "init", "--out", dir, "--days", "0"}, "--days"},
		{[]string{"ca", "init", "--out", dir, "--bogus"}, "bogus"},
		{[]string{"issue", "client", "--ca-cert", "a", "--ca-key", "b"}, "--cn"},
		{[]string{"issue", "client", "--cn", "x", "--out-cert", filepath.Join(dir, "c.pem"), "--out-key", filepath.Join(dir, "c.key")}, "--ca-cert"},
		{[]string{"issue", "server", "--cn", "x", "--ip", "300.1.1.1"}, "ip"},
		{[]string{"issue", "client", "--cn", "x", "--out-cert", "same", "--out-key", "same"}, "two different outputs"},
		{[]string{"csr", "--key", filepath.Join(dir, "k"), "--out", filepath.Join(dir, "r")}, "--cn"},
		{[]string{"sign", "--csr", "x", "--usage", "both", "--out", "y"}, "--usage"},
		{[]string{"show"}, "arg"},
		{[]string{"show", "a", "b"}, "arg"},
		{[]string{"verify", pkiTD("client.pem")}, "--ca"},
		{[]string{"verify", "--ca", pkiTD("root.pem"), "--purpose", "email", pkiTD("client.pem")}, "--purpose"},
		{[]string{"verify", "--ca", pkiTD("root.pem"), "--at", "tomorrow", pkiTD("client.pem")}, "--at"},
	} {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			_, _, err := runPKI(t, tt.args...)
			if !errors.Is(err, ErrUsage) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err %v, want ErrUsage mentioning %q", err, tt.want)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(dir, "k")); err == nil {
		t.Error("csr usage error still created the key")
	}
}

// TestPkiShowErrors: a missing file and a file with no certificate are
// runtime errors (exit 1), not usage errors.
func TestPkiShowErrors(t *testing.T) {
	junk := filepath.Join(t.TempDir(), "junk.pem")
	pkiMust(t, os.WriteFile(junk, []byte("-----BEGIN NOTHING-----\nAAAA\n-----END NOTHING-----\n"), 0o644))
	for _, f := range []string{filepath.Join(t.TempDir(), "missing.pem"), junk} {
		_, _, err := runPKI(t, "show", f)
		if err == nil || errors.Is(err, ErrUsage) || !strings.Contains(err.Error(), filepath.Base(f)) {
			t.Errorf("show %s: %v", f, err)
		}
	}
}

// TestPkiIssuedCertsTLS: a server certificate from `pki issue server` and
// a client certificate from `pki issue client`, both from `pki ca init`,
// complete a mutually authenticated TLS handshake with openssl s_client
// as the client (verifying the server's IP and name) and a Go server
// requiring the client certificate.
func TestPkiIssuedCertsTLS(t *testing.T) {
	base := runtime.NumGoroutine()
	dir, caCert, caKey := newPKILabCA(t)
	srvCert, srvKey := filepath.Join(dir, "srv.pem"), filepath.Join(dir, "srv.key")
	cliCert, cliKey := filepath.Join(dir, "cli.pem"), filepath.Join(dir, "cli.key")
	mustRunPKI(t, "issue", "server", "--ca-cert", caCert, "--ca-key", caKey, "--cn", "radius.test", "--dns", "radius.test", "--ip", "127.0.0.1",
		"--out-cert", srvCert, "--out-key", srvKey)
	mustRunPKI(t, "issue", "client", "--ca-cert", caCert, "--ca-key", caKey, "--cn", "edge-1", "--upn", "edge-1@corp.test",
		"--out-cert", cliCert, "--out-key", cliKey)

	pair, err := tls.LoadX509KeyPair(srvCert, srvKey)
	pkiMust(t, err)
	roots, err := pki.LoadCertificates(caCert)
	pkiMust(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(roots[0])
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{pair}, ClientCAs: pool,
		ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12})
	pkiMust(t, err)
	type result struct {
		peer string
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
		_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
		if err := tc.Handshake(); err != nil {
			res <- result{err: err}
			return
		}
		line, _ := bufio.NewReader(tc).ReadString('\n')
		_, _ = io.WriteString(tc, "pong:"+line)
		res <- result{peer: tc.ConnectionState().PeerCertificates[0].Subject.CommonName}
	}()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, pkiOpenSSL(t), "s_client", "-connect", ln.Addr().String(),
		"-CAfile", caCert, "-verify_return_error", "-verify_ip", "127.0.0.1", "-verify_hostname", "radius.test",
		"-cert", cliCert, "-key", cliKey, "-quiet")
	cmd.Stdin = strings.NewReader("ping\n")
	out, err := cmd.CombinedOutput()
	r := <-res
	ln.Close()
	if err != nil {
		t.Fatalf("openssl s_client: %v\n%s", err, out)
	}
	if r.err != nil || r.peer != "edge-1" {
		t.Fatalf("server: peer %q err %v", r.peer, r.err)
	}
	if !bytes.Contains(out, []byte("pong:ping")) {
		t.Errorf("s_client output lacks the echo:\n%s", out)
	}

	// A Go client that checks the server name also accepts it.
	cc, err := tls.LoadX509KeyPair(cliCert, cliKey)
	pkiMust(t, err)
	cfg := &tls.Config{RootCAs: pool, ServerName: "radius.test", Certificates: []tls.Certificate{cc}}
	ln2, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{pair}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert})
	pkiMust(t, err)
	done := make(chan error, 1)
	go func() {
		c, err := ln2.Accept()
		if err == nil {
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			err = c.(*tls.Conn).Handshake()
			c.Close()
		}
		done <- err
	}()
	d := tls.Dialer{Config: cfg, NetDialer: &net.Dialer{Timeout: 10 * time.Second}}
	c, err := d.DialContext(ctx, "tcp", ln2.Addr().String())
	if err != nil {
		t.Fatalf("Go client: %v", err)
	}
	c.Close()
	if err := <-done; err != nil {
		t.Fatalf("Go server: %v", err)
	}
	ln2.Close()
	waitPKIGoroutines(t, base)
}

func waitPKIGoroutines(t testing.TB, base int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			t.Errorf("goroutines: %d, baseline %d", runtime.NumGoroutine(), base)
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestPkiGroups: a group alone prints its help; an unknown subcommand is a
// usage error.
func TestPkiGroups(t *testing.T) {
	for _, g := range [][]string{{}, {"ca"}, {"issue"}} {
		out, _, err := runPKI(t, g...)
		if err != nil || !strings.Contains(out, "Available Commands:") {
			t.Errorf("pki %v: err %v\n%s", g, err, out)
		}
		_, _, err = runPKI(t, append(g, "bogus")...)
		if !errors.Is(err, ErrUsage) || !strings.Contains(err.Error(), "bogus") {
			t.Errorf("pki %v bogus: %v, want a usage error", g, err)
		}
	}
}
