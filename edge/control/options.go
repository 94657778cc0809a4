package control

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"path/filepath"

	"mxedge/cache"
)

// Defaults for Options fields left zero.
const (
	DefaultPath  = "/run/mxedge/control.sock"
	DefaultMode  = fs.FileMode(0o660)
	DefaultGroup = "mxedge"
	// MaxImportBytes bounds an import request body. A cache line is under
	// 2 KiB, so this is well above a million-entry snapshot.
	MaxImportBytes = 256 << 20
	// maxSocketPath is sun_path's size on Linux (108) less the NUL; the
	// server binds path+tmpSuffix first, so that must fit too.
	maxSocketPath = 107
	tmpSuffix     = ".new"
)

// Errors.
var (
	// ErrBadOptions: Options.Validate failed.
	ErrBadOptions = errors.New("control: bad options")
	// ErrInUse: another live process answers on the socket path.
	ErrInUse = errors.New("control: socket in use")
)

// CacheBackend is what the control socket calls on the client cache; the
// daemon passes its *cache.Store.
type CacheBackend interface {
	Stats() cache.Stats
	List(fn func(cache.Record) bool) error
	Lookup(identity, mac string) (cache.Record, bool, error)
	Delete(key string) (bool, error)
	PurgeExpired() (int, error)
	Export(w io.Writer) error
	Import(r io.Reader, mergeNewer bool) (cache.ImportReport, error)
}

// Options configure a Server. The zero value of every field means its
// default.
type Options struct {
	// Path of the unix socket. Default DefaultPath; its directory is
	// created (0750) if missing.
	Path string
	// Mode of the socket file. Default 0660: connecting to a unix socket
	// needs write permission, so the mode is the access control.
	Mode fs.FileMode
	// Group the socket file is chowned to when that group exists (as
	// created by the package's sysusers file). Default "mxedge"; "-" skips
	// the chown. A missing group or a failed chown is logged, not fatal.
	Group string
	// Logger receives lifecycle messages; nil discards.
	Logger *slog.Logger
	// Cache serves /v1/cache/*; nil answers them with 503.
	Cache CacheBackend
	// Status returns the JSON-able value of /v1/status; nil answers {}.
	Status func() any
	// Events serves /v1/events; nil answers it with 503.
	Events EventSource
	// Clients returns the NAS clients for /v1/clients; nil answers it with 503.
	Clients func() []NASClient
	// CoA sends an operator's CoA or Disconnect for /v1/coa (edge/control/coa.go); nil answers
	// it with 503.
	CoA CoABackend
	// Sessions answers /v1/sessions (edge/control/sessions.go); nil answers it with 503.
	Sessions func(context.Context, SessionQuery) ([]Session, error)
	// Snapshots serve /v1/snapshot by file name ("cache.db", "spool.db"); nil answers 503.
	Snapshots map[string]SnapshotFunc
}

func (o Options) withDefaults() Options {
	if o.Path == "" {
		o.Path = DefaultPath
	}
	if o.Mode == 0 {
		o.Mode = DefaultMode
	}
	if o.Group == "" {
		o.Group = DefaultGroup
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// Validate checks the options after defaults are applied.
func (o Options) Validate() error {
	o = o.withDefaults()
	if !filepath.IsAbs(o.Path) {
		return fmt.Errorf("%w: socket path %q is not absolute", ErrBadOptions, o.Path)
	}
	if len(o.Path)+len(tmpSuffix) > maxSocketPath {
		return fmt.Errorf("%w: socket path %q longer than %d octets", ErrBadOptions, o.Path, maxSocketPath-len(tmpSuffix))
	}
	if o.Mode&^fs.ModePerm != 0 {
		return fmt.Errorf("%w: socket mode %v has bits other than permissions", ErrBadOptions, o.Mode)
	}
	return nil
}
