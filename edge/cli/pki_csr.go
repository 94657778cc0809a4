package cli

import (
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"mxedge/pki"
)

func newPKICSRCmd() *cobra.Command {
	var (
		names                 pkiNameFlags
		keyPath, out, keyType string
		cn, org, ou, country  string
		force                 bool
	)
	cmd := &cobra.Command{
		Use:   "csr --key FILE --cn NAME --out FILE",
		Short: "Create the edge's key (if missing) and a CSR for the organization's CA to sign",
		Long: `csr writes a PKCS#10 certificate request (RFC 2986) for your organization's CA. The private key
stays on the edge: --key is read if it exists, otherwise generated (--key-type) and written with mode
0600; an existing key is never replaced. Send only the CSR to the CA; install the certificate it
returns next to the key, and check the pair with 'mxedge pki verify --key'.

The public key fingerprint printed here is the SHA-256 of the SubjectPublicKeyInfo; the certificate
the CA returns carries the same public key.`,
		Example: `  mxedge pki csr --key /etc/mxedge/tls/edge.key --cn edge-1.example.net --dns edge-1.example.net --out edge-1.csr`,
		Args:    pkiArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requirePKIFlags(pkiReq("key", keyPath), pkiReq("out", out)); err != nil {
				return err
			}
			if cn == "" && names.empty() {
				return pkiUsageErrorf("--cn or a SAN flag (--dns, --ip, --email, --upn) is required")
			}
			kt, err := pkiKeyType(keyType)
			if err != nil {
				return err
			}
			if err := refusePKIOverwrite(force, out); err != nil {
				return err
			}
			if keyPath == out {
				return pkiUsageErrorf("--key and --out are the same file")
			}
			key, created, err := loadOrCreatePKIKey(keyPath, kt)
			if err != nil {
				return err
			}
			csr, data, err := pki.NewCSR(key, pki.CSROptions{
				CommonName: cn, Organization: org, OrganizationalUnit: ou, Country: country,
				DNSNames: names.dns, IPAddresses: names.ips, Emails: names.emails, UPNs: names.upns,
			})
			if err != nil {
				return err
			}
			if err := pki.WriteFileAtomic(out, data, pki.CertFileMode, force); err != nil {
				return pkiWriteErr(out, err)
			}
			w := cmd.OutOrStdout()
			state := "existing key, kept"
			if created {
				state = "created, mode 0600"
			}
			alg, bits := pki.PublicKeyInfo(key.Public())
			sans := pki.SANs{DNSNames: names.dns, IPAddresses: names.ips, Emails: names.emails, UPNs: names.upns}
			spki := sha256.Sum256(csr.RawSubjectPublicKeyInfo)
			fmt.Fprintf(w, "Wrote certificate request\n")
			fmt.Fprintf(w, "  %-20s %s\n", "Request:", out)
			fmt.Fprintf(w, "  %-20s %s (%s)\n", "Private Key:", keyPath, state)
			fmt.Fprintf(w, "  %-20s %s\n", "Subject:", pki.Describe(&x509.Certificate{Subject: csr.Subject}).Subject)
			fmt.Fprintf(w, "  %-20s %s\n", "Subject Alt Names:", pkiDash(sans.String()))
			fmt.Fprintf(w, "  %-20s %s %d bit\n", "Public Key:", alg, bits)
			fmt.Fprintf(w, "  %-20s %s\n", "Public Key SHA-256:", pkiColonHex(spki[:]))
			fmt.Fprintf(w, "\nSend %s to your CA. Keep %s on this edge: it never leaves it.\n", out, keyPath)
			return nil
		},
	}
	f := cmd.Flags()
	names.register(f, true)
	f.StringVar(&keyPath, "key", "", "private key: read if it exists, else created with mode 0600")
	f.StringVar(&keyType, "key-type", string(pki.DefaultKeyType), "key type when the key is created: "+pkiKeyTypeList())
	f.StringVar(&cn, "cn", "", "subject common name")
	f.StringVar(&org, "org", "", "subject organization (O)")
	f.StringVar(&ou, "ou", "", "subject organizational unit (OU)")
	f.StringVar(&country, "country", "", "subject country (C, two letters)")
	f.StringVar(&out, "out", "", "CSR output (PEM)")
	f.BoolVar(&force, "force", false, "overwrite an existing --out file (the key is never replaced)")
	return cmd
}

// loadOrCreatePKIKey reads path, or generates a key and writes it with mode
// 0600 when path does not exist. It never replaces an existing key.
func loadOrCreatePKIKey(path string, kt pki.KeyType) (crypto.Signer, bool, error) {
	if _, err := os.Stat(path); err == nil {
		key, err := pki.LoadKey(path)
		return key, false, err
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, false, fmt.Errorf("pki: %w", err)
	}
	key, err := pki.GenerateKey(kt)
	if err != nil {
		return nil, false, err
	}
	if err := pki.WriteKey(path, key, false); err != nil {
		return nil, false, pkiWriteErr(path, err)
	}
	return key, true, nil
}

func pkiDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// pkiColonHex formats a digest like openssl's fingerprints.
func pkiColonHex(b []byte) string {
	h := strings.ToUpper(hex.EncodeToString(b))
	var sb strings.Builder
	for i := 0; i < len(h); i += 2 {
		if i > 0 {
			sb.WriteByte(':')
		}
		sb.WriteString(h[i : i+2])
	}
	return sb.String()
}
