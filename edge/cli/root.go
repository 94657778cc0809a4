// Package cli builds mxedge's command tree: one file per subcommand, every command RunE-only and
// writing through cmd.OutOrStdout so tests drive it in-process with SetArgs.
package cli

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"
)

// BuildInfo is stamped into the binary at build time.
type BuildInfo struct {
	Version string
	Commit  string
	Date    string
	// InstallGuide is docs/install.md, embedded by main, which `mxedge install` places where the
	// unit's Documentation= points.
	InstallGuide []byte
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
		Version:       versionText(info),
	}
	root.SetVersionTemplate("{{.Version}}")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return fmt.Errorf("%w: %w", ErrUsage, err)
	})
	root.AddCommand(
		newRunCmd(info),
		newCheckCmd(),
		newVersionCmd(info),
		newPKICmd(),
		newCacheCmd(),
		newInstallCmd(info),
		newUninstallCmd(),
		newRegisterCmdWith(info),
		newStatusCmd(),
		newEventsCmd(),
		newClientsCmd(),
		newCoACmd(),
		newSessionsCmd(),
		newTestCmd(),
		newDoctorCmd(),
		newGenManCmd(),
		newPasswdCmd(),
		newBackupCmd(info),
		newRestoreCmd(),
	)
	return root
}
