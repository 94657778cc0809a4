package cli

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"mxedge/pki"
)

func newPKICACmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ca",
		Short: "Manage a lab or small-organization certificate authority",
		Args:  pkiArgs(cobra.NoArgs),
		RunE:  pkiGroupHelp,
	}
	cmd.AddCommand(newPKICAInitCmd())
	return cmd
}

func newPKICAInitCmd() *cobra.Command {
	var (
		out, cn, org, keyType string
		days                  int
		crlURLs, ocspURLs     []string
		force                 bool
	)
	cmd := &cobra.Command{
		Use:   "init --out DIR",
		Short: "Create a self-signed root CA (DIR/ca.pem, DIR/ca.key)",
		Long: `init creates a self-signed root CA for a lab or a small organization: DIR/ca.pem (the
certificate, which every peer that must trust certificates you issue needs) and DIR/ca.key (the
signing key, mode 0600: keep it off the edge in production). ECDSA P-256 by default.

--crl-url and --ocsp-url are written into the CA certificate and, unless overridden, into every
certificate 'mxedge pki issue' and 'mxedge pki sign' make with this CA: they say where relying parties
fetch this CA's revocation data.`,
		Example: `  mxedge pki ca init --out ./lab-ca --cn "Example Lab CA" --org Example
  mxedge pki ca init --out ./lab-ca --key-type rsa-3072 --days 1825 --crl-url http://pki.example/lab.crl`,
		Args: pkiArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requirePKIFlags(pkiReq("out", out), pkiReq("cn", cn)); err != nil {
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
			certPath, keyPath := filepath.Join(out, "ca.pem"), filepath.Join(out, "ca.key")
			if err := refusePKIOverwrite(force, certPath, keyPath); err != nil {
				return err
			}
			if err := os.MkdirAll(out, 0o700); err != nil {
				return fmt.Errorf("pki: %w", err)
			}
			ca, err := pki.NewCA(pki.CAOptions{
				CommonName: cn, Organization: org, KeyType: kt, Validity: v,
				CRLURLs: crlURLs, OCSPURLs: ocspURLs,
			})
			if err != nil {
				return err
			}
			// Key first: a certificate without its key is useless, a key
			// without its certificate is only a retry with --force away.
			if err := pki.WriteKey(keyPath, ca.Key, force); err != nil {
				return pkiWriteErr(keyPath, err)
			}
			if err := pki.WriteCertificates(certPath, force, ca.Cert); err != nil {
				return pkiWriteErr(certPath, err)
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "Created root CA\n")
			fmt.Fprintf(w, "  %-20s %s\n", "Certificate:", certPath)
			fmt.Fprintf(w, "  %-20s %s (mode 0600; keep it secret and backed up)\n", "Private Key:", keyPath)
			writePKISummary(w, ca.Cert)
			fmt.Fprintf(w, `
Next steps:
  1. Issue the edge's RadSec client certificate:
       mxedge pki issue client --ca-cert %[1]s --ca-key %[2]s --cn edge-1.example.net \
         --dns edge-1.example.net --out-cert edge-1.pem --out-key edge-1.key
  2. Issue the local RadSec/EAP-TLS server certificate (SANs must match what NAS devices dial):
       mxedge pki issue server --ca-cert %[1]s --ca-key %[2]s --cn radius.example.net \
         --dns radius.example.net --ip 192.0.2.10 --out-cert server.pem --out-key server.key
  3. Install %[1]s (the certificate only, never the key) as the trusted CA on every peer that must
     accept these certificates, and compare the SHA-256 fingerprint above with what the peer shows.
`, certPath, keyPath)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&out, "out", "", "directory for ca.pem and ca.key (created if missing)")
	f.StringVar(&cn, "cn", "mxedge Lab CA", "CA common name")
	f.StringVar(&org, "org", "", "CA organization (O)")
	f.StringVar(&keyType, "key-type", string(pki.DefaultKeyType), "key type: "+pkiKeyTypeList())
	f.IntVar(&days, "days", int(pki.DefaultCAValidity.Hours()/24), "validity in days")
	f.StringArrayVar(&crlURLs, "crl-url", nil, "CRL distribution point URL for certificates of this CA (repeatable)")
	f.StringArrayVar(&ocspURLs, "ocsp-url", nil, "OCSP responder URL for certificates of this CA (repeatable)")
	f.BoolVar(&force, "force", false, "overwrite existing ca.pem and ca.key")
	return cmd
}
