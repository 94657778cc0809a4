package localeap

import (
	"crypto/x509"

	"mxedge/pki"
)

// certIdentity returns the authorization identity of leaf: the first non-empty name in order
// (CN, SAN UPN, SAN email, SAN DNS by default; docs/local-eap-tls.md). "" when none is present.
func certIdentity(leaf *x509.Certificate, order []string) string {
	if leaf == nil {
		return ""
	}
	var sans *pki.SANs
	san := func() pki.SANs {
		if sans == nil {
			s := pki.CertificateSANs(leaf)
			sans = &s
		}
		return *sans
	}
	for _, src := range order {
		var v []string
		switch src {
		case IdentityCN:
			v = []string{leaf.Subject.CommonName}
		case IdentityUPN:
			v = san().UPNs
		case IdentityEmail:
			v = san().Emails
		case IdentityDNS:
			v = san().DNSNames
		}
		for _, s := range v {
			if s != "" {
				return s
			}
		}
	}
	return ""
}
