package spool

import (
	"fmt"
	"log/slog"
	"time"
)

// Defaults and limits for Options fields.
const (
	DefaultPath        = "/var/lib/mxedge/spool.db"
	DefaultMaxRecords  = 1_000_000
	DefaultMaxBytes    = 512 << 20 // 512 MiB
	DefaultOpenTimeout = time.Second

	// MaxRecordsLimit and the MaxBytes range bound what Validate accepts.
	// The lower MaxBytes bound holds at least a few maximum-size records.
	MaxRecordsLimit = 100_000_000
	MinMaxBytes     = 64 << 10
	MaxMaxBytes     = 64 << 30
)

// Options configure a Spool. The zero value of every field means its
// default.
type Options struct {
	// Path of the bbolt file. Default DefaultPath.
	Path string
	// MaxRecords bounds the records held; Append returns ErrFull beyond
	// it. Default 1,000,000, 1..100,000,000.
	MaxRecords int
	// MaxBytes bounds the sum of the stored records' encoded sizes
	// (key + value, see Entry.size), not the file size: bbolt's pages,
	// free list and page fill add to the file (docs/spool.md). Default
	// 512 MiB, 64 KiB..64 GiB.
	MaxBytes int64
	// OpenTimeout bounds the wait for bbolt's file lock: a file locked by
	// another process gives ErrLocked after it. Default 1s, 1ms..1m.
	OpenTimeout time.Duration
	// Now is the clock (arrival stamps, delays, ages); nil means time.Now.
	Now func() time.Time
	// Logger receives lifecycle and operator-must-act messages; nil
	// discards.
	Logger *slog.Logger
}

// withDefaults returns o with zero fields replaced by their defaults.
func (o Options) withDefaults() Options {
	if o.Path == "" {
		o.Path = DefaultPath
	}
	if o.MaxRecords == 0 {
		o.MaxRecords = DefaultMaxRecords
	}
	if o.MaxBytes == 0 {
		o.MaxBytes = DefaultMaxBytes
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

// Validate checks the options after defaults are applied. Each error wraps
// ErrBadOptions and names the field and its allowed range.
func (o Options) Validate() error {
	o = o.withDefaults()
	if o.MaxRecords < 1 || o.MaxRecords > MaxRecordsLimit {
		return fmt.Errorf("%w: max records must be between 1 and %d, got %d", ErrBadOptions, MaxRecordsLimit, o.MaxRecords)
	}
	if o.MaxBytes < MinMaxBytes || o.MaxBytes > MaxMaxBytes {
		return fmt.Errorf("%w: max bytes must be between %d (64 KiB) and %d (64 GiB), got %d", ErrBadOptions, int64(MinMaxBytes), int64(MaxMaxBytes), o.MaxBytes)
	}
	if o.OpenTimeout < time.Millisecond || o.OpenTimeout > time.Minute {
		return fmt.Errorf("%w: open timeout must be between 1ms and 1m, got %v", ErrBadOptions, o.OpenTimeout)
	}
	return nil
}
