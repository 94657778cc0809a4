package session

import (
	"fmt"
	"log/slog"
	"time"
)

// Defaults for Options fields left zero (docs/sessions.md).
const (
	// DefaultPath is beside the client cache (cache.DefaultPath).
	DefaultPath = "/var/lib/mxedge/sessions.db"
	// DefaultMaxEntries: a large campus edge sees tens of thousands of concurrent sessions; the
	// file holds 200,000 in well under 200 MiB (bench/sessions_test.go measures 100,000).
	DefaultMaxEntries = 200_000
	MaxMaxEntries     = 10_000_000
	// DefaultStopGrace keeps an ended session visible (and findable by a late CoA) for a while.
	DefaultStopGrace = 5 * time.Minute
	// DefaultMissedInterims: a live session that missed this many interim intervals is gone.
	DefaultMissedInterims = 3
	// DefaultInterim is the interval assumed when neither the Access-Accept nor the accounting
	// carries Acct-Interim-Interval (RFC 2869 §5.16).
	DefaultInterim = 30 * time.Minute
	// MinInterim is the shortest interval a NAS is allowed to use (RFC 2869 §5.16: "SHOULD NOT be
	// smaller than 60"); a smaller one sent by a NAS is raised to it for expiry.
	MinInterim           = time.Minute
	DefaultSweepInterval = 30 * time.Second
	DefaultOpenTimeout   = time.Second
)

// Options configure a Store. The zero value of every field means its default.
type Options struct {
	// Path of the bbolt file. Default DefaultPath.
	Path string
	// MaxEntries caps the sessions stored. A new session beyond it evicts the ended session that
	// expires first; without one, the live session nearest its missed-interim deadline (the one
	// silent longest relative to its interval). Default DefaultMaxEntries, 1 to MaxMaxEntries.
	MaxEntries int
	// StopGrace is how long a stopped session is kept. Default 5m, 1s to 24h.
	StopGrace time.Duration
	// MissedInterims is how many interim intervals a live session may stay silent before it
	// expires. Default 3, 1 to 100.
	MissedInterims int
	// DefaultInterim is the interim interval of a session whose NAS sends none. Default 30m,
	// 1m to 24h.
	DefaultInterim time.Duration
	// SweepInterval is how often Run removes expired sessions. Default 30s, 1s to 1h.
	SweepInterval time.Duration
	// OpenTimeout bounds the wait for the file lock (ErrLocked after it). Default 1s, 1ms to 1m.
	OpenTimeout time.Duration
	// ReadOnly opens with a shared lock and refuses writes (the CLI beside a stopped daemon).
	ReadOnly bool
	// Observer is told of every change after it is committed, except records merged from peers
	// (MergeReplica); nil: none.
	Observer Observer
	// Node is this edge's name in a cluster (docs/cluster.md); "" outside one. With it, every
	// record written here carries the replication fields (Origin, OriginID, Edge, AdmittedBy,
	// Stamp) and Share is told of it.
	Node string
	// Share is told, after commit and on the committing goroutine, of every record this edge
	// created or changed (not of merged, expired or evicted ones), in its replicated form, to be
	// sent to the peers. It must not block. nil: none.
	Share func(Record)
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives lifecycle and degraded-mode messages; nil discards.
	Logger *slog.Logger
	// NoSync skips fsync on commit (tests and benchmarks only).
	NoSync bool
}

func (o Options) withDefaults() Options {
	if o.Path == "" {
		o.Path = DefaultPath
	}
	if o.MaxEntries == 0 {
		o.MaxEntries = DefaultMaxEntries
	}
	if o.StopGrace == 0 {
		o.StopGrace = DefaultStopGrace
	}
	if o.MissedInterims == 0 {
		o.MissedInterims = DefaultMissedInterims
	}
	if o.DefaultInterim == 0 {
		o.DefaultInterim = DefaultInterim
	}
	if o.SweepInterval == 0 {
		o.SweepInterval = DefaultSweepInterval
	}
	if o.OpenTimeout == 0 {
		o.OpenTimeout = DefaultOpenTimeout
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// Validate checks the options after defaults are applied; each error wraps ErrBadOptions and
// names the field and its range.
func (o Options) Validate() error {
	o = o.withDefaults()
	switch {
	case o.MaxEntries < 1 || o.MaxEntries > MaxMaxEntries:
		return fmt.Errorf("%w: max_entries must be between 1 and %d, got %d", ErrBadOptions, MaxMaxEntries, o.MaxEntries)
	case o.StopGrace < time.Second || o.StopGrace > 24*time.Hour:
		return fmt.Errorf("%w: stop_grace must be between 1s and 24h, got %v", ErrBadOptions, o.StopGrace)
	case o.MissedInterims < 1 || o.MissedInterims > 100:
		return fmt.Errorf("%w: missed_interims must be between 1 and 100, got %d", ErrBadOptions, o.MissedInterims)
	case o.DefaultInterim < MinInterim || o.DefaultInterim > 24*time.Hour:
		return fmt.Errorf("%w: default_interim must be between 1m and 24h, got %v", ErrBadOptions, o.DefaultInterim)
	case o.SweepInterval < time.Second || o.SweepInterval > time.Hour:
		return fmt.Errorf("%w: sweep interval must be between 1s and 1h, got %v", ErrBadOptions, o.SweepInterval)
	case o.OpenTimeout < time.Millisecond || o.OpenTimeout > time.Minute:
		return fmt.Errorf("%w: open timeout must be between 1ms and 1m, got %v", ErrBadOptions, o.OpenTimeout)
	case len(o.Node) > maxStringLen:
		return fmt.Errorf("%w: node name longer than %d octets", ErrBadOptions, maxStringLen)
	}
	return nil
}
