package pki

import (
	"crypto/ecdsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"fmt"
	"io"
	"math/big"
	"strings"
	"time"
)

// Description is everything `pki show` prints about a certificate: the
// fields operators compare against a browser's or openssl's certificate
// panel (issuer, CN, SAN, serial, validity, EKU, AIA, CRL DP, fingerprint).
// String forms follow `openssl x509 -text` so the two can be compared.
type Description struct {
	Version int `json:"version"`
	// Subject and Issuer in openssl's default one-line form
	// ("O = Org, CN = name"), in certificate order.
	Subject          string `json:"subject"`
	Issuer           string `json:"issuer"`
	CommonName       string `json:"common_name"`
	IssuerCommonName string `json:"issuer_common_name"`
	SANs             SANs   `json:"sans"`
	// SerialHex is lower-case colon hex like openssl ("6c:77:84:...").
	SerialHex string    `json:"serial"`
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after"`
	// KeyAlgorithm is "RSA", "ECDSA" or "Ed25519"; Curve is set for ECDSA.
	KeyAlgorithm string `json:"key_algorithm"`
	KeyBits      int    `json:"key_bits"`
	Curve        string `json:"curve,omitempty"`
	// SignatureAlgorithm uses openssl's names (sha256WithRSAEncryption,
	// ecdsa-with-SHA256, ...).
	SignatureAlgorithm string `json:"signature_algorithm"`
	IsCA               bool   `json:"is_ca"`
	// MaxPathLen is -1 when unlimited or not a CA.
	MaxPathLen int `json:"max_path_len"`
	// KeyUsage uses openssl's names ("Digital Signature", ...).
	KeyUsage []string `json:"key_usage"`
	// ExtKeyUsage uses short names (serverAuth, clientAuth, ...) or the
	// dotted OID for unknown ones.
	ExtKeyUsage []string `json:"ext_key_usage"`
	// Fingerprints are upper-case colon hex over the DER, like
	// `openssl x509 -fingerprint`.
	SHA256Fingerprint     string   `json:"sha256_fingerprint"`
	SHA1Fingerprint       string   `json:"sha1_fingerprint"`
	CRLDistributionPoints []string `json:"crl_distribution_points,omitempty"`
	OCSPServers           []string `json:"ocsp_servers,omitempty"`
	IssuingCertURLs       []string `json:"issuing_cert_urls,omitempty"`
	SubjectKeyID          string   `json:"subject_key_id,omitempty"`
	AuthorityKeyID        string   `json:"authority_key_id,omitempty"`
	SelfSigned            bool     `json:"self_signed"`
}

// Describe extracts the Description of cert.
func Describe(cert *x509.Certificate) Description {
	d := Description{
		Version:          cert.Version,
		Subject:          onelineName(cert.Subject.Names),
		Issuer:           onelineName(cert.Issuer.Names),
		CommonName:       cert.Subject.CommonName,
		IssuerCommonName: cert.Issuer.CommonName,
		SANs:             CertificateSANs(cert),

		NotBefore:             cert.NotBefore.UTC(),
		NotAfter:              cert.NotAfter.UTC(),
		SignatureAlgorithm:    opensslSigName(cert.SignatureAlgorithm),
		IsCA:                  cert.IsCA,
		MaxPathLen:            -1,
		KeyUsage:              keyUsageNames(cert.KeyUsage),
		ExtKeyUsage:           extKeyUsageNames(cert),
		SHA256Fingerprint:     SHA256Fingerprint(cert),
		SHA1Fingerprint:       fingerprintSHA1(cert),
		CRLDistributionPoints: cert.CRLDistributionPoints,
		OCSPServers:           cert.OCSPServer,
		IssuingCertURLs:       cert.IssuingCertificateURL,
		SubjectKeyID:          colonHex(cert.SubjectKeyId, true),
		AuthorityKeyID:        colonHex(cert.AuthorityKeyId, true),
	}
	switch {
	case cert.SerialNumber == nil:
	case cert.SerialNumber.Sign() == 0:
		d.SerialHex = "00"
	default:
		// A negative serial (invalid per RFC 5280 §4.1.2.2, but seen in
		// the wild) is shown as "-" and the magnitude; openssl prints
		// "(Negative)" and the magnitude.
		d.SerialHex = colonHex(new(big.Int).Abs(cert.SerialNumber).Bytes(), false)
		if cert.SerialNumber.Sign() < 0 {
			d.SerialHex = "-" + d.SerialHex
		}
	}
	if cert.IsCA && (cert.MaxPathLen > 0 || cert.MaxPathLenZero) {
		d.MaxPathLen = cert.MaxPathLen
	}
	d.KeyAlgorithm, d.KeyBits = PublicKeyInfo(cert.PublicKey)
	if k, ok := cert.PublicKey.(*ecdsa.PublicKey); ok {
		d.Curve = k.Curve.Params().Name
	}
	d.SelfSigned = string(cert.RawSubject) == string(cert.RawIssuer) && cert.CheckSignatureFrom(cert) == nil
	return d
}

func fingerprintSHA1(cert *x509.Certificate) string {
	s := sha1.Sum(cert.Raw)
	return colonHex(s[:], true)
}

// SHA256Fingerprint returns the SHA-256 fingerprint of cert as upper-case
// colon hex, the form operators pin and compare.
func SHA256Fingerprint(cert *x509.Certificate) string {
	s := sha256.Sum256(cert.Raw)
	return colonHex(s[:], true)
}

func colonHex(b []byte, upper bool) string {
	if len(b) == 0 {
		return ""
	}
	h := hex.EncodeToString(b)
	if upper {
		h = strings.ToUpper(h)
	}
	var sb strings.Builder
	for i := 0; i < len(h); i += 2 {
		if i > 0 {
			sb.WriteByte(':')
		}
		sb.WriteString(h[i : i+2])
	}
	return sb.String()
}

// attribute short names as openssl prints them.
var attrNames = map[string]string{
	"2.5.4.3":                    "CN",
	"2.5.4.4":                    "SN",
	"2.5.4.5":                    "serialNumber",
	"2.5.4.6":                    "C",
	"2.5.4.7":                    "L",
	"2.5.4.8":                    "ST",
	"2.5.4.9":                    "street",
	"2.5.4.10":                   "O",
	"2.5.4.11":                   "OU",
	"2.5.4.12":                   "title",
	"2.5.4.17":                   "postalCode",
	"2.5.4.42":                   "GN",
	"1.2.840.113549.1.9.1":       "emailAddress",
	"0.9.2342.19200300.100.1.25": "DC",
	"0.9.2342.19200300.100.1.1":  "UID",
}

// onelineName renders attributes the way openssl 3's default -nameopt
// (oneline: RFC 2253 escaping with quotes) does: "TYPE = value" joined by
// ", ".
func onelineName(names []pkix.AttributeTypeAndValue) string {
	parts := make([]string, 0, len(names))
	for _, n := range names {
		typ, ok := attrNames[n.Type.String()]
		if !ok {
			typ = n.Type.String()
		}
		v := opensslEscape(fmt.Sprint(n.Value))
		parts = append(parts, typ+" = "+v)
	}
	return strings.Join(parts, ", ")
}

// opensslEscape: backslash before " and \; the whole value in double
// quotes when it holds an RFC 2253 §2.4 special character (,+<>;) or starts
// with space or '#' or ends with space.
func opensslEscape(v string) string {
	quote := strings.ContainsAny(v, ",+<>;") || strings.HasPrefix(v, " ") || strings.HasPrefix(v, "#") || strings.HasSuffix(v, " ")
	v = strings.ReplaceAll(strings.ReplaceAll(v, `\`, `\\`), `"`, `\"`)
	if quote {
		v = `"` + v + `"`
	}
	return v
}

var sigNames = map[x509.SignatureAlgorithm]string{
	x509.MD5WithRSA:       "md5WithRSAEncryption",
	x509.SHA1WithRSA:      "sha1WithRSAEncryption",
	x509.SHA256WithRSA:    "sha256WithRSAEncryption",
	x509.SHA384WithRSA:    "sha384WithRSAEncryption",
	x509.SHA512WithRSA:    "sha512WithRSAEncryption",
	x509.SHA256WithRSAPSS: "rsassaPss",
	x509.SHA384WithRSAPSS: "rsassaPss",
	x509.SHA512WithRSAPSS: "rsassaPss",
	x509.ECDSAWithSHA1:    "ecdsa-with-SHA1",
	x509.ECDSAWithSHA256:  "ecdsa-with-SHA256",
	x509.ECDSAWithSHA384:  "ecdsa-with-SHA384",
	x509.ECDSAWithSHA512:  "ecdsa-with-SHA512",
	x509.PureEd25519:      "ED25519",
}

func opensslSigName(a x509.SignatureAlgorithm) string {
	if n, ok := sigNames[a]; ok {
		return n
	}
	return a.String()
}

func keyUsageNames(ku x509.KeyUsage) []string {
	names := []struct {
		bit  x509.KeyUsage
		name string
	}{
		{x509.KeyUsageDigitalSignature, "Digital Signature"},
		{x509.KeyUsageContentCommitment, "Non Repudiation"},
		{x509.KeyUsageKeyEncipherment, "Key Encipherment"},
		{x509.KeyUsageDataEncipherment, "Data Encipherment"},
		{x509.KeyUsageKeyAgreement, "Key Agreement"},
		{x509.KeyUsageCertSign, "Certificate Sign"},
		{x509.KeyUsageCRLSign, "CRL Sign"},
		{x509.KeyUsageEncipherOnly, "Encipher Only"},
		{x509.KeyUsageDecipherOnly, "Decipher Only"},
	}
	var out []string
	for _, n := range names {
		if ku&n.bit != 0 {
			out = append(out, n.name)
		}
	}
	return out
}

var ekuNames = map[x509.ExtKeyUsage]string{
	x509.ExtKeyUsageAny:             "anyExtendedKeyUsage",
	x509.ExtKeyUsageServerAuth:      "serverAuth",
	x509.ExtKeyUsageClientAuth:      "clientAuth",
	x509.ExtKeyUsageCodeSigning:     "codeSigning",
	x509.ExtKeyUsageEmailProtection: "emailProtection",
	x509.ExtKeyUsageIPSECEndSystem:  "ipsecEndSystem",
	x509.ExtKeyUsageIPSECTunnel:     "ipsecTunnel",
	x509.ExtKeyUsageIPSECUser:       "ipsecUser",
	x509.ExtKeyUsageTimeStamping:    "timeStamping",
	x509.ExtKeyUsageOCSPSigning:     "OCSPSigning",
}

func extKeyUsageNames(cert *x509.Certificate) []string {
	var out []string
	for _, u := range cert.ExtKeyUsage {
		if n, ok := ekuNames[u]; ok {
			out = append(out, n)
		} else {
			out = append(out, fmt.Sprintf("eku(%d)", int(u)))
		}
	}
	for _, oid := range cert.UnknownExtKeyUsage {
		out = append(out, oid.String())
	}
	return out
}

// String renders the SANs like openssl: "DNS:a, email:b, IP Address:c,
// URI:d, othername: UPN::e".
func (s SANs) String() string {
	var parts []string
	for _, n := range s.DNSNames {
		parts = append(parts, "DNS:"+n)
	}
	for _, e := range s.Emails {
		parts = append(parts, "email:"+e)
	}
	for _, ip := range s.IPAddresses {
		parts = append(parts, "IP Address:"+ip.String())
	}
	for _, u := range s.URIs {
		parts = append(parts, "URI:"+u)
	}
	for _, u := range s.UPNs {
		parts = append(parts, "othername: UPN::"+u)
	}
	for _, r := range s.NAIRealms {
		parts = append(parts, "othername: NAIRealm::"+r)
	}
	return strings.Join(parts, ", ")
}

// WriteText writes the description in a stable "Label: value" layout, one
// field per line, labels padded to one column. Absent fields print "-", so
// every description has the same lines in the same order.
func (d Description) WriteText(w io.Writer) error {
	key := fmt.Sprintf("%s %d bit", d.KeyAlgorithm, d.KeyBits)
	if d.Curve != "" {
		key += " (" + d.Curve + ")"
	}
	ca := "no"
	if d.IsCA {
		ca = "yes"
		if d.MaxPathLen >= 0 {
			ca += fmt.Sprintf(", path length %d", d.MaxPathLen)
		}
	}
	if d.SelfSigned {
		ca += ", self-signed"
	}
	lines := []struct{ label, value string }{
		{"Subject", d.Subject},
		{"Common Name", d.CommonName},
		{"Issuer", d.Issuer},
		{"Subject Alt Names", d.SANs.String()},
		{"Serial Number", d.SerialHex},
		{"Valid From", d.NotBefore.Format(time.RFC3339)},
		{"Valid To", d.NotAfter.Format(time.RFC3339)},
		{"Public Key", key},
		{"Signature Algorithm", d.SignatureAlgorithm},
		{"CA", ca},
		{"Key Usage", strings.Join(d.KeyUsage, ", ")},
		{"Extended Key Usage", strings.Join(d.ExtKeyUsage, ", ")},
		{"CRL Distribution", strings.Join(d.CRLDistributionPoints, ", ")},
		{"OCSP", strings.Join(d.OCSPServers, ", ")},
		{"CA Issuers", strings.Join(d.IssuingCertURLs, ", ")},
		{"Subject Key ID", d.SubjectKeyID},
		{"Authority Key ID", d.AuthorityKeyID},
		{"SHA-256 Fingerprint", d.SHA256Fingerprint},
		{"SHA-1 Fingerprint", d.SHA1Fingerprint},
	}
	var b strings.Builder
	for _, l := range lines {
		v := l.value
		if v == "" {
			v = "-"
		}
		fmt.Fprintf(&b, "%-20s %s\n", l.label+":", v)
	}
	_, err := io.WriteString(w, b.String())
	return err
}
