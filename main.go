// Command mxedge is an on-prem authentication edge for network access control: a RADIUS server for
// third-party NAS devices that forwards over RadSec to a cloud NAC and survives WAN outages.
package main

import (
	_ "embed"
	"errors"
	"fmt"
	"os"

	"mxedge/edge/cli"
	"mxedge/edge/config"
)

// Stamped by the Makefile with -ldflags -X.
var (
	version = ""
	commit  = ""
	date    = ""
)

// installGuide is docs/install.md, the guide the unit's Documentation= names: `mxedge install`
// places it where the .deb does (install.GuidePath).
//
//go:embed docs/install.md
var installGuide []byte

// Exit codes: 0 success, 1 runtime failure, 2 invalid configuration or usage, 10–18 registration
// failures (see mxedge register --help).
func main() {
	cmd := cli.New(cli.BuildInfo{Version: version, Commit: commit, Date: date, InstallGuide: installGuide})
	if err := cmd.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "mxedge:", err)
		// Registration failures carry their own exit codes (docs/management.md); checked first
		// because a rejected cloud configuration also matches config.ErrInvalid.
		var ee *cli.ExitError
		if errors.As(err, &ee) {
			os.Exit(ee.Code)
		}
		switch {
		case errors.Is(err, config.ErrInvalid), errors.Is(err, cli.ErrUsage):
			os.Exit(2)
		default:
			os.Exit(1)
		}
	}
}
