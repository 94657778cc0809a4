package mgmt

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// File names in the state directory. The cloud configuration lives there too, not in /etc/mxedge:
// the daemon rewrites it on every sync and its sandbox (ProtectSystem=strict, StateDirectory=)
// lets it write only /var/lib/mxedge, and relative paths in it (edge.crt, ca.pem, cache.db)
// resolve against its own directory, i.e. next to the files register wrote.
const (
	DefaultStateDir = "/var/lib/mxedge"
	RegfileName     = "mxedge.reg"
	KeyName         = "edge.key"
	CertName        = "edge.crt"
	CABundleName    = "ca.pem"
	CloudCAName     = "cloud-ca.pem"
	CloudConfigName = "cloud.yaml"
)

// RegfileVersion is the regfile format this mxedge writes and reads.
const RegfileVersion = 1

// Registration is the regfile (/var/lib/mxedge/mxedge.reg, 0600, JSON): the proof that the edge
// is registered and everything the daemon's Syncer needs. Paths are absolute.
type Registration struct {
	Version      int       `json:"version"`
	EdgeID       string    `json:"edge_id"`
	Cloud        string    `json:"cloud"`
	RegisteredAt time.Time `json:"registered_at"`
	Certificate  string    `json:"certificate"`
	Key          string    `json:"key"`
	CABundle     string    `json:"ca_bundle"`
	Config       string    `json:"config"`
	// CloudCA is the pinned CA (--ca) that verifies the controller; "" = the system roots.
	CloudCA string `json:"cloud_ca,omitempty"`
}

// ErrNotRegistered: there is no regfile (mxedge runs on its local configuration).
var ErrNotRegistered = errors.New("mgmt: edge not registered")

// RegfilePath is the regfile in stateDir ("" = DefaultStateDir).
func RegfilePath(stateDir string) string {
	if stateDir == "" {
		stateDir = DefaultStateDir
	}
	return filepath.Join(stateDir, RegfileName)
}

// LoadRegistration reads a regfile. A missing file is ErrNotRegistered.
func LoadRegistration(path string) (*Registration, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w (no %s)", ErrNotRegistered, path)
	}
	if err != nil {
		return nil, fmt.Errorf("mgmt: regfile: %w", err)
	}
	r, err := ParseRegistration(b)
	if err != nil {
		return nil, fmt.Errorf("mgmt: regfile %s: %w", path, err)
	}
	return r, nil
}

// ParseRegistration decodes and validates a regfile. Unknown fields are refused: a regfile from
// a newer mxedge carries a newer version number anyway.
func ParseRegistration(data []byte) (*Registration, error) {
	var r Registration
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return nil, err
	}
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return &r, nil
}

// Validate checks a Registration read from disk.
func (r *Registration) Validate() error {
	if r.Version != RegfileVersion {
		return fmt.Errorf("version %d, this mxedge reads %d", r.Version, RegfileVersion)
	}
	for name, v := range map[string]string{"edge_id": r.EdgeID, "cloud": r.Cloud, "certificate": r.Certificate,
		"key": r.Key, "ca_bundle": r.CABundle, "config": r.Config} {
		if v == "" {
			return fmt.Errorf("%s is empty", name)
		}
	}
	return nil
}

// ConfigPath is the configuration `mxedge run` and `mxedge check` load: an explicit --config
// wins (operator's choice, e.g. while debugging); else, on a registered edge, the cloud
// configuration the regfile names; else local, the operator's /etc/mxedge/mxedge.yaml.
// docs/management.md ("Precedence") explains why the cloud document is complete rather than merged.
func ConfigPath(stateDir, local string, explicit bool) (string, *Registration, error) {
	if explicit {
		return local, nil, nil
	}
	reg, err := LoadRegistration(RegfilePath(stateDir))
	if errors.Is(err, ErrNotRegistered) {
		return local, nil, nil
	}
	if err != nil {
		return "", nil, err
	}
	return reg.Config, reg, nil
}

func marshalRegfile(r *Registration) ([]byte, error) {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("mgmt: regfile: %w", err)
	}
	return append(b, '\n'), nil
}
