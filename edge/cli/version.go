package cli

import (
	"fmt"
	"io"
	"runtime"

	"github.com/spf13/cobra"
)

// versionDoc is the schema mxedge.version.v1 (docs/output.md).
type versionDoc struct {
	Schema    string `json:"schema"`
	Version   string `json:"version"`
	Commit    string `json:"commit"`
	BuiltAt   string `json:"built_at"`
	GoVersion string `json:"go_version"`
	OS        string `json:"os"`
	Arch      string `json:"arch"`
}

func versionOf(info BuildInfo) versionDoc {
	v := info.Version
	if v == "" {
		v = "dev"
	}
	return versionDoc{Schema: "mxedge.version.v1", Version: v, Commit: orUnknown(info.Commit), BuiltAt: orUnknown(info.Date),
		GoVersion: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH}
}

// versionText is what `mxedge version` and `mxedge --version` print.
func versionText(info BuildInfo) string {
	d := versionOf(info)
	return fmt.Sprintf("mxedge %s\ncommit %s\nbuilt %s\n%s %s/%s\n", d.Version, d.Commit, d.BuiltAt, d.GoVersion, d.OS, d.Arch)
}

func newVersionCmd(info BuildInfo) *cobra.Command {
	var o outputFlag
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the version, commit, build date, Go version and platform",
		Args:  cacheArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			format, err := o.get()
			if err != nil {
				return err
			}
			return writeVersion(cmd.OutOrStdout(), format, info)
		},
	}
	addOutputFlag(cmd, &o, false)
	return cmd
}

func writeVersion(w io.Writer, format string, info BuildInfo) error {
	if format == formatText {
		_, err := io.WriteString(w, versionText(info))
		return err
	}
	return writeDoc(w, format, versionOf(info))
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}
