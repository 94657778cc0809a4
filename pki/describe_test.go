package pki

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"flag"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/")

// opensslBin returns the openssl path; a missing peer is a failure.
func opensslBin(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("openssl")
	if err != nil {
		t.Fatalf("openssl not on PATH (apt-get install openssl): %v", err)
	}
	return p
}

// opensslFields is what we parse out of `openssl x509 -noout -text
// -fingerprint`.
type opensslFields struct {
	subject, issuer, serial, keyAlg, curve, sigAlg string
	keyBits                                        string
	notBefore, notAfter                            time.Time
	ku, eku, sans                                  []string
	crldp, ocsp, caIssuers                         []string
	skid, akid, basic                              string
	sha256, sha1                                   string
}

var opensslEKU = map[string]string{
	"TLS Web Server Authentication": "serverAuth",
	"TLS Web Client Authentication": "clientAuth",
	"Code Signing":                  "codeSigning",
	"E-mail Protection":             "emailProtection",
	"Time Stamping":                 "timeStamping",
	"OCSP Signing":                  "OCSPSigning",
	"Any Extended Key Usage":        "anyExtendedKeyUsage",
}

func runOpenSSLText(t testing.TB, path string) opensslFields {
	t.Helper()
	bin := opensslBin(t)
	out, err := exec.Command(bin, "x509", "-in", path, "-noout", "-text", "-fingerprint", "-sha256").CombinedOutput()
	if err != nil {
		t.Fatalf("openssl x509 -text: %v\n%s", err, out)
	}
	fp1, err := exec.Command(bin, "x509", "-in", path, "-noout", "-fingerprint", "-sha1").CombinedOutput()
	if err != nil {
		t.Fatalf("openssl x509 -fingerprint -sha1: %v\n%s", err, fp1)
	}
	var f opensslFields
	f.sha1 = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(string(fp1)), "sha1 Fingerprint="))
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	indent := func(s string) int { return len(s) - len(strings.TrimLeft(s, " ")) }
	// block returns the trimmed lines indented deeper than line i.
	block := func(i int) []string {
		var b []string
		for j := i + 1; j < len(lines) && indent(lines[j]) > indent(lines[i]); j++ {
			b = append(b, strings.TrimSpace(lines[j]))
		}
		return b
	}
	parseTime := func(s string) time.Time {
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
			f.subject = strings.TrimPrefix(s, "Subject: ")
		case strings.HasPrefix(s, "Issuer: "):
			f.issuer = strings.TrimPrefix(s, "Issuer: ")
		case strings.HasPrefix(s, "Serial Number:"):
			rest := strings.TrimSpace(strings.TrimPrefix(s, "Serial Number:"))
			if rest == "" {
				f.serial = block(i)[0]
			} else { // "12345 (0x3039)"
				h := rest[strings.Index(rest, "0x")+2 : len(rest)-1]
				if len(h)%2 == 1 {
					h = "0" + h
				}
				f.serial = colonHex(mustHex(t, h), false)
			}
		case strings.HasPrefix(s, "Not Before:"):
			f.notBefore = parseTime(strings.TrimPrefix(s, "Not Before:"))
		case strings.HasPrefix(s, "Not After :"):
			f.notAfter = parseTime(strings.TrimPrefix(s, "Not After :"))
		case strings.HasPrefix(s, "Public Key Algorithm: "):
			f.keyAlg = strings.TrimPrefix(s, "Public Key Algorithm: ")
		case strings.HasPrefix(s, "Public-Key: ("):
			f.keyBits = strings.TrimSuffix(strings.TrimPrefix(s, "Public-Key: ("), " bit)")
		case strings.HasPrefix(s, "NIST CURVE: "):
			f.curve = strings.TrimPrefix(s, "NIST CURVE: ")
		case strings.HasPrefix(s, "Signature Algorithm: ") && f.sigAlg == "":
			f.sigAlg = strings.TrimPrefix(s, "Signature Algorithm: ")
		case strings.HasPrefix(s, "X509v3 Key Usage:"):
			f.ku = strings.Split(block(i)[0], ", ")
		case strings.HasPrefix(s, "X509v3 Extended Key Usage:"):
			for _, n := range strings.Split(block(i)[0], ", ") {
				if m, ok := opensslEKU[n]; ok {
					n = m
				}
				f.eku = append(f.eku, n)
			}
		case strings.HasPrefix(s, "X509v3 Subject Alternative Name:"):
			f.sans = strings.Split(block(i)[0], ", ")
		case strings.HasPrefix(s, "X509v3 CRL Distribution Points:"):
			for _, b := range block(i) {
				if strings.HasPrefix(b, "URI:") {
					f.crldp = append(f.crldp, strings.TrimPrefix(b, "URI:"))
				}
			}
		case strings.HasPrefix(s, "Authority Information Access:"):
			for _, b := range block(i) {
				if u, ok := strings.CutPrefix(b, "OCSP - URI:"); ok {
					f.ocsp = append(f.ocsp, u)
				}
				if u, ok := strings.CutPrefix(b, "CA Issuers - URI:"); ok {
					f.caIssuers = append(f.caIssuers, u)
				}
			}
		case strings.HasPrefix(s, "X509v3 Subject Key Identifier:"):
			f.skid = block(i)[0]
		case strings.HasPrefix(s, "X509v3 Authority Key Identifier:"):
			f.akid = strings.TrimPrefix(block(i)[0], "keyid:")
		case strings.HasPrefix(s, "X509v3 Basic Constraints:"):
			f.basic = block(i)[0]
		case strings.HasPrefix(s, "sha256 Fingerprint="):
			f.sha256 = strings.TrimPrefix(s, "sha256 Fingerprint=")
		}
	}
	return f
}

func mustHex(t testing.TB, h string) []byte {
	t.Helper()
	b := make([]byte, len(h)/2)
	for i := range b {
		var v byte
		for _, c := range h[2*i : 2*i+2] {
			v <<= 4
			switch {
			case c >= '0' && c <= '9':
				v |= byte(c - '0')
			case c >= 'a' && c <= 'f':
				v |= byte(c-'a') + 10
			case c >= 'A' && c <= 'F':
				v |= byte(c-'A') + 10
			default:
				t.Fatalf("bad hex %q", h)
			}
		}
		b[i] = v
	}
	return b
}

// ourSANs renders SANs the way openssl prints them (IPv6 uncompressed,
// upper-case) so the lists compare element by element.
func ourSANs(s SANs) []string {
	var out []string
	for _, p := range strings.Split(s.String(), ", ") {
		if ip, ok := strings.CutPrefix(p, "IP Address:"); ok {
			if a := net.ParseIP(ip); a != nil && a.To4() == nil {
				var parts []string
				for i := 0; i < 16; i += 2 {
					parts = append(parts, strings.ToUpper(big.NewInt(int64(a[i])<<8|int64(a[i+1])).Text(16)))
				}
				p = "IP Address:" + strings.Join(parts, ":")
			}
		}
		if p != "" {
			out = append(out, p)
		}
	}
	return out
}

// goldenCerts builds the certificates compared against openssl.
func goldenCerts(t testing.TB) map[string]*x509.Certificate {
	t.Helper()
	ecRoot := newRoot(t, KeyECDSAP256)
	rsaRoot, err := NewCA(CAOptions{CommonName: "RSA Root", Organization: "Org, Inc.", KeyType: KeyRSA3072, MaxPathLen: 1})
	if err != nil {
		t.Fatal(err)
	}
	rsaInter, err := NewCA(CAOptions{CommonName: "RSA Issuing", KeyType: KeyRSA2048, Parent: rsaRoot,
		CRLURLs: []string{"http://127.0.0.1:8080/root.crl"}, OCSPURLs: []string{"http://127.0.0.1:8080/ocsp"}})
	if err != nil {
		t.Fatal(err)
	}
	urls := IssueOptions{CRLURLs: []string{"http://127.0.0.1/a.crl", "http://[::1]/b.crl"}, OCSPURLs: []string{"http://127.0.0.1/ocsp"},
		IssuingCertURLs: []string{"http://127.0.0.1/ca.crt"}}
	rsaServer := urls
	rsaServer.CommonName, rsaServer.Organization, rsaServer.KeyType, rsaServer.Usage = "radsec.example", "mxedge", KeyRSA2048, UsageServer
	rsaServer.DNSNames, rsaServer.IPAddresses = []string{"radsec.example", "edge-1.radsec.example"}, []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("2001:db8::1")}
	ecClient := urls
	ecClient.CommonName, ecClient.KeyType, ecClient.Usage = "laptop \"7\" #1", KeyECDSAP384, UsageClient
	ecClient.Emails, ecClient.UPNs, ecClient.URIs = []string{"user@example.com"}, []string{"user@corp.example"}, []string{"urn:uuid:0d2c7a4a-3c1a-4c1a-8d0e-000000000001"}
	both := IssueOptions{CommonName: "edge", Usage: UsageServer | UsageClient, ExtraExtKeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning}}
	sha1Leaf := IssueOptions{CommonName: "weak", Usage: UsageClient, SignatureAlgorithm: x509.SHA1WithRSA}

	// A short serial: openssl prints "12345 (0x3039)".
	k, _ := GenerateKey(KeyECDSAP256)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(12345), Subject: pkix.Name{CommonName: " #spaced; a+b ", Country: []string{"DE"}, Organization: []string{`back\\slash`}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ecRoot.Cert, k.Public(), ecRoot.Key)
	if err != nil {
		t.Fatal(err)
	}
	short, _ := x509.ParseCertificate(der)
	return map[string]*x509.Certificate{
		"ecdsa-root":         ecRoot.Cert,
		"rsa-root":           rsaRoot.Cert,
		"rsa-intermediate":   rsaInter.Cert,
		"rsa-server":         issue(t, rsaInter, rsaServer).Cert,
		"ecdsa-client-upn":   issue(t, ecRoot, ecClient).Cert,
		"ecdsa-server+cl":    issue(t, ecRoot, both).Cert,
		"rsa-sha1":           issue(t, rsaRoot, sha1Leaf).Cert,
		"ecdsa-short-serial": short,
	}
}

// TestDescribeMatchesOpenSSL: every field pki show prints agrees with
// `openssl x509 -noout -text -fingerprint`.
func TestDescribeMatchesOpenSSL(t *testing.T) {
	dir := t.TempDir()
	for name, cert := range goldenCerts(t) {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(dir, name+".pem")
			must(t, WriteCertificates(p, false, cert))
			o := runOpenSSLText(t, p)
			d := Describe(cert)
			eq := func(field, got, want string) {
				t.Helper()
				if got != want {
					t.Errorf("%s: pki %q, openssl %q", field, got, want)
				}
			}
			eqs := func(field string, got, want []string) {
				t.Helper()
				if !slices.Equal(got, want) {
					t.Errorf("%s: pki %q, openssl %q", field, got, want)
				}
			}
			eq("subject", d.Subject, o.subject)
			eq("issuer", d.Issuer, o.issuer)
			eq("serial", d.SerialHex, o.serial)
			eq("signature algorithm", d.SignatureAlgorithm, o.sigAlg)
			eq("key bits", itoa(d.KeyBits), o.keyBits)
			eq("curve", d.Curve, o.curve)
			wantAlg := map[string]string{"rsaEncryption": "RSA", "id-ecPublicKey": "ECDSA", "ED25519": "Ed25519"}[o.keyAlg]
			eq("key algorithm", d.KeyAlgorithm, wantAlg)
			if !d.NotBefore.Equal(o.notBefore) || !d.NotAfter.Equal(o.notAfter) {
				t.Errorf("validity: pki %v..%v, openssl %v..%v", d.NotBefore, d.NotAfter, o.notBefore, o.notAfter)
			}
			eqs("key usage", d.KeyUsage, o.ku)
			eqs("extended key usage", d.ExtKeyUsage, o.eku)
			eqs("subject alt names", ourSANs(d.SANs), o.sans)
			eqs("crl distribution points", d.CRLDistributionPoints, o.crldp)
			eqs("ocsp", d.OCSPServers, o.ocsp)
			eqs("ca issuers", d.IssuingCertURLs, o.caIssuers)
			eq("subject key id", d.SubjectKeyID, o.skid)
			eq("authority key id", d.AuthorityKeyID, o.akid)
			eq("sha256 fingerprint", d.SHA256Fingerprint, o.sha256)
			eq("sha1 fingerprint", d.SHA1Fingerprint, o.sha1)
			basic := "CA:FALSE"
			if d.IsCA {
				basic = "CA:TRUE"
				if d.MaxPathLen >= 0 {
					basic += ", pathlen:" + itoa(d.MaxPathLen)
				}
			}
			if o.basic != "" || cert.BasicConstraintsValid {
				eq("basic constraints", basic, o.basic)
			}
			var buf bytes.Buffer
			must(t, d.WriteText(&buf))
			for _, want := range []string{d.SHA256Fingerprint, d.Subject, d.SerialHex} {
				if want != "" && !strings.Contains(buf.String(), want) {
					t.Errorf("text lacks %q", want)
				}
			}
		})
	}
}

func itoa(n int) string { return big.NewInt(int64(n)).String() }

// TestDescribeTextGolden pins the text layout for a committed certificate.
func TestDescribeTextGolden(t *testing.T) {
	certs, err := LoadCertificates("testdata/show-rsa-server.pem")
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	must(t, Describe(certs[0]).WriteText(&buf))
	golden := "testdata/show-rsa-server.golden"
	if *update {
		must(t, os.WriteFile(golden, buf.Bytes(), 0o644))
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), want) {
		t.Errorf("text layout changed (rerun with -update if intended):\n%s\nwant:\n%s", buf.Bytes(), want)
	}
}
