package cli

import (
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"mxedge/edge"
	"mxedge/edge/config"
	"mxedge/edge/mgmt"
)

// check's exit codes (its --help, docs/operations.md, the man page) come from main's mapping:
// config.ErrInvalid and ErrUsage are 2, ExitError carries ExitNotConfigured (78).

// ErrWarnings: check --strict found warnings.
var ErrWarnings = errors.New("check: warnings with --strict")

func newCheckCmd() *cobra.Command {
	var path, baseDir, format, route string
	var strict bool
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Validate the configuration exactly as run would, without binding or dialing",
		Long: `check decodes the configuration strictly, validates every field, reads every secret file,
certificate and key, and validates every component's options as run would (the same code: whatever
run refuses at start, check refuses with the same message), without taking the cache's lock or
binding a socket (so it also runs beside a live daemon).

Each error names the file, line and field, sorted by line; YAML syntax and type errors say what to
write instead. Warnings do not stop mxedge from starting but should be fixed: NAS secrets shorter
than 16 characters or well known (testing123, change-me, …), listen port 0, a client prefix inside
another's. --strict makes warnings fatal.

Relative paths in the file (secret files, certificates, the cache, the control socket) resolve
against the file's directory, or against --base-dir: Ansible's validate: runs check on a temporary
copy, so write  validate: mxedge check --base-dir /etc/mxedge -c %s

-o json or -o yaml prints the result as the mxedge.check.v1 document (docs/operations.md).

--route also prints the route a sample request takes (docs/routing.md), e.g.
  mxedge check --route User-Name=alice@example.edu,Called-Station-Id=AA-BB-CC-DD-EE-FF:eduroam
(keys: User-Name, Called-Station-Id, Calling-Station-Id, Operator-Name, client, src, site,
type=auth|accounting, method=eap|pap|chap|mab).

Exit status:
  0   the configuration is valid: mxedge would start
  2   errors (or warnings with --strict), a missing or unreadable file, or a usage error
  78  not configured: the file sets no NAS client and no upstream (the packaged default)`,
		Example: `  mxedge check                                   # the file run would read
  mxedge check -c /etc/mxedge/mxedge.yaml --strict
  mxedge check --base-dir /etc/mxedge -c /tmp/copy.yaml -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			enc, err := reportEncoder(format)
			if err != nil {
				return err
			}
			path, _, err := mgmt.ConfigPath(mgmt.DefaultStateDir, path, cmd.Flags().Changed("config"))
			if err != nil {
				return err
			}
			r := runCheck(path, config.Options{BaseDir: baseDir}, strict)
			if enc != nil {
				if err := enc(cmd.OutOrStdout(), r.report); err != nil {
					return err
				}
			} else if err := r.text(cmd.OutOrStdout(), cmd.ErrOrStderr()); err != nil {
				return err
			}
			if r.err != nil || !cmd.Flags().Changed("route") {
				return r.err
			}
			return printRoute(cmd, r.cfg, route)
		},
	}
	cmd.Flags().StringVar(&route, "route", "", "print the route a sample request takes: KEY=VALUE,... (see above)")
	cmd.Flags().StringVarP(&path, "config", "c", DefaultConfigPath, "configuration file (default: the cloud configuration of a registered edge, else "+DefaultConfigPath+")")
	cmd.Flags().StringVar(&baseDir, "base-dir", "", "resolve relative paths in the file against DIR instead of the file's directory")
	cmd.Flags().BoolVar(&strict, "strict", false, "fail (exit 2) on warnings too")
	cmd.Flags().StringVarP(&format, "output", "o", "text", "output format: text, json or yaml")
	return cmd
}

// checkResult is what check found: the machine report, and the error that sets the exit code.
type checkResult struct {
	path   string
	report checkReport
	cfg    *config.Config // nil unless it loaded
	err    error
}

// runCheck loads path and runs edge.Check: the steps run takes before it binds anything.
func runCheck(path string, o config.Options, strict bool) checkResult {
	r := checkResult{path: path, report: checkReport{Schema: checkSchema, File: path, Errors: []checkIssue{}, Warnings: []checkIssue{}}}
	if err := config.CheckConfigured(path); err != nil {
		nc := &notConfiguredError{path: path, err: err}
		r.report.NotConfigured = true
		r.report.Errors = append(r.report.Errors, checkIssue{File: path, Message: nc.Error()})
		r.err = &ExitError{Code: ExitNotConfigured, Err: nc}
		return r
	}
	cfg, err := config.LoadWith(path, o)
	if err == nil {
		err = edge.Check(cfg)
	}
	if err != nil {
		r.report.Errors = issues(err)
		r.err = err
		return r
	}
	r.cfg = cfg
	r.report.Valid = true
	r.report.Warnings = issues(cfg.Warnings())
	if strict && len(r.report.Warnings) > 0 {
		r.report.Valid = false
		r.err = fmt.Errorf("%w: %w (%d)", config.ErrInvalid, ErrWarnings, len(r.report.Warnings))
	}
	return r
}

// text prints errors and warnings one a line, then the verdict.
func (r checkResult) text(out, errw io.Writer) error {
	for _, w := range r.report.Warnings {
		fmt.Fprintf(errw, "warning: %s\n", w)
	}
	if r.cfg == nil {
		return nil // main prints the error
	}
	if r.err != nil {
		return nil
	}
	b := r.cfg.Built()
	cl := "off"
	if b.Cluster != nil {
		cl = fmt.Sprintf("on, %d peers to join", len(b.Cluster.Options.Join))
	}
	fmt.Fprintf(out, "%s: OK (%d NAS clients, %d upstreams, radsec listener %s, cluster %s)", r.path, len(b.Clients), len(b.Pool.Upstreams), onOff(b.Listener != nil), cl)
	if n := len(r.report.Warnings); n > 0 {
		fmt.Fprintf(out, "; %d warnings", n)
	}
	_, err := fmt.Fprintln(out)
	return err
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}
