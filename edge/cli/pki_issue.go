package cli

import (
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"mxedge/pki"
)

func newPKIIssueCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "issue server|client",
		Short: "Issue a RadSec/EAP-TLS server or client certificate and key from a CA",
		Long: `issue generates a key and a certificate signed by a CA made with 'mxedge pki ca init' (or any
CA whose certificate and key you hold). The certificate file holds the leaf followed by the issuing
chain (intermediates, not the root); the key file is written with mode 0600.

  server  EKU serverAuth: the local RadSec listener or EAP-TLS server. Peers check its SANs
          (RFC 6614 §2.3, RFC 6125), so give every name and address NAS devices use with --dns/--ip.
  client  EKU clientAuth: the identity the edge presents to the cloud NAC, or an EAP-TLS supplicant
          (add --upn for Active Directory style identities).`,
		Args: pkiArgs(cobra.NoArgs),
		RunE: pkiGroupHelp,
	}
	cmd.AddCommand(newPKIIssueKindCmd(pki.UsageServer), newPKIIssueKindCmd(pki.UsageClient))
	return cmd
}

// pkiCAFlags locate the signing CA.
type pkiCAFlags struct {
	cert, key         string
	crlURLs, ocspURLs []string
}

func (c *pkiCAFlags) register(f *pflag.FlagSet) {
	f.StringVar(&c.cert, "ca-cert", "", "CA certificate (PEM or DER; an intermediate may be followed by its chain)")
	f.StringVar(&c.key, "ca-key", "", "CA private key")
	f.StringArrayVar(&c.crlURLs, "crl-url", nil, "CRL distribution point URL (default: the CA certificate's)")
	f.StringArrayVar(&c.ocspURLs, "ocsp-url", nil, "OCSP responder URL (default: the CA certificate's)")
}

// load reads the CA; a key that is not the CA's is pki.ErrKeyMismatch
// naming both files.
func (c *pkiCAFlags) load() (*pki.CA, error) {
	if err := requirePKIFlags(pkiReq("ca-cert", c.cert), pkiReq("ca-key", c.key)); err != nil {
		return nil, err
	}
	return pki.LoadCA(c.cert, c.key)
}

// revocationURLs: explicit flags win; otherwise certificates point where
// `pki ca init --crl-url/--ocsp-url` said this CA publishes.
func (c *pkiCAFlags) revocationURLs(ca *pki.CA) (crl, ocsp []string) {
	crl, ocsp = c.crlURLs, c.ocspURLs
	if crl == nil {
		crl = ca.Cert.CRLDistributionPoints
	}
	if ocsp == nil {
		ocsp = ca.Cert.OCSPServer
	}
	return crl, ocsp
}

func newPKIIssueKindCmd(usage pki.Usage) *cobra.Command {
	var (
		ca               pkiCAFlags
		names            pkiNameFlags
		cn, org, keyType string
		outCert, outKey  string
		days             int
		force            bool
	)
	kind := usage.String()
	example := `  mxedge pki issue client --ca-cert lab-ca/ca.pem --ca-key lab-ca/ca.key --cn edge-1.example.net \
    --dns edge-1.example.net --out-cert edge-1.pem --out-key edge-1.key`
	if usage == pki.UsageServer {
		example = `  mxedge pki issue server --ca-cert lab-ca/ca.pem --ca-key lab-ca/ca.key --cn radius.example.net \
    --dns radius.example.net --ip 192.0.2.10 --out-cert server.pem --out-key server.key`
	}
	cmd := &cobra.Command{
		Use:     kind + " --ca-cert FILE --ca-key FILE --cn NAME",
		Short:   fmt.Sprintf("Issue a %s certificate (EKU %sAuth)", kind, kind),
		Example: example,
		Args:    pkiArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requirePKIFlags(pkiReq("cn", cn)); err != nil {
				return err
			}
			kt, err := pkiKeyType(keyType)
			if err != nil {
				return err
			}
			v, err := pkiValidity(days)
			if err != nil {
				return err
			}
			if outCert == "" {
				outCert = pkiFileStem(cn) + ".pem"
			}
			if outKey == "" {
				outKey = pkiFileStem(cn) + ".key"
			}
			if err := refusePKIOverwrite(force, outCert, outKey); err != nil {
				return err
			}
			authority, err := ca.load()
			if err != nil {
				return err
			}
			if usage == pki.UsageServer && names.empty() {
				// Clients match the server's SANs, not its CN (RFC 6125
				// §6.4.4); a server certificate without SANs fails them all.
				addPKICNAsSAN(cmd.ErrOrStderr(), cn, &names)
			}
			crl, ocsp := ca.revocationURLs(authority)
			is, err := authority.Issue(pki.IssueOptions{
				CommonName: cn, Organization: org,
				DNSNames: names.dns, IPAddresses: names.ips, Emails: names.emails, UPNs: names.upns,
				Usage: usage, KeyType: kt, Validity: v, CRLURLs: crl, OCSPURLs: ocsp,
			})
			if err != nil {
				return err
			}
			if err := pki.WriteKey(outKey, is.Key, force); err != nil {
				return pkiWriteErr(outKey, err)
			}
			if err := pki.WriteCertificates(outCert, force, append([]*x509.Certificate{is.Cert}, is.Chain...)...); err != nil {
				return pkiWriteErr(outCert, err)
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "Issued %s certificate\n", kind)
			fmt.Fprintf(w, "  %-20s %s (leaf + %d issuing CA certificate(s))\n", "Certificate:", outCert, len(is.Chain))
			fmt.Fprintf(w, "  %-20s %s (mode 0600)\n", "Private Key:", outKey)
			writePKISummary(w, is.Cert)
			return nil
		},
	}
	f := cmd.Flags()
	ca.register(f)
	names.register(f, true)
	f.StringVar(&cn, "cn", "", "subject common name (required)")
	f.StringVar(&org, "org", "", "subject organization (O)")
	f.StringVar(&keyType, "key-type", string(pki.DefaultKeyType), "key type: "+pkiKeyTypeList())
	f.IntVar(&days, "days", int(pki.DefaultCertValidity.Hours()/24), "validity in days (clipped to the CA's)")
	f.StringVar(&outCert, "out-cert", "", "certificate chain output (default CN.pem)")
	f.StringVar(&outKey, "out-key", "", "private key output, mode 0600 (default CN.key)")
	f.BoolVar(&force, "force", false, "overwrite existing output files")
	return cmd
}

// addPKICNAsSAN puts the CN in the SAN as an IP address or DNS name and says so.
func addPKICNAsSAN(w io.Writer, cn string, names *pkiNameFlags) {
	if ip := net.ParseIP(cn); ip != nil {
		names.ips = []net.IP{ip}
		fmt.Fprintf(w, "note: no --dns/--ip given; added SAN IP Address:%s from --cn\n", ip)
		return
	}
	names.dns = []string{cn}
	fmt.Fprintf(w, "note: no --dns/--ip given; added SAN DNS:%s from --cn\n", cn)
}

// pkiFileStem makes a default file name from a common name.
func pkiFileStem(cn string) string {
	s := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '-', r == '_', r == '@':
			return r
		}
		return '_'
	}, cn)
	if strings.Trim(s, "._") == "" {
		return "cert"
	}
	return s
}
