package cli

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"mxedge/install"
)

func newInstallCmd(info BuildInfo) *cobra.Command {
	opts := install.Options{Guide: info.InstallGuide}
	cmd := &cobra.Command{
		Use:   "install",
		Short: "Install mxedge as a systemd service (binary, unit, user, default config)",
		Long: `install copies this binary to /usr/bin/mxedge and installs the systemd unit
(/usr/lib/systemd/system/mxedge.service), the sysusers.d and tmpfiles.d snippets, the install
guide its Documentation= names (/usr/share/doc/mxedge/install.md) and a default
/etc/mxedge/mxedge.yaml (never overwriting an existing one). On the running system (--root /) it
then creates the mxedge user, applies the tmpfiles snippet and, where systemd runs, enables and
starts the service. With --root DIR it only places files under DIR (for images and tests).
Running it again changes only what is out of date. It prints one line per action.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if opts.Binary == "" {
				exe, err := os.Executable()
				if err != nil {
					return fmt.Errorf("install: locate this binary: %w", err)
				}
				if exe, err = filepath.EvalSymlinks(exe); err != nil {
					return fmt.Errorf("install: locate this binary: %w", err)
				}
				opts.Binary = exe
			}
			opts.Out = cmd.OutOrStdout()
			return install.Install(cmd.Context(), opts)
		},
	}
	cmd.Flags().StringVar(&opts.Root, "root", "/", "install under this directory instead of the running system")
	cmd.Flags().StringVar(&opts.Binary, "binary", "", "mxedge executable to install (default: this one)")
	cmd.Flags().BoolVar(&opts.NoEnable, "no-enable", false, "do not enable or start the service")
	return cmd
}

func newUninstallCmd() *cobra.Command {
	var opts install.Options
	cmd := &cobra.Command{
		Use:   "uninstall",
		Short: "Stop and remove the mxedge service; keep configuration and data unless --purge",
		Long: `uninstall stops and disables the service (where systemd runs) and removes the binary, unit and
snippets that install placed. /etc/mxedge and /var/lib/mxedge (certificates, keys, cache) stay unless
--purge, which also removes them and the mxedge user. Running it again is harmless.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts.Out = cmd.OutOrStdout()
			return install.Uninstall(cmd.Context(), opts)
		},
	}
	cmd.Flags().StringVar(&opts.Root, "root", "/", "uninstall from this directory instead of the running system")
	cmd.Flags().BoolVar(&opts.Purge, "purge", false, "also remove /etc/mxedge, /var/lib/mxedge and the mxedge user")
	return cmd
}
