package pki

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"net"
	"net/url"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// OIDs used for subjectAltName handling.
var (
	oidExtensionSubjectAltName = asn1.ObjectIdentifier{2, 5, 29, 17}
	// OIDUPN is the Microsoft User Principal Name otherName, used by EAP-TLS
	// client certificates issued from Active Directory CAs.
	OIDUPN = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 20, 2, 3}
	// OIDNAIRealm is the NAIRealm otherName (id-on-naiRealm, RFC 7585 §2.2): the realm a RadSec
	// server is authoritative for, which dynamic discovery checks instead of the DNS name.
	OIDNAIRealm = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 8, 8}
)

// GeneralName tags, RFC 5280 §4.2.1.6.
const (
	gnOtherName = 0
	gnRFC822    = 1
	gnDNS       = 2
	gnURI       = 6
	gnIP        = 7
)

// SANs is the decoded subjectAltName extension, including otherName UPNs
// that crypto/x509 ignores.
type SANs struct {
	DNSNames    []string `json:"dns,omitempty"`
	Emails      []string `json:"email,omitempty"`
	IPAddresses []net.IP `json:"ip,omitempty"`
	URIs        []string `json:"uri,omitempty"`
	UPNs        []string `json:"upn,omitempty"`
	NAIRealms   []string `json:"nai_realm,omitempty"`
}

func (s SANs) empty() bool {
	return len(s.DNSNames)+len(s.Emails)+len(s.IPAddresses)+len(s.URIs)+len(s.UPNs)+len(s.NAIRealms) == 0
}

// marshalSAN encodes GeneralNames in the order DNS, email, IP, URI, UPN, NAIRealm
// (crypto/x509's order, with the otherNames appended). RFC 5280 §4.2.1.6.
func marshalSAN(s SANs) ([]byte, error) {
	var b cryptobyte.Builder
	var err error
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		for _, n := range s.DNSNames {
			b.AddASN1(cbasn1.Tag(gnDNS).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes([]byte(n)) })
		}
		for _, e := range s.Emails {
			b.AddASN1(cbasn1.Tag(gnRFC822).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes([]byte(e)) })
		}
		for _, ip := range s.IPAddresses {
			raw := ip.To4()
			if raw == nil {
				raw = ip.To16()
			}
			if raw == nil {
				err = fmt.Errorf("pki: invalid IP address %v in SAN", ip)
				return
			}
			b.AddASN1(cbasn1.Tag(gnIP).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes(raw) })
		}
		for _, u := range s.URIs {
			b.AddASN1(cbasn1.Tag(gnURI).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes([]byte(u)) })
		}
		for _, upn := range s.UPNs {
			addOtherName(b, OIDUPN, upn)
		}
		for _, r := range s.NAIRealms {
			addOtherName(b, OIDNAIRealm, r)
		}
	})
	if err != nil {
		return nil, err
	}
	return b.Bytes()
}

// addOtherName adds an otherName GeneralName whose value is a UTF8String (UPN, NAIRealm).
func addOtherName(b *cryptobyte.Builder, oid asn1.ObjectIdentifier, v string) {
	b.AddASN1(cbasn1.Tag(gnOtherName).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(oid)
		b.AddASN1(cbasn1.Tag(0).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.UTF8String, func(b *cryptobyte.Builder) { b.AddBytes([]byte(v)) })
		})
	})
}

// sanExtension builds the subjectAltName extension. RFC 5280 §4.2.1.6: it is
// critical when the subject is empty.
func sanExtension(s SANs, emptySubject bool) (pkix.Extension, error) {
	der, err := marshalSAN(s)
	if err != nil {
		return pkix.Extension{}, err
	}
	return pkix.Extension{Id: oidExtensionSubjectAltName, Critical: emptySubject, Value: der}, nil
}

var errBadSAN = errors.New("pki: malformed subjectAltName")

// parseSAN decodes a subjectAltName extension value. Unknown GeneralName
// forms are skipped, like crypto/x509 does.
func parseSAN(der []byte) (SANs, error) {
	var s SANs
	in := cryptobyte.String(der)
	var seq cryptobyte.String
	if !in.ReadASN1(&seq, cbasn1.SEQUENCE) || !in.Empty() {
		return s, errBadSAN
	}
	for !seq.Empty() {
		var v cryptobyte.String
		var tag cbasn1.Tag
		if !seq.ReadAnyASN1(&v, &tag) {
			return s, errBadSAN
		}
		switch tag {
		case cbasn1.Tag(gnDNS).ContextSpecific():
			s.DNSNames = append(s.DNSNames, string(v))
		case cbasn1.Tag(gnRFC822).ContextSpecific():
			s.Emails = append(s.Emails, string(v))
		case cbasn1.Tag(gnIP).ContextSpecific():
			if len(v) != net.IPv4len && len(v) != net.IPv6len {
				return s, errBadSAN
			}
			s.IPAddresses = append(s.IPAddresses, net.IP(append([]byte(nil), v...)))
		case cbasn1.Tag(gnURI).ContextSpecific():
			if _, err := url.Parse(string(v)); err != nil {
				return s, errBadSAN
			}
			s.URIs = append(s.URIs, string(v))
		case cbasn1.Tag(gnOtherName).ContextSpecific().Constructed():
			var oid asn1.ObjectIdentifier
			var val cryptobyte.String
			if !v.ReadASN1ObjectIdentifier(&oid) || !v.ReadASN1(&val, cbasn1.Tag(0).ContextSpecific().Constructed()) {
				return s, errBadSAN
			}
			if !oid.Equal(OIDUPN) && !oid.Equal(OIDNAIRealm) {
				continue
			}
			var str cryptobyte.String
			if !val.ReadASN1(&str, cbasn1.UTF8String) {
				return s, errBadSAN
			}
			if oid.Equal(OIDUPN) {
				s.UPNs = append(s.UPNs, string(str))
			} else {
				s.NAIRealms = append(s.NAIRealms, string(str))
			}
		}
	}
	return s, nil
}

// CertificateSANs returns every subjectAltName of cert, including UPNs.
func CertificateSANs(cert *x509.Certificate) SANs {
	for _, e := range cert.Extensions {
		if e.Id.Equal(oidExtensionSubjectAltName) {
			if s, err := parseSAN(e.Value); err == nil {
				return s
			}
		}
	}
	uris := make([]string, 0, len(cert.URIs))
	for _, u := range cert.URIs {
		uris = append(uris, u.String())
	}
	return SANs{DNSNames: cert.DNSNames, Emails: cert.EmailAddresses, IPAddresses: cert.IPAddresses, URIs: uris}
}

// csrSANs returns the SANs requested in a CSR, including UPNs.
func csrSANs(csr *x509.CertificateRequest) SANs {
	for _, e := range csr.Extensions {
		if e.Id.Equal(oidExtensionSubjectAltName) {
			if s, err := parseSAN(e.Value); err == nil {
				return s
			}
		}
	}
	uris := make([]string, 0, len(csr.URIs))
	for _, u := range csr.URIs {
		uris = append(uris, u.String())
	}
	return SANs{DNSNames: csr.DNSNames, Emails: csr.EmailAddresses, IPAddresses: csr.IPAddresses, URIs: uris}
}
