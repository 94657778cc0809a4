package cli

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"mxedge/edge/config"
	"mxedge/edge/mgmt"
	"mxedge/pki"
)

// ExitError carries the exit code main should use for a failure that has its own (register's
// failures: docs/management.md, "Exit codes"). main checks it before config.ErrInvalid and
// ErrUsage: errors.As(err, &exitErr) → os.Exit(exitErr.Code).
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string { return e.Err.Error() }
func (e *ExitError) Unwrap() error { return e.Err }

// Exit codes of `mxedge register` (0 success, 1 other failure, 2 usage).
const (
	ExitRegistered     = 10 // already registered: nothing done (use --force)
	ExitInvalidCode    = 11 // the controller does not know the code
	ExitExpiredCode    = 12 // the code has expired: ask for a new one
	ExitUsedCode       = 13 // the code was already used
	ExitUnreachable    = 14 // no answer from the controller (DNS, connect, timeout, 5xx)
	ExitTLS            = 15 // TLS failure: untrusted or expired controller certificate, wrong --ca
	ExitClockSkew      = 16 // the local clock is off: fix NTP first
	ExitConfigRejected = 17 // the controller's configuration does not validate
	ExitProtocol       = 18 // the controller answered something API v1 does not define
)

// registerExitCodes maps mgmt's sentinels to exit codes, first match wins.
var registerExitCodes = []struct {
	err  error
	code int
}{
	{mgmt.ErrRegistered, ExitRegistered},
	{mgmt.ErrInvalidCode, ExitInvalidCode},
	{mgmt.ErrExpiredCode, ExitExpiredCode},
	{mgmt.ErrUsedCode, ExitUsedCode},
	{mgmt.ErrClockSkew, ExitClockSkew},
	{mgmt.ErrTLS, ExitTLS},
	{mgmt.ErrUnreachable, ExitUnreachable},
	{mgmt.ErrConfigRejected, ExitConfigRejected},
	{mgmt.ErrProtocol, ExitProtocol},
}

func registerExit(err error) error {
	for _, m := range registerExitCodes {
		if errors.Is(err, m.err) {
			return &ExitError{Code: m.code, Err: err}
		}
	}
	return err
}

// newRegisterCmdWith is `mxedge register`; it reports the stamped BuildInfo to the controller.
func newRegisterCmdWith(info BuildInfo) *cobra.Command {
	var (
		code, cloud, caFile, stateDir string
		force                         bool
	)
	cmd := &cobra.Command{
		Use:   "register --registration-code CODE [--cloud URL] [--ca FILE]",
		Short: "Register this edge with its controller and fetch its certificate and configuration",
		Long: `register onboards the edge: it checks the controller (HTTPS, its certificate, the clock),
generates the edge key and a certificate request, presents the single-use registration code with
the request and the host's facts (hostname, version, management IP and MAC), and writes what the
controller returns into the state directory: edge.key (0600), edge.crt, ca.pem, cloud.yaml (the
complete configuration the daemon runs) and, last, the regfile mxedge.reg (0600). Everything is
written or nothing is. A registered edge refuses to register again without --force.

Exit codes: 10 already registered, 11 invalid code, 12 expired code, 13 code already used,
14 controller unreachable, 15 TLS failure, 16 clock skew, 17 configuration rejected,
18 unexpected answer. See docs/management.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if code == "" {
				return fmt.Errorf("%w: --registration-code is required", ErrUsage)
			}
			if cloud == "" {
				// Re-registering (--force) keeps the controller it was registered with.
				reg, err := mgmt.LoadRegistration(mgmt.RegfilePath(stateDir))
				if err != nil {
					return fmt.Errorf("%w: --cloud is required (no controller is preset)", ErrUsage)
				}
				cloud = reg.Cloud
			}
			var ca []byte
			if caFile != "" {
				certs, err := pki.LoadCertificates(caFile)
				if err != nil {
					return fmt.Errorf("--ca: %w", err)
				}
				ca = pki.EncodeCertificates(certs...)
			}
			res, err := mgmt.Register(cmd.Context(), mgmt.RegisterOptions{
				Code:     code,
				Cloud:    cloud,
				CA:       ca,
				StateDir: stateDir,
				Force:    force,
				Version:  info.Version,
				// Exactly what run and check will do with the file: config.Parse reads the
				// certificate, key and CA bundle the document names, here the staged ones.
				ValidateConfig: func(path string, doc []byte) error {
					_, err := config.Parse(path, doc)
					return err
				},
			})
			if err != nil {
				return registerExit(err)
			}
			r := res.Registration
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "edge id %s at %s\n", r.EdgeID, r.Cloud)
			fmt.Fprintf(out, "certificate %s, key %s, ca bundle %s\n", r.Certificate, r.Key, r.CABundle)
			fmt.Fprintf(out, "configuration %s (%d radsec upstreams)\n", r.Config, len(res.Upstreams))
			_, err = fmt.Fprintf(out, "registration finished successfully (regfile at %s)\n", res.Regfile)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&code, "registration-code", "", "single-use registration code from the controller (required)")
	f.StringVar(&cloud, "cloud", "", "controller base URL, https://host[:port] (default: the one of an existing registration)")
	f.StringVar(&caFile, "ca", "", "PEM CA the controller's certificate must chain to (default: the system roots)")
	f.StringVar(&stateDir, "state-dir", mgmt.DefaultStateDir, "where the key, certificates, cloud configuration and regfile go")
	f.BoolVar(&force, "force", false, "register again, replacing the existing registration")
	return cmd
}
