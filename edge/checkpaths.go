package edge

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"mxedge/edge/config"
)

// checkPaths finds, without creating anything, what New's MkdirAll and opens would refuse for the
// files it creates: a path whose nearest existing ancestor is not a directory (a typo through a
// file), or a cache or spool path that is itself a directory. Write permission is not checked:
// check may run as another user than the daemon.
func checkPaths(cfg *config.Config, p *plan) error {
	for _, f := range []struct{ field, path string }{
		{"cache.path", p.cache.Path}, {"survivability.spool.path", p.spool.Path}, {"control.socket", p.control.Path},
	} {
		if f.path == "" {
			continue
		}
		if fi, err := os.Stat(f.path); err == nil && fi.IsDir() && f.field != "control.socket" {
			return invalid(cfg, f.field, fmt.Errorf("%s is a directory, not a file", f.path))
		}
		for dir := filepath.Dir(f.path); ; dir = filepath.Dir(dir) {
			fi, err := os.Stat(dir)
			if err == nil {
				if !fi.IsDir() {
					return invalid(cfg, f.field, fmt.Errorf("%s: %s is not a directory", f.path, dir))
				}
				break
			}
			if !errors.Is(err, fs.ErrNotExist) || dir == filepath.Dir(dir) {
				break // not ours to judge (permissions): New reports it
			}
		}
	}
	return nil
}
