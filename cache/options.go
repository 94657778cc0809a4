package cache

import (
	"fmt"
	"log/slog"
	"time"
)

// Defaults for Options fields left zero.
const (
	DefaultPath          = "/var/lib/mxedge/cache.db"
	DefaultTTL           = 7 * 24 * time.Hour // docs/cache.md: default 7 days
	MinTTL               = 24 * time.Hour     // docs/cache.md: 1 to 30 days
	MaxTTL               = 30 * 24 * time.Hour
	DefaultBatchSize     = 256
	DefaultBatchDelay    = 10 * time.Millisecond
	DefaultQueueSize     = 16384
	DefaultSweepInterval = time.Minute
	DefaultSweepBatch    = 1000
	DefaultOpenTimeout   = time.Second
	// DefaultMaxEntries bounds the file to roughly 250 to 450 MiB
	// (docs/cache.md, figures for 1,000,000 entries).
	DefaultMaxEntries = 1_000_000
	MaxMaxEntries     = 100_000_000
	// DefaultProtect: clients re-authenticate at least daily (session
	// timeouts, reauthentication), so an entry confirmed within a day is
	// one in use.
	DefaultProtect = 24 * time.Hour
	MinProtect     = time.Minute
)

// Options configure a Store. The zero value of every field means its
// default.
type Options struct {
	// Path of the bbolt file. Default DefaultPath.
	Path string
	// TTL is how long an entry is served after its last Access-Accept:
	// 1 to 30 days (24h..720h), default 7 days.
	TTL time.Duration
	// BatchSize and BatchDelay drive the batched writer: a batch is
	// committed (one bbolt transaction, one fsync) when BatchSize
	// operations are queued or BatchDelay after the first of them,
	// whichever comes first. A crash loses at most the batch being
	// collected or committed: BatchSize operations, or BatchDelay of
	// arrivals. Defaults 256 and 10ms; BatchSize 1..QueueSize, BatchDelay
	// 100µs..10s.
	BatchSize  int
	BatchDelay time.Duration
	// QueueSize bounds the operations waiting for the writer. Learn and
	// Forget drop (and count) operations beyond it rather than block the
	// request path. Default 16384.
	QueueSize int
	// SweepInterval is how often the sweeper removes expired entries;
	// SweepBatch bounds the deletions per transaction so a sweep never
	// holds the write lock for long. Defaults 1m and 1000.
	SweepInterval time.Duration
	SweepBatch    int
	// OpenTimeout bounds the wait for bbolt's file lock: a file locked by
	// another process (the daemon) gives ErrLocked after it. Default 1s,
	// at most 1m; bbolt's "wait forever" is never used.
	OpenTimeout time.Duration
	// MaxEntries caps the records stored. A new record beyond it evicts
	// the entry first in the expiry index (for learned entries: the one
	// confirmed longest ago), but only an entry confirmed more than
	// Protect ago and before the new record; otherwise the new record is
	// refused (ErrFull, Stats.Refused) so a flood of new clients never
	// pushes out the ones in use. Default DefaultMaxEntries, 1 to
	// MaxMaxEntries.
	MaxEntries int
	// Protect is how recently confirmed (LastAuthorized) an entry must be
	// to be safe from eviction. Default 24h, 1m to TTL.
	Protect time.Duration
	// ReadOnly opens the file with a shared lock and refuses writes. It
	// still conflicts with a writer holding the exclusive lock.
	ReadOnly bool
	// Relearn is how long a learn identical to one queued for the same client (same MAC,
	// identity, method, NAS, site and attributes) is not written again: its TTL refresh waits
	// until then. Default DefaultRelearn (1m), at most 1h; negative writes every learn.
	Relearn time.Duration
	// Now is the clock; nil means time.Now. Tests inject it.
	Now func() time.Time
	// Logger receives lifecycle and degraded-mode messages; nil discards.
	Logger *slog.Logger
	// NoSync skips fsync on commit. Tests and benchmarks only: it voids the
	// crash-loss bound.
	NoSync bool
}

// withDefaults returns o with zero fields replaced by their defaults.
func (o Options) withDefaults() Options {
	if o.Path == "" {
		o.Path = DefaultPath
	}
	if o.TTL == 0 {
		o.TTL = DefaultTTL
	}
	if o.BatchSize == 0 {
		o.BatchSize = DefaultBatchSize
	}
	if o.BatchDelay == 0 {
		o.BatchDelay = DefaultBatchDelay
	}
	if o.QueueSize == 0 {
		o.QueueSize = DefaultQueueSize
	}
	if o.SweepInterval == 0 {
		o.SweepInterval = DefaultSweepInterval
	}
	if o.SweepBatch == 0 {
		o.SweepBatch = DefaultSweepBatch
	}
	if o.OpenTimeout == 0 {
		o.OpenTimeout = DefaultOpenTimeout
	}
	if o.MaxEntries == 0 {
		o.MaxEntries = DefaultMaxEntries
	}
	if o.Relearn == 0 {
		o.Relearn = DefaultRelearn
	}
	if o.Protect == 0 {
		o.Protect = min(DefaultProtect, o.TTL)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// Validate checks the options after defaults are applied. Each error wraps
// ErrBadOptions and names the field and its allowed range.
func (o Options) Validate() error {
	o = o.withDefaults()
	if o.TTL < MinTTL || o.TTL > MaxTTL {
		return fmt.Errorf("%w: ttl must be between 1 and 30 days (24h to 720h), got %v", ErrBadOptions, o.TTL)
	}
	if o.QueueSize < 1 || o.QueueSize > 1<<20 {
		return fmt.Errorf("%w: queue size must be between 1 and %d, got %d", ErrBadOptions, 1<<20, o.QueueSize)
	}
	if o.BatchSize < 1 || o.BatchSize > o.QueueSize {
		return fmt.Errorf("%w: batch size must be between 1 and the queue size %d, got %d", ErrBadOptions, o.QueueSize, o.BatchSize)
	}
	if o.BatchDelay < 100*time.Microsecond || o.BatchDelay > 10*time.Second {
		return fmt.Errorf("%w: batch delay must be between 100µs and 10s, got %v", ErrBadOptions, o.BatchDelay)
	}
	if o.SweepInterval < time.Second || o.SweepInterval > 24*time.Hour {
		return fmt.Errorf("%w: sweep interval must be between 1s and 24h, got %v", ErrBadOptions, o.SweepInterval)
	}
	if o.SweepBatch < 1 || o.SweepBatch > 100000 {
		return fmt.Errorf("%w: sweep batch must be between 1 and 100000, got %d", ErrBadOptions, o.SweepBatch)
	}
	if o.MaxEntries < 1 || o.MaxEntries > MaxMaxEntries {
		return fmt.Errorf("%w: max entries must be between 1 and %d, got %d", ErrBadOptions, MaxMaxEntries, o.MaxEntries)
	}
	if o.Protect < MinProtect || o.Protect > o.TTL {
		return fmt.Errorf("%w: protect must be between 1m and the ttl %v, got %v", ErrBadOptions, o.TTL, o.Protect)
	}
	if o.Relearn > time.Hour {
		return fmt.Errorf("%w: relearn must be at most 1h, got %v", ErrBadOptions, o.Relearn)
	}
	if o.OpenTimeout < time.Millisecond || o.OpenTimeout > time.Minute {
		return fmt.Errorf("%w: open timeout must be between 1ms and 1m, got %v", ErrBadOptions, o.OpenTimeout)
	}
	return nil
}
