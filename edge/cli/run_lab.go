package cli

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/spf13/cobra"

	"mxedge/edge/lab"
)

// labFlags are run's --dev options: where the lab listens.
type labFlags struct {
	auth, acct, cloud string
	free              bool
}

func (f *labFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.auth, "auth-listen", lab.DefaultAuth.String(), "with --dev: RADIUS authentication address (port 0: a free port)")
	fl.StringVar(&f.acct, "acct-listen", lab.DefaultAcct.String(), "with --dev: RADIUS accounting address (port 0: a free port)")
	fl.StringVar(&f.cloud, "cloud-listen", lab.DefaultCloud.String(), "with --dev: the lab cloud's RadSec address (port 0: a free port)")
	fl.BoolVar(&f.free, "free-ports", false, "with --dev: listen on free ports (printed in the banner) instead of 1812 and 1813")
}

// check refuses lab flags without --dev, and --free-ports with an explicit address.
func (f *labFlags) check(cmd *cobra.Command, dev bool) error {
	for _, name := range []string{"auth-listen", "acct-listen", "cloud-listen", "free-ports"} {
		if !cmd.Flags().Changed(name) {
			continue
		}
		if !dev {
			return fmt.Errorf("%w: --%s needs --dev", ErrUsage, name)
		}
		if f.free && name != "free-ports" {
			return fmt.Errorf("%w: --free-ports and --%s exclude each other", ErrUsage, name)
		}
	}
	for _, a := range []struct{ flag, v string }{{"auth-listen", f.auth}, {"acct-listen", f.acct}, {"cloud-listen", f.cloud}} {
		if _, err := netip.ParseAddrPort(a.v); err != nil {
			return fmt.Errorf("%w: --%s %q: want IP:PORT, e.g. 127.0.0.1:11812: %w", ErrUsage, a.flag, a.v, err)
		}
	}
	return nil
}

func (f *labFlags) options() lab.Options {
	o := lab.Options{
		Auth:  netip.MustParseAddrPort(f.auth),
		Acct:  netip.MustParseAddrPort(f.acct),
		Cloud: netip.MustParseAddrPort(f.cloud),
	}
	if f.free {
		o.Auth = netip.AddrPortFrom(o.Auth.Addr(), 0)
		o.Acct = netip.AddrPortFrom(o.Acct.Addr(), 0)
		o.Cloud = netip.AddrPortFrom(o.Cloud.Addr(), 0)
		o.CoA = netip.AddrPortFrom(lab.DefaultCoA.Addr(), 0)
	}
	return o
}

// explain adds to a taken lab port how to pick others, with commands that run as printed.
func (f *labFlags) explain(err error) error {
	var pe *lab.PortInUseError
	if !errors.As(err, &pe) {
		return err
	}
	o := f.options()
	var flags string
	if pe.Role == lab.RoleCloud {
		flags = fmt.Sprintf("--cloud-listen %s", netip.AddrPortFrom(o.Cloud.Addr(), 0))
	} else {
		// A RADIUS server holding one of the pair usually holds both: move both.
		flags = fmt.Sprintf("--auth-listen %s --acct-listen %s", shifted(o.Auth), shifted(o.Acct))
	}
	bin := selfCommand()
	return fmt.Errorf("%w\n  stop it, or pick other addresses:  %s run --dev %s\n  or let the lab pick free ports:    %s run --dev --free-ports",
		err, bin, flags, bin)
}

// shifted suggests another port for a: 1812 becomes 11812, 1813 11813; a port that maps to itself
// or is 0 becomes 0 (a free one).
func shifted(a netip.AddrPort) netip.AddrPort {
	p := 10000 + a.Port()%10000
	if a.Port() == 0 || p == a.Port() {
		p = 0
	}
	return netip.AddrPortFrom(a.Addr(), p)
}

// selfCommand is how a shell reaches this binary: "mxedge" when that is what PATH finds, else its
// absolute path (os.Executable), so a printed command runs as printed wherever it is pasted.
func selfCommand() string {
	exe, err := os.Executable()
	if err != nil {
		return "mxedge"
	}
	if p, err := exec.LookPath("mxedge"); err == nil {
		if a, err := filepath.EvalSymlinks(p); err == nil {
			if b, err := filepath.EvalSymlinks(exe); err == nil && sameFile(a, b) {
				return "mxedge"
			}
		}
	}
	return lab.ShellQuote(exe)
}

func sameFile(a, b string) bool {
	sa, err := os.Stat(a)
	if err != nil {
		return false
	}
	sb, err := os.Stat(b)
	return err == nil && os.SameFile(sa, sb)
}

// first returns the first address, or the zero one.
func first(addrs []netip.AddrPort) netip.AddrPort {
	if len(addrs) == 0 {
		return netip.AddrPort{}
	}
	return addrs[0]
}
