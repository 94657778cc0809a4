package config

import (
	"errors"
	"fmt"
	"os"

	"go.yaml.in/yaml/v3"
)

// ErrNotConfigured: the file gives mxedge nothing to serve (no NAS client, no upstream, no RadSec
// peer), as the packaged default does until an operator edits it or registers the edge. It is not
// an invalid file: the service waits for a configuration instead of failing (docs/install.md).
var ErrNotConfigured = errors.New("not configured")

// CheckConfigured returns an error wrapping ErrNotConfigured when the file at path sets none of
// clients, upstreams.servers and radsec.peers: only comments, or settings that serve nobody. A file
// it cannot read or decode is left to Load, which reports it with file, line and field.
func CheckConfigured(path string) error {
	data, err := os.ReadFile(path)
	if err != nil || len(data) > MaxFileSize {
		return nil
	}
	var f struct {
		Clients   []yaml.Node `yaml:"clients"`
		Upstreams struct {
			Servers []yaml.Node `yaml:"servers"`
		} `yaml:"upstreams"`
		RadSec struct {
			Peers []yaml.Node `yaml:"peers"`
		} `yaml:"radsec"`
	}
	if err := yaml.Unmarshal(data, &f); err != nil {
		return nil
	}
	if len(f.Clients) > 0 || len(f.Upstreams.Servers) > 0 || len(f.RadSec.Peers) > 0 {
		return nil
	}
	return fmt.Errorf("%w: %s sets no NAS client and no upstream", ErrNotConfigured, path)
}
