// Package install owns what mxedge puts on a machine: the systemd unit, sysusers and tmpfiles
// snippets and the default configuration, embedded in the binary so `mxedge install` and the .deb
// ship the same bytes.
package install

import _ "embed"

// DefaultConfig is the annotated default configuration (/etc/mxedge/mxedge.yaml).
//
//go:embed mxedge.yaml
var DefaultConfig []byte
