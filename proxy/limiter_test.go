package proxy

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"
)

type lineCounter struct{ n atomic.Int64 }

func (c *lineCounter) Enabled(context.Context, slog.Level) bool  { return true }
func (c *lineCounter) Handle(context.Context, slog.Record) error { c.n.Add(1); return nil }
func (c *lineCounter) WithAttrs([]slog.Attr) slog.Handler        { return c }
func (c *lineCounter) WithGroup(string) slog.Handler             { return c }

// TestLogLimiterBounded: whatever the number of sources, the limiter keeps one window per key with
// at most maxSources names, logs at most maxSources lines per key and interval, and starts afresh
// each interval.
func TestLogLimiterBounded(t *testing.T) {
	l := newLogLimiter(10 * time.Second)
	lines := &lineCounter{}
	lg := slog.New(lines)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 60000 {
		l.logFrom(lg, slog.LevelWarn, "unknown-client", fmt.Sprintf("10.%d.%d.%d", i>>16, byte(i>>8), byte(i)), "request dropped", t0.Add(time.Duration(i)*time.Microsecond))
	}
	l.log(lg, slog.LevelWarn, "reject", "request rejected", t0)
	l.log(lg, slog.LevelWarn, "reject", "request rejected", t0.Add(time.Second))
	if n := lines.n.Load(); n != maxSources+1 {
		t.Fatalf("%d lines, want %d", n, maxSources+1)
	}
	if len(l.keys) != 2 || len(l.keys["unknown-client"].sources) != maxSources || l.keys["unknown-client"].skipped != 60000-maxSources {
		t.Fatalf("limiter state: %d keys, %d sources, %d skipped", len(l.keys), len(l.keys["unknown-client"].sources), l.keys["unknown-client"].skipped)
	}
	// The same source twice in one interval is one line; in the next interval it is logged again.
	l.logFrom(lg, slog.LevelWarn, "bad-authenticator", "nas-a", "request dropped", t0)
	l.logFrom(lg, slog.LevelWarn, "bad-authenticator", "nas-a", "request dropped", t0.Add(time.Second))
	l.logFrom(lg, slog.LevelWarn, "bad-authenticator", "nas-a", "request dropped", t0.Add(11*time.Second))
	if n := lines.n.Load(); n != maxSources+3 {
		t.Fatalf("%d lines, want %d", n, maxSources+3)
	}
}
