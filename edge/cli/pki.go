package cli

import (
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"mxedge/pki"
)

// newPKICmd returns `mxedge pki`: the operator's certificate toolkit. Every
// subcommand is a thin layer over package pki; this file holds what they
// share (name flags, validity, overwrite refusal, summaries).
func newPKICmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "pki",
		Short: "Create, inspect and verify certificates: lab CA, RadSec/EAP-TLS certificates, CSRs",
		Long: `pki makes and checks the certificates mxedge needs: the RadSec client identity the edge
presents to the cloud NAC, the server certificate of the local RadSec/EAP-TLS listener, and the CA
that signs them (a lab CA made here, or your organization's CA via a CSR).

Keys are written with mode 0600 and never overwritten without --force. Certificates, keys and CSRs
are read as PEM or DER; keys as PKCS#8, PKCS#1 or SEC1.`,
		Args: pkiArgs(cobra.NoArgs),
		RunE: pkiGroupHelp,
	}
	cmd.AddCommand(
		newPKICACmd(),
		newPKIIssueCmd(),
		newPKICSRCmd(),
		newPKISignCmd(),
		newPKIShowCmd(),
		newPKIVerifyCmd(),
	)
	return cmd
}

// pkiGroupHelp runs for a command that only groups subcommands: alone it
// prints help; with an unknown subcommand pkiArgs has already failed.
func pkiGroupHelp(cmd *cobra.Command, _ []string) error {
	return cmd.Help()
}

// pkiUsageErrorf marks a wrong invocation (exit code 2 in main).
func pkiUsageErrorf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrUsage, fmt.Sprintf(format, args...))
}

// pkiArgs wraps a cobra positional-argument check so its error is a usage
// error like flag errors are.
func pkiArgs(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := check(cmd, args); err != nil {
			return fmt.Errorf("%w: %w", ErrUsage, err)
		}
		return nil
	}
}

// requirePKIFlags returns a usage error naming the first empty required flag.
func requirePKIFlags(flags ...struct{ name, value string }) error {
	for _, f := range flags {
		if f.value == "" {
			return pkiUsageErrorf("--%s is required", f.name)
		}
	}
	return nil
}

// req pairs a flag name with its value for requirePKIFlags.
func pkiReq(name, value string) struct{ name, value string } {
	return struct{ name, value string }{name, value}
}

// pkiOverwriteError refuses to replace an existing file. It matches
// pki.ErrExists and fs.ErrExist so callers test it with errors.Is.
type pkiOverwriteError struct{ path string }

func (e *pkiOverwriteError) Error() string {
	return fmt.Sprintf("pki: %s already exists; pass --force to overwrite it", e.path)
}

func (e *pkiOverwriteError) Is(target error) bool {
	return target == pki.ErrExists || target == fs.ErrExist
}

// refusePKIOverwrite checks every output before anything is generated or
// written, so a refusal leaves no half-made key/certificate pair behind.
func refusePKIOverwrite(force bool, paths ...string) error {
	seen := map[string]bool{}
	for _, p := range paths {
		if seen[p] {
			return pkiUsageErrorf("%s is given as two different outputs", p)
		}
		seen[p] = true
		if force {
			continue
		}
		if _, err := os.Lstat(p); err == nil {
			return &pkiOverwriteError{p}
		}
	}
	return nil
}

// pkiWriteErr turns the library's refusal (a file created between our check
// and the write) into the same message that names the flag.
func pkiWriteErr(path string, err error) error {
	if errors.Is(err, pki.ErrExists) {
		return &pkiOverwriteError{path}
	}
	return err
}

// pkiKeyType validates --key-type.
func pkiKeyType(s string) (pki.KeyType, error) {
	kt := pki.KeyType(s)
	if err := kt.Validate(); err != nil {
		return "", pkiUsageErrorf("--key-type %q: want one of %s", s, pkiKeyTypeList())
	}
	return kt, nil
}

func pkiKeyTypeList() string {
	var names []string
	for _, k := range pki.KeyTypes() {
		names = append(names, string(k))
	}
	return strings.Join(names, ", ")
}

// validity converts --days to a duration.
func pkiValidity(days int) (time.Duration, error) {
	if days <= 0 {
		return 0, pkiUsageErrorf("--days must be positive, got %d", days)
	}
	return time.Duration(days) * 24 * time.Hour, nil
}

// pkiNameFlags are the subjectAltName flags shared by issue and csr.
type pkiNameFlags struct {
	dns, emails, upns []string
	ips               []net.IP
}

func (n *pkiNameFlags) register(fs *pflag.FlagSet, withUPN bool) {
	fs.StringSliceVar(&n.dns, "dns", nil, "DNS name SAN (repeatable or comma-separated)")
	fs.IPSliceVar(&n.ips, "ip", nil, "IP address SAN (repeatable or comma-separated)")
	fs.StringSliceVar(&n.emails, "email", nil, "email (rfc822Name) SAN (repeatable)")
	if withUPN {
		fs.StringSliceVar(&n.upns, "upn", nil, "User Principal Name otherName SAN, as Active Directory puts in EAP-TLS client certificates (repeatable)")
	}
}

func (n *pkiNameFlags) empty() bool {
	return len(n.dns)+len(n.ips)+len(n.emails)+len(n.upns) == 0
}

// checkPKICertKey reports a certificate/key mismatch naming both files.
func checkPKICertKey(certs []*x509.Certificate, certPath, keyPath string) error {
	key, err := pki.LoadKey(keyPath)
	if err != nil {
		return err
	}
	_, err = pki.KeyPair(certs, key, certPath, keyPath)
	return err
}

// pkiIssuingChain is what a leaf signed by ca presents after itself: the
// issuing CA and its intermediates, without the root (RFC 5246 §7.4.2: the
// root may be omitted because the peer must already have it).
func pkiIssuingChain(ca *pki.CA) []*x509.Certificate {
	if len(ca.Chain) == 0 {
		return nil
	}
	return append([]*x509.Certificate{ca.Cert}, ca.Chain[:len(ca.Chain)-1]...)
}

// writePKISummary prints the lines an operator checks after creating a
// certificate: who it is, what it may be used for, when it expires and the
// fingerprint to compare with what the peer shows.
func writePKISummary(w io.Writer, c *x509.Certificate) {
	d := pki.Describe(c)
	row := func(label, v string) {
		if v == "" {
			v = "-"
		}
		fmt.Fprintf(w, "  %-20s %s\n", label+":", v)
	}
	row("Subject", d.Subject)
	row("Issuer", d.Issuer)
	row("Subject Alt Names", d.SANs.String())
	row("Extended Key Usage", strings.Join(d.ExtKeyUsage, ", "))
	row("Valid", d.NotBefore.Format(time.RFC3339)+" to "+d.NotAfter.Format(time.RFC3339))
	key := fmt.Sprintf("%s %d bit", d.KeyAlgorithm, d.KeyBits)
	row("Public Key", key)
	row("SHA-256 Fingerprint", d.SHA256Fingerprint)
}
