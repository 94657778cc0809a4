package proxy

import (
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"strings"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

var (
	oidSubjectAltName = asn1.ObjectIdentifier{2, 5, 29, 17}
	// oidNAIRealm is id-on-naiRealm (RFC 7585 §2.2).
	oidNAIRealm = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 8, 8}
	// errBadSAN: the subjectAltName extension does not parse.
	errBadSAN = errors.New("proxy: malformed subjectAltName")
)

// NAIRealms returns the NAIRealm otherName SANs of cert (RFC 7585 §2.2), which crypto/x509 does
// not decode.
func NAIRealms(cert *x509.Certificate) ([]string, error) {
	for _, e := range cert.Extensions {
		if e.Id.Equal(oidSubjectAltName) {
			return parseNAIRealms(e.Value)
		}
	}
	return nil, nil
}

// parseNAIRealms reads the NAIRealm otherNames of a subjectAltName value (RFC 5280 §4.2.1.6:
// GeneralNames, otherName [0] { type-id OID, value [0] EXPLICIT UTF8String }).
func parseNAIRealms(der []byte) ([]string, error) {
	in := cryptobyte.String(der)
	var seq cryptobyte.String
	if !in.ReadASN1(&seq, cbasn1.SEQUENCE) || !in.Empty() {
		return nil, errBadSAN
	}
	var out []string
	for !seq.Empty() {
		var v cryptobyte.String
		var tag cbasn1.Tag
		if !seq.ReadAnyASN1(&v, &tag) {
			return nil, errBadSAN
		}
		if tag != cbasn1.Tag(0).ContextSpecific().Constructed() {
			continue
		}
		var oid asn1.ObjectIdentifier
		var val, str cryptobyte.String
		if !v.ReadASN1ObjectIdentifier(&oid) || !v.ReadASN1(&val, cbasn1.Tag(0).ContextSpecific().Constructed()) {
			return nil, errBadSAN
		}
		if !oid.Equal(oidNAIRealm) {
			continue
		}
		if !val.ReadASN1(&str, cbasn1.UTF8String) || len(str) == 0 || len(str) > 255 {
			return nil, errBadSAN
		}
		out = append(out, string(str))
	}
	return out, nil
}

// matchRealm reports whether a certificate's NAIRealm names realm: equal ignoring case, or a
// wildcard "*.example.org" standing for exactly one left-most label ("a.example.org", not
// "example.org" nor "a.b.example.org"), as RFC 6125 §6.4.3 treats DNS wildcards.
func matchRealm(pattern, realm string) bool {
	pattern = strings.ToLower(strings.TrimSuffix(pattern, "."))
	realm = strings.ToLower(strings.TrimSuffix(realm, "."))
	if rest, ok := strings.CutPrefix(pattern, "*."); ok {
		label, suffix, found := strings.Cut(realm, ".")
		return found && label != "" && suffix == rest && !strings.Contains(rest, "*")
	}
	return pattern != "" && pattern == realm
}
