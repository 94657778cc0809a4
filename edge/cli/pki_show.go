package cli

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"mxedge/pki"
)

func newPKIShowCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "show FILE",
		Short: "Describe every certificate in a file (or a CSR): names, SANs, validity, EKU, fingerprints",
		Long: `show prints what a certificate panel shows: subject, common name, issuer, SANs (DNS, email, IP,
URI and UPN), serial, validity, key type and size, signature algorithm, CA flag, key usage, EKU,
CRL distribution points, AIA (OCSP, CA issuers), key identifiers, and the SHA-256 and SHA-1
fingerprints. The values are spelled as 'openssl x509 -noout -text' spells them, so the two can be
compared line by line. A file holding a chain shows each certificate, leaf first; a file holding a
certificate request shows the request. PEM and DER are accepted.

--json prints an array with one object per certificate (the same fields, machine-readable).`,
		Example: `  mxedge pki show /etc/mxedge/tls/edge.pem
  mxedge pki show --json server.pem | jq '.[0].sha256_fingerprint'`,
		Args: pkiArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := args[0]
			certs, err := pki.LoadCertificates(path)
			if errors.Is(err, pki.ErrNoCertificate) {
				if csr, cerr := pki.LoadCSR(path); cerr == nil {
					return showPKICSR(cmd.OutOrStdout(), csr, asJSON)
				}
			}
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if asJSON {
				ds := make([]pki.Description, 0, len(certs))
				for _, c := range certs {
					ds = append(ds, pki.Describe(c))
				}
				return writePKIJSON(w, ds)
			}
			for i, c := range certs {
				if len(certs) > 1 {
					if i > 0 {
						fmt.Fprintln(w)
					}
					fmt.Fprintf(w, "Certificate %d of %d\n", i+1, len(certs))
				}
				if err := pki.Describe(c).WriteText(w); err != nil {
					return err
				}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// pkiCSRDescription is what show prints for a certificate request.
type pkiCSRDescription struct {
	Subject            string   `json:"subject"`
	CommonName         string   `json:"common_name"`
	SANs               pki.SANs `json:"sans"`
	KeyAlgorithm       string   `json:"key_algorithm"`
	KeyBits            int      `json:"key_bits"`
	SignatureAlgorithm string   `json:"signature_algorithm"`
	PublicKeySHA256    string   `json:"public_key_sha256"`
}

func showPKICSR(w io.Writer, csr *x509.CertificateRequest, asJSON bool) error {
	// Describe spells names and algorithms as openssl does; a request has
	// the same subject and signature algorithm fields as a certificate.
	asCert := pki.Describe(&x509.Certificate{Subject: csr.Subject, SignatureAlgorithm: csr.SignatureAlgorithm})
	d := pkiCSRDescription{
		Subject:            asCert.Subject,
		CommonName:         csr.Subject.CommonName,
		SANs:               pkiCSRSANs(csr),
		SignatureAlgorithm: asCert.SignatureAlgorithm,
	}
	d.KeyAlgorithm, d.KeyBits = pki.PublicKeyInfo(csr.PublicKey)
	sum := sha256.Sum256(csr.RawSubjectPublicKeyInfo)
	d.PublicKeySHA256 = pkiColonHex(sum[:])
	if asJSON {
		return writePKIJSON(w, []pkiCSRDescription{d})
	}
	fmt.Fprintf(w, "Certificate Request (signature verified)\n")
	for _, l := range []struct{ label, value string }{
		{"Subject", d.Subject},
		{"Common Name", d.CommonName},
		{"Subject Alt Names", d.SANs.String()},
		{"Public Key", fmt.Sprintf("%s %d bit", d.KeyAlgorithm, d.KeyBits)},
		{"Signature Algorithm", d.SignatureAlgorithm},
		{"Public Key SHA-256", d.PublicKeySHA256},
	} {
		fmt.Fprintf(w, "%-20s %s\n", l.label+":", pkiDash(l.value))
	}
	return nil
}

func writePKIJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// pkiCSRSANs decodes a request's subjectAltName, UPNs included, through the
// certificate SAN parser: the extension has the same encoding in both.
func pkiCSRSANs(csr *x509.CertificateRequest) pki.SANs {
	return pki.CertificateSANs(&x509.Certificate{
		Extensions: csr.Extensions, DNSNames: csr.DNSNames, EmailAddresses: csr.EmailAddresses,
		IPAddresses: csr.IPAddresses, URIs: csr.URIs,
	})
}
