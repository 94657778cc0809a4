package cli

import (
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"mxedge/pki"
)

func newPKIVerifyCmd() *cobra.Command {
	var (
		caPath, purpose, at, name, keyPath string
		untrusted, crls                    []string
	)
	cmd := &cobra.Command{
		Use:   "verify --ca BUNDLE CERT",
		Short: "Verify a certificate chain: trust, purpose, validity, names, revocation, key match",
		Long: `verify checks CERT (a leaf, optionally followed by the intermediates a peer would send) the way
mxedge checks a RadSec or EAP-TLS peer: a path to a certificate in --ca, every certificate within its
validity, the purpose's EKU and key usage, key and signature strength, and, with --crl, revocation.
It prints "CERT: OK" and the chain, or "CERT: FAIL: REASON: detail" and exits non-zero.

REASON is the event reason mxedge logs for a rejected peer: cert-expired, cert-not-yet-valid,
unknown-ca, wrong-eku, weak-key, weak-signature, cert-revoked, revocation-unavailable,
name-mismatch, key-mismatch, cert-invalid.

--crl takes CRL files (PEM or DER), each checked against the CA that signed it. As with
'openssl verify -crl_check', the leaf's issuer must have a current CRL among them; a revoked
certificate anywhere in the chain fails. --at verifies at another instant (RFC 3339), e.g. to see
whether a certificate will still be valid next month. --name checks that a DNS name or IP address is
among the leaf's SANs (what a RadSec client checks of its server, RFC 6614 §2.3). --key checks that a
private key belongs to the leaf.`,
		Example: `  mxedge pki verify --ca lab-ca/ca.pem --purpose client edge-1.pem
  mxedge pki verify --ca org-root.pem --untrusted org-issuing.pem --purpose server --name radius.example.net server.pem
  mxedge pki verify --ca lab-ca/ca.pem --crl lab-ca/ca.crl --at 2027-06-01T00:00:00Z client.pem`,
		Args: pkiArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := requirePKIFlags(pkiReq("ca", caPath)); err != nil {
				return err
			}
			usage, err := pkiUsageFlag("purpose", purpose)
			if err != nil {
				return err
			}
			now := time.Now()
			if at != "" {
				if now, err = time.Parse(time.RFC3339, at); err != nil {
					return pkiUsageErrorf("--at %q: want RFC 3339, e.g. 2027-01-31T12:00:00Z", at)
				}
			}
			clock := func() time.Time { return now }
			certPath := args[0]
			chain, err := pki.LoadCertificates(certPath)
			if err != nil {
				return err
			}
			anchors, err := pki.LoadCertificates(caPath)
			if err != nil {
				return err
			}
			opts := pki.VerifyOptions{Roots: x509.NewCertPool(), Intermediates: x509.NewCertPool(), Usage: usage, DNSName: name, Now: clock}
			for _, c := range anchors {
				opts.Roots.AddCert(c)
			}
			known := append(append([]*x509.Certificate(nil), anchors...), chain...)
			for _, p := range untrusted {
				inter, err := pki.LoadCertificates(p)
				if err != nil {
					return err
				}
				for _, c := range inter {
					opts.Intermediates.AddCert(c)
				}
				known = append(known, inter...)
			}
			if len(crls) > 0 {
				if opts.Revocation, err = pkiCRLChecker(cmd, crls, known, clock); err != nil {
					return err
				}
			}
			w := cmd.OutOrStdout()
			verdict, err := pki.Verify(chain, opts)
			if err == nil && len(crls) > 0 {
				err = pkiLeafCRLCovered(verdict.Chain, crls, now)
			}
			if err == nil && keyPath != "" {
				err = checkPKICertKey(chain, certPath, keyPath)
			}
			if err != nil {
				reason := pki.Reason(err)
				if errors.Is(err, pki.ErrKeyMismatch) {
					reason = "key-mismatch"
				}
				fmt.Fprintf(w, "%s: FAIL: %s: %v\n", certPath, reason, err)
				return fmt.Errorf("%s: verification failed (%s): %w", certPath, reason, err)
			}
			fmt.Fprintf(w, "%s: OK\n", certPath)
			writePKIVerified(w, verdict.Chain, usage, at != "", now, len(crls), keyPath)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&caPath, "ca", "", "trusted CA certificates (PEM bundle or DER)")
	f.StringArrayVar(&untrusted, "untrusted", nil, "intermediate certificates to build the chain with, not trusted (repeatable)")
	f.StringVar(&purpose, "purpose", "", "required purpose: client (clientAuth) or server (serverAuth); default any")
	f.StringArrayVar(&crls, "crl", nil, "CRL file to check revocation against (repeatable)")
	f.StringVar(&at, "at", "", "verify at this time (RFC 3339) instead of now")
	f.StringVar(&name, "name", "", "DNS name or IP address the leaf's SANs must contain")
	f.StringVar(&keyPath, "key", "", "private key that must belong to the leaf")
	return cmd
}

// pkiCRLChecker loads the CRL files through the same Checker the running edge
// uses, so a CRL signed by the wrong key or naming an unknown issuer is
// rejected exactly as it would be there.
func pkiCRLChecker(cmd *cobra.Command, files []string, issuers []*x509.Certificate, now func() time.Time) (*pki.Checker, error) {
	// Soft-fail here: certificates above the leaf whose issuer has no CRL
	// are not failed (openssl -crl_check); pkiLeafCRLCovered enforces the leaf.
	c, err := pki.NewChecker(pki.CheckerOptions{CRLFiles: files, Issuers: issuers, Policy: pki.SoftFail, Now: now})
	if err != nil {
		return nil, err
	}
	c.Refresh(cmd.Context())
	for _, s := range c.Status() {
		if s.Kind == pki.KindCRLFile && s.State == pki.StateUnavailable {
			return nil, fmt.Errorf("pki: --crl %s: %s", s.URL, s.LastError)
		}
	}
	return c, nil
}

// pkiLeafCRLCovered requires a current CRL from the leaf's issuer, like
// `openssl verify -crl_check` (RFC 5280 §6.3: no CRL, no revocation status).
func pkiLeafCRLCovered(chain []*x509.Certificate, files []string, now time.Time) error {
	if len(chain) < 2 {
		return nil // a trust anchor itself: nothing above it issues a CRL
	}
	leaf, issuer := chain[0], chain[1]
	var stale error
	for _, f := range files {
		raw, err := readCRLFile(f)
		if err != nil {
			return err
		}
		crl, err := pki.ParseCRL(raw, issuer)
		if err != nil {
			continue // another issuer's CRL
		}
		if !crl.NextUpdate.IsZero() && !now.Before(crl.NextUpdate) {
			stale = fmt.Errorf("%w: %q: CRL %s expired at %s", pki.ErrRevocationUnavailable, leaf.Subject.CommonName, f, crl.NextUpdate.UTC().Format(time.RFC3339))
			continue
		}
		if now.Before(crl.ThisUpdate) {
			stale = fmt.Errorf("%w: %q: CRL %s not valid before %s", pki.ErrRevocationUnavailable, leaf.Subject.CommonName, f, crl.ThisUpdate.UTC().Format(time.RFC3339))
			continue
		}
		return nil
	}
	if stale != nil {
		return stale
	}
	return fmt.Errorf("%w: %q: no --crl file is signed by its issuer %q", pki.ErrRevocationUnavailable, leaf.Subject.CommonName, issuer.Subject.CommonName)
}

func writePKIVerified(w io.Writer, chain []*x509.Certificate, usage pki.Usage, showTime bool, now time.Time, crls int, keyPath string) {
	if usage != 0 {
		fmt.Fprintf(w, "  %-12s %s\n", "Purpose:", usage)
	}
	if showTime {
		fmt.Fprintf(w, "  %-12s %s\n", "At:", now.UTC().Format(time.RFC3339))
	}
	if crls > 0 {
		fmt.Fprintf(w, "  %-12s not revoked (%d CRL file(s))\n", "Revocation:", crls)
	}
	if keyPath != "" {
		fmt.Fprintf(w, "  %-12s %s matches the certificate\n", "Key:", keyPath)
	}
	fmt.Fprintf(w, "  Chain:\n")
	for i, c := range chain {
		d := pki.Describe(c)
		role := "intermediate"
		switch {
		case i == 0:
			role = "leaf"
		case i == len(chain)-1:
			role = "trust anchor"
		}
		fmt.Fprintf(w, "    %d %s (%s)\n", i, d.Subject, role)
		fmt.Fprintf(w, "      valid %s to %s\n", d.NotBefore.Format(time.RFC3339), d.NotAfter.Format(time.RFC3339))
		fmt.Fprintf(w, "      SHA-256 %s\n", d.SHA256Fingerprint)
	}
}

// readCRLFile reads a CRL file, refusing one larger than pki.MaxFileSize.
func readCRLFile(path string) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	if st.Size() > pki.MaxFileSize {
		return nil, fmt.Errorf("%w: %s", pki.ErrTooLarge, path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	return data, nil
}
