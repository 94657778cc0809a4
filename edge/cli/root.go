// Package cli builds mxedge's command tree: one file per subcommand, every command RunE-only and
// writing through cmd.OutOrStdout so tests drive it in-process with SetArgs.
package cli

import (
	"errors"
	"fmt"
	"runtime"

	"github.com/spf13/cobra"
)

// BuildInfo is stamped into the binary at build time.
type BuildInfo struct {
	Version string
	Commit  string
	Date    string
}

// ErrUsage marks errors in how mxedge was called (exit code 2).
var ErrUsage = errors.New("usage")

// DefaultConfigPath is where the packaged service reads its configuration.
const DefaultConfigPath = "/etc/mxedge/mxedge.yaml"

// New returns the root command.
func New(info BuildInfo) *cobra.Command {
	root := &cobra.Command{
		Use:   "mxedge",
		Short: "RADIUS/RadSec authentication edge with site survivability",
		Long: `mxedge is a NAC edge for third-party switches, WLCs and APs: it answers RADIUS on UDP 1812/1813,
forwards every request over RadSec (RADIUS over TLS, RFC 6614) to a cloud NAC, caches authorized
clients, and authorizes locally when the WAN is down.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return fmt.Errorf("%w: %w", ErrUsage, err)
	})
	root.AddCommand(
		newRunCmd(info),
		newCheckCmd(),
		newVersionCmd(info),
		newPKICmd(),
		newCacheCmd(),
		newInstallCmd(),
		newUninstallCmd(),
		newRegisterCmdWith(info),
		newStatusCmd(),
		newEventsCmd(),
		newClientsCmd(),
		newSessionsCmd(),
		newIdentityCmd(),
		newTestCmd(),
		newDoctorCmd(),
		newGenManCmd(),
		newPasswdCmd(),
	)
	return root
}

func newVersionCmd(info BuildInfo) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version, commit, Go version and platform",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v, c := info.Version, info.Commit
			if v == "" {
				v = "dev"
			}
			if c == "" {
				c = "unknown"
			}
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "mxedge %s\ncommit %s\nbuilt %s\n%s %s/%s\n",
				v, c, orUnknown(info.Date), runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return err
		},
	}
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}
