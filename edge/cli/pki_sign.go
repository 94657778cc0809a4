package cli

import (
	"crypto/x509"
	"fmt"

	"github.com/spf13/cobra"

	"mxedge/pki"
)

func newPKISignCmd() *cobra.Command {
	var (
		ca        pkiCAFlags
		csrPath   string
		usageName string
		out       string
		days      int
		force     bool
	)
	cmd := &cobra.Command{
		Use:   "sign --ca-cert FILE --ca-key FILE --csr FILE --usage server|client --out FILE",
		Short: "Sign a certificate request with a CA (a lab stand-in for the organization's CA)",
		Long: `sign issues a certificate for a CSR made by 'mxedge pki csr' (or any PKCS#10 request). The
CSR's signature is checked; its subject and SANs (DNS, IP, email, UPN) are copied; the EKU comes from
--usage, never from the request. The output holds the leaf followed by the issuing chain.`,
		Example: `  mxedge pki sign --ca-cert lab-ca/ca.pem --ca-key lab-ca/ca.key --csr edge-1.csr --usage client --out edge-1.pem`,
		Args:    pkiArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requirePKIFlags(pkiReq("csr", csrPath), pkiReq("usage", usageName), pkiReq("out", out)); err != nil {
				return err
			}
			usage, err := pkiUsageFlag("usage", usageName)
			if err != nil {
				return err
			}
			if usage == 0 {
				return pkiUsageErrorf("--usage must be server or client")
			}
			v, err := pkiValidity(days)
			if err != nil {
				return err
			}
			if err := refusePKIOverwrite(force, out); err != nil {
				return err
			}
			authority, err := ca.load()
			if err != nil {
				return err
			}
			csr, err := pki.LoadCSR(csrPath)
			if err != nil {
				return err
			}
			crl, ocsp := ca.revocationURLs(authority)
			cert, err := authority.SignCSR(csr, pki.IssueOptions{Usage: usage, Validity: v, CRLURLs: crl, OCSPURLs: ocsp})
			if err != nil {
				return err
			}
			chain := append([]*x509.Certificate{cert}, pkiIssuingChain(authority)...)
			if err := pki.WriteCertificates(out, force, chain...); err != nil {
				return pkiWriteErr(out, err)
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "Signed %s certificate\n", usage)
			fmt.Fprintf(w, "  %-20s %s (leaf + %d issuing CA certificate(s))\n", "Certificate:", out, len(chain)-1)
			writePKISummary(w, cert)
			return nil
		},
	}
	f := cmd.Flags()
	ca.register(f)
	f.StringVar(&csrPath, "csr", "", "certificate request (PEM or DER)")
	f.StringVar(&usageName, "usage", "", "server or client (EKU serverAuth or clientAuth)")
	f.StringVar(&out, "out", "", "certificate chain output")
	f.IntVar(&days, "days", int(pki.DefaultCertValidity.Hours()/24), "validity in days (clipped to the CA's)")
	f.BoolVar(&force, "force", false, "overwrite an existing --out file")
	return cmd
}

// pkiUsageFlag parses server/client (and openssl's sslserver/sslclient);
// "" is 0, no purpose.
func pkiUsageFlag(flag, s string) (pki.Usage, error) {
	switch s {
	case "":
		return 0, nil
	case "server", "sslserver":
		return pki.UsageServer, nil
	case "client", "sslclient":
		return pki.UsageClient, nil
	}
	return 0, pkiUsageErrorf("--%s %q: want server or client", flag, s)
}
